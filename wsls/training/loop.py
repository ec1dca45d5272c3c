"""The generic fit loop every wsls trainer runs on.

``fit(task, run_dir, config, resume=False)`` trains ``task`` (a :class:`~wsls.training.task.Task`)
with Adam, writes a run directory (``config.json``, ``metrics.csv``, ``last.ckpt``,
``best.ckpt``, ``final.safetensors``), and continues an interrupted run bit for bit.

Stopping. SIGINT and SIGTERM only set a flag; the loop stops at the next step boundary, writes
``last.ckpt`` for that position (:mod:`~wsls.training.state`: loader and RNG states, partial
sums) and raises :class:`TrainingInterrupted`. A second Ctrl-C, or any KeyboardInterrupt from
the task, aborts at once and writes nothing: the run resumes from the last checkpoint written.
Checkpoints are also written at the end of every ``checkpoint_every``-th epoch and of the last.

Resuming. The loop loads weights, optimizer state and history, gives the task its loader
state (or draws and drops the consumed batches when the loader cannot resume), and restores the
RNG states before the epoch's iterator is created when resuming at step 0, else just after the
first batch is fetched (creating a DataLoader iterator draws from torch's RNG), so the steps see
exactly the random numbers of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

import wsls
from wsls.training import epoch_row
from wsls.training.batch_norm import recompute_batch_norm
from wsls.training.checkpoint import (
    CheckpointError,
    check_model_state,
    load_checkpoint,
    restore_training_state,
)
from wsls.training.distributed import (
    DistInfo,
    agree_or_raise,
    all_reduce_sum,
    init_distributed,
    shutdown_distributed,
    wrap_model,
)
from wsls.training.interrupt import StopRequests, TrainingInterrupted, signal_name
from wsls.training.progress import EpochBar
from wsls.training.rng import RngState, capture_rng, restore_rng, seed_everything
from wsls.training.rundir import (
    BEST_CHECKPOINT,
    FINAL_WEIGHTS,
    LAST_CHECKPOINT,
    prepare_run_dir,
    write_config,
    write_metrics,
)
from wsls.training.saver import CheckpointSaver, write_final_weights
from wsls.training.selection import BestModel
from wsls.training.state import EpochSums, Position, ResumePoint, resume_point
from wsls.training.task import FitConfig, FitResult, Task, move_to

__all__ = ["FitConfig", "FitResult", "Task", "TrainingInterrupted", "fit", "move_to"]

_END = object()
_log = logging.getLogger("wsls.training")


class _Trainer:
    """One call of :func:`fit`: the model, optimizer and run state its steps share."""

    def __init__(self, task: Task, run_dir: Path, config: FitConfig, info: DistInfo) -> None:
        self.task, self.run_dir, self.config, self.info = task, run_dir, config, info
        self.device = info.device
        self.history: list[dict[str, Any]] = []
        self.best = BestModel(config.select_metric, config.select_mode)
        self.stops = StopRequests(announce=info.is_main)
        self.where = (0, 0)  # the step being run, for the abort message
        self.summary = ""
        self.document = self._config_document()
        self.saver = CheckpointSaver(run_dir, task.name, config, info, self.document)
        self.model: torch.nn.Module
        self.ddp: torch.nn.Module
        self.optimizer: torch.optim.Optimizer

    # ----------------------------------------------------------------- setup
    def _build(self) -> None:
        seed_everything(self.config.seed + self.info.rank)
        self.model = self.task.build_model().to(self.device)
        self.optimizer = self.task.configure_optimizer(self.model, self.config)

    def _config_document(self) -> dict[str, Any]:
        return {
            "task": self.task.name,
            "fit": asdict(self.config),
            "task_config": self.task.config_dict(),
            "world_size": self.info.world_size,
            "wsls_version": wsls.__version__,
            "torch_version": torch.__version__,
        }

    def _load(self, path: Path) -> ResumePoint:
        """Load a verified checkpoint into model and optimizer; this rank's resume point."""
        error, ckpt = None, None
        if self.info.is_main:  # rank 0 verifies first so that every rank fails alike
            try:
                ckpt = restore_training_state(path, self.task.name, self.model, self.optimizer)
            except CheckpointError as exc:
                error = str(exc)
        agree_or_raise(error, self.info, CheckpointError)
        if ckpt is None:
            ckpt = restore_training_state(path, self.task.name, self.model, self.optimizer)
        point = resume_point(
            path,
            ckpt.state,
            asdict(self.config),
            self.document["task_config"],
            self.info.rank,
            self.info.world_size,
        )
        self.history = point.history
        self.best.epoch, self.best.value = point.best_epoch, point.best_value
        return point

    # ----------------------------------------------------------------- steps
    def _autocast(self):
        if self.config.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _save(self, name: str, position: Position, history=None, best=None) -> Path:
        history = self.history if history is None else history
        best = (self.best.epoch, self.best.value) if best is None else best
        return self.saver.save(name, position, self.model, self.optimizer, history, best)

    def _stop_requested(self) -> bool:
        flag = float(self.stops.requested)
        if self.info.distributed:
            flag = all_reduce_sum([flag], self.info)[0]
        return flag > 0

    def _stop_now(self, position: Position) -> TrainingInterrupted:
        path = self._save(LAST_CHECKPOINT, position)
        signum = self.stops.signum
        return TrainingInterrupted(
            f"training interrupted ({signal_name(signum)}) at epoch {position.epoch}, step "
            f"{position.step}; checkpoint {path}; continue with resume=True",
            path,
            signum,
            position.epoch,
            position.step,
        )

    def _restore(self, epoch: int, resume: ResumePoint | None) -> RngState | None:
        """Give the task its loader state and set the RNGs for a resumed epoch; returns the RNG
        state to restore after the first batch is fetched (resuming mid-epoch)."""
        if resume is None:
            return None
        if resume.loader_state is not None:
            self.task.load_loader_state(resume.loader_state)
        if resume.rng is None:
            if self.info.rank > 0:  # a rank the checkpoint did not know
                seed_everything(self.config.seed + self.info.rank + 1000 * epoch)
            return None
        if resume.step == 0:
            restore_rng(resume.rng)
            return None
        return resume.rng

    def _batches(self, epoch: int, resume: ResumePoint | None):
        source = self.task.train_batches(epoch, self.info.rank, self.info.world_size)
        total = len(source) if hasattr(source, "__len__") else None  # type: ignore[arg-type]
        iterator = iter(source)
        if resume is not None and resume.step > 0 and not resume.loader_state:
            for skipped in range(resume.step):  # the loader cannot resume: draw and drop
                if next(iterator, _END) is _END:
                    raise CheckpointError(
                        f"{self.run_dir / LAST_CHECKPOINT}: the checkpoint is at step "
                        f"{resume.step} of epoch {epoch} but the task yields only {skipped} "
                        "batches"
                    )
        return iterator, total

    def _next_batch(self, iterator, step: int, epoch: int) -> Any:
        batch = next(iterator, _END)
        if self.info.distributed:
            has = batch is not _END
            n_has = all_reduce_sum([float(has)], self.info)[0]
            if 0 < n_has < self.info.world_size:
                raise RuntimeError(
                    f"epoch {epoch}: ranks ran out of batches at different steps (rank "
                    f"{self.info.rank} {'has' if has else 'has no'} batch {step}); "
                    "train_batches must give every rank the same number of batches"
                )
        return batch

    def _step(self, batch: Any, sums: EpochSums, started: float) -> int:
        """One optimisation step; returns the batch's item count."""
        items = int(self.task.items_in(batch))
        batch = move_to(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss, stats = self.task.training_step(self.ddp, batch)
        loss.backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        loss_value = float(loss.detach())
        self.optimizer.step()
        sums.add(loss_value, stats or {}, items, time.perf_counter() - started)
        return items

    def _run_epoch(self, epoch: int, resume: ResumePoint | None) -> None:
        step = resume.step if resume else 0
        sums = resume.sums if resume else EpochSums()
        pending = self._restore(epoch, resume)
        epoch_rng = capture_rng() if step == 0 else None
        self.ddp.train()
        iterator, total = self._batches(epoch, resume)
        bar = EpochBar(
            f"{self.task.name} {epoch + 1}/{self.config.epochs}",
            total,
            step,
            self.config.progress and self.info.is_main,
        )
        try:
            while True:
                self.where = (epoch, step)
                if self._stop_requested():  # before the next batch is fetched
                    rng = epoch_rng if step == 0 and epoch_rng is not None else pending
                    loader = self.task.loader_state()
                    raise self._stop_now(Position(epoch, step, loader, rng or capture_rng(), sums))
                started = time.perf_counter()
                batch = self._next_batch(iterator, step, epoch)
                if pending is not None:
                    restore_rng(pending)
                    pending = None
                if batch is _END:
                    break
                items = self._step(batch, sums, started)
                step += 1
                bar.update(sums.mean_loss, items)
            self._end_epoch(epoch, sums)
            bar.close(self.summary)
        finally:
            bar.close()

    # ------------------------------------------------------------- epoch end
    def _validated(self) -> dict[str, float]:
        with self._autocast():
            return epoch_row.validate_on_main(self.task, self.model, self.info)

    def _end_epoch(self, epoch: int, sums: EpochSums) -> None:
        lr = float(self.optimizer.param_groups[0]["lr"])
        row = epoch_row.training_row(epoch, sums, self.info, lr)
        tick = time.perf_counter()
        row = epoch_row.finish_row(row, self._validated(), time.perf_counter() - tick)
        history = [*self.history, row]
        self.summary = epoch_row.summary(row)
        improved, best = self.best.candidate(row, epoch)
        if self.info.is_main:
            _log.info(
                "%s epoch %d/%d: %s", self.task.name, epoch + 1, self.config.epochs, self.summary
            )
            write_metrics(self.run_dir, history)
        stop = self._stop_requested()
        every = (epoch + 1) % self.config.checkpoint_every == 0
        save_last = stop or epoch + 1 >= self.config.epochs or every
        if save_last or improved:
            after = Position(epoch + 1, 0, self.task.loader_state(), capture_rng(), EpochSums())
            if save_last:
                self._save(LAST_CHECKPOINT, after, history, best)
            if improved:
                self._save(BEST_CHECKPOINT, after, history, best)
        self.history = history  # committed once the checkpoints that record it exist
        self.best.commit(best, self.model if improved else None)
        if stop:
            raise TrainingInterrupted(
                f"training interrupted ({signal_name(self.stops.signum)}) after epoch {epoch}; "
                f"checkpoint {self.run_dir / LAST_CHECKPOINT}; continue with resume=True",
                self.run_dir / LAST_CHECKPOINT,
                self.stops.signum,
                epoch + 1,
                0,
            )

    # ------------------------------------------------------------------- run
    def run(self, resume: bool) -> FitResult:
        checkpoint = prepare_run_dir(self.run_dir, resume, self.config.overwrite, self.info)
        self._build()
        start = self._load(checkpoint) if checkpoint is not None else None
        if self.info.is_main:
            write_config(self.run_dir, self.document)
        self.ddp = wrap_model(self.model, self.info, self.config.find_unused_parameters)
        first_epoch = start.epoch if start else 0
        try:
            with self.stops:
                for epoch in range(first_epoch, self.config.epochs):
                    self._run_epoch(epoch, start if epoch == first_epoch else None)
        except KeyboardInterrupt as exc:
            if isinstance(exc, TrainingInterrupted):
                raise
            epoch, step = self.where
            raise TrainingInterrupted(
                f"training aborted (KeyboardInterrupt) at epoch {epoch}, step {step}; nothing "
                "written for this point: resume=True continues from the last checkpoint",
                None,
                None,
                epoch,
                step,
            ) from exc
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
            write_final_weights(self.run_dir / FINAL_WEIGHTS, model, self.task.name)
        best = self.best.weights
        if best is None and self.best.epoch is not None:
            best_path = self.run_dir / BEST_CHECKPOINT
            if best_path.exists():
                ckpt = load_checkpoint(best_path)
                check_model_state(ckpt.model_state, model, best_path)
                best = ckpt.model_state
        if best is not None:
            model.load_state_dict(best)
        if self.config.batch_norm_batches and self.config.epochs > 0:
            self._recompute_batch_norm(model)
        model = model.to("cpu").eval()
        return FitResult(model, self.history, self.best.epoch, self.run_dir, self.best.value)

    def _recompute_batch_norm(self, model: torch.nn.Module) -> None:
        """The returned model's batch-norm statistics over the first batches of the epoch
        after the last, the same on every rank (``wsls.training.batch_norm``)."""
        batches = self.task.train_batches(self.config.epochs, 0, 1)
        batches = itertools.islice(batches, self.config.batch_norm_batches)
        with self._autocast():
            on_device = (move_to(b, self.device) for b in batches)
            recompute_batch_norm(model, on_device, self.task.training_step)


def fit(
    task: Task, run_dir: str | Path, config: FitConfig | None = None, *, resume: bool = False
) -> FitResult:
    """Train ``task`` into ``run_dir``; see the module docstring for the files and resuming.

    Under ``torchrun`` (WORLD_SIZE > 1) every rank calls ``fit`` the same way: the model is
    wrapped in DistributedDataParallel, rank r trains on ``task.train_batches(epoch, r, world)``,
    only rank 0 writes files and shows bars. ``run_dir`` must be visible to every rank.

    Args:
        task: the method-specific trainer (:class:`~wsls.training.task.Task`).
        run_dir: the run directory (created).
        config: :class:`FitConfig` (defaults if None).
        resume: continue from ``run_dir/last.ckpt`` if it exists (a fresh run otherwise).
    Returns:
        :class:`FitResult` with the best model on the CPU.
    Raises:
        CheckpointError: the checkpoint to resume from is unusable (one line, naming it).
        TrainingInterrupted: SIGINT/SIGTERM stopped training after writing a checkpoint, or a
            second Ctrl-C / a KeyboardInterrupt aborted it without writing (a KeyboardInterrupt
            subclass; its ``checkpoint`` says what was written).
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
