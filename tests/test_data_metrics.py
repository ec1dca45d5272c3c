"""Metrics as DESIGN section 1 defines them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wsls.metrics import dice, evaluate, hd95, sensitivity, specificity, summarise


def test_confusion_based_metrics():
    truth = np.zeros((4, 4, 4), bool)
    truth[0, :, :] = True  # 16
    pred = np.zeros_like(truth)
    pred[0, :2, :] = True  # 8 TP
    pred[1, 0, :] = True  # 4 FP
    assert dice(pred, truth) == pytest.approx(2 * 8 / (2 * 8 + 4 + 8))
    assert sensitivity(pred, truth) == pytest.approx(8 / 16)
    assert specificity(pred, truth) == pytest.approx(44 / 48)
    brain = np.ones_like(truth)
    brain[1] = False  # the false positives lie outside the brain: ignored
    assert dice(pred, truth, brain) == pytest.approx(2 * 8 / (2 * 8 + 8))
    assert specificity(pred, truth, brain) == 1.0


def test_empty_conventions():
    empty = np.zeros((3, 3, 3), bool)
    assert dice(empty, empty) == 1.0
    assert math.isnan(sensitivity(empty, empty))
    assert math.isnan(hd95(empty, empty))


def test_hd95_known_shift():
    a = np.zeros((20, 20, 20), bool)
    a[5:10, 5:10, 5:10] = True
    b = np.roll(a, 3, axis=0)
    assert hd95(a, b) == pytest.approx(3.0)
    assert hd95(a, b, spacing=(2.0, 1.0, 1.0)) == pytest.approx(6.0)
    assert hd95(a, a) == 0.0


def test_hd95_is_the_larger_directed_percentile():
    truth = np.zeros((20, 20, 20), bool)
    truth[5, 5, 5] = True
    pred = truth.copy()
    pred[5, 5, 15] = True  # a far stray voxel
    # pred -> truth: distances {0, 10}, 95th percentile 9.5; truth -> pred: {0}.
    # (Pooling both directions, {0, 0, 10}, would give 9.0.)
    assert hd95(pred, truth) == pytest.approx(9.5)
    assert hd95(truth, pred) == pytest.approx(9.5)
    assert hd95(pred, truth, spacing=(1.0, 1.0, 2.0)) == pytest.approx(19.0)


def test_evaluate_and_summarise():
    a = np.zeros((10, 10, 10), bool)
    a[2:5, 2:5, 2:5] = True
    row = evaluate(a, a, spacing=(1, 1, 1))
    assert row == {"dice": 1.0, "sensitivity": 1.0, "specificity": 1.0, "hd95": 0.0}
    s = summarise([{"dice": 0.5, "hd95": math.nan}, {"dice": 0.7, "hd95": 2.0}])
    assert s["dice"].mean == pytest.approx(0.6)
    assert s["dice"].sd == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert s["hd95"].n == 1 and s["hd95"].sd == 0.0
