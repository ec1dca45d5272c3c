"""Confident voxels: where the weak map is trusted enough to label voxels for the
representation model (DESIGN sections 2 and 8).

Two rules:
- "paper": lesion where ACAM >= 0.1, normal where ACAM <= 0.01 (Wu et al.). On real scans
  these lesion voxels are mostly not lesion, and the normal ones all lie far from it, so the
  embedding learns "near the tumour" instead of "looks like tumour".
- "refined": lesion where the intensity model (EM with the ACAM as prior) is confident, inside
  its lesion components that the ACAM hits; normal where both say normal, half of them from a
  band around the lesion estimate (the hard negatives next to it), half from anywhere else in
  the brain.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from wsls.method.config import ConfidentConfig
from wsls.morphology import components_touching, dilate, open_mask


class ConfidentVoxels(NamedTuple):
    """coords (N, 3) int64 voxel indices; labels (N) int64: 1 lesion, 0 normal."""

    coords: np.ndarray
    labels: np.ndarray

    def counts(self) -> tuple[int, int]:
        return int((self.labels == 1).sum()), int((self.labels == 0).sum())


def _subsample(mask, n: int, rng: np.random.Generator) -> np.ndarray:
    """At most n flat indices of the mask's voxels, drawn by ``rng``, on the host (the draw is
    numpy's, so a volume on a GPU gives the same voxels as on the CPU)."""
    if isinstance(mask, np.ndarray):
        idx = np.flatnonzero(mask)
    else:  # a tensor: its voxel indices come to the host (a few MB at most)
        idx = torch.nonzero(mask.flatten()).squeeze(1).cpu().numpy()
    if idx.size > n:
        idx = rng.choice(idx, size=n, replace=False)
    return np.sort(idx)


def supported_lesion(
    weak_map: np.ndarray, brain: np.ndarray, posterior: np.ndarray, config: ConfidentConfig
) -> np.ndarray:
    """The intensity model's lesion estimate (posterior >= 0.5), restricted to its connected
    components that the weak map supports (holding a voxel with map >= ``lesion_map``).

    The map only has to hit a lesion, not cover it: CAMs light up the most discriminative part
    of a lesion (often a rim), while the component carries the lesion's whole extent. If no
    component is supported, the voxels where both agree are returned.
    """
    estimate = (posterior >= 0.5) & brain
    hot = (weak_map >= config.lesion_map) & brain
    supported = components_touching(estimate, hot)
    return supported if supported.any() else hot & estimate


def cut_thin_bridges(
    support: np.ndarray, weak_map: np.ndarray, config: ConfidentConfig, radius: int
) -> np.ndarray:
    """The supported estimate without what hangs on by bridges thinner than about 2 * ``radius``
    + 1 voxels: once opened, its components the weak map supports are kept with the estimate's
    voxels within ``radius`` + 1 of them.

    An intensity estimate can run from a lesion along bright cortex or white matter (a bias
    field, a neighbouring hyperintensity) through narrow necks; the whole chain is one
    component, so the ACAM that hits the lesion supports all of it. Unchanged when ``radius``
    is 0 or the opening leaves no supported core (a lesion thinner than the neck itself).
    """
    if radius <= 0 or not bool(support.any()):
        return support
    hot = weak_map >= config.lesion_map
    core = components_touching(open_mask(support, radius), hot)
    if not bool(core.any()):
        return support
    return components_touching(support & dilate(core, radius + 1), hot)


def select_confident(
    weak_map: np.ndarray,
    brain: np.ndarray,
    posterior: np.ndarray | None = None,
    config: ConfidentConfig | None = None,
    seed: int = 0,
    support: np.ndarray | None = None,
) -> ConfidentVoxels:
    """Pick confident lesion and normal voxels of one volume.

    Args:
        weak_map: (H, W, D) ACAM in [0, 1].
        brain: (H, W, D) bool; only brain voxels are picked.
        posterior: (H, W, D) EM lesion posterior; required by the refined rule.
        config: the rule and its thresholds.
        support: :func:`supported_lesion` of these maps where the caller has it already.
        (numpy arrays, or tensors on one device.)
    Returns:
        The voxels on the host (numpy).
    """
    config = config or ConfidentConfig()
    rng = np.random.default_rng(seed)
    if config.rule == "paper":
        lesion = (weak_map >= config.lesion_map) & brain
        normal = (weak_map <= config.normal_map) & brain
        lesion_idx = _subsample(lesion, config.budget, rng)
        normal_idx = _subsample(normal, config.budget, rng)
    else:
        if posterior is None:
            raise ValueError("select_confident: the refined rule needs the EM posterior")
        if support is None:
            support = supported_lesion(weak_map, brain, posterior, config)
        lesion = support & (posterior >= config.lesion_posterior)
        normal = (weak_map <= config.normal_map) & (posterior <= config.normal_posterior) & brain
        estimate = support | ((weak_map >= config.lesion_map) & brain)
        near = dilate(estimate, config.band) & ~estimate
        n_band = int(round(config.budget * config.band_fraction))
        band_idx = _subsample(normal & near, n_band, rng)
        rest = normal & ~near
        far_idx = _subsample(rest, config.budget - band_idx.size, rng)
        lesion_idx = _subsample(lesion, config.budget, rng)
        normal_idx = np.concatenate([band_idx, far_idx])
    idx = np.concatenate([lesion_idx, normal_idx])
    labels = np.concatenate([np.ones(lesion_idx.size), np.zeros(normal_idx.size)]).astype(np.int64)
    coords = np.stack(np.unravel_index(idx, brain.shape), axis=1).astype(np.int64)
    return ConfidentVoxels(coords, labels)


def precision(selection: ConfidentVoxels, mask: np.ndarray) -> dict[str, float]:
    """How right the confident voxels are against a voxel mask (evaluation only): the share of
    lesion-labelled voxels that are lesion and of normal-labelled voxels that are normal."""
    truth = mask[tuple(selection.coords.T)] if len(selection.labels) else np.zeros(0, bool)
    les = selection.labels == 1
    return {
        "lesion_voxels": int(les.sum()),
        "normal_voxels": int((~les).sum()),
        "lesion_precision": float(truth[les].mean()) if les.any() else float("nan"),
        "normal_precision": float((~truth[~les]).mean()) if (~les).any() else float("nan"),
    }
