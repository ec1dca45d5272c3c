"""A tiny regression task for the training-loop tests (an MLP on fixed random data).

It follows the Task contract: the batches of an epoch are a function of (data_seed, epoch, rank,
world_size), the loader state is ``{"epoch", "position"}`` like ``PatchLoader``'s, and each
rank gets rows ``rank::world_size`` of every global batch, so a 2-process run sees the same
global batches as a 1-process one.

Run as a script under torchrun for the DDP tests:
    torchrun --standalone --nproc_per_node=2 tests/train_toy.py RUN_DIR --epochs 3
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from wsls.training.task import Task


@dataclass
class ToyConfig:
    n: int = 96
    dim: int = 6
    hidden: int = 16
    batch: int = 8  # global batch
    dropout: float = 0.1
    noise: float = 0.05  # input noise from torch, numpy and random: exercises every RNG
    resumable: bool = True  # False: loader_state() is {} and the loop skips batches itself
    draw_at_start: bool = True  # draw from torch's RNG when iteration starts, as DataLoader does
    data_seed: int = 0
    interrupt_at: tuple[int, int] | None = None  # (epoch, step): KeyboardInterrupt in the step
    signal_at: tuple[int, int] | None = None  # (epoch, step): SIGTERM to self in the step
    signal_rank: int = 0
    signal_name: str = "SIGTERM"
    signal_count: int = 1  # 2 SIGINTs: the second one raises KeyboardInterrupt at once
    interrupt_in_validate: int | None = None  # epoch: KeyboardInterrupt in validate()
    val_scores: list[float] = field(default_factory=list)  # validate() returns score[epoch]


class _Batches:
    def __init__(self, task: ToyTask, epoch: int, rank: int, world_size: int) -> None:
        self.task, self.epoch, self.rank, self.world_size = task, epoch, rank, world_size

    def __len__(self) -> int:
        return self.task.cfg.n // self.task.cfg.batch

    def __iter__(self):
        task, cfg, epoch = self.task, self.task.cfg, self.epoch
        start = 0
        if cfg.resumable and task.state.get("epoch") == epoch:
            start = int(task.state["position"])
        if cfg.draw_at_start:  # torch's DataLoader draws its workers' base seed here
            torch.empty((), dtype=torch.int64).random_()
        order = np.random.default_rng([cfg.data_seed, epoch]).permutation(cfg.n)
        for b in range(start, len(self)):
            rows = order[b * cfg.batch : (b + 1) * cfg.batch][self.rank :: self.world_size]
            task.state = {"epoch": epoch, "position": b + 1}
            task.current = (epoch, b)
            yield task.x[rows], task.y[rows]
        task.state = {"epoch": epoch + 1, "position": 0}


class ToyTask(Task):
    name = "toy"

    def __init__(self, cfg: ToyConfig | None = None, **overrides) -> None:
        self.cfg = cfg or ToyConfig(**overrides)
        g = np.random.default_rng(self.cfg.data_seed)
        x = g.normal(size=(self.cfg.n + 32, self.cfg.dim)).astype(np.float32)
        w = g.normal(size=(self.cfg.dim,)).astype(np.float32)
        y = (np.sin(x @ w) + 0.1 * x[:, 0] ** 2).astype(np.float32)[:, None]
        self.x, self.y = torch.from_numpy(x[: self.cfg.n]), torch.from_numpy(y[: self.cfg.n])
        self.x_val, self.y_val = (
            torch.from_numpy(x[self.cfg.n :]),
            torch.from_numpy(y[self.cfg.n :]),
        )
        self.state: dict = {"epoch": 0, "position": 0}
        self.current = (0, 0)
        self.val_calls = 0

    def config_dict(self) -> dict:
        hooks = ("interrupt_at", "signal_at", "signal_rank", "signal_name", "signal_count")
        return {
            k: v for k, v in asdict(self.cfg).items() if k not in (*hooks, "interrupt_in_validate")
        }

    def build_model(self) -> torch.nn.Module:
        c = self.cfg
        return torch.nn.Sequential(
            torch.nn.Linear(c.dim, c.hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(c.dropout),
            torch.nn.Linear(c.hidden, 1),
        )

    def train_batches(self, epoch: int, rank: int, world_size: int) -> _Batches:
        return _Batches(self, epoch, rank, world_size)

    def loader_state(self) -> dict:
        return dict(self.state) if self.cfg.resumable else {}

    def load_loader_state(self, state: dict) -> None:
        if state:
            self.state = dict(state)

    def training_step(self, model, batch):
        cfg = self.cfg
        if cfg.interrupt_at is not None and tuple(cfg.interrupt_at) == self.current:
            raise KeyboardInterrupt
        if cfg.signal_at is not None and tuple(cfg.signal_at) == self.current:
            rank = int(os.environ.get("RANK", "0"))
            if rank == cfg.signal_rank:
                for _ in range(cfg.signal_count):
                    os.kill(os.getpid(), getattr(signal, cfg.signal_name))
        x, y = batch
        if cfg.noise:
            jitter = float(np.random.normal()) + random.random()  # noqa: NPY002
            x = x + cfg.noise * (torch.randn_like(x) + 0.1 * jitter)
        pred = model(x)
        loss = torch.nn.functional.mse_loss(pred, y)
        return loss, {"mae": float((pred - y).detach().abs().mean())}

    def validate(self, model) -> dict[str, float]:
        epoch = self.val_calls
        self.val_calls += 1
        if self.cfg.interrupt_in_validate is not None and epoch == self.cfg.interrupt_in_validate:
            self.cfg.interrupt_in_validate = None
            raise KeyboardInterrupt
        if self.cfg.val_scores:
            return {"score": self.cfg.val_scores[epoch]}
        loss = torch.nn.functional.mse_loss(model(self.x_val), self.y_val)
        return {"loss": float(loss)}

    def items_in(self, batch) -> int:
        return len(batch[0])


def main(argv: list[str] | None = None) -> int:
    from wsls.training import FitConfig, TrainingInterrupted, fit

    p = argparse.ArgumentParser()
    p.add_argument("run_dir", type=Path)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--signal-at", type=int, nargs=2, default=None)
    p.add_argument("--signal-rank", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)
    task = ToyTask(
        dropout=args.dropout,
        noise=args.noise,
        signal_at=tuple(args.signal_at) if args.signal_at else None,
        signal_rank=args.signal_rank,
    )
    config = FitConfig(epochs=args.epochs, seed=args.seed, progress=False, device="cpu")
    try:
        fit(task, args.run_dir, config, resume=args.resume)
    except TrainingInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 3
    print(f"rank {os.environ.get('RANK', '0')} done", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
