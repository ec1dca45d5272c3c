"""The FLAIR threshold baseline finds the right threshold and component."""

from __future__ import annotations

import numpy as np
import pytest

from wsls.baselines.threshold import ThresholdBaseline
from wsls.io.case import Case
from wsls.io.nifti import Volume
from wsls.metrics import dice
from wsls.morphology import largest_component


def _case(seed: int, lesion_value: float = 4.0, with_blob: bool = False) -> Case:
    """Brain of N(0,1) FLAIR; a cube lesion at ``lesion_value`` (+-0.2); optional small
    bright false blob (not lesion)."""
    rng = np.random.default_rng(seed)
    shape = (30, 30, 30)
    flair = rng.normal(0.0, 1.0, shape).clip(-2.5, 2.5).astype(np.float32)
    mask = np.zeros(shape, bool)
    mask[5:15, 5:15, 5:15] = True
    flair[mask] = lesion_value + rng.uniform(-0.2, 0.2, mask.sum())
    if with_blob:
        flair[22:25, 22:25, 22:25] = lesion_value
    vol = Volume.from_array(flair[None], None, ["flair"])
    brain = np.ones(shape, bool)
    return Case(f"c{seed}", vol.data, mask, brain, 1.0, vol, ("flair",))


def test_tuned_threshold_separates_known_case():
    cases = [_case(s) for s in range(3)]
    base = ThresholdBaseline(normalise=False).fit(cases)
    # lesion >= 3.8, normal <= 2.5: any threshold in [2.5, 3.8) gives Dice 1
    assert 2.5 <= base.threshold < 3.8
    assert base.train_dice == pytest.approx(1.0)
    assert dice(base.predict(_case(9)), _case(9).mask) == 1.0


def test_normalised_threshold_is_in_brain_sd_units():
    cases = [_case(s) for s in range(3)]
    base = ThresholdBaseline().fit(cases)
    assert base.train_dice == pytest.approx(1.0)
    z, _ = base.score_map(cases[0])
    assert z[cases[0].mask].min() > base.threshold > z[~cases[0].mask].max()


def test_largest_component_removes_false_blob():
    cases = [_case(s, with_blob=True) for s in range(2)]
    plain = ThresholdBaseline(normalise=False).fit(cases)
    lcc = ThresholdBaseline(normalise=False, largest_component=True).fit(cases)
    assert plain.train_dice < 0.99 and lcc.train_dice == pytest.approx(1.0)
    assert dice(lcc.predict(cases[0]), cases[0].mask) == 1.0


def test_largest_component_helper():
    m = np.zeros((10, 10, 10), bool)
    m[1:3, 1:3, 1:3] = True
    m[5:9, 5:9, 5:9] = True
    m[4, 4, 4] = True  # diagonal touch: joins under 26-connectivity only
    assert largest_component(m, 26).sum() == 65
    assert largest_component(m, 6).sum() == 64


def test_phantom_baseline_is_below_0_8(data_small_phantoms):
    from wsls.phantom.generate import make_phantom

    train = [make_phantom((64, 64, 48), seed=s, lesions="tumour").to_case() for s in range(30, 34)]
    test = [make_phantom((64, 64, 48), seed=s, lesions="tumour").to_case() for s in range(40, 44)]
    base = ThresholdBaseline().fit(train)
    scores = [dice(base.predict(c), c.mask, c.brain) for c in test]
    assert 0.3 < np.mean(scores) < 0.8


def test_fit_needs_masks():
    case = _case(0)
    case.mask = None
    with pytest.raises(ValueError):
        ThresholdBaseline().fit([case])
    with pytest.raises(RuntimeError):
        ThresholdBaseline().predict(_case(0))
