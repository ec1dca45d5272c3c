// Torch glue shared by the CPU and CUDA registrations of pairwise_affinity_loss: input checks and
// the preparation of the problem (rows sorted by (ignored, group, label), centred and padded;
// class ids; group ranges; the numbers of pairs of each kind), all with ATen ops on the
// embeddings' device whose sizes follow from the shapes: no host synchronisation.
#pragma once

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/aminmax.h>
#include <ATen/ops/constant_pad_nd.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/full.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <c10/util/string_view.h>

#include <algorithm>
#include <optional>
#include <string>
#include <tuple>

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

// Checks everything but the reduction and the values; returns the embeddings' ScalarKind. The
// values (finite embeddings) are checked by each backend: check_finite_cpu, or on CUDA
// check_finite_device under debug checks (csrc/debug_checks.h).
inline ScalarKind check_inputs(const at::Tensor& embeddings, const at::Tensor& labels,
                               const std::optional<at::Tensor>& groups, double eps,
                               const char* op) {
  check_dim(embeddings, 2, op, "embeddings", "(N, K)");
  const ScalarKind kind = scalar_kind(embeddings, op, "embeddings");
  TORCH_CHECK(embeddings.size(1) > 0, op,
              ": embeddings must have at least one channel (K > 0), got shape ",
              embeddings.sizes());
  TORCH_CHECK(embeddings.size(0) < (int64_t(1) << 31) - 1024, op,
              ": embeddings must have fewer than 2^31 rows, got ", embeddings.size(0));
  check_index_vector(labels, embeddings, op, "labels");
  if (groups.has_value()) check_index_vector(*groups, embeddings, op, "groups");
  TORCH_CHECK(eps > 0.0 && eps < 1.0, op, ": eps must be in (0, 1), got ", eps);
  return kind;
}

inline void raise_non_finite(const char* op) {
  TORCH_CHECK(false, op, ": embeddings contain NaN or Inf");
}

// One host synchronisation: CUDA under debug checks only.
inline void check_finite_device(const at::Tensor& embeddings, const char* op) {
  if (embeddings.numel() != 0 && !at::isfinite(embeddings).all().item<bool>()) {
    raise_non_finite(op);
  }
}

// The prepared problem (see pairwise_loss.h): tensors on the embeddings' device, made by tensor
// ops whose sizes follow from the shapes alone (no nonzero, no host copy, no .item()).
struct Prepared {
  int64_t rows = 0;  // N: every row, sorted: the ignored ones first, then the labelled ones
  int64_t dim = 0;   // padded features
  at::Tensor perm;   // (N) int64: original row of each sorted row
  at::Tensor emb;    // (N + pad_rows, dim) acc type: labelled rows centred, the others zero
  at::Tensor norms;  // (N + pad_rows) acc type
  at::Tensor cls;    // (N + pad_rows) int32: dense class id, -1 for ignored rows and padding
  at::Tensor group;  // (N) int32: dense group id
};

