"""The Python API: ``wsls.segment``, ``wsls.train``, ``wsls.load`` (DESIGN section 5).

    import wsls
    seg = wsls.segment(["case/flair.nii.gz", "case/t1c.nii.gz"], "run/bundle")
    seg.save("case/lesion.nii.gz")        # uint8 mask on the scan's own grid and orientation

Bad input is a one-line :class:`~wsls.data.DataError` (a ValueError); a bad bundle a
:class:`~wsls.bundle.BundleError`.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsls.bundle import BundleError
from wsls.data.errors import DataError
from wsls.device import on_device, resolve_device
from wsls.inputs import array_device, to_case
from wsls.segmentation import Candidates, Segmentation, prepared_to_file_voxels

ModelLike = Any  # a TrainedModels, or a bundle (or run) folder


def bundle_path(path: str | Path) -> Path:
    """The bundle folder for ``path``: the folder itself, or ``path/bundle`` for a run folder."""
    path = Path(path).expanduser()
    if not path.exists():
        raise BundleError(f"{path}: model bundle not found")
    if not (path / "config.json").exists() and (path / "bundle" / "config.json").exists():
        return path / "bundle"
    return path


def load(path: str | Path, *, device: str = "cpu", modalities: Sequence[str] | None = None):
    """Load a trained model bundle (a run folder works too) -> ``TrainedModels``.

    Args:
        device: where the networks' weights go.
        modalities: the modalities you have; loading fails clearly if the bundle needs others.
    """
    from wsls.pipeline.bundle_io import load_models

    return load_models(bundle_path(path), modalities=modalities, device=device)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, stamp: tuple[int, int], device: str):
    del stamp  # part of the cache key only: a rewritten bundle is read again
    return load(path, device=device)


def resolve_model(model: ModelLike, device: torch.device | str = "cpu"):
    """A ``TrainedModels`` as is, or the bundle at a path (loaded once and cached)."""
    from wsls.pipeline.train import TrainedModels

    if isinstance(model, TrainedModels):
        return model
    if not isinstance(model, str | Path):
        raise TypeError(
            f"model must be a TrainedModels or a bundle path, not {type(model).__name__}"
        )
    path = bundle_path(model).resolve()
    config = path / "config.json"
    st = config.stat() if config.exists() else path.stat()
    return _load_cached(str(path), (st.st_mtime_ns, st.st_size), str(torch.device(device)))


def _inference_config(config, seeds: int | None, threshold: float | None, min_component):
    regions = config.regions
    if seeds is not None:
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        regions = replace(regions, seeds=int(seeds))
    if threshold is not None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold (lambda) must lie in (0, 1), got {threshold}")
        regions = replace(regions, threshold=float(threshold))
    config = replace(config, regions=regions)
    if min_component is not None:
        config = replace(config, min_component=int(min_component))
    return config


def segment(
    image: Any,
    model: ModelLike,
    *,
    device: str | torch.device | None = None,
    affine: Any = None,
    brain: Any = None,
    case_id: str | None = None,
    seeds: int | None = None,
    threshold: float | None = None,
    min_component: int | None = None,
) -> Segmentation:
    """Segment the lesions of one scan with a trained model (ACAM + WSR).

    Args:
        image: a NIfTI path (3D, or 4D with one channel per modality), a case folder, a list
            of per-modality paths in the model's modality order (``model.config.modalities``),
            a mapping modality -> path, a numpy array or torch tensor (C, H, W, D) (or
            (H, W, D) for a one-modality model), or a CuPy / DLPack array (taken zero-copy).
        model: a ``TrainedModels`` (``wsls.load``, ``wsls.train``) or a bundle path (loaded
            once and cached).
        device: where the networks run ("cpu", "cuda", "cuda:1"); default: the input tensor's
            device, else CPU. A ``TrainedModels`` passed in is moved there (in place).
        affine: (4, 4) voxel-to-world matrix of an array input (default: identity).
        brain: brain mask (file, or array on the input's grid); default: derived.
        case_id: name used in messages and reports.
        seeds, threshold, min_component: override the model's region-growing seed count,
            affinity threshold lambda (default: chosen per volume) and the smallest kept
            component (voxels of the prepared grid).
    Returns:
        A :class:`~wsls.segmentation.Segmentation` on the input's grid.
    Raises:
        DataError: unreadable or inconsistent input (one line). BundleError: bad bundle.
    """
    from wsls.data.preprocess import preprocess
    from wsls.pipeline.run import segment_volume

    start = time.perf_counter()
    dev = resolve_device(device, array_device(image))
    models = resolve_model(model, dev)
    config = _inference_config(models.config, seeds, threshold, min_component)
    case = to_case(image, config.modalities, affine=affine, brain=brain, case_id=case_id)
    loaded = time.perf_counter()
    prepared = preprocess(case, config.preprocess)
    if not prepared.brain.any():
        raise DataError(case.id, "no brain voxels found (is the image empty or constant?)")
    ready = time.perf_counter()
    classifier = on_device(models.classifier, dev)
    embedding = on_device(models.embedding, dev)
    result = segment_volume(classifier, embedding, prepared.image, prepared.brain, config)
    done = time.perf_counter()
    segmentation = _on_input_grid(case, prepared, result)
    segmentation.timings = {
        "load": loaded - start,
        "preprocess": ready - loaded,
        "method": done - ready,
        "map_back": time.perf_counter() - done,
    }
    return segmentation


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
        case_id=case.id,
        geometry=geometry,
        prepared=prepared,
        result=result,
    )


def _case_refs(data: Any, layout: str, modalities: Sequence[str]) -> tuple[list, dict]:
    """Cases to train on (CaseRef, Case or Prepared) and a description of where they came from."""
    from wsls.data.layouts import Layout, open_dataset

    if isinstance(data, str | Path):
        dataset = open_dataset(data, layout, modalities)
        source = {"data": str(Path(data).resolve()), "layout": dataset.name}
        return list(dataset), {**source, "notes": dataset.notes}
    if isinstance(data, Layout):
        return list(data), {"data": str(data.root.resolve()), "layout": data.name}
    cases = list(data)
    if not cases:
        raise DataError("train", "no training cases given")
    return cases, {"data": None, "layout": "in memory"}


def prepare_cases(items: Sequence[Any], cache, progress: bool = True, what: str = "preparing"):
    """Prepared cases for CaseRef / Case / Prepared items, through a VolumeCache."""
    from tqdm.auto import tqdm

    bar = tqdm(items, desc=what, unit="case", disable=not progress, leave=False)
    return [cache.get(item) for item in bar]


def _check_labels(cases) -> None:
    unlabelled = [c.id for c in cases if c.mask is None and c.label is None]
    if unlabelled:
        raise DataError(
            unlabelled[0],
            f"{len(unlabelled)} case(s) have neither a lesion mask nor an image-level label "
            "(give a 'label' column in a CSV manifest)",
        )


def _quiet(message: str) -> None:
    del message


def train(
    data: Any,
    out_dir: str | Path,
    config: Any = None,
    *,
    layout: str = "auto",
    modalities: Sequence[str] | None = None,
    baselines: Sequence[str] = (),
    val_data: Any = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
    cache: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Train wsls on a dataset and write a model bundle.

    Args:
        data: a dataset folder (BraTS, MS, ISLES layouts) or CSV manifest, a ``Layout``, or a
            list of ``CaseRef`` / ``Case`` / ``Prepared`` cases. Training reads image-level
            (patch) labels only; voxel masks, where present, only label patches.
        out_dir: the run folder: ``bundle/`` (the model), ``runs/<stage>/`` (checkpoints,
            metrics.csv), ``report.json``, ``training.json``, ``cache/`` (prepared volumes).
        config: a ``WSLSConfig`` (default: ``WSLSConfig()``).
        layout: 'auto', 'brats', 'ms', 'isles' or 'csv' for a path.
        modalities: channel names, overriding ``config.modalities``.
        baselines: also train any of "classifier_gap", "classifier_gmp", "ws_unet", "s_unet"
            (for ``wsls.evaluate``; S-UNet needs voxel masks).
        val_data: held-out cases (same forms as ``data``) that pick the classifier's epoch.
        resume: continue an interrupted run.
        device: training device (default: CUDA when available). Under ``torchrun`` each rank
            trains on its GPU; rank 0 writes the bundle.
        cache: keep prepared volumes under ``out_dir/cache`` (fast reruns and resumes).
    Returns:
        The bundle folder (``out_dir/bundle``).
    """
    from wsls.batch import shard
    from wsls.data.cache import VolumeCache
    from wsls.data.modalities import normalise_modalities
    from wsls.pipeline.bundle_io import save_models
    from wsls.pipeline.config import WSLSConfig
    from wsls.pipeline.train import train_wsls

    rank = shard()[0]
    if rank != 0:  # under torchrun, rank 0 reports
        log = _quiet
    config = config or WSLSConfig()
    if modalities:
        config = replace(config, modalities=normalise_modalities(list(modalities)))
    out = Path(out_dir)
    items, source = _case_refs(data, layout, config.modalities)
    val_items = _case_refs(val_data, layout, config.modalities)[0] if val_data else []
    volume_cache = VolumeCache(config.preprocess, out / "cache" if cache else None)
    cases = prepare_cases(items, volume_cache, progress)
    val_cases = prepare_cases(val_items, volume_cache, progress, "validation cases")
    _check_labels(cases)
    for case in cases:
        if tuple(case.modalities) != tuple(config.modalities):
            raise DataError(
                case.id, f"has modalities {case.modalities}, the config wants {config.modalities}"
            )
    log(f"[wsls] training on {len(cases)} cases ({', '.join(config.modalities)}) into {out}")
    models = train_wsls(
        cases,
        out,
        config,
        baselines=tuple(baselines),
        val_cases=val_cases,
        resume=resume,
        device=device,
        progress=progress,
        log=log,
    )
    bundle = out / "bundle"
    if rank == 0:
        save_models(models, bundle)
        record = {**source, "cases": [c.id for c in cases], "modalities": config.modalities}
        (out / "training.json").write_text(json.dumps(record, indent=1, default=str))
        log(f"[wsls] model bundle written to {bundle}")
    return bundle
