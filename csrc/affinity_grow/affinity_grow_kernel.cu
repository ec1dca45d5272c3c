// CUDA kernels of affinity_grow, mask_nms, candidate_scores, pack_masks and unpack_masks. CUDA
// headers only (no torch): raw pointers and cudaStream_t. The per-voxel and per-word math is
// affinity_grow_math.h, shared with the CPU kernels (affinity_grow_cpu.cpp).
//
// Growth, all seeds at once:
//   1. pass:      block (row, chunk of seeds): each thread holds the embeddings of two voxels of
//                 the row in registers and tests them against every seed of the chunk (seed
//                 features in shared memory); warp ballots make the pass words. Connectivity 0
//                 stops here (pass is the result); the CPU twin is global_impl.
//   2. flood:     block s grows seed s's region: the run of passing voxels holding the seed,
//                 then sweeps over the seed's tiles (16 x 16 rows, one thread per row) in order,
//                 processing the active ones, until a sweep finds none. A tile is processed with
//                 its pass words and its region with a one-row halo in shared memory, fill_row
//                 from the neighbour rows until the tile stops growing; a tile that grew writes
//                 back and activates the tiles around it (the later ones in this sweep, the
//                 earlier ones in the next). A block owns its seed's region and tile flags, so
//                 __syncthreads orders everything: no round trip to the host and no fixed number
//                 of rounds, the whole growth is one launch (capturable in a CUDA graph). The CPU
//                 twin (Grower) floods row by row with the same fill_row and neighbours.
// Seeds are read on the device only: a seed outside the volume gives an empty candidate (the
// glue raises for it on the CPU, and on CUDA under debug checks).
// NMS: per-candidate area and bounding box (stats), the IoU > tau bit matrix over ordered pairs
// whose boxes overlap (pairs), then one block walks it greedily (greedy), as the CPU kernel's
// greedy loop does with the same iou_exceeds.

#include "../cuda_elements.cuh"

#include <algorithm>

#include "affinity_grow.h"
#include "affinity_grow_math.h"

namespace wsls {
namespace affinity_grow {
namespace {

constexpr int kThreads = 256;
constexpr int kSeedChunk = 64;             // seeds per block of the pass kernel
constexpr int64_t kSeedSmemBytes = 32768;  // their features in shared memory
constexpr int64_t kSmemBytes = 48 * 1024;
constexpr int64_t kAlign = 256;

template <typename T>
__device__ __forceinline__ double to_double(const T* p) {
  return static_cast<double>(load<typename AccType<T>::type>(p));
}

int64_t align_up(int64_t n) { return ceil_div<int64_t>(n, kAlign) * kAlign; }

unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(
      std::max<int64_t>(1, std::min<int64_t>(ceil_div<int64_t>(n, kThreads), 1 << 20)));
}

// Seed s's row (h * W + w) and depth d; false for a seed outside the volume, which the kernels
// give an empty candidate without reading anything at its position.
__device__ __forceinline__ bool seed_voxel(const int64_t* __restrict__ seeds, int64_t s,
                                           const Sizes& sz, int64_t* row, int64_t* d) {
  const int64_t h = seeds[3 * s], w = seeds[3 * s + 1], dd = seeds[3 * s + 2];
  if (h < 0 || h >= sz.H || w < 0 || w >= sz.W || dd < 0 || dd >= sz.D) return false;
  *row = h * sz.W + w;
  *d = dd;
  return true;
}

// --- finiteness, packing --------------------------------------------------------------------

template <typename T>
__global__ void nonfinite_kernel(const T* __restrict__ x, int64_t n, int* __restrict__ flag) {
  using acc_t = typename AccType<T>::type;
  bool bad = false;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    bad |= !is_finite_value(load<acc_t>(x + i));
  if (__syncthreads_or(bad) && threadIdx.x == 0) *flag = 1;
}

// One thread per word: rows = S * H * W rows of D bools.
__global__ void pack_kernel(const bool* __restrict__ masks, uint64_t* __restrict__ words,
                            int64_t rows, int64_t D, int64_t Dw) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows * Dw;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / Dw, j = i % Dw;
    words[i] = pack_word(masks + r * D, D, j);
  }
}

