"""Training the whole method from prepared cases: classifier, maps, confident voxels,
representation model, optional self-training; and the baselines the evaluation compares
(CAM with GAP and GMP, WS-UNet, S-UNet)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from torch import nn

from wsls.data.preprocess import Prepared
from wsls.models import Classifier3D, ClassifierSpec
from wsls.pipeline.config import StageSchedule, WSLSConfig
from wsls.pipeline.run import VolumeMaps, segment_volume, volume_maps
from wsls.train.classifier import ClassifierTrainConfig, train_classifier
from wsls.train.confident import ConfidentConfig, ConfidentVoxels, precision, select_confident
from wsls.train.embedding import train_embedding
from wsls.train.segmenter import train_segmenter
from wsls.train.task import FitConfig

BASELINES = ("classifier_gap", "classifier_gmp", "ws_unet", "s_unet")


@dataclass
class TrainedModels:
    """A trained method: its config, the ACAM classifier, the representation model, and the
    baselines that were trained (name -> model)."""

    config: WSLSConfig
    classifier: Classifier3D
    embedding: nn.Module
    baselines: dict[str, nn.Module] = field(default_factory=dict)

    def all_models(self) -> dict[str, nn.Module]:
        return {"classifier": self.classifier, "embedding": self.embedding, **self.baselines}


def _fit_config(
    config: WSLSConfig,
    schedule: StageSchedule,
    device: str | None,
    progress: bool,
    select: str = "train_loss",
) -> FitConfig:
    return FitConfig(
        epochs=schedule.epochs,
        seed=config.seed,
        device=device,
        progress=progress,
        select_metric=select,
        select_mode="min",
    )


def _classifier(
    cases, out: Path, config: WSLSConfig, head: str, resume: bool, device, progress, val_cases=()
) -> Classifier3D:
    patch = replace(config.patch, samples_per_epoch=config.classifier.per_epoch)
    spec = ClassifierSpec(len(config.modalities), config.width, config.stages, head, config.fusion)
    train_config = ClassifierTrainConfig(spec, patch, config.batch_size)
    name = "classifier" if head == config.head else f"classifier_{head}"
    fit_config = _fit_config(config, config.classifier, device, progress)
    if val_cases:
        fit_config.select_metric, fit_config.select_mode = "auc", "max"
    result = train_classifier(
        cases, out / "runs" / name, train_config, fit_config, val_cases=val_cases, resume=resume
    )
    return result.model


def train_wsls(
    cases: Sequence[Prepared],
    out_dir: str | Path,
    config: WSLSConfig | None = None,
    *,
    baselines: Sequence[str] = (),
    val_cases: Sequence[Prepared] = (),
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainedModels:
    """Train wsls on prepared cases (weak labels only: patch labels; voxel masks are read only
    to label patches and, if present, to report the confident voxels' precision).

    Args:
        cases: prepared training cases (wsls.data.preprocess).
        out_dir: run folder: runs/<stage>/ (checkpoints, metrics.csv), report.json.
        baselines: any of "classifier_gap", "classifier_gmp", "ws_unet", "s_unet" (S-UNet needs
            voxel masks: it is the fully supervised reference).
        val_cases: held-out cases for the classifier's patch AUC (picks its best epoch).
        resume: continue interrupted stages where they stopped; finished ones are reloaded.
    """
    config = config or WSLSConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unknown = set(baselines) - set(BASELINES)
    if unknown:
        raise ValueError(
            f"train_wsls: unknown baselines {sorted(unknown)}; choose from {BASELINES}"
        )
    log(f"[wsls] classifier ({config.head}) on {len(cases)} cases")
    classifier = _classifier(cases, out, config, config.head, resume, device, progress, val_cases)
    maps: list[VolumeMaps] = [volume_maps(classifier, c.image, c.brain, config) for c in cases]
    confident = [
        select_confident(m.acam, c.brain, m.posterior, config.confident, config.seed + i)
        for i, (c, m) in enumerate(zip(cases, maps, strict=True))
    ]
    report = {"confident": _precision_report(cases, confident)}
    if all(c.mask is not None for c in cases):  # how right each rule is (evaluation only)
        report["rules"] = _compare_rules(cases, maps, config)
    log(f"[wsls] representation model ({config.embedding.kind}) on confident voxels")
    embedding = _embedding(
        cases, confident, out / "runs" / "embedding", config, resume, device, progress
    )
    for round_ in range(config.self_training):
        confident = [
            _self_training_voxels(classifier, embedding, c, m, config, i)
            for i, (c, m) in enumerate(zip(cases, maps, strict=True))
        ]
        report[f"confident_round{round_ + 1}"] = _precision_report(cases, confident)
        log(f"[wsls] self-training round {round_ + 1}")
        embedding = _embedding(
            cases,
            confident,
            out / "runs" / f"embedding_round{round_ + 1}",
            config,
            resume,
            device,
            progress,
        )
    models = TrainedModels(config, classifier, embedding)
    for name in baselines:
        log(f"[wsls] baseline {name}")
        models.baselines[name] = _baseline(name, cases, maps, out, config, resume, device, progress)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return models


def _embedding(cases, confident, run_dir, config, resume, device, progress) -> nn.Module:
    emb_config = replace(config.embedding, steps_per_epoch=config.embedding_schedule.per_epoch)
    fit_config = _fit_config(config, config.embedding_schedule, device, progress)
    return train_embedding(cases, confident, run_dir, emb_config, fit_config, resume=resume).model


def _self_training_voxels(classifier, embedding, case, maps, config, index) -> ConfidentVoxels:
    """Confident voxels from the method's own segmentation: lesion well inside it (and
    intensity-consistent), normal outside a margin around it."""
    from scipy import ndimage as ndi

    mask = segment_volume(classifier, embedding, case.image, case.brain, config, maps).mask
    inner = ndi.binary_erosion(mask, iterations=1) & (maps.posterior >= 0.5)
    outer = ~ndi.binary_dilation(mask, iterations=2) & case.brain
    pseudo_map = np.where(inner, 1.0, np.where(outer, 0.0, 0.5)).astype(np.float32)
    pseudo_post = np.where(inner, 1.0, np.where(outer, 0.0, 0.5)).astype(np.float32)
    rule = replace(
        config.confident,
        rule="refined",
        lesion_map=0.99,
        normal_map=0.01,
        lesion_posterior=0.99,
        normal_posterior=0.01,
    )
    return select_confident(pseudo_map, case.brain, pseudo_post, rule, config.seed + index)


def _baseline(name, cases, maps, out, config, resume, device, progress) -> nn.Module:
    if name.startswith("classifier_"):
        return _classifier(cases, out, config, name.split("_")[1], resume, device, progress)
    if name == "ws_unet":
        targets = [(m.acam >= 0.5) & c.brain for c, m in zip(cases, maps, strict=True)]
    else:
        if any(c.mask is None for c in cases):
            raise ValueError(
                "train_wsls: s_unet (fully supervised) needs voxel masks for every case"
            )
        targets = [c.mask for c in cases]
    seg_config = replace(
        config.segmenter,
        patch=replace(
            config.segmenter.patch, samples_per_epoch=config.segmenter_schedule.per_epoch
        ),
    )
    fit_config = _fit_config(config, config.segmenter_schedule, device, progress)
    return train_segmenter(
        cases, targets, out / "runs" / name, seg_config, fit_config, resume=resume
    ).model


def _compare_rules(cases, maps, config) -> dict:
    """Mean precision of the paper's and the refined confident voxels against the masks."""
    rules = {
        "paper": ConfidentConfig.paper(config.confident.budget),
        "refined": replace(config.confident, rule="refined"),
    }
    out = {}
    for name, rule in rules.items():
        stats = [
            precision(select_confident(m.acam, c.brain, m.posterior, rule, config.seed), c.mask)
            for c, m in zip(cases, maps, strict=True)
        ]
        out[name] = {key: float(np.nanmean([s[key] for s in stats])) for key in stats[0]}
    return out


def _precision_report(cases, confident) -> dict:
    return {
        c.id: precision(s, c.mask) if c.mask is not None else {"lesion_voxels": s.counts()[0]}
        for c, s in zip(cases, confident, strict=True)
    }
