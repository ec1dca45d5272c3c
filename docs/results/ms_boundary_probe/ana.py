"""Where a held-out MS patient's mask gains and loses: components, boundary, FLAIR values.

    python docs/results/ms_boundary_probe/ana.py patient19 \
        results/ms_patient19/cross/wsls/bundle regions.boundary_band=null

prints the figures (ana.txt) and writes ana_patient19.npz for combo.py.
"""

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))
from eval_cv import with_overrides  # noqa: E402

from wsls.data.cache import VolumeCache  # noqa: E402
from wsls.io.layouts import open_dataset  # noqa: E402
from wsls.method.confident import supported_lesion  # noqa: E402
from wsls.method.segment import segment_volume  # noqa: E402
from wsls.method.trained import load_models  # noqa: E402


def dice(a, b):
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def main(case, bundle, *overrides):
    models = load_models(Path(bundle))
    cfg = with_overrides(models.config, list(overrides))
    ref = open_dataset(ROOT / "../shared/data/ms_lesjak2017", "auto", cfg.modalities)[case]
    prep = VolumeCache(cfg.preprocess).get(ref)
    res = segment_volume(models.classifier, models.embedding, prep.image, prep.brain, cfg)
    b, t = prep.brain, prep.mask & prep.brain
    m = res.mask & b
    f = prep.image[0]
    sd, mu = f[b].std(), np.median(f[b])
    fp, fn = m & ~t, t & ~m
    print(
        f"{case}: dice {dice(m, t):.3f} mask {m.sum()} truth {t.sum()} TP {(m & t).sum()} "
        f"FP {fp.sum()} FN {fn.sum()} verdict {res.quality.summary()}"
    )
    post = (res.maps.posterior >= 0.5) & b
    sup = supported_lesion(res.maps.acam, b, res.maps.posterior, cfg.confident)
    print(
        f"posterior dice {dice(post, t):.3f} ({post.sum()}), support dice {dice(sup, t):.3f} "
        f"({sup.sum()}), mask in posterior {(m & post).sum() / max(m.sum(), 1):.2f}"
    )
    near = ndi.binary_dilation(t, iterations=2)
    print(f"FP within 2 voxels of the truth {(fp & near).sum()}, farther {(fp & ~near).sum()}")
    every = np.ones((3, 3, 3))
    lab, n = ndi.label(m, every)
    sizes = ndi.sum(np.ones_like(m), lab, range(1, n + 1))
    miss = ndi.sum(t, lab, range(1, n + 1)) == 0
    print(
        f"mask components {n}; {miss.sum()} touch no lesion, holding {sizes[miss].sum():.0f} "
        f"voxels (largest {np.sort(sizes[miss])[::-1][:10]})"
    )
    lab, n = ndi.label(t, every)
    sizes = ndi.sum(np.ones_like(t), lab, range(1, n + 1))
    missed = ndi.sum(m, lab, range(1, n + 1)) == 0
    print(f"lesion components {n}; {missed.sum()} missed, holding {sizes[missed].sum():.0f}")
    parts = {"TP": m & t, "FP near": fp & near, "FP far": fp & ~near, "FN": fn, "brain": b}
    for name, a in parts.items():
        q = np.percentile((f[a] - mu) / sd, [10, 50, 90])
        print(f"  FLAIR (brain sd above its median) {name:8s} n={a.sum():7d} p10 {q[0]:.2f} "
              f"p50 {q[1]:.2f} p90 {q[2]:.2f}")  # fmt: skip
    np.savez_compressed(f"ana_{case}.npz", mask=m, truth=t, post=post, sup=sup, brain=b)


if __name__ == "__main__":
    main(*sys.argv[1:])
