"""Segment each cross-validation case with its fold's bundle, FLAIR and T1c zeroed outside the
brain eroded by R voxels (6-connected) and that eroded brain given as ``brain``; print Dice
against the whole tumour on the whole grid.

python docs/results/cv20_brain_eroded_3/probe.py R RUN (RUN: an eval_cv.py cross-validation
output with per_case.csv and fold*/wsls/bundle; R = 0 is the control)
"""

import csv
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

import wsls

BRATS2015 = Path(__file__).resolve().parents[3] / "../shared/data/brats2015"
BRATS2018 = Path.home() / "wsls-data/brats2018"


def read_case(case: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if case.startswith("brats_2013"):
        folder = BRATS2015 / case
        images = [nib.load(folder / f"{n}_subtrMeanDivStd.nii.gz") for n in ("Flair", "T1c")]
        brain = nib.load(folder / "brainmask.nii.gz").get_fdata() > 0
        truth = nib.load(folder / "OTMultiClass.nii.gz").get_fdata() > 0
    else:
        folder = BRATS2018 / case
        images = [nib.load(folder / f"{case}_{m}.nii.gz") for m in ("flair", "t1ce")]
        truth = nib.load(folder / f"{case}_seg.nii.gz").get_fdata() > 0
        brain = None
    array = np.stack([i.get_fdata().astype(np.float32) for i in images])
    if brain is None:
        brain = array[0] != 0
    return array, brain, truth, images[0].affine


def main() -> None:
    radius, run = int(sys.argv[1]), Path(sys.argv[2])
    rows = [r for r in csv.DictReader(open(run / "per_case.csv")) if r["method"] == "wsls"]
    dice = []
    for row in rows:
        array, brain, truth, affine = read_case(row["case"])
        if radius:
            cross = ndimage.generate_binary_structure(3, 1)
            brain = ndimage.binary_erosion(brain, cross, iterations=radius)
            array[:, ~brain] = 0
        bundle = run / row["fold"] / "wsls" / "bundle"
        seg = wsls.segment(array, str(bundle), affine=affine, brain=brain, case_id=row["case"])
        mask = seg.mask
        dice.append(2 * (mask & truth).sum() / (mask.sum() + truth.sum()))
        ratio = mask.sum() / truth.sum()
        print(f"{row['case']} dice {dice[-1]:.3f} ratio {ratio:.2f} ok {seg.quality.ok}")
    print(f"mean {np.mean(dice):.4f}")


if __name__ == "__main__":
    main()
