"""How well a trained classifier tells lesion patches from lesion-free ones on held-out cases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from wsls.data.patch_batches import PatchBatches
from wsls.data.patches import PatchConfig, PatchSampler
from wsls.metrics import roc_auc
from wsls.models import Classifier3D


def patch_auc(
    model: Classifier3D,
    cases: Sequence,
    patch: PatchConfig,
    samples: int = 256,
    seed: int = 7,
) -> float:
    """Patch classification AUC on (held-out) cases: ``samples`` balanced patches labelled from
    the cases' masks like the training patches (cases: prepared or coarse views with image,
    brain, mask). Raises ValueError when the cases offer no positive or no negative patch."""
    patch = replace(patch, samples_per_epoch=samples, flip_lr=False)
    batches = PatchBatches(PatchSampler(cases, patch, seed), [c.image for c in cases], 32)
    model.eval()
    logits, labels = [], []
    with torch.no_grad():
        for x, y in batches.epoch(0):
            logits.append(model(x).logits.float())
            labels.append(y)
    return roc_auc(torch.cat(labels).numpy(), torch.cat(logits).numpy())
