"""One epoch's row of ``metrics.csv``: every rank's sums reduced, validation metrics added."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import torch

from wsls.training.distributed import DistInfo, all_gather_json, broadcast_json
from wsls.training.state import EpochSums


def training_row(epoch: int, sums: EpochSums, info: DistInfo, lr: float) -> dict[str, Any]:
    """epoch, train_loss, train_<stat> (means over every rank's steps), lr, and the private
    ``_seconds`` / ``_items`` (slowest rank's time, all ranks' items) for the speed columns.
    All ranks must call this."""
    ranks = all_gather_json(asdict(sums), info)
    steps = sum(s["steps"] for s in ranks)
    row: dict[str, Any] = {
        "epoch": epoch,
        "train_loss": sum(s["loss_sum"] for s in ranks) / steps if steps else math.nan,
    }
    for k in sorted({k for s in ranks for k in s["stat_sums"]}):
        n = sum(s["stat_counts"].get(k, 0) for s in ranks)
        row[f"train_{k}"] = sum(s["stat_sums"].get(k, 0.0) for s in ranks) / max(n, 1)
    row["lr"] = lr
    row["_seconds"] = max(s["seconds"] for s in ranks)
    row["_items"] = sum(s["items"] for s in ranks)
    return row


def finish_row(row: dict[str, Any], val: Mapping[str, float], val_seconds: float) -> dict:
    """The row with ``val_<metric>`` columns, ``seconds`` and ``items_per_s``."""
    train_seconds, items = row.pop("_seconds"), row.pop("_items")
    row.update({f"val_{k}": v for k, v in val.items()})
    row["seconds"] = train_seconds + val_seconds
    row["items_per_s"] = items / train_seconds if train_seconds > 0 else math.nan
    return row


def summary(row: Mapping[str, Any]) -> str:
    """'loss 0.123, val_dice 0.81, 12.3 s, 456.0 items/s' for a metrics row."""
    parts = [f"loss {row['train_loss']:.4g}"]
    parts += [f"{k} {v:.4g}" for k, v in row.items() if k.startswith("val_")]
    parts.append(f"{row['seconds']:.1f} s")
    parts.append(f"{row['items_per_s']:.1f} items/s")
    return ", ".join(parts)


def validate_on_main(task: Any, model: torch.nn.Module, info: DistInfo) -> dict[str, float]:
    """Rank 0 runs ``task.validate`` on ``model`` (eval mode, no grad); every rank gets its
    metrics, or the same error. All ranks call this."""
    val: dict[str, float] = {}
    if info.is_main:
        try:
            model.eval()
            with torch.no_grad():
                metrics = task.validate(model) or {}
            val = {str(k): float(v) for k, v in metrics.items()}
        except Exception as exc:
            if not info.distributed:
                raise
            broadcast_json({"val": {}, "error": f"{type(exc).__name__}: {exc}"}, info)
            raise
        finally:
            model.train()
    outcome = broadcast_json({"val": val, "error": None}, info)
    if outcome["error"]:
        raise RuntimeError(f"validation failed on rank 0 ({outcome['error']})")
    return outcome["val"]
