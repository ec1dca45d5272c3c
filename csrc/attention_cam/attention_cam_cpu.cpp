// CPU kernels of attention_cam: one parallel pass over the features computes the CAM and the three
// axis poolings; the per-sample softmax, logits and ACAM follow on the small pooled data.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../cpu_isa.h"
#include "attention_cam_glue.h"

namespace wsls {
namespace attention_cam {
namespace {

// 32-byte vectors (GCC/clang vector extensions): AVX registers in the AVX2 build of the hot loop,
// pairs of SSE registers in the portable one.
template <typename acc_t>
struct Vec;
template <>
struct Vec<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct Vec<double> {
  typedef double type __attribute__((vector_size(32)));
};

template <typename V, typename acc_t, typename T>
WSLS_ALWAYS_INLINE V load_vec(const T* p) {
  V v;
  if constexpr (std::is_same_v<T, acc_t>) {
    std::memcpy(&v, p, sizeof(V));
  } else {
    for (size_t j = 0; j < sizeof(V) / sizeof(acc_t); ++j) v[j] = static_cast<acc_t>(p[j]);
  }
  return v;
}

template <typename V>
WSLS_ALWAYS_INLINE void store_vec(void* p, const V& v) {
  std::memcpy(p, &v, sizeof(V));
}

// The hot loop. For G channels of sample b and rows h in [h0, h1): adds the channels' CAM
// contributions to cam (the sample's H x W x D map), each channel's values summed over h to
// S (G x W*D), and writes each row's slab sum to row_sums[h * K + g].
template <int G, typename T, typename acc_t>
WSLS_ALWAYS_INLINE void pool_group(const T* __restrict__ x0, int64_t channel_stride, int64_t h0,
                                   int64_t h1, int64_t WD, const acc_t* __restrict__ wc,
                                   acc_t* __restrict__ cam, acc_t* __restrict__ S,
                                   acc_t* __restrict__ row_sums, int64_t K) {
  using V = typename Vec<acc_t>::type;
  constexpr int N = sizeof(V) / sizeof(acc_t);
  V w[G];
  for (int g = 0; g < G; ++g) w[g] = V{} + wc[g];
  for (int64_t h = h0; h < h1; ++h) {
    const T* x = x0 + h * WD;
    acc_t* c = cam + h * WD;
    V tot[G];
    acc_t tail[G];
    for (int g = 0; g < G; ++g) {
      tot[g] = V{};
      tail[g] = 0;
    }
    int64_t i = 0;
    for (; i + N <= WD; i += N) {
      V cv = load_vec<V, acc_t>(c + i);
      for (int g = 0; g < G; ++g) {
        const V v = load_vec<V, acc_t>(x + g * channel_stride + i);
        cv += w[g] * v;
        store_vec(S + g * WD + i, load_vec<V, acc_t>(S + g * WD + i) + v);
        tot[g] += v;
      }
      store_vec(c + i, cv);
    }
    for (; i < WD; ++i) {
      for (int g = 0; g < G; ++g) {
        const acc_t v = static_cast<acc_t>(x[g * channel_stride + i]);
        c[i] += w[g][0] * v;
        S[g * WD + i] += v;
        tail[g] += v;
      }
    }
    for (int g = 0; g < G; ++g) {
      acc_t t = tail[g];
      for (int j = 0; j < N; ++j) t += tot[g][j];
      row_sums[h * K + g] = t;
    }
  }
}

// Feature gradient of one channel: out[h, w, d] = a[h] + (a[H + w] + a[H + W + d]) with a the
// per-slice terms (H + W + D); pattern is W * D scratch.
template <typename T, typename acc_t>
WSLS_ALWAYS_INLINE void write_channel_grad(const acc_t* __restrict__ a, int64_t H, int64_t W,
                                           int64_t D, acc_t* __restrict__ pattern,
                                           T* __restrict__ out) {
  const int64_t WD = W * D;
  for (int64_t w = 0; w < W; ++w) {
    for (int64_t d = 0; d < D; ++d) pattern[w * D + d] = a[H + w] + a[H + W + d];
  }
  for (int64_t h = 0; h < H; ++h) {
    const acc_t ah = a[h];
    T* __restrict__ o = out + h * WD;
    for (int64_t i = 0; i < WD; ++i) o[i] = static_cast<T>(ah + pattern[i]);
  }
}

// Adds the W-sums (over d) and D-sums (over w) of one channel's W x D map S to dst[j * K]
// (j < W: W-slices, then D-slices).
template <typename acc_t>
void reduce_slab(const acc_t* S, int64_t W, int64_t D, acc_t* dst, int64_t K) {
  for (int64_t w = 0; w < W; ++w) {
    acc_t s = 0;
    for (int64_t d = 0; d < D; ++d) s += S[w * D + d];
    dst[w * K] += s;
  }
  for (int64_t d = 0; d < D; ++d) {
    acc_t s = 0;
    for (int64_t w = 0; w < W; ++w) s += S[w * D + d];
    dst[(W + d) * K] += s;
  }
}

// Rows (b, h) of the features are split into contiguous chunks, one per thread. A chunk owns the
// CAM and the H-pooling of its rows outright. The W- and D-poolings of a sample sum over all its
// rows: the chunk holding the sample's first row adds its sums to the output directly; a chunk
// starting inside a sample keeps that sample's sums in its slot, added afterwards in chunk order.
// Returns whether every logit is finite (read in host memory: no synchronisation, no tensor op).
template <typename T>
bool forward_impl(const at::Tensor& features, const at::Tensor& cls_weight,
                  const at::Tensor& cls_bias, const at::Tensor& att_weight, int fusion,
                  const Sizes& sz, ForwardResult& out) {
  using acc_t = at::opmath_type<T>;
  const int64_t B = sz.B, K = sz.K, H = sz.H, W = sz.W, D = sz.D, L = sz.L();
  const int64_t WD = W * D, WpD = W + D, HWD = sz.voxels(), rows = B * H;
  auto& [logits, cam, acam, scores_h, scores_w, scores_d, pooled] = out;
  pooled.zero_();
  if (B == 0) return true;

  const T* F = features.data_ptr<T>();
  const at::Tensor wc_acc = cls_weight.to(pooled.scalar_type());
  const acc_t* wc = wc_acc.data_ptr<acc_t>();
  acc_t* P = pooled.data_ptr<acc_t>();
  // The CAM accumulates in acc_t: directly in the output when that is acc_t already.
  constexpr bool kCamIsAcc = std::is_same<T, acc_t>::value;
  at::Tensor cam_acc_t = kCamIsAcc ? cam : at::empty({B, H, W, D}, pooled.options());
  cam_acc_t.zero_();
  acc_t* cam_acc = cam_acc_t.data_ptr<acc_t>();

  // Scratch stays within about 10 % of the outputs: channel groups of G (the per-chunk sums over
  // h, G x W x D) and blocks of kb channels (the per-chunk slot, kb x (W + D)).
  const int64_t n_chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows));
  const int64_t budget = (2 * B * HWD + B * L * (K + 1) + B) / 20;  // 5 % each, in elements
  const int G = budget >= 4 * n_chunks * WD ? 4 : (budget >= 2 * n_chunks * WD ? 2 : 1);
  const int64_t kb = std::min(K, std::max<int64_t>(16, budget / (n_chunks * WpD)));
  at::Tensor sums_t = at::empty({n_chunks, G, WD}, pooled.options());
  at::Tensor slots_t = at::empty({n_chunks, kb, WpD}, pooled.options());
  acc_t* sums = sums_t.data_ptr<acc_t>();
  acc_t* slots = slots_t.data_ptr<acc_t>();
  auto run_group = [&](int g, const T* x0, int64_t h0, int64_t h1, const acc_t* w, acc_t* cam_b,
                       acc_t* S, acc_t* row_sums) {
    const int64_t cs = H * WD;
    run_with_best_isa([&]() WSLS_INLINE_LAMBDA {
      if (g == 4) {
        pool_group<4, T, acc_t>(x0, cs, h0, h1, WD, w, cam_b, S, row_sums, K);
      } else if (g == 2) {
        pool_group<2, T, acc_t>(x0, cs, h0, h1, WD, w, cam_b, S, row_sums, K);
      } else {
        pool_group<1, T, acc_t>(x0, cs, h0, h1, WD, w, cam_b, S, row_sums, K);
      }
    });
  };

