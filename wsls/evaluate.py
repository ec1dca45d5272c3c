"""Evaluation like the paper's tables 1 and 2 (DESIGN sections 1 and 6).

Table 1 (localisation): CAM(GMP), CAM(GAP) and ACAM, each map thresholded at the value that
maximises the mean Dice over the TRAINING cases. Table 2 (segmentation): WS-UNet (probability
>= 0.5, and tuned like the maps), ACAM+WSR (the method's own mask: nothing tuned) and S-UNet
(the fully supervised reference). Both tables carry the trivial baseline: one modality (FLAIR)
above a threshold tuned on the training cases inside the brain, with and without keeping the
largest connected component.

Voxel masks are read for that tuning and for scoring only. Metrics (Dice, sensitivity,
specificity, HD95) are computed per case inside the brain on the ORIGINAL full grid (the
prepared-grid predictions are mapped back with ``Prepared.to_original``); ``dice_prepared`` is
the Dice on the prepared (network) grid. Summaries are mean ± sd over cases.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from wsls.figure import FigureSlice, render_figure
from wsls.inputs import subset_case
from wsls.metrics import dice, dice_curve
from wsls.metrics import evaluate as case_metrics
from wsls.tables import markdown, summary_rows, write_csv
from wsls.viz import default_slice

LOCALISATION, SEGMENTATION = "localisation", "segmentation"
CAM_GMP, CAM_GAP, ACAM = "CAM(GMP)", "CAM(GAP)", "ACAM"
WS_UNET, WS_UNET_TUNED, WSR, S_UNET = "WS-UNet", "WS-UNet (tuned)", "ACAM+WSR", "S-UNet"
# map name -> baseline network that makes it (None: the method's own classifier)
_MAPS = {CAM_GMP: "classifier_gmp", CAM_GAP: "classifier_gap", ACAM: None}
_TITLES = {
    LOCALISATION: "Table 1: localisation (maps thresholded at the training-tuned value)",
    SEGMENTATION: "Table 2: segmentation",
}


@dataclass
class EvalConfig:
    """How to evaluate.

    Attributes:
        baseline_modality: the trivial baseline's image ("flair").
        baseline_normalise: z-score that image inside each brain first (False: raw values,
            e.g. data already z-scored such as the shared BraTS cases).
        thresholds: candidate thresholds for the maps and the tuned WS-UNet.
        unet_threshold: the fixed probability threshold of WS-UNet and S-UNet.
        tune_ws_unet: also report WS-UNet at a threshold tuned on the training cases.
        hd95: compute HD95 (mm) too.
        figure: write the figure-2-like PNG (the test case with the most lesion).
        progress: tqdm bars.
    """

    baseline_modality: str = "flair"
    baseline_normalise: bool = True
    thresholds: tuple[float, ...] = tuple(np.round(np.arange(0.02, 1.0, 0.02), 2).tolist())
    unet_threshold: float = 0.5
    tune_ws_unet: bool = True
    hd95: bool = True
    figure: bool = True
    progress: bool = True


@dataclass
class Evaluation:
    """Per-case results and the tables made from them.

    Attributes:
        per_case: one row per (table, method, case): dice, sensitivity, specificity, hd95,
            dice_prepared, threshold.
        thresholds: method -> the threshold tuned on the training cases.
        figure: the slice shown in the figure, or None.
        notes: what was left out and why.
        patch_auc: classifier -> patch classification AUC on the held-out cases.
        files: name -> path of what :meth:`write` wrote.
    """

    per_case: list[dict[str, Any]]
    thresholds: dict[str, float]
    figure: FigureSlice | None = None
    patch_auc: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    def methods(self, table: str) -> list[str]:
        seen: list[str] = []
        for row in self.per_case:
            if row["table"] == table and row["method"] not in seen:
                seen.append(row["method"])
        return seen

    def summary(self, table: str) -> list[dict[str, Any]]:
        """Mean ± sd per method of ``table`` ("localisation" or "segmentation")."""
        return summary_rows(self.per_case, table, self.methods(table))

    def mean(self, table: str, method: str, metric: str = "dice") -> float:
        """Mean of one metric for one method (NaN if absent)."""
        for row in self.summary(table):
            if row["method"] == method:
                return float(row.get(f"{metric}_mean", math.nan))
        return math.nan

    def markdown(self) -> str:
        text = "\n".join(
            markdown(self.summary(t), _TITLES[t]) for t in (LOCALISATION, SEGMENTATION)
        )
        if self.patch_auc:
            text += (
                "\nPatch classification AUC on the held-out cases: "
                + ", ".join(f"{name} {auc:.3f}" for name, auc in self.patch_auc.items())
                + "\n"
            )
        if self.notes:
            text += "\n" + "\n".join(f"- {n}" for n in self.notes) + "\n"
        return text

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write table1_localisation.{csv,md}, table2_segmentation.{csv,md}, per_case.csv,
        tables.md and figure2.png into ``out_dir``; returns name -> path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {"per_case": write_csv(out / "per_case.csv", self.per_case)}
        for number, table in ((1, LOCALISATION), (2, SEGMENTATION)):
            summary = self.summary(table)
            files[f"table{number}_csv"] = write_csv(out / f"table{number}_{table}.csv", summary)
            md = out / f"table{number}_{table}.md"
            md.write_text(markdown(summary, _TITLES[table]))
            files[f"table{number}_md"] = md
        (out / "tables.md").write_text(self.markdown())
        files["tables"] = out / "tables.md"
        if self.figure is not None:
            files["figure"] = render_figure(self.figure, out / "figure2.png")
        self.files = files
        return files


def _maps(
    models: Any, prepared: Any, wanted: Sequence[str], method: bool
) -> tuple[dict[str, np.ndarray], Any]:
    """name -> (h, w, d) float map on the prepared grid for the wanted methods the bundle has;
    and, with ``method``, the method's VolumeMaps (ACAM and the intensity posterior)."""
    from wsls.pipeline.run import coarse_view_maps, volume_maps
    from wsls.train.segmenter import segmenter_probability

    config, nets = models.config, models.baselines
    vm = volume_maps(models.classifier, prepared.image, prepared.brain, config) if method else None
    out = {}
    if ACAM in wanted:
        out[ACAM] = (
            vm.acam
            if vm
            else coarse_view_maps(models.classifier, prepared.image, prepared.brain, config)[1]
        )
    for name, net in _MAPS.items():
        if net is not None and net in nets and name in wanted:
            out[name] = coarse_view_maps(nets[net], prepared.image, prepared.brain, config)[1]
    x = torch.from_numpy(np.ascontiguousarray(prepared.image, dtype=np.float32))
    unet_window = config.segmenter.patch.shape[0]
    for name, net in ((WS_UNET, "ws_unet"), (S_UNET, "s_unet")):
        if net in nets and name in wanted:
            prob = segmenter_probability(nets[net], x, unet_window).numpy()
            out[name] = (prob * prepared.brain).astype(np.float32)
    return out, vm


