// Input checks for the torch glue of every op: each message names the op and the argument.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "common.h"

namespace wsls {

// The accumulation dtype of the kernels: float64 for float64 inputs, float32 otherwise.
inline at::ScalarType acc_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

inline ScalarKind scalar_kind(const at::Tensor& t, const char* op, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return ScalarKind::Float;
    case at::kDouble:
      return ScalarKind::Double;
    case at::kHalf:
      return ScalarKind::Half;
    case at::kBFloat16:
      return ScalarKind::BFloat16;
    default:
      TORCH_CHECK(false, op, ": ", name, " must be float32, float64, float16 or bfloat16, got ",
                  t.scalar_type());
  }
}

inline void check_dim(const at::Tensor& t, int64_t dim, const char* op, const char* name,
                      const char* shape) {
  TORCH_CHECK(t.dim() == dim, op, ": ", name, " must be ", shape, " (", dim, " dims), got shape ",
              t.sizes());
}

inline void check_same_device(const at::Tensor& t, const at::Tensor& ref, const char* op,
                              const char* name, const char* ref_name) {
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(), " but ", ref_name,
              " is on ", ref.device(), "; move them to the same device");
}

inline void check_same_dtype(const at::Tensor& t, const at::Tensor& ref, const char* op,
                             const char* name, const char* ref_name) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, " has dtype ", t.scalar_type(),
              " but ", ref_name, " has dtype ", ref.scalar_type(), "; they must match");
}

}  // namespace wsls
