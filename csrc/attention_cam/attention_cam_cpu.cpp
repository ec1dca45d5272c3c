// CPU kernels of attention_cam: one parallel pass over the features computes the CAM and the three
// axis poolings; the per-sample softmax, logits and ACAM follow on the small pooled data.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "attention_cam_glue.h"

namespace wsls {
namespace attention_cam {
namespace {

// Sum of n contiguous values in independent lanes, so the loop vectorises without reassociation.
template <typename acc_t, typename T>
inline acc_t row_sum(const T* x, int64_t n) {
  constexpr int kLanes = 8;
  acc_t lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lane[j] += static_cast<acc_t>(x[i + j]);
  }
  acc_t s = 0;
  for (int j = 0; j < kLanes; ++j) s += lane[j];
  for (; i < n; ++i) s += static_cast<acc_t>(x[i]);
  return s;
}

// Rows (b, h) of the features are split into contiguous chunks, one per thread. A chunk owns the
// CAM and the H-pooling of its rows outright; the W- and D-poolings of a sample sum over all its
// rows, so a sample cut by a chunk boundary gets per-chunk partial sums, added in chunk order.
struct Chunk {
  int64_t r0, r1;          // rows [r0, r1) of B * H
  int64_t first_b, last_b; // samples of its first and last segment
  bool first_partial, last_partial;
};

inline Chunk make_chunk(int64_t c, int64_t n_chunks, int64_t rows, int64_t H) {
  Chunk ch;
  ch.r0 = rows * c / n_chunks;
  ch.r1 = rows * (c + 1) / n_chunks;
  ch.first_b = ch.r0 / H;
  ch.last_b = (ch.r1 - 1) / H;
  ch.first_partial = ch.r0 % H != 0 || ch.r1 < (ch.first_b + 1) * H;
  ch.last_partial = ch.last_b != ch.first_b && ch.r1 % H != 0;
  return ch;
}

template <typename T>
void forward_impl(const at::Tensor& features, const at::Tensor& cls_weight, const at::Tensor& cls_bias,
                  const at::Tensor& att_weight, int fusion, const Sizes& sz, ForwardResult& out) {
  using acc_t = at::opmath_type<T>;
  const int64_t B = sz.B, K = sz.K, H = sz.H, W = sz.W, D = sz.D, L = sz.L();
  const int64_t WD = W * D, WpD = W + D, HWD = sz.voxels(), rows = B * H;
  auto& [logits, cam, acam, scores_h, scores_w, scores_d, pooled] = out;
  pooled.zero_();
  if (B == 0) return;

  const T* F = features.data_ptr<T>();
  const at::Tensor wc_acc = cls_weight.to(pooled.scalar_type());
  const acc_t* wc = wc_acc.data_ptr<acc_t>();
  acc_t* P = pooled.data_ptr<acc_t>();
  // The CAM accumulates in acc_t: directly in the output when that is acc_t already.
  constexpr bool kCamIsAcc = std::is_same<T, acc_t>::value;
  at::Tensor cam_acc_t = kCamIsAcc ? cam : at::empty({B, H, W, D}, pooled.options());
  cam_acc_t.zero_();
  acc_t* cam_acc = cam_acc_t.data_ptr<acc_t>();

  const int64_t n_chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows));
  // Channels go in blocks so that the partial sums stay within about 5 % of the outputs' size.
  const int64_t out_elems = 2 * B * HWD + B * L * (K + 1) + B;
  const int64_t kb = std::min(K, std::max<int64_t>(16, out_elems / 20 / (3 * n_chunks * WpD)));
  at::Tensor scratch_t = at::empty({n_chunks, 3, kb, WpD}, pooled.options());
  acc_t* scratch = scratch_t.data_ptr<acc_t>();

