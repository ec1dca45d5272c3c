"""Probe (at 7c75ec0, one lesion Gaussian): segment each cross-validation case with its fold's
bundle and describe the voxels the mask misses (FN) and takes wrongly (FP): BraTS labels,
robust z-scores of FLAIR, T1c and T2. Saves each mask beside the labels for post.py.

python fn.py RUN (an eval_cv.py output with per_case.csv; the bundles of ~/runs/s35/cv20, the
README's results/cv20). Output: fn.txt."""

import csv
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent.parent / "cv20_brain_eroded_3"))
from probe import BRATS2015, BRATS2018, read_case

import wsls

run = Path(sys.argv[1])
only = sys.argv[2:]
rows = [
    r
    for r in csv.DictReader(open(run / "per_case.csv"))
    if r["method"] == "wsls" and (not only or r["case"] in only)
]
for row in rows:
    c = row["case"]
    arr, brain, truth, aff = read_case(c)
    if c.startswith("brats_2013"):
        lab = nib.load(BRATS2015 / c / "OTMultiClass.nii.gz").get_fdata().astype(int)
        t2 = None
    else:
        lab = nib.load(BRATS2018 / c / f"{c}_seg.nii.gz").get_fdata().astype(int)
        t2 = nib.load(BRATS2018 / c / f"{c}_t2.nii.gz").get_fdata().astype(np.float32)
    seg = wsls.segment(
        arr,
        str(Path.home() / "runs/s35/cv20" / row["fold"] / "wsls" / "bundle"),
        affine=aff,
        brain=brain,
        case_id=c,
    )
    m = seg.mask

    def z(a, brain=brain):
        v = a[brain]
        med = np.median(v)
        s = np.percentile(v, 75) - np.percentile(v, 25)
        return (a - med) / (s / 1.349)

    f, t1c = z(arr[0]), z(arr[1])
    t2z = z(t2) if t2 is not None else None
    fn, fp, tp = truth & ~m, m & ~truth, m & truth
    d = 2 * tp.sum() / (m.sum() + truth.sum())
    print(f"== {c} dice {d:.3f} true {truth.sum()} mask {m.sum()} FN {fn.sum()} FP {fp.sum()}")
    for name, s in (("TP", tp), ("FN", fn), ("FP", fp), ("brain-nonles", brain & ~truth & ~m)):
        if s.sum() == 0:
            continue
        labs = {k: int((lab[s] == k).sum()) for k in (1, 2, 4)}

        def q(a, s=s):
            return " ".join(f"{x:5.2f}" for x in np.percentile(a[s], [10, 50, 90]))

        extra = f" T2 {q(t2z)}" if t2z is not None else ""
        print(f"  {name:12s} n={s.sum():7d} labels {labs} FLAIR {q(f)} T1c {q(t1c)}{extra}")
    # FN distance to mask
    dist = ndimage.distance_transform_edt(~m)
    print("  FN dist to mask pct 10/50/90:", np.percentile(dist[fn], [10, 50, 90]))
    lf, _ = ndimage.label(fn)
    sizes = np.bincount(lf.ravel())[1:]
    print("  FN components: n", len(sizes), "largest", sorted(sizes)[-5:])
    # FN inside mask's filled hull?
    np.savez_compressed(
        Path(__file__).parent / f"{c}.npz", mask=m, lab=lab, flair=arr[0], t1c=arr[1], brain=brain
    )
