// Per-voxel and per-word math of affinity_grow, mask_nms and candidate_scores, shared by the CPU
// and the CUDA kernels so that the CPU tests cover the arithmetic the GPU runs: the affinity test
// (d2 against the bound), the neighbour rows of each connectivity, the bit-parallel fill of a row,
// packing, bounding boxes and IoU from counts.
#pragma once

#include <cmath>
#include <cstdint>

#include "../common.h"

// Always inlined on the host too: the CPU kernels compile their hot loops once per instruction
// set (affinity_grow_cpu.cpp), which needs these functions inlined into each variant.
#if defined(__CUDACC__)
#define WSLS_GROW_INLINE __host__ __device__ __forceinline__
#else
#define WSLS_GROW_INLINE WSLS_ALWAYS_INLINE
#endif

namespace wsls {
namespace affinity_grow {

using word_t = uint64_t;

// --- affinity -------------------------------------------------------------------------------

// acc + (a - b)^2 with each operation rounded on its own: no fused multiply-add on either side
// (nvcc would contract a*b + c by default; the CPU kernels are built without FMA for this code),
// so that the CPU, the GPU and the reference sum d2 identically.
WSLS_GROW_INLINE float sq_diff_add(float acc, float a, float b) {
#if defined(__CUDA_ARCH__)
  const float diff = __fsub_rn(a, b);
  return __fadd_rn(acc, __fmul_rn(diff, diff));
#else
  const float diff = a - b;
  return acc + diff * diff;
#endif
}

WSLS_GROW_INLINE double sq_diff_add(double acc, double a, double b) {
#if defined(__CUDA_ARCH__)
  const double diff = __dsub_rn(a, b);
  return __dadd_rn(acc, __dmul_rn(diff, diff));
#else
  const double diff = a - b;
  return acc + diff * diff;
#endif
}

// A(p, q) >= lambda <=> d2 <= log(2 / lambda - 1). Host only; lambda in (0, 1].
inline double d2_bound(double lambda) { return std::log(2.0 / lambda - 1.0); }

// The bound in the accumulation type, rounded down, so that for every d2 of that type
// d2 <= bound_as<acc_t>(b) <=> double(d2) <= b (the reference's float64 comparison).
template <typename acc_t>
inline acc_t bound_as(double bound) {
  acc_t b = static_cast<acc_t>(bound);
  if (static_cast<double>(b) > bound) b = std::nextafter(b, -static_cast<acc_t>(INFINITY));
  return b;
}

// NaN never passes.
template <typename acc_t>
WSLS_GROW_INLINE bool passes(acc_t d2, acc_t bound) {
  return d2 <= bound;
}

// False for NaN and +-Inf, without a branch (vectorises).
template <typename acc_t>
WSLS_GROW_INLINE bool is_finite_value(acc_t x) {
  return x - x == acc_t(0);
}

// --- neighbour rows -------------------------------------------------------------------------
// A row is the D voxels (h, w, :). Neighbours along d lie in the same row (the run fill below);
// the other neighbours lie in the rows (h + dh, w + dw): the 4 with |dh| + |dw| = 1 at the same d
// for connectivity 6, all 8 with d - 1, d or d + 1 (a dilated row) for connectivity 26.

WSLS_GROW_INLINE int num_neighbour_rows(int connectivity) { return connectivity == 26 ? 8 : 4; }

WSLS_GROW_INLINE bool dilates(int connectivity) { return connectivity == 26; }

// The i-th neighbour row offset (dh, dw), i < num_neighbour_rows(connectivity).
WSLS_GROW_INLINE void neighbour_row(int connectivity, int i, int* dh, int* dw) {
  if (connectivity == 26) {
    const int cell = i < 4 ? i : i + 1;  // the 3 x 3 cells but the centre
    *dh = cell / 3 - 1;
    *dw = cell % 3 - 1;
  } else {
    *dh = i < 2 ? 2 * i - 1 : 0;
    *dw = i < 2 ? 0 : 2 * i - 5;
  }
}

// --- bits -----------------------------------------------------------------------------------

WSLS_GROW_INLINE int popcount(word_t x) {
#if defined(__CUDA_ARCH__)
  return __popcll(x);
#else
  return __builtin_popcountll(x);
#endif
}

// Word j of a row of D voxels without the bits past D: words from outside the ops may set them,
// and those bits index past the row.
WSLS_GROW_INLINE word_t row_word(const word_t* row, int64_t j, int64_t Dw, int64_t D) {
  const int tail = static_cast<int>(D & 63);
  return j == Dw - 1 && tail != 0 ? row[j] & ((word_t(1) << tail) - 1) : row[j];
}

WSLS_GROW_INLINE bool test_bit(const word_t* row, int64_t d) {
  return (row[d >> 6] >> (d & 63)) & 1;
}

// Bits of `pass` reachable upwards (towards higher d) from g through set bits of pass, g
// included; g must be a subset of pass. Adding g to pass carries from each bit of g to the top of
// its run and one past it: the bits that changed, inside pass, are the filled part.
WSLS_GROW_INLINE word_t fill_up_word(word_t g, word_t pass) {
  return (((pass + g) ^ pass) & pass) | g;
}

// The same downwards (Kogge-Stone occluded fill: 6 doubling steps).
WSLS_GROW_INLINE word_t fill_down_word(word_t g, word_t pass) {
  word_t p = pass;
  g |= p & (g >> 1);
  p &= p >> 1;
  g |= p & (g >> 2);
  p &= p >> 2;
  g |= p & (g >> 4);
  p &= p >> 4;
  g |= p & (g >> 8);
  p &= p >> 8;
  g |= p & (g >> 16);
  p &= p >> 16;
  g |= p & (g >> 32);
  return g;
}

// Sources of new bits for fill_row: x(j) is word j of the bits to grow from.

// A neighbour row's region, dilated by one voxel along d for connectivity 26.
struct RowSource {
  const word_t* src;
  int64_t Dw;
  bool dilate;
  WSLS_GROW_INLINE word_t operator()(int64_t j) const {
    const word_t s = src[j];
    if (!dilate) return s;
    word_t x = s | (s << 1) | (s >> 1);
    if (j > 0) x |= src[j - 1] >> 63;
    if (j + 1 < Dw) x |= src[j + 1] << 63;
    return x;
  }
};

// One voxel (the seed).
struct BitSource {
  int64_t j0;
  word_t bit;
  WSLS_GROW_INLINE word_t operator()(int64_t j) const { return j == j0 ? bit : word_t(0); }
};

// region |= the runs of `pass` (one row, Dw words) that hold a bit of x; returns whether region
// grew. region must be closed already (every run of pass it touches, it holds whole), which
// makes "x & pass & ~region == 0" a complete test for "nothing new". Runs cross word boundaries:
// an upward pass carries the top bit into the next word, a downward pass the bottom bit into the
// previous one. x is read twice; a source that grows in between (another GPU thread's row) is
// fine: every value read is a subset of the final one.
template <typename Source>
WSLS_GROW_INLINE bool fill_row(const Source& x, const word_t* pass, word_t* region, int64_t Dw) {
  word_t fresh = 0;
  for (int64_t j = 0; j < Dw; ++j) fresh |= x(j) & pass[j] & ~region[j];
  if (fresh == 0) return false;
  word_t carry = 0;
  for (int64_t j = 0; j < Dw; ++j) {
    const word_t p = pass[j];
    const word_t up = fill_up_word((x(j) | carry) & p, p);
    region[j] |= up;
    carry = up >> 63;
  }
  carry = 0;
  for (int64_t j = Dw - 1; j >= 0; --j) {
    const word_t p = pass[j];
    const word_t down = fill_down_word((x(j) | (carry << 63)) & p, p);
    region[j] |= down;
    carry = down & 1;
  }
  return true;
}

// Word j of a packed row from D bools.
WSLS_GROW_INLINE word_t pack_word(const bool* row, int64_t D, int64_t j) {
  const int64_t d0 = j * 64;
  const int64_t n = D - d0 < 64 ? D - d0 : 64;
  word_t w = 0;
  for (int64_t b = 0; b < n; ++b) w |= word_t(row[d0 + b] ? 1 : 0) << b;
  return w;
}

// --- bounding boxes and IoU -----------------------------------------------------------------

// Rows h0..h1, w0..w1 and words j0..j1 of a row (inclusive) holding a candidate's set bits;
// empty: h0 > h1.
struct Box {
  int64_t h0, h1, w0, w1, j0, j1;
};

WSLS_GROW_INLINE Box empty_box() { return Box{1, 0, 1, 0, 1, 0}; }

WSLS_GROW_INLINE bool box_empty(const Box& b) { return b.h0 > b.h1; }

WSLS_GROW_INLINE int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
WSLS_GROW_INLINE int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

WSLS_GROW_INLINE Box box_union(const Box& a, const Box& b) {
  if (box_empty(a)) return b;
  if (box_empty(b)) return a;
  return Box{min64(a.h0, b.h0), max64(a.h1, b.h1), min64(a.w0, b.w0),
             max64(a.w1, b.w1), min64(a.j0, b.j0), max64(a.j1, b.j1)};
}

WSLS_GROW_INLINE Box box_of_word(int64_t h, int64_t w, int64_t j) { return Box{h, h, w, w, j, j}; }

// The overlap of two boxes; false (and nothing to intersect) when they are disjoint or empty.
WSLS_GROW_INLINE bool box_overlap(const Box& a, const Box& b, Box* out) {
  if (box_empty(a) || box_empty(b)) return false;
  *out = Box{max64(a.h0, b.h0), min64(a.h1, b.h1), max64(a.w0, b.w0),
             min64(a.w1, b.w1), max64(a.j0, b.j0), min64(a.j1, b.j1)};
  return out->h0 <= out->h1 && out->w0 <= out->w1 && out->j0 <= out->j1;
}

// IoU = inter / (area_a + area_b - inter) > tau, in float64 like the reference; an empty union
// gives IoU 0.
WSLS_GROW_INLINE bool iou_exceeds(int64_t inter, int64_t area_a, int64_t area_b, double tau) {
  const int64_t uni = area_a + area_b - inter;
  if (uni == 0) return false;
  return static_cast<double>(inter) / static_cast<double>(uni) > tau;
}

// Mean over a candidate's voxels; 0 for an empty candidate.
WSLS_GROW_INLINE double mean_or_zero(double sum, int64_t count) {
  return count > 0 ? sum / static_cast<double>(count) : 0.0;
}

}  // namespace affinity_grow
}  // namespace wsls
