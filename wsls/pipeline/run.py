"""Running a trained model on a prepared volume: maps, refinement, embeddings, regions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from wsls.infer.maps import classifier_maps
from wsls.infer.regions import Regions, segment_regions
from wsls.infer.seeds import spread_seeds
from wsls.models import Classifier3D
from wsls.pipeline.coarse import coarse_image, upsample
from wsls.pipeline.config import WSLSConfig
from wsls.train.confident import ConfidentVoxels, select_confident, supported_lesion
from wsls.train.embedding import embed_volume
from wsls.train.intensity_em import lesion_posterior


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
    kept, lambda), or None when the volume was judged lesion-free."""

    mask: np.ndarray
    maps: VolumeMaps
    confident: ConfidentVoxels
    regions: Regions | None


def volume_maps(
    classifier: Classifier3D, image: np.ndarray, brain: np.ndarray, config: WSLSConfig
) -> VolumeMaps:
    """The classifier's maps (computed on its coarse view, upsampled to the prepared grid) and
    the intensity posterior (on the prepared grid)."""
    cam, acam, probability = coarse_view_maps(classifier, image, brain, config)
    posterior = intensity_posterior(image, brain, acam, config)
    return VolumeMaps(acam, cam, probability, posterior)


def coarse_view_maps(
    classifier: Classifier3D, image: np.ndarray, brain: np.ndarray, config: WSLSConfig
) -> tuple[np.ndarray, np.ndarray, float]:
    """A classifier run on the coarse view it was trained on, its maps upsampled to the
    prepared grid: raw CAM; localisation map (ACAM, or CAM for the GAP/GMP baselines) zero
    outside the brain with maximum 1; the best window's lesion probability."""
    factor = config.classifier_scale
    x = torch.from_numpy(np.ascontiguousarray(coarse_image(image, factor), dtype=np.float32))
    cam, loc, probability = classifier_maps(
        classifier, x, window=config.patch.shape[0], overlap=config.window_overlap
    )
    cam = upsample(cam.numpy(), factor, brain.shape)
    loc = np.clip(upsample(loc.numpy(), factor, brain.shape), 0, None) * brain
    peak = loc.max()
    loc = (loc / peak if peak > 0 else loc).astype(np.float32)
    return cam, loc, probability


def intensity_posterior(
    image: np.ndarray, brain: np.ndarray, acam: np.ndarray, config: WSLSConfig
) -> np.ndarray:
    """The EM lesion posterior, its prior refined by its own supported estimate.

    The ACAM is hot on part of a lesion only (often the rim, or one lobe of a large tumour), so
    a prior taken from it alone leaves the rest of the lesion unlikely and the posterior too
    small. Each round, the posterior's lesion components that the ACAM hits (supported_lesion)
    join the prior, max(ACAM, supported), and the mixture is refitted, until the supported
    estimate changes by less than ``em.support_tolerance`` of its size or ``em.support_rounds``
    refits were made. On the shared BraTS cases (held-out ACAMs) this raised the mean Dice of the
    supported estimate from 0.745 (one fit) to 0.859; components the ACAM does not hit never
    enter.
    """
    prior, previous = acam, None
    for _ in range(config.em.support_rounds + 1):
        posterior = lesion_posterior(image, brain, prior, config.em)
        if config.em.support_rounds == 0:
            break
        support = supported_lesion(acam, brain, posterior, config.confident)
        changed = np.count_nonzero(support ^ previous) if previous is not None else support.size
        if changed <= config.em.support_tolerance * max(np.count_nonzero(support), 1):
            break
        previous = support
        prior = np.maximum(acam, support.astype(np.float32))
    return posterior


def lesion_evidence(maps: VolumeMaps, brain: np.ndarray, config: WSLSConfig) -> np.ndarray:
    """The map that scores candidates. The paper's rule ("paper") scores by mean ACAM; the
    refined one by max(ACAM, posterior inside the lesion components the ACAM supports): an ACAM
    that lights up only a lesion's rim would otherwise prefer small candidates on that rim to
    the whole lesion."""
    if config.confident.rule == "paper":
        return maps.acam
    support = supported_lesion(maps.acam, brain, maps.posterior, config.confident)
    return np.maximum(maps.acam, maps.posterior * support).astype(np.float32)


def postprocess(mask: np.ndarray, brain: np.ndarray, config: WSLSConfig) -> np.ndarray:
    from scipy import ndimage as ndi

    mask = mask & brain
    if config.fill_holes and mask.any():
        mask = ndi.binary_fill_holes(mask)
        for axis in range(3):  # holes open in 3D can still be enclosed in every slice
            moved = np.moveaxis(mask, axis, 0)
            filled = np.stack([ndi.binary_fill_holes(s) for s in moved])
            mask = np.moveaxis(filled, 0, axis)
        mask &= brain
    if config.min_component > 0 and mask.any():
        labels, n = ndi.label(mask)
        sizes = np.bincount(labels.ravel())
        keep = sizes >= config.min_component
        keep[0] = False
        mask = keep[labels]
    return mask


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
        return MethodResult(np.zeros(brain.shape, bool), maps, confident, None)
    lesion = confident.coords[confident.labels == 1]
    evidence = lesion_evidence(maps, brain, config)
    seeds = spread_seeds(lesion, evidence[tuple(lesion.T)], config.regions.seeds)
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    emb = embed_volume(embedding, x, torch.from_numpy(np.ascontiguousarray(brain)))
    regions = segment_regions(emb, seeds, evidence, brain, config.regions, maps.posterior)
    return MethodResult(postprocess(regions.mask, brain, config), maps, confident, regions)
