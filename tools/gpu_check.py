"""The GPU check (`make gpu-check`): on a machine with a GPU and no network, with that machine's
own python and torch, build wsls from source, run the CUDA tests, the kernel benchmarks on the
GPU, `wsls.segment` on a BraTS case (CUDA against CPU) and a short bf16 training, and write ONE
markdown report: $OUT/gpu_check.md (./gpu_check_out/ when OUT is unset), with gpu_check.json
and the logs beside it.

Every step runs in its own process with a time limit (its cap, and never past the whole
check's budget, 345 s by default: a step that would start with too little time left is skipped
and the report says so), so one hang costs one step. Without a visible GPU it stops at once
with one line on stderr and exit status 1, before building anything.

Run: python tools/gpu_check.py [--bundle DIR] [--case PATH] [--out DIR] [--budget S]
                               [--only STEP ...] [--skip-build] [-k PYTEST_EXPR] [--plan]
Exit status: 0 when every step that ran passed (targets missed are reported, not failures),
1 when one failed, timed out or crashed, or when no GPU is visible.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 345.0  # the whole check, build included: under 6 minutes with the report
MIN_STEP_S = 15.0  # a step is not started with less than this left
KILL_GRACE_S = 12.0  # a step killed at its limit may take this long to end (SIGTERM, SIGKILL)
PACKAGES = (
    "setuptools",
    "ninja",
    "pytest",
    "xdist",
    "pytest_timeout",
    "numpy",
    "scipy",
    "tqdm",
    "safetensors",
    "nibabel",
    "cupy",
    "pykeops",
    "triton",
)
# what train/segment import: wsls orients every volume, arrays too, through nibabel
METHOD_NEEDS = ("numpy", "scipy", "tqdm", "safetensors", "nibabel")
OPS = (
    "attention_cam",
    "attention_cam_backward",
    "pairwise_affinity_loss",
    "pairwise_affinity_loss_backward",
    "affinity_grow",
    "candidate_scores",
    "mask_nms",
    "pack_masks",
    "unpack_masks",
)
TARGET_LINE = re.compile(r"^target: (?P<name>.*?): (?P<measured>.*) -> (?P<verdict>.*)$")
CUDA_TESTS = re.compile(r"mark\.cuda\b|\bDEVICES\b")  # test files with CUDA cases (helpers.py)
RESULT_LINE = re.compile(r"^RESULT (\{.*\})\s*$")
NOISE = re.compile(r"^(W\d{4} |\s*warnings\.warn\(|.*UserWarning)")


@dataclass
class Step:
    """One step of the check and what it found."""

    name: str
    title: str
    cap_s: float
    status: str = "not run"  # ok, FAILED, TIMED OUT, skipped, not run
    seconds: float = 0.0
    summary: str = ""
    body: str = ""  # markdown for the report's section
    result: dict = field(default_factory=dict)


@dataclass
class Outcome:
    rc: int | None  # None: killed at its time limit
    seconds: float
    output: str


# --- running things with a time limit --------------------------------------------------------


def run_limited(cmd: list[str], timeout: float, log: Path, env: dict | None = None) -> Outcome:
    """Run cmd in its own process group, output appended to log; killed (the whole group) at
    timeout seconds. Returns its exit status (None when killed), seconds and output."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with log.open("a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}  (time limit {timeout:.0f} s)\n")
        fh.flush()
        offset = fh.tell()
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc: int | None = proc.wait(timeout=max(timeout, 1.0))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            rc = None
    seconds = time.monotonic() - start
    with log.open("a") as fh:
        if rc is None:
            fh.write(f"\n[gpu-check] killed after {seconds:.0f} s (time limit {timeout:.0f} s)\n")
    with log.open() as fh:
        fh.seek(offset)
        output = fh.read()
    return Outcome(rc, seconds, output)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group this check started for proc, SIGKILL 5 s later."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def base_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # the python's own bin/ first: its ninja, its console scripts
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra or {})
    return env


def tail(text: str, lines: int = 25) -> str:
    kept = [line for line in text.splitlines() if not NOISE.match(line)]
    return "\n".join(kept[-lines:])


def fence(text: str) -> str:
    return "```\n" + text.rstrip() + "\n```\n"


# --- the probe (a subprocess: a stuck driver cannot hang the check) ----------------------------


