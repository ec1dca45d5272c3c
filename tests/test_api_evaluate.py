"""wsls.evaluate: tables 1 and 2 with the trivial baseline, files, figure; threshold tuning."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import wsls
from wsls.crossval import split_folds
from wsls.evaluation.evaluate import (
    ACAM,
    CAM_GAP,
    CAM_GMP,
    LOCALISATION,
    S_UNET,
    SEGMENTATION,
    WS_UNET,
    WS_UNET_TUNED,
    WSR,
    EvalConfig,
    Evaluation,
)
from wsls.evaluation.tables import markdown, summary_rows
from wsls.io.layouts import open_dataset

pytest_plugins = ("api_helpers",)  # api_run, api_one_thread

BASELINE = "FLAIR threshold"
BASELINE_LCC = "FLAIR threshold + largest component"


@pytest.fixture(scope="module")
def api_evaluation(api_run, tmp_path_factory):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    cases = list(open_dataset(api_run.parent / "data", "brats", ("flair", "t1c")))
    out = tmp_path_factory.mktemp("evaluation")
    try:
        evaluation = wsls.evaluate(
            api_run / "bundle", cases[2:], cases[:2], config=EvalConfig(progress=False),
            out_dir=out, log=lambda _: None,
        )  # fmt: skip
    finally:
        torch.set_num_threads(before)
    return evaluation, out, cases


def test_tables_have_every_method_and_the_baseline(api_evaluation):
    evaluation, _, cases = api_evaluation
    assert evaluation.methods(LOCALISATION) == [CAM_GMP, CAM_GAP, ACAM, BASELINE, BASELINE_LCC]
    assert evaluation.methods(SEGMENTATION) == [
        WS_UNET, WS_UNET_TUNED, WSR, S_UNET, BASELINE, BASELINE_LCC,
    ]  # fmt: skip
    for table in (LOCALISATION, SEGMENTATION):
        for row in evaluation.summary(table):
            assert row["n"] == 2
            assert 0.0 <= row["dice_mean"] <= 1.0 and row["dice_sd"] >= 0.0
            assert "specificity_mean" in row and "dice_prepared_mean" in row
    ids = {r["case"] for r in evaluation.per_case}
    assert ids == {c.id for c in cases[2:]}
    assert set(evaluation.patch_auc) == {ACAM, CAM_GAP, CAM_GMP}
    assert all(0.0 <= auc <= 1.0 for auc in evaluation.patch_auc.values())
    assert "Patch classification AUC" in evaluation.markdown()
    # the baseline rows are the same numbers in both tables
    for table in (LOCALISATION, SEGMENTATION):
        assert evaluation.mean(table, BASELINE) == evaluation.mean(SEGMENTATION, BASELINE)


def test_thresholds_are_tuned_on_training_cases_only(api_evaluation):
    evaluation, _, _ = api_evaluation
    for name in (CAM_GMP, CAM_GAP, ACAM, WS_UNET_TUNED, BASELINE, BASELINE_LCC):
        assert name in evaluation.thresholds
    rows = [r for r in evaluation.per_case if r["method"] == ACAM]
    assert {r["threshold"] for r in rows} == {evaluation.thresholds[ACAM]}
    assert {r["threshold"] for r in evaluation.per_case if r["method"] == WS_UNET} == {0.5}


def test_the_method_rows_carry_its_quality_verdict(api_evaluation):
    evaluation, out, cases = api_evaluation
    verdicts = evaluation.verdicts()
    assert set(verdicts) == {c.id for c in cases[2:]}
    for row in evaluation.per_case:
        assert ("verdict" in row) == (row["method"] == WSR), row["method"]
    for case, v in verdicts.items():
        assert v["verdict"] in ("ok", "check") and (v["verdict"] == "ok") == (not v["flags"])
        assert f"- {case}: Dice {v['dice']:.3f}, {v['verdict']}" in evaluation.markdown()
    with open(out / "per_case.csv") as handle:
        written = [r for r in csv.DictReader(handle) if r["method"] == WSR]
    assert {r["case"]: r["verdict"] for r in written} == {
        case: v["verdict"] for case, v in verdicts.items()
    }


def test_files_are_written(api_evaluation):
    evaluation, out, _ = api_evaluation
    for name in (
        "table1_localisation.csv", "table1_localisation.md", "table2_segmentation.csv",
        "table2_segmentation.md", "per_case.csv", "tables.md", "figure2.png",
    ):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    with open(out / "table2_segmentation.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["method"] for r in rows][:4] == [WS_UNET, WS_UNET_TUNED, WSR, S_UNET]
    text = (out / "tables.md").read_text()
    assert "Table 1: localisation" in text and "Table 2: segmentation" in text
    assert "| ACAM+WSR |" in text and "±" in text
    assert (out / "figure2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_baselines_are_noted(api_run, tmp_path, api_one_thread):
    models = wsls.load(api_run / "bundle")
    models.baselines = {}
    cases = list(open_dataset(api_run.parent / "data", "brats", ("flair", "t1c")))
    evaluation = wsls.evaluate(
        models, cases[2:3], cases[:2], config=EvalConfig(progress=False, hd95=False,
                                                         figure=False), log=lambda _: None,
    )  # fmt: skip
    assert evaluation.methods(SEGMENTATION) == [WSR, BASELINE, BASELINE_LCC]
    assert any("classifier_gap" in n for n in evaluation.notes)
    assert "hd95" not in evaluation.per_case[0]
    with pytest.raises(ValueError, match="no training cases"):
        wsls.evaluate(models, cases[2:3], [], log=lambda _: None)


def test_dice_curve_matches_direct_dice():
    from wsls.metrics import dice, dice_curve

    rng = np.random.default_rng(0)
    values = rng.random(2000)
    truth = rng.random(2000) < values * 0.8
    grid = np.linspace(0.05, 0.95, 19)
    np.testing.assert_allclose(
        dice_curve(values, truth, grid), [dice(values >= t, truth) for t in grid]
    )
    np.testing.assert_allclose(
        dice_curve(values, truth, grid, strict=True), [dice(values > t, truth) for t in grid]
    )


def test_summary_and_markdown_of_rows():
    rows = [
        {"table": "t", "method": "a", "case": str(i), "dice": d, "threshold": 0.5}
        for i, d in enumerate((0.5, 0.7))
    ] + [{"table": "t", "method": "b", "case": "0", "dice": float("nan"), "threshold": None}]
    summary = summary_rows(rows, "t", ["a", "b", "c"])
    assert [r["method"] for r in summary] == ["a", "b"]
    assert summary[0]["dice_mean"] == pytest.approx(0.6)
    assert summary[0]["dice_sd"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    text = markdown(summary, "T")
    assert "| a | 0.600 ± 0.141 | 0.5 | 2 |" in text and "| b | - | - | 1 |" in text
    assert Evaluation(rows, {}).methods("t") == ["a", "b"]


def test_split_folds():
    assert split_folds(list("abcd"), 4) == [["a"], ["b"], ["c"], ["d"]]
    assert split_folds(list("abcde"), 2) == [["a", "c", "e"], ["b", "d"]]
    assert split_folds(list("ab"), 5) == [["a"], ["b"]]
    with pytest.raises(ValueError, match="at least 2 folds"):
        split_folds(list("abc"), 1)


def test_markdown_lists_notes_and_patch_auc():
    rows = [{"table": LOCALISATION, "method": ACAM, "case": "a", "dice": 0.5, "threshold": 0.3}]
    text = Evaluation(rows, {ACAM: 0.3}, None, notes=["no s_unet"]).markdown()
    assert "- no s_unet" in text and "Patch classification AUC" not in text
    text = Evaluation(rows, {ACAM: 0.3}, None, patch_auc={ACAM: 0.97}).markdown()
    assert "ACAM 0.970" in text


def test_a_case_context_copies_the_volume_once(api_run, monkeypatch, api_one_thread):
    """The method's maps and its segmentation share one copy of the volume on the device, and
    give the mask that segment_volume gives."""
    import wsls.method.segment as segment
    from wsls.data.preprocess import preprocess
    from wsls.evaluation.methods import CaseContext

    models = wsls.load(api_run / "bundle")
    case = next(iter(open_dataset(api_run.parent / "data", "brats", ("flair", "t1c"))))
    prepared = preprocess(case.load().subset(models.config.modalities), models.config.preprocess)
    expected = segment.segment_volume(
        models.classifier, models.embedding, prepared.image, prepared.brain, models.config
    ).mask
    copies = []
    real = segment.to_device
    monkeypatch.setattr(segment, "to_device", lambda *a: copies.append(1) or real(*a))
    context = CaseContext(models, prepared)
    context.acam()
    np.testing.assert_array_equal(context.result().mask, expected)
    assert len(copies) == 1
