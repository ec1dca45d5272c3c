"""Preprocessing with exact inverses: brain mask, z-score inside the brain, crop, resample, pad.

``preprocess(case, config)`` gives a :class:`Prepared` case on a smaller grid;
``Prepared.to_original`` maps a mask or map made on that grid back onto the case's full
canonical grid, and ``Prepared.save`` writes it in the original file's geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wsls import morphology
from wsls.errors import ConfigError, DataError
from wsls.io.case import Case
from wsls.io.nifti import Geometry, save_like
from wsls.io.resample import resize
from wsls.settings import FLAG, OPEN_FRACTION, Rule, check_fields


@dataclass(frozen=True)
class PreprocessConfig:
    """How to prepare a case.

    Attributes:
        downsample: factor > 1 shrinks the grid (2.0: half resolution); one value or per axis.
        target_spacing: voxel size in mm of the prepared grid; overrides ``downsample``.
        crop: crop to the brain's bounding box.
        margin: voxels (of the original grid) kept around the brain's bounding box.
        normalise: z-score each modality inside the brain.
        clip_percentiles: the z-score's mean and sd are computed on brain values clipped to
            these percentiles (robust to a few very bright voxels); None: plain statistics.
        background: value put outside the brain after normalisation.
        brain_threshold: for a derived brain mask on data without a constant background,
            the fraction of the (background, 99th percentile) range above the background.
        fill_holes: fill holes of a derived brain mask.
        pad_to_multiple: pad the prepared grid at the far end of each axis to a multiple of
            this (e.g. a network's total stride).
        mask_resampling: "nearest" (the mask keeps only sampled voxels; at factor 2 that
            shifts it by half a fine voxel) or "linear_threshold" (trilinear, then >= 0.5:
            centred, smoother).
    """

    downsample: float | tuple[float, float, float] = 1.0
    target_spacing: tuple[float, float, float] | None = None
    crop: bool = True
    margin: int = 8
    normalise: bool = True
    clip_percentiles: tuple[float, float] | None = (0.5, 99.5)
    background: float = 0.0
    brain_threshold: float = 0.05
    fill_holes: bool = True
    pad_to_multiple: int = 1
    mask_resampling: str = "nearest"

    RULES = {
        "downsample": Rule(
            "any_of",
            options=(
                Rule("float", 0.0, 16.0, open_low=True),
                Rule("tuple", item=Rule("float", 0.0, 16.0, open_low=True), length=3),
            ),
        ),
        "target_spacing": Rule(
            "tuple", item=Rule("float", 0.0, 20.0, open_low=True), length=3, optional=True
        ),
        "crop": FLAG,
        "margin": Rule("int", 0, 256),
        "normalise": FLAG,
        "clip_percentiles": Rule("tuple", item=Rule("float", 0.0, 100.0), length=2, optional=True),
        "background": Rule("float"),
        "brain_threshold": OPEN_FRACTION,
        "fill_holes": FLAG,
        "pad_to_multiple": Rule("int", 1, 64),
        "mask_resampling": Rule("str", choices=("nearest", "linear_threshold")),
    }

    def __post_init__(self) -> None:
        check_fields(self, self.RULES)
        if self.clip_percentiles is not None and not (
            self.clip_percentiles[0] < self.clip_percentiles[1]
        ):
            raise ConfigError(
                f"PreprocessConfig.clip_percentiles = {self.clip_percentiles!r}: expected "
                "low < high"
            )


def brain_mask(image: np.ndarray, threshold: float = 0.05, fill_holes: bool = True) -> np.ndarray:
    """Derive a brain mask from the first modality.

    A skull-stripped image has a constant background (0, or e.g. -3.16 in the already z-scored
    BraTS 2015 files): the brain is every voxel that differs from it. Otherwise the brain is
    above ``background + threshold * (p99 - background)``. Then the largest connected
    component is kept and its holes filled.

    Args:
        image: (C, H, W, D) or (H, W, D).
    Returns:
        (H, W, D) bool.
    """
    x = image[0] if image.ndim == 4 else image
    faces = np.concatenate(
        [
            x[0].ravel(),
            x[-1].ravel(),
            x[:, 0].ravel(),
            x[:, -1].ravel(),
            x[..., 0].ravel(),
            x[..., -1].ravel(),
        ]
    )
    background = float(np.median(faces))
    if np.mean(faces == background) > 0.5:
        mask = x != background
    else:
        high = float(np.percentile(x, 99))
        mask = x > background + threshold * (high - background)
    if not mask.any():
        return mask
    box = bounding_box(mask, margin=1)
    inner = morphology.largest_component(box.apply(mask), connectivity=6)
    if fill_holes:
        inner = morphology.fill_holes(inner)
    return box.uncrop(inner, fill=False)


def zscore_in_brain(
    image: np.ndarray,
    brain: np.ndarray,
    clip_percentiles: tuple[float, float] | None = (0.5, 99.5),
    background: float = 0.0,
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Z-score each modality with statistics of the brain voxels.

    Args:
        image: (C, H, W, D) float.
        brain: (H, W, D) bool.
    Returns:
        the normalised (C, H, W, D) float32 image (``background`` outside the brain) and
        (mean, sd) per modality in the input's units.
    """
    out = np.empty(image.shape, dtype=np.float32)
    stats = []
    for c in range(image.shape[0]):
        values = image[c][brain]
        if values.size == 0:
            mean, sd = 0.0, 1.0
        else:
            if clip_percentiles is not None:
                lo, hi = np.percentile(values, clip_percentiles)
                values = np.clip(values, lo, hi)
            mean, sd = float(values.mean()), float(values.std())
            sd = sd if sd > 1e-8 else 1.0
        out[c] = (image[c] - mean) / sd
        out[c][~brain] = background
        stats.append((mean, sd))
    return out, stats


@dataclass(frozen=True)
class CropBox:
    """An axis-aligned box on a full grid: ``start`` inclusive, ``stop`` exclusive, per axis."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]
    full_shape: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop, strict=True))  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.start, self.stop, strict=True))  # type: ignore[return-value]

    def apply(self, array: np.ndarray) -> np.ndarray:
        """(..., H, W, D) on the full grid -> (..., h, w, d) inside the box (a view)."""
        return array[(..., *self.slices)]

    def uncrop(self, array: np.ndarray, fill: Any = 0) -> np.ndarray:
        """(..., h, w, d) inside the box -> (..., H, W, D) with ``fill`` outside."""
        out = np.full((*array.shape[:-3], *self.full_shape), fill, dtype=array.dtype)
        out[(..., *self.slices)] = array
        return out


def bounding_box(mask: np.ndarray, margin: int = 0, multiple: int = 1) -> CropBox:
    """Bounding box of ``mask`` (H, W, D) grown by ``margin`` voxels, clipped to the grid.

    With ``multiple`` > 1 each side is grown (inside the grid where possible) so its length is a
    multiple of it, which makes integer downsampling exact block averaging.
    """
    full = tuple(int(s) for s in mask.shape)
    if not mask.any():
        return CropBox((0, 0, 0), full, full)  # type: ignore[arg-type]
    start, stop = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        a, b = max(0, int(hit[0]) - margin), min(full[axis], int(hit[-1]) + 1 + margin)
        if multiple > 1:
            need = -(b - a) % multiple
            grow_end = min(need, full[axis] - b)
            b += grow_end
            a = max(0, a - (need - grow_end))
        start.append(a)
        stop.append(b)
    return CropBox(tuple(start), tuple(stop), full)  # type: ignore[arg-type]


def target_shape(
    shape: tuple[int, ...], spacing: tuple[float, float, float], config: PreprocessConfig
) -> tuple[int, int, int]:
    """The prepared grid's shape for a volume of this shape and voxel size."""
    factors = _factors(spacing, config)
    if np.any(factors <= 0):
        raise ValueError(f"downsampling factors must be positive, got {factors}")
    return tuple(max(1, round(n / f)) for n, f in zip(shape[:3], factors, strict=True))  # type: ignore[return-value]


@dataclass
class Prepared:
    """A case on the prepared grid, with the maps back to the original grid.

    Attributes:
        id: case id.
        image: (C, h, w, d) float32, normalised.
        mask: (h, w, d) bool lesion mask (nearest-neighbour resampled), or None. For evaluation
            and for deriving patch labels; never given to the weakly supervised learner.
        brain: (h, w, d) bool.
        label: image-level label of the case, or None.
        modalities: channel names.
        spacing: voxel size in mm of the prepared grid.
        crop: the crop box on the full canonical grid.
        resampled_shape: grid after resampling, before padding.
        geometry: the original image's geometry (for saving), or None.
        stats: (mean, sd) per modality used by the z-score.
    """

    id: str
    image: np.ndarray
    mask: np.ndarray | None
    brain: np.ndarray
    label: float | None
    modalities: tuple[str, ...]
    spacing: tuple[float, float, float]
    crop: CropBox
    resampled_shape: tuple[int, int, int]
    geometry: Geometry | None = None
    stats: list[tuple[float, float]] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.image.shape[-3:])  # type: ignore[return-value]

    @property
    def original_shape(self) -> tuple[int, int, int]:
        """The full canonical grid of the case."""
        return self.crop.full_shape

    @property
    def affine(self) -> np.ndarray | None:
        """(4, 4) voxel-to-world matrix of the prepared grid (canonical), or None."""
        if self.geometry is None:
            return None
        scale = np.asarray(self.crop.shape, float) / np.asarray(self.resampled_shape, float)
        index_map = np.eye(4)
        index_map[:3, :3] = np.diag(scale)
        # align_corners=False: prepared voxel i covers original [i*s, (i+1)*s) - 0.5
        index_map[:3, 3] = (scale - 1.0) / 2.0 + np.asarray(self.crop.start, float)
        return self.geometry.affine @ index_map

    def to_original(self, array: np.ndarray, mode: str = "auto") -> np.ndarray:
        """Map (h, w, d) (or (C, h, w, d)) on the prepared grid to the full canonical grid.

        Args:
            mode: "auto" (bool: trilinear then >= 0.5; integer: nearest; float: trilinear),
                or "nearest", "linear", "linear_threshold".
        Returns:
            (..., H, W, D), zero/False outside the crop.
        """
        array = np.asarray(array)
        if tuple(array.shape[-3:]) != self.shape:
            raise ValueError(
                f"expected an array on the prepared grid {self.shape}, got {array.shape}"
            )
        array = array[(..., *(slice(0, n) for n in self.resampled_shape))]
        mode = _auto_mode(array, mode, upsampling=True)
        back = resize(array, self.crop.shape, mode=mode)
        return self.crop.uncrop(back, fill=False if back.dtype == np.bool_ else 0)

    def from_original(self, array: np.ndarray, mode: str = "auto") -> np.ndarray:
        """Map (..., H, W, D) on the full canonical grid to the prepared grid (as preprocess)."""
        array = np.asarray(array)
        mode = _auto_mode(array, mode, upsampling=False)
        small = resize(self.crop.apply(array), self.resampled_shape, mode=mode)
        return _pad_to(small, self.shape, fill=False if small.dtype == np.bool_ else 0)

    def save(self, array: np.ndarray, path: str | Path, dtype: Any = None) -> Path:
        """Write a prepared-grid mask or map onto the original file's grid and geometry."""
        if self.geometry is None:
            raise ValueError(f"case {self.id}: no geometry to save with")
        return save_like(self.to_original(array), self.geometry, path, dtype=dtype)


