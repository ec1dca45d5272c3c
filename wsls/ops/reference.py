"""Pure-PyTorch references of the wsls ops: the truth for the tests, and readable math.

They follow ``DESIGN.md`` section 2 and use plain autograd. Low-precision inputs are computed in
float32 and the results cast back, as the kernels do.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

FUSIONS = ("mean", "geometric")


class AttentionCamResult(NamedTuple):
    """Outputs of ``attention_cam``.

    logits (B), cam (B, H, W, D) = w_cls . F (raw, not normalised), acam (B, H, W, D) in [0, 1],
    scores_h (B, H), scores_w (B, W), scores_d (B, D): softmax attention over each axis' slices.
    """

    logits: Tensor
    cam: Tensor
    acam: Tensor
    scores_h: Tensor
    scores_w: Tensor
    scores_d: Tensor


def _compute_dtype(t: Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def normalise_per_sample(maps: Tensor) -> Tensor:
    """Divide each sample's map (B, ...) by its maximum; an all-zero map stays zero."""
    peak = maps.flatten(1).amax(dim=1) if maps.shape[0] else maps.new_zeros(0)
    peak = peak.reshape((-1,) + (1,) * (maps.dim() - 1))
    return torch.where(peak > 0, maps / torch.where(peak > 0, peak, torch.ones_like(peak)), 0.0)