  for (int64_t k0 = 0; k0 < K; k0 += kb) {
    const int64_t kn = std::min(kb, K - k0);
    at::parallel_for(0, n_chunks, 1, [&](int64_t c_begin, int64_t c_end) {
      for (int64_t c = c_begin; c < c_end; ++c) {
        const Chunk ch = make_chunk(c, n_chunks, rows, H);
        acc_t* slots = scratch + c * 3 * kb * WpD;
        for (int64_t r = ch.r0; r < ch.r1;) {
          const int64_t b = r / H;
          const int64_t seg_end = std::min(ch.r1, (b + 1) * H);
          const bool partial = (b == ch.first_b && ch.first_partial) ||
                               (b == ch.last_b && ch.last_partial);
          acc_t* buf = slots + (partial ? (b == ch.first_b ? 0 : 1) : 2) * kb * WpD;
          std::fill(buf, buf + kn * WpD, acc_t(0));
          for (; r < seg_end; ++r) {
            const int64_t h = r % H;
            acc_t* cam_row = cam_acc + r * WD;
            for (int64_t kl = 0; kl < kn; ++kl) {
              const int64_t k = k0 + kl;
              const T* slab = F + ((b * K + k) * H + h) * WD;
              const acc_t wk = wc[k];
              acc_t* acc_w = buf + kl * WpD;
              acc_t* acc_d = acc_w + W;
              acc_t total = 0;
              for (int64_t w = 0; w < W; ++w) {
                const T* row = slab + w * D;
                acc_t* cam_w = cam_row + w * D;
                for (int64_t d = 0; d < D; ++d) {
                  const acc_t v = static_cast<acc_t>(row[d]);
                  cam_w[d] += wk * v;
                  acc_d[d] += v;
                }
                const acc_t rs = row_sum<acc_t>(row, D);
                acc_w[w] += rs;
                total += rs;
              }
              P[(b * L + h) * K + k] = total;
            }
          }
          if (!partial) {  // the chunk holds the whole sample: its W/D sums are final
            for (int64_t kl = 0; kl < kn; ++kl) {
              for (int64_t j = 0; j < WpD; ++j) P[(b * L + H + j) * K + k0 + kl] = buf[kl * WpD + j];
            }
          }
        }
      }
    });
    for (int64_t c = 0; c < n_chunks; ++c) {  // samples cut by chunk boundaries, in chunk order
      const Chunk ch = make_chunk(c, n_chunks, rows, H);
      for (int slot = 0; slot < 2; ++slot) {
        if (!(slot == 0 ? ch.first_partial : ch.last_partial)) continue;
        const int64_t b = slot == 0 ? ch.first_b : ch.last_b;
        const acc_t* buf = scratch + (c * 3 + slot) * kb * WpD;
        for (int64_t kl = 0; kl < kn; ++kl) {
          for (int64_t j = 0; j < WpD; ++j) P[(b * L + H + j) * K + k0 + kl] += buf[kl * WpD + j];
        }
      }
    }
  }

  // Sums to means, then the small per-sample part: softmax, logits, ACAM.
  const acc_t inv[3] = {acc_t(1) / acc_t(W * D), acc_t(1) / acc_t(H * D), acc_t(1) / acc_t(H * W)};
  const acc_t bias = static_cast<acc_t>(cls_bias.reshape({1})[0].item<double>());
  const T* wa = att_weight.data_ptr<T>();
  const T* wct = cls_weight.data_ptr<T>();
  T* lg = logits.data_ptr<T>();
  T* cam_out = cam.data_ptr<T>();
  T* acam_out = acam.data_ptr<T>();
  T* s_out[3] = {scores_h.data_ptr<T>(), scores_w.data_ptr<T>(), scores_d.data_ptr<T>()};
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<acc_t> g(L), z(L), s(L), wts(L);
    for (int64_t b = b0; b < b1; ++b) {
      acc_t* Pb = P + b * L * K;
      acc_t sz_axis[3];
      for (int axis = 0; axis < 3; ++axis) {
        const int64_t begin = axis_begin(axis, H, W), n = axis_len(axis, H, W, D);
        for (int64_t l = begin; l < begin + n; ++l) {
          acc_t* p = Pb + l * K;
          for (int64_t k = 0; k < K; ++k) p[k] *= inv[axis];
          slice_terms(p, wa + axis * K, wct, K, &g[l], &z[l]);
        }
        sz_axis[axis] = axis_softmax(&g[begin], &z[begin], n, &s[begin]);
        for (int64_t l = begin; l < begin + n; ++l) {
          s_out[axis][b * n + l - begin] = static_cast<T>(s[l]);
          wts[l] = acc_t(n) * s[l];
        }
      }
      lg[b] = static_cast<T>(image_logit(bias, sz_axis[0], sz_axis[1], sz_axis[2]));
      const acc_t* cb = cam_acc + b * HWD;
      acc_t m = 0;
      for (int64_t h = 0, i = 0; h < H; ++h) {
        for (int64_t w = 0; w < W; ++w) {
          for (int64_t d = 0; d < D; ++d, ++i) {
            const acc_t a = acam_value(cb[i], fusion_weight(wts[h], wts[H + w], wts[H + W + d], fusion));
            m = a > m ? a : m;
          }
        }
      }
      for (int64_t h = 0, i = 0; h < H; ++h) {
        for (int64_t w = 0; w < W; ++w) {
          for (int64_t d = 0; d < D; ++d, ++i) {
            const acc_t a = acam_value(cb[i], fusion_weight(wts[h], wts[H + w], wts[H + W + d], fusion));
            acam_out[b * HWD + i] = static_cast<T>(normalise(a, m));
            if (!kCamIsAcc) cam_out[b * HWD + i] = static_cast<T>(cb[i]);
          }
        }
      }
    }
  });
}

