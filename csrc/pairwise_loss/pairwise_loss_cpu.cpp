// CPU kernels of pairwise_affinity_loss. Square tiles of kBlockRows x kCols pairs inside a group,
// only on or above the diagonal (each unordered pair once, q > p). Per tile:
//   phase A: squared distances from the norms and a dot-product micro-kernel (4 rows x 8 columns
//            of AVX2 lanes), then the shared per-pair math (pairwise_loss_math.h) on whole vectors:
//            the weighted loss (forward) or the weighted d loss / d d2 of every pair, kept in a
//            tile buffer C (backward);
//   phase B (backward): grad_p += rowsum_p f_p - sum_q C[p][q] f_q and
//            grad_q += colsum_q f_q - sum_p C[p][q] f_p, two small register-blocked GEMMs.
// The hot loops are GCC vector code compiled twice (AVX2 + FMA, chosen at run time, and the
// portable baseline), see cpu_isa.h. Work is split over threads in chunks of row blocks with
// balanced pair counts. The forward sums per row block in double, then over blocks in order; the
// backward gives each chunk its own gradient buffer (as many chunks as threads, within 256 MB of
// buffers), added in chunk order: both are deterministic (for a given number of threads, in the
// backward's case).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "../cpu_isa.h"
#include "pairwise_loss_glue.h"

