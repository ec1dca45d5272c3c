"""wsls.segment on every input kind, on the input's own grid and orientation, and its errors."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

import wsls
from wsls.bundle import BundleError
from wsls.errors import DataError

pytest_plugins = ("api_helpers",)  # api_run, api_one_thread


def _case_files(run, case="phantom_3000"):
    folder = run.parent / "data" / case
    return folder, [folder / f"{case}_flair.nii.gz", folder / f"{case}_t1ce.nii.gz"]


@pytest.fixture(scope="module")
def api_models(api_run):
    return wsls.load(api_run / "bundle")


@pytest.fixture(scope="module")
def api_reference(api_run, api_models):
    """The segmentation of one phantom from its per-modality files."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return wsls.segment(_case_files(api_run)[1], api_models)
    finally:
        torch.set_num_threads(before)


def _arrays(files):
    import nibabel as nib

    image = nib.load(str(files[0]))
    data = np.stack([np.asarray(nib.load(str(f)).dataobj, np.float32) for f in files])
    return data, image.affine


def test_lazy_import_is_cheap():
    import subprocess
    import sys

    from api_helpers import ROOT

    code = "import sys, wsls; print('torch' in sys.modules, callable(wsls.train))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "True"]


def test_public_names():
    assert callable(wsls.segment) and callable(wsls.segment_many) and callable(wsls.load)
    assert callable(wsls.train) and callable(wsls.evaluate) and not callable(wsls.training)
    assert hasattr(wsls.training, "fit")  # still the training subpackage
    assert wsls.Segmentation.__name__ == "Segmentation"


def test_segment_from_paths(api_run, api_reference):
    seg = api_reference
    assert seg.mask.shape == (64, 64, 48) and seg.mask.dtype == np.bool_
    assert seg.acam.shape == seg.mask.shape and seg.acam.dtype == np.float32
    assert 0.0 <= seg.acam.min() and seg.acam.max() <= 1.0
    assert seg.affine.shape == (4, 4) and 0.0 <= seg.probability <= 1.0
    assert seg.case_id == "phantom_3000"
    c = seg.candidates
    assert c.seeds.shape[1] == 3 and len(c.scores) == len(c.seeds) == len(c.kept)
    if len(c):
        assert (c.seeds >= 0).all() and (c.seeds < np.array(seg.mask.shape)).all()
    assert set(seg.timings) == {"load", "preprocess", "method", "map_back"}


def test_every_input_kind_agrees(api_run, api_models, api_reference, api_one_thread):
    folder, files = _case_files(api_run)
    data, affine = _arrays(files)
    results = {
        "folder": wsls.segment(folder, api_models),
        "mapping": wsls.segment({"T1ce": files[1], "FLAIR": files[0]}, api_models),
        "numpy": wsls.segment(data, api_models, affine=affine),
        "tensor": wsls.segment(torch.from_numpy(data), api_models, affine=affine),
        "bundle path": wsls.segment(files, api_run / "bundle"),
        "run folder": wsls.segment(files, api_run),
    }
    for name, seg in results.items():
        assert np.array_equal(seg.mask, api_reference.mask), name
        np.testing.assert_allclose(seg.acam, api_reference.acam, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(seg.affine, api_reference.affine, err_msg=name)
    assert results["folder"].case_id == "phantom_3000"


def test_cupy_input(api_run, api_models, api_reference, api_one_thread):
    cupy = pytest.importorskip("cupy", reason="needs cupy (and a GPU) for DLPack input")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    data, affine = _arrays(_case_files(api_run)[1])
    seg = wsls.segment(cupy.asarray(data), api_models, affine=affine)
    assert seg.mask.shape == api_reference.mask.shape


def test_save_writes_the_input_geometry(api_run, api_reference, tmp_path):
    import nibabel as nib

    _, files = _case_files(api_run)
    path = api_reference.save(tmp_path / "mask.nii.gz")
    written, source = nib.load(str(path)), nib.load(str(files[0]))
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine)
    assert written.get_data_dtype() == np.uint8
    assert np.array_equal(np.asarray(written.dataobj) > 0, api_reference.mask)
    acam = nib.load(str(api_reference.save_acam(tmp_path / "acam.nii.gz")))
    assert acam.get_data_dtype() == np.float32 and acam.shape == source.shape


