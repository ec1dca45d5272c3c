"""The shared real cases load through their layouts with the documented shapes and counts."""

from __future__ import annotations

import numpy as np
import pytest

from wsls.data.patches import PatchConfig, PatchSampler
from wsls.data.preprocess import PreprocessConfig, preprocess
from wsls.io.layouts import open_dataset

BRATS_LESION_VOXELS = {
    "brats_2013_pat0003_1": 173_928,
    "brats_2013_pat0004_1": 120_674,
    "brats_2013_pat0005_1": 80_682,
    "brats_2013_pat0006_1": 217_380,
}
MS_LESION_VOXELS = {"patient19": 49_769, "patient26": 8_227}


@pytest.fixture(scope="module")
def data_brats_cases(data_shared):
    return [ref.load() for ref in open_dataset(data_shared / "brats2015")]


def test_brats_cases(data_shared, data_brats_cases):
    ds = open_dataset(data_shared / "brats2015")
    assert ds.modalities == ("flair", "t1c")
    assert [c.id for c in ds] == sorted(BRATS_LESION_VOXELS)
    for case in data_brats_cases:
        assert case.image.shape == (2, 240, 240, 155) and case.image.dtype == np.float32
        assert int(case.mask.sum()) == BRATS_LESION_VOXELS[case.id]
        assert case.brain is not None and case.brain.sum() > 1_000_000
        assert case.volume.geometry.axcodes == "LPS" and case.spacing == (1.0, 1.0, 1.0)
        assert case.label == 1.0


def test_ms_cases(data_shared):
    ds = open_dataset(data_shared / "ms_lesjak2017")
    assert ds.modalities == ("flair", "t1", "t1c", "t2")
    for ref in ds:
        case = ref.load()
        assert case.image.shape == (4, 182, 218, 182)
        assert int(case.mask.sum()) == MS_LESION_VOXELS[case.id]
        assert case.volume.geometry.axcodes == "LAS"


def test_derived_brain_mask_matches_given(data_brats_cases):
    from wsls.data.preprocess import brain_mask
    from wsls.metrics import dice

    case = data_brats_cases[1]
    assert dice(brain_mask(case.image), case.brain) > 0.999


def test_negatives_are_scarce_at_48_cubed(data_brats_cases):
    """DESIGN section 8: at 2 mm, 48^3 patches leave no lesion-free mostly-brain position in
    three of the four cases; 32^3 works."""
    prepared = [preprocess(c, PreprocessConfig(downsample=2.0)) for c in data_brats_cases]
    big = PatchSampler(prepared, PatchConfig(size=48))
    assert sum(r["negatives"] == 0 for r in big.report()) == 3
    small = PatchSampler(prepared, PatchConfig(size=32))
    assert all(r["negatives"] > 0 and r["positives"] > 0 for r in small.report())


@pytest.mark.slow
def test_torch_em_matches_the_numpy_em_on_shared_cases(data_shared):
    """On each shared BraTS case, with a map that hits the tumour's edge (as CAMs do), the torch
    intensity model and the numpy one it replaced (tests/numpy_em.py) give the same mask."""
    import torch
    from numpy_em import lesion_posterior as numpy_posterior
    from scipy import ndimage as ndi

    from wsls.method.intensity import lesion_posterior

    worst = 0.0
    for ref in open_dataset(data_shared / "brats2015"):
        prepared = preprocess(ref.load(), PreprocessConfig(pad_to_multiple=8))
        core = ndi.binary_erosion(prepared.mask, iterations=6)  # part of the tumour only
        weak = ndi.gaussian_filter(core.astype(np.float32), 3)
        weak /= weak.max()
        T = torch.from_numpy
        ours = lesion_posterior(T(prepared.image), T(prepared.brain), T(weak)).numpy()
        theirs = numpy_posterior(prepared.image, prepared.brain, weak)
        worst = max(worst, float(np.abs(ours - theirs).max()))
        assert np.array_equal(ours >= 0.5, theirs >= 0.5), ref.id
    assert worst < 1e-6, worst  # measured: at most 6e-11
