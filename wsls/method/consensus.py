"""Which member of a classifier ensemble to follow on one volume: the one whose supported lesion
estimate the other members' estimates overlap most (a medoid under Dice), so that one member
lighting up the wrong region is outvoted. How far the members agree goes to the quality verdict.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def overlap(a: Tensor, b: Tensor) -> float:
    """Dice of two bool volumes; two empty ones agree (1)."""
    return dice_with(a, b, int(b.sum()))


def dice_with(a: Tensor, b: Tensor, b_voxels: int) -> float:
    """:func:`overlap` of ``a`` with a volume of ``b_voxels`` voxels whose part in ``a``'s
    volume is ``b`` (the rest lies outside it)."""
    total = int(a.sum()) + b_voxels
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def consensus(estimates: Sequence[Tensor]) -> tuple[int, float]:
    """The member to follow and its agreement.

    Args:
        estimates: per member, its lesion estimate (H, W, D) bool (empty where the member sees
            no lesion).
    Returns:
        the index of the member whose estimate has the largest summed Dice with the others'
        (the first of equals); the smallest Dice between its estimate and another member's
        (1 when all agree, 0 when some member sees the lesion elsewhere or nowhere).
    """
    n = len(estimates)
    if n < 2:
        return 0, 1.0
    dice = torch.ones(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(i + 1, n):
            dice[i, j] = dice[j, i] = overlap(estimates[i], estimates[j])
    chosen = int(torch.argmax(dice.sum(1)))
    others = torch.cat([dice[chosen, :chosen], dice[chosen, chosen + 1 :]])
    return chosen, float(others.min())
