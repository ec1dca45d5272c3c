"""wsls.train: the generic training loop (:func:`fit`), verified checkpoints and DDP helpers.

Method-specific trainers implement :class:`Task`; ``fit`` gives them a run directory, atomic
checkpoints, bit-exact resume, progress bars, bf16 autocast on CUDA and DistributedDataParallel
under ``torchrun``.
"""

from wsls.train.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from wsls.train.interrupt import TrainingInterrupted
from wsls.train.loop import fit, move_to
from wsls.train.rundir import read_metrics
from wsls.train.task import FitConfig, FitResult, Task

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "FitConfig",
    "FitResult",
    "Task",
    "TrainingInterrupted",
    "fit",
    "load_checkpoint",
    "move_to",
    "read_metrics",
    "save_checkpoint",
]
