"""The shipped models (wsls/pretrained): `wsls segment scan -o mask` with no model argument.

The default tumour model was trained on the shared BraTS 2015 cases (and the BraTS 2018
development set), so segmenting a shared case here is a smoke test of loading, checksum
verification and the whole inference path, not a measure of accuracy: its held-out figures are
the cross-validation on its model card.
"""

from __future__ import annotations

import json
import shutil
from fnmatch import fnmatch
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tomllib
from api_helpers import run_cli

import wsls
from wsls import pretrained
from wsls.bundle import BundleError
from wsls.metrics import dice

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def case(data_shared) -> Path:
    return data_shared / "brats2015" / "brats_2013_pat0003_1"


def _truth(folder: Path) -> np.ndarray:
    (path,) = folder.glob("*OT*.nii*")
    return np.asarray(nib.load(path).dataobj) > 0


def test_the_default_model_ships_with_its_card():
    assert pretrained.DEFAULT in pretrained.names()
    card = pretrained.card(pretrained.DEFAULT)
    for key in ("training_data", "data_terms", "modalities", "preset", "intended_use"):
        assert card.get(key), key
    assert "cross_validation" in card and "command" in card["cross_validation"]
    assert "not diagnosis" in card["intended_use"]
    total = sum(p.stat().st_size for p in pretrained.bundle(pretrained.DEFAULT).iterdir())
    assert total < 20e6, f"the shipped bundle is {total / 1e6:.1f} MB"


def test_the_wheel_takes_the_bundle_files():
    """Every file of each shipped bundle matches the package-data patterns of pyproject.toml."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["wsls.pretrained"]
    for name in pretrained.names():
        for path in pretrained.bundle(name).iterdir():
            relative = f"{name}/{path.name}"
            assert any(fnmatch(relative, p) for p in patterns), relative


def test_default_model_segments_a_shared_case_smoke(case):
    """Smoke test on a case the default model was trained on: Dice is reported, not claimed."""
    seg = wsls.segment(case)
    truth = _truth(case)
    assert seg.mask.shape == truth.shape
    score = dice(seg.mask, truth)
    print(f"default tumour model on {case.name} (a training case): Dice {score:.3f}")
    assert score > 0.5  # a broken path (empty, whole brain, flipped axes) scores far lower


def test_the_timing_benchmark_times_the_shipped_model_and_keeps_its_mask(tmp_path, case):
    import subprocess
    import sys

    from api_helpers import cli_env

    script = ROOT / "benchmarks" / "segment_time.py"
    bundle = pretrained.bundle("tumour")
    args = [sys.executable, script, bundle, case, "--no-second-look", "--masks", tmp_path]
    done = subprocess.run(args, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (row,) = [line for line in done.stdout.splitlines() if line.startswith(f"| {case.name} |")]
    seconds, verdict = row.split(" | ")[1:3]
    assert float(seconds) > 0 and verdict in ("ok", "check")
    mask = np.load(tmp_path / f"{case.name}.npy")
    assert mask.shape == _truth(case).shape and dice(mask, _truth(case)) > 0.5
    refused = subprocess.run([*args, "--repeats", "0"], env=cli_env(), capture_output=True)
    assert refused.returncode == 2 and b"--repeats must be at least 1, got 0" in refused.stderr


def test_a_damaged_copy_of_the_default_model_is_refused(tmp_path):
    copy = tmp_path / "tumour"
    shutil.copytree(pretrained.bundle(pretrained.DEFAULT), copy)
    weights = sorted(copy.glob("*.safetensors"))[0]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum|SHA-256|sha256"):
        wsls.load(copy)


def test_cli_segments_with_no_model_argument(tmp_path, case):
    out = tmp_path / "mask.nii.gz"
    proc = run_cli("segment", case, "-o", out)
    assert proc.returncode == 0, proc.stderr
    mask = np.asarray(nib.load(out).dataobj)
    assert mask.shape == _truth(case).shape and mask.any()


def test_cli_lists_the_models():
    proc = run_cli("models")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{pretrained.DEFAULT}:")
    for label in ("needs", "trained on", "data terms", "measured", "intended use"):
        assert label in proc.stdout, label


def test_cli_unknown_model_name_is_one_line(case):
    proc = run_cli("segment", case, "-o", "never.nii.gz", "--model", "no_such_model")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "no_such_model" in proc.stderr and pretrained.DEFAULT in proc.stderr
    assert not (ROOT / "never.nii.gz").exists()


@pytest.mark.parametrize("names", [("a", "b"), ("FLAIR", "T1", "T2")])
def test_cli_other_modality_names_say_which_files_it_needs(tmp_path, names, case):
    """A case folder without the model's modalities (unnamed files, or MS naming without a
    post-contrast T1): one line naming the files the model needs."""
    scan = tmp_path / "scan"
    scan.mkdir()
    flair = sorted(case.glob("*Flair*.nii*"))[0]
    for name in names:
        (scan / f"{name}.nii.gz").symlink_to(flair)
    proc = run_cli("segment", scan, "-o", tmp_path / "mask.nii.gz")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("wsls: error:")]
    assert len(errors) == 1, proc.stderr
    assert "the model needs one file per modality: flair (*flair*" in errors[0], errors[0]
    assert "t1c (*t1c*, *t1ce*" in errors[0], errors[0]
    assert not (tmp_path / "mask.nii.gz").exists()


def test_older_command_form_takes_the_model_first(case):
    from wsls import cli

    bundle = pretrained.bundle(pretrained.DEFAULT)
    parser = cli._parser()
    args = parser.parse_args(["segment", str(bundle), str(case), "-o", "x.nii.gz"])
    cli._model_first(args)
    assert args.model == str(bundle) and args.inputs == [str(case)]
    args = parser.parse_args(["segment", str(case), "-o", "x.nii.gz"])
    cli._model_first(args)
    assert args.model is None and args.inputs == [str(case)]


def test_card_names_what_the_bundle_config_says():
    document = json.loads((pretrained.bundle(pretrained.DEFAULT) / "config.json").read_text())
    training = document["config"]["training"]
    card = pretrained.card(pretrained.DEFAULT)
    assert card["training_data"]["cases"] == len(training["cases"])
    assert card["provenance"]["git_commit"] == training["git_commit"]
