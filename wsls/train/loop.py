"""The generic fit loop every wsls trainer runs on.

``fit(task, run_dir, config, resume=False)`` trains ``task`` (see :class:`~wsls.train.task.Task`)
with Adam, writes a run directory (``config.json``, ``metrics.csv``, ``last.ckpt``,
``best.ckpt``, ``final.safetensors``), and continues an interrupted run bit for bit.

How resuming works. A checkpoint records a *position*: the epoch and the number of steps of it
already done, plus, per rank, the loader state and the RNG states at that step boundary and
the epoch's partial sums (loss, stats, items, seconds). Positions are taken

- at every step boundary (cheaply, in memory), before the next batch is fetched;
- at the end of each epoch (next epoch, step 0), written every ``checkpoint_every`` epochs;
- when SIGINT/SIGTERM arrive (they only set a flag; the loop stops at the next boundary) or a
  KeyboardInterrupt escapes from the task: the position of the step being run, whose update
  has not been applied (an interruption inside ``optimizer.step()`` writes nothing).

On resume the loop loads weights, optimizer state, history, then calls
``task.load_loader_state`` with this rank's state and ``task.train_batches(epoch, ...)``; if the
saved loader state is empty the loop draws and drops the consumed batches itself. The RNG
states are restored before the epoch's iterator is created when resuming at step 0, and just
after the first batch is fetched otherwise (creating a DataLoader iterator draws from torch's
RNG), so the training steps see exactly the random numbers of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import wsls
from wsls.train.checkpoint import (
    CheckpointError,
    check_model_state,
    load_checkpoint,
    match_optimizer_types,
    save_checkpoint,
    to_json,
)
from wsls.train.distributed import (
    DistInfo,
    all_gather_json,
    all_reduce_sum,
    broadcast_json,
    init_distributed,
    shutdown_distributed,
    wrap_model,
)
from wsls.train.interrupt import StopRequests, TrainingInterrupted
from wsls.train.progress import EpochBar
from wsls.train.rng import RngState, capture_rng, restore_rng, seed_everything
from wsls.train.rundir import (
    BEST_CHECKPOINT,
    FINAL_WEIGHTS,
    LAST_CHECKPOINT,
    write_config,
    write_metrics,
)
from wsls.train.task import FitConfig, FitResult, Task

__all__ = ["FitConfig", "FitResult", "Task", "TrainingInterrupted", "fit", "move_to"]

# config fields a resumed run should keep to continue the same run
_RESUME_SENSITIVE = (
    "seed",
    "lr",
    "weight_decay",
    "grad_clip",
    "amp",
    "select_metric",
    "select_mode",
)
_END = object()
_log = logging.getLogger("wsls.train")


def move_to(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor (in nested tuples, lists, dicts, named tuples) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(move_to(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


@dataclass
class _Partial:
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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> _Partial:
        return cls(**doc)


@dataclass
class _Position:
    """Where training continues: epoch, steps of it done, and this rank's states there."""

    epoch: int
    step: int
    loader_state: dict[str, Any]
    rng: RngState
    partial: _Partial

    def rank_json(self) -> dict[str, Any]:
        return {
            "loader_state": self.loader_state,
            "rng": self.rng.to_json(),
            "partial": self.partial.to_json(),
        }


@dataclass
class _Resume:
    """This rank's part of a checkpoint, to continue from."""

    epoch: int
    step: int
    loader_state: dict[str, Any] | None  # None: do not load (world size changed)
    rng: RngState | None
    partial: _Partial


