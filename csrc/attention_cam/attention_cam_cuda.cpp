// Torch glue of the CUDA kernels of attention_cam: checks, allocation, stream, launch.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <ATen/ops/zeros.h>

#include "../debug_checks.h"
#include "attention_cam_glue.h"

namespace wsls {
namespace attention_cam {
namespace {

ForwardResult attention_cam_cuda(const at::Tensor& features, const at::Tensor& cls_weight,
                                 const at::Tensor& cls_bias, const at::Tensor& att_weight,
                                 c10::string_view fusion) {
  const int fusion_id = parse_fusion(fusion);
  const Sizes sz = check_forward_inputs(features, cls_weight, cls_bias, att_weight);
  const ScalarKind kind = scalar_kind(features, kOp, "features");
  TORCH_CHECK(sz.D <= forward_max_depth(kind), kOp, ": the CUDA kernel supports depth D up to ",
              forward_max_depth(kind), " for this dtype, got features of shape ", features.sizes());
  const c10::cuda::CUDAGuard guard(features.device());
  const at::Tensor f = features.contiguous();
  const at::Tensor wc = cls_weight.contiguous();
  const at::Tensor b = cls_bias.contiguous();
  const at::Tensor wa = att_weight.contiguous();
  ForwardResult out = allocate_forward(features, sz);
  auto& [logits, cam, acam, scores_h, scores_w, scores_d, pooled] = out;
  if (sz.B == 0) return out;
  at::Tensor workspace =
      at::empty({forward_workspace_bytes(sz, kind)}, features.options().dtype(at::kByte));
  ForwardArgs args{sz,
                   kind,
                   fusion_id,
                   f.data_ptr(),
                   wc.data_ptr(),
                   b.data_ptr(),
                   wa.data_ptr(),
                   logits.data_ptr(),
                   cam.data_ptr(),
                   acam.data_ptr(),
                   scores_h.data_ptr(),
                   scores_w.data_ptr(),
                   scores_d.data_ptr(),
                   pooled.data_ptr(),
                   workspace.data_ptr()};
  C10_CUDA_CHECK(static_cast<cudaError_t>(
      forward_cuda(args, c10::cuda::getCurrentCUDAStream(features.device().index()).stream())));
  // Value checks synchronise: only under debug checks (csrc/debug_checks.h). Without them,
  // non-finite features give non-finite logits and maps.
  if (debug_checks_enabled()) check_finite_logits(logits, cls_weight, cls_bias, att_weight);
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> attention_cam_backward_cuda(
    const at::Tensor& grad_logits, const at::Tensor& pooled, const at::Tensor& cls_weight,
    const at::Tensor& att_weight, int64_t H, int64_t W, int64_t D) {
  const Sizes sz = check_backward_inputs(grad_logits, pooled, cls_weight, att_weight, H, W, D);
  const ScalarKind kind = scalar_kind(cls_weight, "attention_cam_backward", "cls_weight");
  const c10::cuda::CUDAGuard guard(pooled.device());
  const at::Tensor go = grad_logits.contiguous();
  const at::Tensor p = pooled.contiguous();
  const at::Tensor wc = cls_weight.contiguous();
  const at::Tensor wa = att_weight.contiguous();
  const auto opts = cls_weight.options();
  at::Tensor grad_features = at::empty({sz.B, sz.K, H, W, D}, opts);
  at::Tensor grad_cls_weight = at::empty({sz.K}, opts);
  at::Tensor grad_cls_bias = at::empty({1}, opts);
  at::Tensor grad_att_weight = at::empty({3, sz.K}, opts);
  at::Tensor workspace = at::empty({backward_workspace_bytes(sz, kind)}, opts.dtype(at::kByte));
  BackwardArgs args{sz,
                    kind,
                    go.data_ptr(),
                    p.data_ptr(),
                    wc.data_ptr(),
                    wa.data_ptr(),
                    grad_features.data_ptr(),
                    grad_cls_weight.data_ptr(),
                    grad_cls_bias.data_ptr(),
                    grad_att_weight.data_ptr(),
                    workspace.data_ptr()};
  C10_CUDA_CHECK(static_cast<cudaError_t>(
      backward_cuda(args, c10::cuda::getCurrentCUDAStream(pooled.device().index()).stream())));
  return {grad_features, grad_cls_weight, grad_cls_bias, grad_att_weight};
}

}  // namespace

TORCH_LIBRARY_IMPL(wsls, CUDA, m) {
  m.impl("attention_cam", &attention_cam_cuda);
  m.impl("attention_cam_backward", &attention_cam_backward_cuda);
}

}  // namespace attention_cam
}  // namespace wsls
