"""Cross-validation: train on all folds but one, evaluate on that one, rotate, pool the tables.

With as many folds as cases it is leave-one-case-out (the protocol of the BraTS acceptance:
train on three shared cases, test on the fourth, all four rotations reported).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wsls.errors import UserError
from wsls.evaluation.evaluate import EvalConfig, Evaluation, evaluate


def split_folds(cases: Sequence[Any], folds: int) -> list[list[Any]]:
    """Round-robin folds (case i goes to fold i mod k) over the cases in their given order."""
    if folds < 2:
        raise UserError(f"cross-validation needs at least 2 folds, got {folds}")
    k = min(folds, len(cases))
    if k < 2:
        raise UserError(f"cross-validation needs at least 2 cases, got {len(cases)}")
    return [list(cases[i::k]) for i in range(k)]


def cross_validate(
    cases: Sequence[Any],
    config: Any,
    folds: int,
    out_dir: str | Path,
    *,
    baselines: Sequence[str] = ("classifier_gap", "classifier_gmp", "ws_unet", "s_unet"),
    eval_config: EvalConfig | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Evaluation:
    """Train and evaluate ``folds`` times; the pooled per-case rows carry a ``fold`` column.

    Args:
        cases: ``CaseRef`` / ``Case`` items with lesion masks.
        config: the ``WSLSConfig`` trained in every fold.
        out_dir: ``fold<i>/`` (run folder, ``bundle/``, ``evaluation/``) per fold, and the
            pooled tables and figure at the top.
        resume: reuse a fold's bundle when it exists (and resume interrupted training).
    """
    from wsls.training.run import train

    out = Path(out_dir)
    rows: list[dict[str, Any]] = []
    thresholds: dict[str, float] = {}
    notes: list[str] = []
    figure = None
    groups = split_folds(list(cases), folds)
    for i, test in enumerate(groups, start=1):
        tests = {id(c) for c in test}
        training = [c for c in cases if id(c) not in tests]
        run = out / f"fold{i}"
        log(
            f"[wsls] fold {i}/{len(groups)}: train on {len(training)}, test on "
            + ", ".join(str(c.id) for c in test)
        )
        bundle = run / "bundle"
        if not (resume and (bundle / "config.json").exists()):
            bundle = train(
                training,
                run,
                config,
                baselines=baselines,
                resume=resume,
                device=device,
                progress=progress,
                log=log,
            )
        fold_eval = evaluate(
            bundle, test, training, config=eval_config, out_dir=run / "evaluation", log=log
        )
        rows.extend({**row, "fold": i} for row in fold_eval.per_case)
        thresholds.update({f"fold{i} {k}": v for k, v in fold_eval.thresholds.items()})
        notes.extend(f"fold {i}: {n}" for n in fold_eval.notes)
        figure = fold_eval.figure or figure
    pooled = Evaluation(rows, thresholds, figure, notes=notes)
    pooled.write(out)
    return pooled


def cross_validate_datasets(
    model: Any,
    data: Any,
    folds: int,
    out_dir: str | Path,
    *,
    layout: str = "auto",
    eval_config: EvalConfig | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> Evaluation:
    """Cross-validate the configuration (and baselines) of a trained ``model`` on the labelled
    cases of ``data`` (dataset folders), as ``wsls evaluate --folds`` does."""
    from wsls.io.layouts import open_datasets
    from wsls.io.modalities import normalise_modalities
    from wsls.method.trained import TrainedModels, bundle_path, load_models

    models = model if isinstance(model, TrainedModels) else load_models(bundle_path(model))
    cfg = eval_config or EvalConfig()
    modalities = tuple(models.config.modalities)
    base = normalise_modalities([cfg.baseline_modality])[0]
    needed = modalities + ((base,) if base not in modalities else ())
    cases = open_datasets(data, layout, needed)[0]
    return cross_validate(
        cases,
        models.config,
        folds,
        out_dir,
        baselines=tuple(models.baselines),
        eval_config=cfg,
        resume=resume,
        device=device,
        progress=progress,
    )
