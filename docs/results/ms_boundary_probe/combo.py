"""Masks made from ana.py's arrays: the final mask cut to, or grown within, the intensity
model's lesion estimate (posterior >= 0.5) near it.

    python docs/results/ms_boundary_probe/combo.py ana_patient19.npz   (combo.txt)
"""

import sys

import numpy as np
from scipy import ndimage as ndi

from wsls.morphology import fill_holes


def main(path):
    arrays = np.load(path)
    m, t, post, sup, b = (arrays[k] for k in ("mask", "truth", "post", "sup", "brain"))

    def show(name, x):
        tp = (x & t).sum()
        print(
            f"{name:28s} dice {2 * tp / (x.sum() + t.sum()):.3f} ratio {x.sum() / t.sum():.2f} "
            f"sensitivity {tp / t.sum():.2f} precision {tp / max(x.sum(), 1):.2f}"
        )

    show("mask", m)
    show("posterior", post)
    show("support", sup)
    show("mask & support", m & sup)
    for r in (0, 1, 2, 3, 4, 6):
        x = post & (ndi.binary_dilation(m, iterations=r) if r else m)
        show(f"posterior within {r} of mask", x)
        show("  holes filled", fill_holes(x, slicewise=True) & b)


if __name__ == "__main__":
    main(sys.argv[1])
