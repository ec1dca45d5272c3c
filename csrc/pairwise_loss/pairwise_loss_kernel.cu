// CUDA kernels of pairwise_affinity_loss. CUDA headers only (no torch): raw pointers and
// cudaStream_t. The per-pair math is pairwise_loss_math.h, shared with the CPU kernels.
//
// One thread block per kBlockRows consecutive sorted rows (one thread per row): ceil(N /
// kBlockRows) blocks, fixed by the shape. The ignored rows come first (idle threads, class -1),
// then the labelled ones, each group a run of them; a block's rows may span groups, so each
// thread keeps to its row's group [gb, ge) (run_begin / run_end of the group ids) and the block
// stages the union of its rows' groups. Column tiles are staged in shared memory (features,
// norms, class ids); each thread keeps its row in registers.
//   forward:  the column tiles from the block's first row to the end of its last row's group,
//             pairs q > p. Each thread sums its row's weighted losses (float within a tile,
//             double across tiles), a fixed-order tree gives the block's partial, and one thread
//             adds the partials in block order: no atomics, the same bits on every run.
//   backward: the column tiles of the groups of the block's rows, pairs q != p in the row's
//             group. Each thread accumulates its row's gradient sum_q c_pq (f_p - f_q) =
//             S_p f_p - sum_q c_pq f_q in registers and writes it once: deterministic, with twice
//             the pairs of the CPU's symmetric pass (whose column contributions would need a
//             reduction across blocks).
// The reduction's weights come from the device (weights_kernel, from the pair counts and the
// incoming gradient): nothing is read on the host, so the launches can be captured in a graph.
// KP = 16, 32 or 64: the features are specialised at compile time (the glue pads K up with
// zeros). KP = 0: any larger K (a multiple of 4), rows read through the cache instead of
// registers, the gradient accumulated in the output row its thread owns.

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>

#include "pairwise_loss.h"
#include "pairwise_loss_math.h"

namespace wsls {
namespace pairwise_loss {
namespace {

constexpr int kThreads = static_cast<int>(kBlockRows);

// Half the valid ordered pairs: sum over the labelled rows p of (p - the first row of p's class)
// for the same class, of (p - the first row of p's group) for all. Each thread sums its rows, a
// block tree, then one integer atomic per block and count (exact, so deterministic). counts: (2),
// zeroed.
__global__ void __launch_bounds__(kThreads)
    counts_kernel(const int32_t* __restrict__ cls, const int32_t* __restrict__ group, int64_t rows,
                  unsigned long long* __restrict__ counts) {
  __shared__ unsigned long long s_same[kThreads], s_total[kThreads];
  unsigned long long same = 0, total = 0;
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < rows;
       p += int64_t(gridDim.x) * blockDim.x) {
    if (cls[p] < 0) continue;
    same += static_cast<unsigned long long>(p - run_begin(cls, p));
    total += static_cast<unsigned long long>(p - run_begin(group, p));
  }
  s_same[threadIdx.x] = same;
  s_total[threadIdx.x] = total;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) {
      s_same[threadIdx.x] += s_same[threadIdx.x + stride];
      s_total[threadIdx.x] += s_total[threadIdx.x + stride];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    atomicAdd(counts, s_same[0]);
    atomicAdd(counts + 1, s_total[0]);
  }
}

// The reduction's weights from the counts (half the ordered pairs, see counts_kernel), as the CPU
// computes them: reduction_weights, then 4 * g * w in the backward.
__global__ void weights_kernel(int reduction, const unsigned long long* __restrict__ counts,
                               const double* __restrict__ grad, double* __restrict__ weights) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  const int64_t n_same = 2 * static_cast<int64_t>(counts[0]);
  const int64_t n_diff = 2 * static_cast<int64_t>(counts[1]) - n_same;
  double w_same = 0, w_diff = 0;
  reduction_weights(reduction, n_same, n_diff, &w_same, &w_diff);
  if (grad != nullptr) {
    w_same = 4 * *grad * w_same;
    w_diff = 4 * *grad * w_diff;
  }
  weights[0] = w_same;
  weights[1] = w_diff;
}

// The block's rows [blockIdx.x * kThreads, + kThreads) and this thread's row: whether it is a
// labelled row, its group's rows [gb, ge), and the union of the labelled rows' groups (the
// block's columns). Block-wide; ends synchronised.
struct BlockRows {
  int64_t row;                   // this thread's row
  int64_t own;                   // a valid row to read (the block's first row past the end)
  bool active;                   // a labelled row
  int64_t gb, ge;                // its group's rows (empty when not active)
  int64_t cols_begin, cols_end;  // the union of the active rows' groups (empty: none)
};