namespace wsls {
namespace pairwise_loss {
namespace {

constexpr int kR = 4;                  // rows per micro-block of phase A and of the row GEMM
constexpr int kQ = 4;                  // columns per micro-block of the column GEMM
constexpr int64_t kCols = kBlockRows;  // columns per tile
constexpr int64_t kBufferBudget = int64_t(256) << 20;  // bytes of per-chunk gradient buffers

// 32-byte vectors (GCC vector extensions): AVX registers in the AVX2 + FMA build of the hot loops,
// pairs of SSE registers in the portable one. These are the traits (Tr) of pairwise_loss_math.h,
// plus the loads of class ids and the lane indices. (An AVX-512 build of the same loops was
// measured on a Zen 5 core: 12 % faster forward, 70 % slower backward, so it is not used.)
template <typename acc_t>
struct Vec;

template <>
struct Vec<float> {
  typedef float V __attribute__((vector_size(32)));
  typedef int32_t I __attribute__((vector_size(32)));
  using lane_t = int32_t;
  static constexpr int W = 8;
  static WSLS_ALWAYS_INLINE V splat(double x) { return V{} + static_cast<float>(x); }
  static WSLS_ALWAYS_INLINE I as_int(V x) { return (I)x; }
  static WSLS_ALWAYS_INLINE V as_float(I i) { return (V)i; }
  static WSLS_ALWAYS_INLINE I to_int(V x) { return __builtin_convertvector(x, I); }
  static WSLS_ALWAYS_INLINE V to_float(I i) { return __builtin_convertvector(i, V); }
  static WSLS_ALWAYS_INLINE V expm1(V x) { return expm1_poly<Vec>(x); }
  static WSLS_ALWAYS_INLINE V log(V x) { return log_poly<Vec>(x); }
  static WSLS_ALWAYS_INLINE V div(V a, V b) { return a / b; }
  static WSLS_ALWAYS_INLINE I load_cls(const int32_t* p) {
    I v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  }
  static WSLS_ALWAYS_INLINE I lane_index() { return I{0, 1, 2, 3, 4, 5, 6, 7}; }
};

template <>
struct Vec<double> {
  typedef double V __attribute__((vector_size(32)));
  typedef int64_t I __attribute__((vector_size(32)));
  typedef int32_t I32 __attribute__((vector_size(16)));
  using lane_t = int64_t;
  static constexpr int W = 4;
  static WSLS_ALWAYS_INLINE V splat(double x) { return V{} + x; }
  static WSLS_ALWAYS_INLINE V div(V a, V b) { return a / b; }
  static WSLS_ALWAYS_INLINE V expm1(V x) {
    for (int j = 0; j < W; ++j) x[j] = std::expm1(x[j]);
    return x;
  }
  static WSLS_ALWAYS_INLINE V log(V x) {
    for (int j = 0; j < W; ++j) x[j] = std::log(x[j]);
    return x;
  }
  static WSLS_ALWAYS_INLINE I load_cls(const int32_t* p) {
    I32 v;
    std::memcpy(&v, p, sizeof(v));
    return __builtin_convertvector(v, I);
  }
  static WSLS_ALWAYS_INLINE I lane_index() { return I{0, 1, 2, 3}; }
};

template <typename V, typename acc_t>
WSLS_ALWAYS_INLINE V load(const acc_t* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V>
WSLS_ALWAYS_INLINE void store(void* p, const V& v) {
  std::memcpy(p, &v, sizeof(V));
}

template <typename V>
WSLS_ALWAYS_INLINE double hsum(const V& v) {
  double s = 0;
  for (size_t j = 0; j < sizeof(V) / sizeof(v[0]); ++j) s += v[j];
  return s;
}

// The prepared problem as the CPU kernels read it.
template <typename acc_t>
struct Tiles {
  const acc_t* F;         // (padded rows, dim) row-major
  const acc_t* FT;        // (dim, padded rows): the same, transposed (vector loads of columns)
  const acc_t* norms;     // (padded rows)
  const int32_t* cls;     // (padded rows)
  int64_t ld_t;           // padded rows: the row stride of FT
  int64_t dim;            // padded features, a multiple of the vector width
  double w_same, w_diff;  // per ordered pair (times 4 x incoming gradient in the backward)
  double eps;
};

// First column panel of the tile that holds a pair (p, q > p) for a row p >= p0.
WSLS_ALWAYS_INLINE int64_t first_panel(int64_t p0, int64_t c0, int W) {
  return p0 < c0 ? c0 : c0 + (p0 + 1 - c0) / W * W;
}

// Phase A for kR rows from p0 and the W columns from q0: dot[r] = <f_{p0+r}, f_q> per lane.
template <typename Tr, typename acc_t>
WSLS_ALWAYS_INLINE void dot_block(const Tiles<acc_t>& P, int64_t p0, int64_t q0,
                                  typename Tr::V (&dot)[kR]) {
  using V = typename Tr::V;
  const acc_t* __restrict__ ft = P.FT + q0;
  const acc_t* __restrict__ fp = P.F + p0 * P.dim;
  for (int r = 0; r < kR; ++r) dot[r] = V{};
  for (int64_t k = 0; k < P.dim; ++k) {
    const V f = load<V>(ft + k * P.ld_t);
    for (int r = 0; r < kR; ++r) dot[r] += fp[r * P.dim + k] * f;
  }
}

// d2 of row p and the W columns from q0 from the differences of their features.
template <typename Tr, typename acc_t>
WSLS_ALWAYS_INLINE typename Tr::V exact_distance(const Tiles<acc_t>& P, int64_t p, int64_t q0) {
  using V = typename Tr::V;
  const acc_t* __restrict__ ft = P.FT + q0;
  const acc_t* __restrict__ fp = P.F + p * P.dim;
  V s = V{};
  for (int64_t k = 0; k < P.dim; ++k) {
    const V d = load<V>(ft + k * P.ld_t) - fp[k];
    s += d * d;
  }
  return s;
}

template <typename I>
WSLS_ALWAYS_INLINE bool any_lane(const I& m) {
  auto acc = m[0];
  for (size_t j = 1; j < sizeof(I) / sizeof(m[0]); ++j) acc |= m[j];
  return acc != 0;
}

// Phase A for kR rows from p0 and the W columns from q0: squared distances (recomputed from the
// differences where needs_exact_distance says so) and same-class masks.
template <typename Tr, typename acc_t>
WSLS_ALWAYS_INLINE void panel_distances(const Tiles<acc_t>& P, int64_t p0, int64_t q0,
                                        typename Tr::V (&d2)[kR], typename Tr::I (&same)[kR]) {
  using V = typename Tr::V;
  using I = typename Tr::I;
  using lane_t = typename Tr::lane_t;
  V dot[kR];
  dot_block<Tr>(P, p0, q0, dot);
  const V nq = load<V>(P.norms + q0);
  const I cq = Tr::load_cls(P.cls + q0);
  I near[kR];
  I near_any = I{};
  for (int r = 0; r < kR; ++r) {
    const V np = Tr::splat(P.norms[p0 + r]);
    d2[r] = squared_distance(np, nq, dot[r]);
    same[r] = cq == static_cast<lane_t>(P.cls[p0 + r]);
    near[r] = (needs_exact_distance(d2[r], np, nq) & ~same[r]) |
              distance_overflowed(d2[r], np, nq, finite_max(acc_t(0)));
    near_any |= near[r];
  }
  if (!any_lane(near_any)) return;
  for (int r = 0; r < kR; ++r) {
    if (any_lane(near[r])) d2[r] = near[r] ? exact_distance<Tr>(P, p0 + r, q0) : d2[r];
  }
}

// Sum over the tile's pairs (p, q > p) of w(kind) * loss, for rows [r0, r1), columns [c0, c1).
template <typename Tr, typename acc_t>
WSLS_ALWAYS_INLINE double tile_loss(const Tiles<acc_t>& P, int64_t r0, int64_t r1, int64_t c0,
                                    int64_t c1) {
  using V = typename Tr::V;
  using I = typename Tr::I;
  using lane_t = typename Tr::lane_t;
  constexpr int W = Tr::W;
  const V eps = Tr::splat(P.eps), ws = Tr::splat(P.w_same), wd = Tr::splat(P.w_diff);
  const V zero = Tr::splat(0.0);
  const I lanes = Tr::lane_index();
  double total = 0;
  for (int64_t p0 = r0; p0 < r1; p0 += kR) {
    V acc = zero;
    for (int64_t q0 = first_panel(p0, c0, W); q0 < c1; q0 += W) {
      V d2[kR];
      I same[kR];
      panel_distances<Tr>(P, p0, q0, d2, same);
      const I q = lanes + static_cast<lane_t>(q0);
      for (int r = 0; r < kR; ++r) {
        const int64_t p = p0 + r;
        if (p >= r1) break;
        const auto valid = (q > static_cast<lane_t>(p)) & (q < static_cast<lane_t>(c1));
        const V loss = pair_loss<Tr>(d2[r], same[r], eps) * (same[r] ? ws : wd);
        acc += valid ? loss : zero;
      }
    }
    total += hsum(acc);
  }
  return total;
}

// Row GEMM of NV vectors of features from k0: for the kR rows i0.. of the tile,
// G[p] += rowsum[p] f_p - sum_q C[p][q] f_{c0+q}.
template <typename Tr, int NV, typename acc_t>
WSLS_ALWAYS_INLINE void row_gemm(const Tiles<acc_t>& P, const acc_t* __restrict__ C,
                                 const acc_t* __restrict__ rowsum, int64_t r0, int64_t r1,
                                 int64_t i0, int64_t c0, int64_t ncols, int64_t k0,
                                 acc_t* __restrict__ G) {
  using V = typename Tr::V;
  constexpr int W = Tr::W;
  const int64_t dim = P.dim;
  V a[kR][NV];
  for (int r = 0; r < kR; ++r)
    for (int j = 0; j < NV; ++j) a[r][j] = V{};
  const acc_t* __restrict__ fq = P.F + c0 * dim + k0;
  const acc_t* __restrict__ c = C + i0 * kCols;
  for (int64_t q = 0; q < ncols; ++q) {
    V f[NV];
    for (int j = 0; j < NV; ++j) f[j] = load<V>(fq + q * dim + j * W);
    for (int r = 0; r < kR; ++r) {
      const acc_t b = c[r * kCols + q];
      for (int j = 0; j < NV; ++j) a[r][j] += b * f[j];
    }
  }
  for (int r = 0; r < kR; ++r) {
    const int64_t p = r0 + i0 + r;
    if (p >= r1) break;
    const acc_t s = rowsum[i0 + r];
    for (int j = 0; j < NV; ++j) {
      acc_t* g = G + p * dim + k0 + j * W;
      store(g, load<V>(g) + (s * load<V>(P.F + p * dim + k0 + j * W) - a[r][j]));
    }
  }
}

// Column GEMM of NV vectors of features from k0: for the kQ columns j0.. of the tile,
// G[q] += colsum[q] f_q - sum_p C[p][q] f_p.
template <typename Tr, int NV, typename acc_t>
WSLS_ALWAYS_INLINE void col_gemm(const Tiles<acc_t>& P, const acc_t* __restrict__ C,
                                 const acc_t* __restrict__ colsum, int64_t r0, int64_t nrows,
                                 int64_t c0, int64_t c1, int64_t j0, int64_t k0,
                                 acc_t* __restrict__ G) {
  using V = typename Tr::V;
  constexpr int W = Tr::W;
  const int64_t dim = P.dim;
  V a[kQ][NV];
  for (int j = 0; j < kQ; ++j)
    for (int v = 0; v < NV; ++v) a[j][v] = V{};
  const acc_t* __restrict__ fp = P.F + r0 * dim + k0;
  for (int64_t i = 0; i < nrows; ++i) {
    V f[NV];
    for (int v = 0; v < NV; ++v) f[v] = load<V>(fp + i * dim + v * W);
    const acc_t* __restrict__ c = C + i * kCols + j0;
    for (int j = 0; j < kQ; ++j) {
      const acc_t b = c[j];
      for (int v = 0; v < NV; ++v) a[j][v] += b * f[v];
    }
  }
  for (int j = 0; j < kQ; ++j) {
    const int64_t q = c0 + j0 + j;
    if (q >= c1) break;
    const acc_t s = colsum[j0 + j];
    for (int v = 0; v < NV; ++v) {
      acc_t* g = G + q * dim + k0 + v * W;
      store(g, load<V>(g) + (s * load<V>(P.F + q * dim + k0 + v * W) - a[j][v]));
    }
  }
}

// Adds the tile's pairs' gradient to G (this chunk's buffer). C: kBlockRows x kCols scratch,
// rowsum: kBlockRows, colsum: kCols.
template <typename Tr, typename acc_t>
WSLS_ALWAYS_INLINE void tile_grad(const Tiles<acc_t>& P, int64_t r0, int64_t r1, int64_t c0,
                                  int64_t c1, acc_t* __restrict__ C, acc_t* __restrict__ rowsum,
                                  acc_t* __restrict__ colsum, acc_t* __restrict__ G) {
  using V = typename Tr::V;
  using I = typename Tr::I;
  using lane_t = typename Tr::lane_t;
  constexpr int W = Tr::W;
  const V eps = Tr::splat(P.eps), ws = Tr::splat(P.w_same), wd = Tr::splat(P.w_diff);
  const V zero = Tr::splat(0.0);
  const I lanes = Tr::lane_index();
  const int64_t ncols = (c1 - c0 + W - 1) / W * W;
  const int64_t nrows = r1 - r0;
  std::fill(colsum, colsum + ncols, acc_t(0));

  // Phase A: C[p][q] = w(kind) * d loss / d d2 for q > p, else 0.
  for (int64_t p0 = r0; p0 < r1; p0 += kR) {
    V rs[kR];
    for (int r = 0; r < kR; ++r) rs[r] = zero;
    const int64_t qbegin = first_panel(p0, c0, W);
    acc_t* __restrict__ crow = C + (p0 - r0) * kCols;
    for (int r = 0; r < kR; ++r) std::fill(crow + r * kCols, crow + r * kCols + (qbegin - c0), 0);
    for (int64_t q0 = qbegin; q0 < c1; q0 += W) {
      V d2[kR];
      I same[kR];
      panel_distances<Tr>(P, p0, q0, d2, same);
      const I q = lanes + static_cast<lane_t>(q0);
      V cs = load<V>(colsum + (q0 - c0));
      for (int r = 0; r < kR; ++r) {
        const int64_t p = p0 + r;
        V c = zero;
        if (p < r1) {
          const auto valid = (q > static_cast<lane_t>(p)) & (q < static_cast<lane_t>(c1));
          const V coef = pair_coef<Tr>(d2[r], same[r], eps) * (same[r] ? ws : wd);
          c = valid ? coef : zero;
        }
        store(crow + r * kCols + (q0 - c0), c);
        rs[r] += c;
        cs += c;
      }
      store(colsum + (q0 - c0), cs);
    }
    for (int r = 0; r < kR && p0 + r < r1; ++r)
      rowsum[p0 - r0 + r] = static_cast<acc_t>(hsum(rs[r]));
  }

  // Phase B: the two GEMMs, in chunks of 2 (then 1) vectors of features.
  for (int64_t i0 = 0; i0 < nrows; i0 += kR) {
    int64_t k0 = 0;
    for (; k0 + 2 * W <= P.dim; k0 += 2 * W)
      row_gemm<Tr, 2>(P, C, rowsum, r0, r1, i0, c0, ncols, k0, G);
    if (k0 < P.dim) row_gemm<Tr, 1>(P, C, rowsum, r0, r1, i0, c0, ncols, k0, G);
  }
  for (int64_t j0 = 0; j0 < ncols; j0 += kQ) {
    if (c0 + j0 >= c1) break;
    int64_t k0 = 0;
    for (; k0 + 2 * W <= P.dim; k0 += 2 * W)
      col_gemm<Tr, 2>(P, C, colsum, r0, nrows, c0, c1, j0, k0, G);
    if (k0 < P.dim) col_gemm<Tr, 1>(P, C, colsum, r0, nrows, c0, c1, j0, k0, G);
  }
}

// Contiguous chunks of row blocks with about equal numbers of column tiles: bounds[c] .. [c + 1].
std::vector<int64_t> balanced_chunks(const std::vector<RowBlock>& blocks, int64_t n_chunks) {
  const int64_t nb = static_cast<int64_t>(blocks.size());
  std::vector<int64_t> cum(nb + 1, 0);
  for (int64_t b = 0; b < nb; ++b) {
    cum[b + 1] = cum[b] + (blocks[b].group_end - blocks[b].row_begin + kCols - 1) / kCols;
  }
  std::vector<int64_t> bounds(n_chunks + 1, nb);
  bounds[0] = 0;
  for (int64_t c = 1; c < n_chunks; ++c) {
    const int64_t target = cum[nb] * c / n_chunks;
    bounds[c] = std::lower_bound(cum.begin(), cum.end(), target) - cum.begin();
    bounds[c] = std::max(bounds[c], bounds[c - 1]);
  }
  return bounds;
}

template <typename acc_t>
Tiles<acc_t> make_tiles(const Prepared& prep, const at::Tensor& ft, double w_same, double w_diff,
                        double eps) {
  return Tiles<acc_t>{prep.emb.data_ptr<acc_t>(),
                      ft.data_ptr<acc_t>(),
                      prep.norms.data_ptr<acc_t>(),
                      prep.cls.data_ptr<int32_t>(),
                      prep.emb.size(0),
                      prep.dim,
                      w_same,
                      w_diff,
                      eps};
}

template <typename acc_t>
double forward_impl(const Prepared& prep, const std::vector<RowBlock>& blocks, double w_same,
                    double w_diff, double eps) {
  const at::Tensor ft = prep.emb.t().contiguous();
  const Tiles<acc_t> P = make_tiles<acc_t>(prep, ft, w_same, w_diff, eps);
  const int64_t nb = static_cast<int64_t>(blocks.size());
  std::vector<double> partial(nb, 0.0);
  const int64_t n_chunks = std::min<int64_t>(nb, 4 * at::get_num_threads());
  const std::vector<int64_t> bounds = balanced_chunks(blocks, n_chunks);
  at::parallel_for(0, n_chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    for (int64_t b = bounds[chunk_begin]; b < bounds[chunk_end]; ++b) {
      const RowBlock rb = blocks[b];
      double s = 0;
      run_with_best_isa([&]() WSLS_INLINE_LAMBDA {
        for (int64_t c0 = rb.row_begin; c0 < rb.group_end; c0 += kCols) {
          const int64_t c1 = std::min(c0 + kCols, rb.group_end);
          s += tile_loss<Vec<acc_t>>(P, rb.row_begin, rb.row_end, c0, c1);
        }
      });
      partial[b] = s;
    }
  });
  double total = 0;
  for (int64_t b = 0; b < nb; ++b) total += partial[b];
  return 2.0 * total;  // each unordered pair stands for its two ordered pairs
}

// Writes the gradient of the labelled rows into out (N, K), rows in the original order.
template <typename T, typename acc_t>
void backward_impl(const Prepared& prep, const std::vector<RowBlock>& blocks, double w_same,
                   double w_diff, double eps, int64_t K, at::Tensor& out) {
  const at::Tensor ft = prep.emb.t().contiguous();
  const Tiles<acc_t> P = make_tiles<acc_t>(prep, ft, w_same, w_diff, eps);
  const int64_t nb = static_cast<int64_t>(blocks.size());
  const int64_t padded_rows = prep.emb.size(0), dim = prep.dim;
  // One gradient buffer per chunk, the chunks' buffers within kBufferBudget (but at least two).
  const int64_t buffer_bytes = padded_rows * dim * static_cast<int64_t>(sizeof(acc_t));
  const int64_t max_chunks =
      std::max<int64_t>(2, kBufferBudget / std::max<int64_t>(buffer_bytes, 1));
  const int64_t n_chunks = std::min<int64_t>({nb, at::get_num_threads(), max_chunks});
  const std::vector<int64_t> bounds = balanced_chunks(blocks, n_chunks);
  at::Tensor buffers = at::zeros({n_chunks, padded_rows, dim}, prep.emb.options());
  acc_t* bufs = buffers.data_ptr<acc_t>();
  at::parallel_for(0, n_chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    std::vector<acc_t> C(kBlockRows * kCols), rowsum(kBlockRows), colsum(kCols);
    for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
      acc_t* G = bufs + chunk * padded_rows * dim;
      for (int64_t b = bounds[chunk]; b < bounds[chunk + 1]; ++b) {
        const RowBlock rb = blocks[b];
        run_with_best_isa([&]() WSLS_INLINE_LAMBDA {
          for (int64_t c0 = rb.row_begin; c0 < rb.group_end; c0 += kCols) {
            const int64_t c1 = std::min(c0 + kCols, rb.group_end);
            tile_grad<Vec<acc_t>>(P, rb.row_begin, rb.row_end, c0, c1, C.data(), rowsum.data(),
                                  colsum.data(), G);
          }
        });
      }
    }
  });
  // The chunks' buffers added in order, scattered to the original rows.
  const int64_t* perm = prep.perm.data_ptr<int64_t>();
  T* o = out.data_ptr<T>();
  at::parallel_for(0, prep.rows, 256, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      T* dst = o + perm[i] * K;
      for (int64_t k = 0; k < K; ++k) {
        acc_t s = 0;
        for (int64_t c = 0; c < n_chunks; ++c) s += bufs[(c * padded_rows + i) * dim + k];
        dst[k] = static_cast<T>(s);
      }
    }
  });
}

