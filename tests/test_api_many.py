"""wsls.segment_many: folders of cases, loose files, sharding across torchrun ranks."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

import wsls
from wsls.batch import find_jobs
from wsls.errors import DataError

pytest_plugins = ("api_helpers",)  # api_run, api_one_thread

IDS = [f"phantom_300{i}" for i in range(4)]


@pytest.fixture(scope="module")
def api_models(api_run):
    return wsls.load(api_run / "bundle")


def test_find_jobs_in_a_dataset_folder(api_run):
    jobs = find_jobs(api_run.parent / "data", ("flair", "t1c"))
    assert [j.case_id for j in jobs] == IDS
    assert all(len(j.image) == 2 and j.brain is not None for j in jobs)


def test_find_jobs_loose_files_and_duplicates(tmp_path, api_run):
    import shutil

    data = api_run.parent / "data"
    loose = tmp_path / "loose"
    loose.mkdir()
    for case in IDS[:2]:
        shutil.copy(data / case / f"{case}_flair.nii.gz", loose / f"{case}.nii.gz")
    jobs = find_jobs([loose, loose / f"{IDS[0]}.nii.gz"], ("flair",))
    assert [j.case_id for j in jobs] == [IDS[0], IDS[1], f"{IDS[0]}_2"]
    with pytest.raises(DataError, match="not found"):
        find_jobs([tmp_path / "nothing"], ("flair",))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not a NIfTI"):
        find_jobs([tmp_path / "notes.txt"], ("flair",))
    with pytest.raises(DataError, match="no inputs"):
        find_jobs([], ("flair",))


def test_segment_many_writes_masks_and_summary(api_run, api_models, tmp_path, api_one_thread):
    rows = segment_all(api_run, api_models, tmp_path / "out")
    assert [r["case"] for r in rows] == IDS
    for row in rows:
        assert "error" not in row and (tmp_path / "out" / f"{row['case']}_lesion.nii.gz").exists()
    with open(tmp_path / "out" / "summary.csv") as handle:
        assert [r["case"] for r in csv.DictReader(handle)] == IDS
    assert (tmp_path / "out" / f"{IDS[0]}_acam.nii.gz").exists()
    again = wsls.segment_many(
        api_run.parent / "data", api_models, tmp_path / "out", skip_existing=True,
        progress=False, log=lambda _: None,
    )  # fmt: skip
    assert all(r.get("skipped") for r in again)


def segment_all(run, models, out, **kw):
    return wsls.segment_many(
        run.parent / "data", models, out, save_acam=True, progress=False, log=lambda _: None, **kw
    )


def test_sharding_splits_cases_across_ranks(
    api_run, api_models, tmp_path, monkeypatch, api_one_thread
):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("LOCAL_RANK", "0")
    seen = {}
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        rows = wsls.segment_many(
            api_run.parent / "data", api_models, tmp_path / "out", progress=False,
            log=lambda _: None,
        )  # fmt: skip
        seen[rank] = [r["case"] for r in rows]
        assert (tmp_path / "out" / f"summary_rank{rank}.csv").exists()
    assert seen == {0: [IDS[0], IDS[3]], 1: [IDS[1]], 2: [IDS[2]]}
    assert sorted(p.name for p in (tmp_path / "out").glob("*_lesion.nii.gz")) == [
        f"{i}_lesion.nii.gz" for i in IDS
    ]


def test_a_bad_case_is_skipped_not_fatal(api_run, api_models, tmp_path, api_one_thread):
    import shutil

    import nibabel as nib

    data = tmp_path / "data"
    shutil.copytree(api_run.parent / "data" / IDS[0], data / IDS[0])
    broken = data / "broken"
    broken.mkdir()
    for name in ("flair", "t1ce"):
        image = np.full((8, 8, 8), np.nan, np.float32)
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(broken / f"broken_{name}.nii.gz"))
    messages = []
    rows = wsls.segment_many(
        data, api_models, tmp_path / "out", progress=False, log=messages.append
    )
    by_case = {r["case"]: r for r in rows}
    assert "error" in by_case["broken"] and "NaN" in by_case["broken"]["error"]
    assert "error" not in by_case[IDS[0]]
    assert any("broken: skipped" in m for m in messages)
    with pytest.raises(DataError, match="NaN"):
        wsls.segment_many(data, api_models, tmp_path / "out2", progress=False, on_error="raise",
                          log=lambda _: None)  # fmt: skip