// One thread per voxel.
__global__ void unpack_kernel(const uint64_t* __restrict__ words, bool* __restrict__ masks,
                              int64_t rows, int64_t D, int64_t Dw) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows * D;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / D, d = i % D;
    masks[i] = test_bit(words + r * Dw, d);
  }
}

// --- growth: pass words ---------------------------------------------------------------------

// Block (row r = blockIdx.x, seeds [chunk * blockIdx.y, ...)); warp w handles words j = w,
// w + warps, ...; lane l the voxels 64 j + l and 64 j + 32 + l. KMAX > 0: the two voxels'
// features live in registers (K <= KMAX); KMAX = 0: read from global memory for every seed.
template <typename T, typename acc_t, int KMAX>
__global__ void pass_kernel(const T* __restrict__ emb, const int64_t* __restrict__ seeds,
                            const uint64_t* __restrict__ mask, Sizes sz, acc_t bound, int chunk,
                            uint64_t* __restrict__ pass) {
  extern __shared__ unsigned char smem_raw[];
  acc_t* seedf = reinterpret_cast<acc_t*>(smem_raw);                     // chunk x K
  bool* valid = reinterpret_cast<bool*>(seedf + int64_t(chunk) * sz.K);  // chunk
  const int64_t K = sz.K, D = sz.D, Dw = sz.Dw(), N = sz.voxels(), r = blockIdx.x;
  const int64_t s0 = int64_t(blockIdx.y) * chunk;
  const int n = static_cast<int>(min64(chunk, sz.S - s0));
  for (int64_t i = threadIdx.x; i < n * K; i += blockDim.x) {
    const int64_t s = s0 + i / K, k = i % K;
    int64_t r0, d;
    seedf[i] = seed_voxel(seeds, s, sz, &r0, &d) ? load<acc_t>(emb + k * N + r0 * D + d) : acc_t(0);
  }
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    int64_t r0, d;  // outside the volume or the mask: an empty candidate
    valid[i] =
        seed_voxel(seeds, s0 + i, sz, &r0, &d) && (mask == nullptr || test_bit(mask + r0 * Dw, d));
  }
  __syncthreads();
  const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  const T* row = emb + r * D;
  for (int64_t j = threadIdx.x >> 5; j < Dw; j += warps) {
    const int64_t d_lo = 64 * j + lane, d_hi = d_lo + 32;
    const bool in_lo = d_lo < D, in_hi = d_hi < D;
    acc_t e_lo[KMAX > 0 ? KMAX : 1], e_hi[KMAX > 0 ? KMAX : 1];
    if constexpr (KMAX > 0) {
#pragma unroll
      for (int k = 0; k < KMAX; ++k) {
        e_lo[k] = k < K && in_lo ? load<acc_t>(row + k * N + d_lo) : acc_t(0);
        e_hi[k] = k < K && in_hi ? load<acc_t>(row + k * N + d_hi) : acc_t(0);
      }
    }
    const uint64_t mword = mask != nullptr ? mask[r * Dw + j] : ~uint64_t(0);
    for (int i = 0; i < n; ++i) {
      const acc_t* f = seedf + i * K;
      acc_t d2_lo = 0, d2_hi = 0;
      if constexpr (KMAX > 0) {
#pragma unroll
        for (int k = 0; k < KMAX; ++k) {
          if (k < K) {
            d2_lo = sq_diff_add(d2_lo, e_lo[k], f[k]);
            d2_hi = sq_diff_add(d2_hi, e_hi[k], f[k]);
          }
        }
      } else {
        for (int64_t k = 0; k < K; ++k) {
          d2_lo = sq_diff_add(d2_lo, in_lo ? load<acc_t>(row + k * N + d_lo) : acc_t(0), f[k]);
          d2_hi = sq_diff_add(d2_hi, in_hi ? load<acc_t>(row + k * N + d_hi) : acc_t(0), f[k]);
        }
      }
      const unsigned lo = __ballot_sync(0xffffffffu, in_lo && passes(d2_lo, bound));
      const unsigned hi = __ballot_sync(0xffffffffu, in_hi && passes(d2_hi, bound));
      if (lane == (i & 31)) {
        const uint64_t word = (uint64_t(lo) | (uint64_t(hi) << 32)) & mword;
        pass[(s0 + i) * sz.words() + r * Dw + j] = valid[i] ? word : uint64_t(0);
      }
    }
  }
}

