// wsls::pairwise_affinity_loss: the pairwise affinity loss of DESIGN.md section 2 over N labelled
// embeddings, tiled like flash attention so that memory stays O(N K). Torch-free: included by the
// CUDA kernels.
//
// Inputs: embeddings f (N, K), labels (N) int64 (negative = ignored), groups (N) int64 optional.
// For every ordered pair p != q with both labels >= 0 and the same group:
//   d2 = ||f_p - f_q||^2,  affinity A = 2 / (1 + exp(d2))
//   same label:      loss = -log A       = softplus(d2) - log 2,  d loss / d d2 = sigmoid(d2)
//   different label: loss = -log(1 - A)  = -log(max(tanh(d2 / 2), eps)),
//                    d loss / d d2 = -1 / sinh(d2), and 0 where the clamp is active (d2 -> 0)
// Reduction: 'balanced' (mean of the same-class mean and the different-class mean, over the
// non-empty kinds only), 'mean' (over all valid ordered pairs) or 'sum'. No valid pair: loss 0.
//
// Both kernels work on a prepared problem (pairwise_loss_glue.h), built by tensor ops whose sizes
// follow from the shapes alone (no host synchronisation): all N rows sorted by (labelled, group,
// label), so that the ignored rows come first and each group and each class is a run of the
// labelled ones; centred over the labelled rows (the loss depends on differences only; skipped
// where it would overflow), zero-padded to `dim` features; their squared norms, and dense class
// ids (-1 for the ignored rows) and group ids, both non-decreasing (run_begin / run_end of
// pairwise_loss_math.h find a row's class or group). The CPU reads the ids in host memory to
// count the pairs of each kind and to cut the groups into blocks of kBlockRows rows (RowBlock).
// The CUDA kernels count the pairs on the device and take fixed blocks of kBlockRows sorted rows
// (ceil(N / kBlockRows) of them, from the shape) whose rows may belong to different groups: each
// thread keeps to its row's group. The forward visits the unordered pairs once (columns q > p);
// the CPU backward too, adding row and column contributions; the CUDA backward visits each row's
// whole group, so that every thread owns its row's gradient (no atomics: results are
// deterministic).
//
// Huge embeddings: where the squared norms or the norm-based d2 overflow (NaN or Inf), d2 is
// recomputed from the differences, which for finite embeddings is never NaN: a pair whose d2
// overflows has d2 = +Inf, loss +Inf for the same class (its exact value exceeds the type) and 0
// for different classes, with gradient coefficient 1 and 0 (pairwise_loss_math.h).
#pragma once

#include <cstdint>

#include "../common.h"

namespace wsls {
namespace pairwise_loss {

enum Reduction : int { kBalanced = 0, kMean = 1, kSum = 2 };

// Rows per block: one CPU row tile, one CUDA thread block (a thread per row).
constexpr int64_t kBlockRows = 128;

// The CPU's row blocks: sorted rows [row_begin, row_end), all in the group [group_begin,
// group_end).
struct RowBlock {
  int64_t row_begin, row_end, group_begin, group_end;
};

// The prepared problem as the CUDA kernels see it (device pointers). acc_t is double for float64
// embeddings, float otherwise (float16 and bfloat16 are converted in the glue).
struct Problem {
  int64_t rows;           // N sorted rows, the ignored ones first
  int64_t dim;            // padded features (zeros beyond the real K)
  int64_t num_blocks;     // ceil(rows / kBlockRows) blocks of consecutive sorted rows
  const void* emb;        // (rows, dim) acc_t, sorted, labelled rows centred, others zero
  const void* norms;      // (rows) acc_t: squared norms of the rows of emb
  const int32_t* cls;     // (rows): equal iff same (group, label); -1 for ignored rows
  const int32_t* group;   // (rows): group id; both ids are non-decreasing
  const double* weights;  // (2) on the device: the reduction's weight of one ordered pair
                          // of each kind (same, different), times 4 x the incoming
                          // gradient in the backward
  double eps;             // clamp of tanh(d2 / 2) for different-class pairs
};

// Features the CUDA kernels see: 16, 32 or 64 (specialised at compile time), else a multiple of
// 4 (the generic kernel).
inline int64_t cuda_padded_dim(int64_t K) {
  if (K <= 16) return 16;
  if (K <= 32) return 32;
  if (K <= 64) return 64;
  return (K + 3) / 4 * 4;
}

#if defined(WSLS_WITH_CUDA) || defined(__CUDACC__)
// CUDA launchers (pairwise_loss_kernel.cu), asynchronous on the stream (no host synchronisation,
// a fixed sequence of launches for given sizes). kind is Float or Double (the accumulation type).
// weights: counts the valid ordered pairs of each kind from the ids (counts: 2 int64 of scratch),
// then *weights (2 doubles, device) = scale * reduction_weights(reduction, n_same, n_diff) with
// scale = 4 * *grad (grad: one device double) for the backward, 1 without grad (forward).
// Forward: partials is (num_blocks) double scratch; *loss (one double, device) receives the loss.
// Backward: grad (rows, dim) acc_t receives d loss / d emb of the sorted rows, already weighted
// (zeros for rows without pairs: zeroed by the caller). All return a cudaError_t (0: success).
int weights_cuda(int reduction, const int32_t* cls, const int32_t* group, int64_t rows,
                 const double* grad, int64_t* counts, double* weights, void* stream);
int forward_cuda(const Problem& p, ScalarKind kind, double* partials, double* loss, void* stream);
int backward_cuda(const Problem& p, ScalarKind kind, void* grad, void* stream);
#endif

}  // namespace pairwise_loss
}  // namespace wsls
