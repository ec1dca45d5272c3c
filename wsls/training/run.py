"""``wsls.train``: from dataset folders (or cases in memory) to a model bundle."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from wsls.errors import DataError
from wsls.io.atomic import atomic_write_text
from wsls.io.layouts import open_datasets
from wsls.io.outputs import OutputError, check_output, same_file


def prepare_cases(items: Sequence[Any], cache, progress: bool = True, what: str = "preparing"):
    """Prepared cases for CaseRef / Case / Prepared items, through a VolumeCache: with an
    on-disk cache, ``DiskCase`` objects (metadata in memory, volumes memory-mapped on use)."""
    from tqdm.auto import tqdm

    bar = tqdm(items, desc=what, unit="case", disable=not progress, leave=False)
    return [cache.lazy(item) for item in bar]


def _check_cases(cases, modalities: Sequence[str]) -> None:
    unlabelled = [c.id for c in cases if c.mask is None and c.label is None]
    if unlabelled:
        raise DataError(
            unlabelled[0],
            f"{len(unlabelled)} case(s) have neither a lesion mask nor an image-level label "
            "(give a 'label' column in a CSV manifest)",
        )
    for case in cases:
        if tuple(case.modalities) != tuple(modalities):
            raise DataError(
                case.id, f"has modalities {case.modalities}, the config wants {modalities}"
            )


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
    workers: int | None = None,
) -> Path:
    """Train wsls on datasets and write a model bundle.

    Args:
        data: a dataset folder (BraTS, MS, ISLES layouts) or CSV manifest, a list of them (each
            with its own layout), a ``Layout``, or a list of ``CaseRef`` / ``Case`` /
            ``Prepared`` cases. Training reads image-level (patch) labels only; voxel masks,
            where present, only label patches.
        out_dir: the run folder: ``bundle/`` (the model), ``runs/<stage>/`` (checkpoints,
            metrics.csv), ``report.json``, ``training.json``, ``cache/`` (prepared volumes).
        config: a ``WSLSConfig`` (default: ``WSLSConfig()``).
        layout: 'auto', 'brats', 'ms', 'isles' or 'csv' for the folders given.
        modalities: channel names, overriding ``config.modalities``.
        baselines: also train any of "classifier_gap", "classifier_gmp", "ws_unet", "s_unet"
            (for ``wsls.evaluate``; S-UNet needs voxel masks).
        val_data: held-out cases (same forms as ``data``) that pick the classifier's epoch.
        resume: continue an interrupted run.
        device: training device (default: CUDA when available). Under ``torchrun`` each rank
            trains on its GPU; rank 0 writes the bundle.
        cache: keep prepared volumes under ``out_dir/cache`` (fast reruns and resumes; the
            stages then read them memory-mapped, so memory does not grow with the cases).
        workers: threads for the per-case stages (maps, intensity model, confident voxels,
            self-training); None: one case at a time.
    Returns:
        The bundle folder (``out_dir/bundle``).
    Raises:
        OutputError: before any work, a run folder that cannot be written (a file in the way,
            a read-only file system...). ConfigError: an unknown device.
        CacheSpaceError: before preparing, too little disk space for the cache.
    """
    from wsls.data.cache import VolumeCache
    from wsls.data.signatures import modality_signatures
    from wsls.io.modalities import normalise_modalities
    from wsls.method.config import WSLSConfig
    from wsls.method.trained import save_models
    from wsls.runtime import placement, resolve_device
    from wsls.training.pipeline import train_wsls

    where = placement()
    rank = where.rank
    if rank != 0:  # under torchrun, rank 0 reports
        log = _quiet
    config = config or WSLSConfig()
    if modalities:
        config = replace(config, modalities=normalise_modalities(list(modalities)))
    out = Path(out_dir)
    # mistakes that would otherwise surface after the data are prepared: fail first
    check_output(out, kind="folder", what="run folder")
    resolve_device(device, "auto", where.local_rank)
    items, sources = open_datasets(data, layout, config.modalities)
    _check_out_is_not_data(out, sources)
    val_items = open_datasets(val_data, layout, config.modalities)[0] if val_data else []
    volume_cache = VolumeCache(config.preprocess, out / "cache" if cache else None, log=log)
    if rank == 0:
        volume_cache.check_space([*items, *val_items])
    cases = prepare_cases(items, volume_cache, progress)
    val_cases = prepare_cases(val_items, volume_cache, progress, "validation cases")
    _check_cases(cases, config.modalities)
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
        workers=workers,
    )
    bundle = out / "bundle"
    if rank == 0:
        models.signatures = modality_signatures(cases, config.modalities)
        record = provenance(sources, [c.id for c in cases], config)
        models.training = json.loads(json.dumps(record, default=str))
        save_models(models, bundle)
        atomic_write_text(out / "training.json", json.dumps(record, indent=1, default=str))
        log(f"[wsls] model bundle written to {bundle}")
    return bundle


def provenance(sources: Sequence[dict[str, Any]], case_ids: list[str], config: Any) -> dict:
    """What a bundle records of its training: the sources and case ids, the modalities, the
    preset and seed, the wsls version and the git commit of the code (when it is a checkout)."""
    import subprocess

    import wsls

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(wsls.__file__).parent, capture_output=True,
            text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "sources": list(sources),
        "cases": case_ids,
        "modalities": list(config.modalities),
        "preset": config.preset,
        "seed": config.seed,
        "wsls_version": wsls.__version__,
        "git_commit": commit,
    }


def _check_out_is_not_data(out: Path, sources: Sequence[dict[str, Any]]) -> None:
    """The run folder may not be a dataset folder (its bundle and cache would land among the
    cases, and a bundle's config.json beside case files)."""
    for source in sources:
        data = source.get("data")
        if data and same_file(data, out):
            raise OutputError(f"run folder {out} is the dataset folder {data}; give another --out")


def _quiet(message: str) -> None:
    del message
