"""Resuming an interrupted run: bit-exact on CPU, atomic checkpoints, corrupt ones refused."""

from __future__ import annotations

import json
import os
import pickle
import signal
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save

sys.path.insert(0, str(Path(__file__).parent))
from train_toy import ToyTask  # noqa: E402

from wsls.io import atomic as atomic_module  # noqa: E402
from wsls.training import (  # noqa: E402
    CheckpointError,
    FitConfig,
    TrainingInterrupted,
    fit,
    load_checkpoint,
    save_checkpoint,
)

CFG = FitConfig(epochs=3, seed=7, progress=False, device="cpu")


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "final.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def losses(history):
    return [(h["epoch"], h["train_loss"], h["train_mae"], h["val_loss"]) for h in history]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run per loader kind: its final weights, history and optimizer state."""
    out = {}
    for resumable in (True, False):
        run = tmp_path_factory.mktemp(f"ref_{resumable}")
        result = fit(ToyTask(resumable=resumable), run, CFG)
        ckpt = load_checkpoint(run / "last.ckpt")
        out[resumable] = (final_weights(run), result.history, ckpt.optimizer_state)
    return out


@pytest.mark.parametrize("resumable", [True, False], ids=["loader-state", "skip-batches"])
@pytest.mark.parametrize(
    "how",
    [
        {"interrupt_at": (1, 5)},
        {"interrupt_at": (0, 0)},
        {"interrupt_at": (2, 11)},
        {"signal_at": (1, 3)},
        {"signal_at": (1, 3), "signal_name": "SIGINT"},
        {"signal_at": (1, 3), "signal_name": "SIGINT", "signal_count": 2},
        {"interrupt_in_validate": 1},
    ],
    ids=[
        "keyboard-mid-epoch",
        "keyboard-first-step",
        "keyboard-last-step",
        "sigterm",
        "sigint",
        "sigint-twice",
        "in-validate",
    ],
)
def test_resume_is_bit_exact(tmp_path, reference, resumable, how):
    ref_weights, ref_history, ref_optim = reference[resumable]
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as info:
        fit(ToyTask(resumable=resumable, **how), tmp_path, CFG)
    if "signal_at" in how and how.get("signal_count", 1) == 1:
        assert info.value.checkpoint == tmp_path / "last.ckpt"
        assert info.value.signum == getattr(signal, how.get("signal_name", "SIGTERM"))
        assert (info.value.epoch, info.value.step) == (1, 4)  # stopped at the next boundary
        state = load_checkpoint(tmp_path / "last.ckpt").state
        assert (state["epoch"], state["step"]) == (1, 4)
    else:  # a second Ctrl-C or a KeyboardInterrupt aborts and writes nothing
        assert info.value.checkpoint is None and info.value.signum is None
        if how.get("signal_count") == 2:
            assert (info.value.epoch, info.value.step) == (1, 3)
        last = tmp_path / "last.ckpt"
        if how.get("interrupt_at") == (0, 0):
            assert not last.exists()
        else:  # only the checkpoints of finished epochs
            assert load_checkpoint(last).state["step"] == 0
    # handlers restored (a background job starts with SIGINT ignored, not Python's default)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    result = fit(ToyTask(resumable=resumable), tmp_path, CFG, resume=True)
    assert_same_weights(final_weights(tmp_path), ref_weights)
    assert losses(result.history) == losses(ref_history)
    optim = load_checkpoint(tmp_path / "last.ckpt").optimizer_state
    for index, per_param in ref_optim["state"].items():
        for name, value in per_param.items():
            assert torch.equal(optim["state"][index][name], value)


def test_interrupted_twice_then_resumed(tmp_path, reference):
    ref_weights, ref_history, _ = reference[True]
    with pytest.raises(TrainingInterrupted):
        fit(ToyTask(interrupt_at=(0, 7)), tmp_path, CFG)
    with pytest.raises(TrainingInterrupted):
        fit(ToyTask(interrupt_at=(2, 2)), tmp_path, CFG, resume=True)
    result = fit(ToyTask(), tmp_path, CFG, resume=True)
    assert_same_weights(final_weights(tmp_path), ref_weights)
    assert losses(result.history) == losses(ref_history)


def test_mid_epoch_checkpoint_records_the_step(tmp_path):
    with pytest.raises(TrainingInterrupted):
        fit(ToyTask(signal_at=(1, 4)), tmp_path, CFG)
    state = load_checkpoint(tmp_path / "last.ckpt").state
    assert (state["epoch"], state["step"]) == (1, 5)
    assert state["ranks"][0]["loader_state"] == {"epoch": 1, "position": 5}
    assert state["ranks"][0]["partial"]["steps"] == 5
    assert set(state["ranks"][0]["rng"]) == {"torch", "cuda", "numpy", "python"}
    assert [h["epoch"] for h in state["history"]] == [0]
    assert state["config"]["seed"] == CFG.seed


def test_resume_extends_a_finished_run(tmp_path, reference):
    """A run of 3 epochs resumed with epochs=3 does nothing more; epochs=4 adds one."""
    fit(ToyTask(), tmp_path, CFG)
    again = fit(ToyTask(), tmp_path, CFG, resume=True)
    assert_same_weights(final_weights(tmp_path), reference[True][0])
    assert len(again.history) == 3
    longer = fit(ToyTask(), tmp_path, FitConfig(**{**CFG.__dict__, "epochs": 4}), resume=True)
    assert [h["epoch"] for h in longer.history] == [0, 1, 2, 3]


def test_resume_without_checkpoint_starts_fresh(tmp_path, reference):
    fit(ToyTask(), tmp_path, CFG, resume=True)
    assert_same_weights(final_weights(tmp_path), reference[True][0])


def test_failed_checkpoint_write_keeps_previous(tmp_path, monkeypatch, reference):
    """A crash while writing epoch 1's checkpoint leaves epoch 0's intact and resumable."""
    real_replace = os.replace
    writes = {"n": 0}

    def flaky_replace(src, dst):
        if str(dst).endswith("last.ckpt"):
            writes["n"] += 1
            if writes["n"] == 2:
                raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic_module.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="No space left"):
        fit(ToyTask(), tmp_path, CFG)
    monkeypatch.setattr(atomic_module.os, "replace", real_replace)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    state = load_checkpoint(tmp_path / "last.ckpt").state
    assert (state["epoch"], state["step"]) == (1, 0)
    fit(ToyTask(), tmp_path, CFG, resume=True)
    assert_same_weights(final_weights(tmp_path), reference[True][0])


def test_failed_write_leaves_old_file(tmp_path, monkeypatch):
    path = tmp_path / "x.ckpt"
    save_checkpoint(path, {"w": torch.ones(3)}, {"task": "toy", "n": 1})
    before = path.read_bytes()

    def failing_fsync(fd):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(atomic_module.os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        save_checkpoint(path, {"w": torch.zeros(3)}, {"task": "toy", "n": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ckpt"]


# ------------------------------------------------------------------ corrupt checkpoints
@pytest.fixture
def interrupted_run(tmp_path):
    with pytest.raises(TrainingInterrupted):
        fit(ToyTask(signal_at=(1, 4)), tmp_path, CFG)  # a mid-epoch checkpoint at step 5
    return tmp_path


def _refused(run_dir: Path, match: str, task: ToyTask | None = None) -> CheckpointError:
    with pytest.raises(CheckpointError, match=match) as info:
        fit(task or ToyTask(), run_dir, CFG, resume=True)
    message = str(info.value)
    assert "\n" not in message
    assert str(run_dir / "last.ckpt") in message
    err = info.value  # no chained library traceback
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    return info.value


def test_truncated_checkpoint_refused(interrupted_run):
    path = interrupted_run / "last.ckpt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _refused(interrupted_run, "truncated")


def test_header_truncated_checkpoint_refused(interrupted_run):
    path = interrupted_run / "last.ckpt"
    path.write_bytes(path.read_bytes()[:100])
    _refused(interrupted_run, "truncated")


def test_empty_checkpoint_refused(interrupted_run):
    (interrupted_run / "last.ckpt").write_bytes(b"")
    _refused(interrupted_run, "not a checkpoint")


def test_bit_flip_in_weights_refused(interrupted_run):
    path = interrupted_run / "last.ckpt"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    _refused(interrupted_run, "checksum mismatch")


def test_edited_state_refused(interrupted_run):
    path = interrupted_run / "last.ckpt"
    data = path.read_bytes()
    edited = data.replace(b'\\"step\\": 5', b'\\"step\\": 4')
    assert edited != data and len(edited) == len(data)
    path.write_bytes(edited)
    _refused(interrupted_run, "checksum mismatch")


def test_other_format_version_refused(interrupted_run):
    path = interrupted_run / "last.ckpt"
    ckpt = load_checkpoint(path)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    meta["wsls_checkpoint_version"] = "99"
    tensors = {"model." + k: v for k, v in ckpt.model_state.items()}
    path.write_bytes(save(tensors, metadata=meta))
    _refused(interrupted_run, "format version 99")


def test_foreign_safetensors_refused(interrupted_run):
    (interrupted_run / "last.ckpt").write_bytes(save({"a": torch.ones(2)}))
    _refused(interrupted_run, "not a wsls checkpoint")


def test_other_model_shapes_refused(interrupted_run):
    err = _refused(interrupted_run, "another model", ToyTask(hidden=32))
    assert "(16, 6) vs (32, 6)" in str(err)


def test_other_task_refused(interrupted_run):
    task = ToyTask()
    task.name = "classifier"
    _refused(interrupted_run, "task 'toy', not 'classifier'", task)


def test_mid_epoch_resume_with_other_world_size_refused(interrupted_run, monkeypatch):
    path = interrupted_run / "last.ckpt"
    ckpt = load_checkpoint(path)
    state = dict(ckpt.state, ranks=ckpt.state["ranks"] * 2)
    save_checkpoint(path, ckpt.model_state, state, ckpt.optimizer_state)
    _refused(interrupted_run, "written mid-epoch by 2 process")


def test_no_pickle_when_resuming(interrupted_run, monkeypatch, reference):
    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    fit(ToyTask(), interrupted_run, CFG, resume=True)
    assert_same_weights(final_weights(interrupted_run), reference[True][0])
    # the files are safetensors (8-byte header length, then JSON) and JSON/CSV text only
    for p in interrupted_run.iterdir():
        data = p.read_bytes()
        if p.suffix in (".ckpt", ".safetensors"):
            n = int.from_bytes(data[:8], "little")
            assert isinstance(json.loads(data[8 : 8 + n]), dict)
        else:
            assert p.suffix in (".json", ".csv")
            data.decode("utf-8")
        assert b"\x80\x04\x95" not in data[:16]  # no pickle protocol header


def test_resume_warns_on_changed_hyperparameters(interrupted_run):
    with pytest.warns(UserWarning, match="lr=0.01"):
        fit(ToyTask(), interrupted_run, FitConfig(**{**CFG.__dict__, "lr": 0.01}), resume=True)


def test_resume_warns_on_changed_task_config(interrupted_run):
    with pytest.warns(UserWarning, match=r"different task configuration \(noise\)"):
        fit(ToyTask(noise=0.5), interrupted_run, CFG, resume=True)
