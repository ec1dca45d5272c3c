"""wsls.training: ``wsls.train`` (:mod:`~wsls.training.run`), the trainer of each stage, and the
generic training loop (:func:`fit`) with verified checkpoints and DDP helpers.

Method-specific trainers subclass :class:`Task`; ``fit`` gives them a run directory, atomic
checkpoints, bit-exact resume, progress bars, bf16 autocast on CUDA and DistributedDataParallel
under ``torchrun``. The names below load on first use (``import wsls`` stays cheap).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Checkpoint": "wsls.training.checkpoint",
    "CheckpointError": "wsls.training.checkpoint",
    "load_checkpoint": "wsls.training.checkpoint",
    "save_checkpoint": "wsls.training.checkpoint",
    "TrainingInterrupted": "wsls.training.interrupt",
    "fit": "wsls.training.loop",
    "read_metrics": "wsls.training.rundir",
    "FitConfig": "wsls.training.task",
    "FitResult": "wsls.training.task",
    "Task": "wsls.training.task",
    "move_to": "wsls.training.task",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wsls.training' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
