"""Connected components and hole filling on (H, W, D) bool masks: the one place wsls keeps,
drops or fills parts of a mask (baselines, brain masks, the method's post-processing)."""

from __future__ import annotations

import numpy as np


def _structure(connectivity: int) -> np.ndarray:
    from scipy import ndimage as ndi

    if connectivity not in (6, 18, 26):
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    return ndi.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])


def label(mask: np.ndarray, connectivity: int = 6) -> tuple[np.ndarray, int]:
    """(labels (H, W, D) int32, 0 = background, count) of the mask's connected components."""
    from scipy import ndimage as ndi

    return ndi.label(np.asarray(mask, bool), structure=_structure(connectivity))


def component_sizes(labels: np.ndarray, count: int) -> np.ndarray:
    """(count + 1,) voxels per label (index 0: background)."""
    return np.bincount(labels.ravel(), minlength=count + 1)


def largest_component(mask: np.ndarray, connectivity: int = 26) -> np.ndarray:
    """The largest connected component of a bool mask (a copy; empty stays empty)."""
    labels, count = label(mask, connectivity)
    if count <= 1:
        return np.asarray(mask, bool).copy()
    sizes = component_sizes(labels, count)
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def strongest_component(
    mask: np.ndarray, weights: np.ndarray, connectivity: int = 26
) -> np.ndarray:
    """The connected component of ``mask`` with the largest sum of ``weights`` (a copy; empty
    stays empty)."""
    labels, count = label(mask, connectivity)
    if count <= 1:
        return np.asarray(mask, bool).copy()
    mass = np.bincount(
        labels.ravel(), weights=np.asarray(weights, np.float64).ravel(), minlength=count + 1
    )
    mass[0] = -np.inf
    return labels == int(np.argmax(mass))


def dilate(mask: np.ndarray, voxels: int) -> np.ndarray:
    """``mask`` grown by ``voxels`` steps of 6-connected dilation."""
    from scipy import ndimage as ndi

    if voxels <= 0 or not mask.any():
        return np.asarray(mask, bool).copy()
    return ndi.binary_dilation(mask, iterations=voxels)


def drop_small_components(mask: np.ndarray, min_size: int, connectivity: int = 6) -> np.ndarray:
    """The mask without its connected components of fewer than ``min_size`` voxels."""
    if min_size <= 1 or not mask.any():
        return np.asarray(mask, bool).copy()
    labels, count = label(mask, connectivity)
    keep = component_sizes(labels, count) >= min_size
    keep[0] = False
    return keep[labels]


def components_touching(mask: np.ndarray, marks: np.ndarray, connectivity: int = 6) -> np.ndarray:
    """The connected components of ``mask`` that hold at least one voxel of ``marks``."""
    labels, count = label(mask, connectivity)
    hit = np.zeros(count + 1, dtype=bool)
    hit[np.unique(labels[np.asarray(marks, bool) & (labels > 0)])] = True
    hit[0] = False
    return hit[labels]


def fill_holes(mask: np.ndarray, slicewise: bool = False) -> np.ndarray:
    """Fill enclosed holes in 3D; with ``slicewise`` also holes enclosed in any axial, coronal
    or sagittal slice (a hole open in 3D through one thin gap is still closed in the slices)."""
    from scipy import ndimage as ndi

    mask = ndi.binary_fill_holes(np.asarray(mask, bool))
    if slicewise:
        for axis in range(3):
            moved = np.moveaxis(mask, axis, 0)
            mask = np.moveaxis(np.stack([ndi.binary_fill_holes(s) for s in moved]), 0, axis)
    return mask
