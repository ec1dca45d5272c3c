"""The ``wsls`` command: help with examples, one-line errors, segment / evaluate end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wsls.cli import main

pytest_plugins = ("api_helpers",)  # api_run, api_one_thread

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("demo", "train", "segment", "evaluate", "bench")


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and all(c in text for c in COMMANDS)
    for command in COMMANDS:
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        assert f"wsls {command}" in capsys.readouterr().out.split("examples:")[1]


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: wsls" in capsys.readouterr().out


def _one_line_error(capsys, argv, expected):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wsls: error: "), err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err


def test_user_mistakes_are_one_line(capsys, tmp_path, api_run):
    bundle = str(api_run / "bundle")
    flair = str(api_run.parent / "data" / "phantom_3000" / "phantom_3000_flair.nii.gz")
    _one_line_error(capsys, ["train", str(tmp_path / "none"), "--out", str(tmp_path / "r")],
                    "dataset folder or manifest not found")  # fmt: skip
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, ["train", str(tmp_path / "empty"), "--out", str(tmp_path / "r")],
                    "cannot tell the dataset layout")  # fmt: skip
    bad = tmp_path / "bad.json"
    bad.write_text('{"widht": 3}')
    _one_line_error(capsys, ["train", str(api_run.parent / "data"), "--out", str(tmp_path / "r"),
                             "--config", str(bad)], "unknown settings ['widht']")  # fmt: skip
    bad.write_text("{not json")
    _one_line_error(capsys, ["train", str(api_run.parent / "data"), "--out", str(tmp_path / "r"),
                             "--config", str(bad)], "not valid JSON")  # fmt: skip
    _one_line_error(capsys, ["train", str(api_run.parent / "data"), "--out", str(tmp_path / "r"),
                             "--baselines", "cam"], "unknown baseline 'cam'")  # fmt: skip
    _one_line_error(capsys, ["train", str(api_run.parent / "data"), "--out", str(tmp_path / "r"),
                             "--workers", "0"], "--workers must be >= 1")  # fmt: skip
    out = str(tmp_path / "m.nii.gz")
    _one_line_error(capsys, ["segment", flair, "-o", out, "--model", str(tmp_path / "nob")],
                    "model bundle not found")  # fmt: skip
    _one_line_error(capsys, ["segment", bundle, flair, "-o", str(tmp_path / "m.nii.gz")],
                    "has 1 channel but the model needs 2 (flair, t1c)")  # fmt: skip
    _one_line_error(capsys, ["segment", bundle, str(tmp_path / "x.nii.gz"), "-o",
                             str(tmp_path / "m.nii.gz")], "not found")  # fmt: skip
    _one_line_error(capsys, ["evaluate", bundle, str(api_run.parent / "data"), "--out",
                             str(tmp_path / "e")], "every case was used for training")  # fmt: skip
    _one_line_error(capsys, ["evaluate", bundle, str(api_run.parent / "data"), "--folds", "2",
                             "--train-data", "x"], "either --train-data or --folds")  # fmt: skip
    _one_line_error(capsys, ["bench", "--only", "nothing"], "unknown benchmark")


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "data", "--out", "r", "--layout", "nifti"])
    assert info.value.code == 2
    assert "invalid choice: 'nifti'" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path, api_cli):
    proc = api_cli("train", str(tmp_path / "none"), "--out", str(tmp_path / "r"), "--debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "DataError" in proc.stderr


def test_segment_one_case_and_a_folder(api_run, tmp_path, api_cli):
    import nibabel as nib

    case = api_run.parent / "data" / "phantom_3001"
    files = [str(case / "phantom_3001_flair.nii.gz"), str(case / "phantom_3001_t1ce.nii.gz")]
    out = tmp_path / "mask.nii.gz"
    proc = api_cli("segment", str(api_run), *files, "-o", str(out), "--acam")
    assert proc.returncode == 0, proc.stderr
    assert "phantom_3001:" in proc.stdout and str(out) in proc.stdout
    mask, source = nib.load(str(out)), nib.load(files[0])
    assert mask.shape == source.shape and np.allclose(mask.affine, source.affine)
    assert (tmp_path / "mask_acam.nii.gz").exists()
    proc = api_cli("segment", str(api_run / "bundle"), str(api_run.parent / "data"), "-o",
                   str(tmp_path / "masks"), "--no-progress")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "4 case(s) segmented" in proc.stdout
    assert len(list((tmp_path / "masks").glob("*_lesion.nii.gz"))) == 4


def test_evaluate_with_train_data(api_run, tmp_path, api_cli):
    import shutil

    data = api_run.parent / "data"
    train, test = tmp_path / "train", tmp_path / "test"
    for i, folder in enumerate(sorted(data.iterdir())):
        shutil.copytree(folder, (train if i < 2 else test) / folder.name)
    proc = api_cli("evaluate", str(api_run / "bundle"), str(test), "--train-data", str(train),
                   "--out", str(tmp_path / "eval"), "--no-progress", "--no-hd95")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Table 2: segmentation" in proc.stdout and "| ACAM+WSR |" in proc.stdout
    assert (tmp_path / "eval" / "figure2.png").exists()


def test_training_record(api_run):
    record = json.loads((api_run / "training.json").read_text())
    [source] = record["sources"]
    assert source["layout"] == "BraTS" and len(record["cases"]) == 4
    assert source["cases"] == record["cases"]
    assert record["modalities"] == ["flair", "t1c"]


def test_pyproject_declares_the_command():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'wsls = "wsls.cli:main"' in text


def test_evaluate_cross_validation(api_run, tmp_path, api_cli):
    """--folds retrains the bundle's configuration per fold and pools the per-case rows."""
    import csv

    out = tmp_path / "cv"
    proc = api_cli("evaluate", str(api_run / "bundle"), str(api_run.parent / "data"), "--folds",
                   "2", "--out", str(out), "--no-progress", "--no-hd95")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for fold in (1, 2):
        assert (out / f"fold{fold}" / "bundle" / "config.json").exists()
        assert (out / f"fold{fold}" / "evaluation" / "tables.md").exists()
    with open(out / "per_case.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["fold"] for r in rows} == {"1", "2"}
    assert len({r["case"] for r in rows}) == 4  # every case tested once
    assert (out / "figure2.png").exists() and "Table 1: localisation" in proc.stdout
