// Per-element math of attention_cam, shared by the CPU and the CUDA kernels so that the CPU tests
// cover the arithmetic the GPU runs. Everything is in the accumulation type acc_t (float or
// double).
#pragma once

#include <cmath>
#include <cstdint>

#include "../common.h"

namespace wsls {
namespace attention_cam {

enum Fusion : int { kFusionMean = 0, kFusionGeometric = 1 };

// Layout of the pooled features (B, L, K) with L = H + W + D: rows [0, H) are the H-slices,
// [H, H + W) the W-slices, [H + W, L) the D-slices. axis_begin/axis_len locate one axis.
WSLS_HOST_DEVICE int64_t axis_begin(int axis, int64_t H, int64_t W) {
  return axis == 0 ? 0 : (axis == 1 ? H : H + W);
}
WSLS_HOST_DEVICE int64_t axis_len(int axis, int64_t H, int64_t W, int64_t D) {
  return axis == 0 ? H : (axis == 1 ? W : D);
}
// Number of voxels averaged into one slice of an axis.
WSLS_HOST_DEVICE int64_t slice_count(int axis, int64_t H, int64_t W, int64_t D) {
  return axis == 0 ? W * D : (axis == 1 ? H * D : H * W);
}

template <typename acc_t>
WSLS_HOST_DEVICE acc_t exp_acc(acc_t x) {
#if defined(__CUDA_ARCH__)
  return exp(x);
#else
  return std::exp(x);
#endif
}

template <typename acc_t>
WSLS_HOST_DEVICE acc_t cbrt_acc(acc_t x) {
#if defined(__CUDA_ARCH__)
  return cbrt(x);
#else
  return std::cbrt(x);
#endif
}

// Attention logit g = <p, w_att[axis]> and slice class score z = <p, w_cls> of one slice, where p
// is that slice's mean feature vector (K contiguous values). W is the weights' storage type.
template <typename acc_t, typename W>
WSLS_HOST_DEVICE void slice_terms(const acc_t* p, const W* w_att_axis, const W* w_cls, int64_t K,
                                  acc_t* g, acc_t* z) {
  acc_t gs = 0, zs = 0;
  for (int64_t k = 0; k < K; ++k) {
    gs += p[k] * static_cast<acc_t>(w_att_axis[k]);
    zs += p[k] * static_cast<acc_t>(w_cls[k]);
  }
  *g = gs;
  *z = zs;
}

// Softmax of the n attention logits g of one axis into s; returns the attended class score
// sum_l s[l] z[l]. n >= 1.
template <typename acc_t>
WSLS_HOST_DEVICE acc_t axis_softmax(const acc_t* g, const acc_t* z, int64_t n, acc_t* s) {
  acc_t m = g[0];
  for (int64_t l = 1; l < n; ++l) m = g[l] > m ? g[l] : m;
  acc_t total = 0;
  for (int64_t l = 0; l < n; ++l) {
    s[l] = exp_acc(g[l] - m);
    total += s[l];
  }
  acc_t sz = 0;
  for (int64_t l = 0; l < n; ++l) {
    s[l] /= total;
    sz += s[l] * z[l];
  }
  return sz;
}

// Image logit from the three attended class scores.
template <typename acc_t>
WSLS_HOST_DEVICE acc_t image_logit(acc_t bias, acc_t sz_h, acc_t sz_w, acc_t sz_d) {
  return bias + (sz_h + sz_w + sz_d) / acc_t(3);
}

// Voxel weight from the three axis weights, each L_a * s_a (uniform attention gives 1).
template <typename acc_t>
WSLS_HOST_DEVICE acc_t fusion_weight(acc_t wh, acc_t ww, acc_t wd, int fusion) {
  if (fusion == kFusionGeometric) return cbrt_acc(wh * ww * wd);
  return (wh + ww + wd) / acc_t(3);
}

// Unnormalised ACAM value of one voxel: relu(CAM) times its fusion weight.
template <typename acc_t>
WSLS_HOST_DEVICE acc_t acam_value(acc_t cam, acc_t weight) {
  return cam > acc_t(0) ? cam * weight : acc_t(0);
}

// Normalisation by the per-sample maximum; an all-zero map stays zero.
template <typename acc_t>
WSLS_HOST_DEVICE acc_t normalise(acc_t value, acc_t max_value) {
  return max_value > acc_t(0) ? value / max_value : acc_t(0);
}

// Backward through one slice l of an axis, for d(loss)/d(logit) = grad_logit:
//   d/dz_l = grad_logit / 3 * s_l                        (class-score path), returned in *c
//   d/dg_l = grad_logit / 3 * s_l * (z_l - sum_m s_m z_m) (attention path), returned in *e
// so that d/dP_l[k] = c * w_cls[k] + e * w_att[axis][k].
template <typename acc_t>
WSLS_HOST_DEVICE void slice_grad_coeffs(acc_t grad_logit, acc_t s, acc_t z, acc_t sz, acc_t* c,
                                        acc_t* e) {
  *c = grad_logit / acc_t(3) * s;
  *e = *c * (z - sz);
}

}  // namespace attention_cam
}  // namespace wsls
