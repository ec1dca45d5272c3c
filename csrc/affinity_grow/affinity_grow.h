// wsls::affinity_grow, wsls::mask_nms, wsls::candidate_scores, wsls::pack_masks,
// wsls::unpack_masks: segmentation candidates grown from seeds by affinity, scored by mean ACAM and
// suppressed greedily (DESIGN.md sections 2 and 3). Torch-free: included by the CUDA kernels.
//
// Packed masks. A candidate mask over an (H, W, D) volume is stored row-aligned: each row (h, w)
// holds Dw = ceil(D / 64) 64-bit words, voxel (h, w, d) is bit d % 64 of word d / 64, and the
// bits past D in a row's last word are zero. S candidates are an int64 tensor (S, H, W, Dw). With
// D = 155 a row takes 3 words (24 % padding) and S = 256 candidates of 240 x 240 x 155 take
// 354 MB, against 2.3 GB as bool.
//
// affinity_grow: embeddings f (K, H, W, D), seeds (S, 3) int64 (h, w, d), lambda in (0, 1],
// connectivity c in {0, 6, 26}, optional mask (H, W, D) bool -> packed candidates (S, H, W, Dw).
//   A(p, q) = 2 / (1 + exp(d2)) with d2 = ||f(p) - f(q)||^2, so A >= lambda <=> d2 <= bound with
//   bound = log(2 / lambda - 1) >= 0 (bound = 0 at lambda = 1: exactly equal embeddings).
//   pass_s = {q in mask : d2(seed_s, q) <= bound}; candidate s = the c-connected component of
//   pass_s holding seed s (c = 6: faces, 26: faces, edges and corners), or pass_s itself for
//   c = 0 (the paper's global set). d2 is summed over k in order, each operation rounded on its
//   own (no fused multiply-add), in float32 (float64 for float64 embeddings): the CPU kernel, the
//   CUDA kernel and the reference give the same voxels bit for bit. A seed outside the mask gives
//   an empty candidate (for every c); its own d2 is 0, so otherwise it always passes.
// mask_nms: packed candidates (S, H, W, Dw), scores (S), tau in [0, 1] -> kept indices (int64, in
//   descending score order, ties by lower index). Greedy: a candidate is kept unless a kept one
//   with a higher rank has IoU > tau with it. IoU = |a & b| / |a | b| by popcount, 0 when both
//   are empty: an empty candidate is never suppressed.
// candidate_scores: packed candidates (S, H, W, Dw), acam (H, W, D) -> (S) mean ACAM over each
//   candidate's voxels (0 for an empty candidate), accumulated in float64.
// pack_masks: bool (S, H, W, D) -> (S, H, W, Dw); unpack_masks: the inverse.
#pragma once

#include <cstdint>

#include "../common.h"

namespace wsls {
namespace affinity_grow {

struct Sizes {
  int64_t S, K, H, W, D;
  WSLS_HOST_DEVICE int64_t Dw() const { return (D + 63) / 64; }
  WSLS_HOST_DEVICE int64_t rows() const { return H * W; }
  WSLS_HOST_DEVICE int64_t voxels() const { return H * W * D; }
  WSLS_HOST_DEVICE int64_t words() const { return H * W * Dw(); }  // per candidate
};

#if defined(WSLS_WITH_CUDA) || defined(__CUDACC__)
// CUDA launchers (affinity_grow_kernel.cu). Device pointers to contiguous tensors; words are the
// int64 storage of the packed masks read as uint64. Each returns a cudaError_t (0 on success).

struct GrowArgs {
  Sizes sz;
  ScalarKind kind;         // of the embeddings
  int connectivity;        // 0, 6 or 26
  double bound;            // log(2 / lambda - 1)
  const void* embeddings;  // (K, H, W, D)
  const int64_t* seeds;    // (S, 3); a seed outside the volume gives an empty candidate
  const uint64_t* mask;    // packed (H, W, Dw) or nullptr
  uint64_t* out;           // packed (S, H, W, Dw)
  void* workspace;         // grow_workspace_bytes()
};
// Largest depth D the CUDA growth supports (a tile of rows must fit in shared memory).
int64_t grow_max_depth();
int64_t grow_workspace_bytes(const Sizes& sz, int connectivity);
// Asynchronous on the stream, like every launcher here: no host synchronisation, no host read
// of device memory, a fixed sequence of launches for given sizes (capturable in a CUDA graph).
int grow_cuda(const GrowArgs& args, void* stream);

// Sets *flag (device int, zeroed by the caller) to 1 if any of the n values is NaN or Inf (the
// debug check of the embeddings).
int nonfinite_cuda(const void* values, int64_t n, ScalarKind kind, int* flag, void* stream);

struct NmsArgs {
  Sizes sz;               // S candidates over H, W, D (K unused)
  const uint64_t* masks;  // packed (S, H, W, Dw)
  const int64_t* order;   // (S) candidate indices by descending score, ties by index
  double iou_threshold;
  int64_t* kept;        // (S): the first *kept_count entries are the kept indices
  int64_t* kept_count;  // (1)
  void* workspace;      // nms_workspace_bytes()
};
int64_t nms_workspace_bytes(const Sizes& sz);
int nms_cuda(const NmsArgs& args, void* stream);

// scores (S) in `kind` from packed masks (S, H, W, Dw) and acam (H, W, D) in `kind`.
int scores_cuda(const uint64_t* masks, const void* acam, void* scores, const Sizes& sz,
                ScalarKind kind, void* stream);
// bool (S, H, W, D) <-> packed (S, H, W, Dw).
int pack_cuda(const bool* masks, uint64_t* words, const Sizes& sz, void* stream);
int unpack_cuda(const uint64_t* words, bool* masks, const Sizes& sz, void* stream);
#endif

}  // namespace affinity_grow
}  // namespace wsls
