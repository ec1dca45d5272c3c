"""Shared by the API tests: a tiny trained bundle (made once per test process), the ``wsls``
command run as a subprocess, and a single-threaded torch for in-process runs."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# Trains in seconds: 4 mm grid (phantoms and real scans alike), 16^3 patches, one short epoch
# per stage. Its segmentations are poor; the tests check plumbing, geometry and errors.
TINY_CONFIG = {
    "modalities": ["flair", "t1c"],
    "preprocess": {"target_spacing": [4.0, 4.0, 4.0], "pad_to_multiple": 8},
    "classifier_scale": 1,
    "patch": {"size": 16, "min_lesion_voxels": 20, "flip_lr": True},
    "width": 8,
    "classifier": {"epochs": 1, "per_epoch": 32},
    "embedding_schedule": {"epochs": 1, "per_epoch": 5},
    "segmenter": {"patch": {"size": 16, "min_lesion_voxels": 1}},
    "segmenter_schedule": {"epochs": 1, "per_epoch": 8},
}


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a ``wsls`` subprocess: this checkout first on the path, OpenMP
    threads that wait passively, and ``extra``."""
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_WAIT_POLICY="PASSIVE", **extra)


def run_cli(*args, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m wsls ARGS`` (each str()-ed) with :func:`cli_env`; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "wsls", *map(str, args)],
        env=cli_env(),
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@functools.lru_cache(maxsize=1)
def tiny_run(root: str) -> Path:
    """Write 4 small phantoms (one lesion-free) and train the tiny bundle with every baseline
    through ``wsls train``; returns the run folder (bundle in run/bundle)."""
    from wsls.phantom.generate import write_phantom_dataset

    base = Path(root)
    data = base / "data"
    write_phantom_dataset(data, 4, (64, 64, 48), seed=3, healthy_fraction=0.25, lesions="tumour")
    config = base / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIG))
    run = base / "run"
    proc = run_cli(
        "train", str(data), "--out", str(run), "--config", str(config),
        "--baselines", "all", "--no-progress", "--no-cache",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


@pytest.fixture(scope="session")
def api_run(tmp_path_factory) -> Path:
    """The tiny run folder (trained once per test process)."""
    return tiny_run(str(tmp_path_factory.getbasetemp() / "wsls_api_tiny"))


@pytest.fixture
def api_cli():
    """run_cli: ``python -m wsls ARGS`` in a subprocess."""
    return run_cli


@pytest.fixture
def api_one_thread():
    """In-process inference on one thread (a loaded 2-core machine spins OpenMP threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
