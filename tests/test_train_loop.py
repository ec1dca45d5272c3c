"""The generic fit loop: determinism, best checkpoint, run directory contents, configuration."""

from __future__ import annotations

import json
import sys
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from train_toy import ToyTask  # noqa: E402

from wsls.training import FitConfig, fit, load_checkpoint, move_to, read_metrics  # noqa: E402

CFG = FitConfig(epochs=3, seed=3, progress=False, device="cpu")


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_same_seed_same_run(tmp_path):
    a = fit(ToyTask(), tmp_path / "a", CFG)
    b = fit(ToyTask(), tmp_path / "b", CFG)
    c = fit(ToyTask(), tmp_path / "c", FitConfig(**{**CFG.__dict__, "seed": 4}))
    wa, wb, wc = weights(a.model), weights(b.model), weights(c.model)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_result_model_is_best_on_cpu_in_eval(tmp_path):
    result = fit(
        ToyTask(val_scores=[3.0, 1.0, 2.0]),
        tmp_path,
        FitConfig(**{**CFG.__dict__, "select_metric": "score"}),
    )
    assert result.best_epoch == 1 and result.best_value == 1.0
    assert not result.model.training
    assert all(p.device.type == "cpu" for p in result.model.parameters())
    best = load_checkpoint(tmp_path / "best.ckpt")
    assert best.state["epoch"] == 2 and best.state["best"] == {
        "epoch": 1,
        "value": 1.0,
        "metric": "score",
    }
    w = weights(result.model)
    assert all(torch.equal(w[k], best.model_state[k]) for k in w)
    final = load_file(str(tmp_path / "final.safetensors"))
    assert not all(torch.equal(w[k], final[k]) for k in w)  # the last epoch is not the best


@pytest.mark.parametrize(
    ("scores", "mode", "metric", "expected"),
    [
        ([1.0, 3.0, 2.0], "max", "score", 1),
        ([1.0, 3.0, 2.0], "max", "val_score", 1),
        ([2.0, 2.0, 2.0], "min", "score", 0),  # ties keep the first
        ([float("nan"), 5.0, 4.0], "min", "score", 2),  # NaN never wins
    ],
)
def test_best_selection(tmp_path, scores, mode, metric, expected):
    cfg = FitConfig(**{**CFG.__dict__, "select_metric": metric, "select_mode": mode})
    result = fit(ToyTask(val_scores=scores), tmp_path, cfg)
    assert result.best_epoch == expected
    assert load_checkpoint(tmp_path / "best.ckpt").state["best"]["epoch"] == expected


def test_best_by_training_loss_without_validation(tmp_path):
    task = ToyTask()
    task.validate = lambda model: {}
    result = fit(task, tmp_path, CFG)
    losses = [h["train_loss"] for h in result.history]
    assert result.best_epoch == losses.index(min(losses))
    assert "val_loss" not in result.history[0]


def test_unknown_select_metric(tmp_path):
    cfg = FitConfig(**{**CFG.__dict__, "select_metric": "dice"})
    with pytest.raises(ValueError, match="select_metric 'dice' is not among .*val_loss"):
        fit(ToyTask(), tmp_path, cfg)


def test_run_directory_contents(tmp_path):
    result = fit(ToyTask(), tmp_path, FitConfig(**{**CFG.__dict__, "checkpoint_every": 2}))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["best.ckpt", "config.json", "final.safetensors", "last.ckpt", "metrics.csv"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["task"] == "toy"
    assert config["fit"]["epochs"] == 3 and config["fit"]["seed"] == 3
    assert config["task_config"]["hidden"] == 16
    assert config["world_size"] == 1
    assert {"wsls_version", "torch_version"} <= config.keys()
    rows = read_metrics(tmp_path)
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == [
        "epoch",
        "train_loss",
        "train_mae",
        "lr",
        "val_loss",
        "seconds",
        "items_per_s",
    ]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    for row, hist in zip(rows, result.history, strict=True):
        assert row["train_loss"] == hist["train_loss"]  # written exactly
        assert row["items_per_s"] > 0 and row["seconds"] > 0
    last = load_checkpoint(tmp_path / "last.ckpt").state
    assert (last["epoch"], last["step"]) == (3, 0)
    assert len(last["history"]) == 3


def test_checkpoint_every(tmp_path, monkeypatch):
    written = []
    import wsls.training.saver as loop

    real = loop.save_checkpoint

    def spy(path, *args, **kwargs):
        written.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(loop, "save_checkpoint", spy)
    cfg = FitConfig(**{**CFG.__dict__, "epochs": 5, "checkpoint_every": 2})
    fit(
        ToyTask(val_scores=[5, 4, 3, 2, 1]),
        tmp_path,
        FitConfig(**{**cfg.__dict__, "select_metric": "score"}),
    )
    # last after epochs 1, 3 and 4 (the final one); best after every improving epoch
    assert written.count("last.ckpt") == 3
    assert written.count("best.ckpt") == 5


def test_refuses_to_overwrite_a_run(tmp_path):
    fit(ToyTask(), tmp_path, CFG)
    with pytest.raises(ValueError, match="already holds a training run"):
        fit(ToyTask(), tmp_path, CFG)
    again = fit(ToyTask(), tmp_path, FitConfig(**{**CFG.__dict__, "overwrite": True}))
    assert len(again.history) == 3


def test_custom_optimizer_and_grad_clip(tmp_path):
    task = ToyTask()
    task.configure_optimizer = lambda model, config: torch.optim.SGD(
        model.parameters(), lr=0.05, momentum=0.9
    )
    cfg = FitConfig(**{**CFG.__dict__, "grad_clip": 0.5})
    result = fit(task, tmp_path, cfg)
    state = load_checkpoint(tmp_path / "last.ckpt").optimizer_state
    assert state["param_groups"][0]["momentum"] == 0.9
    assert "momentum_buffer" in state["state"][0]
    assert result.history[0]["lr"] == 0.05


def test_progress_enabled_is_quiet_without_terminal(tmp_path, capsys):
    fit(ToyTask(), tmp_path, FitConfig(**{**CFG.__dict__, "progress": True, "epochs": 1}))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_zero_epochs(tmp_path):
    result = fit(ToyTask(), tmp_path, FitConfig(**{**CFG.__dict__, "epochs": 0}))
    assert result.history == [] and result.best_epoch is None


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("epochs", -1, "epochs"),
        ("lr", 0.0, "lr"),
        ("checkpoint_every", 0, "checkpoint_every"),
        ("select_mode", "best", "select_mode"),
        ("grad_clip", 0.0, "grad_clip"),
    ],
)
def test_config_validation(field, value, match):
    with pytest.raises(ValueError, match=match):
        FitConfig(**{field: value})


def test_cuda_device_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    with pytest.raises(ValueError, match="sees no CUDA device"):
        fit(ToyTask(), tmp_path, FitConfig(**{**CFG.__dict__, "device": "cuda"}))


def test_move_to_nested():
    Pair = namedtuple("Pair", "a b")
    batch = {"x": torch.ones(2), "rest": [Pair(torch.zeros(1), "meta"), (torch.ones(1), 3)]}
    moved = move_to(batch, torch.device("cpu"))
    assert isinstance(moved["rest"][0], Pair) and moved["rest"][0].b == "meta"
    assert moved["rest"][1][1] == 3 and torch.equal(moved["x"], batch["x"])
