// Shared by C++ and CUDA sources: no torch headers here, so .cu files stay fast to compile.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define WSLS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define WSLS_HOST_DEVICE inline
#endif

#if defined(__GNUC__) || defined(__clang__)
#define WSLS_ALWAYS_INLINE inline __attribute__((always_inline))
#define WSLS_INLINE_LAMBDA __attribute__((always_inline))
#else
#define WSLS_ALWAYS_INLINE inline
#define WSLS_INLINE_LAMBDA
#endif

namespace wsls {

// The storage types a kernel may be instantiated for; the torch glue maps at::ScalarType to it.
enum class ScalarKind : int { Float = 0, Double = 1, Half = 2, BFloat16 = 3 };

template <typename T>
WSLS_HOST_DEVICE T ceil_div(T a, T b) {
  return (a + b - 1) / b;
}

}  // namespace wsls