__device__ __forceinline__ BlockRows block_rows(const Problem& p) {
  __shared__ int s_begin, s_end;
  BlockRows b;
  const int64_t row_begin = int64_t(blockIdx.x) * kThreads;
  b.row = row_begin + threadIdx.x;
  b.own = b.row < p.rows ? b.row : row_begin;
  b.active = b.row < p.rows && p.cls[b.row] >= 0;
  b.gb = b.active ? run_begin(p.group, b.row) : 0;
  b.ge = b.active ? run_end(p.group, p.rows, b.row) : 0;
  if (threadIdx.x == 0) {
    s_begin = INT_MAX;
    s_end = 0;
  }
  __syncthreads();
  if (b.active) {
    atomicMin(&s_begin, static_cast<int>(b.gb));
    atomicMax(&s_end, static_cast<int>(b.ge));
  }
  __syncthreads();
  b.cols_begin = s_begin;
  b.cols_end = s_end;
  return b;
}

// Columns per staged tile: the features of a tile stay within 32 KB of static shared memory.
template <typename acc_t, int KP>
struct TileShape {
  static constexpr int kCols = (KP == 0 || KP * sizeof(acc_t) <= 256) ? 128 : 64;
  static constexpr int kFeatures = KP == 0 ? 1 : KP;  // staged features per column
};

// Stages columns [c0, c0 + n) of the tile: features (when KP > 0), norms, class ids.
template <typename acc_t, int KP>
__device__ __forceinline__ void stage_tile(const Problem& p, int64_t c0, int n, acc_t* s_f,
                                           acc_t* s_norm, int32_t* s_cls) {
  const acc_t* __restrict__ F = static_cast<const acc_t*>(p.emb);
  const acc_t* __restrict__ norms = static_cast<const acc_t*>(p.norms);
  if constexpr (KP > 0) {
    for (int i = threadIdx.x; i < n * KP; i += blockDim.x) s_f[i] = F[c0 * KP + i];
  }
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    s_norm[i] = norms[c0 + i];
    s_cls[i] = p.cls[c0 + i];
  }
}

// <f_row, f_q> with f_row in registers (KP > 0, q = column j of the staged tile) or both rows
// read from global memory (KP = 0).
template <typename acc_t, int KP>
__device__ __forceinline__ acc_t row_dot(const acc_t (&fp)[TileShape<acc_t, KP>::kFeatures],
                                         const acc_t* s_f, int j, const acc_t* F, int64_t row,
                                         int64_t q, int64_t K) {
  acc_t dot = 0;
  if constexpr (KP > 0) {
#pragma unroll
    for (int k = 0; k < KP; ++k) dot += fp[k] * s_f[j * KP + k];
  } else {
    const acc_t* __restrict__ fr = F + row * K;
    const acc_t* __restrict__ fq = F + q * K;
    for (int64_t k = 0; k < K; ++k) dot += fr[k] * fq[k];
  }
  return dot;
}

// d2 of the row and column j of the staged tile (q): from the norms and the dot product, or from
// the differences of the features where needs_exact_distance says so (different classes only).
template <typename acc_t, int KP>
__device__ __forceinline__ acc_t pair_distance(const acc_t (&fp)[TileShape<acc_t, KP>::kFeatures],
                                               const acc_t* s_f, int j, const acc_t* F, int64_t row,
                                               int64_t q, int64_t K, acc_t np, acc_t nq,
                                               bool same) {
  const acc_t d2 = squared_distance(np, nq, row_dot<acc_t, KP>(fp, s_f, j, F, row, q, K));
  if (!distance_overflowed(d2, np, nq, finite_max(acc_t(0))) &&
      (same || !needs_exact_distance(d2, np, nq))) {
    return d2;
  }
  acc_t s = 0;
  if constexpr (KP > 0) {
#pragma unroll
    for (int k = 0; k < KP; ++k) {
      const acc_t d = s_f[j * KP + k] - fp[k];
      s += d * d;
    }
  } else {
    for (int64_t k = 0; k < K; ++k) {
      const acc_t d = F[q * K + k] - F[row * K + k];
      s += d * d;
    }
  }
  return s;
}

