"""Segmentation by affinity region growing (DESIGN section 2): grow a candidate region from each
seed through voxels whose embedding affinity to the seed is at least lambda, score candidates by
their mean ACAM, keep the best by non-maximum suppression, unite the kept ones."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from wsls.method.config import RegionConfig
from wsls.method.consensus import dice_with
from wsls.morphology import bounding_box
from wsls.ops import affinity_grow, candidate_scores, mask_nms


class Regions(NamedTuple):
    """mask (H, W, D) bool union of the kept candidates; seeds (S, 3); scores (S) mean ACAM per
    candidate; kept (M) indices in descending score; threshold: the lambda used. Tensors on the
    volume's device while the method runs (``to_host`` gives numpy arrays)."""

    mask: Tensor
    seeds: Tensor
    scores: Tensor
    kept: Tensor
    threshold: float

    def to_host(self) -> Regions:
        return Regions(*(v.cpu().numpy() for v in self[:4]), self.threshold)


def grow_and_select(
    embeddings: Tensor,
    seeds: Tensor,
    evidence: Tensor,
    grow: Tensor,
    threshold: float,
    config: RegionConfig,
) -> Regions:
    """One lambda: grow all seeds inside ``grow``, score by mean ``evidence``, NMS, drop weak
    candidates, unite. All tensors on one device."""
    if len(seeds) == 0:
        empty = torch.zeros(grow.shape, dtype=torch.bool, device=grow.device)
        none = torch.zeros(0, dtype=torch.int64, device=grow.device)
        return Regions(empty, seeds, evidence.new_zeros(0), none, threshold)
    packed = affinity_grow(embeddings, seeds, threshold, config.connectivity, grow, packed=True)
    scores = candidate_scores(packed, evidence)
    kept = mask_nms(packed, scores, config.iou_threshold)
    if len(kept):
        kept = kept[scores[kept] >= config.min_score * scores[kept[0]]]
    return Regions(packed.union(kept), seeds, scores, kept, threshold)


def segment_regions(
    embeddings: Tensor,
    seeds: Tensor,
    evidence: Tensor,
    grow: Tensor,
    config: RegionConfig,
    target: Tensor | None = None,
) -> Regions:
    """Region-growing segmentation of one volume (tensors on one device).

    Args:
        embeddings: (K, H, W, D) float; seeds: (S, 3) int64; evidence: (H, W, D) in [0, 1],
            the map whose mean scores a candidate (the paper's ACAM, or a refined evidence map);
        grow: (H, W, D) bool, where candidates may grow; target: (H, W, D) bool, the
            intensity model's lesion estimate, needed when ``config.threshold`` is None (lambda
            chosen by agreement with it).

    The candidates never leave ``grow``, so they are grown on its bounding box (when it holds
    every seed): the same regions at the cost of the box, not of the volume.
    """
    if config.threshold is None and target is None:
        raise ValueError("segment_regions: threshold=None needs a target to choose lambda")
    box, start = _box(grow, seeds)
    if box is None:
        return _segment_regions(embeddings, seeds, evidence, grow, config, target)
    in_box = _segment_regions(
        embeddings[(slice(None), *box)].contiguous(),
        seeds - start,
        evidence[box].contiguous(),
        grow[box].contiguous(),
        config,
        None if target is None else target[box].contiguous(),
        None if target is None else int(target.sum()),
    )
    mask = torch.zeros_like(grow)
    mask[box] = in_box.mask
    return in_box._replace(mask=mask, seeds=seeds)


def _box(grow: Tensor, seeds: Tensor) -> tuple[tuple[slice, ...] | None, Tensor | None]:
    """The bounding box of ``grow`` and its first corner (3,), or None, None when it is empty or
    leaves out a seed."""
    box = bounding_box(grow)
    if box is None:
        return None, None
    low = torch.tensor([b.start for b in box], device=seeds.device)
    high = torch.tensor([b.stop for b in box], device=seeds.device)
    if len(seeds) and not bool(((seeds >= low) & (seeds < high)).all()):
        return None, None
    return box, low


def _segment_regions(
    embeddings: Tensor,
    seeds: Tensor,
    evidence: Tensor,
    grow: Tensor,
    config: RegionConfig,
    target: Tensor | None,
    target_voxels: int | None = None,
) -> Regions:
    """:func:`segment_regions` on the volume given; ``target_voxels``: the target's size where
    part of it lies outside that volume (the Dice that chooses lambda counts all of it)."""
    if config.threshold is not None:
        return grow_and_select(embeddings, seeds, evidence, grow, config.threshold, config)
    if target_voxels is None:
        target_voxels = int(target.sum())
    best: tuple[float, Regions] | None = None
    for lam in config.lambdas:
        regions = grow_and_select(embeddings, seeds, evidence, grow, lam, config)
        agreement = dice_with(regions.mask, target, target_voxels)
        if best is None or agreement > best[0]:
            best = (agreement, regions)
    return best[1]
