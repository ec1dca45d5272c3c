"""What the generic training loop needs from a method-specific trainer: the :class:`Task`
protocol, the :class:`FitConfig` and the :class:`FitResult`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass
class FitConfig:
    """How :func:`wsls.train.fit` trains.

    Attributes:
        epochs: total number of epochs (a resumed run continues up to this number).
        lr, weight_decay: Adam's (the paper trains with Adam, lr 1e-3).
        seed: seeds torch, numpy and ``random`` (plus the rank under torchrun).
        device: None for CUDA when available else CPU; "cuda" means this rank's GPU.
        amp: bf16 autocast of training steps and validation on CUDA (ignored on CPU).
        grad_clip: clip the gradients' global norm to this value (None: no clipping).
        progress: tqdm bars (shown only on rank 0 and only when stderr is a terminal).
        checkpoint_every: write ``last.ckpt`` every this many epochs (and after the last
            one, and whenever training is interrupted).
        select_metric: the metric that picks ``best.ckpt``: a ``metrics.csv`` column
            ("val_dice", "train_loss") or a bare name looked up as ``val_<name>`` then
            ``train_<name>`` ("loss": the validation loss if ``validate`` returns one,
            else the training loss).
        select_mode: "min" or "max".
        overwrite: allow a fresh (not resumed) run in a folder that holds a checkpoint.
        find_unused_parameters: passed to DistributedDataParallel.
    """

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    device: str | None = None
    amp: bool = True
    grad_clip: float | None = None
    progress: bool = True
    checkpoint_every: int = 1
    select_metric: str = "loss"
    select_mode: str = "min"
    overwrite: bool = False
    find_unused_parameters: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"FitConfig.epochs must be >= 0, not {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"FitConfig.lr must be > 0, not {self.lr}")
        if self.checkpoint_every < 1:
            raise ValueError(
                f"FitConfig.checkpoint_every must be >= 1, not {self.checkpoint_every}"
            )
        if self.select_mode not in ("min", "max"):
            raise ValueError(
                f"FitConfig.select_mode must be 'min' or 'max', not {self.select_mode!r}"
            )
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"FitConfig.grad_clip must be > 0 or None, not {self.grad_clip}")


@runtime_checkable
class Task(Protocol):
    """A method-specific trainer, as seen by the generic loop.

    Required:
        name: short name, e.g. "classifier" (stored in checkpoints; a resume refuses a
            checkpoint of another task).
        build_model(): a fresh model (called once, after seeding).
        train_batches(epoch, rank, world_size): the batches of ``epoch`` for ``rank``. They
            must be a deterministic function of (seed, epoch, rank, world_size) and must not
            draw from the global RNGs (torch/numpy/random) while iterating. Every rank must
            get the same number of batches. If :meth:`load_loader_state` was called with a
            state saved inside ``epoch``, the iterable starts after the batches that state
            says were consumed; given a state of another epoch (or none) it starts the epoch
            from its first batch.
        loader_state(): a JSON-serialisable dict saying where the iteration stands (e.g.
            ``PatchLoader.state_dict()``). Return ``{}`` if the loader cannot resume: the loop
            then skips the consumed batches itself by drawing and dropping them.
        load_loader_state(state): restore what :meth:`loader_state` returned.
        training_step(model, batch): (loss, stats) for one batch; ``model`` may be wrapped in
            DistributedDataParallel, ``batch``'s tensors are already on the device, the loop
            does backward, clipping and the optimizer step. stats: floats, averaged per epoch.
        validate(model): metrics of the unwrapped model in eval mode under ``no_grad`` (and
            autocast on CUDA); called on rank 0 after each epoch, may return {}.
        items_in(batch): how many items (patches, voxel pairs...) a batch holds, for the speed.

    Optional (looked up with getattr):
        config_dict() -> dict: the task's own configuration, stored in config.json.
        configure_optimizer(model, config) -> torch.optim.Optimizer: instead of Adam.
    """

    name: str

    def build_model(self) -> torch.nn.Module: ...

    def train_batches(self, epoch: int, rank: int, world_size: int) -> Iterable[Any]: ...

    def loader_state(self) -> dict: ...

    def load_loader_state(self, state: dict) -> None: ...

    def training_step(
        self, model: torch.nn.Module, batch: Any
    ) -> tuple[torch.Tensor, dict[str, float]]: ...

    def validate(self, model: torch.nn.Module) -> dict[str, float]: ...

    def items_in(self, batch: Any) -> int: ...


@dataclass
class FitResult:
    """What :func:`wsls.train.fit` returns.

    Attributes:
        model: the best model (by ``select_metric``; the last one if no epoch ran), on the
            CPU, in eval mode, unwrapped from DDP.
        history: one dict per epoch, as in ``metrics.csv``.
        best_epoch: 0-based epoch of the best model (None if no epoch ran).
        best_value: its ``select_metric`` value.
        run_dir: the run directory.
    """

    model: torch.nn.Module
    history: list[dict[str, Any]]
    best_epoch: int | None
    run_dir: Path
    best_value: float | None = None