  for (int64_t k0 = 0; k0 < K; k0 += kb) {
    const int64_t kn = std::min(kb, K - k0);
    at::parallel_for(0, n_chunks, 1, [&](int64_t c_begin, int64_t c_end) {
      for (int64_t c = c_begin; c < c_end; ++c) {
        const int64_t r0 = rows * c / n_chunks, r1 = rows * (c + 1) / n_chunks;
        acc_t* S = sums + c * G * WD;
        acc_t* slot = slots + c * kb * WpD;
        for (int64_t r = r0; r < r1;) {
          const int64_t b = r / H, h0 = r % H, h1 = std::min(r1 - b * H, H);
          if (h0 != 0) std::fill(slot, slot + kn * WpD, acc_t(0));
          for (int64_t kl = 0; kl < kn;) {
            const int g = static_cast<int>(std::min<int64_t>(G, kn - kl));
            const int64_t k = k0 + kl;
            std::fill(S, S + g * WD, acc_t(0));
            run_group(g == 3 ? 2 : g, F + (b * K + k) * H * WD, h0, h1, wc + k, cam_acc + b * HWD,
                      S, P + b * L * K + k);
            const int done = g == 3 ? 2 : g;
            for (int gi = 0; gi < done; ++gi) {
              if (h0 == 0) {
                reduce_slab(S + gi * WD, W, D, P + (b * L + H) * K + k + gi, K);
              } else {
                reduce_slab(S + gi * WD, W, D, slot + kl + gi, kb);
              }
            }
            kl += done;
          }
          r = b * H + h1;
        }
      }
    });
    for (int64_t c = 0; c < n_chunks; ++c) {  // chunks starting inside a sample, in order
      const int64_t r0 = rows * c / n_chunks;
      if (r0 % H == 0) continue;
      const int64_t b = r0 / H;
      const acc_t* slot = slots + c * kb * WpD;
      for (int64_t j = 0; j < WpD; ++j) {
        for (int64_t kl = 0; kl < kn; ++kl) P[(b * L + H + j) * K + k0 + kl] += slot[j * kb + kl];
      }
    }
  }

