"""The GPU check's method steps, through the Python API (``wsls.train``, ``wsls.segment``) so
that they do not depend on the command line's argument form.

  python tools/gpu_pipeline.py train --out DIR [--device cuda]
      A quick bundle trained on phantoms made in memory (no data files needed): the default
      configuration (grid, networks, region growing) with short
      schedules. On CUDA the training loop runs under bf16 autocast (FitConfig.amp, on by
      default); the classifier's patches/s per epoch come from its metrics.csv.
  python tools/gpu_pipeline.py segment --bundle DIR [--case PATH] [--repeats 3] [--device cuda]
      One BraTS case segmented on the CPU and on CUDA with the same bundle: the time of each
      step (Segmentation.timings; "method" is the compute), Dice of the CUDA mask against the
      CPU mask, and of both against the case's own mask where it has one.
  python tools/gpu_pipeline.py pack-case CASE_DIR OUT.npz
      A BraTS case folder as one small file of arrays (.gpu_check/case.npz travels with the
      repository to a GPU machine that cannot see ../shared/data).

wsls needs nibabel for both steps (it orients in-memory arrays through nibabel too).

Each command prints its progress, then one last line ``RESULT {json}``. A step that cannot run
prints ``RESULT {"skipped": "why"}`` and exits 0; an error exits 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Short schedules on top of the default configuration: the networks, grid and inference
# settings stay the defaults, so segmenting with this bundle costs what a real one does.
QUICK_TRAINING = {
    "embedding_schedule": {"epochs": 1, "per_epoch": 10},
    "self_training": 0,
}
PHANTOM_SHAPE = (120, 120, 78)  # 2 mm voxels over the phantom's 240x240x155 mm


class Skip(Exception):
    """A step that cannot run here; the message says why, in one line."""


def result(payload: dict) -> None:
    print("RESULT " + json.dumps(payload, default=float), flush=True)


# --- train -------------------------------------------------------------------------------------


def phantom_cases(n: int, shape, seed: int = 100):
    """n in-memory cases (FLAIR + T1c): tumours, the last one lesion-free."""
    from wsls.phantom.generate import make_phantom

    cases = []
    for i in range(n):
        lesions = () if i == n - 1 else "tumour"
        phantom = make_phantom(shape, seed=seed + i, lesions=lesions)
        cases.append(phantom.to_case(f"phantom_{i}").subset(("flair", "t1c")))
    return cases


def read_metrics(run_dir: Path) -> list[dict]:
    """A stage's epochs (number, items/s, seconds) from its metrics.csv; [] when absent."""
    from wsls.training.rundir import METRICS_FILE
    from wsls.training.rundir import read_metrics as read_rows

    if not (run_dir / METRICS_FILE).exists():
        return []
    keys = ("epoch", "items_per_s", "seconds")
    return [{k: row[k] for k in keys if k in row} for row in read_rows(run_dir)]


def cmd_train(args) -> dict:
    import torch

    import wsls
    from wsls.method.config import WSLSConfig

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise Skip("no CUDA device visible")
    start = time.perf_counter()
    cases = phantom_cases(args.cases, tuple(args.shape))
    made = time.perf_counter()
    print(f"{len(cases)} phantoms {tuple(args.shape)} in {made - start:.1f} s", flush=True)
    schedules = {
        **QUICK_TRAINING,
        "classifier": {"epochs": 2, "per_epoch": args.classifier_patches},
    }
    config = WSLSConfig().updated(schedules)
    out = Path(args.out)
    bundle = wsls.train(
        cases, out, config, device=args.device, progress=False, cache=False, log=print
    )
    trained = time.perf_counter()
    classifier = read_metrics(out / "runs" / "classifier")
    embedding = read_metrics(out / "runs" / "embedding")
    amp = args.device.startswith("cuda")  # FitConfig.amp (default True) applies on CUDA only
    return {
        "bundle": str(bundle),
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if amp else None,
        "autocast": "bf16" if amp else "none (CPU)",
        "phantoms": len(cases),
        "shape": list(args.shape),
        "schedules": schedules,
        "phantom_s": made - start,
        "train_s": trained - made,
        "classifier_epochs": classifier,
        "embedding_epochs": embedding,
        "patch_size": config.patch.size,
        "batch_size": config.batch_size,
    }


# --- segment -----------------------------------------------------------------------------------


def find_case(given: str | None) -> Path:
    """The case to segment: --case, else the first BraTS case under $WSLS_SHARED_DATA,
    ./shared/data or ../shared/data (relative to the repository), else .gpu_check/case.npz."""
    if given:
        path = Path(given)
        if not path.exists():
            raise Skip(f"--case {given}: not found")
        return path
    roots = [os.environ.get("WSLS_SHARED_DATA"), ROOT / "shared" / "data"]
    for root in [*roots, ROOT.parent / "shared" / "data"]:
        if root and (Path(root) / "brats2015").is_dir():
            folders = sorted(p for p in (Path(root) / "brats2015").iterdir() if p.is_dir())
            if folders:
                return folders[0]
    packed = ROOT / ".gpu_check" / "case.npz"
    if packed.exists():
        return packed
    raise Skip(
        "no BraTS case: none under $WSLS_SHARED_DATA, ./shared/data or ../shared/data "
        "(brats2015/), no .gpu_check/case.npz, no --case"
    )


