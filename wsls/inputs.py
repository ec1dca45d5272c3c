"""What a user hands to :func:`wsls.segment`, turned into a :class:`~wsls.io.case.Case`.

Accepted images: a NIfTI (or NRRD) path, a case folder, a list of per-modality paths (in the
model's modality order), a mapping modality -> path, a numpy array or torch tensor (C, H, W, D)
(or (H, W, D) for a one-modality model) with an optional affine, or any DLPack array (CuPy)
taken over zero-copy by ``torch.from_dlpack``. Every problem is a one-line
:class:`~wsls.errors.DataError`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsls.errors import DataError, input_remark
from wsls.io.case import Case
from wsls.io.layouts import image_stem
from wsls.io.modalities import modality_in_name, normalise_modalities
from wsls.io.nifti import (
    Volume,
    check_affine,
    load_mask,
    load_volume,
    warn_implausible_spacing,
)

PathLike = str | Path


def is_dlpack(obj: Any) -> bool:
    """True for arrays that torch can take over through DLPack (CuPy, JAX...), not numpy/torch."""
    return (
        hasattr(obj, "__dlpack__")
        and not isinstance(obj, np.ndarray | torch.Tensor)
        and not isinstance(obj, str | Path)
    )


def array_device(image: Any) -> str | None:
    """The torch device an in-memory image lives on ("cuda:0"...), or None for host data."""
    if isinstance(image, torch.Tensor):
        return str(image.device)
    if is_dlpack(image):
        try:
            return str(torch.from_dlpack(image).device)
        except Exception:  # noqa: BLE001 - not a usable DLPack array; to_case reports it
            return None
    return None


def _names(expected: Sequence[str]) -> str:
    return ", ".join(expected)


def _channel_error(source: Any, got: int, expected: Sequence[str]) -> DataError:
    n = len(expected)
    return DataError(
        source,
        f"has {got} channel{'s' if got != 1 else ''} but the model needs {n} "
        f"({_names(expected)}): pass one image per modality, in this order",
    )


def _from_paths(paths: Sequence[PathLike], expected: tuple[str, ...]) -> Volume:
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise DataError(p, "image file not found")
        if p.is_dir():
            raise DataError(p, "is a folder; pass image files (or one case folder alone)")
    if len(paths) > 1 and len(paths) != len(expected):
        raise DataError(
            paths[0].parent,
            f"{len(paths)} image files given but the model needs {len(expected)} "
            f"({_names(expected)}), one file per modality in this order",
        )
    if len(paths) == len(expected):
        warn_misnamed(paths, expected)
    volume = load_volume(paths)
    if volume.data.shape[0] != len(expected):
        raise _channel_error(paths[0], volume.data.shape[0], expected)
    volume.modalities = expected
    return volume


def misnamed(paths: Sequence[Path], slots: Sequence[str]) -> list[str]:
    """One remark per file whose name says another modality than the slot it is given in
    ('x_t1ce.nii.gz' given as flair)."""
    remarks = []
    for path, slot in zip(paths, slots, strict=True):
        said = modality_in_name(path)
        if said is not None and said != slot:
            remarks.append(
                f"{path}: the file name says {said} but it is given as {slot} (the model reads "
                f"{', '.join(slots)}, in this order); check the order of the files"
            )
    return remarks


def warn_misnamed(paths: Sequence[Path], slots: Sequence[str]) -> None:
    """:func:`misnamed` as input remarks (:func:`~wsls.errors.input_remark`)."""
    for remark in misnamed(paths, slots):
        input_remark(remark)


def _from_folder(folder: Path, expected: tuple[str, ...]):
    """A case folder (BraTS, MS... naming): its images in the model's order, and its brain mask."""
    from wsls.io.layouts import open_dataset
    from wsls.io.modalities import naming_hint

    try:
        dataset = open_dataset(folder, "auto", expected)
    except DataError as err:
        raise DataError(
            err.source,
            f"{err.problem}; the model needs one file per modality: {naming_hint(expected)} "
            "(or pass the files themselves, in this order)",
        ) from None
    if len(dataset) != 1:
        raise DataError(
            folder,
            f"holds {len(dataset)} cases; segment one case folder or file at a time "
            "(wsls.segment_many handles folders of cases)",
        )
    return dataset[0]