def _as_cases(items: Any, modalities: Sequence[str], layout: str) -> list[Any]:
    from wsls.data.layouts import Layout, open_dataset

    if items is None:
        return []
    if isinstance(items, str | Path):
        return list(open_dataset(items, layout, modalities))
    if isinstance(items, Layout):
        return list(items)
    return list(items)


def _load(item: Any) -> Any:
    from wsls.data.case import Case

    if isinstance(item, Case):
        return item
    if hasattr(item, "load"):
        return item.load()
    raise TypeError(f"evaluate: expected Case or CaseRef items, got {type(item).__name__}")


def _full_brain(case: Any, preprocess_config: Any) -> np.ndarray:
    from wsls.data.preprocess import brain_mask

    if case.brain is not None:
        return np.asarray(case.brain, bool)
    return brain_mask(case.image, preprocess_config.brain_threshold, preprocess_config.fill_holes)


def _patch_aucs(models, cases, notes) -> dict[str, float]:
    """Patch classification AUC of each classifier on the held-out cases' patches (coarse
    views of the prepared cases, patches labelled from their masks like the training ones)."""
    from dataclasses import replace

    from wsls.train.classifier import ClassifierTrainConfig, patch_auc

    config = models.config
    nets = {ACAM: models.classifier}
    nets.update({n: models.baselines[b] for n, b in _MAPS.items() if b and b in models.baselines})
    out = {}
    for name, net in nets.items():
        train_config = ClassifierTrainConfig(net.spec, replace(config.patch, flip_lr=False))
        try:
            out[name] = patch_auc(net, cases, train_config)
        except ValueError as exc:  # e.g. no lesion-free patch among the held-out cases
            notes.append(f"patch AUC of {name} not computed: {str(exc).splitlines()[0]}")
            break
    return out


