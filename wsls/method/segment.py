"""The method on one prepared volume, as the paper's figure 1 reads: the classifier's maps and
the intensity model (:func:`volume_maps`), confident voxels, seeds, embeddings, region growing
and post-processing (:func:`segment_volume`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from wsls.method.confident import ConfidentVoxels, select_confident, supported_lesion
from wsls.method.config import WSLSConfig
from wsls.method.embedding import embed_volume
from wsls.method.intensity import intensity_posterior
from wsls.method.maps import coarse_view_maps
from wsls.method.postprocess import postprocess
from wsls.method.quality import Quality, assess
from wsls.method.regions import Regions, segment_regions
from wsls.method.seeds import spread_seeds
from wsls.models import Classifier3D
from wsls.morphology import dilate


@dataclass
class VolumeMaps:
    """What the classifier and the intensity model say about one prepared volume.

    acam (H, W, D) in [0, 1] (zero outside the brain); cam (H, W, D) raw; probability: the best
    window's lesion probability; posterior (H, W, D) EM lesion posterior."""

    acam: np.ndarray
    cam: np.ndarray
    probability: float
    posterior: np.ndarray


@dataclass
class MethodResult:
    """mask (H, W, D) bool on the prepared grid; maps; confident voxels; regions (seeds, scores,
    kept, lambda), or None when the volume was judged lesion-free; the quality verdict."""

    mask: np.ndarray
    maps: VolumeMaps
    confident: ConfidentVoxels
    regions: Regions | None
    quality: Quality = field(default_factory=Quality)


def volume_maps(
    classifier: Classifier3D, image: np.ndarray, brain: np.ndarray, config: WSLSConfig
) -> VolumeMaps:
    """The classifier's maps (computed on its coarse view, upsampled to the prepared grid) and
    the intensity posterior (on the prepared grid)."""
    cam, acam, probability = coarse_view_maps(classifier, image, brain, config)
    posterior = intensity_posterior(image, brain, acam, config)
    return VolumeMaps(acam, cam, probability, posterior)


def lesion_evidence(maps: VolumeMaps, support: np.ndarray | None) -> np.ndarray:
    """The map that scores candidates. The paper's rule scores by mean ACAM (``support`` None);
    the refined one by max(ACAM, posterior inside the lesion components the ACAM supports): an
    ACAM that lights up only a lesion's rim would otherwise prefer small candidates on that rim
    to the whole lesion."""
    if support is None:
        return maps.acam
    return np.maximum(maps.acam, maps.posterior * support).astype(np.float32)


def growth_region(brain: np.ndarray, support: np.ndarray | None, margin: int | None) -> np.ndarray:
    """Where candidates may grow: the brain, or (with a margin) the supported lesion estimate
    dilated by ``margin`` voxels, so that no region runs off along tissue the evidence never
    pointed at."""
    if margin is None or support is None or not support.any():
        return brain
    return brain & dilate(support, margin)


def segment_volume(
    classifier: Classifier3D,
    embedding: nn.Module,
    image: np.ndarray,
    brain: np.ndarray,
    config: WSLSConfig,
    maps: VolumeMaps | None = None,
) -> MethodResult:
    """ACAM + weakly supervised representation (ACAM+WSR) on one prepared volume.

    Args:
        image: (C, H, W, D) prepared; brain: (H, W, D) bool.
    """
    maps = maps or volume_maps(classifier, image, brain, config)
    confident = select_confident(maps.acam, brain, maps.posterior, config.confident, config.seed)
    if maps.probability < config.min_lesion_probability:
        empty = np.zeros(brain.shape, bool)
        quality = Quality(measures={"probability": float(maps.probability)})
        return MethodResult(empty, maps, confident, None, quality)
    support = None
    if config.confident.rule != "paper":
        support = supported_lesion(maps.acam, brain, maps.posterior, config.confident)
    lesion = confident.coords[confident.labels == 1]
    evidence = lesion_evidence(maps, support)
    seeds = spread_seeds(lesion, evidence[tuple(lesion.T)], config.regions.seeds)
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    emb = embed_volume(embedding, x, torch.from_numpy(np.ascontiguousarray(brain)))
    grow = growth_region(brain, support, config.regions.bound_margin)
    target = (maps.posterior >= 0.5) & brain
    if config.regions.target == "support" and support is not None:
        target = support
    regions = segment_regions(emb, seeds, evidence, grow, config.regions, target)
    mask = postprocess(regions.mask, brain, config, maps.acam)
    quality = assess(mask, brain, image, maps.acam, maps.probability, support, config.quality)
    return MethodResult(mask, maps, confident, regions, quality)