template <typename T>
void backward_impl(const at::Tensor& grad_logits, const at::Tensor& pooled, const at::Tensor& cls_weight,
                   const at::Tensor& att_weight, const Sizes& sz, at::Tensor& grad_features,
                   at::Tensor& grad_cls_weight, at::Tensor& grad_cls_bias, at::Tensor& grad_att_weight) {
  using acc_t = at::opmath_type<T>;
  const int64_t B = sz.B, K = sz.K, H = sz.H, W = sz.W, D = sz.D, L = sz.L();
  const T* go = grad_logits.data_ptr<T>();
  const acc_t* P = pooled.data_ptr<acc_t>();
  const T* wc = cls_weight.data_ptr<T>();
  const T* wa = att_weight.data_ptr<T>();
  // Per sample: feature-gradient terms per slice, transposed to (K, L), and the weight gradients.
  at::Tensor slice_grad_t = at::empty({B, K, L}, pooled.options());
  at::Tensor weight_grad_t = at::empty({B, 4, K}, pooled.options());  // w_cls, then w_att rows
  acc_t* slice_grad = slice_grad_t.data_ptr<acc_t>();
  acc_t* weight_grad = weight_grad_t.data_ptr<acc_t>();
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<acc_t> g(L), z(L), s(L), c(L), e(L);
    for (int64_t b = b0; b < b1; ++b) {
      const acc_t* Pb = P + b * L * K;
      const acc_t gl = static_cast<acc_t>(go[b]);
      acc_t* wg = weight_grad + b * 4 * K;
      std::fill(wg, wg + 4 * K, acc_t(0));
      for (int axis = 0; axis < 3; ++axis) {
        const int64_t begin = axis_begin(axis, H, W), n = axis_len(axis, H, W, D);
        const acc_t inv_count = acc_t(1) / acc_t(slice_count(axis, H, W, D));
        for (int64_t l = begin; l < begin + n; ++l) slice_terms(Pb + l * K, wa + axis * K, wc, K, &g[l], &z[l]);
        const acc_t sz_axis = axis_softmax(&g[begin], &z[begin], n, &s[begin]);
        for (int64_t l = begin; l < begin + n; ++l) {
          slice_grad_coeffs(gl, s[l], z[l], sz_axis, &c[l], &e[l]);
          const acc_t* p = Pb + l * K;
          for (int64_t k = 0; k < K; ++k) {
            const acc_t dp = c[l] * static_cast<acc_t>(wc[k]) + e[l] * static_cast<acc_t>(wa[axis * K + k]);
            slice_grad[(b * K + k) * L + l] = dp * inv_count;
            wg[k] += c[l] * p[k];
            wg[(1 + axis) * K + k] += e[l] * p[k];
          }
        }
      }
    }
  });
  // Weight gradients: sum over samples in order (deterministic).
  acc_t bias_sum = 0;
  std::vector<acc_t> wsum(4 * K, acc_t(0));
  for (int64_t b = 0; b < B; ++b) {
    bias_sum += static_cast<acc_t>(go[b]);
    for (int64_t j = 0; j < 4 * K; ++j) wsum[j] += weight_grad[b * 4 * K + j];
  }
  T* gwc = grad_cls_weight.data_ptr<T>();
  T* gwa = grad_att_weight.data_ptr<T>();
  for (int64_t k = 0; k < K; ++k) gwc[k] = static_cast<T>(wsum[k]);
  for (int64_t j = 0; j < 3 * K; ++j) gwa[j] = static_cast<T>(wsum[K + j]);
  grad_cls_bias.data_ptr<T>()[0] = static_cast<T>(bias_sum);

  // Feature gradient: dF[b,k,h,w,d] = aH[h] + aW[w] + aD[d], a write-only pass.
  T* gF = grad_features.data_ptr<T>();
  const int64_t WD = W * D;
  at::parallel_for(0, B * K * H, std::max<int64_t>(1, 4096 / std::max<int64_t>(WD, 1)),
                   [&](int64_t r0, int64_t r1) {
                     for (int64_t r = r0; r < r1; ++r) {
                       const int64_t bk = r / H, h = r % H;
                       const acc_t* a = slice_grad + bk * L;
                       const acc_t* a_w = a + H;
                       const acc_t* a_d = a + H + W;
                       T* out = gF + r * WD;
                       for (int64_t w = 0; w < W; ++w) {
                         const acc_t base = a[h] + a_w[w];
                         T* o = out + w * D;
                         for (int64_t d = 0; d < D; ++d) o[d] = static_cast<T>(base + a_d[d]);
                       }
                     }
                   });
}

