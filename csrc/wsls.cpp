// Every schema of the wsls operator library, in one place. Each backend registers its kernels in
// its own file with TORCH_LIBRARY_IMPL; Python attaches fake kernels and autograd (wsls/ops).
#include <torch/library.h>

TORCH_LIBRARY(wsls, m) {
  // features (B, K, H, W, D), cls_weight (K), cls_bias (1), att_weight (3, K); see
  // attention_cam/attention_cam.h. pooled (B, H + W + D, K) is kept for the backward.
  m.def(
      "attention_cam(Tensor features, Tensor cls_weight, Tensor cls_bias, Tensor att_weight, "
      "str fusion='mean') -> (Tensor logits, Tensor cam, Tensor acam, Tensor scores_h, "
      "Tensor scores_w, Tensor scores_d, Tensor pooled)",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "attention_cam_backward(Tensor grad_logits, Tensor pooled, Tensor cls_weight, "
      "Tensor att_weight, SymInt height, SymInt width, SymInt depth) -> (Tensor grad_features, "
      "Tensor grad_cls_weight, Tensor grad_cls_bias, Tensor grad_att_weight)",
      {at::Tag::pt2_compliant_tag});
  // Segmentation candidates (affinity_grow/affinity_grow.h). Candidate masks are packed
  // row-aligned: int64 (S, H, W, ceil(D / 64)), voxel (h, w, d) = bit d % 64 of word d / 64.
  m.def(
      "affinity_grow(Tensor embeddings, Tensor seeds, float threshold, int connectivity=6, "
      "Tensor? mask=None) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def("mask_nms(Tensor masks, Tensor scores, float iou_threshold) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  m.def("candidate_scores(Tensor masks, Tensor acam) -> Tensor", {at::Tag::pt2_compliant_tag});
  m.def("pack_masks(Tensor masks) -> Tensor", {at::Tag::pt2_compliant_tag});
  m.def("unpack_masks(Tensor masks, SymInt depth) -> Tensor", {at::Tag::pt2_compliant_tag});
  // embeddings (N, K), labels (N) int64 (negative = ignored), groups (N) int64 or None; see
  // pairwise_loss/pairwise_loss.h. reduction: 'balanced', 'mean' or 'sum'. The backward
  // recomputes the pairs from the inputs; grad is the loss' gradient (one value).
  m.def(
      "pairwise_affinity_loss(Tensor embeddings, Tensor labels, Tensor? groups=None, "
      "str reduction='balanced', float eps=1e-06) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "pairwise_affinity_loss_backward(Tensor grad, Tensor embeddings, Tensor labels, "
      "Tensor? groups, str reduction, float eps) -> Tensor",
      {at::Tag::pt2_compliant_tag});
}
