"""Shared fixtures of the data tests (all named data_*)."""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting cost several times the work on a 2-core machine
# (the wsls command sets the same); it must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path

import numpy as np
import pytest

# api_helpers is both imported by test modules and loaded as their fixture plugin
pytest.register_assert_rewrite("api_helpers")


def _shared_data_root() -> Path:
    override = os.environ.get("WSLS_SHARED_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_shared() -> Path:
    """The shared real data folder (../shared/data or $WSLS_SHARED_DATA), else skip."""
    root = _shared_data_root()
    if not (root / "brats2015").is_dir():
        pytest.skip(f"shared real data not found at {root} (set WSLS_SHARED_DATA to its folder)")
    return root


@pytest.fixture(scope="session")
def data_small_phantoms():
    """Three small phantoms (64x64x48): tumour, ms, lesion-free."""
    from wsls.phantom.generate import make_phantom

    return [
        make_phantom((64, 64, 48), seed=11, lesions="tumour"),
        make_phantom((64, 64, 48), seed=12, lesions="ms"),
        make_phantom((64, 64, 48), seed=13, lesions=()),
    ]


def _write_nifti(path: Path, array: np.ndarray, affine: np.ndarray, dtype=np.float32) -> Path:
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(array, dtype=dtype), affine)
    nib.save(img, str(path))
    return path


@pytest.fixture(scope="session")
def data_write_nifti():
    """write(path, array, affine, dtype=float32): a NIfTI file written by nibabel, not wsls."""
    return _write_nifti
