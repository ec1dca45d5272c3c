// Per-pair math of pairwise_affinity_loss, shared by the CPU kernels (on 8-float / 4-double GCC
// vectors and on scalars) and the CUDA kernels (on scalars), so that the CPU tests cover the
// arithmetic the GPU runs. The functions are templates over a traits type Tr that names the value
// type Tr::V (a scalar or a vector), its same-width integer type Tr::I, and supplies
//   splat(double) -> V, expm1(V) -> V, log(V) -> V, div(V, V) -> V,
//   as_int(V) -> I / as_float(I) -> V (bit casts), to_int(V) -> I / to_float(I) -> V (values).
// Masks are whatever a comparison of V (or I) gives: bool for scalars, an integer vector for
// vectors; `mask ? a : b` selects in both cases.
//
// float uses the polynomial expm1 and log below (the same code on the CPU and the GPU, within
// 2 ulp); double uses the C library (CPU) and CUDA's libdevice. div is IEEE division except for
// float on the GPU (__fdividef, within 2 ulp: the IEEE sequence costs several times more there).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "../common.h"
#include "pairwise_loss.h"

// Always inlined on the host too: the CPU kernels call these from their AVX2 builds, where an
// out-of-line call would lose the vector registers.
#if defined(__CUDACC__)
#define WSLS_PAIR_MATH __host__ __device__ __forceinline__
#else
#define WSLS_PAIR_MATH WSLS_ALWAYS_INLINE
#endif