def attention_cam(
    features: Tensor, cls_weight: Tensor, cls_bias: Tensor, att_weight: Tensor, fusion: str = "mean"
) -> AttentionCamResult:
    """Attention-refined class activation map, DESIGN section 2.

    features (B, K, H, W, D), cls_weight (K), cls_bias (1), att_weight (3, K).
    For each axis a: P_a = features averaged over the other two axes (B, L_a, K);
    s_a = softmax_l(P_a . att_weight[a]); z_a = P_a . cls_weight (slice means of the CAM);
    logit = cls_bias + mean_a sum_l s_a[l] z_a[l]. ACAM = relu(CAM) times the fusion of the three
    axis weights L_a * s_a ('mean': arithmetic mean, 'geometric': cube root of the product),
    divided by its per-sample maximum.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"attention_cam: fusion must be 'mean' or 'geometric', got {fusion!r}")
    dtype = features.dtype
    ct = _compute_dtype(features)
    f, wc, b, wa = (t.to(ct) for t in (features, cls_weight, cls_bias, att_weight))
    _, _, H, W, D = f.shape
    cam = torch.einsum("bkhwd,k->bhwd", f, wc)
    pooled = [f.mean(dim=(3, 4)), f.mean(dim=(2, 4)), f.mean(dim=(2, 3))]  # (B, K, L_a)
    scores, attended = [], []
    for axis, p in enumerate(pooled):
        s = torch.softmax(torch.einsum("bkl,k->bl", p, wa[axis]), dim=1)
        z = torch.einsum("bkl,k->bl", p, wc)
        scores.append(s)
        attended.append((s * z).sum(dim=1))
    logits = b.reshape(()) + torch.stack(attended).mean(dim=0)
    acam = normalise_per_sample(torch.relu(cam) * fusion_weights(*scores, fusion=fusion))
    return AttentionCamResult(
        logits.to(dtype), cam.to(dtype), acam.to(dtype), *(s.to(dtype) for s in scores)
    )


def fusion_weights(scores_h: Tensor, scores_w: Tensor, scores_d: Tensor, fusion: str) -> Tensor:
    """Voxel weights (B, H, W, D) of ACAM from the axis attention scores (B, L_a): each axis
    weight is L_a * s_a (uniform attention gives 1); 'mean' averages the three, 'geometric'
    takes the cube root of their product."""
    wh = (scores_h.shape[1] * scores_h)[:, :, None, None]
    ww = (scores_w.shape[1] * scores_w)[:, None, :, None]
    wd = (scores_d.shape[1] * scores_d)[:, None, None, :]
    if fusion == "mean":
        return (wh + ww + wd) / 3
    return torch.pow(wh * ww * wd, 1.0 / 3.0)


def cam_gap(features: Tensor, cls_weight: Tensor, cls_bias: Tensor) -> tuple[Tensor, Tensor]:
    """CAM with global average pooling: logit = b + w . mean_v F (B), CAM = relu(w . F) / max.

    features (B, K, H, W, D) -> (logits (B), normalised cam (B, H, W, D)).
    """
    cam = torch.einsum("bkhwd,k->bhwd", features, cls_weight)
    logits = cls_bias.reshape(()) + cam.flatten(1).mean(dim=1)
    return logits, normalise_per_sample(torch.relu(cam))


def cam_gmp(features: Tensor, cls_weight: Tensor, cls_bias: Tensor) -> tuple[Tensor, Tensor]:
    """CAM with global max pooling: logit = b + w . max_v F (B), CAM = relu(w . F) / max.

    features (B, K, H, W, D) -> (logits (B), normalised cam (B, H, W, D)).
    """
    pooled = features.flatten(2).amax(dim=2)  # (B, K)
    logits = cls_bias.reshape(()) + pooled @ cls_weight
    cam = torch.einsum("bkhwd,k->bhwd", features, cls_weight)
    return logits, normalise_per_sample(torch.relu(cam))


# --- segmentation candidates: affinity_grow, mask_nms, candidate_scores ----------------------

GROW_CONNECTIVITIES = (0, 6, 26)


def affinity_bound(threshold: float) -> float:
    """A(p, q) = 2 / (1 + exp(d2)) >= threshold  <=>  d2 <= log(2 / threshold - 1)."""
    import math

    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"affinity_grow: threshold (lambda) must be in (0, 1], got {threshold}")
    return math.log(2.0 / threshold - 1.0)


def affinity_grow(
    embeddings: Tensor,
    seeds: Tensor,
    threshold: float,
    connectivity: int = 6,
    mask: Tensor | None = None,
) -> Tensor:
    """Candidate regions grown from seeds by affinity, one seed at a time with scipy.

    embeddings (K, H, W, D), seeds (S, 3) int64 voxel indices, threshold lambda in (0, 1],
    connectivity 0, 6 or 26, mask (H, W, D) bool or None -> bool (S, H, W, D). For each seed p:
    d2(q) = ||f(q) - f(p)||^2 summed over k in order (float32, float64 for float64 embeddings),
    pass = {q in mask : d2(q) <= log(2 / lambda - 1)} (that is A(p, q) >= lambda); the
    candidate is the component of pass holding p (``scipy.ndimage.label`` with the 6- or
    26-neighbourhood), or pass itself for connectivity 0. A seed outside the mask gives an empty
    candidate.
    """
    from scipy import ndimage

    if connectivity not in GROW_CONNECTIVITIES:
        raise ValueError(f"affinity_grow: connectivity must be 0, 6 or 26, got {connectivity}")
    bound = affinity_bound(threshold)
    ct = _compute_dtype(embeddings)
    e = embeddings.detach().cpu().to(ct)
    K, H, W, D = e.shape
    m = None if mask is None else mask.detach().cpu().bool()
    out = torch.zeros((seeds.shape[0], H, W, D), dtype=torch.bool)
    structure = None
    if connectivity:
        structure = ndimage.generate_binary_structure(3, 1 if connectivity == 6 else 3)
    for i, (h, w, d) in enumerate(seeds.tolist()):
        if m is not None and not m[h, w, d]:
            continue
        f = e[:, h, w, d]
        d2 = torch.zeros((H, W, D), dtype=ct)
        for k in range(K):  # in order, each operation rounded on its own, like the kernels
            diff = e[k] - f[k]
            d2 = d2 + diff * diff
        passing = d2.double() <= bound
        if m is not None:
            passing &= m
        if connectivity == 0:
            out[i] = passing
            continue
        labels, _ = ndimage.label(passing.numpy(), structure=structure)
        if labels[h, w, d]:
            out[i] = torch.from_numpy(labels == labels[h, w, d])
    return out.to(embeddings.device)


def mask_iou(masks: Tensor, chunk: int = 1 << 16) -> Tensor:
    """Pairwise IoU (S, S) float64 of bool masks (S, ...); 0 where both are empty.

    Intersections are float32 matrix products over chunks of voxels (exact: a chunk's counts stay
    below 2**24) summed in float64, so memory stays at S x chunk floats.
    """
    flat = masks.reshape(masks.shape[0], -1)
    inter = torch.zeros((flat.shape[0], flat.shape[0]), dtype=torch.float64)
    for start in range(0, flat.shape[1], chunk):
        part = flat[:, start : start + chunk].to(torch.float32)
        inter += (part @ part.T).to(torch.float64)
    area = torch.diagonal(inter).clone()
    union = area[:, None] + area[None, :] - inter
    return torch.where(union > 0, inter / torch.where(union > 0, union, 1.0), 0.0)


def mask_nms(masks: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression of bool masks (S, ...) by scores (S).

    Visits candidates by descending score (ties: lower index first); keeps a candidate unless a
    kept one has IoU > iou_threshold with it. Returns the kept indices (int64) in visiting order.
    IoU is 0 when both masks are empty, so an empty candidate is never suppressed.
    """
    iou = mask_iou(masks.cpu())
    order = torch.sort(scores.detach().cpu(), descending=True, stable=True).indices
    suppressed = torch.zeros(masks.shape[0], dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return torch.tensor(keep, dtype=torch.int64, device=masks.device)


def candidate_scores(masks: Tensor, acam: Tensor) -> Tensor:
    """Mean of acam (H, W, D) over each bool mask (S, H, W, D) -> (S), 0 for an empty mask."""
    m = masks.reshape(masks.shape[0], -1).to(torch.float64)
    total = m @ acam.reshape(-1).to(torch.float64)
    count = m.sum(dim=1)
    return torch.where(count > 0, total / count.clamp(min=1), 0.0).to(acam.dtype)
