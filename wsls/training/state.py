"""Where a run stands, as a checkpoint records it and a resume reads it back.

A :class:`Position` is a step boundary: the epoch, the steps of it done, and per rank the loader
state, the RNG states there and the epoch's partial sums. :func:`resume_point` turns a verified
checkpoint's state back into this rank's :class:`ResumePoint`.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wsls.training.checkpoint import CheckpointError, to_json
from wsls.training.rng import RngState

# FitConfig fields a resumed run should keep to continue the same run
RESUME_SENSITIVE = (
    "seed",
    "lr",
    "weight_decay",
    "grad_clip",
    "amp",
    "select_metric",
    "select_mode",
)


@dataclass
class EpochSums:
    """This rank's sums over the steps of the current epoch."""

    loss_sum: float = 0.0
    steps: int = 0
    items: int = 0
    seconds: float = 0.0
    stat_sums: dict[str, float] = field(default_factory=dict)
    stat_counts: dict[str, int] = field(default_factory=dict)

    def add(self, loss: float, stats: Mapping[str, float], items: int, seconds: float) -> None:
        self.loss_sum += loss
        self.steps += 1
        self.items += items
        self.seconds += seconds
        for k, v in stats.items():
            self.stat_sums[k] = self.stat_sums.get(k, 0.0) + float(v)
            self.stat_counts[k] = self.stat_counts.get(k, 0) + 1

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / self.steps if self.steps else math.nan

    def copy(self) -> EpochSums:
        return EpochSums(**asdict(self))  # asdict copies the dicts too


@dataclass
class Position:
    """A step boundary to continue from: epoch, steps of it done, this rank's states there."""

    epoch: int
    step: int
    loader_state: dict[str, Any]
    rng: RngState
    sums: EpochSums

    def rank_json(self) -> dict[str, Any]:
        return {
            "loader_state": self.loader_state,
            "rng": self.rng.to_json(),
            "partial": asdict(self.sums),
        }


@dataclass
class ResumePoint:
    """This rank's part of a checkpoint, with the run's history and best model so far."""

    epoch: int
    step: int
    loader_state: dict[str, Any] | None  # None: do not load (world size changed)
    rng: RngState | None
    sums: EpochSums
    history: list[dict[str, Any]]
    best_epoch: int | None
    best_value: float | None


def _warn_changes(path: Path, doc: Mapping[str, Any], fit: Mapping[str, Any], task: Any) -> None:
    saved = doc.get("config", {})
    for key in RESUME_SENSITIVE:
        if key in saved and saved[key] != fit[key]:
            warnings.warn(
                f"resuming {path} with {key}={fit[key]!r}; the run was started with {saved[key]!r}",
                stacklevel=4,
            )
    if task is not None and doc.get("task_config") is not None:
        now = json.loads(to_json(task))
        changed = sorted(
            k for k in set(now) | set(doc["task_config"]) if now.get(k) != doc["task_config"].get(k)
        )
        if changed:
            warnings.warn(
                f"resuming {path} with a different task configuration ({', '.join(changed)}); "
                "the run will not continue exactly",
                stacklevel=4,
            )


def resume_point(
    path: Path,
    doc: Mapping[str, Any],
    fit_config: Mapping[str, Any],
    task_config: Any,
    rank: int,
    world_size: int,
) -> ResumePoint:
    """This rank's resume point from a checkpoint's state ``doc``; warns when the settings that
    decide the run's course changed.

    Raises:
        CheckpointError: a mid-epoch checkpoint of another world size, or missing fields.
    """
    try:
        _warn_changes(path, doc, fit_config, task_config)
        ranks = doc["ranks"]
        epoch, step = int(doc["epoch"]), int(doc["step"])
        same_world = len(ranks) == world_size
        if step > 0 and not same_world:
            raise CheckpointError(
                f"{path}: written mid-epoch by {len(ranks)} process(es); resume it with "
                f"{len(ranks)} (now {world_size})"
            )
        mine = ranks[rank] if rank < len(ranks) else None
        best = doc.get("best") or {}
        return ResumePoint(
            epoch=epoch,
            step=step,
            loader_state=mine["loader_state"] if (mine and same_world) else None,
            rng=RngState.from_json(mine["rng"]) if mine else None,
            sums=EpochSums(**mine["partial"]) if mine else EpochSums(),
            history=list(doc.get("history", [])),
            best_epoch=best.get("epoch"),
            best_value=best.get("value"),
        )
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CheckpointError(f"{path}: incomplete checkpoint state ({exc!r})") from None