// --- growth: flood ------------------------------------------------------------------------

struct TilePlan {
  int t;  // tile edge in rows: t x t rows, one thread each
  int64_t tiles_h, tiles_w;
  size_t smem;
};

TilePlan plan_tiles(const Sizes& sz) {
  TilePlan p{0, 0, 0, 0};
  for (int t = 16; t >= 2; t /= 2) {
    const int64_t smem = ((t + 2) * (t + 2) + t * t) * sz.Dw() * int64_t(sizeof(uint64_t));
    if (smem <= kSmemBytes) {
      p.t = t;
      p.smem = static_cast<size_t>(smem);
      break;
    }
  }
  if (p.t > 0) {
    p.tiles_h = ceil_div<int64_t>(sz.H, p.t);
    p.tiles_w = ceil_div<int64_t>(sz.W, p.t);
  }
  return p;
}

// Activates the tiles around tile (th, tw) (itself too when `self`) for seed s.
__device__ __forceinline__ void activate_around(int64_t s, int64_t th, int64_t tw, int64_t tiles_h,
                                                int64_t tiles_w, bool self,
                                                unsigned char* __restrict__ active) {
  for (int64_t dth = -1; dth <= 1; ++dth) {
    for (int64_t dtw = -1; dtw <= 1; ++dtw) {
      const int64_t nh = th + dth, nw = tw + dtw;
      if ((self || dth || dtw) && nh >= 0 && nh < tiles_h && nw >= 0 && nw < tiles_w)
        active[(s * tiles_h + nh) * tiles_w + nw] = 1;
    }
  }
}

// Block s: the whole growth of seed s (see the top of this file). active: the seed's tile flags
// (zeroed), region: its packed region (zeroed); blockDim.x == t * t.
__global__ void flood_kernel(const int64_t* __restrict__ seeds, const uint64_t* __restrict__ pass,
                             Sizes sz, int connectivity, int t, int64_t tiles_h, int64_t tiles_w,
                             unsigned char* __restrict__ active, uint64_t* __restrict__ region) {
  extern __shared__ uint64_t sm[];
  const int64_t s = blockIdx.x, n_tiles = tiles_h * tiles_w;
  const int64_t Dw = sz.Dw(), H = sz.H, W = sz.W;
  unsigned char* act = active + s * n_tiles;
  const uint64_t* gpass = pass + s * sz.words();
  uint64_t* greg = region + s * sz.words();
  if (threadIdx.x == 0) {
    int64_t r0, d;  // the pass bits of a seed outside the mask are zero: empty candidate
    if (seed_voxel(seeds, s, sz, &r0, &d) && test_bit(gpass + r0 * Dw, d)) {
      fill_row(BitSource{d >> 6, uint64_t(1) << (d & 63)}, gpass + r0 * Dw, greg + r0 * Dw, Dw);
      activate_around(0, (r0 / W) / t, (r0 % W) / t, tiles_h, tiles_w, true, act);
    }
  }
  __syncthreads();
  const int e = t + 2;                // halo tile edge
  uint64_t* sreg = sm;                // e x e rows: the tile and its one-row halo
  uint64_t* spass = sm + e * e * Dw;  // t x t rows
  const int lh = threadIdx.x / t, lw = threadIdx.x % t;
  const bool dilate = dilates(connectivity);
  const int n_nbrs = num_neighbour_rows(connectivity);
  // Every thread reads the same flags: they change only between barriers (thread 0 clears a
  // flag after a barrier that follows everyone's read of it, and sets flags before the barrier
  // that ends a tile), so the branches below are uniform across the block.
  for (bool swept = true; swept;) {
    swept = false;
    for (int64_t tile = 0; tile < n_tiles; ++tile) {
      if (!act[tile]) continue;
      swept = true;
      __syncthreads();
      if (threadIdx.x == 0) act[tile] = 0;
      const int64_t th = tile / tiles_w, tw = tile % tiles_w, h0 = th * t, w0 = tw * t;
      for (int64_t i = threadIdx.x; i < e * e * Dw; i += blockDim.x) {
        const int64_t j = i % Dw, lw2 = (i / Dw) % e, lh2 = i / (Dw * e);
        const int64_t h = h0 + lh2 - 1, w = w0 + lw2 - 1;
        sreg[i] = h >= 0 && h < H && w >= 0 && w < W ? greg[(h * W + w) * Dw + j] : 0;
      }
      for (int64_t i = threadIdx.x; i < int64_t(t) * t * Dw; i += blockDim.x) {
        const int64_t j = i % Dw, lw2 = (i / Dw) % t, lh2 = i / (Dw * t);
        const int64_t h = h0 + lh2, w = w0 + lw2;
        spass[i] = h < H && w < W ? gpass[(h * W + w) * Dw + j] : 0;
      }
      __syncthreads();
      const bool inside = h0 + lh < H && w0 + lw < W;
      uint64_t* mine = sreg + ((lh + 1) * e + lw + 1) * Dw;
      const uint64_t* my_pass = spass + (lh * t + lw) * Dw;
      bool tile_grew = false;
      for (;;) {
        bool grew = false;
        if (inside) {
          for (int i = 0; i < n_nbrs; ++i) {
            int dh, dw;
            neighbour_row(connectivity, i, &dh, &dw);
            const uint64_t* src = sreg + ((lh + 1 + dh) * e + lw + 1 + dw) * Dw;
            grew |= fill_row(RowSource{src, Dw, dilate}, my_pass, mine, Dw);
          }
        }
        if (!__syncthreads_or(grew)) break;
        tile_grew = true;
      }
      if (tile_grew) {  // uniform (from __syncthreads_or)
        if (inside) {
          for (int64_t j = 0; j < Dw; ++j) greg[((h0 + lh) * W + w0 + lw) * Dw + j] = mine[j];
        }
        if (threadIdx.x == 0) activate_around(0, th, tw, tiles_h, tiles_w, false, act);
      }
      __syncthreads();  // the region and the flags written above are seen by the whole block
    }
  }
}

