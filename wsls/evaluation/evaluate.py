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

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from wsls.baselines.threshold import ThresholdBaseline
from wsls.errors import UserError
from wsls.evaluation.figure import FigureSlice, render_figure
from wsls.evaluation.methods import (  # noqa: F401 - the row names are part of this API
    ACAM,
    CAM_GAP,
    CAM_GMP,
    FIXED,
    LOCALISATION,
    S_UNET,
    SEGMENTATION,
    TUNED,
    WS_UNET,
    WS_UNET_TUNED,
    WSR,
    CaseContext,
    EvalMethod,
    available,
)
from wsls.evaluation.tables import markdown, summary_rows
from wsls.io.atomic import atomic_write_text
from wsls.io.csvfile import write_csv
from wsls.metrics import dice, dice_curve
from wsls.metrics import evaluate as case_metrics
from wsls.viz import default_slice

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

    def verdicts(self) -> dict[str, dict[str, Any]]:
        """case -> the method's (ACAM+WSR) Dice, quality verdict ("ok" or "check") and flags."""
        return {
            r["case"]: {"dice": r["dice"], "verdict": r["verdict"], "flags": r["flags"]}
            for r in self.per_case
            if r["table"] == SEGMENTATION and r["method"] == WSR and "verdict" in r
        }

    def markdown(self) -> str:
        text = "\n".join(
            markdown(self.summary(t), _TITLES[t]) for t in (LOCALISATION, SEGMENTATION)
        )
        if verdicts := self.verdicts():
            text += f"\nQuality verdict of {WSR} (judged without labels), per case:\n\n"
            text += "".join(
                f"- {case}: Dice {v['dice']:.3f}, {v['verdict']}"
                + (f" ({v['flags']})" if v["flags"] else "")
                + "\n"
                for case, v in verdicts.items()
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
            files[f"table{number}_md"] = atomic_write_text(md, markdown(summary, _TITLES[table]))
        files["tables"] = atomic_write_text(out / "tables.md", self.markdown())
        if self.figure is not None:
            files["figure"] = render_figure(self.figure, out / "figure2.png")
        self.files = files
        return files


def _cases(items: Any, modalities: Sequence[str], layout: str) -> list[Any]:
    from wsls.io.layouts import open_datasets

    if items is None:
        return []
    if isinstance(items, list | tuple) and not items:
        return []
    return open_datasets(items, layout, modalities)[0]


def _load(item: Any) -> Any:
    from wsls.io.case import Case

    if isinstance(item, Case):
        return item
    if hasattr(item, "load"):
        return item.load()
    raise UserError(f"evaluate: expected Case or CaseRef items, got {type(item).__name__}")


def _full_brain(case: Any, preprocess_config: Any) -> np.ndarray:
    from wsls.data.preprocess import brain_mask

    if case.brain is not None:
        return np.asarray(case.brain, bool)
    return brain_mask(case.image, preprocess_config.brain_threshold, preprocess_config.fill_holes)


def recorded_training_cases(bundle: Path, modalities: Sequence[str]) -> list[Any]:
    """The cases a bundle was trained on, from the ``training.json`` beside it (written by
    ``wsls.train``); [] when there is none or the data are no longer where they were."""
    from wsls.io.layouts import open_dataset

    record_path = Path(bundle).parent / "training.json"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return []
    wanted = set(record.get("cases", []))
    cases = []
    for source in record.get("sources", []):
        if source.get("data") and Path(source["data"]).exists():
            cases += [c for c in open_dataset(source["data"], "auto", modalities) if c.id in wanted]
    return cases


def _split(models_arg: Any, tests: list, trains: list | None, needed, notes) -> tuple[list, list]:
    """Training cases (given, else the bundle's record) and the test cases not among them."""
    from wsls.method.trained import bundle_path

    if trains is None:
        if not isinstance(models_arg, str | Path):
            raise UserError("evaluate: give train_cases (thresholds are tuned on them)")
        trains = recorded_training_cases(bundle_path(models_arg), needed)
        if not trains:
            raise UserError(
                "thresholds are tuned on the training cases: give the cases the model was trained "
                "on (--train-data), or cross-validate (--folds)"
            )
    train_ids = {c.id for c in trains}
    kept = [c for c in tests if c.id not in train_ids]
    if len(kept) < len(tests):
        notes.append(f"{len(tests) - len(kept)} training case(s) left out of the test cases")
    if not kept:
        raise UserError("evaluate: every case was used for training: nothing to test on")
    return kept, trains


def _patch_aucs(models, methods, cases, notes) -> dict[str, float]:
    """Patch classification AUC of each classifier on the held-out cases' patches (coarse
    views of the prepared cases, patches labelled from their masks like the training ones)."""
    from wsls.evaluation.patch_auc import patch_auc

    patch = replace(models.config.patch, flip_lr=False)
    nets = {ACAM: models.classifier}
    for m in methods:
        if m.table == LOCALISATION and m.needs is not None:
            nets[m.name] = models.baselines[m.needs]
    out = {}
    for name, net in nets.items():
        try:
            out[name] = patch_auc(net, cases, patch)
        except ValueError as exc:  # e.g. no lesion-free patch among the held-out cases
            notes.append(f"patch AUC of {name} not computed: {str(exc).splitlines()[0]}")
            break
    return out


def _labelled(items, models, role: str, notes: list[str], progress: bool):
    """(case, brain mask on its grid, CaseContext) for each item with a lesion mask."""
    from tqdm.auto import tqdm

    from wsls.data.preprocess import preprocess

    prep = models.config.preprocess
    for item in tqdm(items, desc=f"{role} cases", unit="case", disable=not progress):
        case = _load(item)
        if case.mask is None:
            notes.append(f"{role} case {case.id} has no mask: not used")
            continue
        prepared = preprocess(case.subset(models.config.modalities), prep)
        yield case, _full_brain(case, prep), CaseContext(models, prepared)


def _baseline_view(case: Any, modality: str, brain: np.ndarray) -> Any:
    """The case as the trivial baseline sees it: one modality, the brain mask."""
    return replace(case.subset((modality,)), brain=brain)


def _tune(models, methods, trains, base_mod, cfg, log) -> tuple[dict, dict, list[str]]:
    """Thresholds of the tuned methods and the fitted trivial baselines, on the training cases."""

    notes: list[str] = []
    tuned = [m for m in methods if m.threshold == TUNED]
    grid = np.asarray(sorted(cfg.thresholds), dtype=np.float64)
    curves: dict[str, list[np.ndarray]] = {}
    baseline_cases = []
    for case, brain, ctx in _labelled(trains, models, "training", notes, cfg.progress):
        truth = np.asarray(case.mask, bool)[brain]
        for m in tuned:
            full = ctx.prepared.to_original(m.predict(ctx))[brain]
            curves.setdefault(m.name, []).append(dice_curve(full, truth, grid))
        baseline_cases.append(_baseline_view(case, base_mod, brain))
    if not baseline_cases:
        raise UserError("evaluate: no training case has a lesion mask to tune thresholds on")
    thresholds = {n: float(grid[int(np.argmax(np.mean(c, axis=0)))]) for n, c in curves.items()}
    baselines = {}
    for lcc in (False, True):
        label = f"{base_mod.upper()} threshold" + (" + largest component" if lcc else "")
        baselines[label] = ThresholdBaseline(
            base_mod, largest_component=lcc, normalise=cfg.baseline_normalise
        ).fit(baseline_cases)
        thresholds[label] = float(baselines[label].threshold)
    log(
        "[wsls] thresholds tuned on the training cases: "
        + ", ".join(f"{k} {v:.3g}" for k, v in thresholds.items())
    )
    return thresholds, baselines, notes


def _threshold(method: EvalMethod, thresholds: dict, cfg: EvalConfig) -> float | None:
    if method.threshold == TUNED:
        return thresholds[method.name]
    return cfg.unet_threshold if method.threshold == FIXED else None


def _predictions(ctx, methods, thresholds, baselines, view, cfg) -> dict[str, tuple]:
    """name -> (tables, prediction on the original grid, on the prepared grid, threshold)."""
    preds = {}
    for m in methods:
        value = m.predict(ctx)
        t = _threshold(m, thresholds, cfg)
        small = value if t is None else value >= t
        preds[m.name] = ((m.table,), ctx.prepared.to_original(small), small, t)
    for label, baseline in baselines.items():
        full = baseline.predict(view)
        small = ctx.prepared.from_original(full)
        preds[label] = ((LOCALISATION, SEGMENTATION), full, small, baseline.threshold)
    return preds


def _figure_slice(case, brain, truth, base_mod, ctx, methods, preds) -> FigureSlice:
    k = default_slice(truth, brain[None])
    heat, masks = {}, {}
    for m in methods:
        if m.figure == "heat":
            heat[m.name] = ctx.prepared.to_original(m.predict(ctx))[..., k]
        elif m.figure == "mask":
            masks[m.name] = preds[m.name][1][..., k]
    return FigureSlice(
        case.id,
        k,
        case.channel(base_mod)[..., k],
        truth[..., k],
        tuple(case.spacing[:2]),
        heat=heat,
        masks=masks,
        brain=brain[..., k],
    )


def evaluate(
    models: Any,
    test_cases: Any,
    train_cases: Any = None,
    *,
    config: EvalConfig | None = None,
    layout: str = "auto",
    out_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> Evaluation:
    """Evaluate a trained model on held-out cases (tables 1 and 2).

    Args:
        models: a ``TrainedModels`` or a bundle (or run) path. Its baselines
            ("classifier_gap", "classifier_gmp", "ws_unet", "s_unet") give the comparison rows;
            missing ones are left out with a note.
        test_cases: cases with lesion masks to score: dataset folders (or a list of them), a
            ``Layout``, or a list of ``CaseRef`` / ``Case``. Cases the model was trained on
            are left out (with a note).
        train_cases: the cases the model was trained on (same forms): thresholds are tuned
            on them, never on the test cases. None: the ``training.json`` that ``wsls.train``
            wrote beside the bundle says which they are.
        config: :class:`EvalConfig`.
        out_dir: if given, the tables, per-case CSV and the figure are written there.
    Returns:
        An :class:`Evaluation`.
    """

    from wsls.io.modalities import normalise_modalities
    from wsls.io.outputs import check_output
    from wsls.method.coarse import coarse_case
    from wsls.method.trained import TrainedModels, bundle_path, load_models

    cfg = config or EvalConfig()
    if out_dir is not None:  # before any work: a folder that cannot be written fails now
        check_output(out_dir, kind="folder", what="output folder")
    trained = models if isinstance(models, TrainedModels) else load_models(bundle_path(models))
    modalities = tuple(trained.config.modalities)
    base_mod = normalise_modalities([cfg.baseline_modality])[0]
    needed = modalities + ((base_mod,) if base_mod not in modalities else ())
    methods, notes = available(trained, cfg.tune_ws_unet)
    tests = _cases(test_cases, needed, layout)
    if not tests:
        raise UserError("evaluate: no test cases")
    trains = None if train_cases is None else _cases(train_cases, needed, layout)
    if trains is not None and not trains:
        raise UserError("evaluate: no training cases to tune the thresholds on")
    tests, trains = _split(models, tests, trains, needed, notes)
    thresholds, baselines, tune_notes = _tune(trained, methods, trains, base_mod, cfg, log)
    notes += tune_notes

    rows: list[dict[str, Any]] = []
    figure: tuple[int, FigureSlice] | None = None
    auc_cases = []  # coarse views of the scored cases, for the patch AUC
    for case, brain, ctx in _labelled(tests, trained, "test", notes, cfg.progress):
        truth = np.asarray(case.mask, bool)
        auc_cases.append(coarse_case(ctx.prepared, trained.config.classifier_scale))
        view = _baseline_view(case, base_mod, brain)
        preds = _predictions(ctx, methods, thresholds, baselines, view, cfg)
        spacing = case.spacing if cfg.hd95 else None
        for name, (tables, full, small, t) in preds.items():
            scores = case_metrics(full, truth, brain, spacing)
            if ctx.prepared.mask is not None:
                scores["dice_prepared"] = dice(small, ctx.prepared.mask, ctx.prepared.brain)
            for table in tables:
                rows.append({"table": table, "method": name, "case": case.id, **scores})
                rows[-1]["threshold"] = t
                if name == WSR:  # the method says itself which masks to check
                    quality = ctx.result().quality
                    rows[-1].update(verdict=quality.verdict, flags="; ".join(quality.flags))
        lesion = int(truth.sum())
        if cfg.figure and (figure is None or lesion > figure[0]):
            figure = (lesion, _figure_slice(case, brain, truth, base_mod, ctx, methods, preds))
    auc = _patch_aucs(trained, methods, auc_cases, notes)
    evaluation = Evaluation(rows, thresholds, figure[1] if figure else None, auc, notes)
    if out_dir is not None:
        files = evaluation.write(out_dir)
        log(f"[wsls] tables and figure written to {Path(out_dir)} ({len(files)} files)")
    return evaluation
