"""The U-Net segmentation baselines (DESIGN section 1): S-UNet, trained on the true masks (the
fully supervised upper reference), and WS-UNet, trained on thresholded ACAM pseudo-labels.
Loss: BCE + soft Dice (plain BCE collapses to empty output on small lesions, DESIGN 8)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from wsls.data.disk_case import image_source
from wsls.data.patch_batches import PatchBatches
from wsls.data.patches import PatchSampler
from wsls.data.preprocess import Prepared
from wsls.method.config import SegmenterTrainConfig
from wsls.models import UNet3D, UNetSpec
from wsls.training.loop import fit
from wsls.training.task import FitConfig, FitResult, PatchBatchesTask


def soft_dice_loss(logits: Tensor, target: Tensor, eps: float = 1.0) -> Tensor:
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    inter = (p * t).sum(1)
    return (1 - (2 * inter + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


class _Targets:
    """A prepared case whose ``mask`` is replaced by training targets (pseudo-labels)."""

    def __init__(self, case: Prepared, target: np.ndarray) -> None:
        self.id, self.brain, self.label, self.mask = case.id, case.brain, case.label, target


class SegmenterTask(PatchBatchesTask):
    name = "segmenter"

    def __init__(
        self,
        cases: Sequence[Prepared],
        targets: Sequence[np.ndarray],
        config: SegmenterTrainConfig,
        seed: int = 0,
    ) -> None:
        self.config = config
        wrapped = [_Targets(c, t) for c, t in zip(cases, targets, strict=True)]
        try:
            sampler = PatchSampler(wrapped, config.patch, seed)
        except ValueError:  # no target-free patch position: train on target patches only
            sampler = PatchSampler(wrapped, replace(config.patch, positive_fraction=1.0), seed)
        self.batches = PatchBatches(
            sampler, [image_source(c) for c in cases], config.batch_size, targets=list(targets)
        )
        self.in_channels = cases[0].image.shape[0]

    def config_dict(self) -> dict:
        return {**asdict(self.config), "patch": asdict(self.config.patch)}

    def build_model(self) -> UNet3D:
        return UNet3D(UNetSpec(self.in_channels, 1, self.config.width, self.config.levels))

    def training_step(self, model, batch):
        x, _, target = batch
        logits = model(x)[:, 0].float()
        target = target.float()
        bce = F.binary_cross_entropy_with_logits(logits, target)
        dice = soft_dice_loss(logits, target)
        return bce + self.config.dice_weight * dice, {"bce": bce.item(), "dice_loss": dice.item()}


def train_segmenter(
    cases: Sequence[Prepared],
    targets: Sequence[np.ndarray],
    run_dir: str | Path,
    config: SegmenterTrainConfig | None = None,
    fit_config: FitConfig | None = None,
    *,
    resume: bool = False,
) -> FitResult:
    """Train a U-Net on (cases, voxel targets): true masks for S-UNet, pseudo-labels for WS-UNet."""
    fit_config = fit_config or FitConfig(select_metric="train_loss")
    task = SegmenterTask(cases, targets, config or SegmenterTrainConfig(), seed=fit_config.seed)
    return fit(task, run_dir, fit_config, resume=resume)
