"""What two lesion Gaussians cost: ``wsls.segment`` with the shipped model on three cases,
``EMConfig.lesion_components`` 1 and 2 alternating in one process (one warm-up call; no faint
refit), three calls each; prints the median seconds per case and setting, and the ratio.

python docs/results/lesion_components_time/time.py CASE_FOLDER... (output: time.txt)
"""

import dataclasses
import statistics
import sys
import time

import wsls


def main() -> None:
    models = wsls.load("tumour")
    settings = {
        n: dataclasses.replace(
            models.config,
            em=dataclasses.replace(
                models.config.em, lesion_components=n, faint_lesion_components=None
            ),
        )
        for n in (1, 2)
    }
    wsls.segment(sys.argv[1], models)  # warm-up
    for case in sys.argv[1:]:
        seconds = {1: [], 2: []}
        for _ in range(3):
            for n, config in settings.items():
                models.config = config
                start = time.perf_counter()
                wsls.segment(case, models)
                seconds[n].append(time.perf_counter() - start)
        one, two = (statistics.median(seconds[n]) for n in (1, 2))
        print(f"{case}: one {one:.2f} s, two {two:.2f} s, ratio {two / one:.2f}", flush=True)


if __name__ == "__main__":
    main()