namespace wsls {
namespace pairwise_loss {

// expm1(x) for float x <= 0 (values below -87 give -1 as the exact result rounds there).
// x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite), expm1(r) by its degree-7 Taylor polynomial
// (relative error < 2e-8 on that range), then expm1(x) = 2^n expm1(r) + (2^n - 1): exact for
// n = 0, so small |x| keep their relative accuracy, which the different-class loss needs.
template <typename Tr>
WSLS_PAIR_MATH typename Tr::V expm1_poly(typename Tr::V x) {
  using V = typename Tr::V;
  using I = typename Tr::I;
  x = x < -87.0f ? Tr::splat(-87.0) : x;
  const V t = x * 1.44269504088896341f + 12582912.0f;  // + 1.5 * 2^23 rounds to an integer
  const V n = t - 12582912.0f;
  V r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  V q = Tr::splat(1.0 / 5040);
  q = q * r + (1.0f / 720);
  q = q * r + (1.0f / 120);
  q = q * r + (1.0f / 24);
  q = q * r + (1.0f / 6);
  q = q * r + 0.5f;
  const V p = r + (r * r) * q;  // expm1(r)
  const I e = Tr::to_int(n);    // in [-126, 0]
  const V s = Tr::as_float((e + 127) << 23);
  return s * p + (s - 1.0f);
}

// log(x) for positive normal float x (Cephes logf: x = m 2^e with m in [sqrt(1/2), sqrt(2)),
// log(m) by a degree-9 polynomial in m - 1).
template <typename Tr>
WSLS_PAIR_MATH typename Tr::V log_poly(typename Tr::V x) {
  using V = typename Tr::V;
  using I = typename Tr::I;
  const I bits = Tr::as_int(x);
  I e = ((bits >> 23) & 0xff) - 126;  // x = m 2^e, m in [0.5, 1)
  V m = Tr::as_float((bits & 0x007fffff) | 0x3f000000);
  const auto small = m < 0.707106781186547524f;
  e = small ? e - 1 : e;
  m = small ? m + m - 1.0f : m - 1.0f;
  const V z = m * m;
  V y = Tr::splat(7.0376836292e-2);
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  const V fe = Tr::to_float(e);
  y = y + fe * -2.12194440e-4f;
  y = y - 0.5f * z;
  return (m + y) + fe * 0.693359375f;
}

// The loss of one ordered pair at squared distance d2 >= 0 (DESIGN.md section 2), with
// t = expm1(-d2), so that 1 + e^-d2 = 2 + t and 1 - e^-d2 = -t:
//   same class:      softplus(d2) - log 2 = d2 + log(1 + t / 2)   (no overflow for large d2)
//   different class: -log(max(tanh(d2 / 2), eps)),  tanh(d2 / 2) = -t / (2 + t)
// The clamp test -t < eps (2 + t) is the same in pair_coef, so loss and gradient agree on it.
template <typename Tr, typename Mask>
WSLS_PAIR_MATH typename Tr::V pair_loss(typename Tr::V d2, Mask same, typename Tr::V eps) {
  using V = typename Tr::V;
  const V t = Tr::expm1(-d2);
  const V u = t + 2.0f;
  const auto clamped = -t < eps * u;
  const V arg = same ? t * 0.5f + 1.0f : (clamped ? eps : Tr::div(-t, u));
  const V lg = Tr::log(arg);
  return same ? d2 + lg : -lg;
}

// d loss / d d2 of one ordered pair: sigmoid(d2) = 1 / (2 + t) for the same class,
// -1 / sinh(d2) = 2 (1 + t) / (t (2 + t)) for different classes, 0 where the clamp is active
// (which includes d2 = 0, where the division gives no number and is discarded).
template <typename Tr, typename Mask>
WSLS_PAIR_MATH typename Tr::V pair_coef(typename Tr::V d2, Mask same, typename Tr::V eps) {
  using V = typename Tr::V;
  const V t = Tr::expm1(-d2);
  const V u = t + 2.0f;
  const auto clamped = -t < eps * u;
  const V num = same ? Tr::splat(1.0) : (t + 1.0f) * 2.0f;
  const V den = same ? u : t * u;
  const V c = Tr::div(num, den);
  return same ? c : (clamped ? Tr::splat(0.0) : c);
}

// Squared distance from the centred rows' norms and dot product, clamped at 0 (rounding).
template <typename V>
WSLS_PAIR_MATH V squared_distance(V norm_p, V norm_q, V dot) {
  const V d2 = (norm_p + norm_q) - 2.0f * dot;
  return d2 > 0.0f ? d2 : d2 * 0.0f;
}

// The form above keeps d2's absolute accuracy (a few ulp of the norms) but not its relative
// accuracy when d2 is small against the norms. Same-class pairs need only the former; pairs of
// different classes, whose gradient grows as 1 / d2, are recomputed from the differences of
// their features where d2 < (|f_p|^2 + |f_q|^2) / 16 (then within 1e-5 relative up to K = 64).
// Such pairs are rare: the loss pushes different classes apart.
template <typename V>
WSLS_PAIR_MATH auto needs_exact_distance(V d2, V norm_p, V norm_q) {
  return d2 < (norm_p + norm_q) * 0.0625f;
}

// The largest finite float and double (an overload per accumulation type, host and device).
WSLS_PAIR_MATH float finite_max(float) { return 3.402823466e+38f; }
WSLS_PAIR_MATH double finite_max(double) { return 1.7976931348623157e+308; }

// Huge embeddings: where the squared norms or the norm-based d2 overflowed (NaN from Inf - Inf,
// or Inf), d2 is recomputed from the differences of the features, which for finite features is
// never NaN: finite where it fits the type, +Inf where it does not (a same-class pair then has
// loss +Inf and gradient coefficient 1, a different-class pair loss 0 and coefficient 0). The
// norms of finite features are never NaN, so their sum needs only the Inf test. max:
// finite_max of the element type.
template <typename V, typename S>
WSLS_PAIR_MATH auto distance_overflowed(V d2, V norm_p, V norm_q, S max) {
  return (d2 != d2) | (d2 > max) | ((norm_p + norm_q) > max);
}

// Scalar traits, host and device.
template <typename T>
struct ScalarMath;

template <>
struct ScalarMath<float> {
  using V = float;
  using I = int32_t;
  static WSLS_PAIR_MATH V splat(double x) { return static_cast<float>(x); }
  static WSLS_PAIR_MATH I as_int(V x) {
#if defined(__CUDA_ARCH__)
    return __float_as_int(x);
#else
    I i;
    std::memcpy(&i, &x, sizeof(i));
    return i;
#endif
  }
  static WSLS_PAIR_MATH V as_float(I i) {
#if defined(__CUDA_ARCH__)
    return __int_as_float(i);
#else
    V x;
    std::memcpy(&x, &i, sizeof(x));
    return x;
#endif
  }
  static WSLS_PAIR_MATH I to_int(V x) { return static_cast<I>(x); }
  static WSLS_PAIR_MATH V to_float(I i) { return static_cast<V>(i); }
  static WSLS_PAIR_MATH V expm1(V x) { return expm1_poly<ScalarMath<float>>(x); }
  static WSLS_PAIR_MATH V log(V x) { return log_poly<ScalarMath<float>>(x); }
  static WSLS_PAIR_MATH V div(V a, V b) {
#if defined(__CUDA_ARCH__)
    return __fdividef(a, b);
#else
    return a / b;
#endif
  }
};

template <>
struct ScalarMath<double> {
  using V = double;
  using I = int64_t;
  static WSLS_PAIR_MATH V splat(double x) { return x; }
  static WSLS_PAIR_MATH V div(V a, V b) { return a / b; }
#if defined(__CUDA_ARCH__)
  static WSLS_PAIR_MATH V expm1(V x) { return ::expm1(x); }
  static WSLS_PAIR_MATH V log(V x) { return ::log(x); }
#else
  static WSLS_PAIR_MATH V expm1(V x) { return std::expm1(x); }
  static WSLS_PAIR_MATH V log(V x) { return std::log(x); }
#endif
};

// Runs of equal ids in a non-decreasing array (the class and group ids of the sorted rows): the
// first index of the run holding p, and one past its last (n: the array's length). Binary
// searches: O(log n) reads.
WSLS_PAIR_MATH int64_t run_begin(const int32_t* ids, int64_t p) {
  const int32_t v = ids[p];
  int64_t lo = 0, hi = p;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (ids[mid] < v) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

WSLS_PAIR_MATH int64_t run_end(const int32_t* ids, int64_t n, int64_t p) {
  const int32_t v = ids[p];
  int64_t lo = p + 1, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (ids[mid] <= v) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// Weight of one valid ordered pair's loss of each kind in the reduced loss, from the numbers of
// valid ordered pairs of each kind. A kind with no pair gets weight 0; 'balanced' then averages
// the one non-empty kind alone, and no pair at all gives the loss 0.
WSLS_HOST_DEVICE void reduction_weights(int reduction, int64_t n_same, int64_t n_diff,
                                        double* w_same, double* w_diff) {
  if (reduction == kSum) {
    *w_same = 1.0;
    *w_diff = 1.0;
  } else if (reduction == kMean) {
    const int64_t n = n_same + n_diff;
    *w_same = *w_diff = n > 0 ? 1.0 / static_cast<double>(n) : 0.0;
  } else {
    const int kinds = (n_same > 0 ? 1 : 0) + (n_diff > 0 ? 1 : 0);
    *w_same = n_same > 0 ? 1.0 / (kinds * static_cast<double>(n_same)) : 0.0;
    *w_diff = n_diff > 0 ? 1.0 / (kinds * static_cast<double>(n_diff)) : 0.0;
  }
}

}  // namespace pairwise_loss
}  // namespace wsls
