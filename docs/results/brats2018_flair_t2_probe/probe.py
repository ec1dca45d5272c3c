"""Feasibility: the intensity mixture on FLAIR + T2 (T2 given to the mixture only) vs FLAIR.

Run at 13de0dd on the cross-validation's fold bundles (trained at 8c19603), the 16 BraTS 2018
cases (the four BraTS 2015 cases have no T2): ``python probe.py MODE RUN CASE...`` (MODE flair:
the control; t2: FLAIR + T2; t2only: T2 alone; RUN: the eval_cv output folder whose
per_case.csv names each case's fold). Outputs: ``<MODE>.txt`` (Dice on the whole grid;
``harness``: the run's own per_case.csv)."""

import copy
import csv
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

import wsls
import wsls.data.preprocess as pp
import wsls.method.intensity as it
import wsls.method.segment as sg

MODE = sys.argv[1]  # flair | t2 | t2only
run = Path(sys.argv[2])
cases = sys.argv[3:]
B18 = Path.home() / "wsls-data/brats2018"
EXTRA = {}
orig_pre = pp.preprocess


def pre(case, config=None):
    p = orig_pre(case, config)
    if "t2" in EXTRA and MODE != "flair":
        c2 = copy.copy(case)
        c2.image = np.stack([case.image[0], EXTRA["t2"]])
        EXTRA["t2p"] = torch.from_numpy(orig_pre(c2, config).image[1])
    return p


pp.preprocess = pre
OrigBV = it.BrainVoxels


class BV(OrigBV):
    def __init__(self, image, brain):
        super().__init__(image, brain)
        t = EXTRA.get("t2p")
        if t is not None and tuple(t.shape) == tuple(brain.shape):
            col = t.to(brain.device).flatten()[self.index].double()[:, None]
            self.values = torch.cat([self.values, col], 1)


it.BrainVoxels = BV
sg.BrainVoxels = BV
orig_cols = it._columns


def cols(values, hot, cold, channels):
    if values.shape[1] == 3 and channels == "first":
        return (0, 2) if MODE == "t2" else (2,)
    return orig_cols(values, hot, cold, channels)


it._columns = cols

rows = {r["case"]: r for r in csv.DictReader(open(run / "per_case.csv")) if r["method"] == "wsls"}
ds = []
for case in cases:
    row = rows[case]
    f = B18 / case
    imgs = [nib.load(f / f"{case}_{m}.nii.gz") for m in ("flair", "t1ce")]
    arr = np.stack([i.get_fdata().astype(np.float32) for i in imgs])
    truth = nib.load(f / f"{case}_seg.nii.gz").get_fdata() > 0
    brain = arr[0] != 0
    # the scans as given (BraTS 2018 files share one grid)
    EXTRA["t2"] = nib.load(f / f"{case}_t2.nii.gz").get_fdata().astype(np.float32)
    EXTRA.pop("t2p", None)
    seg = wsls.segment(
        arr,
        str(run / row["fold"] / "wsls" / "bundle"),
        affine=imgs[0].affine,
        brain=brain,
        case_id=case,
    )
    m = seg.mask
    d = 2 * (m & truth).sum() / (m.sum() + truth.sum())
    ds.append(d)
    print(
        f"{case} {MODE} dice {d:.3f} ratio {m.sum() / truth.sum():.2f} ok {seg.quality.ok}"
        f" harness {float(row['dice']):.3f}",
        flush=True,
    )
print(f"mean {np.mean(ds):.4f}")