// Sorts every row by (labelled, group, label), stable (ties keep their order), and builds what
// the kernels need. Class and group ids are non-decreasing along the sorted rows, so that each
// class and each group is a run of them (run_begin / run_end, pairwise_loss_math.h), and the
// ignored rows (labels < 0: class -1, groups of their own) come first. dim: padded features
// (>= K); the rows are zero-padded to a multiple of row_multiple, plus extra_rows.
inline Prepared prepare(const at::Tensor& embeddings, const at::Tensor& labels,
                        const std::optional<at::Tensor>& groups, int64_t dim, int64_t row_multiple,
                        int64_t extra_rows) {
  Prepared out;
  const int64_t N = embeddings.size(0), K = embeddings.size(1);
  out.rows = N;
  out.dim = dim;
  const at::ScalarType acc = acc_type(embeddings.scalar_type());
  const int64_t pad_rows = (N + row_multiple - 1) / row_multiple * row_multiple - N + extra_rows;

  // By label (negative labels, the ignored rows, first); with groups, then by group and by
  // whether labelled (which puts the ignored rows first again).
  auto [lab, order] = at::sort(labels, /*stable=*/true, 0, false);
  at::Tensor grp;
  if (groups.has_value()) {
    at::Tensor by_group;
    std::tie(grp, by_group) = at::sort(groups->index_select(0, order), /*stable=*/true, 0, false);
    order = order.index_select(0, by_group);
    lab = lab.index_select(0, by_group);
    const at::Tensor by_labelled =
        std::get<1>(at::sort((lab >= 0).to(at::kByte), /*stable=*/true, 0, false));
    order = order.index_select(0, by_labelled);
    lab = lab.index_select(0, by_labelled);
    grp = grp.index_select(0, by_labelled);
  }
  out.perm = order;
  const at::Tensor ignored = lab < 0;

  // Runs: a new group where the group or the ignored flag changes, a new class where the label
  // changes too; ids by counting the runs.
  at::Tensor new_group = at::ones({N}, labels.options().dtype(at::kBool));
  at::Tensor new_class = new_group.clone();
  if (N > 1) {
    at::Tensor changed = ignored.narrow(0, 1, N - 1) != ignored.narrow(0, 0, N - 1);
    if (groups.has_value()) changed.logical_or_(grp.narrow(0, 1, N - 1) != grp.narrow(0, 0, N - 1));
    new_group.narrow(0, 1, N - 1).copy_(changed);
    changed.logical_or_(lab.narrow(0, 1, N - 1) != lab.narrow(0, 0, N - 1));
    new_class.narrow(0, 1, N - 1).copy_(changed);
  }
  out.group = at::cumsum(new_group, 0, at::kInt).sub_(1);
  at::Tensor class_id = at::cumsum(new_class, 0, at::kInt).sub_(1).masked_fill_(ignored, -1);
  out.cls = at::constant_pad_nd(class_id, {0, pad_rows}, -1);

  // Rows in the accumulation type, zero padded; the labelled ones centred on their mean, which
  // keeps the norms' form of d2 accurate when they share a large offset. Skipped (a zero shift)
  // where it would overflow: the kernels then take d2 from the differences (huge embeddings).
  out.emb = at::zeros({N + pad_rows, dim}, embeddings.options().dtype(acc));
  if (N > 0) {
    at::Tensor body = out.emb.narrow(0, 0, N).narrow(1, 0, K);
    body.copy_(embeddings.index_select(0, out.perm));
    const at::Tensor ignored_rows = ignored.unsqueeze(1);
    body.masked_fill_(ignored_rows, 0);
    const at::Tensor mean = body.sum(0, /*keepdim=*/true) / (N - ignored.sum()).clamp_min(1);
    const auto [lo, hi] = at::aminmax(body, 0, /*keepdim=*/true);
    const at::Tensor shift_ok =
        at::isfinite(mean).all() & at::isfinite(hi - mean).all() & at::isfinite(lo - mean).all();
    body.sub_(at::where(shift_ok, mean, 0));
    body.masked_fill_(ignored_rows, 0);
  }
  out.norms = out.emb.square().sum(1);
  return out;
}

// eps as the kernels use it: for float, at least the smallest normal float (the polynomial log's
// range).
inline double kernel_eps(const at::Tensor& embeddings, double eps) {
  return embeddings.scalar_type() == at::kDouble ? eps : std::max(eps, 1.1754944e-38);
}

// The incoming gradient of the scalar loss, as a 0-dim float64 tensor on its device.
inline at::Tensor grad_scalar(const at::Tensor& grad, const at::Tensor& embeddings) {
  TORCH_CHECK(grad.numel() == 1, kBackwardOp,
              ": grad must hold one value (the loss' gradient), got shape ", grad.sizes());
  check_same_device(grad, embeddings, kBackwardOp, "grad", "embeddings");
  return grad.reshape({}).to(at::kDouble);
}

}  // namespace pairwise_loss
}  // namespace wsls