int64_t vector_width(const at::Tensor& embeddings) {
  return embeddings.scalar_type() == at::kDouble ? Vec<double>::W : Vec<float>::W;
}

// Every embedding finite, read in host memory (any strides): no copy, no synchronisation.
void check_finite_cpu(const at::Tensor& embeddings, const char* op) {
  bool finite = true;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, embeddings.scalar_type(), "pairwise_affinity_loss_check", [&] {
        const scalar_t* x = embeddings.data_ptr<scalar_t>();
        const int64_t N = embeddings.size(0), K = embeddings.size(1);
        const int64_t s0 = embeddings.stride(0);
        const int64_t s1 = embeddings.stride(1);
        std::atomic<bool> ok{true};
        at::parallel_for(0, N, 4096, [&](int64_t i0, int64_t i1) {
          bool all = true;
          for (int64_t i = i0; i < i1; ++i) {
            for (int64_t k = 0; k < K; ++k) {
              all &= std::isfinite(static_cast<at::opmath_type<scalar_t>>(x[i * s0 + k * s1]));
            }
          }
          if (!all) ok = false;
        });
        finite = ok;
      });
  if (!finite) raise_non_finite(op);
}

Prepared prepare_cpu(const at::Tensor& embeddings, const at::Tensor& labels,
                     const std::optional<at::Tensor>& groups) {
  const int64_t W = vector_width(embeddings);
  const int64_t dim = std::max<int64_t>(W, (embeddings.size(1) + W - 1) / W * W);
  // Padding: whole vectors past the last row (panels read up to W - 1 rows past a tile's end).
  return prepare(embeddings, labels, groups, dim, W, W);
}

