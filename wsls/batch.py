"""``wsls.segment_many``: segment every case of files and folders, streaming, with a progress
bar; under ``torchrun`` the cases are sharded across the ranks (rank r takes cases r, r + W...).
"""

from __future__ import annotations

import contextlib
import csv
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsls.errors import DataError, UserError
from wsls.io.csvfile import write_csv
from wsls.io.layouts import image_stem, is_image_path
from wsls.io.outputs import OutputError, check_output
from wsls.runtime import placement, resolve_device

SUMMARY_EVERY_S = 30.0  # an interrupted run keeps the summary of the cases done


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


def job_files(job: Job) -> list[Path]:
    """The files one job reads."""
    images = list(job.image) if isinstance(job.image, tuple) else [job.image]
    return [Path(p) for p in (*images, job.brain) if p is not None]


def existing_output(target: Path, job: Job) -> tuple[bool, str, dict[str, Any]]:
    """Is ``target`` a complete mask for ``job``: readable to its last voxel and on the grid
    of the job's first image? Returns (complete, why not, lesion volume of a complete one)."""
    from wsls.io.nifti import grid_difference, image_grid, read_image, same_grid

    if not target.exists():
        return False, "missing", {}
    try:
        array, affine = read_image(target, "mask")
        shape, ref_affine = image_grid(job_files(job)[0])
    except DataError as err:
        return False, err.problem, {}
    if not same_grid(array.shape, affine, shape, ref_affine):
        difference = grid_difference(array.shape, affine, shape, ref_affine)
        return False, f"on another grid than the input ({difference})", {}
    voxels = int(np.count_nonzero(array > 0.5))
    ml = voxels * float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
    return True, "", {"lesion_voxels": voxels, "lesion_ml": round(ml, 3)}


def _previous_summary(path: Path, log: Callable[[str], None]) -> dict[str, dict[str, str]]:
    """Rows of an earlier summary by case ({} when there is none or it is unreadable)."""
    if not path.exists():
        return {}
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        rows = []
    if not rows or "case" not in rows[0]:
        log(
            f"[wsls] {path} is empty or unreadable (an interrupted run?): it is written anew; "
            "skipped cases get their lesion volume from their masks"
        )
        return {}
    return {r["case"]: r for r in rows if r.get("case")}


def _so_far(rows: list[dict[str, Any]], previous: dict[str, dict[str, str]]) -> list[dict]:
    """This run's rows, then the earlier summary's rows of the cases not reached yet."""
    seen = {r["case"] for r in rows}
    return [*rows, *(r for case, r in previous.items() if case not in seen)]


def _file_keys(path: Path) -> set:
    """What identifies a file: its resolved path and, if it exists, (device, inode)."""
    keys: set = {os.path.realpath(path)}
    with contextlib.suppress(OSError):
        st = os.stat(path)
        keys.add((st.st_dev, st.st_ino))
    return keys


def _check_targets(out: Path, jobs: Sequence[Job], names: Sequence[str]) -> None:
    """No output of the run may be one of its inputs (links and hard links included)."""
    inputs: dict = {}
    for job in jobs:
        for source in job_files(job):
            for key in _file_keys(source):
                inputs.setdefault(key, source)
    for job in jobs:
        for name in names:
            target = out / name.format(case=job.case_id)
            for key in _file_keys(target):
                if key in inputs:
                    raise OutputError(
                        f"output {target} is an input of this run ({inputs[key]}); it would "
                        "be overwritten: choose another output folder"
                    )


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
        skip_existing: leave cases whose mask (and ACAM, with ``save_acam``) already exists,
            reads completely and lies on the input's grid (resume a long run); a truncated or
            mismatched one is segmented again, with a message.
        on_error: "skip" (report and go on) or "raise".
        options: passed to :func:`wsls.segment` (seeds, threshold, min_component, strict).
    Returns:
        One row per case of this rank: case, output, seconds, lesion volume... or error.
    Raises:
        OutputError: before any work, an output folder that cannot be written, that lies in
            the model bundle, or outputs that would overwrite inputs.
    """
    from tqdm.auto import tqdm

    from wsls.api import resolve_model, segment
    from wsls.method.trained import bundle_path

    if on_error not in ("skip", "raise"):
        raise UserError(f"on_error must be 'skip' or 'raise', not {on_error!r}")
    out = Path(out_dir)
    bundles = [bundle_path(model)] if model is None or isinstance(model, str | Path) else []
    check_output(out, kind="folder", bundles=bundles, what="output folder")
    rank, world, local = placement()
    device = resolve_device(device, "auto" if world > 1 else "cpu", local)
    models = resolve_model(model, device)
    jobs = find_jobs(inputs, models.config.modalities, layout)
    name = "summary.csv" if world == 1 else f"summary_rank{rank}.csv"
    _check_targets(out, jobs, ["{case}" + suffix, "{case}_acam.nii.gz", name])
    mine = jobs[rank::world]
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        log(f"[wsls] {len(jobs)} cases, {world} rank(s): {len(mine)} here; writing to {out}")
    previous = _previous_summary(out / name, log) if skip_existing else {}
    rows: list[dict[str, Any]] = []
    written = time.monotonic()
    bar = tqdm(mine, desc="segmenting", unit="case", disable=not progress or rank != 0)
    try:
        for job in bar:
            bar.set_postfix_str(job.case_id)
            target = out / f"{job.case_id}{suffix}"
            acam = out / f"{job.case_id}_acam.nii.gz"
            if skip_existing:
                done, why, volume = existing_output(target, job)
                if done and save_acam:
                    done, why, _ = existing_output(acam, job)
                    why = f"{acam.name}: {why}" if not done else why
                if done:
                    old = previous.get(job.case_id, {})
                    rows.append({**old, **volume, "case": job.case_id, "output": str(target),
                                 "skipped": True})  # fmt: skip
                    continue
                if target.exists():
                    log(f"[wsls] {job.case_id}: the existing output is incomplete ({why}): "
                        "segmenting it again")  # fmt: skip
            start = time.perf_counter()
            try:
                image = list(job.image) if isinstance(job.image, tuple) else job.image
                seg = segment(
                    image, models, device=device, brain=job.brain, case_id=job.case_id, **options
                )
                seg.save(target)
                if save_acam:
                    seg.save_acam(acam)
            except (DataError, ValueError, OSError) as err:
                if on_error == "raise":
                    raise
                log(f"[wsls] {job.case_id}: skipped: {err}")
                rows.append({"case": job.case_id, "error": str(err)})
                continue
            seconds = time.perf_counter() - start
            rows.append({**seg.summary(), "output": str(target), "seconds": round(seconds, 2)})
            if time.monotonic() - written > SUMMARY_EVERY_S:
                write_csv(out / name, _so_far(rows, previous), empty_columns=("case",))
                written = time.monotonic()
    except BaseException:
        with contextlib.suppress(OSError):  # keep what was done; the first error matters
            if rows:
                write_csv(out / name, _so_far(rows, previous), empty_columns=("case",))
        raise
    write_csv(out / name, rows, empty_columns=("case",))
    return rows
