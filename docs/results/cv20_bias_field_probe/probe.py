"""Probe: the mixture reads FLAIR with a smooth polynomial field removed (fit robustly on the
brain's voxels); the networks and their inputs unchanged.

Run at 13de0dd (before ``EMConfig.bias_order``, whose default now removes a field itself), on
the cross-validation's fold bundles: ``python probe.py ORDER RUN [HOT]`` (RUN: the eval_cv
output folder whose per_case.csv names each case's fold; HOT: leave out of the fit the voxels
whose smoothed ACAM is at least this share of its peak). Outputs: ``bias<ORDER>[_hot<HOT>].txt``
(``harness``: the Dice of the run's own per_case.csv; Dice here on the whole grid)."""

import csv
import sys
from pathlib import Path

import numpy as np
import torch

import wsls
import wsls.method.intensity as it
import wsls.method.segment as sg

sys.path.insert(0, str(Path(__file__).parent.parent / "cv20_brain_eroded_3"))
from probe import read_case  # noqa: E402

ORDER = int(sys.argv[1])
run = Path(sys.argv[2])
only = [a for a in sys.argv[3:] if not a[0].isdigit()]
STATS = {}


def field(values, index, shape, order, excl=None):
    i = torch.stack(torch.unravel_index(index, shape), 1).double()
    i = (i - i.mean(0)) / i.std(0)
    terms = [torch.ones(len(i), dtype=torch.float64)]
    for a in range(order + 1):
        for b in range(order + 1 - a):
            for c in range(order + 1 - a - b):
                if a + b + c > 0:
                    terms.append(i[:, 0] ** a * i[:, 1] ** b * i[:, 2] ** c)
    A = torch.stack(terms, 1)
    sub = torch.arange(0, len(i), 7)
    keep = torch.ones(len(sub), dtype=torch.bool) if excl is None else ~excl[sub]
    base = keep.clone()
    y = values[sub]
    for _ in range(5):
        coef = torch.linalg.lstsq(A[sub][keep], y[keep, None]).solution[:, 0]
        r = y - A[sub] @ coef
        med = r[keep].median()
        mad = (r[keep] - med).abs().median() * 1.4826
        keep = base & ((r - med).abs() <= 2.0 * mad)
    f = A @ coef
    return f - f.mean()


HOT = float(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3][0].isdigit() else None
orig_ip = it.intensity_posterior


def ip(image, brain, acam, config, voxels=None):
    voxels = voxels if voxels is not None else it.BrainVoxels(image, brain)
    if ORDER > 0 and not getattr(voxels, "corrected", False):
        excl = None
        if HOT is not None:
            sm = it._smoothed(acam.float(), config.em).flatten()[voxels.index]
            excl = (sm / sm.max().clamp_min(1e-8) >= HOT).cpu()
        f = field(
            voxels.values[:, 0].cpu(), voxels.index.cpu(), tuple(brain.shape), ORDER, excl
        ).to(voxels.values.device)
        STATS["range"] = float(f.quantile(0.95) - f.quantile(0.05))
        voxels.values = voxels.values.clone()
        voxels.values[:, 0] -= f
        voxels._distinct.clear()
        voxels.corrected = True
    return orig_ip(image, brain, acam, config, voxels)


sg.intensity_posterior = ip
rows = [
    r
    for r in csv.DictReader(open(run / "per_case.csv"))
    if r["method"] == "wsls" and (not only or r["case"] in only)
]
ds = []
for row in rows:
    arr, brain, truth, aff = read_case(row["case"])
    seg = wsls.segment(
        arr,
        str(run / row["fold"] / "wsls" / "bundle"),
        affine=aff,
        brain=brain,
        case_id=row["case"],
    )
    m = seg.mask
    d = 2 * (m & truth).sum() / (m.sum() + truth.sum())
    ds.append(d)
    ratio, field_range = m.sum() / truth.sum(), STATS.get("range", 0)
    print(
        f"{row['case']:28s} order {ORDER} dice {d:.3f} ratio {ratio:.2f} ok {seg.quality.ok}"
        f" field_range {field_range:.2f} harness {float(row['dice']):.3f}",
        flush=True,
    )
print(f"mean {np.mean(ds):.4f}")
