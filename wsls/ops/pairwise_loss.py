"""wsls.ops.pairwise_affinity_loss: the tiled pairwise affinity loss, its fake kernels and its
autograd (the backward is its own op, recomputing the pairs from the inputs)."""

from __future__ import annotations

import torch
from torch import Tensor

from . import _load  # noqa: F401  (registers the kernels)


@torch.library.register_fake("wsls::pairwise_affinity_loss")
def _pairwise_affinity_loss_fake(embeddings, labels, groups=None, reduction="balanced", eps=1e-6):
    torch._check(embeddings.dim() == 2, lambda: "pairwise_affinity_loss: embeddings must be (N, K)")
    return embeddings.new_empty(())


@torch.library.register_fake("wsls::pairwise_affinity_loss_backward")
def _pairwise_affinity_loss_backward_fake(grad, embeddings, labels, groups, reduction, eps):
    return embeddings.new_empty(embeddings.shape)


def _setup_context(ctx, inputs, output):
    embeddings, labels, groups, reduction, eps = inputs
    ctx.save_for_backward(embeddings, labels, groups)
    ctx.reduction = reduction
    ctx.eps = eps


def _backward(ctx, grad):
    embeddings, labels, groups = ctx.saved_tensors
    grad_embeddings = None
    if ctx.needs_input_grad[0]:
        grad_embeddings = torch.ops.wsls.pairwise_affinity_loss_backward(
            grad, embeddings, labels, groups, ctx.reduction, ctx.eps
        )
    return grad_embeddings, None, None, None, None


torch.library.register_autograd(
    "wsls::pairwise_affinity_loss", _backward, setup_context=_setup_context
)


def pairwise_affinity_loss(
    embeddings: Tensor,
    labels: Tensor,
    groups: Tensor | None = None,
    reduction: str = "balanced",
    eps: float = 1e-6,
) -> Tensor:
    """Pairwise affinity loss over all pairs of labelled embeddings, in O(N K) memory.

    For every ordered pair p != q with both labels >= 0 (and the same group when ``groups`` is
    given): d2 = ||f_p - f_q||^2, affinity A = 2 / (1 + exp(d2)); the loss is -log A =
    softplus(d2) - log 2 for pairs of the same label and -log(max(1 - A, eps)) =
    -log(max(tanh(d2 / 2), eps)) for different labels (finite at d2 = 0, with zero gradient
    where the clamp holds).

    Args:
        embeddings: (N, K) float32/float64 (float16/bfloat16 computed in float32), K >= 1.
        labels: (N) int64 class of each row; negative = ignored.
        groups: optional (N) int64; only pairs within a group count (e.g. one per volume).
        reduction: 'balanced' (default: the mean of the same-class mean and the
            different-class mean, over the kinds that have pairs), 'mean' over all valid
            ordered pairs, or 'sum'.
        eps: clamp of 1 - A for different-class pairs, in (0, 1).

    Returns:
        The loss, a 0-dim tensor of the embeddings' dtype; 0 (with zero gradient) when there is
        no valid pair (N < 2, every row ignored, or every group of one row). Differentiable in
        ``embeddings``; the backward recomputes the pairs. Raises RuntimeError naming the
        argument on bad shapes, dtypes, devices, K = 0, reduction or eps, and on NaN/Inf
        embeddings (always on the CPU; on CUDA under ``wsls.ops.debug_checks(True)`` only, a
        non-finite loss otherwise).

    Huge embeddings never give NaN: where squared norms or distances overflow the accumulation
    type (float32 beyond about 1e19), d2 comes from the differences and is +Inf where it does
    not fit; a different-class pair that far apart then has loss 0 and zero gradient, a
    same-class pair loss +Inf (its value exceeds the type) and a finite gradient. A loss beyond
    the embeddings' dtype is +Inf.

    Host synchronisation: none, forward and backward (the pair counts and the reduction's
    weights stay on the device), so both can be captured in a CUDA graph.
    """
    return torch.ops.wsls.pairwise_affinity_loss(embeddings, labels, groups, reduction, eps)