class _Trainer:
    """One call of :func:`fit` (holds the state that the helpers share)."""

    def __init__(self, task: Task, run_dir: Path, config: FitConfig, info: DistInfo) -> None:
        self.task = task
        self.run_dir = run_dir
        self.config = config
        self.info = info
        self.device = info.device
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.best_value: float | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.stops = StopRequests(announce=info.is_main)
        self._last_saved: tuple[int, int] | None = None
        self.summary = ""
        self.model: torch.nn.Module
        self.ddp: torch.nn.Module
        self.optimizer: torch.optim.Optimizer

    # ----------------------------------------------------------------- setup
    def _agree_or_raise(self, error: str | None, kind: type[Exception] = ValueError) -> None:
        """Raise the same one-line error on every rank if rank 0 found one."""
        error = broadcast_json(error, self.info)
        if error:
            raise kind(error)

    def _prepare_dir(self, resume: bool) -> Path | None:
        """Create the folder; return the checkpoint to resume from (None: fresh run)."""
        last = self.run_dir / LAST_CHECKPOINT
        error = None
        found = False
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            found = last.exists()
            if found and not resume and not self.config.overwrite:
                error = (
                    f"{self.run_dir} already holds a training run ({LAST_CHECKPOINT}); pass "
                    "resume=True to continue it, FitConfig(overwrite=True) to replace it, or "
                    "use another folder"
                )
            elif found and not resume:
                for name in (LAST_CHECKPOINT, BEST_CHECKPOINT, FINAL_WEIGHTS, "metrics.csv"):
                    (self.run_dir / name).unlink(missing_ok=True)
        self._agree_or_raise(error)
        found = broadcast_json(found, self.info)
        return last if (resume and found) else None

    def _build(self) -> None:
        seed_everything(self.config.seed + self.info.rank)
        self.model = self.task.build_model().to(self.device)
        configure = getattr(self.task, "configure_optimizer", None)
        if configure is not None:
            self.optimizer = configure(self.model, self.config)
        else:
            self.optimizer = torch.optim.Adam(
                self.model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
            )

    def _config_document(self) -> dict[str, Any]:
        task_config = getattr(self.task, "config_dict", None)
        return {
            "task": self.task.name,
            "fit": asdict(self.config),
            "task_config": task_config() if task_config is not None else None,
            "world_size": self.info.world_size,
            "wsls_version": wsls.__version__,
            "torch_version": torch.__version__,
        }

    def _load(self, path: Path) -> _Resume:
        """Load a verified checkpoint into model and optimizer; this rank's resume point."""
        error, ckpt = None, None
        if self.info.is_main:  # rank 0 verifies first so that every rank fails alike
            try:
                ckpt = self._load_into_model(path)
            except CheckpointError as exc:
                error = str(exc)
        self._agree_or_raise(error, CheckpointError)
        if ckpt is None:
            ckpt = self._load_into_model(path)
        try:
            return self._resume_point(path, ckpt.state)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"{path}: incomplete checkpoint state ({exc!r})") from None

    def _resume_point(self, path: Path, doc: dict[str, Any]) -> _Resume:
        self.history = list(doc.get("history", []))
        best = doc.get("best") or {}
        self.best_epoch, self.best_value = best.get("epoch"), best.get("value")
        saved_config = doc.get("config", {})
        for key in _RESUME_SENSITIVE:
            if key in saved_config and saved_config[key] != getattr(self.config, key):
                warnings.warn(
                    f"resuming {path} with {key}={getattr(self.config, key)!r}; the run was "
                    f"started with {saved_config[key]!r}",
                    stacklevel=3,
                )
        task_config = getattr(self.task, "config_dict", None)
        if task_config is not None and doc.get("task_config") is not None:
            now = json.loads(to_json(task_config()))
            changed = sorted(
                k
                for k in set(now) | set(doc["task_config"])
                if now.get(k) != doc["task_config"].get(k)
            )
            if changed:
                warnings.warn(
                    f"resuming {path} with a different task configuration ({', '.join(changed)}); "
                    "the run will not continue exactly",
                    stacklevel=3,
                )
        ranks = doc["ranks"]
        epoch, step = int(doc["epoch"]), int(doc["step"])
        same_world = len(ranks) == self.info.world_size
        if step > 0 and not same_world:
            raise CheckpointError(
                f"{path}: written mid-epoch by {len(ranks)} process(es); resume it with "
                f"{len(ranks)} (now {self.info.world_size})"
            )
        mine = ranks[self.info.rank] if self.info.rank < len(ranks) else None
        return _Resume(
            epoch=epoch,
            step=step,
            loader_state=mine["loader_state"] if (mine and same_world) else None,
            rng=RngState.from_json(mine["rng"]) if mine else None,
            partial=_Partial.from_json(mine["partial"]) if mine else _Partial(),
        )

    def _load_into_model(self, path: Path):
        ckpt = load_checkpoint(path)
        saved_task = ckpt.state.get("task")
        if saved_task != self.task.name:
            raise CheckpointError(
                f"{path}: checkpoint of task {saved_task!r}, not {self.task.name!r}"
            )
        check_model_state(ckpt.model_state, self.model, path)
        self.model.load_state_dict(ckpt.model_state)
        if ckpt.optimizer_state is not None:
            try:
                self.optimizer.load_state_dict(
                    match_optimizer_types(ckpt.optimizer_state, self.optimizer)
                )
            except (ValueError, KeyError, RuntimeError, IndexError) as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise CheckpointError(f"{path}: optimizer state does not fit ({first})") from None
        return ckpt

    # ------------------------------------------------------------ checkpoints
    def _write_checkpoint(
        self,
        name: str,
        position: _Position,
        history: list[dict[str, Any]] | None = None,
        best: tuple[int | None, float | None] | None = None,
    ) -> Path:
        """Gather every rank's position part; rank 0 writes. All ranks must call this.

        ``history`` and ``best`` default to the committed ones (epochs before the position).
        """
        if history is None:
            history = [r for r in self.history if r["epoch"] < position.epoch]
        if best is None:
            best = (self.best_epoch, self.best_value)
        ranks = all_gather_json(position.rank_json(), self.info)
        path = self.run_dir / name
        if self.info.is_main:
            state = {
                "kind": "wsls-training",
                "task": self.task.name,
                "epoch": position.epoch,
                "step": position.step,
                "world_size": self.info.world_size,
                "ranks": ranks,
                "history": history,
                "best": {
                    "epoch": best[0],
                    "value": best[1],
                    "metric": self.config.select_metric,
                },
                **{k: v for k, v in self._config_document().items() if k != "fit"},
                "config": asdict(self.config),
            }
            save_checkpoint(path, self.model.state_dict(), state, self.optimizer.state_dict())
        if name == LAST_CHECKPOINT:
            self._last_saved = (position.epoch, position.step)
        return path

    def _position(
        self, epoch: int, step: int, rng: RngState, partial: _Partial, loader: dict | None = None
    ) -> _Position:
        state = self.task.loader_state() if loader is None else loader
        return _Position(epoch, step, dict(state), rng, _Partial(**asdict(partial)))

    def _stop_requested(self) -> bool:
        flag = float(self.stops.requested)
        if self.info.distributed:
            flag = all_reduce_sum([flag], self.info)[0]
        return flag > 0

    def _interrupted(
        self, epoch: int, step: int, position: _Position | None, cause: str, signum: int | None
    ) -> TrainingInterrupted:
        """Write the checkpoint of ``position`` (if any) and build the exception to raise."""
        path = None
        if position is not None:
            path = self._write_checkpoint(LAST_CHECKPOINT, position)
            message = (
                f"training interrupted ({cause}) at epoch {epoch}, step {step}; checkpoint "
                f"{path}; continue with resume=True"
            )
        else:
            message = (
                f"training interrupted ({cause}) at epoch {epoch}, step {step}; no checkpoint "
                f"written for this point, resume=True continues from the last one"
            )
        return TrainingInterrupted(message, path, signum, epoch, step)

    # ----------------------------------------------------------------- epoch
    def _autocast(self):
        if self.config.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _snapshot_rng(
        self, step: int, epoch_rng: RngState | None, pending: RngState | None
    ) -> RngState:
        if step == 0 and epoch_rng is not None:
            return epoch_rng
        return pending if pending is not None else capture_rng()

    def _run_epoch(self, epoch: int, resume: _Resume | None) -> None:
        task, info, config = self.task, self.info, self.config
        step = resume.step if resume else 0
        partial = resume.partial if resume else _Partial()
        pending: RngState | None = None
        if resume is not None:
            if resume.loader_state is not None:
                task.load_loader_state(resume.loader_state)
            if resume.rng is not None:
                if step == 0:
                    restore_rng(resume.rng)
                else:
                    pending = resume.rng
            elif info.rank > 0:
                seed_everything(config.seed + info.rank + 1000 * epoch)
        epoch_rng = capture_rng() if step == 0 else None
        phase = "start"
        snap: _Position | None = None
        source = task.train_batches(epoch, info.rank, info.world_size)
        total = len(source) if hasattr(source, "__len__") else None  # type: ignore[arg-type]
        bar = EpochBar(
            f"{task.name} {epoch + 1}/{config.epochs}",
            total,
            step,
            config.progress and info.is_main,
        )
        try:
            self.ddp.train()
            iterator = iter(source)
            if resume is not None and step > 0 and not resume.loader_state:
                for skipped in range(step):  # the loader cannot resume: draw and drop
                    if next(iterator, _END) is _END:
                        raise CheckpointError(
                            f"{self.run_dir / LAST_CHECKPOINT}: the checkpoint is at step {step} "
                            f"of epoch {epoch} but the task yields only {skipped} batches"
                        )
            while True:
                phase = "between"
                snap = self._position(
                    epoch, step, self._snapshot_rng(step, epoch_rng, pending), partial
                )
                if self._stop_requested():
                    raise self._interrupted(
                        epoch, step, snap, _signal_name(self.stops.signum), self.stops.signum
                    )
                phase = "fetch"
                t0 = time.perf_counter()
                batch = next(iterator, _END)
                if pending is not None:
                    restore_rng(pending)
                    pending = None
                has = batch is not _END
                if info.distributed:
                    n_has = all_reduce_sum([float(has)], info)[0]
                    if 0 < n_has < info.world_size:
                        raise RuntimeError(
                            f"epoch {epoch}: ranks ran out of batches at different steps "
                            f"(rank {info.rank} {'has' if has else 'has no'} batch {step}); "
                            "train_batches must give every rank the same number of batches"
                        )
                if not has:
                    break
                phase = "compute"
                items = int(task.items_in(batch))
                batch = move_to(batch, self.device)
                self.optimizer.zero_grad(set_to_none=True)
                with self._autocast():
                    loss, stats = task.training_step(self.ddp, batch)
                loss.backward()
                if config.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
                loss_value = float(loss.detach())
                phase = "update"
                self.optimizer.step()
                step += 1
                partial.add(loss_value, stats or {}, items, time.perf_counter() - t0)
                phase = "between"
                bar.update(partial.mean_loss, items)
            phase = "end"
            self._end_epoch(epoch, partial)
            phase = "done"
            bar.close(self.summary)
        except KeyboardInterrupt as exc:
            if isinstance(exc, TrainingInterrupted):
                raise
            position: _Position | None
            if phase in ("fetch", "compute", "end"):
                position = snap
            elif phase == "between":
                position = self._position(
                    epoch, step, self._snapshot_rng(step, epoch_rng, pending), partial
                )
            elif phase == "start" and epoch_rng is not None:
                position = self._position(epoch, 0, epoch_rng, partial)
            else:  # mid optimizer step, or resumed mid-epoch and not started: not consistent
                position = None
            if info.distributed:  # a collective with ranks that did not stop would hang
                position = None
            if phase == "end" and self._last_saved == (epoch + 1, 0):
                path = self.run_dir / LAST_CHECKPOINT
                raise TrainingInterrupted(
                    f"training interrupted (KeyboardInterrupt) after epoch {epoch}; checkpoint "
                    f"{path}; continue with resume=True",
                    path,
                    None,
                    epoch + 1,
                    0,
                ) from exc
            raise self._interrupted(epoch, step, position, "KeyboardInterrupt", None) from exc
        finally:
            bar.close()

    def _end_epoch(self, epoch: int, partial: _Partial) -> None:
        info, config = self.info, self.config
        sums = all_gather_json(partial.to_json(), info)
        steps = sum(s["steps"] for s in sums)
        train_seconds = max(s["seconds"] for s in sums)
        items = sum(s["items"] for s in sums)
        row: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": sum(s["loss_sum"] for s in sums) / steps if steps else math.nan,
        }
        stat_names = sorted({k for s in sums for k in s["stat_sums"]})
        for k in stat_names:
            n = sum(s["stat_counts"].get(k, 0) for s in sums)
            row[f"train_{k}"] = sum(s["stat_sums"].get(k, 0.0) for s in sums) / max(n, 1)
        row["lr"] = float(self.optimizer.param_groups[0]["lr"])
        t0 = time.perf_counter()
        val: dict[str, float] = {}
        error = None
        if info.is_main:
            try:
                val = self._validate()
            except Exception as exc:
                if not info.distributed:
                    raise
                error = f"{type(exc).__name__}: {exc}"
                broadcast_json({"val": {}, "error": error}, info)  # release the other ranks
                raise
        outcome = broadcast_json({"val": val, "error": error}, info)
        if outcome["error"]:
            raise RuntimeError(f"validation failed on rank 0 ({outcome['error']})")
        val = outcome["val"]
        for k, v in val.items():
            row[f"val_{k}"] = v
        row["seconds"] = train_seconds + (time.perf_counter() - t0)
        row["items_per_s"] = items / train_seconds if train_seconds > 0 else math.nan
        history = [*self.history, row]
        self.summary = _summary(row)
        if info.is_main:
            _log.info("%s epoch %d/%d: %s", self.task.name, epoch + 1, config.epochs, self.summary)
        _, value = _select(row, config.select_metric)
        improved = math.isfinite(value) and (
            self.best_value is None
            or (value < self.best_value if config.select_mode == "min" else value > self.best_value)
        )
        best = (epoch, value) if improved else (self.best_epoch, self.best_value)
        if info.is_main:
            write_metrics(self.run_dir, history)
        stop = self._stop_requested()
        last_epoch = epoch + 1 >= config.epochs
        save_last = stop or last_epoch or (epoch + 1) % config.checkpoint_every == 0
        if save_last or improved:
            position = self._position(epoch + 1, 0, capture_rng(), _Partial())
            if save_last:
                self._write_checkpoint(LAST_CHECKPOINT, position, history, best)
            if improved:
                self._write_checkpoint(BEST_CHECKPOINT, position, history, best)
        # commit
        self.history = history
        self.best_epoch, self.best_value = best
        if improved:
            self.best_weights = {
                k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()
            }
        if stop:
            path = self.run_dir / LAST_CHECKPOINT
            raise TrainingInterrupted(
                f"training interrupted ({_signal_name(self.stops.signum)}) after epoch {epoch}; "
                f"checkpoint {path}; continue with resume=True",
                path,
                self.stops.signum,
                epoch + 1,
                0,
            )

    def _validate(self) -> dict[str, float]:
        model = self.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), self._autocast():
                metrics = self.task.validate(model) or {}
        finally:
            model.train(was_training)
        return {str(k): float(v) for k, v in metrics.items()}

    # ------------------------------------------------------------------- run
    def run(self, resume: bool) -> FitResult:
        checkpoint = self._prepare_dir(resume)
        self._build()
        start: _Resume | None = self._load(checkpoint) if checkpoint is not None else None
        if self.info.is_main:
            write_config(self.run_dir, self._config_document())
        self.ddp = wrap_model(self.model, self.info, self.config.find_unused_parameters)
        first_epoch = start.epoch if start else 0
        with self.stops:
            for epoch in range(first_epoch, self.config.epochs):
                self._run_epoch(epoch, start if epoch == first_epoch else None)
        return self._result()

    def close(self) -> None:
        """Drop the DDP wrapper now: its reducer keeps the process group (and gloo's threads)
        alive, and letting the garbage collector free it at interpreter exit can abort the
        process ("terminate called without an active exception")."""
        if hasattr(self, "ddp") and self.ddp is not self.model:
            del self.ddp
            gc.collect()

    def _result(self) -> FitResult:
        model = self.model
        if self.info.is_main and self.config.epochs > 0:
            from safetensors.torch import save

            from wsls.train.atomic import atomic_write_bytes

            weights = {
                k: v.detach().to("cpu", copy=True).contiguous()
                for k, v in model.state_dict().items()
            }
            meta = {"format": "pt", "wsls_version": wsls.__version__, "task": self.task.name}
            atomic_write_bytes(self.run_dir / FINAL_WEIGHTS, save(weights, metadata=meta))
        best = self.best_weights
        if best is None and self.best_epoch is not None:
            best_path = self.run_dir / BEST_CHECKPOINT
            if best_path.exists():
                ckpt = load_checkpoint(best_path)
                check_model_state(ckpt.model_state, model, best_path)
                best = ckpt.model_state
        if best is not None:
            model.load_state_dict(best)
        model = model.to("cpu").eval()
        return FitResult(model, self.history, self.best_epoch, self.run_dir, self.best_value)


