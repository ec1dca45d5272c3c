"""Probe: the masks fn.py saved, closed (radius 1-4 voxels) before their holes are filled, or
smoothed (Gaussian, sigma 1-2, > 0.5): Dice on the whole grid. Output: post.txt."""

import glob
from pathlib import Path

import numpy as np
from scipy import ndimage


def fill(m):
    m = ndimage.binary_fill_holes(m)
    for z in range(m.shape[2]):
        m[:, :, z] = ndimage.binary_fill_holes(m[:, :, z])
    return m


def close(m, r):
    dil = ndimage.distance_transform_edt(~m) <= r
    return ndimage.distance_transform_edt(dil) > r


def dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


res = {}
files = sorted(glob.glob(str(Path(__file__).parent / "*.npz")))
variants = ["base", "close1", "close2", "close3", "close4", "smooth1", "smooth2"]
print("case".ljust(24), " ".join(v.rjust(7) for v in variants))
for f in files:
    d = np.load(f)
    m, t, brain = d["mask"], d["lab"] > 0, d["brain"]
    out = []
    for v in variants:
        if v == "base":
            x = m
        elif v.startswith("close"):
            x = fill(close(m, int(v[5:]))) & brain
        else:
            x = (ndimage.gaussian_filter(m.astype(np.float32), float(v[6:])) > 0.5) & brain
        out.append(dice(x, t))
        res.setdefault(v, []).append(out[-1])
    print(Path(f).stem[:24].ljust(24), " ".join(f"{o:7.3f}" for o in out), flush=True)
print("mean".ljust(24), " ".join(f"{np.mean(res[v]):7.4f}" for v in variants))
