"""Time ``wsls.segment`` per case with one bundle: reading, preparing, the method and the mask
mapped back to the scan's grid, after one warm-up call (the first use of torch's ops).

Prints a markdown row per case: the median seconds over ``--repeats`` calls, the verdict and
the erase test's probabilities. ``--masks DIR`` saves each mask as ``DIR/<case>.npy``, so that
two checkouts can be shown to give the same masks (run the other with ``PYTHONPATH`` at its
tree); ``--no-second-look`` times the method without the erase test.

Run: python benchmarks/segment_time.py results/cv20/fold1/wsls/bundle \\
    ../shared/data/brats2015/brats_2013_pat0003_1 ~/wsls-data/brats2018/Brats18_CBICA_APY_1
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import numpy as np

import wsls


def _probability(measures: dict, key: str) -> str:
    value = measures.get(key)
    return "-" if value is None else f"{float(value):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="a bundle or run folder")
    parser.add_argument("cases", type=Path, nargs="+", help="case folders")
    parser.add_argument("--repeats", type=int, default=1, help="calls per case (median)")
    parser.add_argument("--no-second-look", action="store_true", help="erase test off")
    parser.add_argument("--masks", type=Path, help="save each mask as DIR/<case>.npy")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    models = wsls.load(args.bundle)
    if args.no_second_look:
        models.config = dataclasses.replace(models.config, second_look=False)
    wsls.segment(args.cases[0], models)  # warm-up
    if args.masks is not None:
        args.masks.mkdir(parents=True, exist_ok=True)
    print(f"wsls {wsls.__file__}")
    print("| case | seconds | verdict | erased probability | all evidence erased |")
    print("|---|---|---|---|---|")
    for case in args.cases:
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            segmentation = wsls.segment(case, models)
            seconds.append(time.perf_counter() - start)
        if args.masks is not None:
            np.save(args.masks / f"{case.name}.npy", np.asarray(segmentation.mask))
        quality = segmentation.quality
        erased = _probability(quality.measures, "erased_probability")
        evidence = _probability(quality.measures, "evidence_erased_probability")
        median = statistics.median(seconds)
        print(f"| {case.name} | {median:.1f} | {quality.verdict} | {erased} | {evidence} |")


if __name__ == "__main__":
    main()
