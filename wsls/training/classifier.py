"""The classifier trainer: image-level (patch-level) labels only, BCE, Adam (lr 1e-3 as in the
paper), class-balanced patches; validated by patch AUC on held-out cases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from wsls.data.disk_case import image_source
from wsls.data.patch_batches import PatchBatches
from wsls.data.patches import PatchConfig, PatchSampler
from wsls.data.preprocess import Prepared
from wsls.metrics import roc_auc
from wsls.models import Classifier3D, ClassifierSpec
from wsls.training.loop import fit
from wsls.training.task import FitConfig, FitResult, PatchBatchesTask


@dataclass
class ClassifierTrainConfig:
    """spec: the network; patch: patch size and sampling (samples_per_epoch patches an epoch);
    batch_size: patches per step; val_patches: held-out patches scored each epoch."""

    spec: ClassifierSpec
    patch: PatchConfig = field(default_factory=lambda: PatchConfig(size=32, min_lesion_voxels=100))
    batch_size: int = 8
    val_patches: int = 256


class ClassifierTask(PatchBatchesTask):
    """Task for :func:`wsls.training.fit`: patches with weak labels in, logits out."""

    name = "classifier"

    def __init__(
        self,
        cases: Sequence[Prepared],
        config: ClassifierTrainConfig,
        val_cases: Sequence[Prepared] = (),
        negative_cases: Sequence[Prepared] = (),
        seed: int = 0,
    ) -> None:
        self.config = config
        sampler = PatchSampler(cases, config.patch, seed, negative_cases)
        images = [image_source(c) for c in list(cases) + list(negative_cases)]
        self.batches = PatchBatches(sampler, images, config.batch_size)
        self.report = sampler.format_report()
        self.val = None
        if val_cases:
            val_patch = PatchConfig(
                **{
                    **asdict(config.patch),
                    "samples_per_epoch": config.val_patches,
                    "flip_lr": False,
                }
            )
            val_sampler = PatchSampler(val_cases, val_patch, seed + 1_000_003)
            val_batches = PatchBatches(val_sampler, [image_source(c) for c in val_cases], 32)
            self.val = list(val_batches.epoch(0))

    def config_dict(self) -> dict:
        return {
            "spec": asdict(self.config.spec),
            "patch": asdict(self.config.patch),
            "batch_size": self.config.batch_size,
        }

    def build_model(self) -> Classifier3D:
        return Classifier3D(self.config.spec)

    def training_step(self, model, batch):
        x, y = batch
        logits = model(x).logits.float()
        loss = F.binary_cross_entropy_with_logits(logits, y)
        accuracy = ((logits > 0).float() == y).float().mean().item()
        return loss, {"accuracy": accuracy}

    def validate(self, model) -> dict[str, float]:
        if not self.val:
            return {}
        device = next(model.parameters()).device
        logits, labels = [], []
        for x, y in self.val:
            logits.append(model(x.to(device)).logits.float().cpu())
            labels.append(y)
        z, y = torch.cat(logits), torch.cat(labels)
        return {
            "loss": F.binary_cross_entropy_with_logits(z, y).item(),
            "auc": roc_auc(y.numpy(), z.numpy()),
            "accuracy": ((z > 0).float() == y).float().mean().item(),
        }


def train_classifier(
    cases: Sequence[Prepared],
    run_dir: str | Path,
    config: ClassifierTrainConfig,
    fit_config: FitConfig | None = None,
    *,
    val_cases: Sequence[Prepared] = (),
    negative_cases: Sequence[Prepared] = (),
    resume: bool = False,
) -> FitResult:
    """Train a classifier on the cases' patches (weak labels) and return the fit result."""
    fit_config = fit_config or FitConfig()
    task = ClassifierTask(cases, config, val_cases, negative_cases, seed=fit_config.seed)
    if not val_cases and fit_config.select_metric == "loss":
        fit_config.select_metric = "train_loss"
    return fit(task, run_dir, fit_config, resume=resume)


__all__ = ["ClassifierTask", "ClassifierTrainConfig", "train_classifier"]