def evaluate(
    models: Any,
    test_cases: Any,
    train_cases: Any,
    *,
    config: EvalConfig | None = None,
    layout: str = "auto",
    out_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> Evaluation:
    """Evaluate a trained model on held-out cases (tables 1 and 2).

    Args:
        models: a ``TrainedModels`` or a bundle path. Its baselines ("classifier_gap",
            "classifier_gmp", "ws_unet", "s_unet") give the comparison rows; missing ones are
            left out with a note.
        test_cases: cases with lesion masks to score: a dataset path, a ``Layout``, or a list
            of ``CaseRef`` / ``Case``.
        train_cases: the cases the model was trained on (same forms): thresholds are tuned
            on them, never on the test cases.
        config: :class:`EvalConfig`.
        out_dir: if given, the tables, per-case CSV and the figure are written there.
    Returns:
        An :class:`Evaluation`.
    """
    from tqdm.auto import tqdm

    from wsls.api import resolve_model
    from wsls.data.baseline import ThresholdBaseline
    from wsls.data.modalities import normalise_modalities
    from wsls.data.preprocess import preprocess
    from wsls.pipeline.coarse import coarse_case
    from wsls.pipeline.run import segment_volume

    cfg = config or EvalConfig()
    models = resolve_model(models)
    modalities = tuple(models.config.modalities)
    base_mod = normalise_modalities([cfg.baseline_modality])[0]
    needed = modalities + ((base_mod,) if base_mod not in modalities else ())
    tests = _as_cases(test_cases, needed, layout)
    trains = _as_cases(train_cases, needed, layout)
    if not tests:
        raise ValueError("evaluate: no test cases")
    if not trains:
        raise ValueError("evaluate: no training cases to tune the thresholds on")
    notes: list[str] = []
    nets = models.baselines
    for name, net in (*((n, b) for n, b in _MAPS.items() if b), (WS_UNET, "ws_unet")):
        if net not in nets:
            notes.append(f"{name}: the bundle has no {net!r} model (train it with baselines=)")
    if "s_unet" not in nets:
        notes.append(f"{S_UNET}: the bundle has no 's_unet' model (train it with baselines=)")
    tuned = [CAM_GMP, CAM_GAP, ACAM] + ([WS_UNET] if cfg.tune_ws_unet else [])
    prep_cfg = models.config.preprocess
    grid = np.asarray(sorted(cfg.thresholds), dtype=np.float64)

    # 1. training cases: Dice curves of every map, and the trivial baseline's cases
    curves: dict[str, list[np.ndarray]] = {}
    baseline_cases = []
    bar = tqdm(trains, desc="tuning on training cases", unit="case", disable=not cfg.progress)
    for item in bar:
        case = _load(item)
        if case.mask is None:
            notes.append(f"training case {case.id} has no mask: not used for tuning")
            continue
        brain = _full_brain(case, prep_cfg)
        prepared = preprocess(subset_case(case, modalities), prep_cfg)
        maps, _ = _maps(models, prepared, tuned, method=False)
        truth = np.asarray(case.mask, bool)[brain]
        for name in tuned:
            if name in maps:
                full = prepared.to_original(maps[name])[brain]
                curves.setdefault(name, []).append(dice_curve(full, truth, grid))
        channel = case.channel(base_mod)[None]
        baseline_cases.append(
            SimpleNamespace(
                id=case.id, image=channel, modalities=(base_mod,), mask=case.mask, brain=brain
            )
        )
    if not baseline_cases:
        raise ValueError("evaluate: no training case has a lesion mask to tune thresholds on")
    thresholds = {
        name: float(grid[int(np.argmax(np.mean(c, axis=0)))]) for name, c in curves.items()
    }
    baselines = {}
    for lcc in (False, True):
        label = f"{base_mod.upper()} threshold" + (" + largest component" if lcc else "")
        baselines[label] = ThresholdBaseline(
            base_mod, largest_component=lcc, normalise=cfg.baseline_normalise
        ).fit(baseline_cases)
        thresholds[label] = float(baselines[label].threshold)
    del baseline_cases
    log(
        "[wsls] thresholds tuned on the training cases: "
        + ", ".join(f"{k} {v:.3g}" for k, v in thresholds.items())
    )

    # 2. test cases
    rows: list[dict[str, Any]] = []
    figure: tuple[int, FigureSlice] | None = None
    auc_cases = []  # coarse views of the scored cases, for the patch AUC
    everything = [*_MAPS, WS_UNET, S_UNET]
    bar = tqdm(tests, desc="evaluating test cases", unit="case", disable=not cfg.progress)
    for item in bar:
        case = _load(item)
        if case.mask is None:
            notes.append(f"test case {case.id} has no mask: not scored")
            continue
        brain = _full_brain(case, prep_cfg)
        truth = np.asarray(case.mask, bool)
        prepared = preprocess(subset_case(case, modalities), prep_cfg)
        maps, vm = _maps(models, prepared, everything, method=True)
        auc_cases.append(coarse_case(prepared, models.config.classifier_scale))
        result = segment_volume(
            models.classifier,
            models.embedding,
            prepared.image,
            prepared.brain,
            models.config,
            maps=vm,
        )
        preds: dict[str, tuple[str, np.ndarray, np.ndarray, float | None]] = {}
        full_maps = {}
        for name in (CAM_GMP, CAM_GAP, ACAM):
            if name in maps:
                full_maps[name] = prepared.to_original(maps[name])
                t = thresholds[name]
                preds[name] = (LOCALISATION, full_maps[name] >= t, maps[name] >= t, t)
        if WS_UNET in maps:
            full_ws = prepared.to_original(maps[WS_UNET])
            t = cfg.unet_threshold
            preds[WS_UNET] = (SEGMENTATION, full_ws >= t, maps[WS_UNET] >= t, t)
            if WS_UNET in thresholds:
                t = thresholds[WS_UNET]
                preds[WS_UNET_TUNED] = (SEGMENTATION, full_ws >= t, maps[WS_UNET] >= t, t)
        preds[WSR] = (SEGMENTATION, prepared.to_original(result.mask), result.mask, None)
        if S_UNET in maps:
            t = cfg.unet_threshold
            preds[S_UNET] = (
                SEGMENTATION,
                prepared.to_original(maps[S_UNET]) >= t,
                maps[S_UNET] >= t,
                t,
            )
        light = SimpleNamespace(
            image=case.channel(base_mod)[None],
            modalities=(base_mod,),
            mask=truth,
            brain=brain,
            id=case.id,
        )
        for label, baseline in baselines.items():
            full = baseline.predict(light)
            small = prepared.from_original(full)
            for table in (LOCALISATION, SEGMENTATION):
                preds[f"{table}:{label}"] = (table, full, small, baseline.threshold)
        spacing = case.spacing if cfg.hd95 else None
        prepared_truth = prepared.mask
        for key, (table, full, small, t) in preds.items():
            row = {"table": table, "method": key.split(":", 1)[-1], "case": case.id}
            row.update(case_metrics(full, truth, brain, spacing))
            if prepared_truth is not None:
                row["dice_prepared"] = dice(small, prepared_truth, prepared.brain)
            row["threshold"] = t
            rows.append(row)
        lesion = int(truth.sum())
        if cfg.figure and (figure is None or lesion > figure[0]):
            k = default_slice(truth, brain[None])
            figure = (
                lesion,
                FigureSlice(
                    case.id,
                    k,
                    case.channel(base_mod)[..., k],
                    truth[..., k],
                    tuple(case.spacing[:2]),
                    heat={n: full_maps[n][..., k] for n in (CAM_GAP, ACAM) if n in full_maps},
                    masks={n: preds[n][1][..., k] for n in (WSR, S_UNET) if n in preds},
                    brain=brain[..., k],
                ),
            )
    auc = _patch_aucs(models, auc_cases, notes)
    evaluation = Evaluation(
        rows, thresholds, figure[1] if figure else None, notes=notes, patch_auc=auc
    )
    if out_dir is not None:
        files = evaluation.write(out_dir)
        log(f"[wsls] tables and figure written to {Path(out_dir)} ({len(files)} files)")
    return evaluation
