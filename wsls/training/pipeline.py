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

from wsls.data.disk_case import DiskCase
from wsls.data.preprocess import Prepared
from wsls.io.atomic import atomic_write_text
from wsls.method.config import StageSchedule, WSLSConfig
from wsls.method.segment import method_device
from wsls.method.trained import TrainedModels
from wsls.models import Classifier3D, ClassifierEnsemble, ClassifierSpec
from wsls.training.case_stages import (
    case_source,
    coarse_stage,
    maps_stage,
    mean_rule_stats,
    self_training_stage,
)
from wsls.training.case_store import CaseStore, fingerprint
from wsls.training.classifier import ClassifierTrainConfig, train_classifier
from wsls.training.distributed import init_distributed, shutdown_distributed
from wsls.training.embedding import train_embedding
from wsls.training.per_case import StoredConfident, resolve_workers, run_per_case
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


def _method_classifier(
    cases, out: Path, config: WSLSConfig, resume: bool, device, progress, val_cases=()
) -> nn.Module:
    """The method's classifier, or its ensemble of ``classifier_members`` (member i trained
    from seed ``config.seed + i`` in ``runs/classifier_member<i + 1>``; the first in
    ``runs/classifier``, as a single classifier is)."""
    members = [
        _classifier(cases, out, config, config.head, resume, device, progress, val_cases, i)
        for i in range(config.classifier_members)
    ]
    return members[0] if len(members) == 1 else ClassifierEnsemble.of(members)


