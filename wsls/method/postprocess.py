"""The method's last step: the united regions inside the brain, enclosed holes filled, small
components dropped."""

from __future__ import annotations

import numpy as np

from wsls.method.config import WSLSConfig
from wsls.morphology import drop_small_components, fill_holes


def postprocess(mask: np.ndarray, brain: np.ndarray, config: WSLSConfig) -> np.ndarray:
    """(H, W, D) bool: ``mask`` inside ``brain``, holes filled (3D and slice by slice) with
    ``config.fill_holes``, components under ``config.min_component`` voxels dropped."""
    mask = mask & brain
    if config.fill_holes and mask.any():
        mask = fill_holes(mask, slicewise=True) & brain
    if config.min_component > 0:
        mask = drop_small_components(mask, config.min_component)
    return mask