// What the CPU plans in host memory from the ids: the row blocks (each group of two labelled
// rows or more, in blocks of kBlockRows rows) and the numbers of valid ordered pairs.
struct HostPlan {
  std::vector<RowBlock> blocks;
  int64_t n_same = 0, n_diff = 0;
};

HostPlan plan_rows(const Prepared& prep) {
  HostPlan plan;
  const int32_t* cls = prep.cls.data_ptr<int32_t>();
  const int32_t* group = prep.group.data_ptr<int32_t>();
  const int64_t N = prep.rows;
  int64_t first = 0;  // the labelled rows are the last ones
  while (first < N && cls[first] < 0) first = run_end(cls, N, first);
  int64_t n_total = 0;
  for (int64_t begin = first; begin < N;) {
    const int64_t end = run_end(group, N, begin), size = end - begin;
    n_total += size * (size - 1);
    for (int64_t r = begin; size >= 2 && r < end; r += kBlockRows) {
      plan.blocks.push_back({r, std::min(r + kBlockRows, end), begin, end});
    }
    begin = end;
  }
  for (int64_t begin = first; begin < N;) {
    const int64_t end = run_end(cls, N, begin), size = end - begin;
    plan.n_same += size * (size - 1);
    begin = end;
  }
  plan.n_diff = n_total - plan.n_same;
  return plan;
}

