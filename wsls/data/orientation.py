"""Explicit voxel-axis reorientation between a file's array order and canonical RAS.

An orientation ``ornt`` is nibabel's (3, 2) array: row ``i`` says that input (file) axis ``i``
becomes canonical axis ``int(ornt[i, 0])``, reversed when ``ornt[i, 1] == -1``. The functions
here act on the last three axes of an array, so a (C, H, W, D) stack reorients in one call.
Pure numpy: nibabel is needed only to compute ``ornt`` from an affine (``canonical_ornt``).
"""

from __future__ import annotations

import numpy as np


def canonical_ornt(affine: np.ndarray) -> np.ndarray:
    """The orientation taking an array with this voxel-to-world affine to the closest RAS order.

    Args:
        affine: (4, 4) voxel-to-world (RAS+, mm) matrix of the file.
    Returns:
        (3, 2) float array as nibabel's ``io_orientation``.
    """
    from nibabel.orientations import io_orientation

    return io_orientation(np.asarray(affine, dtype=np.float64))


def to_canonical(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Reorient the last three axes of ``array`` from file order to canonical order."""
    lead = array.ndim - 3
    for axis, flip in enumerate(ornt[:, 1]):
        if flip == -1:
            array = np.flip(array, axis=lead + axis)
    order = np.argsort(ornt[:, 0])  # canonical axis j comes from file axis order[j]
    return np.ascontiguousarray(array.transpose(*range(lead), *(lead + order)))


def from_canonical(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_canonical`: canonical order back to the file's array order."""
    lead = array.ndim - 3
    dest = ornt[:, 0].astype(int)  # file axis i is canonical axis dest[i]
    array = array.transpose(*range(lead), *(lead + dest))
    for axis, flip in enumerate(ornt[:, 1]):
        if flip == -1:
            array = np.flip(array, axis=lead + axis)
    return np.ascontiguousarray(array)


def canonical_shape(shape: tuple[int, int, int], ornt: np.ndarray) -> tuple[int, int, int]:
    """Spatial shape after :func:`to_canonical`."""
    order = np.argsort(ornt[:, 0])
    return tuple(int(shape[i]) for i in order)  # type: ignore[return-value]


def canonical_affine(
    affine: np.ndarray, shape: tuple[int, int, int], ornt: np.ndarray
) -> np.ndarray:
    """Voxel-to-world affine of the canonical array.

    Built from the voxel index map canonical -> file: file index ``i`` equals canonical index
    ``j = ornt[i, 0]`` or ``shape[i] - 1 - j`` when flipped, so world coordinates are unchanged.
    """
    index_map = np.zeros((4, 4))
    index_map[3, 3] = 1.0
    for i in range(3):
        j = int(ornt[i, 0])
        if ornt[i, 1] == -1:
            index_map[i, j] = -1.0
            index_map[i, 3] = shape[i] - 1
        else:
            index_map[i, j] = 1.0
    return np.asarray(affine, dtype=np.float64) @ index_map


def spacing_of(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis (the affine's column norms)."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))  # type: ignore[return-value]


def axcodes_of(affine: np.ndarray) -> str:
    """Axis codes such as 'LPS' for an affine."""
    from nibabel.orientations import aff2axcodes

    return "".join(aff2axcodes(np.asarray(affine)))