template <typename T>
int grow_typed(const GrowArgs& a, cudaStream_t stream) {
  using acc_t = typename AccType<T>::type;
  const Sizes& sz = a.sz;
  if (sz.S == 0) return cudaSuccess;
  const int64_t acc_bytes = sizeof(acc_t);
  const int chunk = static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(kSeedChunk, kSeedSmemBytes / (sz.K * acc_bytes))));
  const size_t pass_smem = static_cast<size_t>(chunk * sz.K * acc_bytes + chunk);
  const int pass_threads = 32 * static_cast<int>(std::min<int64_t>(sz.Dw(), 8));
  uint64_t* pass = a.connectivity == 0 ? a.out : static_cast<uint64_t*>(a.workspace);
  const dim3 pass_grid(static_cast<unsigned>(sz.rows()),
                       static_cast<unsigned>(ceil_div<int64_t>(sz.S, chunk)));
  const T* emb = static_cast<const T*>(a.embeddings);
  const acc_t bound = bound_as<acc_t>(a.bound);
#define WSLS_PASS(KMAX)                                                        \
  pass_kernel<T, acc_t, KMAX><<<pass_grid, pass_threads, pass_smem, stream>>>( \
      emb, a.seeds, a.mask, sz, bound, chunk, pass)
  if (sz.K <= 4) {
    WSLS_PASS(4);
  } else if (sz.K <= 8) {
    WSLS_PASS(8);
  } else if (sz.K <= 16) {
    WSLS_PASS(16);
  } else if (sz.K <= 32) {
    WSLS_PASS(32);
  } else {
    WSLS_PASS(0);
  }
