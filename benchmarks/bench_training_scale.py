"""Training at scale: ``wsls.train`` on 25, 100 and 400 generated phantom cases, each size in a
fresh process. Per stage: wall time; per case of the per-case stages (maps, intensity model,
confident voxels, self-training voxels): mean seconds; peak resident memory (ru_maxrss, at the
end of each stage); disk used by the volume cache and the per-case outputs.

    python benchmarks/bench_training_scale.py                       # 25 100 400, default schedule
    python benchmarks/bench_training_scale.py --sizes 25 100 --schedule quick --shape 64 64 40
    python benchmarks/bench_training_scale.py --out /tmp/scale      # table.md, table.csv there

Cases: a pool of ``--pool`` distinct phantoms (tumour, 20 % lesion-free), hard-linked under new
case ids up to each size (each is a separate case to wsls: its own cache entry and outputs).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (log line that starts it, stage name); "start" begins the run
MARKS = (
    ("[wsls] training on", "checks"),
    ("[wsls] classifier", "classifier"),
    ("[wsls] maps, intensity", "maps + intensity + confident"),
    ("[wsls] representation model", "embedding"),
    ("[wsls] self-training round 1: confident", "self-training voxels"),
    ("[wsls] self-training round 1", "embedding round 1"),
    ("[wsls] model bundle written", None),
)


def schedule(name: str):
    """The tumour preset's configuration (WSLSConfig defaults); "quick": shorter network
    schedules; "small": also for small phantom grids (the classifier at 1 mm with 16^3
    patches), a lighter intensity model (10 EM steps, 2 support rounds) and no self-training
    round, so that 525 cases fit a short CPU budget."""
    from dataclasses import replace

    from wsls.method.config import StageSchedule, WSLSConfig

    config = WSLSConfig()
    if name in ("quick", "small"):
        config = replace(
            config, classifier=StageSchedule(2, 200), embedding_schedule=StageSchedule(1, 20)
        )
    if name == "small":
        config = config.updated(
            {
                "classifier_scale": 1,
                "patch": {"size": 16, "min_lesion_voxels": 20},
                "em": {"iterations": 10, "support_rounds": 2},
                "self_training": 0,
            }
        )
    return config


def make_pool(root: Path, n: int, shape) -> list[Path]:
    from wsls.phantom.generate import write_phantom_dataset

    if not root.exists():
        write_phantom_dataset(root, n, shape, seed=7, healthy_fraction=0.2, lesions="tumour")
    return sorted(p for p in root.iterdir() if p.is_dir())


def make_dataset(pool: list[Path], dest: Path, n: int) -> Path:
    """n case folders hard-linked from the pool, each under its own id."""
    shutil.rmtree(dest, ignore_errors=True)
    for i in range(n):
        src = pool[i % len(pool)]
        case = dest / f"case_{i:05d}"
        case.mkdir(parents=True)
        for f in src.iterdir():
            os.link(f, case / f.name.replace(src.name, case.name))
    return dest


def child(data: str, out: str, schedule_name: str, workers: int) -> None:
    """One training, reported as JSON on stdout's last line."""
    import wsls

    marks = [("start", time.perf_counter(), _maxrss())]

    def log(message: str) -> None:
        marks.append((message, time.perf_counter(), _maxrss()))

    config = schedule(schedule_name)
    wsls.train(data, out, config, progress=False, log=log, workers=workers)
    marks.append(("end", time.perf_counter(), _maxrss()))
    print(json.dumps({"marks": marks, "per_case": _per_case(Path(out) / "cases")}))


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _per_case(root: Path) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for meta in root.glob("*/*/meta.json"):
        for name, s in json.loads(meta.read_text())["meta"].get("seconds", {}).items():
            sums.setdefault(name, []).append(s)
    return {k: sum(v) / len(v) for k, v in sums.items()}


def stages(marks) -> list[dict]:
    """Wall time and peak RSS (MB, at the stage's end) of each stage, from the log's marks."""
    rows, name = [], "preparing"
    for (_, t0, _), (message, t1, rss) in zip(marks, marks[1:], strict=False):
        rows.append({"stage": name, "seconds": t1 - t0, "peak_rss_mb": rss / 1e6})
        name = next((n for prefix, n in MARKS if message.startswith(prefix)), message)
    return [r for r in rows if r["stage"] is not None]


def du(path: Path) -> float:
    """MB in the files under path."""
    files = path.rglob("*") if path.exists() else ()
    return sum(f.stat().st_size for f in files if f.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 100, 400])
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 64, 40])
    parser.add_argument("--pool", type=int, default=25)
    parser.add_argument("--schedule", choices=("default", "quick", "small"), default="default")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/wsls_bench_scale"))
    parser.add_argument("--child", nargs=2, metavar=("DATA", "RUN"))
    args = parser.parse_args()
    if args.child:
        return child(*args.child, args.schedule, args.workers)
    args.out.mkdir(parents=True, exist_ok=True)
    pool = make_pool(args.out / f"pool_{'x'.join(map(str, args.shape))}", args.pool, args.shape)
    results = []
    for n in args.sizes:
        data = make_dataset(pool, args.out / f"data_{n}", n)
        run = args.out / f"run_{n}"
        shutil.rmtree(run, ignore_errors=True)
        cmd = [sys.executable, __file__, "--child", str(data), str(run)]
        cmd += ["--schedule", args.schedule, "--workers", str(args.workers)]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            sys.exit(f"{n} cases failed:\n{proc.stderr[-3000:]}")
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        rows = stages(report["marks"])
        total = report["marks"][-1][1] - report["marks"][0][1]
        result = {
            "cases": n, "total_s": total, "stages": rows, "per_case_s": report["per_case"],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
            "cache_mb": du(run / "cache"), "case_outputs_mb": du(run / "cases"),
        }  # fmt: skip
        results.append(result)
        print(json.dumps(result), flush=True)
        shutil.rmtree(data, ignore_errors=True)
    write_tables(results, args)


def write_tables(results: list[dict], args) -> None:
    names = [r["stage"] for r in results[0]["stages"]]
    per_case = sorted(results[0]["per_case_s"])
    head = ["cases", "total s", *[f"{n} s" for n in names]]
    head += [f"{k} s/case" for k in per_case] + ["peak RSS MB", "cache MB", "case outputs MB"]
    rows = []
    for r in results:
        by = {s["stage"]: s["seconds"] for s in r["stages"]}
        row = [r["cases"], f"{r['total_s']:.0f}", *[f"{by.get(n, 0):.0f}" for n in names]]
        row += [f"{r['per_case_s'].get(k, 0):.3f}" for k in per_case]
        row += [f"{r['peak_rss_mb']:.0f}", f"{r['cache_mb']:.0f}", f"{r['case_outputs_mb']:.0f}"]
        rows.append(row)
    with open(args.out / "table.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([head, *rows])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    shape = "x".join(map(str, args.shape))
    lines.append(f"\nschedule: {args.schedule}; phantom grid {shape}; pool of {args.pool}")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
