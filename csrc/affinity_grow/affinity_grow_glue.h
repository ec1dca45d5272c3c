// Torch glue shared by the CPU and CUDA registrations of affinity_grow, mask_nms,
// candidate_scores, pack_masks and unpack_masks: input checks (each error names the op and the
// argument), the seed bounds check, the NMS order.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/sort.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include <cmath>

#include "../checks.h"
#include "affinity_grow.h"
#include "affinity_grow_math.h"

namespace wsls {
namespace affinity_grow {

// Packed masks travel as int64 tensors; the kernels see their bits as unsigned words.
inline const word_t* words_of(const at::Tensor& t) {
  return reinterpret_cast<const word_t*>(t.data_ptr<int64_t>());
}
inline word_t* mutable_words_of(at::Tensor& t) {
  return reinterpret_cast<word_t*>(t.data_ptr<int64_t>());
}

inline Sizes check_grow_inputs(const at::Tensor& embeddings, const at::Tensor& seeds,
                               double threshold, int64_t connectivity,
                               const c10::optional<at::Tensor>& mask) {
  constexpr const char* op = "affinity_grow";
  check_dim(embeddings, 4, op, "embeddings", "(K, H, W, D)");
  scalar_kind(embeddings, op, "embeddings");
  const Sizes sz{0, embeddings.size(0), embeddings.size(1), embeddings.size(2), embeddings.size(3)};
  TORCH_CHECK(sz.K > 0, op, ": embeddings must have at least one channel (K > 0), got shape ",
              embeddings.sizes());
  TORCH_CHECK(sz.H > 0 && sz.W > 0 && sz.D > 0, op,
              ": embeddings must have a non-empty volume (H, W, D > 0), got shape ",
              embeddings.sizes());
  check_dim(seeds, 2, op, "seeds", "(S, 3)");
  TORCH_CHECK(seeds.size(1) == 3, op, ": seeds must be (S, 3) voxel indices (h, w, d), got shape ",
              seeds.sizes());
  TORCH_CHECK(seeds.scalar_type() == at::kLong, op, ": seeds must be int64, got ",
              seeds.scalar_type());
  check_same_device(seeds, embeddings, op, "seeds", "embeddings");
  TORCH_CHECK(threshold > 0.0 && threshold <= 1.0, op,
              ": threshold (lambda) must be in (0, 1], got ", threshold);
  TORCH_CHECK(connectivity == 0 || connectivity == 6 || connectivity == 26, op,
              ": connectivity must be 0 (the global set), 6 or 26, got ", connectivity);
  if (mask.has_value()) {
    const at::Tensor& m = *mask;
    TORCH_CHECK(m.scalar_type() == at::kBool, op, ": mask must be bool, got ", m.scalar_type());
    TORCH_CHECK(m.dim() == 3 && m.size(0) == sz.H && m.size(1) == sz.W && m.size(2) == sz.D, op,
                ": mask must be (H, W, D) = (", sz.H, ", ", sz.W, ", ", sz.D,
                ") like the embeddings, got shape ", m.sizes());
    check_same_device(m, embeddings, op, "mask", "embeddings");
  }
  return Sizes{seeds.size(0), sz.K, sz.H, sz.W, sz.D};
}

// Every seed inside the volume. seeds_cpu: (S, 3) int64 on the CPU. Always on the CPU (the seeds
// are in host memory); on CUDA under debug checks only (a copy to the host): without them, the
// CUDA kernels give a seed outside the volume an empty candidate and read nothing outside it.
inline void check_seeds_in_volume(const at::Tensor& seeds_cpu, const Sizes& sz) {
  const at::Tensor s = seeds_cpu.contiguous();
  const int64_t* p = s.data_ptr<int64_t>();
  for (int64_t i = 0; i < sz.S; ++i) {
    const int64_t h = p[3 * i], w = p[3 * i + 1], d = p[3 * i + 2];
    TORCH_CHECK(h >= 0 && h < sz.H && w >= 0 && w < sz.W && d >= 0 && d < sz.D,
                "affinity_grow: seeds[", i, "] = (", h, ", ", w, ", ", d,
                ") is outside the volume (H, W, D) = (", sz.H, ", ", sz.W, ", ", sz.D, ")");
  }
}

// Always checked on the CPU; on CUDA under debug checks only (csrc/debug_checks.h): without them,
// a non-finite voxel never passes (its d2 is NaN), and a seed with a non-finite embedding gives an
// empty candidate.
constexpr const char* kNonFinite = "affinity_grow: embeddings contain NaN or Inf";

// Packed candidates (S, H, W, Dw) int64. Returns (S, H, W, Dw) with K = 0 and D = 64 * Dw (the
// words do not know D; callers that need it pass it separately).
inline Sizes check_packed(const at::Tensor& masks, const char* op) {
  TORCH_CHECK(masks.dim() == 4 && masks.scalar_type() == at::kLong, op,
              ": masks must be packed candidates (S, H, W, ceil(D / 64)) int64 (see "
              "wsls.ops.pack_masks), got ",
              masks.scalar_type(), " of shape ", masks.sizes());
  return Sizes{masks.size(0), 0, masks.size(1), masks.size(2), 64 * masks.size(3)};
}

inline Sizes check_nms_inputs(const at::Tensor& masks, const at::Tensor& scores,
                              double iou_threshold) {
  constexpr const char* op = "mask_nms";
  const Sizes sz = check_packed(masks, op);
  check_dim(scores, 1, op, "scores", "(S)");
  TORCH_CHECK(scores.size(0) == sz.S, op, ": scores must have one entry per candidate (S = ", sz.S,
              "), got ", scores.size(0));
  TORCH_CHECK(at::isFloatingType(scores.scalar_type()), op,
              ": scores must be a floating-point tensor, got ", scores.scalar_type());
  check_same_device(scores, masks, op, "scores", "masks");
  TORCH_CHECK(iou_threshold >= 0.0 && iou_threshold <= 1.0, op,
              ": iou_threshold must be in [0, 1], got ", iou_threshold);
  return sz;
}

// NaN scores have no rank. The CPU reads them in host memory; CUDA reads the flag together with
// the kept count (mask_nms' one synchronisation).
constexpr const char* kNanScores = "mask_nms: scores contain NaN";

// Candidate positions by descending score, ties by lower index (a stable sort).
inline at::Tensor nms_order(const at::Tensor& scores) {
  return std::get<1>(at::sort(scores, /*stable=*/true, /*dim=*/0, /*descending=*/true));
}

inline Sizes check_scores_inputs(const at::Tensor& masks, const at::Tensor& acam) {
  constexpr const char* op = "candidate_scores";
  const Sizes packed = check_packed(masks, op);
  check_dim(acam, 3, op, "acam", "(H, W, D)");
  scalar_kind(acam, op, "acam");
  const Sizes sz{packed.S, 0, acam.size(0), acam.size(1), acam.size(2)};
  TORCH_CHECK(sz.H == packed.H && sz.W == packed.W && sz.Dw() == masks.size(3), op,
              ": masks (S, H, W, ceil(D / 64)) = ", masks.sizes(),
              " do not fit acam (H, W, D) = ", acam.sizes());
  check_same_device(acam, masks, op, "acam", "masks");
  return sz;
}

inline Sizes check_pack_inputs(const at::Tensor& masks) {
  constexpr const char* op = "pack_masks";
  TORCH_CHECK(masks.dim() == 4 && masks.scalar_type() == at::kBool, op,
              ": masks must be bool (S, H, W, D), got ", masks.scalar_type(), " of shape ",
              masks.sizes());
  return Sizes{masks.size(0), 0, masks.size(1), masks.size(2), masks.size(3)};
}

inline Sizes check_unpack_inputs(const at::Tensor& masks, int64_t depth) {
  constexpr const char* op = "unpack_masks";
  const Sizes packed = check_packed(masks, op);
  const Sizes sz{packed.S, 0, packed.H, packed.W, depth};
  TORCH_CHECK(depth >= 0 && sz.Dw() == masks.size(3), op, ": depth ", depth,
              " does not fit packed rows of ", masks.size(3), " words (need ceil(depth / 64))");
  return sz;
}

}  // namespace affinity_grow
}  // namespace wsls
