"""Training the whole method from prepared cases: classifier, maps, confident voxels,
representation model, optional self-training; and the baselines the evaluation compares
(CAM with GAP and GMP, WS-UNet, S-UNet)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from torch import nn

from wsls.data.preprocess import Prepared
from wsls.io.atomic import atomic_write_text
from wsls.method.coarse import coarse_case
from wsls.method.confident import ConfidentConfig, ConfidentVoxels, precision, select_confident
from wsls.method.config import StageSchedule, WSLSConfig
from wsls.method.segment import VolumeMaps, segment_volume, volume_maps
from wsls.method.trained import TrainedModels
from wsls.models import Classifier3D, ClassifierSpec
from wsls.training.classifier import ClassifierTrainConfig, train_classifier
from wsls.training.distributed import init_distributed, shutdown_distributed
from wsls.training.embedding import train_embedding
from wsls.training.segmenter import train_segmenter
from wsls.training.task import FitConfig

BASELINES = ("classifier_gap", "classifier_gmp", "ws_unet", "s_unet")


def _fit_config(
    config: WSLSConfig, schedule: StageSchedule, device: str | None, progress: bool
) -> FitConfig:
    return FitConfig(
        epochs=schedule.epochs,
        seed=config.seed,
        device=device,
        progress=progress,
        select_metric="train_loss",
        select_mode="min",
    )


def _classifier(
    cases, out: Path, config: WSLSConfig, head: str, resume: bool, device, progress, val_cases=()
) -> Classifier3D:
    schedule = config.classifier if head == config.head else config.baseline_classifier
    patch = replace(config.patch, samples_per_epoch=schedule.per_epoch)
    spec = ClassifierSpec(len(config.modalities), config.width, config.stages, head, config.fusion)
    train_config = ClassifierTrainConfig(spec, patch, config.batch_size)
    name = "classifier" if head == config.head else f"classifier_{head}"
    fit_config = _fit_config(config, schedule, device, progress)
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
    # Under torchrun, one process group for every stage: each fit() reuses it (creating and
    # destroying one per stage hangs the second stage's rendezvous).
    info = init_distributed(device)
    try:
        return _train_stages(
            cases,
            out_dir,
            config,
            baselines,
            val_cases,
            resume,
            device,
            progress,
            log if info.rank == 0 else (lambda _: None),
            info.rank,
        )
    finally:
        shutdown_distributed(info)


def _train_stages(
    cases, out_dir, config, baselines, val_cases, resume, device, progress, log, rank
) -> TrainedModels:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unknown = set(baselines) - set(BASELINES)
    if unknown:
        raise ValueError(
            f"train_wsls: unknown baselines {sorted(unknown)}; choose from {BASELINES}"
        )
    log(f"[wsls] classifier ({config.head}) on {len(cases)} cases")
    coarse = [coarse_case(c, config.classifier_scale) for c in cases]
    coarse_val = [coarse_case(c, config.classifier_scale) for c in val_cases]
    classifier = _classifier(coarse, out, config, config.head, resume, device, progress, coarse_val)
    maps: list[VolumeMaps] = [volume_maps(classifier, c.image, c.brain, config) for c in cases]
    confident = [
        _normal_only_if_healthy(
            c, select_confident(m.acam, c.brain, m.posterior, config.confident, config.seed + i)
        )
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
            _normal_only_if_healthy(
                c, _self_training_voxels(classifier, embedding, c, m, config, i)
            )
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
        models.baselines[name] = _baseline(
            name, cases, coarse, maps, out, config, resume, device, progress
        )
    if rank == 0:
        atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    return models


def _normal_only_if_healthy(case, selection: ConfidentVoxels) -> ConfidentVoxels:
    """A case labelled lesion-free (image label 0) can only give normal voxels: its map's
    brightest spot is not a lesion."""
    if case.label is not None and case.label == 0:
        keep = selection.labels == 0
        return ConfidentVoxels(selection.coords[keep], selection.labels[keep])
    return selection


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
    pseudo = np.where(inner, 1.0, np.where(outer, 0.0, 0.5)).astype(np.float32)  # map and posterior
    rule = replace(
        config.confident,
        rule="refined",
        lesion_map=0.99,
        normal_map=0.01,
        lesion_posterior=0.99,
        normal_posterior=0.01,
    )
    return select_confident(pseudo, case.brain, pseudo, rule, config.seed + index)


def _baseline(name, cases, coarse, maps, out, config, resume, device, progress) -> nn.Module:
    """CAM(GAP)/CAM(GMP) classifiers on the coarse view; the U-Nets on the prepared grid."""
    if name.startswith("classifier_"):
        return _classifier(coarse, out, config, name.split("_")[1], resume, device, progress)
    if name == "ws_unet":  # pseudo-labels: ACAM above its Otsu threshold inside the brain
        targets = [
            (m.acam >= otsu_threshold(m.acam[c.brain])) & c.brain
            for c, m in zip(cases, maps, strict=True)
        ]
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
        out[name] = {key: _mean_defined([s[key] for s in stats]) for key in stats[0]}
    return out


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The threshold that maximises the between-class variance of values (Otsu)."""
    if values.size == 0 or values.max() <= values.min():
        return float(values.max()) if values.size else 0.5
    hist, edges = np.histogram(values, bins=bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])


def _mean_defined(values) -> float:
    """Mean of the values that are not NaN (a lesion-free case has no lesion precision)."""
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def _precision_report(cases, confident) -> dict:
    return {
        c.id: precision(s, c.mask) if c.mask is not None else {"lesion_voxels": s.counts()[0]}
        for c, s in zip(cases, confident, strict=True)
    }