def load_case(path: Path):
    """(segment's input, keyword arguments, truth mask or None, description)."""
    import numpy as np

    if path.suffix == ".npz":
        data = np.load(path, allow_pickle=False)
        kwargs = {"affine": data["affine"], "brain": data["brain"], "case_id": str(data["id"])}
        truth = data["mask"] if "mask" in data.files else None
        return data["image"], kwargs, truth, f"{data['id']} (arrays from {path.name})"
    if importlib.util.find_spec("nibabel") is None:
        raise Skip("nibabel is not installed (wsls reads and orients volumes through it)")
    from wsls.io.layouts import open_dataset

    modalities = ("flair", "t1c")
    refs = list(open_dataset(path, "brats", modalities))[:1]  # a case folder, or a dataset's first
    if not refs:
        raise Skip(f"{path}: no BraTS case found there")
    case = refs[0].load().subset(modalities)
    return case, {}, case.mask, f"{case.id} (case folder)"


def cmd_pack_case(args) -> dict:
    import numpy as np

    case, _, truth, _ = load_case(Path(args.case))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "image": case.image.astype(np.float32),
        "affine": case.volume.affine,
        "brain": case.brain,
        "id": np.array(case.id),
    }
    if truth is not None:
        arrays["mask"] = truth
    np.savez_compressed(out, **arrays)
    return {"npz": str(out), "case": case.id, "shape": list(case.image.shape)}


def _dice(a, b) -> float | None:
    if a is None or b is None:
        return None
    from wsls.metrics import dice

    return float(dice(a, b))


def _summary(seg, wall: float) -> dict:
    return {
        "timings": {k: float(v) for k, v in seg.timings.items()},
        "wall_s": wall,
        "voxels": int(seg.mask.sum()),
        "lambda": seg.candidates.threshold,
        "kept": int(seg.candidates.kept.sum()),
        "probability": float(seg.probability),
    }


def cmd_segment(args) -> dict:
    import torch

    import wsls

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise Skip("no CUDA device visible")
    if not Path(args.bundle).exists():
        raise Skip(f"no model bundle at {args.bundle}")
    begun = time.perf_counter()
    path = find_case(args.case)
    image, kwargs, truth, described = load_case(path)
    model = wsls.load(args.bundle)
    print(f"case {described}; bundle {args.bundle}", flush=True)

    def run(device: str):
        start = time.perf_counter()
        seg = wsls.segment(image, model, device=device, **kwargs)
        return seg, time.perf_counter() - start

    cpu, cpu_wall = run("cpu")
    print(f"cpu: {cpu_wall:.2f} s, {cpu.timings}", flush=True)
    warm, warm_wall = run(args.device)  # first CUDA call: context, cuDNN plans, lazy loads
    print(f"{args.device} warm-up: {warm_wall:.2f} s", flush=True)
    runs = []
    for i in range(args.repeats):
        last = runs[-1]["wall_s"] if runs else 0.0
        if runs and args.time_limit and time.perf_counter() - begun + last > args.time_limit:
            print(f"{args.device}: no time for run {i + 1} of {args.repeats}", flush=True)
            break
        seg, wall = run(args.device)
        runs.append(_summary(seg, wall))
        print(f"{args.device}: {wall:.2f} s, {seg.timings}", flush=True)
    median = {k: statistics.median(r["timings"][k] for r in runs) for k in runs[0]["timings"]}
    return {
        "case": described,
        "shape": list(cpu.mask.shape),
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "cpu_threads": torch.get_num_threads(),
        "cpu": _summary(cpu, cpu_wall),
        "cuda_warmup_s": warm_wall,
        "cuda_runs": runs,
        "cuda_median_timings": median,
        "cuda_median_wall_s": statistics.median(r["wall_s"] for r in runs),
        "dice_cuda_vs_cpu": _dice(seg.mask, cpu.mask),
        "dice_cpu_vs_truth": _dice(cpu.mask, truth),
        "dice_cuda_vs_truth": _dice(seg.mask, truth),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="a quick bundle on in-memory phantoms")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--shape", type=int, nargs=3, default=PHANTOM_SHAPE)
    p.add_argument("--classifier-patches", type=int, default=512, help="per epoch (2 epochs)")
    p = sub.add_parser("segment", help="one BraTS case on the CPU and on CUDA")
    p.add_argument("--bundle", required=True)
    p.add_argument("--case")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda", help="the device compared with the CPU")
    p.add_argument("--time-limit", type=float, help="seconds: no further timed run past it")
    p = sub.add_parser("pack-case", help="a BraTS case folder as arrays (.npz)")
    p.add_argument("case")
    p.add_argument("out")
    args = parser.parse_args(argv)
    command = {"train": cmd_train, "segment": cmd_segment, "pack-case": cmd_pack_case}
    try:
        payload = command[args.command](args)
    except Skip as exc:
        result({"skipped": str(exc)})
        return 0
    result(payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