def _classifier(
    cases,
    out: Path,
    config: WSLSConfig,
    head: str,
    resume: bool,
    device,
    progress,
    val_cases=(),
    member: int = 0,
) -> Classifier3D:
    schedule = config.classifier if head == config.head else config.baseline_classifier
    patch = replace(config.patch, samples_per_epoch=schedule.per_epoch)
    spec = ClassifierSpec(len(config.modalities), config.width, config.stages, head, config.fusion)
    train_config = ClassifierTrainConfig(spec, patch, config.batch_size)
    name = "classifier" if head == config.head else f"classifier_{head}"
    if member:
        name += f"_member{member + 1}"
    fit_config = _fit_config(config, schedule, device, progress)
    fit_config.seed += member
    fit_config.batch_norm_batches = config.classifier_batch_norm
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
    workers: int | None = None,
) -> TrainedModels:
    """Train wsls on prepared cases (weak labels only: patch labels; voxel masks are read only
    to label patches and, if present, to report the confident voxels' precision).

    Args:
        cases: prepared training cases (wsls.data.preprocess).
        out_dir: run folder: runs/<stage>/ (checkpoints, metrics.csv), report.json.
        baselines: any of "classifier_gap", "classifier_gmp", "ws_unet", "s_unet" (S-UNet needs
            voxel masks: it is the fully supervised reference).
        val_cases: held-out cases for the classifier's patch AUC (picks its best epoch).
        resume: continue interrupted stages where they stopped; finished ones are reloaded,
            and the per-case stages reuse every case whose outputs are whole on disk.
        workers: threads for the per-case stages (None: one case at a time).

    The per-case stages (the classifier's coarse views, the maps with the intensity model and
    the confident voxels, each self-training round) run case by case and write each case's
    outputs under ``out_dir/cases/<stage>/``; the later stages read them back from there, so
    memory does not grow with the number of cases (cases given as ``DiskCase``, as
    ``wsls.train`` gives them from its cache, keep their volumes on disk too).
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
            info,
            workers,
        )
    finally:
        shutdown_distributed(info)


def _train_stages(
    cases, out_dir, config, baselines, val_cases, resume, device, progress, log, info, workers
) -> TrainedModels:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unknown = set(baselines) - set(BASELINES)
    if unknown:
        raise ValueError(
            f"train_wsls: unknown baselines {sorted(unknown)}; choose from {BASELINES}"
        )
    per_case = _PerCase(cases, out / "cases", resume, progress, workers, info)
    members = f" x {config.classifier_members}" if config.classifier_members > 1 else ""
    log(f"[wsls] classifier ({config.head}{members}) on {len(cases)} cases")
    coarse = per_case.coarse(cases, "coarse", config.classifier_scale)
    coarse_val = per_case.coarse(val_cases, "coarse_val", config.classifier_scale)
    classifier = _method_classifier(coarse, out, config, resume, device, progress, coarse_val)
    log("[wsls] maps, intensity model and confident voxels, case by case")
    maps_key = fingerprint("maps", classifier, config.to_dict(), str(method_device(classifier)))
    maps = per_case.run("maps", maps_key, maps_stage(cases, classifier, config))
    metas = list(maps.metas())
    report = {"confident": {c.id: m["precision"] for c, m in zip(cases, metas, strict=True)}}
    if all("rules" in m for m in metas):  # how right each rule is (evaluation only)
        report["rules"] = mean_rule_stats(metas)
    log(f"[wsls] representation model ({config.embedding.kind}) on confident voxels")
    embedding = _embedding(
        cases, StoredConfident(maps), out / "runs" / "embedding", config, resume, device, progress
    )
    for round_ in range(config.self_training):
        name = f"self_training{round_ + 1}"
        key = fingerprint(name, classifier, embedding, maps_key)
        log(f"[wsls] self-training round {round_ + 1}: confident voxels, case by case")
        stage = self_training_stage(cases, classifier, embedding, maps, config)
        store = per_case.run(name, key, stage)
        report[f"confident_round{round_ + 1}"] = {
            c.id: m["precision"] for c, m in zip(cases, store.metas(), strict=True)
        }
        log(f"[wsls] self-training round {round_ + 1}")
        embedding = _embedding(
            cases,
            StoredConfident(store),
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
    if info.rank == 0:
        atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    return models


class _PerCase:
    """Runs the per-case stages of one training into ``<run>/cases/<stage>/``."""

    def __init__(self, cases, root: Path, resume, progress, workers, info) -> None:
        self.root, self.resume, self.progress = root, resume, progress
        self.workers, self.info = resolve_workers(workers), info
        self.ids = [c.id for c in cases]
        self.sources = [case_source(c) for c in cases]

    def run(self, stage: str, key: str, compute, ids=None, sources=None) -> CaseStore:
        store = CaseStore(self.root / stage, key, ids or self.ids, sources or self.sources)
        run_per_case(
            store,
            compute,
            what=stage.replace("_", " "),
            resume=self.resume,
            progress=self.progress,
            workers=self.workers,
            rank=self.info.rank,
            world_size=self.info.world_size,
        )
        if self.info.distributed:  # every rank reads the cases the others computed
            import torch.distributed as dist

            dist.barrier()
        return store

    def coarse(self, cases, stage: str, factor: int) -> list:
        """The classifier's views of ``cases``, stored (the cases themselves at factor 1)."""
        if factor == 1 or not cases:
            return list(cases)
        ids, sources = [c.id for c in cases], [case_source(c) for c in cases]
        compute = coarse_stage(cases, factor)
        store = self.run(stage, fingerprint("coarse", factor), compute, ids, sources)
        return [DiskCase(c.id, store.folder(i), c.label) for i, c in enumerate(cases)]


def _embedding(cases, confident, run_dir, config, resume, device, progress) -> nn.Module:
    emb_config = replace(config.embedding, steps_per_epoch=config.embedding_schedule.per_epoch)
    fit_config = _fit_config(config, config.embedding_schedule, device, progress)
    return train_embedding(cases, confident, run_dir, emb_config, fit_config, resume=resume).model


def _baseline(name, cases, coarse, maps, out, config, resume, device, progress) -> nn.Module:
    """CAM(GAP)/CAM(GMP) classifiers on the coarse view; the U-Nets on the prepared grid."""
    if name.startswith("classifier_"):
        return _classifier(coarse, out, config, name.split("_")[1], resume, device, progress)
    if name == "ws_unet":  # pseudo-labels: ACAM above its Otsu threshold inside the brain
        targets = []  # in memory: the baselines are not scaled (one bool volume per case)
        for i, c in enumerate(cases):
            acam, brain = np.asarray(maps.array(i, "acam")), np.asarray(c.brain)
            targets.append((acam >= otsu_threshold(acam[brain])) & brain)
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