#undef WSLS_PASS
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || a.connectivity == 0) return err;

  const TilePlan tp = plan_tiles(sz);
  const int64_t n_flags = sz.S * tp.tiles_h * tp.tiles_w;
  unsigned char* active =
      static_cast<unsigned char*>(a.workspace) + align_up(sz.S * sz.words() * 8);
  err = cudaMemsetAsync(a.out, 0, sz.S * sz.words() * 8, stream);
  if (err == cudaSuccess) err = cudaMemsetAsync(active, 0, n_flags, stream);
  if (err != cudaSuccess) return err;
  flood_kernel<<<static_cast<unsigned>(sz.S), tp.t * tp.t, tp.smem, stream>>>(
      a.seeds, pass, sz, a.connectivity, tp.t, tp.tiles_h, tp.tiles_w, active, a.out);
  return cudaGetLastError();
}

// --- NMS, scores ------------------------------------------------------------------------------

__device__ __forceinline__ Box warp_box_union(Box b) {
  for (int off = 16; off > 0; off /= 2) {
    Box o;
    o.h0 = __shfl_down_sync(0xffffffffu, b.h0, off);
    o.h1 = __shfl_down_sync(0xffffffffu, b.h1, off);
    o.w0 = __shfl_down_sync(0xffffffffu, b.w0, off);
    o.w1 = __shfl_down_sync(0xffffffffu, b.w1, off);
    o.j0 = __shfl_down_sync(0xffffffffu, b.j0, off);
    o.j1 = __shfl_down_sync(0xffffffffu, b.j1, off);
    b = box_union(b, o);
  }
  return b;
}

template <typename V>
__device__ __forceinline__ V warp_sum(V v) {
  for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

// Block s: area and bounding box of candidate s (blockDim.x == kThreads).
__global__ void stats_kernel(const uint64_t* __restrict__ masks, Sizes sz,
                             int64_t* __restrict__ area, Box* __restrict__ box) {
  __shared__ Box boxes[kThreads / 32];
  __shared__ int64_t areas[kThreads / 32];
  const int64_t s = blockIdx.x, Dw = sz.Dw(), n = sz.words();
  const uint64_t* m = masks + s * n;
  int64_t a = 0;
  Box b = empty_box();
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const uint64_t x = m[i];
    if (x == 0) continue;
    a += popcount(x);
    const int64_t r = i / Dw;
    b = box_union(b, box_of_word(r / sz.W, r % sz.W, i % Dw));
  }
  a = warp_sum(a);
  b = warp_box_union(b);
  const int warp = threadIdx.x >> 5;
  if ((threadIdx.x & 31) == 0) {
    areas[warp] = a;
    boxes[warp] = b;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int i = 1; i < kThreads / 32; ++i) {
      a = a + areas[i];
      b = box_union(b, boxes[i]);
    }
    area[s] = a;
    box[s] = b;
  }
}

// Block (position pb = blockIdx.x, position pa = blockIdx.y), pa < pb in score order: sets bit pb
// of row pa of the suppression matrix when IoU(order[pa], order[pb]) > tau.
__global__ void pairs_kernel(const uint64_t* __restrict__ masks, const int64_t* __restrict__ order,
                             const int64_t* __restrict__ area, const Box* __restrict__ box,
                             Sizes sz, double tau, int64_t row_words,
                             unsigned long long* __restrict__ suppress) {
  const int64_t pb = blockIdx.x, pa = blockIdx.y;
  if (pb <= pa) return;
  const int64_t i = order[pa], j = order[pb];
  Box ov;
  if (area[i] == 0 || !box_overlap(box[i], box[j], &ov)) return;
  const int64_t Dw = sz.Dw(), nj = ov.j1 - ov.j0 + 1, nw = ov.w1 - ov.w0 + 1;
  const int64_t total = (ov.h1 - ov.h0 + 1) * nw * nj;
  const uint64_t* a = masks + i * sz.words();
  const uint64_t* c = masks + j * sz.words();
  int64_t inter = 0;
  for (int64_t q = threadIdx.x; q < total; q += blockDim.x) {
    const int64_t h = ov.h0 + q / (nw * nj), w = ov.w0 + (q / nj) % nw, jj = ov.j0 + q % nj;
    const int64_t off = (h * sz.W + w) * Dw + jj;
    inter += popcount(a[off] & c[off]);
  }
  __shared__ int64_t partial[kThreads / 32];
  inter = warp_sum(inter);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = inter;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int q = 1; q < kThreads / 32; ++q) inter += partial[q];
    if (iou_exceeds(inter, area[i], area[j], tau))
      atomicOr(suppress + pa * row_words + pb / 64, 1ull << (pb % 64));
  }
}

