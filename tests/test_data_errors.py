"""Every bad input gives one DataError line naming the file and the problem."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from wsls.errors import DataError
from wsls.io.layouts import BratsLayout, CsvManifest, open_dataset
from wsls.io.nifti import load_mask, load_volume

AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])


def _assert_one_line(err: DataError, name: str, *words: str) -> None:
    text = str(err)
    assert "\n" not in text
    assert name in text, text
    for w in words:
        assert w in text.lower(), text
    assert "Traceback" not in text


@pytest.fixture
def data_case_folder(tmp_path, data_write_nifti):
    folder = tmp_path / "BraTS_001"
    folder.mkdir()
    img = np.random.default_rng(0).random((8, 9, 10)).astype(np.float32)
    for m in ("flair", "t1", "t1ce", "t2"):
        data_write_nifti(folder / f"BraTS_001_{m}.nii.gz", img, AFFINE)
    data_write_nifti(
        folder / "BraTS_001_seg.nii.gz", (img > 0.8).astype(np.uint8), AFFINE, np.uint8
    )
    return folder


def test_missing_modality_file(data_case_folder):
    (data_case_folder / "BraTS_001_t2.nii.gz").unlink()
    with pytest.raises(DataError) as info:
        BratsLayout(data_case_folder.parent, modalities=["flair", "t1c", "t2"])
    _assert_one_line(info.value, "BraTS_001", "missing modality", "t2")
    with pytest.raises(DataError) as info:
        load_volume([data_case_folder / "BraTS_001_flair.nii.gz", data_case_folder / "nope.nii.gz"])
    _assert_one_line(info.value, "nope.nii.gz", "not found")


def test_modalities_on_different_grids(data_case_folder, data_write_nifti):
    shifted = AFFINE.copy()
    shifted[:3, 3] = [5.0, 0.0, 0.0]
    data_write_nifti(data_case_folder / "BraTS_001_t1.nii.gz", np.ones((8, 9, 10)), shifted)
    case = BratsLayout(data_case_folder.parent)[0]
    with pytest.raises(DataError) as info:
        case.load()
    _assert_one_line(info.value, "BraTS_001_t1.nii.gz", "different voxel grid")
    # grids that print alike (same shape, spacing, axis codes) say what differs: the offset
    _assert_one_line(info.value, "BraTS_001_t1.nii.gz", "origin shifted by (5, 0, 0) mm (5 mm)")
    assert "shape" not in str(info.value).split(":", 2)[2].split("(")[0]
    data_write_nifti(data_case_folder / "BraTS_001_t1.nii.gz", np.ones((8, 9, 11)), AFFINE)
    with pytest.raises(DataError) as info:
        BratsLayout(data_case_folder.parent)[0].load()
    _assert_one_line(info.value, "BraTS_001_t1.nii.gz", "8x9x11", "8x9x10")


def test_truncated_gzip(data_case_folder):
    path = data_case_folder / "BraTS_001_flair.nii.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as info:
        load_volume(path)
    _assert_one_line(info.value, "BraTS_001_flair.nii.gz", "truncated")


def test_not_an_image_and_empty_file(tmp_path):
    bad = tmp_path / "junk.nii.gz"
    bad.write_bytes(gzip.compress(b"hello"))
    with pytest.raises(DataError) as info:
        load_volume(bad)
    _assert_one_line(info.value, "junk.nii.gz")
    empty = tmp_path / "empty.nii"
    empty.write_bytes(b"")
    with pytest.raises(DataError) as info:
        load_volume(empty)
    _assert_one_line(info.value, "empty.nii")


def test_2d_image(tmp_path, data_write_nifti):
    data_write_nifti(tmp_path / "slice.nii.gz", np.ones((20, 30)), np.eye(4))
    with pytest.raises(DataError) as info:
        load_volume(tmp_path / "slice.nii.gz")
    _assert_one_line(info.value, "slice.nii.gz", "2d")
    data_write_nifti(tmp_path / "one.nii.gz", np.ones((20, 30, 1)), np.eye(4))
    with pytest.raises(DataError) as info:
        load_volume(tmp_path / "one.nii.gz")
    _assert_one_line(info.value, "one.nii.gz", "2d")


def test_nans_in_image(tmp_path, data_write_nifti):
    img = np.ones((6, 6, 6), np.float32)
    img[1, 2, 3] = np.nan
    img[0, 0, 0] = np.inf
    data_write_nifti(tmp_path / "nan.nii.gz", img, np.eye(4))
    with pytest.raises(DataError) as info:
        load_volume(tmp_path / "nan.nii.gz")
    _assert_one_line(info.value, "nan.nii.gz", "1 nan", "1 infinite")


def test_empty_manifest(tmp_path):
    for text in ("", "case_id,image,label\n", "\n\n"):
        path = tmp_path / "cases.csv"
        path.write_text(text)
        with pytest.raises(DataError) as info:
            CsvManifest(path)
        _assert_one_line(info.value, "cases.csv", "empty manifest")
    with pytest.raises(DataError) as info:
        open_dataset(path)
    _assert_one_line(info.value, "cases.csv", "empty")


def test_bad_manifest_rows(tmp_path, data_write_nifti):
    data_write_nifti(tmp_path / "a.nii.gz", np.ones((5, 5, 5)), np.eye(4))
    path = tmp_path / "m.csv"
    path.write_text("case_id,image,label\nA,a.nii.gz,maybe\n")
    with pytest.raises(DataError) as info:
        CsvManifest(path)
    _assert_one_line(info.value, "m.csv line 2", "maybe")
    path.write_text("case_id,image,label\nA,missing.nii.gz,1\n")
    with pytest.raises(DataError) as info:
        CsvManifest(path)
    _assert_one_line(info.value, "missing.nii.gz", "not found", "line 2")


def test_mask_shape_differs(data_case_folder, data_write_nifti):
    data_write_nifti(
        data_case_folder / "BraTS_001_seg.nii.gz", np.zeros((8, 9, 9)), AFFINE, np.uint8
    )
    with pytest.raises(DataError) as info:
        BratsLayout(data_case_folder.parent)[0].load()
    _assert_one_line(info.value, "BraTS_001_seg.nii.gz", "mask shape", "8x9x9", "8x9x10")
    vol = load_volume(data_case_folder / "BraTS_001_flair.nii.gz")
    with pytest.raises(DataError):
        load_mask(data_case_folder / "BraTS_001_seg.nii.gz", vol)


def test_missing_folder_and_unknown_layout(tmp_path):
    with pytest.raises(DataError) as info:
        open_dataset(tmp_path / "nowhere")
    _assert_one_line(info.value, "nowhere", "not found")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as info:
        open_dataset(tmp_path / "empty")
    _assert_one_line(info.value, "empty", "layout")


def test_grid_differences_are_named():
    from wsls.io.nifti import grid_difference

    base = np.diag([-1.0, -1.0, 1.0, 1.0])
    assert grid_difference((8, 9, 10), base, (8, 9, 10), base).startswith("the affines differ")
    spacing = np.diag([-2.0, -1.0, 1.0, 1.0])
    assert "spacing 2x1x1 vs 1x1x1 mm" in grid_difference((8, 9, 10), spacing, (8, 9, 10), base)
    flipped = np.diag([1.0, -1.0, 1.0, 1.0])
    assert "axis codes RPS vs LPS" in grid_difference((8, 9, 10), flipped, (8, 9, 10), base)
    text = grid_difference((8, 9, 11), base, (8, 9, 10), base)
    assert text == "shape 8x9x11 vs 8x9x10"


def test_a_mask_on_another_grid_names_the_difference(data_case_folder, data_write_nifti):
    shifted = AFFINE.copy()
    shifted[2, 3] = -2.5
    mask = data_case_folder / "BraTS_001_seg.nii.gz"
    data_write_nifti(mask, np.zeros((8, 9, 10)), shifted, np.uint8)
    volume = load_volume(data_case_folder / "BraTS_001_flair.nii.gz")
    with pytest.raises(DataError) as info:
        load_mask(mask, volume)
    _assert_one_line(info.value, "BraTS_001_seg.nii.gz", "origin shifted by (0, 0, -2.5) mm")


@pytest.mark.parametrize(
    "affine, words",
    [
        (np.zeros((4, 4)), ("singular",)),
        (np.diag([1.0, 0.0, 1.0, 1.0]), ("singular", "1x0x1")),
        (np.array([[1.0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), ("singular",)),
        (np.diag([np.nan, 1.0, 1.0, 1.0]), ("nan or infinite",)),
    ],
)
def test_affines_that_place_no_voxel_are_refused(affine, words):
    from wsls.io.nifti import check_affine

    with pytest.raises(DataError) as info:
        check_affine(affine, "scan.nii.gz")
    _assert_one_line(info.value, "scan.nii.gz", *words)


def test_implausible_voxel_sizes_warn_once(tmp_path, data_write_nifti):
    from wsls.errors import InputWarning

    img = np.random.default_rng(0).random((8, 9, 10)).astype(np.float32)
    fine = data_write_nifti(tmp_path / "fine.nii.gz", img, np.diag([0.5, 0.5, 3.0, 1.0]))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        load_volume(fine)  # 0.5 and 3 mm: plausible
    big = data_write_nifti(tmp_path / "big.nii.gz", img, np.diag([100.0, 100.0, 100.0, 1.0]))
    with pytest.warns(InputWarning) as got:
        load_volume(big)
    assert len(got) == 1
    text = str(got[0].message)
    assert "big.nii.gz" in text and "100x100x100 mm is implausible" in text and "\n" not in text


def test_input_remarks_stay_with_the_thread_that_made_them(tmp_path, data_write_nifti):
    """wsls.segment collects a scan's remarks per thread (not with the process-wide
    warnings.catch_warnings): a warning about another thread's scan, given while this thread
    collects, never lands in this thread's remarks."""
    import threading

    from wsls.errors import InputWarning, collect_input_remarks

    img = np.random.default_rng(0).random((8, 9, 10)).astype(np.float32)
    big = data_write_nifti(tmp_path / "big.nii.gz", img, np.diag([100.0, 100.0, 100.0, 1.0]))
    inside, done = threading.Barrier(2), threading.Barrier(2)

    def another_scan() -> None:
        inside.wait()
        load_volume(big)  # nobody collects on this thread: an InputWarning
        done.wait()

    thread = threading.Thread(target=another_scan)
    with pytest.warns(InputWarning, match="big.nii.gz"):
        thread.start()
        with collect_input_remarks() as here:
            inside.wait()
            done.wait()  # the other thread's scan was read while this one collected
        thread.join()
    assert here == []
    with collect_input_remarks() as mine:
        load_volume(big)
    assert len(mine) == 1 and "big.nii.gz" in mine[0] and "implausible" in mine[0]
