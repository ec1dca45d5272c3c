"""``wsls demo --quick`` end to end: every output exists, and the method's quality verdict
keeps its contract on the held-out phantoms: every mask under Dice 0.5 is flagged, every mask it
passes has Dice >= 0.7, and it passes at least one.

Whether the method beats the FLAIR threshold on three phantoms after minutes of training depends
on the classifier's draw, which changes with the machine's floating-point path: on one 2-core
machine it did (the README's table), on another one held-out phantom's ACAM missed its tumour
(Dice 0, flagged) and the mean fell below the threshold's. The verdict is what a user relies on
there, so it is what this test holds."""

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
    verdicts = summary["verdicts"]
    assert len(verdicts) == 3, verdicts
    for case, v in verdicts.items():
        assert f"- {case}: Dice {v['dice']:.3f}, {v['verdict']}" in proc.stdout
        if v["dice"] < 0.5:
            assert v["verdict"] == "check", (case, v)
        if v["verdict"] == "ok":
            assert v["dice"] >= 0.7, (case, v)
    assert any(v["verdict"] == "ok" for v in verdicts.values()), verdicts
    assert "quality " in proc.stdout  # the segmented case's verdict
