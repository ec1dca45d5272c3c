"""The method's last step: the united regions inside the brain, enclosed holes filled, small
components dropped, and for a single lesion the component the classifier points at most."""

from __future__ import annotations

import numpy as np

from wsls.method.config import WSLSConfig
from wsls.morphology import drop_small_components, fill_holes, strongest_component


def postprocess(
    mask: np.ndarray, brain: np.ndarray, config: WSLSConfig, acam: np.ndarray | None = None
) -> np.ndarray:
    """(H, W, D) bool: ``mask`` inside ``brain``, holes filled (3D and slice by slice) with
    ``config.fill_holes``, components under ``config.min_component`` voxels dropped, and with
    ``config.keep == "strongest"`` only the component holding the most ACAM (one lesion per
    scan, as a glioma's whole tumour)."""
    mask = mask & brain
    if config.fill_holes and mask.any():
        mask = fill_holes(mask, slicewise=True) & brain
    if config.min_component > 0:
        mask = drop_small_components(mask, config.min_component)
    if config.keep == "strongest" and acam is not None:
        mask = strongest_component(mask, acam)
    return mask