def _select(row: Mapping[str, Any], metric: str) -> tuple[str, float]:
    for key in (metric, f"val_{metric}", f"train_{metric}"):
        if key in row:
            return key, float(row[key])
    names = ", ".join(k for k in row if k not in ("epoch", "seconds", "items_per_s"))
    raise ValueError(f"select_metric {metric!r} is not among this run's metrics: {names}")


def _summary(row: Mapping[str, Any]) -> str:
    """'loss 0.123, val_dice 0.81, 12.3 s, 456 items/s' for a metrics row."""
    parts = [f"loss {row['train_loss']:.4g}"]
    parts += [f"{k} {v:.4g}" for k, v in row.items() if k.startswith("val_")]
    parts.append(f"{row['seconds']:.1f} s")
    parts.append(f"{row['items_per_s']:.1f} items/s")
    return ", ".join(parts)


def _signal_name(signum: int | None) -> str:
    import signal

    return signal.Signals(signum).name if signum is not None else "KeyboardInterrupt"


def fit(
    task: Task, run_dir: str | Path, config: FitConfig | None = None, *, resume: bool = False
) -> FitResult:
    """Train ``task`` into ``run_dir``; see the module docstring for the files and resuming.

    Under ``torchrun`` (WORLD_SIZE > 1) every rank calls ``fit`` the same way: the model is
    wrapped in DistributedDataParallel, rank r trains on ``task.train_batches(epoch, r, world)``,
    only rank 0 writes files and shows bars. ``run_dir`` must be visible to every rank.

    Args:
        task: the method-specific trainer (:class:`~wsls.train.task.Task`).
        run_dir: the run directory (created).
        config: :class:`FitConfig` (defaults if None).
        resume: continue from ``run_dir/last.ckpt`` if it exists (a fresh run otherwise).
    Returns:
        :class:`FitResult` with the best model on the CPU.
    Raises:
        CheckpointError: the checkpoint to resume from is unusable (one line, naming it).
        TrainingInterrupted: SIGINT/SIGTERM or a KeyboardInterrupt stopped training (a
            KeyboardInterrupt subclass; its ``checkpoint`` says what was written).
        ValueError: ``run_dir`` holds a run and neither resume nor overwrite was asked.
    """
    config = config or FitConfig()
    info = init_distributed(config.device)
    trainer = _Trainer(task, Path(run_dir), config, info)
    try:
        return trainer.run(resume)
    finally:
        trainer.close()
        shutdown_distributed(info)
