"""Segmentation by affinity region growing (DESIGN section 2): grow a candidate region from each
seed through voxels whose embedding affinity to the seed is at least lambda, score candidates by
their mean ACAM, keep the best by non-maximum suppression, unite the kept ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from wsls.metrics import dice
from wsls.ops import affinity_grow, candidate_scores, mask_nms

DEFAULT_LAMBDAS = (
    0.05,
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    0.95,
    0.97,
    0.98,
    0.99,
    0.995,
    0.999,
)


@dataclass(frozen=True)
class RegionConfig:
    """Attributes:
    seeds: how many seeds (spread over the confident lesion voxels).
    threshold: lambda; None picks it per volume from ``lambdas`` as the one whose segmentation
        best agrees with the intensity posterior (no voxel label needed).
    lambdas: the grid for that choice.
    connectivity: 6, 26, or 0 (the paper's global set, no connectivity).
    iou_threshold: NMS suppresses a candidate overlapping a better one by more than this.
    min_score: keep only candidates scoring at least this fraction of the best score.
    """

    seeds: int = 64
    threshold: float | None = None
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS
    connectivity: int = 6
    iou_threshold: float = 0.5
    min_score: float = 0.5


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
    posterior: np.ndarray | None = None,
) -> Regions:
    """Region-growing segmentation of one volume.

    Args:
        embeddings: (K, H, W, D) float; seeds: (S, 3) int64; acam: (H, W, D) in [0, 1], the
            map whose mean scores a candidate (the paper's ACAM, or a refined evidence map);
        brain: (H, W, D) bool; posterior: (H, W, D) lesion posterior, needed when
            ``config.threshold`` is None (lambda chosen by agreement with posterior >= 0.5).
    """
    acam_t = torch.from_numpy(np.ascontiguousarray(acam, dtype=np.float32))
    brain_t = torch.from_numpy(np.ascontiguousarray(brain))
    if config.threshold is not None:
        return grow_and_select(embeddings, seeds, acam_t, brain_t, config.threshold, config)
    if posterior is None:
        raise ValueError("segment_regions: threshold=None needs the posterior to choose lambda")
    target = (posterior >= 0.5) & brain
    best: tuple[float, Regions] | None = None
    for lam in config.lambdas:
        regions = grow_and_select(embeddings, seeds, acam_t, brain_t, lam, config)
        agreement = dice(regions.mask, target)
        if best is None or agreement > best[0]:
            best = (agreement, regions)
    return best[1]
