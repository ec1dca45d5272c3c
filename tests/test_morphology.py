"""Morphology on numpy arrays and tensors alike (scipy on the host; CuPy on CUDA when present)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from wsls import morphology


def _two_blobs():
    mask = np.zeros((20, 20, 20), bool)
    mask[2:6, 2:6, 2:6] = True  # 64 voxels
    mask[12:15, 12:15, 12:15] = True  # 27 voxels
    mask[13, 13, 13] = False  # a hole
    weights = np.zeros(mask.shape, np.float32)
    weights[13, 12, 12] = 5.0  # on the small blob
    return mask, weights


@pytest.mark.parametrize("kind", ["numpy", "tensor"])
def test_same_answers_for_arrays_and_tensors(kind):
    mask, weights = _two_blobs()
    wrap = (lambda a: a) if kind == "numpy" else torch.from_numpy
    unwrap = (lambda a: a) if kind == "numpy" else (lambda t: t.numpy())
    m, w = wrap(mask), wrap(weights)
    largest = morphology.largest_component(m)
    assert type(largest) is type(m) and unwrap(largest).sum() == 64
    assert unwrap(morphology.strongest_component(m, w)).sum() == 26
    assert unwrap(morphology.drop_small_components(m, 30)).sum() == 64
    marks = np.zeros_like(mask)
    marks[3, 3, 3] = True
    assert unwrap(morphology.components_touching(m, wrap(marks))).sum() == 64
    assert unwrap(morphology.fill_holes(m))[13, 13, 13]
    assert unwrap(morphology.dilate(m, 1)).sum() > mask.sum()
    assert not unwrap(morphology.open_mask(m, 2)).any()  # both blobs under 5 voxels wide
    opened = unwrap(morphology.open_mask(m, 1))
    assert opened.any() and not (opened & ~mask).any()
    smooth = unwrap(morphology.gaussian_filter(wrap(weights), 1.0))
    assert smooth.dtype == np.float32 and abs(smooth.sum() - 5.0) < 1e-3
    labels, count = morphology.label(m)
    assert count == 2 and type(labels) is type(m)


@pytest.mark.parametrize("sigma", [0.7, 1.0, 2.0, 2.6])
def test_smoothing_on_the_box_gives_scipys_numbers_on_the_whole_volume(sigma):
    from scipy import ndimage as ndi

    rng = np.random.default_rng(3)
    volume = np.zeros((40, 33, 29), np.float32)
    volume[14:22, 10:15, 9:20] = rng.random((8, 5, 11))  # far from every border
    volume[0:3, 30:33, 5:8] = rng.random((3, 3, 3))  # against three borders
    for v in (volume, np.ascontiguousarray(volume[:, :, 9:20]), np.zeros_like(volume)):
        smooth = morphology.gaussian_filter(v, sigma)
        assert np.array_equal(smooth, ndi.gaussian_filter(v, sigma))
        assert np.array_equal(smooth, morphology.gaussian_filter(torch.from_numpy(v), sigma))


def test_opening_removes_what_is_thinner_than_its_width():
    mask = np.zeros((30, 12, 12), bool)
    mask[2:9, 2:9, 2:9] = True  # a 7-voxel cube
    mask[9:20, 5, 5] = True  # a 1-voxel rod
    mask[20:27, 2:9, 2:9] = True
    opened = morphology.open_mask(mask, 2)
    assert morphology.label(opened)[1] == 2 and not (opened & ~mask).any()
    assert opened[5, 5, 5] and opened[23, 5, 5] and not opened[14].any()
    assert np.array_equal(morphology.open_mask(mask, 0), mask)


def test_without_cupy_the_backend_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy now fails
    assert morphology._cupy() is None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_stay_cuda_with_or_without_cupy(monkeypatch):
    mask, _ = _two_blobs()
    m = torch.from_numpy(mask).cuda()
    out = morphology.largest_component(m)
    assert out.is_cuda and int(out.sum()) == 64
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setattr(morphology, "_WARNED", [])
    with pytest.warns(UserWarning, match="CuPy is not installed"):
        out = morphology.largest_component(m)
    assert out.is_cuda and int(out.sum()) == 64


def test_slicewise_fill_is_each_slice_filled():
    """fill_holes(slicewise=True) equals filling the 3D holes, then every slice of each axis
    one at a time."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    slices_filled = 0
    for _ in range(10):
        mask = ndi.binary_dilation(rng.random((14, 12, 10)) < 0.05, iterations=2)
        mask &= rng.random(mask.shape) > 0.15  # holes, some open in 3D, closed in a slice
        want = ndi.binary_fill_holes(mask)
        in_3d = want.sum()
        for axis in range(3):
            moved = np.moveaxis(want, axis, 0)
            want = np.moveaxis(np.stack([ndi.binary_fill_holes(s) for s in moved]), 0, axis)
        slices_filled += want.sum() - in_3d
        assert np.array_equal(morphology.fill_holes(mask, slicewise=True), want)
    assert slices_filled > 0  # the slices had holes of their own


def _boxed_masks():
    """Small masks with holes, inside the volume or on one of its faces, and empty ones."""
    rng = np.random.default_rng(1)
    for trial in range(24):
        shape = tuple(int(n) for n in rng.integers(16, 28, 3))
        mask = np.zeros(shape, bool)
        if trial % 6 != 5:  # the sixth stays empty
            size = rng.integers(4, 9, 3)
            start = [int(rng.integers(0, n - k)) for n, k in zip(shape, size, strict=True)]
            if trial % 3 == 0:  # on a face: a box there is clipped to the volume
                start[trial % 2] = 0
            box = tuple(slice(a, a + k) for a, k in zip(start, size, strict=True))
            mask[box] = rng.random(tuple(size)) > 0.3
        yield mask, rng.random(shape), rng.random(shape) < 0.05


def test_operations_on_the_mask_box_give_scipys_whole_volume_answers():
    """Every operation runs on the bounding box of the mask (grown by what it can reach):
    the voxels are those of scipy on the whole volume, wherever the mask lies."""
    from scipy import ndimage as ndi

    six, full = ndi.generate_binary_structure(3, 1), ndi.generate_binary_structure(3, 3)
    for mask, weights, marks in _boxed_masks():
        labels, count = ndi.label(mask, six)
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        want_drop = (sizes >= 6)[labels] & mask
        hit = np.unique(labels[marks & mask])
        want_touch = np.isin(labels, hit[hit > 0])
        l26, n26 = ndi.label(mask, full)
        mass = np.bincount(l26.ravel(), weights=weights.ravel(), minlength=n26 + 1)
        mass[0] = -np.inf
        want_strongest = (l26 == mass.argmax()) if n26 else np.zeros_like(mask)
        assert np.array_equal(morphology.drop_small_components(mask, 6), want_drop)
        assert np.array_equal(morphology.components_touching(mask, marks), want_touch)
        assert np.array_equal(morphology.strongest_component(mask, weights), want_strongest)
        assert np.array_equal(morphology.fill_holes(mask), ndi.binary_fill_holes(mask))
        if mask.any():
            dilated, opened = ndi.binary_dilation(mask, iterations=3), ndi.binary_opening(mask)
            assert np.array_equal(morphology.dilate(mask, 3), dilated)
            assert np.array_equal(morphology.open_mask(mask, 1), opened)
