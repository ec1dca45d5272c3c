"""patch_auc: balanced held-out patches labelled from the masks, scored by the classifier."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from wsls.data import PatchConfig
from wsls.models import ClassifierSpec
from wsls.train.classifier import ClassifierTrainConfig, patch_auc


class _Case:
    def __init__(self, seed, lesion=True):
        rng = np.random.default_rng(seed)
        self.id = f"case{seed}"
        self.brain = np.zeros((32, 32, 24), bool)
        self.brain[2:30, 2:30, 2:22] = True
        self.mask = np.zeros_like(self.brain)
        if lesion:
            self.mask[6:12, 8:14, 5:10] = True
        self.label = 1.0 if lesion else 0.0
        self.image = rng.standard_normal((1, *self.brain.shape)).astype(np.float32)
        self.image[0][self.mask] += 4.0


class _Score(torch.nn.Module):
    """Logit = a statistic of the patch: the brightest voxel (an oracle here) or a constant."""

    def __init__(self, statistic):
        super().__init__()
        self.statistic = statistic

    def forward(self, x):
        return SimpleNamespace(logits=self.statistic(x.flatten(1)))


CONFIG = ClassifierTrainConfig(
    ClassifierSpec(in_channels=1),
    PatchConfig(size=8, stride=2, min_lesion_voxels=20, min_brain_fraction=0.5),
    val_patches=64,
)


def test_oracle_scores_one_and_constant_scores_half():
    cases = [_Case(0), _Case(1)]
    oracle = _Score(lambda x: x.max(dim=1).values)
    assert patch_auc(oracle, cases, CONFIG) > 0.95
    constant = _Score(lambda x: torch.zeros(x.shape[0]))
    assert patch_auc(constant, cases, CONFIG) == pytest.approx(0.5)
    inverted = _Score(lambda x: -x.max(dim=1).values)
    assert patch_auc(inverted, cases, CONFIG) < 0.05
