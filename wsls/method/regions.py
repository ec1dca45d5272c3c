"""Segmentation by affinity region growing (DESIGN section 2): grow a candidate region from each
seed through voxels whose embedding affinity to the seed is at least lambda, score candidates by
their mean ACAM, keep the best by non-maximum suppression, unite the kept ones."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from wsls.method.config import RegionConfig
from wsls.metrics import dice
from wsls.ops import affinity_grow, candidate_scores, mask_nms


class Regions(NamedTuple):
    """mask (H, W, D) bool union of the kept candidates; seeds (S, 3); scores (S) mean ACAM per
    candidate; kept (M) indices in descending score; threshold: the lambda used."""

    mask: np.ndarray
    seeds: np.ndarray
    scores: np.ndarray
    kept: np.ndarray
    threshold: float


def grow_and_select(
    embeddings: Tensor,
    seeds: np.ndarray,
    acam: Tensor,
    brain: Tensor,
    threshold: float,
    config: RegionConfig,
) -> Regions:
    """One lambda: grow all seeds, score, NMS, drop weak candidates, unite."""
    shape = tuple(brain.shape)
    if len(seeds) == 0:
        empty = np.zeros(shape, dtype=bool)
        return Regions(empty, seeds, np.zeros(0, np.float32), np.zeros(0, np.int64), threshold)
    packed = affinity_grow(
        embeddings, torch.from_numpy(seeds), threshold, config.connectivity, brain, packed=True
    )
    scores = candidate_scores(packed, acam)
    kept = mask_nms(packed, scores, config.iou_threshold)
    if len(kept):
        best = scores[kept[0]]
        kept = kept[scores[kept] >= config.min_score * best]
    mask = packed.union(kept).numpy()
    return Regions(mask, seeds, scores.numpy(), kept.numpy(), threshold)


def segment_regions(
    embeddings: Tensor,
    seeds: np.ndarray,
    acam: np.ndarray,
    brain: np.ndarray,
    config: RegionConfig,
    target: np.ndarray | None = None,
) -> Regions:
    """Region-growing segmentation of one volume.

    Args:
        embeddings: (K, H, W, D) float; seeds: (S, 3) int64; acam: (H, W, D) in [0, 1], the
            map whose mean scores a candidate (the paper's ACAM, or a refined evidence map);
        brain: (H, W, D) bool, where candidates may grow; target: (H, W, D) bool, the
            intensity model's lesion estimate, needed when ``config.threshold`` is None (lambda
            chosen by agreement with it).
    """
    acam_t = torch.from_numpy(np.ascontiguousarray(acam, dtype=np.float32))
    brain_t = torch.from_numpy(np.ascontiguousarray(brain))
    if config.threshold is not None:
        return grow_and_select(embeddings, seeds, acam_t, brain_t, config.threshold, config)
    if target is None:
        raise ValueError("segment_regions: threshold=None needs a target to choose lambda")
    best: tuple[float, Regions] | None = None
    for lam in config.lambdas:
        regions = grow_and_select(embeddings, seeds, acam_t, brain_t, lam, config)
        agreement = dice(regions.mask, target)
        if best is None or agreement > best[0]:
            best = (agreement, regions)
    return best[1]