def test_reoriented_input_gives_the_reoriented_mask(api_models, api_run, tmp_path, api_one_thread):
    """The same scan stored LPS instead of RAS: the mask follows the file's voxel order."""
    import nibabel as nib

    _, files = _case_files(api_run)
    data, affine = _arrays(files)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = np.array(data.shape[1:3]) - 1  # voxel i -> n - 1 - i on the first two axes
    lps_affine = affine @ flip
    lps_files = []
    for m, name in enumerate(("flair", "t1c")):
        path = tmp_path / f"lps_{name}.nii.gz"
        nib.save(nib.Nifti1Image(data[m, ::-1, ::-1].copy(), lps_affine), str(path))
        lps_files.append(path)
    ras = wsls.segment(files, api_models)
    lps = wsls.segment(lps_files, api_models)
    assert nib.aff2axcodes(lps_affine) == ("L", "P", "S")
    assert np.array_equal(lps.mask, ras.mask[::-1, ::-1])
    np.testing.assert_allclose(lps.affine, lps_affine)
    saved = nib.load(str(lps.save(tmp_path / "lps_mask.nii.gz")))
    np.testing.assert_allclose(saved.affine, lps_affine)
    if len(ras.candidates):
        mirrored = lps.candidates.seeds.copy()
        mirrored[:, :2] = np.array(data.shape[1:3]) - 1 - mirrored[:, :2]
        assert np.abs(mirrored - ras.candidates.seeds).max() <= 1


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d[:1], "has 1 channel but the model needs 2 (flair, t1c)"),
        (lambda d: np.concatenate([d, d[:1]]), "has 3 channels but the model needs 2"),
        (lambda d: d[0], "expected a (C, H, W, D) array with C = 2"),
        (lambda d: np.where(d > 1e9, 0, np.nan).astype(np.float32), "NaN or infinite"),
        (lambda d: d.astype(np.complex64), "complex images are not supported"),
        (lambda d: np.zeros_like(d), "no brain voxels found"),
    ],
)
def test_bad_arrays_are_one_line_errors(api_run, api_models, make, message):
    data, _ = _arrays(_case_files(api_run)[1])
    with pytest.raises(DataError) as info:
        wsls.segment(make(data), api_models)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_files_are_one_line_errors(api_run, api_models, tmp_path):
    folder, files = _case_files(api_run)
    cases = [
        (tmp_path / "missing.nii.gz", "not found"),
        ([files[0]], "has 1 channel but the model needs 2"),
        ([files[0], files[1], files[0]], "3 image files given but the model needs 2"),
        ([], "an empty list of image files"),
        ({"flair": files[0]}, "no file for modality t1c"),
        (folder.parent, "holds 4 cases"),
    ]
    for image, message in cases:
        with pytest.raises(DataError) as info:
            wsls.segment(image, api_models)
        assert message in str(info.value), (image, str(info.value))
        assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="affine must be a finite 4x4"):
        wsls.segment(_arrays(files)[0], api_models, affine=np.eye(3))


def test_bad_models_are_clear(api_run, tmp_path):
    _, files = _case_files(api_run)
    with pytest.raises(BundleError, match="not found"):
        wsls.segment(files, tmp_path / "no_bundle")
    with pytest.raises(TypeError, match="a TrainedModels, a bundle path or a shipped model"):
        wsls.segment(files, 42)
    with pytest.raises(ValueError, match="no CUDA device"):
        if torch.cuda.is_available():
            pytest.skip("a CUDA device is present")
        wsls.segment(files, api_run, device="cuda")


