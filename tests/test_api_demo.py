"""``wsls demo --quick`` end to end: every output exists and the method beats the trivial
baseline (FLAIR above a threshold tuned on the training cases) on the held-out phantoms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ("api_helpers",)  # api_cli


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path, api_cli):
    out = tmp_path / "demo"
    proc = api_cli("demo", "--quick", "--out", str(out), "--no-progress", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    for name in ("bundle", "tables", "figure", "segmentation", "acam"):
        path = summary["files"][name]
        assert path in proc.stdout and Path(path).exists(), name
    assert (out / "run" / "bundle" / "config.json").exists()
    assert (out / "evaluation" / "figure2.png").stat().st_size > 1000
    assert (out / "evaluation" / "table1_localisation.md").exists()
    assert (out / "evaluation" / "table2_segmentation.csv").exists()
    assert list((out / "segmentation").glob("*_lesion.nii.gz"))
    assert "Table 1: localisation" in proc.stdout and "Table 2: segmentation" in proc.stdout
    dice = summary["dice"]
    assert dice["ACAM+WSR"] > dice["FLAIR threshold"], dice
