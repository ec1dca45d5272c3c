"""Batch-norm statistics recomputed after training (wsls.training.batch_norm and the fit loop's
``batch_norm_batches``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_toy import ToyTask  # noqa: E402

from wsls.models import Classifier3D, ClassifierSpec  # noqa: E402
from wsls.training import FitConfig, fit  # noqa: E402
from wsls.training.batch_norm import batch_norms, recompute_batch_norm  # noqa: E402


class NormedToyTask(ToyTask):
    """The toy regression with a batch norm after its hidden layer (no dropout, no noise, so a
    batch's forward pass draws no random numbers)."""

    def __init__(self) -> None:
        super().__init__(dropout=0.0, noise=0.0)

    def build_model(self) -> torch.nn.Module:
        c = self.cfg
        return torch.nn.Sequential(
            torch.nn.Linear(c.dim, c.hidden),
            torch.nn.BatchNorm1d(c.hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(c.hidden, 1),
        )


WEIGHTS = ("weight", "bias")


def _forward(model, batch):
    return model(batch)


def test_statistics_are_the_exact_means_over_the_batches():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    model.eval()
    weights = {k: v.clone() for k, v in model.state_dict().items() if k.split(".")[1] in WEIGHTS}
    batches = [torch.randn(n, 3) * (1 + i) + i for i, n in enumerate((5, 7, 6))]
    assert recompute_batch_norm(model, batches, _forward) == 3
    with torch.no_grad():
        hidden = [model[0](b) for b in batches]
    norm = model[1]
    mean = torch.stack([h.mean(0) for h in hidden]).mean(0)
    var = torch.stack([h.var(0, unbiased=True) for h in hidden]).mean(0)
    torch.testing.assert_close(norm.running_mean, mean)
    torch.testing.assert_close(norm.running_var, var)
    assert norm.momentum == 0.1 and not model.training  # both as they were
    for k, v in weights.items():
        assert torch.equal(model.state_dict()[k], v), k


def test_no_batches_or_no_batch_norm_leave_the_model_as_it_was():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).train()
    model(torch.randn(8, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert recompute_batch_norm(model, [], _forward) == 0
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert model.training
    assert recompute_batch_norm(torch.nn.Linear(3, 1), [torch.randn(2, 3)], _forward) == 0


def test_a_classifier_in_eval_mode_then_scores_its_batch_as_in_train_mode():
    torch.manual_seed(2)
    model = Classifier3D(ClassifierSpec(2, 4, 2, "acam"))
    x = torch.randn(4, 2, 16, 16, 16) * 3 + 1  # far from the fresh statistics (mean 0, var 1)
    with torch.no_grad():
        train_mode = model.train()(x).logits
        stale = model.eval()(x).logits
        recompute_batch_norm(model, [x], _forward)
        fresh = model(x).logits
    assert len(batch_norms(model)) > 0
    # eval mode uses the unbiased variance where train mode uses the biased one
    torch.testing.assert_close(fresh, train_mode, atol=2e-2, rtol=2e-2)
    assert (stale - train_mode).abs().max() > 10 * (fresh - train_mode).abs().max()


def _run(tmp_path: Path, name: str, batches: int, resume: bool = False):
    config = FitConfig(epochs=2, seed=0, progress=False, batch_norm_batches=batches)
    return fit(NormedToyTask(), tmp_path / name, config, resume=resume)


def test_fit_recomputes_the_returned_models_statistics(tmp_path):
    plain, normed = _run(tmp_path, "plain", 0), _run(tmp_path, "normed", 3)
    state = {k: v.clone() for k, v in plain.model.state_dict().items()}
    normed_state = normed.model.state_dict()
    for k, v in state.items():  # the same training: only the statistics differ
        if k.split(".")[1] in WEIGHTS:
            assert torch.equal(normed_state[k], v), k
    expected = plain.model
    task = NormedToyTask()
    first = list(task.train_batches(2, 0, 1))[:3]  # the epoch after the last
    recompute_batch_norm(expected, first, task.training_step)
    norm, got = expected[1], normed.model[1]
    torch.testing.assert_close(got.running_mean, norm.running_mean, rtol=0, atol=0)
    torch.testing.assert_close(got.running_var, norm.running_var, rtol=0, atol=0)
    assert not torch.equal(got.running_mean, state["1.running_mean"])
    again = _run(tmp_path, "normed", 3, resume=True)  # a finished run, called again
    assert torch.equal(again.model[1].running_var, got.running_var)


@pytest.mark.parametrize("value", [-1, 1.5])
def test_batch_norm_batches_must_be_a_count(value):
    with pytest.raises(ValueError, match="batch_norm_batches"):
        FitConfig(batch_norm_batches=value)
