"""Real lesion masks pasted into the phantom."""

from __future__ import annotations

import numpy as np

from wsls.phantom.generate import LABEL_MS, LABEL_STROKE, make_phantom
from wsls.phantom.semisynthetic import lesion_mask_files, paste_lesion


def test_paste_real_masks(data_shared):
    files = lesion_mask_files(data_shared / "lesion_masks")
    assert len(files) == 38  # 30 MS + 5 LQT + 3 niivue-neglect lesion masks
    host = make_phantom((96, 96, 62), seed=2, lesions=())
    stroke_file = next(f for f in files if f.name == "ExampleLesion1.nii.gz")
    ms_file = next(f for f in files if "ms_mni" in str(f))
    stroke = paste_lesion(host, stroke_file)
    ms = paste_lesion(host, ms_file)
    assert set(np.unique(stroke.labels)) == {0, LABEL_STROKE}
    assert set(np.unique(ms.labels)) == {0, LABEL_MS}
    assert not (stroke.mask & ~host.brain).any()
    flair = stroke.image[0]
    assert np.median(flair[stroke.mask]) > 1.2 * np.median(host.image[0][stroke.mask])
    # the pasted lesion keeps its size: mask voxels (1 mm) vs phantom voxels (2.5x2.5x2.5 mm)
    import nibabel as nib

    source = np.asarray(nib.load(stroke_file).dataobj) > 0
    voxel = np.prod(stroke.spacing)
    assert 0.3 < stroke.mask.sum() * voxel / source.sum() < 3.0
