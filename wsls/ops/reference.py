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
