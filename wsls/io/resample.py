"""Resampling: by a factor or to a given size (torch, fast), and onto another grid by affine."""

from __future__ import annotations

import numpy as np


def resize(array: np.ndarray, size: tuple[int, int, int], mode: str = "linear") -> np.ndarray:
    """Resize the last three axes of ``array`` to ``size``.

    Args:
        array: (..., H, W, D); bool and integer arrays are allowed.
        size: target (h, w, d).
        mode: ``"linear"`` (trilinear, returns float32), ``"nearest"`` (keeps dtype) or
            ``"linear_threshold"`` (trilinear on the 0/1 mask, then >= 0.5; returns bool).
    Returns:
        (..., h, w, d). Voxel centres follow ``align_corners=False`` (the field of view is kept).
    """
    import torch
    import torch.nn.functional as F

    size = tuple(int(s) for s in size)
    if tuple(array.shape[-3:]) == size:
        return array.copy() if mode != "linear" else array.astype(np.float32, copy=True)
    lead = array.shape[:-3]
    if mode == "nearest":
        src = np.ascontiguousarray(array).reshape(1, -1, *array.shape[-3:])
        as_float = torch.from_numpy(src.astype(np.float32, copy=False))
        out = F.interpolate(as_float, size=size, mode="nearest-exact").numpy()
        return out.reshape(*lead, *size).astype(array.dtype, copy=False)
    src = np.ascontiguousarray(array, dtype=np.float32).reshape(1, -1, *array.shape[-3:])
    out = F.interpolate(torch.from_numpy(src), size=size, mode="trilinear", align_corners=False)
    out = out.numpy().reshape(*lead, *size)
    if mode == "linear_threshold":
        return out >= 0.5
    if mode != "linear":
        raise ValueError(f"unknown resize mode {mode!r}")
    return out


def resample_to_grid(
    array: np.ndarray,
    src_affine: np.ndarray,
    dst_shape: tuple[int, int, int],
    dst_affine: np.ndarray,
    order: int = 1,
    cval: float = 0.0,
) -> np.ndarray:
    """Resample the last three axes of ``array`` from one voxel grid to another through world mm.

    Args:
        array: (..., h, w, d) on the grid of ``src_affine``.
        src_affine, dst_affine: (4, 4) voxel-to-world matrices.
        dst_shape: spatial shape of the destination grid.
        order: 1 trilinear (images), 0 nearest (masks and labels).
        cval: value outside the source field of view.
    Returns:
        (..., *dst_shape), float32 for order 1, the input dtype for order 0.
    """
    from scipy import ndimage as ndi

    dst_to_src = np.linalg.inv(np.asarray(src_affine, float)) @ np.asarray(dst_affine, float)
    matrix, offset = dst_to_src[:3, :3], dst_to_src[:3, 3]
    is_bool = array.dtype == np.bool_
    flat = array.reshape(-1, *array.shape[-3:])
    if is_bool:
        flat = flat.astype(np.uint8)
    dtype = np.float32 if order > 0 else flat.dtype
    out = np.empty((flat.shape[0], *dst_shape), dtype=dtype)
    for c in range(flat.shape[0]):
        src = flat[c].astype(np.float32, copy=False) if order > 0 else flat[c]
        out[c] = ndi.affine_transform(
            src, matrix, offset, output_shape=tuple(dst_shape), order=order, cval=cval
        )
    out = out.reshape(*array.shape[:-3], *dst_shape)
    if is_bool:
        return out >= 0.5 if order > 0 else out.astype(bool)
    return out