template <typename acc_t, int KP>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const Problem p, double* __restrict__ partials) {
  using Math = ScalarMath<acc_t>;
  using Shape = TileShape<acc_t, KP>;
  constexpr int TC = Shape::kCols;
  __shared__ acc_t s_f[TC * Shape::kFeatures];
  __shared__ acc_t s_norm[TC];
  __shared__ int32_t s_cls[TC];
  __shared__ double s_red[kThreads];
  const acc_t* __restrict__ F = static_cast<const acc_t*>(p.emb);
  const BlockRows b = block_rows(p);
  const int64_t K = p.dim, row = b.row, own = b.own;
  const bool active = b.active;
  acc_t fp[Shape::kFeatures];
  if constexpr (KP > 0) {
#pragma unroll
    for (int k = 0; k < KP; ++k) fp[k] = F[own * KP + k];
  }
  const acc_t np = static_cast<const acc_t*>(p.norms)[own];
  const int32_t cp = p.cls[own];
  const acc_t eps = static_cast<acc_t>(p.eps);
  const acc_t ws = static_cast<acc_t>(p.weights[0]), wd = static_cast<acc_t>(p.weights[1]);

  double total = 0;
  const int64_t first = int64_t(blockIdx.x) * kThreads;  // pairs q > p >= the block's first row
  for (int64_t c0 = first; c0 < b.cols_end; c0 += TC) {
    const int n = static_cast<int>(min(static_cast<int64_t>(TC), b.cols_end - c0));
    __syncthreads();  // the previous tile is consumed
    stage_tile<acc_t, KP>(p, c0, n, s_f, s_norm, s_cls);
    __syncthreads();
    acc_t tile = 0;
    if (active) {
      for (int j = 0; j < n; ++j) {
        const int64_t q = c0 + j;
        if (q <= row || q >= b.ge) continue;  // each unordered pair once, within the group
        const bool same = s_cls[j] == cp;
        const acc_t d2 = pair_distance<acc_t, KP>(fp, s_f, j, F, row, q, K, np, s_norm[j], same);
        tile += pair_loss<Math>(d2, same, eps) * (same ? ws : wd);
      }
    }
    total += static_cast<double>(tile);
  }

  s_red[threadIdx.x] = total;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) s_red[threadIdx.x] += s_red[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[blockIdx.x] = s_red[0];
}

// The loss: the blocks' partials added in block order (as the CPU does), times 2 (each
// unordered pair stands for its two ordered pairs).
__global__ void sum_partials_kernel(const double* __restrict__ partials, int64_t n,
                                    double* __restrict__ loss) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double total = 0;
  for (int64_t b = 0; b < n; ++b) total += partials[b];
  *loss = 2.0 * total;
}

template <typename acc_t, int KP>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const Problem p, acc_t* __restrict__ grad) {
  using Math = ScalarMath<acc_t>;
  using Shape = TileShape<acc_t, KP>;
  constexpr int TC = Shape::kCols;
  __shared__ acc_t s_f[TC * Shape::kFeatures];
  __shared__ acc_t s_norm[TC];
  __shared__ int32_t s_cls[TC];
  const acc_t* __restrict__ F = static_cast<const acc_t*>(p.emb);
  const BlockRows b = block_rows(p);
  const int64_t K = p.dim, row = b.row, own = b.own;
  const bool active = b.active;
  acc_t fp[Shape::kFeatures];
  acc_t acc[Shape::kFeatures];
  if constexpr (KP > 0) {
#pragma unroll
    for (int k = 0; k < KP; ++k) {
      fp[k] = F[own * KP + k];
      acc[k] = 0;
    }
  } else if (active) {
    for (int64_t k = 0; k < K; ++k) grad[row * K + k] = 0;
  }
  const acc_t np = static_cast<const acc_t*>(p.norms)[own];
  const int32_t cp = p.cls[own];
  const acc_t eps = static_cast<acc_t>(p.eps);
  const acc_t ws = static_cast<acc_t>(p.weights[0]), wd = static_cast<acc_t>(p.weights[1]);

  acc_t rowsum = 0;  // S_p = sum_q c_pq
  for (int64_t c0 = b.cols_begin; c0 < b.cols_end; c0 += TC) {
    const int n = static_cast<int>(min(static_cast<int64_t>(TC), b.cols_end - c0));
    __syncthreads();
    stage_tile<acc_t, KP>(p, c0, n, s_f, s_norm, s_cls);
    __syncthreads();
    if (!active) continue;
    for (int j = 0; j < n; ++j) {
      const int64_t q = c0 + j;
      if (q == row || q < b.gb || q >= b.ge) continue;
      const bool same = s_cls[j] == cp;
      const acc_t d2 = pair_distance<acc_t, KP>(fp, s_f, j, F, row, q, K, np, s_norm[j], same);
      const acc_t c = pair_coef<Math>(d2, same, eps) * (same ? ws : wd);
      rowsum += c;
      if constexpr (KP > 0) {
#pragma unroll
        for (int k = 0; k < KP; ++k) acc[k] += c * s_f[j * KP + k];
      } else {
        const acc_t* __restrict__ fq = F + q * K;
        for (int64_t k = 0; k < K; ++k) grad[row * K + k] += c * fq[k];
      }
    }
  }
  if (!active) return;
  if constexpr (KP > 0) {
#pragma unroll
    for (int k = 0; k < KP; ++k) grad[row * KP + k] = rowsum * fp[k] - acc[k];
  } else {
    for (int64_t k = 0; k < K; ++k) grad[row * K + k] = rowsum * F[row * K + k] - grad[row * K + k];
  }
}

