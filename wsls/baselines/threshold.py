"""The trivial baseline every evaluation reports: one modality above a tuned threshold.

The modality is z-scored inside each case's brain first, so one threshold (in brain standard
deviations) transfers between cases and scanners. ``fit`` picks the threshold that maximises the
mean Dice over the training cases, inside the brain; ``predict`` applies it (and optionally keeps
only the largest connected component).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wsls.data.preprocess import brain_mask, zscore_in_brain
from wsls.errors import DataError
from wsls.io.modalities import canonical_modality
from wsls.metrics import dice, dice_curve
from wsls.morphology import largest_component


def _brain_of(case: Any) -> np.ndarray:
    brain = getattr(case, "brain", None)
    return brain_mask(case.image) if brain is None else np.asarray(brain, bool)


def _modality_index(case: Any, modality: str) -> int:
    wanted = canonical_modality(modality) or modality.lower()
    names = tuple(case.modalities)
    if wanted not in names:
        raise DataError(getattr(case, "id", "case"), f"has no {modality!r} image (has {names})")
    return names.index(wanted)


@dataclass
class ThresholdBaseline:
    """``modality`` z-score above a threshold tuned on training cases, inside the brain.

    Attributes:
        modality: which image (canonical name, e.g. "flair").
        largest_component: keep only the largest 26-connected component.
        normalise: z-score the modality inside each brain first (False: use the values as
            they are, e.g. for data that is already normalised).
        grid: candidate thresholds in brain standard deviations.
        refine_radius, refine_step: with ``largest_component`` the component Dice is evaluated
            on a finer search around the best plain threshold (components are costly).
        threshold: the fitted threshold (None before ``fit``).
        train_dice: mean Dice over the training cases at the fitted threshold.
    """

    modality: str = "flair"
    largest_component: bool = False
    normalise: bool = True
    grid: np.ndarray = field(default_factory=lambda: np.round(np.arange(-1.0, 8.0, 0.05), 3))
    refine_radius: float = 1.0
    refine_step: float = 0.1
    threshold: float | None = None
    train_dice: float | None = None

    def score_map(self, case: Any) -> tuple[np.ndarray, np.ndarray]:
        """The z-scored modality (H, W, D) float32 and the brain mask (H, W, D) bool."""
        brain = _brain_of(case)
        channel = case.image[_modality_index(case, self.modality)]
        if not self.normalise:
            return np.asarray(channel, np.float32), brain
        z, _ = zscore_in_brain(channel[None], brain)
        return z[0], brain

    def fit(self, cases: Sequence[Any]) -> ThresholdBaseline:
        """Tune the threshold on cases with masks (objects with image, modalities, mask, brain).

        Returns:
            self.
        """
        cases = [c for c in cases if getattr(c, "mask", None) is not None]
        if not cases:
            raise ValueError("ThresholdBaseline.fit needs at least one case with a lesion mask")
        grid = np.sort(np.asarray(self.grid, dtype=np.float64))
        maps = [self.score_map(c) for c in cases]
        curves = np.stack(
            [
                dice_curve(z[brain], np.asarray(c.mask)[brain], grid, strict=True)
                for c, (z, brain) in zip(cases, maps, strict=True)
            ]
        )
        mean_curve = curves.mean(axis=0)
        best = int(np.argmax(mean_curve))
        self.threshold, self.train_dice = float(grid[best]), float(mean_curve[best])
        if self.largest_component:
            centre = self.threshold
            fine = np.arange(
                centre - self.refine_radius, centre + self.refine_radius + 1e-9, self.refine_step
            )
            scores = [
                np.mean(
                    [
                        _lcc_dice(z, brain, np.asarray(c.mask), t)
                        for c, (z, brain) in zip(cases, maps, strict=True)
                    ]
                )
                for t in fine
            ]
            k = int(np.argmax(scores))
            self.threshold, self.train_dice = float(np.round(fine[k], 4)), float(scores[k])
        return self

    def predict(self, case: Any) -> np.ndarray:
        """(H, W, D) bool lesion mask for one case."""
        if self.threshold is None:
            raise RuntimeError("ThresholdBaseline: call fit() first (or set threshold)")
        z, brain = self.score_map(case)
        pred = (z > self.threshold) & brain
        return largest_component(pred) if self.largest_component else pred


def _lcc_dice(z: np.ndarray, brain: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    pred = largest_component((z > threshold) & brain)
    return dice(pred, truth, brain)
