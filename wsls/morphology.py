"""Image morphology on (H, W, D) volumes, wherever they live: connected components, hole
filling, dilation, opening, Gaussian smoothing; the one place wsls keeps, drops or fills parts
of a mask.

Every function takes a numpy array or a torch tensor and returns the same kind on the same
device. numpy arrays and CPU tensors go through scipy.ndimage (a CPU tensor shares its memory
with the numpy view: no copy); CUDA tensors go through CuPy's ``cupyx.scipy.ndimage`` by DLPack,
without copies. CuPy is optional (``pip install wsls[gpu]``): without it a CUDA tensor makes
the round trip to the host, with one warning per process.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

_WARNED = []


def _cupy() -> Any:
    """The cupy module, or None when it is not installed or unusable."""
    try:
        import cupy  # noqa: F401
        import cupyx.scipy.ndimage  # noqa: F401
    except Exception:  # noqa: BLE001 - any failure to import means: not available
        return None
    return cupy


def _to_backend(x: Any) -> tuple[Any, Any, Any]:
    """(array in the backend, scipy-like ndimage module, function back to x's kind)."""
    from scipy import ndimage as ndi

    if isinstance(x, np.ndarray):
        return x, ndi, lambda a: a
    import torch

    if not isinstance(x, torch.Tensor):
        return np.asarray(x), ndi, lambda a: a
    if x.device.type == "cpu":
        return x.numpy(), ndi, lambda a: torch.from_numpy(np.ascontiguousarray(a))
    cupy = _cupy()
    if cupy is not None:
        import cupyx.scipy.ndimage as cndi

        return cupy.from_dlpack(x.contiguous()), cndi, torch.from_dlpack
    if not _WARNED:
        warnings.warn(
            "CuPy is not installed: morphology on CUDA tensors runs on the host (pip install "
            "wsls[gpu] keeps it on the GPU)",
            stacklevel=3,
        )
        _WARNED.append(True)
    device = x.device
    return x.cpu().numpy(), ndi, lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)


def _xp(a: Any) -> Any:
    """numpy or cupy: the array library of a backend array."""
    return np if isinstance(a, np.ndarray) else __import__("cupy")


def _structure(connectivity: int) -> np.ndarray:
    if connectivity not in (6, 18, 26):
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    from scipy import ndimage as ndi

    return ndi.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])


def _label(a: Any, ndi: Any, connectivity: int) -> tuple[Any, int]:
    structure = _xp(a).asarray(_structure(connectivity))
    labels, count = ndi.label(a.astype(bool), structure=structure)
    return labels, int(count)


def label(mask: Any, connectivity: int = 6) -> tuple[Any, int]:
    """(labels (H, W, D), 0 = background, count) of the mask's connected components."""
    a, ndi, back = _to_backend(mask)
    labels, count = _label(a, ndi, connectivity)
    return back(labels), count


def bounding_box(a: Any, margin: int = 0) -> tuple[slice, ...] | None:
    """The bounding box of mask ``a``'s voxels grown by ``margin`` (clipped to the volume), as
    slices, or None when ``a`` is empty. ``a``: a numpy or CuPy array, or a tensor (only its
    three per-axis profiles leave its device)."""
    box = []
    for axis in range(a.ndim):
        others = tuple(i for i in range(a.ndim) if i != axis)
        hit = np.flatnonzero(a.any(axis=others).tolist())
        if hit.size == 0:
            return None
        start, stop = int(hit[0]) - margin, int(hit[-1]) + 1 + margin
        box.append(slice(max(start, 0), min(stop, a.shape[axis])))
    return tuple(box)


def _within_box(a: Any, margin: int, operation, *others: Any) -> Any:
    """``operation(a, *others)`` of backend mask ``a`` computed on the bounding box of its
    voxels grown by ``margin`` and pasted into an empty volume: the same voxels as on the whole
    volume for every operation here whose result reaches at most ``margin`` voxels beyond the
    mask (the box holds all that it reads), at the cost of the box instead of the volume."""
    out = _xp(a).zeros(a.shape, dtype=bool)
    box = bounding_box(a, margin)
    if box is not None:
        out[box] = operation(a[box], *(o[box] for o in others))
    return out


def _keep(a: Any, ndi: Any, back: Any, connectivity: int, choose, *others: Any) -> Any:
    """The components of backend mask ``a`` that ``choose(labels, count, xp, *others)`` marks (a
    bool array over the labels, index 0 ignored); ``others``: volumes ``choose`` reads, cropped
    with the mask to its bounding box."""

    def keep(a, *others):
        labels, count = _label(a, ndi, connectivity)
        xp = _xp(a)
        if count == 0:
            return xp.zeros(a.shape, dtype=bool)
        chosen = choose(labels, count, xp, *others)
        chosen[0] = False
        return chosen[labels]

    return back(_within_box(a.astype(bool), 0, keep, *others))


