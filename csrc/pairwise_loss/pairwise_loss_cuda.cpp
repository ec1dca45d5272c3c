// Torch glue of the CUDA kernels of pairwise_affinity_loss: checks, preparation (shared with the
// CPU, pairwise_loss_glue.h), stream, launch, and the scatter of the gradient to the original rows.
// No host synchronisation: the preparation is tensor ops whose sizes follow from the shapes, the
// reduction's weights are computed on the device from the device pair counts (and the incoming
// gradient), the kernels' blocks are fixed runs of sorted rows. The finiteness check of the
// embeddings synchronises, so it runs under debug checks only (csrc/debug_checks.h): without it
// non-finite embeddings give a non-finite loss and gradient.
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../debug_checks.h"
#include "pairwise_loss_glue.h"

namespace wsls {
namespace pairwise_loss {
namespace {

ScalarKind acc_kind(const at::Tensor& embeddings) {
  return embeddings.scalar_type() == at::kDouble ? ScalarKind::Double : ScalarKind::Float;
}

cudaStream_t stream_of(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

// The problem and its weights (2 doubles on the device, computed there from the pair counts);
// grad: the incoming gradient as a float64 device scalar (backward) or undefined (forward).
Problem make_problem(const Prepared& prep, int reduction, const at::Tensor& grad,
                     at::Tensor& weights, double eps, cudaStream_t stream) {
  weights = at::empty({2}, prep.emb.options().dtype(at::kDouble));
  const at::Tensor counts = at::empty({2}, prep.emb.options().dtype(at::kLong));
  C10_CUDA_CHECK(static_cast<cudaError_t>(
      weights_cuda(reduction, prep.cls.data_ptr<int32_t>(), prep.group.data_ptr<int32_t>(),
                   prep.rows, grad.defined() ? grad.data_ptr<double>() : nullptr,
                   counts.data_ptr<int64_t>(), weights.data_ptr<double>(), stream)));
  Problem p;
  p.rows = prep.rows;
  p.dim = prep.dim;
  p.num_blocks = (prep.rows + kBlockRows - 1) / kBlockRows;
  p.emb = prep.emb.data_ptr();
  p.norms = prep.norms.data_ptr();
  p.cls = prep.cls.data_ptr<int32_t>();
  p.group = prep.group.data_ptr<int32_t>();
  p.weights = weights.data_ptr<double>();
  p.eps = eps;
  return p;
}

at::Tensor pairwise_affinity_loss_cuda(const at::Tensor& embeddings, const at::Tensor& labels,
                                       const std::optional<at::Tensor>& groups,
                                       c10::string_view reduction, double eps) {
  const int red = parse_reduction(reduction, kOp);
  check_inputs(embeddings, labels, groups, eps, kOp);
  const c10::cuda::CUDAGuard guard(embeddings.device());
  if (debug_checks_enabled()) check_finite_device(embeddings, kOp);
  at::Tensor loss = at::zeros({}, embeddings.options().dtype(at::kDouble));
  if (embeddings.size(0) < 2) return loss.to(embeddings.scalar_type());  // no pair
  const cudaStream_t stream = stream_of(embeddings);
  const Prepared prep =
      prepare(embeddings, labels, groups, cuda_padded_dim(embeddings.size(1)), 1, 0);
  at::Tensor weights;
  const Problem p =
      make_problem(prep, red, at::Tensor(), weights, kernel_eps(embeddings, eps), stream);
  at::Tensor partials = at::empty({p.num_blocks}, loss.options());
  C10_CUDA_CHECK(static_cast<cudaError_t>(forward_cuda(
      p, acc_kind(embeddings), partials.data_ptr<double>(), loss.data_ptr<double>(), stream)));
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
  const at::Tensor g = grad_scalar(grad, embeddings);
  if (debug_checks_enabled()) check_finite_device(embeddings, kBackwardOp);
  at::Tensor out = at::zeros(embeddings.sizes(), embeddings.options());
  if (embeddings.size(0) < 2) return out;  // no pair
  const int64_t K = embeddings.size(1);
  const cudaStream_t stream = stream_of(embeddings);
  const Prepared prep = prepare(embeddings, labels, groups, cuda_padded_dim(K), 1, 0);
  at::Tensor weights;
  // d loss / d f_p = sum over q of 2 (both orders) * w * d loss / d d2 * 2 (f_p - f_q), times g.
  const Problem p = make_problem(prep, red, g, weights, kernel_eps(embeddings, eps), stream);
  // Rows without a pair (ignored, or alone in their group) get no gradient: zeros.
  at::Tensor grad_rows = at::zeros({prep.rows, prep.dim}, prep.emb.options());
  C10_CUDA_CHECK(static_cast<cudaError_t>(
      backward_cuda(p, acc_kind(embeddings), grad_rows.data_ptr(), stream)));
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