// One block: the greedy walk in score order over the suppression matrix.
__global__ void greedy_kernel(const unsigned long long* __restrict__ suppress,
                              const int64_t* __restrict__ order, int64_t S, int64_t row_words,
                              int64_t* __restrict__ kept, int64_t* __restrict__ kept_count) {
  extern __shared__ unsigned long long removed[];
  for (int64_t q = threadIdx.x; q < row_words; q += blockDim.x) removed[q] = 0;
  int64_t count = 0;
  for (int64_t p = 0; p < S; ++p) {
    __syncthreads();
    if ((removed[p / 64] >> (p % 64)) & 1) continue;
    if (threadIdx.x == 0) kept[count] = order[p];
    ++count;
    __syncthreads();
    for (int64_t q = threadIdx.x; q < row_words; q += blockDim.x)
      removed[q] |= suppress[p * row_words + q];
  }
  if (threadIdx.x == 0) *kept_count = count;
}

template <typename T>
__global__ void scores_kernel(const uint64_t* __restrict__ masks, const T* __restrict__ acam,
                              Sizes sz, T* __restrict__ scores) {
  const int64_t s = blockIdx.x, Dw = sz.Dw(), n = sz.words();
  const uint64_t* m = masks + s * n;
  double sum = 0;
  int64_t count = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    uint64_t x = row_word(m + i - i % Dw, i % Dw, Dw, sz.D);
    if (x == 0) continue;
    count += popcount(x);
    const T* base = acam + (i / Dw) * sz.D + (i % Dw) * 64;
    for (; x != 0; x &= x - 1) sum += to_double(base + __ffsll(x) - 1);
  }
  __shared__ double sums[kThreads / 32];
  __shared__ int64_t counts[kThreads / 32];
  sum = warp_sum(sum);
  count = warp_sum(count);
  if ((threadIdx.x & 31) == 0) {
    sums[threadIdx.x >> 5] = sum;
    counts[threadIdx.x >> 5] = count;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int q = 1; q < kThreads / 32; ++q) {
      sum += sums[q];
      count += counts[q];
    }
    scores[s] = store<T>(mean_or_zero(sum, count));
  }
}

}  // namespace

int64_t grow_max_depth() {
  // the smallest tile (2 x 2 rows and its halo) in shared memory
  return kSmemBytes / ((4 * 4 + 2 * 2) * int64_t(sizeof(uint64_t))) * 64;
}

int64_t grow_workspace_bytes(const Sizes& sz, int connectivity) {
  if (connectivity == 0 || sz.S == 0) return 0;
  const TilePlan tp = plan_tiles(sz);
  const int64_t n_flags = sz.S * tp.tiles_h * tp.tiles_w;
  return align_up(sz.S * sz.words() * 8) + align_up(n_flags);
}

int grow_cuda(const GrowArgs& args, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (args.kind) {
    case ScalarKind::Float:
      return grow_typed<float>(args, s);
    case ScalarKind::Double:
      return grow_typed<double>(args, s);
    case ScalarKind::Half:
      return grow_typed<__half>(args, s);
    case ScalarKind::BFloat16:
      return grow_typed<__nv_bfloat16>(args, s);
  }
  return cudaErrorInvalidValue;
}

int nonfinite_cuda(const void* values, int64_t n, ScalarKind kind, int* flag, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (n == 0) return cudaSuccess;
  const unsigned blocks = std::min<unsigned>(blocks_for(n), 4096);
  switch (kind) {
    case ScalarKind::Float:
      nonfinite_kernel<<<blocks, kThreads, 0, s>>>(static_cast<const float*>(values), n, flag);
      break;
    case ScalarKind::Double:
      nonfinite_kernel<<<blocks, kThreads, 0, s>>>(static_cast<const double*>(values), n, flag);
      break;
    case ScalarKind::Half:
      nonfinite_kernel<<<blocks, kThreads, 0, s>>>(static_cast<const __half*>(values), n, flag);
      break;
    case ScalarKind::BFloat16:
      nonfinite_kernel<<<blocks, kThreads, 0, s>>>(static_cast<const __nv_bfloat16*>(values), n,
                                                   flag);
      break;
  }
  return cudaGetLastError();
}

