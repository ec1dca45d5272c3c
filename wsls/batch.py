"""``wsls.segment_many``: segment every case of files and folders, streaming, with a progress
bar; under ``torchrun`` the cases are sharded across the ranks (rank r takes cases r, r + W...).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsls.errors import DataError, UserError
from wsls.io.csvfile import write_csv
from wsls.io.layouts import image_stem, is_image_path
from wsls.runtime import placement, resolve_device


@dataclass(frozen=True)
class Job:
    """One case to segment: its name, its image (a file, or files in the model's modality
    order) and its brain mask file, if any."""

    case_id: str
    image: Path | tuple[Path, ...]
    brain: Path | None = None


def _folder_jobs(folder: Path, modalities: Sequence[str], layout: str) -> list[Job]:
    from wsls.io.layouts import open_dataset

    loose = sorted(p for p in folder.iterdir() if is_image_path(p))
    try:
        dataset = open_dataset(folder, layout, modalities)
    except DataError:
        if layout != "auto" or not loose:
            raise
        return [Job(image_stem(p), p) for p in loose]  # loose files: one case per (4D) file
    return [Job(ref.id, tuple(ref.image_paths), ref.brain_path) for ref in dataset]


def find_jobs(
    inputs: str | Path | Sequence[str | Path], modalities: Sequence[str], layout: str = "auto"
) -> list[Job]:
    """The cases in ``inputs``: image files (one case each: 4D, or 3D for a one-modality
    model) and folders (a dataset layout, a case folder, or a folder of loose image files).

    Raises:
        DataError: a missing input, or a folder without images.
    """
    paths = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    if not paths:
        raise DataError("segment_many", "no inputs given")
    jobs: list[Job] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise DataError(path, "input file or folder not found")
        if path.is_dir():
            jobs.extend(_folder_jobs(path, modalities, layout))
        elif is_image_path(path):
            jobs.append(Job(image_stem(path), path))
        else:
            raise DataError(path, "not a NIfTI/NRRD image (.nii, .nii.gz, .nrrd) or a folder")
    seen: dict[str, int] = {}
    unique = []
    for job in jobs:  # outputs are named after the case: keep names distinct
        n = seen.get(job.case_id, 0)
        seen[job.case_id] = n + 1
        unique.append(job if n == 0 else Job(f"{job.case_id}_{n + 1}", job.image, job.brain))
    return unique


def segment_many(
    inputs: str | Path | Sequence[str | Path],
    model: Any,
    out_dir: str | Path,
    *,
    layout: str = "auto",
    device: str | None = None,
    suffix: str = "_lesion.nii.gz",
    save_acam: bool = False,
    skip_existing: bool = False,
    on_error: str = "skip",
    progress: bool = True,
    log: Callable[[str], None] = print,
    **options: Any,
) -> list[dict[str, Any]]:
    """Segment every case found in ``inputs`` and write one mask per case.

    Args:
        inputs: files and folders (see :func:`find_jobs`).
        model: a ``TrainedModels`` or a bundle path (loaded once).
        out_dir: gets ``<case><suffix>`` masks (and ``<case>_acam.nii.gz`` with ``save_acam``)
            and ``summary.csv`` (``summary_rank<r>.csv`` under torchrun).
        device: default: this rank's GPU under torchrun, else as :func:`wsls.segment`.
        skip_existing: leave cases whose mask already exists (resume a long run).
        on_error: "skip" (report and go on) or "raise".
        options: passed to :func:`wsls.segment` (seeds, threshold, min_component).
    Returns:
        One row per case of this rank: case, output, seconds, lesion volume... or error.
    """
    from tqdm.auto import tqdm

    from wsls.api import resolve_model, segment

    if on_error not in ("skip", "raise"):
        raise UserError(f"on_error must be 'skip' or 'raise', not {on_error!r}")
    rank, world, local = placement()
    device = resolve_device(device, "auto" if world > 1 else "cpu", local)
    models = resolve_model(model, device)
    jobs = find_jobs(inputs, models.config.modalities, layout)
    mine = jobs[rank::world]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        log(f"[wsls] {len(jobs)} cases, {world} rank(s): {len(mine)} here; writing to {out}")
    rows: list[dict[str, Any]] = []
    bar = tqdm(mine, desc="segmenting", unit="case", disable=not progress or rank != 0)
    for job in bar:
        bar.set_postfix_str(job.case_id)
        target = out / f"{job.case_id}{suffix}"
        if skip_existing and target.exists():
            rows.append({"case": job.case_id, "output": str(target), "skipped": True})
            continue
        start = time.perf_counter()
        try:
            image = list(job.image) if isinstance(job.image, tuple) else job.image
            seg = segment(
                image, models, device=device, brain=job.brain, case_id=job.case_id, **options
            )
            seg.save(target)
            if save_acam:
                seg.save_acam(out / f"{job.case_id}_acam.nii.gz")
        except (DataError, ValueError, OSError) as err:
            if on_error == "raise":
                raise
            log(f"[wsls] {job.case_id}: skipped: {err}")
            rows.append({"case": job.case_id, "error": str(err)})
            continue
        seconds = time.perf_counter() - start
        rows.append({**seg.summary(), "output": str(target), "seconds": round(seconds, 2)})
    name = "summary.csv" if world == 1 else f"summary_rank{rank}.csv"
    write_csv(out / name, rows, empty_columns=("case",))
    return rows
