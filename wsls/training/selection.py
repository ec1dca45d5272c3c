"""Which epoch's model is the best one: a metric of the epoch's row, minimised or maximised."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch


def metric_value(row: Mapping[str, Any], metric: str) -> float:
    """The row's value of ``metric``: the column itself, else ``val_<metric>``, else
    ``train_<metric>``.

    Raises:
        ValueError: no such column (names the ones there are).
    """
    for key in (metric, f"val_{metric}", f"train_{metric}"):
        if key in row:
            return float(row[key])
    names = ", ".join(k for k in row if k not in ("epoch", "seconds", "items_per_s"))
    raise ValueError(f"select_metric {metric!r} is not among this run's metrics: {names}")


class BestModel:
    """The best epoch so far and, once seen in this process, a CPU copy of its weights.

    ``candidate`` says whether a new row improves on the best without changing anything;
    ``commit`` takes it once the checkpoints that record it are written.
    """

    def __init__(self, metric: str, mode: str) -> None:
        self.metric, self.mode = metric, mode
        self.epoch: int | None = None
        self.value: float | None = None
        self.weights: dict[str, torch.Tensor] | None = None

    def candidate(self, row: Mapping[str, Any], epoch: int) -> tuple[bool, tuple]:
        """(improved, (best epoch, best value) after this row)."""
        value = metric_value(row, self.metric)
        improved = math.isfinite(value) and (
            self.value is None or (value < self.value if self.mode == "min" else value > self.value)
        )
        return improved, ((epoch, value) if improved else (self.epoch, self.value))

    def commit(self, best: tuple, model: torch.nn.Module | None) -> None:
        """Record ``best``; ``model`` (when the epoch improved) is copied to the CPU."""
        self.epoch, self.value = best
        if model is not None:
            self.weights = {
                k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
            }
