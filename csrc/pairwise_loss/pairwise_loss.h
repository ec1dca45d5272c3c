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
// Both kernels work on a prepared problem (pairwise_loss_glue.h): the M labelled rows gathered and
// sorted by (group, label), centred (the loss depends on differences only), zero-padded to `dim`
// features, with their squared norms and dense class ids. Each group is a contiguous range of
// rows cut into blocks of kBlockRows rows (RowBlock). The forward visits the unordered pairs once
// (column tiles at or after the block's first row, q > p); the CPU backward too, adding row and
// column contributions; the CUDA backward visits each row's whole group, so that every thread
// owns its row's gradient (no atomics: results are deterministic).
#pragma once

#include <cstdint>

#include "../common.h"

namespace wsls {
namespace pairwise_loss {

enum Reduction : int { kBalanced = 0, kMean = 1, kSum = 2 };

// Rows per block: one CPU row tile, one CUDA thread block (a thread per row).
constexpr int64_t kBlockRows = 128;

// Rows [row_begin, row_end) of the sorted rows, all in the group [group_begin, group_end).
struct RowBlock {
  int64_t row_begin, row_end, group_begin, group_end;
};

// The prepared problem: device pointers for CUDA, host pointers for the CPU. acc_t is double for
// float64 embeddings, float otherwise (float16 and bfloat16 are converted in the glue).
struct Problem {
  int64_t dim;             // padded features (zeros beyond the real K)
  int64_t num_blocks;      // row blocks
  const void* emb;         // (rows + padding, dim) acc_t, sorted and centred
  const void* norms;       // (rows + padding) acc_t: squared norms of the rows of emb
  const int32_t* cls;      // (rows + padding): equal iff same (group, label); -1 in the padding
  const RowBlock* blocks;  // (num_blocks)
  double w_same, w_diff;   // the reduction's weight of one ordered pair of each kind (times the
                           // incoming gradient in the backward)
  double eps;              // clamp of tanh(d2 / 2) for different-class pairs
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
// CUDA launchers (pairwise_loss_kernel.cu). kind is Float or Double (the accumulation type).
// Forward: partials is (num_blocks) double scratch; *loss (one double, device) receives the loss.
// Backward: grad (rows, dim) acc_t receives d loss / d emb of the sorted rows, already weighted.
// Both return a cudaError_t (0 on success).
int forward_cuda(const Problem& p, ScalarKind kind, double* partials, double* loss, void* stream);
int backward_cuda(const Problem& p, ScalarKind kind, void* grad, void* stream);
#endif

}  // namespace pairwise_loss
}  // namespace wsls
