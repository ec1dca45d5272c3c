// Torch glue shared by the CPU and CUDA registrations of attention_cam: input checks, output
// allocation and the finiteness check of the result.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/isfinite.h>
#include <c10/util/string_view.h>

#include <string>
#include <tuple>

#include "../checks.h"
#include "attention_cam.h"
#include "attention_cam_math.h"

namespace wsls {
namespace attention_cam {

constexpr const char* kOp = "attention_cam";

inline int parse_fusion(c10::string_view fusion) {
  if (fusion == "mean") return kFusionMean;
  if (fusion == "geometric") return kFusionGeometric;
  TORCH_CHECK(false, kOp, ": fusion must be 'mean' or 'geometric', got '", std::string(fusion),
              "'");
}

inline Sizes check_forward_inputs(const at::Tensor& features, const at::Tensor& cls_weight,
                                  const at::Tensor& cls_bias, const at::Tensor& att_weight) {
  check_dim(features, 5, kOp, "features", "(B, K, H, W, D)");
  scalar_kind(features, kOp, "features");
  const Sizes sz{features.size(0), features.size(1), features.size(2), features.size(3),
                 features.size(4)};
  TORCH_CHECK(sz.K > 0, kOp, ": features must have at least one channel (K > 0), got shape ",
              features.sizes());
  TORCH_CHECK(sz.H > 0 && sz.W > 0 && sz.D > 0, kOp,
              ": features must have a non-empty spatial grid (H, W, D > 0), got shape ",
              features.sizes());
  check_dim(cls_weight, 1, kOp, "cls_weight", "(K)");
  TORCH_CHECK(cls_weight.size(0) == sz.K, kOp, ": cls_weight must have K = ", sz.K,
              " entries (the features' channels), got ", cls_weight.size(0));
  TORCH_CHECK(cls_bias.numel() == 1 && cls_bias.dim() <= 1, kOp,
              ": cls_bias must hold one value (shape (1) or ()), got shape ", cls_bias.sizes());
  check_dim(att_weight, 2, kOp, "att_weight", "(3, K)");
  TORCH_CHECK(att_weight.size(0) == 3 && att_weight.size(1) == sz.K, kOp,
              ": att_weight must be (3, K) = (3, ", sz.K, "), got ", att_weight.sizes());
  check_same_device(cls_weight, features, kOp, "cls_weight", "features");
  check_same_device(cls_bias, features, kOp, "cls_bias", "features");
  check_same_device(att_weight, features, kOp, "att_weight", "features");
  check_same_dtype(cls_weight, features, kOp, "cls_weight", "features");
  check_same_dtype(cls_bias, features, kOp, "cls_bias", "features");
  check_same_dtype(att_weight, features, kOp, "att_weight", "features");
  return sz;
}

using ForwardResult =
    std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

inline ForwardResult allocate_forward(const at::Tensor& features, const Sizes& sz) {
  const auto opts = features.options();
  return {at::empty({sz.B}, opts),
          at::empty({sz.B, sz.H, sz.W, sz.D}, opts),
          at::empty({sz.B, sz.H, sz.W, sz.D}, opts),
          at::empty({sz.B, sz.H}, opts),
          at::empty({sz.B, sz.W}, opts),
          at::empty({sz.B, sz.D}, opts),
          at::empty({sz.B, sz.L(), sz.K}, opts.dtype(acc_type(features.scalar_type())))};
}

// Non-finite features make every pooled mean, and so the logit, non-finite: checking the B logits
// detects them without another pass over the features. raise_non_finite names the input at fault
// once the logits are known to be non-finite (the CPU reads them in host memory, CUDA under debug
// checks only, csrc/debug_checks.h).
inline void raise_non_finite(const at::Tensor& cls_weight, const at::Tensor& cls_bias,
                             const at::Tensor& att_weight) {
  TORCH_CHECK(at::isfinite(cls_weight).all().item<bool>(), kOp, ": cls_weight contains NaN or Inf");
  TORCH_CHECK(at::isfinite(cls_bias).all().item<bool>(), kOp, ": cls_bias contains NaN or Inf");
  TORCH_CHECK(at::isfinite(att_weight).all().item<bool>(), kOp, ": att_weight contains NaN or Inf");
  TORCH_CHECK(false, kOp,
              ": features contain NaN or Inf (or values so large that their means overflow)");
}

// The check on device logits: one host synchronisation (CUDA under debug checks).
inline void check_finite_logits(const at::Tensor& logits, const at::Tensor& cls_weight,
                                const at::Tensor& cls_bias, const at::Tensor& att_weight) {
  if (logits.numel() == 0 || at::isfinite(logits).all().item<bool>()) return;
  raise_non_finite(cls_weight, cls_bias, att_weight);
}

inline Sizes check_backward_inputs(const at::Tensor& grad_logits, const at::Tensor& pooled,
                                   const at::Tensor& cls_weight, const at::Tensor& att_weight,
                                   int64_t H, int64_t W, int64_t D) {
  constexpr const char* op = "attention_cam_backward";
  check_dim(pooled, 3, op, "pooled", "(B, H + W + D, K)");
  const Sizes sz{pooled.size(0), pooled.size(2), H, W, D};
  TORCH_CHECK(H > 0 && W > 0 && D > 0 && pooled.size(1) == sz.L(), op,
              ": pooled must be (B, H + W + D, K) with H, W, D = ", H, ", ", W, ", ", D,
              ", got shape ", pooled.sizes());
  check_dim(grad_logits, 1, op, "grad_logits", "(B)");
  TORCH_CHECK(grad_logits.size(0) == sz.B, op, ": grad_logits must have B = ", sz.B,
              " entries, got ", grad_logits.size(0));
  check_dim(cls_weight, 1, op, "cls_weight", "(K)");
  TORCH_CHECK(cls_weight.size(0) == sz.K, op, ": cls_weight must have K = ", sz.K, " entries");
  TORCH_CHECK(att_weight.dim() == 2 && att_weight.size(0) == 3 && att_weight.size(1) == sz.K, op,
              ": att_weight must be (3, K) = (3, ", sz.K, "), got ", att_weight.sizes());
  scalar_kind(cls_weight, op, "cls_weight");
  check_same_dtype(grad_logits, cls_weight, op, "grad_logits", "cls_weight");
  check_same_dtype(att_weight, cls_weight, op, "att_weight", "cls_weight");
  TORCH_CHECK(pooled.scalar_type() == acc_type(cls_weight.scalar_type()), op,
              ": pooled must have dtype ", acc_type(cls_weight.scalar_type()), ", got ",
              pooled.scalar_type());
  check_same_device(pooled, grad_logits, op, "pooled", "grad_logits");
  check_same_device(cls_weight, grad_logits, op, "cls_weight", "grad_logits");
  check_same_device(att_weight, grad_logits, op, "att_weight", "grad_logits");
  return sz;
}

}  // namespace attention_cam
}  // namespace wsls