def test_options_override_the_model(api_run, api_models, api_one_thread):
    _, files = _case_files(api_run)
    seg = wsls.segment(files, api_models, seeds=3, threshold=0.9)
    if not seg.lesion_free:
        assert len(seg.candidates) <= 3 and seg.candidates.threshold == pytest.approx(0.9)
    with pytest.raises(ValueError, match="lambda"):
        wsls.segment(files, api_models, threshold=1.5)


# ------------------------------------------------------------------ real scans (shared data)


def test_brats_mask_has_the_ground_truth_geometry(
    api_models, data_shared, tmp_path, api_one_thread
):
    """A BraTS case (LPS, 240x240x155) segmented from its folder: the written mask reloads with
    exactly the ground truth's shape and affine, and the ACAM lies inside the brain file."""
    import nibabel as nib

    folder = data_shared / "brats2015" / "brats_2013_pat0006_1"
    seg = wsls.segment(folder, api_models)
    truth = nib.load(str(folder / "OTMultiClass.nii.gz"))
    written = nib.load(str(seg.save(tmp_path / "brats_mask.nii.gz")))
    assert written.shape == truth.shape == (240, 240, 155)
    np.testing.assert_allclose(written.affine, truth.affine)
    assert nib.aff2axcodes(written.affine) == ("L", "P", "S")
    brain = np.asarray(nib.load(str(folder / "brainmask.nii.gz")).dataobj) > 0.5
    _assert_inside(seg.acam, brain)


def _assert_inside(acam, brain, margin=4):
    """The ACAM (4 mm grid, linearly upsampled) lies within ``margin`` voxels of the brain."""
    from scipy import ndimage as ndi

    near = ndi.binary_dilation(brain, iterations=margin)
    assert acam.sum() > 0
    assert acam[~near].sum() <= 5e-3 * acam.sum()


def test_ms_las_mask_has_the_ground_truth_geometry(
    api_models, data_shared, tmp_path, api_one_thread
):
    import nibabel as nib

    folder = data_shared / "ms_lesjak2017" / "patient26"
    seg = wsls.segment(folder, api_models)
    truth = nib.load(str(folder / "GOLD_STANDARD.nii.gz"))
    written = nib.load(str(seg.save(tmp_path / "ms_mask.nii.gz")))
    assert written.shape == truth.shape == (182, 218, 182)
    np.testing.assert_allclose(written.affine, truth.affine)
    assert nib.aff2axcodes(written.affine) == ("L", "A", "S")
    flair = np.asarray(nib.load(str(folder / "FLAIR.nii.gz")).dataobj)
    _assert_inside(seg.acam, flair > 0)


def test_segment_calls_the_growth_scoring_and_nms_ops(api_run, api_models):
    """wsls.segment reaches the custom ops (on the CPU here; the same code path on a GPU)."""
    from collections import Counter

    from torch.utils._python_dispatch import TorchDispatchMode

    calls: Counter = Counter()

    class CountOps(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == "wsls":
                calls[func.__name__.split(".")[0]] += 1
            return func(*args, **(kwargs or {}))

    models = copy.copy(api_models)  # one mixture: a faint mask's refit would grow it again
    em = replace(api_models.config.em, faint_lesion_components=None)
    models.config = replace(api_models.config, em=em)
    with CountOps():
        seg = wsls.segment(_case_files(api_run)[1], models, device="cpu")
    config = models.config
    # a mask that fails the erase test, on a classifier that can vouch, is looked for again
    evidence = seg.quality.measures.get("evidence_erased_probability")
    looks = 2 if evidence is not None and evidence <= config.quality.max_erased_probability else 1
    lambdas = looks * len(config.regions.lambdas)
    assert seg.candidates.threshold is not None
    assert calls["affinity_grow"] == lambdas  # every lambda of the grid, all seeds at once
    assert calls["candidate_scores"] == lambdas and calls["mask_nms"] == lambdas
    assert calls["attention_cam"] >= 1  # the classifier's maps