def _auto_mode(array: np.ndarray, mode: str, upsampling: bool) -> str:
    if mode != "auto":
        return mode
    if array.dtype == np.bool_:
        return "linear_threshold" if upsampling else "nearest"
    if np.issubdtype(array.dtype, np.integer):
        return "nearest"
    return "linear"


def _pad_to(array: np.ndarray, shape: tuple[int, int, int], fill: Any) -> np.ndarray:
    pad = [(0, 0)] * (array.ndim - 3) + [
        (0, t - n) for n, t in zip(array.shape[-3:], shape, strict=True)
    ]
    if all(p == (0, 0) for p in pad):
        return array
    return np.pad(array, pad, constant_values=fill)


def preprocess(case: Case, config: PreprocessConfig | None = None) -> Prepared:
    """Brain mask, crop, z-score, resample and pad one case.

    Args:
        case: a loaded case (image (C, H, W, D) canonical).
        config: how; default ``PreprocessConfig()`` (full resolution, cropped, z-scored).
    Returns:
        A :class:`Prepared` case.
    """
    config = config or PreprocessConfig()
    brain = case.brain
    if brain is None:
        brain = brain_mask(case.image, config.brain_threshold, config.fill_holes)
    spacing = case.volume.spacing
    factors = _factors(spacing, config)
    multiple = int(round(min(factors))) if np.allclose(factors, np.round(factors)) else 1
    box = (
        bounding_box(brain, config.margin, multiple)
        if config.crop
        else CropBox((0, 0, 0), case.shape, case.shape)
    )
    image = box.apply(case.image)
    brain_c = np.ascontiguousarray(box.apply(brain))
    stats: list[tuple[float, float]] = []
    if config.normalise:
        image, stats = zscore_in_brain(image, brain_c, config.clip_percentiles, config.background)
    target = target_shape(box.shape, spacing, config)
    _check_grid_size(case, box.shape, target)
    image = resize(image, target, mode="linear")
    brain_p = resize(brain_c, target, mode=config.mask_resampling)
    mask_p = None
    if case.mask is not None:
        mask_p = resize(
            np.ascontiguousarray(box.apply(case.mask)), target, mode=config.mask_resampling
        )
    padded = tuple(-(-n // config.pad_to_multiple) * config.pad_to_multiple for n in target)
    prepared_spacing = tuple(s * n / t for s, n, t in zip(spacing, box.shape, target, strict=True))
    return Prepared(
        id=case.id,
        image=_pad_to(image, padded, config.background),
        mask=None if mask_p is None else _pad_to(mask_p, padded, False),
        brain=_pad_to(brain_p, padded, False),
        label=case.label,
        modalities=tuple(case.modalities),
        spacing=prepared_spacing,  # type: ignore[arg-type]
        crop=box,
        resampled_shape=target,
        geometry=case.volume.geometry,
        stats=stats,
    )


MAX_PREPARED_VOXELS = 512**3


def _check_grid_size(case: Case, shape: tuple[int, ...], target: tuple[int, ...]) -> None:
    """Refuse a prepared grid too large to allocate (a voxel size in the header far off,
    e.g. 100 mm, resampled to a model's few-mm grid) before allocating it."""
    if float(np.prod(np.asarray(target, np.float64))) > MAX_PREPARED_VOXELS:
        spacing = "x".join(f"{s:g}" for s in np.round(case.volume.spacing, 3))
        raise DataError(
            case.id,
            f"resampling the {'x'.join(map(str, shape))} crop (voxel size {spacing} mm) to the "
            f"model's grid would give {'x'.join(map(str, target))} voxels: the voxel size in "
            "the header is probably wrong",
        )


def _factors(spacing: tuple[float, float, float], config: PreprocessConfig) -> np.ndarray:
    if config.target_spacing is not None:
        return np.asarray(config.target_spacing, float) / np.asarray(spacing, float)
    return np.broadcast_to(np.asarray(config.downsample, float), (3,)).copy()
