"""Time the bias field's removal and the intensity model in ``wsls.segment`` of one case,
with the field removed and without, twice each in one process (at 5927a37):
``python field_time.py CASE BUNDLE`` (CASE as ``../cv20_brain_eroded_3/probe.py`` reads it)."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "cv20_brain_eroded_3"))
from probe import read_case

import wsls
import wsls.method.intensity as it
import wsls.method.segment as sg

case = sys.argv[1]
bundle = sys.argv[2]
arr, brain, truth, aff = read_case(case)
orig = it._field_removed
oip = sg.intensity_posterior
acc = {"field": 0.0, "ip": 0.0, "n": 0}


def timed(*a):
    t = time.perf_counter()
    r = orig(*a)
    acc["field"] += time.perf_counter() - t
    acc["fits"] += 1
    acc["distinct"] = len(r.distinct((0,))[0])
    return r


def ip(*a):
    t = time.perf_counter()
    r = oip(*a)
    acc["ip"] += time.perf_counter() - t
    acc["n"] += 1
    return r


sg.intensity_posterior = ip
for name, f in (("bias", timed), ("none", lambda v, s, c: v)) * 2:
    it._field_removed = f
    acc.update(field=0, ip=0, n=0, distinct=0, fits=0)
    t = time.perf_counter()
    seg = wsls.segment(arr, bundle, affine=aff, brain=brain, case_id=case)
    print(
        name, "seconds %.2f" % (time.perf_counter() - t), {k: round(v, 2) for k, v in acc.items()}
    )