def largest_component(mask: Any, connectivity: int = 26) -> Any:
    """The largest connected component of a bool mask (empty stays empty)."""
    a, ndi, back = _to_backend(mask)

    def choose(labels, count, xp):
        sizes = xp.bincount(labels.ravel(), minlength=count + 1)
        sizes[0] = 0
        keep = xp.zeros(count + 1, dtype=bool)
        keep[int(sizes.argmax())] = True
        return keep

    return _keep(a, ndi, back, connectivity, choose)


def strongest_component(mask: Any, weights: Any, connectivity: int = 26) -> Any:
    """The connected component of ``mask`` with the largest sum of ``weights`` (same kind and
    device as ``mask``; empty stays empty)."""
    a, ndi, back = _to_backend(mask)

    def choose(labels, count, xp, w):
        mass = xp.bincount(
            labels.ravel(), weights=w.ravel().astype(xp.float64), minlength=count + 1
        )
        mass[0] = -xp.inf
        keep = xp.zeros(count + 1, dtype=bool)
        keep[int(mass.argmax())] = True
        return keep

    return _keep(a, ndi, back, connectivity, choose, _to_backend(weights)[0])


def drop_small_components(mask: Any, min_size: int, connectivity: int = 6) -> Any:
    """The mask without its connected components of fewer than ``min_size`` voxels."""
    a, ndi, back = _to_backend(mask)
    if min_size <= 1:
        return back(a.astype(bool))

    def choose(labels, count, xp):
        return xp.bincount(labels.ravel(), minlength=count + 1) >= min_size

    return _keep(a, ndi, back, connectivity, choose)


def components_touching(mask: Any, marks: Any, connectivity: int = 6) -> Any:
    """The connected components of ``mask`` that hold at least one voxel of ``marks``."""
    a, ndi, back = _to_backend(mask)

    def choose(labels, count, xp, m):
        keep = xp.zeros(count + 1, dtype=bool)
        keep[labels[m & (labels > 0)]] = True
        return keep

    return _keep(a, ndi, back, connectivity, choose, _to_backend(marks)[0].astype(bool))


def fill_holes(mask: Any, slicewise: bool = False) -> Any:
    """Fill enclosed holes in 3D; with ``slicewise`` also holes enclosed in any axial, coronal
    or sagittal slice (a hole open in 3D through one thin gap is still closed in the slices)."""
    a, ndi, back = _to_backend(mask)
    xp = _xp(a)

    def fill(a):  # on the box grown by one voxel: what is open to its border is open outside
        a = ndi.binary_fill_holes(a)
        if slicewise:  # one call per axis: a structure that never reaches across slices
            for axis in range(3):
                a = ndi.binary_fill_holes(a, structure=xp.asarray(_in_plane_cross(axis)))
        return a

    return back(_within_box(a.astype(bool), 1, fill))


def _in_plane_cross(axis: int) -> np.ndarray:
    """The 3x3x3 structure of 4-connectivity within the slices normal to ``axis``."""
    structure = np.zeros((3, 3, 3), bool)
    centre = [slice(None)] * 3
    centre[axis] = 1
    structure[tuple(centre)] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    return structure


def dilate(mask: Any, voxels: int) -> Any:
    """``mask`` grown by ``voxels`` steps of 6-connected dilation."""
    a, ndi, back = _to_backend(mask)
    a = a.astype(bool)
    if voxels <= 0 or not bool(a.any()):
        return back(a.copy())
    return back(_within_box(a, voxels, lambda a: ndi.binary_dilation(a, iterations=voxels)))


def open_mask(mask: Any, voxels: int) -> Any:
    """``mask`` opened by ``voxels`` steps of 6-connected erosion, then as many of dilation:
    what is thinner than about 2 * ``voxels`` + 1 voxels goes."""
    a, ndi, back = _to_backend(mask)
    a = a.astype(bool)
    if voxels <= 0 or not bool(a.any()):
        return back(a.copy())
    return back(_within_box(a, 1, lambda a: ndi.binary_opening(a, iterations=voxels)))


def gaussian_filter(volume: Any, sigma: float) -> Any:
    """A volume smoothed by a Gaussian of ``sigma`` voxels (scipy's reflecting borders).

    Computed on the bounding box of the non-zero voxels grown by the kernel's radius (scipy's
    truncation at 4 sigma): outside it the result is zero, and inside it the box reads zeros
    wherever the volume does (its margin is a radius wide, or it ends where the volume ends), so
    the numbers are the same as on the whole volume. A weak map is zero outside the brain."""
    a, ndi, back = _to_backend(volume)
    out = _xp(a).zeros_like(a)
    box = bounding_box(a != 0, int(4.0 * sigma + 0.5))
    if box is not None:
        out[box] = ndi.gaussian_filter(a[box], sigma)
    return back(out)
