// Torch glue of the CUDA kernels of pairwise_affinity_loss: checks, preparation (shared with the
// CPU, pairwise_loss_glue.h), stream, launch, and the scatter of the gradient to the original rows.
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <vector>

#include "pairwise_loss_glue.h"

namespace wsls {
namespace pairwise_loss {
namespace {

// The row blocks on the device (4 int64 per block).
at::Tensor device_blocks(const std::vector<RowBlock>& blocks, const at::Device& device) {
  static_assert(sizeof(RowBlock) == 4 * sizeof(int64_t), "RowBlock is copied as 4 int64");
  std::vector<RowBlock> copy(blocks);
  const at::Tensor host =
      at::from_blob(copy.data(), {static_cast<int64_t>(copy.size()), 4}, at::kLong);
  return host.to(device);
}

ScalarKind acc_kind(const at::Tensor& embeddings) {
  return embeddings.scalar_type() == at::kDouble ? ScalarKind::Double : ScalarKind::Float;
}

at::Tensor pairwise_affinity_loss_cuda(const at::Tensor& embeddings, const at::Tensor& labels,
                                       const std::optional<at::Tensor>& groups,
                                       c10::string_view reduction, double eps) {
  const int red = parse_reduction(reduction, kOp);
  check_inputs(embeddings, labels, groups, eps, kOp);
  const c10::cuda::CUDAGuard guard(embeddings.device());
  const Prepared prep =
      prepare(embeddings, labels, groups, cuda_padded_dim(embeddings.size(1)), 1, 0);
  double w_same = 0, w_diff = 0;
  reduction_weights(red, prep.n_same, prep.n_diff, &w_same, &w_diff);
  at::Tensor loss = at::zeros({}, embeddings.options().dtype(at::kDouble));
  if (!prep.blocks.empty()) {
    const at::Tensor blocks = device_blocks(prep.blocks, embeddings.device());
    at::Tensor partials = at::empty({static_cast<int64_t>(prep.blocks.size())}, loss.options());
    const Problem p = make_problem(prep, static_cast<const RowBlock*>(blocks.data_ptr()), w_same,
                                   w_diff, kernel_eps(embeddings, eps));
    C10_CUDA_CHECK(static_cast<cudaError_t>(
        forward_cuda(p, acc_kind(embeddings), partials.data_ptr<double>(), loss.data_ptr<double>(),
                     c10::cuda::getCurrentCUDAStream(embeddings.device().index()).stream())));
  }
  return loss.to(embeddings.scalar_type());
}

at::Tensor pairwise_affinity_loss_backward_cuda(const at::Tensor& grad,
                                                const at::Tensor& embeddings,
                                                const at::Tensor& labels,
                                                const std::optional<at::Tensor>& groups,
                                                c10::string_view reduction, double eps) {
  const int red = parse_reduction(reduction, kBackwardOp);
  check_inputs(embeddings, labels, groups, eps, kBackwardOp);
  const c10::cuda::CUDAGuard guard(embeddings.device());
  const double g = grad_scalar(grad, embeddings);
  at::Tensor out = at::zeros(embeddings.sizes(), embeddings.options());
  const int64_t K = embeddings.size(1);
  const Prepared prep = prepare(embeddings, labels, groups, cuda_padded_dim(K), 1, 0);
  if (prep.blocks.empty()) return out;
  double w_same = 0, w_diff = 0;
  reduction_weights(red, prep.n_same, prep.n_diff, &w_same, &w_diff);
  const at::Tensor blocks = device_blocks(prep.blocks, embeddings.device());
  // Rows outside every block (groups of one row) get no gradient: zeros.
  at::Tensor grad_rows = at::zeros({prep.rows, prep.dim}, prep.emb.options());
  // d loss / d f_p = sum over q of 2 (both orders) * w * d loss / d d2 * 2 (f_p - f_q), times g.
  const Problem p = make_problem(prep, static_cast<const RowBlock*>(blocks.data_ptr()),
                                 4 * g * w_same, 4 * g * w_diff, kernel_eps(embeddings, eps));
  C10_CUDA_CHECK(static_cast<cudaError_t>(
      backward_cuda(p, acc_kind(embeddings), grad_rows.data_ptr(),
                    c10::cuda::getCurrentCUDAStream(embeddings.device().index()).stream())));
  out.index_copy_(0, prep.perm, grad_rows.narrow(1, 0, K).to(embeddings.scalar_type()));
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(wsls, CUDA, m) {
  m.impl("pairwise_affinity_loss", &pairwise_affinity_loss_cuda);
  m.impl("pairwise_affinity_loss_backward", &pairwise_affinity_loss_backward_cuda);
}

}  // namespace pairwise_loss
}  // namespace wsls
