"""Writing a run's checkpoints: every rank's part of a position gathered, rank 0 writes."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

import wsls
from wsls.io.atomic import atomic_write_bytes
from wsls.training.checkpoint import save_checkpoint
from wsls.training.distributed import DistInfo, all_gather_json
from wsls.training.state import Position
from wsls.training.task import FitConfig


class CheckpointSaver:
    """Writes ``last.ckpt`` / ``best.ckpt`` of one run (all ranks call :meth:`save`)."""

    def __init__(
        self, run_dir: Path, task_name: str, config: FitConfig, info: DistInfo, document: dict
    ) -> None:
        self.run_dir, self.task_name, self.config, self.info = run_dir, task_name, config, info
        self.document = {k: v for k, v in document.items() if k != "fit"}

    def save(
        self,
        name: str,
        position: Position,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        history: list[dict[str, Any]],
        best: tuple[int | None, float | None],
    ) -> Path:
        """Write ``name`` for ``position``, with the history and best model up to it."""
        ranks = all_gather_json(position.rank_json(), self.info)
        path = self.run_dir / name
        if self.info.is_main:
            state = {
                "kind": "wsls-training",
                "task": self.task_name,
                "epoch": position.epoch,
                "step": position.step,
                "world_size": self.info.world_size,
                "ranks": ranks,
                "history": history,
                "best": {"epoch": best[0], "value": best[1], "metric": self.config.select_metric},
                **self.document,
                "config": asdict(self.config),
            }
            save_checkpoint(path, model.state_dict(), state, optimizer.state_dict())
        return path


def write_final_weights(path: Path, model: torch.nn.Module, task_name: str) -> Path:
    """The last epoch's weights as a plain safetensors file (atomically)."""
    from safetensors.torch import save

    weights = {
        k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()
    }
    meta = {"format": "pt", "wsls_version": wsls.__version__, "task": task_name}
    return atomic_write_bytes(path, save(weights, metadata=meta))
