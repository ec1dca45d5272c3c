"""The phantom: deterministic, lesions of each kind in realistic proportions, readable as BraTS."""

from __future__ import annotations

import numpy as np
import pytest

from wsls.io.layouts import BratsLayout, open_dataset
from wsls.phantom.generate import (
    LABEL_EDEMA,
    LABEL_MS,
    LABEL_STROKE,
    MODALITIES,
    make_phantom,
    write_phantom_dataset,
)


def test_deterministic_by_seed():
    a = make_phantom((48, 48, 40), seed=3, lesions="tumour")
    b = make_phantom((48, 48, 40), seed=3, lesions="tumour")
    c = make_phantom((48, 48, 40), seed=4, lesions="tumour")
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tumour_proportions_and_parts(seed):
    p = make_phantom((96, 96, 62), seed=seed, lesions="tumour")
    assert p.image.shape == (4, 96, 96, 62) and p.image.dtype == np.float32
    fraction = p.mask.sum() / p.brain.sum()
    assert 0.02 < fraction < 0.25  # BraTS: 4-20 % of the brain (voxelisation adds spread)
    assert (p.labels == LABEL_EDEMA).sum() > 0 and (p.labels == 1).sum() > 0
    assert not (p.mask & ~p.brain).any()
    assert np.all(p.image[:, ~p.brain] == 0) and np.all(p.image[:, p.brain] > 0)


def test_stroke_ms_and_lesion_free():
    stroke = make_phantom((96, 96, 62), seed=5, lesions="stroke")
    assert set(np.unique(stroke.labels)) == {0, LABEL_STROKE}
    assert 0.001 < stroke.mask.sum() / stroke.brain.sum() < 0.05
    ms = make_phantom((96, 96, 62), seed=6, lesions="ms")
    from scipy import ndimage as ndi

    _, n_blobs = ndi.label(ms.labels == LABEL_MS)
    assert n_blobs >= 5  # many small lesions
    assert 0.001 < ms.mask.sum() / ms.brain.sum() < 0.06
    healthy = make_phantom((96, 96, 62), seed=7, lesions=())
    assert not healthy.mask.any() and healthy.kinds == ()


def test_lesion_contrast_flair_bright_t1_dark():
    p = make_phantom((96, 96, 62), seed=8, lesions="tumour")
    flair, t1 = p.image[MODALITIES.index("flair")], p.image[MODALITIES.index("t1")]
    edema = p.labels == LABEL_EDEMA
    normal = p.brain & ~p.mask
    white = normal & (p.tissues == 3)  # white matter, which oedema replaces
    assert np.median(flair[edema]) > 1.2 * np.median(flair[normal])
    assert np.median(t1[edema]) < 0.9 * np.median(t1[white])


def test_sizes_and_spacing():
    small = make_phantom((64, 64, 64), seed=0)
    assert small.image.shape == (4, 64, 64, 64)
    assert np.allclose(small.spacing, (240 / 64, 240 / 64, 155 / 64))
    with pytest.raises(ValueError):
        make_phantom((8, 8, 8))
    with pytest.raises(ValueError):
        make_phantom((32, 32, 32), lesions="glioma")


@pytest.mark.slow
def test_full_brats_size():
    p = make_phantom((240, 240, 155), seed=1, lesions="tumour")
    assert p.image.shape == (4, 240, 240, 155)
    assert 0.02 < p.mask.sum() / p.brain.sum() < 0.25


def test_written_dataset_reads_back(tmp_path):
    folders = write_phantom_dataset(
        tmp_path, n_cases=4, shape=(48, 48, 32), seed=2, healthy_fraction=0.5
    )
    assert len(folders) == 4
    ds = open_dataset(tmp_path)
    assert isinstance(ds, BratsLayout) and ds.modalities == ("flair", "t1", "t1c", "t2")
    cases = [ref.load() for ref in ds]
    assert sorted(c.label for c in cases) == [0.0, 0.0, 1.0, 1.0]
    for ref, case in zip(ds, cases, strict=True):
        seed = int(ref.id.split("_")[1])
        again = make_phantom((48, 48, 32), seed, () if case.label == 0 else "random")
        np.testing.assert_array_equal(case.mask, again.mask)
        np.testing.assert_allclose(case.image, again.image, rtol=1e-6)
        np.testing.assert_array_equal(case.brain, again.brain)
