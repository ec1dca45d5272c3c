"""patch_auc: balanced held-out patches labelled from the masks, scored by the classifier."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from wsls.data.patches import PatchConfig
from wsls.evaluation.patch_auc import patch_auc


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


PATCH = PatchConfig(size=8, stride=2, min_lesion_voxels=20, min_brain_fraction=0.5)


def test_oracle_scores_one_and_constant_scores_half():
    cases = [_Case(0), _Case(1)]
    oracle = _Score(lambda x: x.max(dim=1).values)
    assert patch_auc(oracle, cases, PATCH, samples=64) > 0.95
    constant = _Score(lambda x: torch.zeros(x.shape[0]))
    assert patch_auc(constant, cases, PATCH, samples=64) == pytest.approx(0.5)
    inverted = _Score(lambda x: -x.max(dim=1).values)
    assert patch_auc(inverted, cases, PATCH, samples=64) < 0.05


def test_roc_auc_counts_ties_half_like_the_pairwise_definition():
    from wsls.metrics import roc_auc

    rng = np.random.default_rng(3)
    labels = rng.random(200) < 0.3
    scores = np.round(rng.random(200) + labels * 0.4, 1)  # many ties
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean()
    assert roc_auc(labels, scores) == pytest.approx(pairwise)
    assert np.isnan(roc_auc(np.ones(4, bool), np.arange(4.0)))