int64_t nms_workspace_bytes(const Sizes& sz) {
  const int64_t row_words = ceil_div<int64_t>(sz.S, 64);
  return align_up(sz.S * 8) + align_up(sz.S * int64_t(sizeof(Box))) +
         align_up(sz.S * row_words * 8);
}

int nms_cuda(const NmsArgs& a, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const Sizes& sz = a.sz;
  const int64_t row_words = ceil_div<int64_t>(sz.S, 64);
  unsigned char* base = static_cast<unsigned char*>(a.workspace);
  int64_t* area = reinterpret_cast<int64_t*>(base);
  Box* box = reinterpret_cast<Box*>(base + align_up(sz.S * 8));
  unsigned long long* suppress = reinterpret_cast<unsigned long long*>(
      base + align_up(sz.S * 8) + align_up(sz.S * int64_t(sizeof(Box))));
  if (sz.S == 0) return cudaMemsetAsync(a.kept_count, 0, sizeof(int64_t), s);
  stats_kernel<<<static_cast<unsigned>(sz.S), kThreads, 0, s>>>(a.masks, sz, area, box);
  const cudaError_t err = cudaMemsetAsync(suppress, 0, sz.S * row_words * 8, s);
  if (err != cudaSuccess) return err;
  if (a.iou_threshold < 1.0 && sz.S > 1) {  // at tau = 1 no IoU can exceed it
    const dim3 grid(static_cast<unsigned>(sz.S), static_cast<unsigned>(sz.S));
    pairs_kernel<<<grid, kThreads, 0, s>>>(a.masks, a.order, area, box, sz, a.iou_threshold,
                                           row_words, suppress);
  }
  greedy_kernel<<<1, kThreads, static_cast<size_t>(row_words * 8), s>>>(
      suppress, a.order, sz.S, row_words, a.kept, a.kept_count);
  return cudaGetLastError();
}

int scores_cuda(const uint64_t* masks, const void* acam, void* scores, const Sizes& sz,
                ScalarKind kind, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (sz.S == 0) return cudaSuccess;
  const unsigned grid = static_cast<unsigned>(sz.S);
  switch (kind) {
    case ScalarKind::Float:
      scores_kernel<<<grid, kThreads, 0, s>>>(masks, static_cast<const float*>(acam), sz,
                                              static_cast<float*>(scores));
      break;
    case ScalarKind::Double:
      scores_kernel<<<grid, kThreads, 0, s>>>(masks, static_cast<const double*>(acam), sz,
                                              static_cast<double*>(scores));
      break;
    case ScalarKind::Half:
      scores_kernel<<<grid, kThreads, 0, s>>>(masks, static_cast<const __half*>(acam), sz,
                                              static_cast<__half*>(scores));
      break;
    case ScalarKind::BFloat16:
      scores_kernel<<<grid, kThreads, 0, s>>>(masks, static_cast<const __nv_bfloat16*>(acam), sz,
                                              static_cast<__nv_bfloat16*>(scores));
      break;
  }
  return cudaGetLastError();
}

int pack_cuda(const bool* masks, uint64_t* words, const Sizes& sz, void* stream) {
  const int64_t rows = sz.S * sz.rows();
  if (rows * sz.Dw() == 0) return cudaSuccess;
  pack_kernel<<<blocks_for(rows * sz.Dw()), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      masks, words, rows, sz.D, sz.Dw());
  return cudaGetLastError();
}

int unpack_cuda(const uint64_t* words, bool* masks, const Sizes& sz, void* stream) {
  const int64_t rows = sz.S * sz.rows();
  if (rows * sz.D == 0) return cudaSuccess;
  unpack_kernel<<<blocks_for(rows * sz.D), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      words, masks, rows, sz.D, sz.Dw());
  return cudaGetLastError();
}

}  // namespace affinity_grow
}  // namespace wsls
