"""Segmentation metrics (DESIGN section 1): Dice, sensitivity, specificity, HD95, and summaries.

All take boolean (H, W, D) arrays on the same grid. Where a brain mask is given, voxels outside
it are ignored (they count as neither true nor false negatives). Undefined values are NaN:
sensitivity with no lesion voxels, specificity with no normal voxels, HD95 when either mask is
empty. Dice of two empty masks is 1.0 (a correct "no lesion").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def _confusion(
    pred: np.ndarray, truth: np.ndarray, brain: np.ndarray | None
) -> tuple[int, int, int, int]:
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    if brain is not None:
        brain = np.asarray(brain, bool)
        pred, truth = pred[brain], truth[brain]
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(truth)) - tp
    tn = int(pred.size) - tp - fp - fn
    return tp, fp, fn, tn


def dice(pred: np.ndarray, truth: np.ndarray, brain: np.ndarray | None = None) -> float:
    """2 TP / (2 TP + FP + FN); 1.0 when both are empty."""
    tp, fp, fn, _ = _confusion(pred, truth, brain)
    denom = 2 * tp + fp + fn
    return 1.0 if denom == 0 else 2 * tp / denom


def sensitivity(pred: np.ndarray, truth: np.ndarray, brain: np.ndarray | None = None) -> float:
    """TP / (TP + FN); NaN without lesion voxels."""
    tp, _, fn, _ = _confusion(pred, truth, brain)
    return math.nan if tp + fn == 0 else tp / (tp + fn)


def specificity(pred: np.ndarray, truth: np.ndarray, brain: np.ndarray | None = None) -> float:
    """TN / (TN + FP); NaN without normal voxels."""
    _, fp, _, tn = _confusion(pred, truth, brain)
    return math.nan if tn + fp == 0 else tn / (tn + fp)


def dice_curve(
    values: np.ndarray, truth: np.ndarray, grid: np.ndarray, strict: bool = False
) -> np.ndarray:
    """Dice of ``values >= t`` (``values > t`` when ``strict``) against the bool ``truth`` for
    every t of the ascending ``grid``, from two sorts instead of one pass per threshold."""
    side = "right" if strict else "left"
    positives = np.sort(values[truth])
    everything = np.sort(values)
    tp = positives.size - np.searchsorted(positives, grid, side=side)
    predicted = everything.size - np.searchsorted(everything, grid, side=side)
    denom = predicted + positives.size
    return np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), 1.0)


def _surface(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    return mask & ~ndi.binary_erosion(mask, border_value=0)


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> float:
    """95 % Hausdorff distance in mm: the larger of the two directed 95th percentiles of the
    distances from one mask's surface voxels to the other's (as BraTS and MONAI report it).

    Args:
        pred, truth: (H, W, D) bool.
        spacing: voxel size in mm per axis.
    Returns:
        mm, or NaN when either mask is empty.
    """
    from scipy import ndimage as ndi

    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if not pred.any() or not truth.any():
        return math.nan
    union = pred | truth
    box = []
    for axis in range(3):
        hit = np.flatnonzero(union.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(max(0, int(hit[0]) - 1), int(hit[-1]) + 2))
    box = tuple(box)
    p, t = pred[box], truth[box]
    sp, st = _surface(p), _surface(t)
    dist_to_t = ndi.distance_transform_edt(~st, sampling=spacing)
    dist_to_p = ndi.distance_transform_edt(~sp, sampling=spacing)
    return float(max(np.percentile(dist_to_t[sp], 95), np.percentile(dist_to_p[st], 95)))


def evaluate(
    pred: np.ndarray,
    truth: np.ndarray,
    brain: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
) -> dict[str, float]:
    """Dice, sensitivity, specificity (inside ``brain``) and, with ``spacing``, HD95 in mm."""
    tp, fp, fn, tn = _confusion(pred, truth, brain)
    out = {
        "dice": 1.0 if 2 * tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn),
        "sensitivity": math.nan if tp + fn == 0 else tp / (tp + fn),
        "specificity": math.nan if tn + fp == 0 else tn / (tn + fp),
    }
    if spacing is not None:
        out["hd95"] = hd95(pred, truth, spacing)
    return out


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (ddof=1; 0 for one value) over the defined values."""

    mean: float
    sd: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.sd:.4f} (n={self.n})"


def summarise(per_case: Iterable[Mapping[str, float]]) -> dict[str, Summary]:
    """Per-metric mean and sd over cases, ignoring NaN values.

    Args:
        per_case: one mapping metric name -> value per case.
    Returns:
        metric name -> :class:`Summary`.
    """
    columns: dict[str, list[float]] = {}
    for row in per_case:
        for key, value in row.items():
            columns.setdefault(key, []).append(float(value))
    out = {}
    for key, values in columns.items():
        v = np.asarray(values, dtype=np.float64)
        v = v[~np.isnan(v)]
        if v.size == 0:
            out[key] = Summary(math.nan, math.nan, 0)
        else:
            sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
            out[key] = Summary(float(v.mean()), sd, int(v.size))
    return out


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (the Mann-Whitney U
    statistic over n_pos * n_neg; ties count one half); NaN when one class is absent."""
    from scipy.stats import rankdata

    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