  // Sums to means, then the small per-sample part: softmax, logits, ACAM.
  const acc_t inv[3] = {acc_t(1) / acc_t(W * D), acc_t(1) / acc_t(H * D), acc_t(1) / acc_t(H * W)};
  const acc_t bias = static_cast<acc_t>(cls_bias.data_ptr<T>()[0]);  // contiguous, one value
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
            const acc_t a =
                acam_value(cb[i], fusion_weight(wts[h], wts[H + w], wts[H + W + d], fusion));
            m = a > m ? a : m;
          }
        }
      }
      for (int64_t h = 0, i = 0; h < H; ++h) {
        for (int64_t w = 0; w < W; ++w) {
          for (int64_t d = 0; d < D; ++d, ++i) {
            const acc_t a =
                acam_value(cb[i], fusion_weight(wts[h], wts[H + w], wts[H + W + d], fusion));
            acam_out[b * HWD + i] = static_cast<T>(normalise(a, m));
            if (!kCamIsAcc) cam_out[b * HWD + i] = static_cast<T>(cb[i]);
          }
        }
      }
    }
  });
  bool finite = true;
  for (int64_t b = 0; b < B; ++b) finite &= std::isfinite(static_cast<double>(lg[b]));
  return finite;
}

template <typename T>
void backward_impl(const at::Tensor& grad_logits, const at::Tensor& pooled,
                   const at::Tensor& cls_weight, const at::Tensor& att_weight, const Sizes& sz,
                   at::Tensor& grad_features, at::Tensor& grad_cls_weight,
                   at::Tensor& grad_cls_bias, at::Tensor& grad_att_weight) {
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
        for (int64_t l = begin; l < begin + n; ++l)
          slice_terms(Pb + l * K, wa + axis * K, wc, K, &g[l], &z[l]);
        const acc_t sz_axis = axis_softmax(&g[begin], &z[begin], n, &s[begin]);
        for (int64_t l = begin; l < begin + n; ++l) {
          slice_grad_coeffs(gl, s[l], z[l], sz_axis, &c[l], &e[l]);
          const acc_t* p = Pb + l * K;
          for (int64_t k = 0; k < K; ++k) {
            const acc_t dp =
                c[l] * static_cast<acc_t>(wc[k]) + e[l] * static_cast<acc_t>(wa[axis * K + k]);
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

  // Feature gradient: dF[b,k,h,w,d] = aH[h] + (aW[w] + aD[d]), a write-only pass; the bracket
  // is one W x D pattern per (b, k), in a per-thread buffer.
  T* gF = grad_features.data_ptr<T>();
  const int64_t WD = W * D;
  at::Tensor pattern_t = at::empty({at::get_num_threads(), WD}, pooled.options());
  acc_t* patterns = pattern_t.data_ptr<acc_t>();
  at::parallel_for(0, B * K, 1, [&](int64_t bk0, int64_t bk1) {
    acc_t* pattern = patterns + at::get_thread_num() * WD;
    for (int64_t bk = bk0; bk < bk1; ++bk) {
      const acc_t* a = slice_grad + bk * L;
      T* out = gF + bk * H * WD;
      run_with_best_isa(
          [&]() WSLS_INLINE_LAMBDA { write_channel_grad<T, acc_t>(a, H, W, D, pattern, out); });
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
  const at::Tensor b = cls_bias.contiguous();
  ForwardResult out = allocate_forward(features, sz);
  bool finite = true;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, f.scalar_type(), "attention_cam_cpu",
      [&] { finite = forward_impl<scalar_t>(f, wc, b, wa, fusion_id, sz, out); });
  if (!finite) raise_non_finite(cls_weight, cls_bias, att_weight);
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
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, wc.scalar_type(), "attention_cam_backward_cpu", [&] {
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