at::Tensor pairwise_affinity_loss_cpu(const at::Tensor& embeddings, const at::Tensor& labels,
                                      const std::optional<at::Tensor>& groups,
                                      c10::string_view reduction, double eps) {
  const int red = parse_reduction(reduction, kOp);
  check_inputs(embeddings, labels, groups, eps, kOp);
  check_finite_cpu(embeddings, kOp);
  const Prepared prep = prepare_cpu(embeddings, labels, groups);
  const HostPlan plan = plan_rows(prep);
  double w_same = 0, w_diff = 0;
  reduction_weights(red, plan.n_same, plan.n_diff, &w_same, &w_diff);
  double loss = 0;
  if (!plan.blocks.empty()) {
    const double e = kernel_eps(embeddings, eps);
    loss = embeddings.scalar_type() == at::kDouble
               ? forward_impl<double>(prep, plan.blocks, w_same, w_diff, e)
               : forward_impl<float>(prep, plan.blocks, w_same, w_diff, e);
  }
  // Through a float64 tensor: a loss beyond the range of the embeddings' dtype becomes Inf there
  // (at::full would refuse the value).
  return at::full({}, loss, embeddings.options().dtype(at::kDouble)).to(embeddings.scalar_type());
}

at::Tensor pairwise_affinity_loss_backward_cpu(const at::Tensor& grad, const at::Tensor& embeddings,
                                               const at::Tensor& labels,
                                               const std::optional<at::Tensor>& groups,
                                               c10::string_view reduction, double eps) {
  const int red = parse_reduction(reduction, kBackwardOp);
  check_inputs(embeddings, labels, groups, eps, kBackwardOp);
  check_finite_cpu(embeddings, kBackwardOp);
  const double g = grad_scalar(grad, embeddings).data_ptr<double>()[0];
  at::Tensor out = at::zeros(embeddings.sizes(), embeddings.options());
  const Prepared prep = prepare_cpu(embeddings, labels, groups);
  const HostPlan plan = plan_rows(prep);
  if (plan.blocks.empty()) return out;
  double w_same = 0, w_diff = 0;
  reduction_weights(red, plan.n_same, plan.n_diff, &w_same, &w_diff);
  // d loss / d f_p = sum over q of 2 (both orders) * w * d loss / d d2 * 2 (f_p - f_q), times g.
  const double e = kernel_eps(embeddings, eps);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, embeddings.scalar_type(),
                                  "pairwise_affinity_loss_backward_cpu", [&] {
                                    backward_impl<scalar_t, at::opmath_type<scalar_t>>(
                                        prep, plan.blocks, 4 * g * w_same, 4 * g * w_diff, e,
                                        embeddings.size(1), out);
                                  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(wsls, CPU, m) {
  m.impl("pairwise_affinity_loss", &pairwise_affinity_loss_cpu);
  m.impl("pairwise_affinity_loss_backward", &pairwise_affinity_loss_backward_cpu);
}

}  // namespace pairwise_loss
}  // namespace wsls