def _as_numpy(image: Any, source: str) -> tuple[np.ndarray, str]:
    if is_dlpack(image):
        try:
            image = torch.from_dlpack(image)  # zero-copy view on the array's own device
        except Exception as err:  # noqa: BLE001
            raise DataError(source, f"cannot be read through DLPack ({err})") from None
    if isinstance(image, torch.Tensor):
        source = f"tensor on {image.device}"
        if image.is_complex():
            raise DataError(source, "complex images are not supported")
        image = image.detach().to("cpu", torch.float32).numpy()
    array = np.asarray(image)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    ):
        raise DataError(source, f"expected a numeric array, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise DataError(source, "complex images are not supported")
    return array.astype(np.float32, copy=False), source


def _from_array(image: Any, affine: Any, expected: tuple[str, ...]) -> Volume:
    array, source = _as_numpy(image, "image array")
    if array.ndim == 3 and len(expected) == 1:
        array = array[None]
    if array.ndim != 4:
        raise DataError(
            source,
            f"expected a (C, H, W, D) array with C = {len(expected)} ({_names(expected)}), "
            f"got shape {tuple(array.shape)}",
        )
    if array.shape[0] != len(expected):
        raise _channel_error(f"{source} of shape {tuple(array.shape)}", array.shape[0], expected)
    if min(array.shape[1:]) < 2:
        raise DataError(source, f"spatial size {tuple(array.shape[1:])} is not a 3D volume")
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise DataError(source, f"holds {bad} NaN or infinite values")
    if affine is not None:
        affine = np.asarray(affine, dtype=np.float64)
        if affine.shape != (4, 4) or not np.isfinite(affine).all():
            raise DataError(source, f"affine must be a finite 4x4 matrix, got {affine.shape}")
        check_affine(affine, source)
        warn_implausible_spacing(affine, source)
    return Volume.from_array(array, affine, expected)


def _brain_array(brain: Any, volume: Volume) -> np.ndarray:
    if isinstance(brain, str | Path):
        if not Path(brain).exists():
            raise DataError(brain, "brain mask file not found")
        return load_mask(brain, volume)
    array, source = _as_numpy(brain, "brain mask")
    if array.shape != tuple(volume.original_shape):
        raise DataError(
            source,
            f"shape {array.shape} differs from the image's {tuple(volume.original_shape)}",
        )
    return volume.geometry.to_canonical(array > 0.5)


def to_case(
    image: Any,
    modalities: Sequence[str],
    *,
    affine: Any = None,
    brain: Any = None,
    case_id: str | None = None,
) -> Case:
    """Build a :class:`Case` for a model that reads ``modalities`` (in this order).

    Args:
        image: see the module docstring. Arrays are in the voxel order of ``affine``
            (default: identity, i.e. canonical RAS with 1 mm voxels).
        modalities: the model's channel names.
        affine: (4, 4) voxel-to-world matrix of an array input (ignored for files).
        brain: brain mask: a file, or an array on the input's grid (default: the case folder's
            brain mask if it has one, else derived from the first modality).
        case_id: name of the case (default: the file or folder name, else "image").
    Raises:
        DataError: missing or unreadable files, wrong channel count, non-finite values...
    """
    expected = normalise_modalities(list(modalities))
    brain_path = None
    if isinstance(image, Case):
        return image.subset(expected)
    if isinstance(image, str | Path):
        path = Path(image)
        if not path.exists():
            raise DataError(path, "image file or folder not found")
        if path.is_dir():
            ref = _from_folder(path, expected)
            volume = _from_paths(ref.image_paths, expected)
            brain_path, default_id = ref.brain_path, ref.id
        else:
            volume, default_id = _from_paths([path], expected), image_stem(path)
    elif isinstance(image, Mapping):
        given = {normalise_modalities([str(k)])[0]: v for k, v in image.items()}
        missing = [m for m in expected if m not in given]
        if missing:
            raise DataError("image", f"no file for modality {', '.join(missing)} (given {given})")
        files = [Path(given[m]) for m in expected]
        volume, default_id = _from_paths(files, expected), _files_id(files)
    elif isinstance(image, list | tuple) and all(isinstance(p, str | Path) for p in image):
        if not image:
            raise DataError("image", "an empty list of image files")
        files = [Path(p) for p in image]
        volume, default_id = _from_paths(files, expected), _files_id(files)
    else:
        volume, default_id = _from_array(image, affine, expected), "image"
    mask = None
    if brain is not None:
        mask = _brain_array(brain, volume)
    elif brain_path is not None:
        mask = load_mask(brain_path, volume)
    if mask is not None and not mask.any():
        raise DataError(case_id or default_id, "the brain mask is empty")
    return Case(case_id or default_id, volume.data, None, mask, None, volume, expected)


def _files_id(paths: Sequence[Path]) -> str:
    """A case name for per-modality files: their common name prefix ('BraTS20_001_flair',
    'BraTS20_001_t1ce' -> 'BraTS20_001'), else their folder's name."""
    if len(paths) == 1:
        return image_stem(paths[0])
    stems = [image_stem(p) for p in paths]
    prefix = os.path.commonprefix(stems).rstrip("_-. ")
    if len(prefix) >= 3:
        return prefix
    parent = paths[0].resolve().parent.name
    return parent or stems[0]


def input_files(
    inputs: Sequence[PathLike], modalities: Sequence[str] | None = None, layout: str = "auto"
) -> list[Path]:
    """Every file that ``inputs`` (files, case folders, dataset folders) stand for: images,
    brain masks and lesion masks; outputs must never be one of them.

    Args:
        modalities: those a folder's cases are read with (None: the ones every case has).
    """
    from wsls.io.layouts import is_image_path, open_dataset

    files: list[Path] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if not path.is_dir():
            files.append(path)
            continue
        files += [p for p in path.iterdir() if is_image_path(p)]
        try:
            dataset = open_dataset(path, layout, modalities)
        except DataError:
            continue
        for ref in dataset:
            files += [p for p in (*ref.image_paths, ref.brain_path, ref.mask_path) if p]
    return files
