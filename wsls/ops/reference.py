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


# --- pairwise affinity loss (DESIGN section 2 "Affinity", "Class balance") -------------------

PAIR_REDUCTIONS = ("balanced", "mean", "sum")
_LOG2 = 0.6931471805599453


def _check_reduction(reduction: str) -> None:
    if reduction not in PAIR_REDUCTIONS:
        raise ValueError(
            "pairwise_affinity_loss: reduction must be 'balanced', 'mean' or 'sum', "
            f"got {reduction!r}"
        )


def pair_losses(d2: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Per-pair losses at squared distance d2: (same class, different class).

    same: -log A = softplus(d2) - log 2 with A = 2 / (1 + exp(d2));
    different: -log(1 - A) = -log(tanh(d2 / 2)), clamped at eps (finite at d2 = 0, zero
    gradient where the clamp holds).
    """
    same = torch.nn.functional.softplus(d2) - _LOG2
    diff = -torch.log(torch.tanh(d2 / 2).clamp_min(eps))
    return same, diff


def _reduce_pairs(s_same, s_diff, n_same, n_diff, reduction: str) -> Tensor:
    """The reduction from the sums and numbers of ordered pairs of each kind."""
    w_same, w_diff = pair_weights(n_same, n_diff, reduction)
    return w_same * s_same + w_diff * s_diff


def pairwise_affinity_loss(
    embeddings: Tensor,
    labels: Tensor,
    groups: Tensor | None = None,
    reduction: str = "balanced",
    eps: float = 1e-6,
) -> Tensor:
    """Dense pairwise affinity loss (N x N matrices: small N only). embeddings (N, K), labels
    (N) int64 (negative = ignored), groups (N) int64 or None (pairs only within a group).

    Over ordered pairs p != q, both labelled, same group: the same-class and different-class
    losses of ``pair_losses``; 'balanced' = mean of the same-class mean and the
    different-class mean (over the non-empty kinds), 'mean' over all pairs, 'sum'. No valid
    pair: 0.
    """
    _check_reduction(reduction)
    dtype = embeddings.dtype
    f = embeddings.to(_compute_dtype(embeddings))
    valid = labels >= 0
    pairs = valid[:, None] & valid[None, :]
    if groups is not None:
        pairs &= groups[:, None] == groups[None, :]
    pairs.fill_diagonal_(False)
    same = pairs & (labels[:, None] == labels[None, :])
    diff = pairs & ~same
    sq = (f * f).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * f @ f.T).clamp_min(0)
    loss_same, loss_diff = pair_losses(d2, eps)
    s_same = torch.where(same, loss_same, 0).sum()
    s_diff = torch.where(diff, loss_diff, 0).sum()
    n_same, n_diff = int(same.sum()), int(diff.sum())
    return _reduce_pairs(s_same, s_diff, n_same, n_diff, reduction).to(dtype)


def pair_counts(labels: Tensor, groups: Tensor | None = None) -> tuple[int, int]:
    """Numbers of valid ordered pairs (same class, different class), without N x N memory."""
    valid = labels >= 0
    lab = labels[valid]
    grp = groups[valid] if groups is not None else torch.zeros_like(lab)
    _, class_sizes = torch.unique(torch.stack([grp, lab]), dim=1, return_counts=True)
    _, group_sizes = torch.unique(grp, return_counts=True)
    n_same = int((class_sizes * (class_sizes - 1)).sum())
    n_total = int((group_sizes * (group_sizes - 1)).sum())
    return n_same, n_total - n_same


def pair_weights(n_same: int, n_diff: int, reduction: str) -> tuple[float, float]:
    """Weight of one valid ordered pair's loss of each kind (same, different) in the reduction."""
    _check_reduction(reduction)
    if reduction == "sum":
        return 1.0, 1.0
    if reduction == "mean":
        return 1.0 / max(n_same + n_diff, 1), 1.0 / max(n_same + n_diff, 1)
    kinds = max(int(n_same > 0) + int(n_diff > 0), 1)
    return 1.0 / (kinds * max(n_same, 1)), 1.0 / (kinds * max(n_diff, 1))


def _chunk_loss(f, rows, sq, labels, groups, start, stop, w_same, w_diff, eps):
    """Weighted loss of the pairs (p, q) with p in [start, stop)."""
    fr = f[start:stop]
    d2 = (sq[start:stop, None] + sq[None, :] - 2 * fr @ f.T).clamp_min(0)
    valid = labels >= 0
    pairs = valid[start:stop, None] & valid[None, :]
    if groups is not None:
        pairs &= groups[start:stop, None] == groups[None, :]
    pairs &= rows[start:stop, None] != rows[None, :]
    same = pairs & (labels[start:stop, None] == labels[None, :])
    loss_same, loss_diff = pair_losses(d2, eps)
    return (
        w_same * torch.where(same, loss_same, 0).sum()
        + w_diff * torch.where(pairs & ~same, loss_diff, 0).sum()
    )


def pairwise_affinity_loss_chunked(
    embeddings: Tensor,
    labels: Tensor,
    groups: Tensor | None = None,
    reduction: str = "balanced",
    eps: float = 1e-6,
    chunk_elements: int = 1 << 25,
) -> Tensor:
    """The same loss as ``pairwise_affinity_loss`` in row blocks of about chunk_elements pairs,
    each block recomputed in the backward (activation checkpointing): memory O(chunk + N K),
    usable to N = 65,536 on a CPU (slowly). The pair counts come first, so each block adds its
    weighted share."""
    _check_reduction(reduction)
    dtype = embeddings.dtype
    f = embeddings.to(_compute_dtype(embeddings))
    n = f.shape[0]
    w_same, w_diff = pair_weights(*pair_counts(labels, groups), reduction)
    sq = (f * f).sum(1)
    rows = torch.arange(n, device=f.device)
    step = max(1, chunk_elements // max(n, 1))
    total = f.new_zeros(())
    for start in range(0, n, step):
        total = total + torch.utils.checkpoint.checkpoint(
            _chunk_loss,
            f,
            rows,
            sq,
            labels,
            groups,
            start,
            min(start + step, n),
            w_same,
            w_diff,
            eps,
            use_reentrant=False,
        )
    return total.to(dtype)