ForwardResult attention_cam_cpu(const at::Tensor& features, const at::Tensor& cls_weight,
                                const at::Tensor& cls_bias, const at::Tensor& att_weight,
                                c10::string_view fusion) {
  const int fusion_id = parse_fusion(fusion);
  const Sizes sz = check_forward_inputs(features, cls_weight, cls_bias, att_weight);
  const at::Tensor f = features.contiguous();
  const at::Tensor wc = cls_weight.contiguous();
  const at::Tensor wa = att_weight.contiguous();
  ForwardResult out = allocate_forward(features, sz);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "attention_cam_cpu", [&] {
    forward_impl<scalar_t>(f, wc, cls_bias, wa, fusion_id, sz, out);
  });
  check_finite_logits(std::get<0>(out), cls_weight, cls_bias, att_weight);
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> attention_cam_backward_cpu(
    const at::Tensor& grad_logits, const at::Tensor& pooled, const at::Tensor& cls_weight,
    const at::Tensor& att_weight, int64_t H, int64_t W, int64_t D) {
  const Sizes sz = check_backward_inputs(grad_logits, pooled, cls_weight, att_weight, H, W, D);
  const at::Tensor go = grad_logits.contiguous();
  const at::Tensor p = pooled.contiguous();
  const at::Tensor wc = cls_weight.contiguous();
  const at::Tensor wa = att_weight.contiguous();
  const auto opts = cls_weight.options();
  at::Tensor grad_features = at::empty({sz.B, sz.K, H, W, D}, opts);
  at::Tensor grad_cls_weight = at::empty({sz.K}, opts);
  at::Tensor grad_cls_bias = at::empty({1}, opts);
  at::Tensor grad_att_weight = at::empty({3, sz.K}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, wc.scalar_type(), "attention_cam_backward_cpu", [&] {
    backward_impl<scalar_t>(go, p, wc, wa, sz, grad_features, grad_cls_weight, grad_cls_bias,
                            grad_att_weight);
  });
  return {grad_features, grad_cls_weight, grad_cls_bias, grad_att_weight};
}

}  // namespace

TORCH_LIBRARY_IMPL(wsls, CPU, m) {
  m.impl("attention_cam", &attention_cam_cpu);
  m.impl("attention_cam_backward", &attention_cam_backward_cpu);
}

}  // namespace attention_cam
}  // namespace wsls
