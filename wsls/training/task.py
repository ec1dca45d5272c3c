"""What the generic training loop needs from a method-specific trainer: the :class:`Task`
base class, the :class:`FitConfig` and the :class:`FitResult`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from wsls.settings import COUNT, FLAG, POSITIVE, Rule, check_fields

if TYPE_CHECKING:
    from wsls.data.patch_batches import PatchBatches


@dataclass
class FitConfig:
    """How :func:`wsls.training.fit` trains.

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
        batch_norm_batches: after training, the returned model's batch-norm statistics are
            recomputed as exact means over this many training batches (the first of a further
            epoch; ``wsls.training.batch_norm``); 0 keeps the running averages.
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
    batch_norm_batches: int = 0

    RULES = {
        "epochs": Rule("int", 0, 100_000),
        "lr": POSITIVE,
        "weight_decay": Rule("float", 0.0),
        "seed": Rule("int", 0, 2**31 - 1),
        "device": Rule("str", optional=True),
        "amp": FLAG,
        "grad_clip": Rule("float", 0.0, open_low=True, optional=True),
        "progress": FLAG,
        "checkpoint_every": COUNT,
        "select_metric": Rule("str"),
        "select_mode": Rule("str", choices=("min", "max")),
        "overwrite": FLAG,
        "find_unused_parameters": FLAG,
        "batch_norm_batches": Rule("int", 0, 100_000),
    }

    def __post_init__(self) -> None:
        check_fields(self, self.RULES)


class Task:
    """A method-specific trainer, as seen by the generic loop: subclass it and override.

    Must override:
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
        training_step(model, batch): (loss, stats) for one batch; ``model`` may be wrapped in
            DistributedDataParallel, ``batch``'s tensors are already on the device, the loop
            does backward, clipping and the optimizer step. stats: floats, averaged per epoch.

    May override (the defaults in brackets):
        loader_state(): a JSON-serialisable dict saying where the iteration stands [``{}``:
            the loader cannot resume, so the loop skips consumed batches by drawing them].
        load_loader_state(state): restore what :meth:`loader_state` returned [nothing].
        validate(model): metrics of the unwrapped model in eval mode under ``no_grad`` (and
            autocast on CUDA), on rank 0 after each epoch [``{}``].
        items_in(batch): how many items (patches, voxel pairs...) a batch holds, for the
            speed [its first tensor's length].
        config_dict(): the task's own configuration, stored in config.json [None].
        configure_optimizer(model, config): the optimizer [Adam with ``config.lr`` and
            ``config.weight_decay``].
    """

    name: str = "task"

    def build_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def train_batches(self, epoch: int, rank: int, world_size: int) -> Iterable[Any]:
        raise NotImplementedError

    def training_step(
        self, model: torch.nn.Module, batch: Any
    ) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def loader_state(self) -> dict:
        return {}

    def load_loader_state(self, state: dict) -> None:
        del state

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        del model
        return {}

    def items_in(self, batch: Any) -> int:
        return len(batch[0])

    def config_dict(self) -> dict[str, Any] | None:
        return None

    def configure_optimizer(
        self, model: torch.nn.Module, config: FitConfig
    ) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


@dataclass
class FitResult:
    """What :func:`wsls.training.fit` returns.

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


class PatchBatchesTask(Task):
    """A :class:`Task` whose batches come from ``self.batches`` (a
    :class:`~wsls.data.patch_batches.PatchBatches`): epochs sharded by rank, resumable state."""

    batches: PatchBatches

    def train_batches(self, epoch: int, rank: int, world_size: int):
        return self.batches.epoch(epoch, rank, world_size)

    def loader_state(self) -> dict:
        return dict(self.batches.state)

    def load_loader_state(self, state: dict) -> None:
        self.batches.state = {
            "epoch": int(state.get("epoch", -1)),
            "batches": int(state.get("batches", 0)),
        }


def move_to(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor (in nested tuples, lists, dicts, named tuples) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(move_to(v, device) for v in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(move_to(v, device) for v in batch)
    return batch
