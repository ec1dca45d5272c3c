// Element types of the CUDA kernels: accumulation type, load and store of half/bfloat16 with
// float accumulation. CUDA headers only (no torch), included first by every *_kernel.cu.
#pragma once

// torch builds .cu files with the implicit half/bfloat16 conversions disabled; the shared math
// uses static_cast, so enable them here (the kernel files see no torch headers they could clash
// with).
#undef __CUDA_NO_HALF_CONVERSIONS__
#undef __CUDA_NO_HALF_OPERATORS__
#undef __CUDA_NO_BFLOAT16_CONVERSIONS__
#undef __CUDA_NO_HALF2_OPERATORS__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace wsls {

template <typename T>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};

template <typename acc_t, typename T>
__device__ __forceinline__ acc_t load(const T* p) {
  return static_cast<acc_t>(p[0]);
}
template <>
__device__ __forceinline__ float load<float, __nv_bfloat16>(const __nv_bfloat16* p) {
  return __bfloat162float(p[0]);
}
template <>
__device__ __forceinline__ float load<float, __half>(const __half* p) {
  return __half2float(p[0]);
}

template <typename T, typename acc_t>
__device__ __forceinline__ T store(acc_t v) {
  return static_cast<T>(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 store<__nv_bfloat16, float>(float v) {
  return __float2bfloat16(v);
}
template <>
__device__ __forceinline__ __half store<__half, float>(float v) {
  return __float2half(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 store<__nv_bfloat16, double>(double v) {
  return __float2bfloat16(static_cast<float>(v));
}
template <>
__device__ __forceinline__ __half store<__half, double>(double v) {
  return __float2half(static_cast<float>(v));
}

}  // namespace wsls
