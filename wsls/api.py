"""The Python API: ``wsls.segment``, ``wsls.training``, ``wsls.load`` (DESIGN section 5).

    import wsls
    seg = wsls.segment(["case/flair.nii.gz", "case/t1c.nii.gz"], "run/bundle")
    seg.save("case/lesion.nii.gz")        # uint8 mask on the scan's own grid and orientation

Bad input is a one-line :class:`~wsls.errors.DataError` (a ValueError); a bad bundle a
:class:`~wsls.bundle.BundleError`.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsls.errors import DataError, InputWarning, UserError, collect_input_remarks
from wsls.inputs import array_device, input_files, to_case
from wsls.method.trained import TrainedModels, bundle_path, load_models
from wsls.runtime import resolve_device
from wsls.segmentation import Candidates, Segmentation, prepared_to_file_voxels

ModelLike = Any  # a TrainedModels, a bundle (or run) folder, a shipped model's name, or None


def load(
    path: str | Path | None = None,
    *,
    device: str = "cpu",
    modalities: Sequence[str] | None = None,
):
    """Load a trained model bundle (a run folder works too, or a shipped model's name; None:
    the default shipped model) -> ``TrainedModels``.

    Args:
        device: where the networks' weights go.
        modalities: the modalities you have; loading fails clearly if the bundle needs others.
    """
    return load_models(bundle_path(path), modalities=modalities, device=device)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, stamp: tuple[int, int], device: str):
    del stamp  # part of the cache key only: a rewritten bundle is read again
    return load(path, device=device)


def resolve_model(model: ModelLike, device: torch.device | str = "cpu"):
    """A ``TrainedModels`` as is, or the bundle at a path (loaded once and cached)."""
    if isinstance(model, TrainedModels):
        return model
    if model is not None and not isinstance(model, str | Path):
        raise TypeError(
            f"model must be a TrainedModels, a bundle path or a shipped model's name, not "
            f"{type(model).__name__}"
        )
    path = bundle_path(model).resolve()
    config = path / "config.json"
    st = config.stat() if config.exists() else path.stat()
    return _load_cached(str(path), (st.st_mtime_ns, st.st_size), str(torch.device(device)))


def _inference_config(config, seeds: int | None, threshold: float | None, min_component):
    regions = config.regions
    if seeds is not None:
        if seeds < 1:
            raise UserError(f"seeds must be >= 1, got {seeds}")
        regions = replace(regions, seeds=int(seeds))
    if threshold is not None:
        if not 0.0 < threshold < 1.0:
            raise UserError(f"threshold (lambda) must lie in (0, 1), got {threshold}")
        regions = replace(regions, threshold=float(threshold))
    config = replace(config, regions=regions)
    if min_component is not None:
        config = replace(config, min_component=int(min_component))
    return config


def segment(
    image: Any,
    model: ModelLike = None,
    *,
    device: str | torch.device | None = None,
    affine: Any = None,
    brain: Any = None,
    case_id: str | None = None,
    seeds: int | None = None,
    threshold: float | None = None,
    min_component: int | None = None,
    strict: bool = False,
) -> Segmentation:
    """Segment the lesions of one scan with a trained model (ACAM + WSR).

    Args:
        image: a NIfTI path (3D, or 4D with one channel per modality), a case folder, a list
            of per-modality paths in the model's modality order (``model.config.modalities``),
            a mapping modality -> path, a numpy array or torch tensor (C, H, W, D) (or
            (H, W, D) for a one-modality model), or a CuPy / DLPack array (taken zero-copy).
        model: a ``TrainedModels`` (``wsls.load``, ``wsls.train``), a bundle path (loaded once
            and cached), or a shipped model's name (``wsls models``); default: the shipped
            tumour model (whole tumour from FLAIR + T1c).
        device: where the networks run ("cpu", "cuda", "cuda:1"); default: the input tensor's
            device, else CPU. A ``TrainedModels`` passed in is moved there (in place).
        affine: (4, 4) voxel-to-world matrix of an array input (default: identity).
        brain: brain mask (file, or array on the input's grid); default: derived.
        case_id: name used in messages and reports.
        seeds, threshold, min_component: override the model's region-growing seed count,
            affinity threshold lambda (default: chosen per volume) and the smallest kept
            component (voxels of the prepared grid).
        strict: refuse (``DataError``) inputs that only look wrong, which otherwise give an
            :class:`~wsls.errors.InputWarning`: channels whose intensity signatures fit the
            model's modalities clearly better in another order, a file named for another
            modality than its slot, an implausible voxel size.
    Returns:
        A :class:`~wsls.segmentation.Segmentation` on the input's grid; its
        ``input_warnings`` repeat the warnings given.
    Raises:
        DataError: unreadable or inconsistent input (one line). BundleError: bad bundle.
    """
    from wsls.data.preprocess import preprocess
    from wsls.method.segment import segment_volume

    start = time.perf_counter()
    dev = resolve_device(device, array_device(image) or "cpu")
    models = resolve_model(model, dev)
    config = _inference_config(models.config, seeds, threshold, min_component)
    with collect_input_remarks() as remarks:
        case = to_case(image, config.modalities, affine=affine, brain=brain, case_id=case_id)
    _warn_or_refuse(remarks, strict, case.id)
    loaded = time.perf_counter()
    prepared = preprocess(case, config.preprocess)
    if not prepared.brain.any():
        raise DataError(case.id, "no brain voxels found (is the image empty or constant?)")
    order = _order_remark(models, prepared, case)
    if order is not None:
        _warn_or_refuse([order], strict, case.id)
        remarks.append(order)
    ready = time.perf_counter()
    classifier, embedding = models.classifier.to(dev), models.embedding.to(dev)
    result = segment_volume(classifier, embedding, prepared.image, prepared.brain, config)
    done = time.perf_counter()
    segmentation = _on_input_grid(case, prepared, result)
    segmentation.input_warnings = tuple(remarks)
    segmentation.sources = _sources(image, case, brain)
    segmentation.timings = {
        "load": loaded - start,
        "preprocess": ready - loaded,
        "method": done - ready,
        "map_back": time.perf_counter() - done,
    }
    return segmentation


def _warn_or_refuse(remarks: list[str], strict: bool, case_id: str) -> None:
    """InputWarnings for what looks wrong, or with ``strict`` a DataError for the first."""
    if strict and remarks:
        raise DataError(case_id, f"refused (strict): {remarks[0]}")
    for remark in remarks:
        warnings.warn(remark, InputWarning, stacklevel=3)


def _order_remark(models, prepared, case) -> str | None:
    """A remark when the channels fit the model's intensity signatures clearly better in
    another order (the model's bundle records them at training)."""
    from wsls.data.signatures import check_order

    modalities = tuple(models.config.modalities)
    check = check_order(models.signatures, prepared.image, prepared.brain, modalities)
    if check is None or not check.suspicious:
        return None
    names = [str(p) for p in case.volume.paths]
    if len(names) != len(modalities):  # a 4D file or an array: its channels
        names = [f"channel {i}" for i in range(len(modalities))]
    given = ", ".join(f"{n} as {m}" for n, m in zip(names, modalities, strict=True))
    likely, wanted = ", ".join(check.likely), ", ".join(modalities)
    if check.plausible:
        return (
            f"the channels look like {likely} rather than the model's {wanted} (intensity "
            f"signatures of the training cases: {check.best_cost:.2f} in that order vs "
            f"{check.given_cost:.2f} as given: {given}); the inputs are probably in the wrong "
            f"order: pass {wanted} in this order"
        )
    return (
        f"the channels fit the model's {wanted} poorly as given ({given}: "
        f"{check.given_cost:.2f}) and better as {likely} ({check.best_cost:.2f}, intensity "
        "signatures of the training cases): the inputs may be in the wrong order, or unlike "
        "the scans the model was trained on"
    )


def _sources(image, case, brain) -> tuple[Path, ...]:
    """The files a case was read from (images and brain mask): outputs must never be these."""
    paths = [Path(p) for p in case.volume.paths]
    if isinstance(brain, str | Path):
        paths.append(Path(brain))
    if isinstance(image, str | Path) and Path(image).is_dir():
        paths += input_files([image], case.modalities)
    return tuple(paths)


def _on_input_grid(case, prepared, result) -> Segmentation:
    """The method's prepared-grid output mapped back to the input file's voxel order."""
    geometry = case.volume.geometry
    mask = geometry.to_original(prepared.to_original(result.mask))
    acam = geometry.to_original(prepared.to_original(result.maps.acam).astype(np.float32))
    regions = result.regions
    if regions is None:
        empty = np.zeros((0, 3), np.int64)
        candidates = Candidates(empty, np.zeros(0, np.float32), np.zeros(0, bool), None, empty)
    else:
        kept = np.zeros(len(regions.seeds), bool)
        kept[np.asarray(regions.kept, np.int64)] = True
        candidates = Candidates(
            prepared_to_file_voxels(prepared, regions.seeds),
            np.asarray(regions.scores, np.float32),
            kept,
            float(regions.threshold),
            np.asarray(regions.seeds, np.int64),
        )
    return Segmentation(
        mask=np.ascontiguousarray(mask),
        acam=np.ascontiguousarray(acam),
        candidates=candidates,
        affine=np.asarray(geometry.original_affine, np.float64),
        probability=float(result.maps.probability),
        lesion_free=regions is None,
        quality=result.quality,
        case_id=case.id,
        geometry=geometry,
        prepared=prepared,
        result=result,
    )