def probe_json() -> None:
    """Print what this python sees as JSON: torch, CUDA, the GPU, the packages."""
    info: dict = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": {name: importlib.util.find_spec(name) is not None for name in PACKAGES},
        "nvcc": shutil.which("nvcc"),
        "cuobjdump": shutil.which("cuobjdump"),
        "cuda_home": os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"),
    }
    try:
        import torch
    except Exception as exc:  # report, never raise: the parent turns it into one line
        info["torch_error"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(info))
        return
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.version.cuda
    info["cuda_available"] = torch.cuda.is_available()
    info["device_count"] = torch.cuda.device_count() if info["cuda_available"] else 0
    if info["device_count"]:
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count,
            "l2_mib": round(getattr(props, "L2_cache_size", 0) / 2**20, 1),
            "memory_clock_mhz": getattr(props, "memory_clock_rate", 0) / 1e3,
            "memory_bus_bits": getattr(props, "memory_bus_width", 0),
        }
    print(json.dumps(info))


def probe(python: str, timeout: float = 90.0) -> tuple[dict | None, str]:
    """(what the python sees, '') or (None, why not)."""
    try:
        proc = subprocess.run(
            [python, str(Path(__file__).resolve()), "--probe-json"],
            cwd=ROOT,
            env=base_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None, f"probing {python} for torch and a GPU took over {timeout:.0f} s"
    except OSError as exc:
        return None, f"cannot run {python}: {exc}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"probing {python} failed: {last}"
    return json.loads(lines[-1]), ""


def no_gpu_reason(info: dict) -> str | None:
    """One line when no GPU is usable, else None."""
    where = f"{info.get('executable')} (Python {info.get('python')})"
    if "torch_error" in info:
        return f"gpu-check: {where} cannot import torch ({info['torch_error']}); nothing was run"
    torch_v = f"torch {info['torch']}"
    if not info.get("torch_cuda"):
        return f"gpu-check: {torch_v} in {where} is a CPU-only build; nothing was run"
    if not info.get("cuda_available") or not info.get("device_count"):
        return (
            f"gpu-check: no CUDA GPU visible to {torch_v} (CUDA {info['torch_cuda']}) in {where}:"
            " torch.cuda.is_available() is False; nothing was run"
        )
    return None


# --- the steps ---------------------------------------------------------------------------------


class Check:
    def __init__(self, args, info: dict, start: float | None = None) -> None:
        self.args = args
        self.info = info
        self.python = args.python
        self.out = Path(args.out)
        self.work = Path(getattr(args, "work", None) or ROOT / "build" / "gpu_check")
        self.start = start or time.monotonic()  # the probe's time counts too
        self.deadline = self.start + args.budget
        self.targets: list[dict] = []
        self.steps = [
            Step("build", "Build from source", 200),
            Step("tests", "CUDA tests (pytest -m cuda)", 100),
            Step("train", "bf16 training (quick bundle on phantoms)", 90),
            Step("segment", "wsls.segment on a BraTS case: CUDA against CPU", 100),
            Step("grow", "Benchmark: region growing + NMS", 50),
            Step("pairwise", "Benchmark: pairwise affinity loss", 75),
            Step("attention", "Benchmark: attention CAM", 90),
        ]
        self.built = False
        self.bundle: str | None = args.bundle
        self.device = "cpu" if args.plumbing_on_cpu else "cuda"

    # helpers

    def has(self, package: str) -> bool:
        return bool(self.info.get("packages", {}).get(package))

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def log(self, name: str) -> Path:
        return self.out / f"{name}.log"

    def run(self) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        for log in ("build", "pytest", "benchmarks", "pipeline"):
            self.log(log).write_text("")
        for step in self.steps:
            if self.args.only and step.name not in self.args.only:
                step.status, step.summary = "skipped", "not asked for (--only)"
                continue
            left = self.left()
            if left - KILL_GRACE_S < MIN_STEP_S:
                step.status = "skipped"
                step.summary = (
                    f"out of time: {max(left, 0):.0f} s left of the check's "
                    f"{self.args.budget:.0f} s budget"
                )
            else:
                cap = step.cap_s * (8 if self.args.plumbing_on_cpu else 1)  # 2 busy cores
                limit = min(cap, left - KILL_GRACE_S)
                print(f"[gpu-check] {step.name}: up to {limit:.0f} s ...", flush=True)
                begun = time.monotonic()
                try:
                    getattr(self, f"step_{step.name}")(step, limit)
                except Exception as exc:  # a bug here must not lose the report
                    step.status, step.summary = (
                        "FAILED",
                        f"check error: {type(exc).__name__}: {exc}",
                    )
                step.seconds = time.monotonic() - begun
            print(f"[gpu-check] {step.name}: {step.status} ({step.seconds:.0f} s) {step.summary}")
            self.write_report()
        self.write_report()
        self.print_summary()
        failed = [s for s in self.steps if s.status in ("FAILED", "TIMED OUT")]
        return 1 if failed else 0

    def finish(self, step: Step, outcome: Outcome, what: str) -> bool:
        """Set the status from an exit status; True when it passed."""
        if outcome.rc is None:
            step.status = "TIMED OUT"
            step.summary = f"{what} killed at its {outcome.seconds:.0f} s limit"
            return False
        if outcome.rc != 0:
            step.status = "FAILED"
            step.summary = f"{what} exited with status {outcome.rc}"
            return False
        step.status = "ok"
        return True

    # build

    def step_build(self, step: Step, limit: float) -> None:
        if self.args.skip_build:
            self.built = True
            step.status, step.summary = "skipped", "--skip-build: using the extension as built"
            return
        missing = [p for p in ("setuptools", "ninja") if not self.has(p)]
        if missing:
            step.status = "FAILED"
            step.summary = f"{', '.join(missing)} not installed: setup.py needs them"
            return
        gpu = self.info["gpu"]
        arch = os.environ.get("TORCH_CUDA_ARCH_LIST") or gpu["capability"]
        env = base_env(
            {
                "TORCH_CUDA_ARCH_LIST": arch,
                "WSLS_REQUIRE_CUDA": "1",
                "MAX_JOBS": os.environ.get("MAX_JOBS") or str(os.cpu_count() or 4),
            }
        )
        log = self.log("build")
        outcome = run_limited([self.python, "setup.py", "build_ext", "--inplace"], limit, log, env)
        setup_lines = [
            line for line in outcome.output.splitlines() if line.startswith("[wsls setup]")
        ]
        step.body = f"TORCH_CUDA_ARCH_LIST={arch}, MAX_JOBS={env['MAX_JOBS']}\n\n"
        step.body += fence("\n".join(setup_lines) or "(no setup lines)")
        if not self.finish(step, outcome, "setup.py build_ext --inplace"):
            step.body += "\nLast lines of build.log:\n\n" + fence(tail(outcome.output, 30))
            return
        verify = (
            "import importlib.util, json, torch, wsls.ops as o; i = o.build_info(); "
            f"k = {{op: o.has_kernel(op, 'CUDA') for op in {OPS!r}}}; "
            "so = importlib.util.find_spec('wsls._C').origin; "
            "print(json.dumps({'build_info': i, 'cuda_kernels': k, 'so': so}))"
        )
        budget = min(60.0, self.left() - KILL_GRACE_S)
        check = run_limited([self.python, "-c", verify], budget, log, base_env())
        lines = [line for line in check.output.splitlines() if line.startswith("{")]
        if check.rc != 0 or not lines:
            step.status = "FAILED"
            step.summary = "the built extension does not import"
            step.body += fence(tail(check.output, 20))
            return
        found = json.loads(lines[-1])
        missing_kernels = [op for op, ok in found["cuda_kernels"].items() if not ok]
        info = found["build_info"]
        step.result = found
        step.body += f"\nbuild_info: `{info}`\n"
        sass = self._sass_archs(found.get("so"))
        if sass:
            step.body += f"\nmachine code in the extension (cuobjdump --list-elf): {sass}\n"
        if not info.get("cuda") or missing_kernels:
            step.status = "FAILED"
            step.summary = f"no CUDA kernel for {', '.join(missing_kernels) or 'any op'}"
            return
        self.built = True
        step.summary = f"{outcome.seconds:.0f} s, CUDA kernels for {info.get('cuda_arch_list')}"

    def _sass_archs(self, library: str | None) -> str:
        tool = self.info.get("cuobjdump")
        if not tool or not library:
            return ""
        try:
            proc = subprocess.run(
                [tool, "--list-elf", library], capture_output=True, text=True, timeout=30
            )
        except (subprocess.TimeoutExpired, OSError):
            return ""
        archs = sorted(set(re.findall(r"sm_\d+a?", proc.stdout)))
        return ", ".join(archs) or "none listed"

    def need_build(self, step: Step) -> bool:
        if not self.built:
            step.status, step.summary = "skipped", "the extension was not built"
        return self.built

    # tests

    def test_files(self) -> list[str]:
        files = []
        for path in sorted((ROOT / "tests").glob("test_*.py")):
            text = path.read_text(errors="replace")
            if CUDA_TESTS.search(text):
                files.append(str(path.relative_to(ROOT)))
        return files

    def step_tests(self, step: Step, limit: float) -> None:
        if not self.need_build(step):
            return
        if not self.has("pytest"):
            step.status, step.summary = "skipped", "pytest is not installed"
            return
        xml = self.work / "pytest.xml"
        xml.unlink(missing_ok=True)
        cmd = [self.python, "-m", "pytest", "-m", "cuda", "-q", "-rfEs", "-p", "no:cacheprovider"]
        cmd += [f"--junitxml={xml}"]
        if self.has("xdist") and self.args.workers > 1:
            cmd += ["-n", str(self.args.workers)]
        if self.has("pytest_timeout"):
            cmd += ["--timeout", "60"]  # per test: a hung test fails, the rest still run
        if self.args.k:
            cmd += ["-k", self.args.k]
        files = self.test_files()
        outcome = run_limited(cmd + files, limit, self.log("pytest"), base_env())
        counts, failures, skips = parse_junit(xml)
        step.result = {"counts": counts, "failures": failures, "skips": skips, "files": files}
        step.body = f"Files: {', '.join(f'`{f}`' for f in files)}\n\n"
        if counts:
            step.body += (
                "| tests | passed | failed | errors | skipped |\n|---|---|---|---|---|\n"
                f"| {counts['tests']} | {counts['passed']} | {counts['failures']} | "
                f"{counts['errors']} | {counts['skipped']} |\n"
            )
        if failures:
            step.body += "\nFailed:\n\n" + "".join(f"- `{n}`: {m}\n" for n, m in failures[:30])
        if skips:
            step.body += "\nSkipped (reason: count):\n\n"
            step.body += "".join(f"- {r}: {n}\n" for r, n in sorted(skips.items()))
        passed = self.finish(step, outcome, "pytest")
        if counts:
            step.summary = (
                f"{counts['passed']} passed, {counts['failures']} failed, "
                f"{counts['errors']} errors, {counts['skipped']} skipped"
            )
            if outcome.rc is None:
                step.summary += " (before the time limit)"
        elif passed:
            step.summary = "no junit report"
        if not passed or not counts:
            step.body += "\nLast lines of pytest.log:\n\n" + fence(tail(outcome.output, 30))

    # benchmarks

    def bench(self, step: Step, limit: float, script: str, extra: list[str]) -> None:
        if not self.need_build(step):
            return
        cmd = [self.python, f"benchmarks/{script}", "--device", self.device, "--quick", *extra]
        outcome = run_limited(cmd, limit, self.log("benchmarks"), base_env())
        lines = [line for line in outcome.output.splitlines() if not NOISE.match(line)]
        lines = [line for line in lines if not line.startswith("$ ")]
        found = []
        for line in lines:
            m = TARGET_LINE.match(line)
            if m:
                found.append({**m.groupdict(), "step": step.name})
        self.targets.extend(found)
        step.result = {"targets": found}
        step.body = (
            f"`{' '.join(cmd[1:])}`\n\n"
            + "\n".join(line for line in lines if not TARGET_LINE.match(line)).strip()
        )
        step.body += "\n"
        if self.finish(step, outcome, script):
            step.summary = "; ".join(f"{t['measured']} ({t['verdict']})" for t in found)

    def step_grow(self, step: Step, limit: float) -> None:
        self.bench(step, limit, "bench_affinity_grow.py", [])

    def step_pairwise(self, step: Step, limit: float) -> None:
        # KeOps is not run where N^2 scaling predicts a forward+backward over 20 s
        self.bench(step, limit, "bench_pairwise_loss.py", ["--keops-cap-s", "20"])

    def step_attention(self, step: Step, limit: float) -> None:
        self.bench(step, limit, "bench_attention_cam.py", [])

    # method steps (tools/gpu_pipeline.py)

    def pipeline(self, step: Step, limit: float, args: list[str]) -> dict | None:
        missing = [p for p in METHOD_NEEDS if not self.has(p)]
        if missing:
            step.status = "skipped"
            step.summary = (
                f"{', '.join(missing)} not installed (the method needs them; carry wheels in .whl/)"
            )
            return None
        cmd = [self.python, "tools/gpu_pipeline.py", *args]
        outcome = run_limited(cmd, limit, self.log("pipeline"), base_env())
        results = [RESULT_LINE.match(line) for line in outcome.output.splitlines()]
        payload = next((json.loads(m.group(1)) for m in reversed(results) if m), None)
        if not self.finish(step, outcome, "tools/gpu_pipeline.py " + args[0]):
            step.body = "Last lines of pipeline.log:\n\n" + fence(tail(outcome.output, 30))
            return None
        if payload is None:
            step.status, step.summary = "FAILED", "no RESULT line"
            return None
        if "skipped" in payload:
            step.status, step.summary = "skipped", payload["skipped"]
            return None
        step.result = payload
        return payload

    def step_train(self, step: Step, limit: float) -> None:
        if not self.need_build(step):
            return
        run_dir = self.work / "run"
        shutil.rmtree(run_dir, ignore_errors=True)
        args = ["train", "--out", str(run_dir), "--device", self.device]
        if self.args.plumbing_on_cpu:
            args += ["--classifier-patches", "64"]
        r = self.pipeline(step, limit, args)
        if r is None:
            return
        if not self.bundle:
            self.bundle = r["bundle"]
        epochs = r.get("classifier_epochs") or []
        last = epochs[-1]["items_per_s"] if epochs else None
        step.summary = (
            f"classifier {last:.0f} patches/s ({r['autocast']} autocast, last epoch)"
            if last
            else "no metrics"
        )
        rows = "".join(
            f"| {int(e['epoch'])} | {e['items_per_s']:.1f} | {e['seconds']:.1f} |\n" for e in epochs
        )
        step.body = (
            f"{r['phantoms']} phantoms {tuple(r['shape'])} made in memory in "
            f"{r['phantom_s']:.1f} s; `wsls.train` (default configuration, schedules "
            f"`{json.dumps(r['schedules'])}`) on {r['gpu'] or 'the CPU'} with {r['autocast']} "
            "autocast: "
            f"{r['train_s']:.1f} s for every stage. Classifier: {r['patch_size']}^3 patches, "
            f"batch {r['batch_size']}.\n\n"
            "| classifier epoch | patches/s | seconds |\n|---|---|---|\n" + rows
        )
        step.body += "\nThe first epoch includes the warm-up (cuDNN plans, allocator).\n"

    def step_segment(self, step: Step, limit: float) -> None:
        if not self.need_build(step):
            return
        if not self.bundle:
            step.status, step.summary = "skipped", "no model bundle (--bundle, or the train step)"
            return
        args = ["segment", "--bundle", self.bundle, "--repeats", str(self.args.repeats)]
        args += ["--device", self.device, "--time-limit", f"{max(limit - 10, 1):.0f}"]
        if self.args.case:
            args += ["--case", self.args.case]
        r = self.pipeline(step, limit, args)
        if r is None:
            return
        cpu, med = r["cpu"], r["cuda_median_timings"]
        dice = r["dice_cuda_vs_cpu"]
        compute = med.get("method")
        self.targets.append(
            {
                "step": "segment",
                "name": "wsls segment of a BraTS case < 1 s of compute (CUDA, median 'method')",
                "measured": f"{compute:.2f} s" if compute is not None else "n/a",
                "verdict": "not measured" if compute is None else _met(compute < 1.0),
            }
        )
        self.targets.append(
            {
                "step": "segment",
                "name": "Dice(CUDA mask, CPU mask) >= 0.99",
                "measured": f"{dice:.4f}",
                "verdict": _met(dice >= 0.99),
            }
        )
        if dice < 0.99:
            step.status = "FAILED"
        step.summary = f"compute {compute:.2f} s on CUDA, {cpu['timings']['method']:.2f} s on CPU"
        step.summary += f"; Dice CUDA vs CPU {dice:.4f}"
        rows = [("CPU", cpu["timings"], cpu["wall_s"], cpu)]
        rows += [
            (f"{r['device'].upper()} run {i + 1}", x["timings"], x["wall_s"], x)
            for i, x in enumerate(r["cuda_runs"])
        ]
        columns = ["run", "load s", "preprocess s", "method s", "map back s", "wall s"]
        columns += ["voxels", "lambda", "kept"]
        table = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
        for label, t, wall, x in rows:
            table += (
                f"| {label} | {t.get('load', 0):.2f} | {t.get('preprocess', 0):.2f} | "
                f"{t.get('method', 0):.2f} | {t.get('map_back', 0):.2f} | {wall:.2f} | "
                f"{x['voxels']} | {x['lambda']} | {x['kept']} |\n"
            )
        truth = r.get("dice_cpu_vs_truth")
        step.body = (
            f"Case {r['case']}, grid {tuple(r['shape'])}, bundle `{self.bundle}`; "
            f"{r['gpu'] or r['device']}, CPU with {r['cpu_threads']} threads. "
            f"{r['device'].upper()} warm-up call (not counted): "
            f"{r['cuda_warmup_s']:.2f} s.\n\n{table}\n"
            f"Dice of the CUDA mask against the CPU mask: **{dice:.4f}**"
            + (
                f"; against the case's own mask: CPU {truth:.3f}, CUDA "
                f"{r['dice_cuda_vs_truth']:.3f} (a quick phantom-trained bundle: not a "
                "quality figure)"
                if truth is not None
                else ""
            )
            + ".\n"
        )

    # the report

    def report_markdown(self) -> str:
        info, gpu = self.info, self.info.get("gpu", {})
        elapsed = time.monotonic() - self.start
        commit = _git_commit()
        lines = [
            "# wsls GPU check",
            "",
            *(
                [
                    "**--plumbing-on-cpu: every step ran on the CPU, nothing here is from a GPU.**",
                    "",
                ]
                if self.args.plumbing_on_cpu
                else []
            ),
            f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; commit `{commit}`; "
            f"{elapsed:.0f} s of a {self.args.budget:.0f} s budget.",
            "",
            f"- GPU: {gpu.get('name')} (compute capability {gpu.get('capability')}, "
            f"{gpu.get('memory_gib')} GiB, {gpu.get('multiprocessors')} SMs, "
            f"L2 {gpu.get('l2_mib')} MiB, memory clock {gpu.get('memory_clock_mhz')} MHz, "
            f"{gpu.get('memory_bus_bits')}-bit bus as torch reports them)",
            f"- Python {info.get('python')} ({info.get('executable')}), torch {info.get('torch')}"
            f" (CUDA {info.get('torch_cuda')}), nvcc {info.get('nvcc')}, "
            f"{info.get('cpus')} CPUs",
            "- Packages: "
            + ", ".join(
                f"{name} {'yes' if ok else '**no**'}"
                for name, ok in info.get("packages", {}).items()
            ),
            "",
            "## Summary",
            "",
            "| step | status | seconds | result |",
            "|---|---|---|---|",
        ]
        for s in self.steps:
            lines.append(f"| {s.title} | {s.status} | {s.seconds:.0f} | {s.summary} |")
        lines += ["", "## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
        for t in self.targets:
            lines.append(f"| {t['name']} | {t['measured']} | {t['verdict']} |")
        if not self.targets:
            lines.append("| (none measured yet) | | |")
        for i, s in enumerate(self.steps, 1):
            lines += ["", f"## {i}. {s.title}", ""]
            lines.append(f"**{s.status}** ({s.seconds:.0f} s). {s.summary}".rstrip())
            if s.body:
                lines += ["", s.body.rstrip()]
        lines += [
            "",
            "Logs beside this report: build.log, pytest.log, benchmarks.log, pipeline.log; "
            "gpu_check.json holds the same results.",
            "",
        ]
        return "\n".join(lines)

    def write_report(self) -> None:
        (self.out / "gpu_check.md").write_text(self.report_markdown())
        doc = {
            "probe": self.info,
            "budget_s": self.args.budget,
            "elapsed_s": time.monotonic() - self.start,
            "steps": [asdict(s) for s in self.steps],
            "targets": self.targets,
        }
        (self.out / "gpu_check.json").write_text(json.dumps(doc, indent=1, default=str))

    def print_summary(self) -> None:
        print()
        print("| step | status | s | result |")
        print("|---|---|---|---|")
        for s in self.steps:
            print(f"| {s.name} | {s.status} | {s.seconds:.0f} | {s.summary} |")
        print()
        for t in self.targets:
            print(f"target: {t['name']}: {t['measured']} -> {t['verdict']}")
        elapsed = time.monotonic() - self.start
        print(f"\n[gpu-check] {elapsed:.0f} s; report: {self.out / 'gpu_check.md'}")


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _git_commit() -> str:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return proc.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def parse_junit(path: Path) -> tuple[dict, list[tuple[str, str]], dict[str, int]]:
    """(counts, [(test id, first line of its failure)], {skip reason: count}) from pytest's
    junit XML; empty when there is none."""
    if not path.exists():
        return {}, [], {}
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return {}, [], {}
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failures, skips = [], {}
    for case in root.iter("testcase"):
        counts["tests"] += 1
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        for tag in ("failure", "error"):
            node = case.find(tag)
            if node is not None:
                counts["failures" if tag == "failure" else "errors"] += 1
                message = (node.get("message") or node.text or "").strip().splitlines()
                failures.append((name, (message[0] if message else tag)[:200]))
        node = case.find("skipped")
        if node is not None:
            counts["skipped"] += 1
            reason = (node.get("message") or "").strip()[:120]
            skips[reason] = skips.get(reason, 0) + 1
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts, failures, skips


def plan(args) -> str:
    """What the check would run, without running it."""
    check = Check(args, {"gpu": {"capability": "9.0"}, "packages": {}})
    rows = [f"budget {args.budget:.0f} s; report {Path(args.out) / 'gpu_check.md'}"]
    rows += [f"- {s.name}: {s.title}, at most {s.cap_s:.0f} s" for s in check.steps]
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe-json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--python", default=sys.executable, help="the python to build and run")
    parser.add_argument(
        "--out",
        default=os.environ.get("OUT") or str(ROOT / "gpu_check_out"),
        help="report folder (default: $OUT, else ./gpu_check_out)",
    )
    parser.add_argument(
        "--bundle",
        help="a trained model bundle for the segment step (default: .gpu_check/bundle, else the "
        "shipped wsls/pretrained/tumour, if there; else the train step's quick bundle)",
    )
    parser.add_argument(
        "--case",
        help="a BraTS case folder or .npz (default: the first case of brats2015/ under "
        "$WSLS_SHARED_DATA, ./shared/data or ../shared/data, else .gpu_check/case.npz)",
    )
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for everything")
    parser.add_argument("--repeats", type=int, default=2, help="timed CUDA segmentations")
    parser.add_argument("--workers", type=int, default=4, help="pytest-xdist workers, if present")
    parser.add_argument("--only", nargs="+", help="steps to run (build always runs first)")
    parser.add_argument("--skip-build", action="store_true", help="use the extension as built")
    parser.add_argument("-k", help="pytest -k expression for the CUDA tests")
    parser.add_argument("--plan", action="store_true", help="print the steps and exit")
    parser.add_argument(
        "--work", help="scratch folder: the quick run, pytest's XML (default build/gpu_check)"
    )
    parser.add_argument(
        "--plumbing-on-cpu",
        action="store_true",
        help="a dry run of the check's own plumbing without a GPU: every step on the CPU "
        "(nothing it measures is a GPU result)",
    )
    args = parser.parse_args(argv)
    if args.probe_json:
        probe_json()
        return 0
    if args.only and "build" not in args.only:  # the build step (or --skip-build) comes first
        args.only = ["build", *args.only]
    if args.plan:
        print(plan(args))
        return 0
    start = time.monotonic()
    if not args.bundle:  # carried with the repository (README: GPU section), else shipped
        for bundle in (ROOT / ".gpu_check" / "bundle", ROOT / "wsls" / "pretrained" / "tumour"):
            if (bundle / "config.json").exists():
                args.bundle = str(bundle)
                break
    info, why = probe(args.python)
    reason = f"gpu-check: {why}" if info is None else no_gpu_reason(info)
    if info is not None and args.plumbing_on_cpu:
        reason = None
        info.setdefault("gpu", {"name": "none: --plumbing-on-cpu", "capability": "9.0"})
    if reason:
        print(reason, file=sys.stderr)
        return 1
    return Check(args, info, start).run()


if __name__ == "__main__":
    sys.exit(main())
