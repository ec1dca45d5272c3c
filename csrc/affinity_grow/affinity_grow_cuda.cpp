// Torch glue of the CUDA kernels of affinity_grow, mask_nms, candidate_scores, pack_masks and
// unpack_masks: checks, allocation, stream, launch.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <ATen/ops/any.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/isnan.h>
#include <ATen/ops/zeros.h>

#include "../debug_checks.h"
#include "affinity_grow_glue.h"

namespace wsls {
namespace affinity_grow {
namespace {

cudaStream_t stream_of(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

at::Tensor byte_workspace(int64_t bytes, const at::Tensor& like) {
  return at::empty({bytes}, like.options().dtype(at::kByte));
}

at::Tensor affinity_grow_cuda(const at::Tensor& embeddings, const at::Tensor& seeds,
                              double threshold, int64_t connectivity,
                              const c10::optional<at::Tensor>& mask) {
  const Sizes sz = check_grow_inputs(embeddings, seeds, threshold, connectivity, mask);
  const ScalarKind kind = scalar_kind(embeddings, "affinity_grow", "embeddings");
  TORCH_CHECK(sz.D <= grow_max_depth(), "affinity_grow: the CUDA kernel supports depth D up to ",
              grow_max_depth(), ", got embeddings of shape ", embeddings.sizes());
  // Value checks synchronise: only under debug checks (csrc/debug_checks.h). Without them the
  // seeds and embeddings are read on the device only (see check_seeds_in_volume, kNonFinite).
  const bool checks = debug_checks_enabled();
  if (checks) check_seeds_in_volume(seeds.cpu(), sz);
  const c10::cuda::CUDAGuard guard(embeddings.device());
  const cudaStream_t stream = stream_of(embeddings);
  const at::Tensor emb = embeddings.contiguous();
  const at::Tensor sd = seeds.contiguous();
  at::Tensor out = at::empty({sz.S, sz.H, sz.W, sz.Dw()}, seeds.options());
  at::Tensor mask_words;
  if (mask.has_value()) {
    const at::Tensor m = mask->contiguous();
    mask_words = at::empty({sz.H, sz.W, sz.Dw()}, seeds.options());
    C10_CUDA_CHECK(static_cast<cudaError_t>(pack_cuda(
        m.data_ptr<bool>(), mutable_words_of(mask_words), Sizes{1, 0, sz.H, sz.W, sz.D}, stream)));
  }
  if (checks) {
    at::Tensor flag = at::zeros({1}, seeds.options().dtype(at::kInt));
    C10_CUDA_CHECK(static_cast<cudaError_t>(
        nonfinite_cuda(emb.data_ptr(), emb.numel(), kind, flag.data_ptr<int>(), stream)));
    TORCH_CHECK(flag.item<int>() == 0, kNonFinite);
  }
  if (sz.S == 0) return out;
  at::Tensor workspace =
      byte_workspace(grow_workspace_bytes(sz, static_cast<int>(connectivity)), embeddings);
  const GrowArgs args{sz,
                      kind,
                      static_cast<int>(connectivity),
                      d2_bound(threshold),
                      emb.data_ptr(),
                      sd.data_ptr<int64_t>(),
                      mask.has_value() ? words_of(mask_words) : nullptr,
                      mutable_words_of(out),
                      workspace.data_ptr()};
  C10_CUDA_CHECK(static_cast<cudaError_t>(grow_cuda(args, stream)));
  return out;
}

at::Tensor mask_nms_cuda(const at::Tensor& masks, const at::Tensor& scores, double iou_threshold) {
  const Sizes sz = check_nms_inputs(masks, scores, iou_threshold);
  TORCH_CHECK(sz.S <= 65535, "mask_nms: the CUDA kernel supports up to 65535 candidates, got ",
              sz.S);
  const c10::cuda::CUDAGuard guard(masks.device());
  const cudaStream_t stream = stream_of(masks);
  const at::Tensor m = masks.contiguous();
  const at::Tensor order = nms_order(scores).contiguous();
  at::Tensor kept = at::empty({sz.S}, masks.options());
  at::Tensor count = at::empty({1}, masks.options());
  at::Tensor workspace = byte_workspace(nms_workspace_bytes(sz), masks);
  const NmsArgs args{sz,
                     words_of(m),
                     order.data_ptr<int64_t>(),
                     iou_threshold,
                     kept.data_ptr<int64_t>(),
                     count.data_ptr<int64_t>(),
                     workspace.data_ptr()};
  C10_CUDA_CHECK(static_cast<cudaError_t>(nms_cuda(args, stream)));
  // The one synchronisation of mask_nms (its output size is data-dependent): the kept count and
  // whether any score is NaN, copied to the host together.
  const at::Tensor host =
      at::cat({count, at::isnan(scores).any().to(at::kLong).reshape({1})}).cpu();
  const int64_t* h = host.data_ptr<int64_t>();
  TORCH_CHECK(h[1] == 0, kNanScores);
  return kept.narrow(0, 0, h[0]).clone();
}

at::Tensor candidate_scores_cuda(const at::Tensor& masks, const at::Tensor& acam) {
  const Sizes sz = check_scores_inputs(masks, acam);
  const ScalarKind kind = scalar_kind(acam, "candidate_scores", "acam");
  const c10::cuda::CUDAGuard guard(masks.device());
  const at::Tensor m = masks.contiguous();
  const at::Tensor a = acam.contiguous();
  at::Tensor out = at::empty({sz.S}, acam.options());
  C10_CUDA_CHECK(static_cast<cudaError_t>(
      scores_cuda(words_of(m), a.data_ptr(), out.data_ptr(), sz, kind, stream_of(masks))));
  return out;
}

at::Tensor pack_masks_cuda(const at::Tensor& masks) {
  const Sizes sz = check_pack_inputs(masks);
  const c10::cuda::CUDAGuard guard(masks.device());
  const at::Tensor m = masks.contiguous();
  at::Tensor out = at::empty({sz.S, sz.H, sz.W, sz.Dw()}, masks.options().dtype(at::kLong));
  C10_CUDA_CHECK(static_cast<cudaError_t>(
      pack_cuda(m.data_ptr<bool>(), mutable_words_of(out), sz, stream_of(masks))));
  return out;
}

at::Tensor unpack_masks_cuda(const at::Tensor& masks, int64_t depth) {
  const Sizes sz = check_unpack_inputs(masks, depth);
  const c10::cuda::CUDAGuard guard(masks.device());
  const at::Tensor m = masks.contiguous();
  at::Tensor out = at::empty({sz.S, sz.H, sz.W, sz.D}, masks.options().dtype(at::kBool));
  C10_CUDA_CHECK(static_cast<cudaError_t>(
      unpack_cuda(words_of(m), out.data_ptr<bool>(), sz, stream_of(masks))));
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(wsls, CUDA, m) {
  m.impl("affinity_grow", &affinity_grow_cuda);
  m.impl("mask_nms", &mask_nms_cuda);
  m.impl("candidate_scores", &candidate_scores_cuda);
  m.impl("pack_masks", &pack_masks_cuda);
  m.impl("unpack_masks", &unpack_masks_cuda);
}

}  // namespace affinity_grow
}  // namespace wsls
