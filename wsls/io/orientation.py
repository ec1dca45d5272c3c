"""Voxel-axis reorientation between a file's array order and canonical RAS, with nibabel's
orientation functions.

An orientation ``ornt`` is nibabel's (3, 2) array: row ``i`` says that input (file) axis ``i``
becomes canonical axis ``int(ornt[i, 0])``, reversed when ``ornt[i, 1] == -1``. The functions
here act on the last three axes of an array, so a (C, H, W, D) stack reorients in one call.
"""

from __future__ import annotations

import numpy as np

_IDENTITY = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)


def canonical_ornt(affine: np.ndarray) -> np.ndarray:
    """The orientation taking an array with this voxel-to-world affine to the closest RAS order.

    Args:
        affine: (4, 4) voxel-to-world (RAS+, mm) matrix of the file.
    Returns:
        (3, 2) float array as nibabel's ``io_orientation``.
    """
    from nibabel.orientations import io_orientation

    return io_orientation(np.asarray(affine, dtype=np.float64))


def _apply(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    from nibabel.orientations import apply_orientation

    lead = array.ndim - 3
    moved = np.moveaxis(array, range(lead), range(-lead, 0)) if lead else array
    out = apply_orientation(moved, ornt)
    out = np.moveaxis(out, range(-lead, 0), range(lead)) if lead else out
    return np.ascontiguousarray(out)


def to_canonical(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Reorient the last three axes of ``array`` from file order to canonical order."""
    return _apply(array, ornt)


def from_canonical(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_canonical`: canonical order back to the file's array order."""
    from nibabel.orientations import ornt_transform

    return _apply(array, ornt_transform(_IDENTITY, ornt))


def canonical_shape(shape: tuple[int, int, int], ornt: np.ndarray) -> tuple[int, int, int]:
    """Spatial shape after :func:`to_canonical`."""
    order = np.argsort(ornt[:, 0])
    return tuple(int(shape[i]) for i in order)  # type: ignore[return-value]


def canonical_affine(
    affine: np.ndarray, shape: tuple[int, int, int], ornt: np.ndarray
) -> np.ndarray:
    """Voxel-to-world affine of the canonical array (world coordinates are unchanged)."""
    from nibabel.orientations import inv_ornt_aff

    return np.asarray(affine, dtype=np.float64) @ inv_ornt_aff(ornt, shape)


def spacing_of(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis (the affine's column norms)."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))  # type: ignore[return-value]


def axcodes_of(affine: np.ndarray) -> str:
    """Axis codes such as 'LPS' for an affine."""
    from nibabel.orientations import aff2axcodes

    return "".join(aff2axcodes(np.asarray(affine)))