template <typename acc_t, int KP>
int launch_forward(const Problem& p, double* partials, double* loss, cudaStream_t stream) {
  forward_kernel<acc_t, KP>
      <<<static_cast<unsigned>(p.num_blocks), kThreads, 0, stream>>>(p, partials);
  sum_partials_kernel<<<1, 1, 0, stream>>>(partials, p.num_blocks, loss);
  return cudaGetLastError();
}

template <typename acc_t, int KP>
int launch_backward(const Problem& p, void* grad, cudaStream_t stream) {
  backward_kernel<acc_t, KP>
      <<<static_cast<unsigned>(p.num_blocks), kThreads, 0, stream>>>(p, static_cast<acc_t*>(grad));
  return cudaGetLastError();
}

template <typename acc_t>
int forward_typed(const Problem& p, double* partials, double* loss, cudaStream_t stream) {
  switch (p.dim) {
    case 16:
      return launch_forward<acc_t, 16>(p, partials, loss, stream);
    case 32:
      return launch_forward<acc_t, 32>(p, partials, loss, stream);
    case 64:
      return launch_forward<acc_t, 64>(p, partials, loss, stream);
    default:
      return launch_forward<acc_t, 0>(p, partials, loss, stream);
  }
}

template <typename acc_t>
int backward_typed(const Problem& p, void* grad, cudaStream_t stream) {
  switch (p.dim) {
    case 16:
      return launch_backward<acc_t, 16>(p, grad, stream);
    case 32:
      return launch_backward<acc_t, 32>(p, grad, stream);
    case 64:
      return launch_backward<acc_t, 64>(p, grad, stream);
    default:
      return launch_backward<acc_t, 0>(p, grad, stream);
  }
}

}  // namespace

int weights_cuda(int reduction, const int32_t* cls, const int32_t* group, int64_t rows,
                 const double* grad, int64_t* counts, double* weights, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  unsigned long long* c = reinterpret_cast<unsigned long long*>(counts);
  cudaError_t err = cudaMemsetAsync(c, 0, 2 * sizeof(unsigned long long), s);
  if (err != cudaSuccess) return err;
  if (rows > 0) {
    const unsigned blocks =
        static_cast<unsigned>(std::min<int64_t>(ceil_div<int64_t>(rows, kThreads), 1024));
    counts_kernel<<<blocks, kThreads, 0, s>>>(cls, group, rows, c);
  }
  weights_kernel<<<1, 1, 0, s>>>(reduction, c, grad, weights);
  return cudaGetLastError();
}

int forward_cuda(const Problem& p, ScalarKind kind, double* partials, double* loss, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (p.num_blocks == 0) {
    cudaMemsetAsync(loss, 0, sizeof(double), s);
    return cudaGetLastError();
  }
  if (kind == ScalarKind::Double) return forward_typed<double>(p, partials, loss, s);
  if (kind == ScalarKind::Float) return forward_typed<float>(p, partials, loss, s);
  return cudaErrorInvalidValue;
}

int backward_cuda(const Problem& p, ScalarKind kind, void* grad, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (p.num_blocks == 0) return cudaSuccess;
  if (kind == ScalarKind::Double) return backward_typed<double>(p, grad, s);
  if (kind == ScalarKind::Float) return backward_typed<float>(p, grad, s);
  return cudaErrorInvalidValue;
}

}  // namespace pairwise_loss
}  // namespace wsls
