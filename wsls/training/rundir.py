"""The files of a run directory besides checkpoints: ``config.json`` and ``metrics.csv``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wsls.io.atomic import atomic_write_text
from wsls.training.checkpoint import to_json
from wsls.training.distributed import DistInfo, agree_or_raise, broadcast_json

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT = "best.ckpt"
FINAL_WEIGHTS = "final.safetensors"


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool, info: DistInfo) -> Path | None:
    """Create the run folder; the checkpoint to resume from (None: a fresh run). A fresh run
    in a folder that holds one is refused unless ``overwrite`` (then its files are removed).
    All ranks call this; rank 0 looks."""
    last = run_dir / LAST_CHECKPOINT
    error, found = None, False
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        found = last.exists()
        if found and not resume and not overwrite:
            error = (
                f"{run_dir} already holds a training run ({LAST_CHECKPOINT}); pass resume=True to "
                "continue it, FitConfig(overwrite=True) to replace it, or use another folder"
            )
        elif found and not resume:
            for name in (LAST_CHECKPOINT, BEST_CHECKPOINT, FINAL_WEIGHTS, METRICS_FILE):
                (run_dir / name).unlink(missing_ok=True)
    agree_or_raise(error, info)
    found = broadcast_json(found, info)
    return last if (resume and found) else None


def write_config(run_dir: Path, document: Mapping[str, Any]) -> Path:
    """Write ``config.json`` atomically (sorted keys, indented)."""
    text = json.dumps(json.loads(to_json(document)), indent=2, sort_keys=True) + "\n"
    return atomic_write_text(run_dir / CONFIG_FILE, text)


def metrics_columns(history: Sequence[Mapping[str, Any]]) -> list[str]:
    """Columns in order of first appearance, ``seconds`` and ``items_per_s`` last."""
    tail = ("seconds", "items_per_s")
    columns: list[str] = []
    for row in history:
        for key in row:
            if key not in columns and key not in tail:
                columns.append(key)
    return columns + [t for t in tail if any(t in row for row in history)]


def write_metrics(run_dir: Path, history: Sequence[Mapping[str, Any]]) -> Path:
    """Rewrite ``metrics.csv`` (one row per epoch) atomically; missing values stay empty."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=metrics_columns(history), lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return atomic_write_text(run_dir / METRICS_FILE, out.getvalue())


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return value


def read_metrics(run_dir: str | Path) -> list[dict[str, float | int | str]]:
    """``metrics.csv`` back as rows of numbers (empty cells dropped)."""
    rows = []
    with open(Path(run_dir) / METRICS_FILE, newline="") as f:
        for row in csv.DictReader(f):
            parsed: dict[str, float | int | str] = {}
            for k, v in row.items():
                if v == "" or v is None:
                    continue
                try:
                    parsed[k] = int(v)
                except ValueError:
                    try:
                        parsed[k] = float(v)
                    except ValueError:
                        parsed[k] = v
            rows.append(parsed)
    return rows
