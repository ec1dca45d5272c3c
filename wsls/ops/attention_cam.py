"""wsls.ops.attention_cam: the fused attention-refined CAM, its fake kernel and its autograd."""

from __future__ import annotations

import torch
from torch import Tensor

from . import _load  # noqa: F401  (registers the kernels)
from .reference import AttentionCamResult


@torch.library.register_fake("wsls::attention_cam")
def _attention_cam_fake(features, cls_weight, cls_bias, att_weight, fusion="mean"):
    torch._check(features.dim() == 5, lambda: "attention_cam: features must be (B, K, H, W, D)")
    B, K, H, W, D = features.shape
    acc = torch.float64 if features.dtype == torch.float64 else torch.float32
    return (
        features.new_empty((B,)),
        features.new_empty((B, H, W, D)),
        features.new_empty((B, H, W, D)),
        features.new_empty((B, H)),
        features.new_empty((B, W)),
        features.new_empty((B, D)),
        features.new_empty((B, H + W + D, K), dtype=acc),
    )


@torch.library.register_fake("wsls::attention_cam_backward")
def _attention_cam_backward_fake(grad_logits, pooled, cls_weight, att_weight, height, width, depth):
    B, _, K = pooled.shape
    return (
        cls_weight.new_empty((B, K, height, width, depth)),
        cls_weight.new_empty((K,)),
        cls_weight.new_empty((1,)),
        att_weight.new_empty((3, K)),
    )


def _setup_context(ctx, inputs, output):
    features, cls_weight, cls_bias, att_weight, _ = inputs
    ctx.save_for_backward(output[6], cls_weight, att_weight)
    ctx.spatial = tuple(features.shape[2:])
    ctx.bias_shape = cls_bias.shape
    ctx.mark_non_differentiable(*output[1:])
    ctx.set_materialize_grads(False)  # the maps get no gradient: skip zero-filling theirs


def _backward(ctx, grad_logits, *_unused):
    if grad_logits is None:
        return None, None, None, None, None
    pooled, cls_weight, att_weight = ctx.saved_tensors
    grad_f, grad_w, grad_b, grad_att = torch.ops.wsls.attention_cam_backward(
        grad_logits.contiguous(), pooled, cls_weight, att_weight, *ctx.spatial
    )
    return grad_f, grad_w, grad_b.reshape(ctx.bias_shape), grad_att, None


torch.library.register_autograd("wsls::attention_cam", _backward, setup_context=_setup_context)


def attention_cam(
    features: Tensor,
    cls_weight: Tensor,
    cls_bias: Tensor,
    att_weight: Tensor,
    fusion: str = "mean",
) -> AttentionCamResult:
    """Class activation map refined by per-axis attention (ACAM), in one pass over the features.

    Args:
        features: (B, K, H, W, D) last convolutional features of the classifier.
        cls_weight: (K) classifier weights of the lesion class; cls_bias: (1) its bias.
        att_weight: (3, K) attention weights for the H, W and D axes.
        fusion: how the three re-weighted CAMs combine: 'mean' or 'geometric'.

    Returns:
        AttentionCamResult(logits (B), cam (B, H, W, D) raw, acam (B, H, W, D) in [0, 1],
        scores_h (B, H), scores_w (B, W), scores_d (B, D)). Differentiable through ``logits``
        only (in features, cls_weight, cls_bias, att_weight); the maps are not differentiable.
        float32/float64 everywhere, float16/bfloat16 too (accumulating in float32). Raises
        RuntimeError naming the argument on bad shapes, dtypes, devices, fusion or K = 0, and
        on NaN/Inf (always on the CPU; on CUDA under ``wsls.ops.debug_checks(True)`` only,
        non-finite logits and maps otherwise).

    Host synchronisation: none, forward and backward (capturable in a CUDA graph).
    """
    out = torch.ops.wsls.attention_cam(features, cls_weight, cls_bias, att_weight, fusion)
    return AttentionCamResult(*out[:6])
