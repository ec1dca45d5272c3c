// Torch glue shared by the CPU and CUDA registrations of pairwise_affinity_loss: input checks and
// the preparation of the problem (labelled rows gathered, sorted by (group, label), centred and
// padded; class ids; the numbers of pairs of each kind; the row blocks), all with ATen ops on the
// embeddings' device.
#pragma once

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/constant_pad_nd.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/full.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros.h>
#include <c10/util/string_view.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "../checks.h"
#include "pairwise_loss.h"
#include "pairwise_loss_math.h"

namespace wsls {
namespace pairwise_loss {

constexpr const char* kOp = "pairwise_affinity_loss";
constexpr const char* kBackwardOp = "pairwise_affinity_loss_backward";

inline int parse_reduction(c10::string_view reduction, const char* op) {
  if (reduction == "balanced") return kBalanced;
  if (reduction == "mean") return kMean;
  if (reduction == "sum") return kSum;
  TORCH_CHECK(false, op, ": reduction must be 'balanced', 'mean' or 'sum', got '",
              std::string(reduction), "'");
}

inline void check_index_vector(const at::Tensor& t, const at::Tensor& embeddings, const char* op,
                               const char* name) {
  TORCH_CHECK(t.dim() == 1, op, ": ", name,
              " must be (N) with one entry per row of embeddings, got shape ", t.sizes());
  TORCH_CHECK(t.size(0) == embeddings.size(0), op, ": ", name,
              " must have N = ", embeddings.size(0), " entries (the rows of embeddings), got ",
              t.size(0));
  TORCH_CHECK(t.scalar_type() == at::kLong, op, ": ", name, " must be int64, got ",
              t.scalar_type());
  check_same_device(t, embeddings, op, name, "embeddings");
}

// Checks everything but the reduction; returns the embeddings' ScalarKind.
inline ScalarKind check_inputs(const at::Tensor& embeddings, const at::Tensor& labels,
                               const std::optional<at::Tensor>& groups, double eps,
                               const char* op) {
  check_dim(embeddings, 2, op, "embeddings", "(N, K)");
  const ScalarKind kind = scalar_kind(embeddings, op, "embeddings");
  TORCH_CHECK(embeddings.size(0) < (int64_t(1) << 31) - 1024, op,
              ": embeddings must have fewer than 2^31 rows, got ", embeddings.size(0));
  check_index_vector(labels, embeddings, op, "labels");
  if (groups.has_value()) check_index_vector(*groups, embeddings, op, "groups");
  TORCH_CHECK(eps > 0.0 && eps < 1.0, op, ": eps must be in (0, 1), got ", eps);
  TORCH_CHECK(embeddings.numel() == 0 || at::isfinite(embeddings).all().item<bool>(), op,
              ": embeddings contain NaN or Inf");
  return kind;
}

// The prepared problem (see pairwise_loss.h); tensors on the embeddings' device.
struct Prepared {
  int64_t rows = 0;  // M labelled rows
  int64_t dim = 0;   // padded features
  at::Tensor perm;   // (M) int64: original row of each sorted row
  at::Tensor emb;    // (M + pad_rows, dim) acc type, centred, zero padding
  at::Tensor norms;  // (M + pad_rows) acc type
  at::Tensor cls;    // (M + pad_rows) int32, -1 in the padding
  std::vector<RowBlock> blocks;
  int64_t n_same = 0, n_diff = 0;  // valid ordered pairs of each kind
};

// Sizes (s_0, s_1, ...) of the runs that start where `starts` is true, from their positions.
inline at::Tensor run_lengths(const at::Tensor& starts) {
  const at::Tensor pos = at::nonzero(starts).squeeze(1);
  const at::Tensor end = at::full({1}, starts.size(0), pos.options());
  const at::Tensor bounds = at::cat({pos, end});
  return bounds.narrow(0, 1, pos.size(0)) - pos;
}

// Gathers the labelled rows, sorts them by (group, label) (stable: ties keep their order), and
// builds what the kernels need. dim: padded features (>= K); the rows are zero-padded to a
// multiple of row_multiple, plus extra_rows.
inline Prepared prepare(const at::Tensor& embeddings, const at::Tensor& labels,
                        const std::optional<at::Tensor>& groups, int64_t dim, int64_t row_multiple,
                        int64_t extra_rows) {
  Prepared out;
  const int64_t K = embeddings.size(1);
  out.dim = dim;
  const at::ScalarType acc = acc_type(embeddings.scalar_type());
  const at::Tensor valid = at::nonzero(labels >= 0).squeeze(1);
  const int64_t M = valid.size(0);
  out.rows = M;
  const int64_t pad_rows = (M + row_multiple - 1) / row_multiple * row_multiple - M + extra_rows;
  at::Tensor order;
  at::Tensor lab = labels.index_select(0, valid);
  at::Tensor grp;
  if (M > 0) {
    order = std::get<1>(at::sort(lab, /*stable=*/true, 0, false));
    if (groups.has_value()) {
      const auto by_group = at::sort(groups->index_select(0, valid).index_select(0, order),
                                     /*stable=*/true, 0, false);
      order = order.index_select(0, std::get<1>(by_group));
      grp = std::get<0>(by_group);
    }
    lab = lab.index_select(0, order);
    out.perm = valid.index_select(0, order);
  } else {
    out.perm = valid;
  }

  // Class and group boundaries, the numbers of pairs, the row blocks.
  std::vector<int64_t> group_sizes;
  if (M > 0) {
    at::Tensor new_group = at::zeros({M}, labels.options().dtype(at::kBool));
    new_group.narrow(0, 0, 1).fill_(true);
    at::Tensor new_class = new_group.clone();
    if (M > 1) {
      at::Tensor changed = lab.narrow(0, 1, M - 1) != lab.narrow(0, 0, M - 1);
      if (groups.has_value()) {
        const at::Tensor gchanged = grp.narrow(0, 1, M - 1) != grp.narrow(0, 0, M - 1);
        new_group.narrow(0, 1, M - 1).copy_(gchanged);
        changed = changed | gchanged;
      }
      new_class.narrow(0, 1, M - 1).copy_(changed);
    }
    const at::Tensor class_sizes = run_lengths(new_class);
    const at::Tensor gsizes = run_lengths(new_group).to(at::kCPU);
    out.n_same = (class_sizes * (class_sizes - 1)).sum().item<int64_t>();
    const int64_t n_total = (gsizes * (gsizes - 1)).sum().item<int64_t>();
    out.n_diff = n_total - out.n_same;
    out.cls = at::constant_pad_nd(at::cumsum(new_class, 0, at::kInt) - 1, {0, pad_rows}, -1);
    const int64_t* gs = gsizes.data_ptr<int64_t>();
    for (int64_t g = 0, begin = 0; g < gsizes.size(0); begin += gs[g], ++g) {
      const int64_t end = begin + gs[g];
      if (end - begin < 2) continue;  // no pair in a group of one
      for (int64_t r = begin; r < end; r += kBlockRows) {
        out.blocks.push_back({r, std::min(r + kBlockRows, end), begin, end});
      }
    }
  } else {
    out.cls = at::full({pad_rows}, -1, labels.options().dtype(at::kInt));
  }

  // Rows: gathered in the accumulation type, centred over the labelled rows, zero padded.
  out.emb = at::zeros({M + pad_rows, dim}, embeddings.options().dtype(acc));
  if (M > 0) {
    at::Tensor body = out.emb.narrow(0, 0, M).narrow(1, 0, K);
    body.copy_(embeddings.index_select(0, out.perm));
    body.sub_(body.mean(0, /*keepdim=*/true));
  }
  out.norms = out.emb.square().sum(1);
  return out;
}

inline Problem make_problem(const Prepared& prep, const RowBlock* blocks, double w_same,
                            double w_diff, double eps) {
  Problem p;
  p.dim = prep.dim;
  p.num_blocks = static_cast<int64_t>(prep.blocks.size());
  p.emb = prep.emb.data_ptr();
  p.norms = prep.norms.data_ptr();
  p.cls = prep.cls.data_ptr<int32_t>();
  p.blocks = blocks;
  p.w_same = w_same;
  p.w_diff = w_diff;
  p.eps = eps;
  return p;
}

// eps as the kernels use it: for float, at least the smallest normal float (the polynomial log's
// range).
inline double kernel_eps(const at::Tensor& embeddings, double eps) {
  return embeddings.scalar_type() == at::kDouble ? eps : std::max(eps, 1.1754944e-38);
}

// The incoming gradient of the scalar loss, as a double.
inline double grad_scalar(const at::Tensor& grad, const at::Tensor& embeddings) {
  TORCH_CHECK(grad.numel() == 1, kBackwardOp,
              ": grad must hold one value (the loss' gradient), got shape ", grad.sizes());
  check_same_device(grad, embeddings, kBackwardOp, "grad", "embeddings");
  return grad.reshape({}).item<double>();
}

}  // namespace pairwise_loss
}  // namespace wsls
