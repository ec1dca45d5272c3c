"""Data-path benchmarks: case loading + preprocessing, phantom generation, patch throughput,
and the FLAIR-threshold baseline (phantom and, where ../shared/data exists, real BraTS).

    python benchmarks/bench_data.py                 # everything, 5 repeats, medians
    python benchmarks/bench_data.py --only load phantom --repeats 9
    python benchmarks/bench_data.py --out /tmp/wsls_bench   # also writes phantom PNGs there

Timings on a shared 2-core machine are noisy: each figure is the median of --repeats runs
(min and max shown too).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsls.baselines.threshold import ThresholdBaseline  # noqa: E402
from wsls.data.cache import VolumeCache  # noqa: E402
from wsls.data.loader import build_patch_loader  # noqa: E402
from wsls.data.patches import PatchConfig  # noqa: E402
from wsls.data.preprocess import PreprocessConfig, preprocess  # noqa: E402
from wsls.io.layouts import open_dataset  # noqa: E402
from wsls.metrics import dice  # noqa: E402
from wsls.phantom.generate import make_phantom, write_phantom_dataset  # noqa: E402
from wsls.viz import save_case_slices  # noqa: E402


def shared_data() -> Path | None:
    root = Path(
        os.environ.get("WSLS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    return root if (root / "brats2015").is_dir() else None


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


def show(name: str, t: tuple[float, float, float], target: str = "") -> None:
    med, lo, hi = t
    print(f"{name:<58} median {med:7.3f} s  (min {lo:.3f}, max {hi:.3f}) {target}")


def bench_load(repeats: int, tmp: Path) -> None:
    root = shared_data()
    if root is None:
        print("shared BraTS cases absent: timing a written 240x240x155 phantom (4 modalities)")
        write_phantom_dataset(tmp / "big", 1, (240, 240, 155), seed=1, healthy_fraction=0)
        ref = open_dataset(tmp / "big", modalities=["flair", "t1c"])[0]
    else:
        ref = open_dataset(root / "brats2015")[0]
    config = PreprocessConfig(downsample=2.0)
    ref.load()  # warm the page cache and imports
    show("load one BraTS case (flair+t1c+seg+brainmask, 240x240x155)", timed(ref.load, repeats))
    case = ref.load()
    show("preprocess it (crop, z-score, 2 mm)", timed(lambda: preprocess(case, config), repeats))
    show(
        "load + preprocess",
        timed(lambda: preprocess(ref.load(), config), repeats),
        "[target < 2 s]",
    )


def bench_phantom(repeats: int, out: Path | None) -> None:
    make_phantom((64, 64, 64), seed=0)  # imports
    counter = iter(range(10_000))
    show(
        "phantom 120x120x78, 4 modalities, tumour+stroke+MS",
        timed(
            lambda: make_phantom((120, 120, 78), next(counter), ("tumour", "stroke", "ms")), repeats
        ),
        "[target < 1 s]",
    )
    show(
        "phantom 120x120x78, one random lesion kind",
        timed(lambda: make_phantom((120, 120, 78), next(counter)), repeats),
    )
    show(
        "phantom 240x240x155, tumour",
        timed(lambda: make_phantom((240, 240, 155), 1, "tumour"), max(1, repeats // 3)),
    )
    if out is not None:
        for kind, seed in (("tumour", 3), ("ms", 4), ("stroke", 5)):
            p = make_phantom((120, 120, 78), seed, kind)
            path = save_case_slices(
                out / f"phantom_{kind}_{seed}.png", p.image, p.modalities, p.mask, spacing=p.spacing
            )
            print(f"  wrote {path}")


def bench_loader(repeats: int, tmp: Path) -> None:
    root = shared_data()
    if root is None:
        write_phantom_dataset(tmp / "small", 6, (120, 120, 78), seed=2)
        refs = list(open_dataset(tmp / "small", modalities=["flair", "t1c"]))
        what = "6 phantom cases (flair, t1c)"
    else:
        refs = list(open_dataset(root / "brats2015"))
        what = "4 BraTS cases (flair, t1c)"
    patch = PatchConfig(size=32, samples_per_epoch=512)
    print(f"patch loader over {what}, 32^3 at 2 mm, batch 8, 512 patches per epoch:")
    for workers in (0, 1, 2):
        for cache_dir in (None, tmp / "cache"):
            cache = VolumeCache(PreprocessConfig(downsample=2.0), cache_dir)
            start = time.perf_counter()
            loader = build_patch_loader(refs, patch, cache=cache, num_workers=workers, batch_size=8)
            build = time.perf_counter() - start
            rates = []
            for _ in range(repeats):
                start = time.perf_counter()
                n = sum(len(batch[1]) for batch in loader)
                rates.append(n / (time.perf_counter() - start))
            where = "disk .npy cache (mmap)" if cache_dir else "memory"
            print(
                f"  workers {workers}, images in {where:<22} build {build:5.2f} s "
                f"({cache.hits['decoded']} decoded, {cache.hits['disk']} from disk)  "
                f"median {statistics.median(rates):7.0f} patches/s (min {min(rates):.0f})"
            )
    print("  a training step of 8 patches taking 0.1-0.3 s consumes 27-80 patches/s")


def bench_baseline() -> None:
    train = [make_phantom((120, 120, 78), s, "tumour").to_case() for s in range(100, 110)]
    test = [make_phantom((120, 120, 78), s, "tumour").to_case() for s in range(200, 210)]
    mixed_train = [make_phantom((120, 120, 78), s).to_case() for s in range(300, 310)]
    mixed_test = [make_phantom((120, 120, 78), s).to_case() for s in range(400, 410)]
    print("FLAIR threshold baseline (tuned on 10 phantoms, Dice on 10 others):")
    for name, tr, te in (
        ("tumour phantoms", train, test),
        ("mixed tumour/stroke/MS", mixed_train, mixed_test),
    ):
        for lcc in (False, True):
            base = ThresholdBaseline(largest_component=lcc).fit(tr)
            scores = [dice(base.predict(c), c.mask, c.brain) for c in te]
            mean, sd = np.mean(scores), np.std(scores, ddof=1)
            print(
                f"  {name:<24} largest component {lcc!s:<5} threshold {base.threshold:5.2f} "
                f"train {base.train_dice:.3f}  test {mean:.3f} +- {sd:.3f}"
            )
    root = shared_data()
    if root is None:
        return
    cases = [ref.load() for ref in open_dataset(root / "brats2015")]
    print("FLAIR threshold baseline on the 4 shared BraTS cases:")
    for normalise in (True, False):
        for lcc in (False, True):
            base = ThresholdBaseline(largest_component=lcc, normalise=normalise).fit(cases)
            loo = []
            for i, held in enumerate(cases):
                fold = ThresholdBaseline(largest_component=lcc, normalise=normalise)
                fold.fit([c for j, c in enumerate(cases) if j != i])
                loo.append(dice(fold.predict(held), held.mask, held.brain))
            folds = ", ".join(f"{d:.2f}" for d in loo)
            print(
                f"  z-scored again {normalise!s:<5} largest component {lcc!s:<5} tuned on all 4: "
                f"{base.train_dice:.3f}  leave-one-out: {np.mean(loo):.3f} ({folds})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="*", default=["load", "phantom", "loader", "baseline"])
    parser.add_argument("--out", type=Path, default=None, help="folder for phantom PNGs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if "load" in args.only:
            bench_load(args.repeats, Path(tmp))
        if "phantom" in args.only:
            bench_phantom(args.repeats, args.out)
        if "loader" in args.only:
            bench_loader(max(2, args.repeats // 2), Path(tmp))
        if "baseline" in args.only:
            bench_baseline()


if __name__ == "__main__":
    main()
