"""The GPU check (tools/gpu_check.sh, tools/gpu_check.py) and the benchmarks' CPU --quick paths,
on a machine without a GPU: the fast failure, the time limits, the report built from canned
step outputs, the bandwidth table, and the benchmarks' CPU tables (unchanged in form)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402
from api_helpers import cli_env  # noqa: E402

# --- no GPU: one line, exit 1 ---------------------------------------------------------------


def test_no_gpu_fails_fast_with_one_line(tmp_path):
    """CUDA_VISIBLE_DEVICES="" hides any GPU: the check stops before building anything."""
    out = tmp_path / "out"
    start = time.monotonic()
    proc = subprocess.run(
        ["bash", "tools/gpu_check.sh"],
        cwd=ROOT,
        env=cli_env(PYTHON=sys.executable, CUDA_VISIBLE_DEVICES="", OUT=str(out)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("gpu-check: ") and lines[0].endswith("nothing was run")
    assert "no CUDA GPU visible" in lines[0] or "CPU-only build" in lines[0]
    assert not out.exists()  # no report, no build
    assert time.monotonic() - start < 60


def test_unusable_python_fails_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "tools/gpu_check.py", "--python", str(tmp_path / "no-python")],
        cwd=ROOT,
        env=cli_env(OUT=str(tmp_path / "out")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("gpu-check: cannot run ")


def test_plan_lists_every_step():
    proc = subprocess.run(
        [sys.executable, "tools/gpu_check.py", "--plan"],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("build", "tests", "train", "segment", "grow", "pairwise", "attention"):
        assert f"- {name}: " in proc.stdout
    caps = sum(s.cap_s for s in gpu_check.Check(_args(), _info()).steps)
    assert gpu_check.BUDGET_S < 360 < caps  # the budget, not the caps, bounds the check


# --- time limits ------------------------------------------------------------------------------


def test_a_hanging_step_is_killed_with_its_children(tmp_path):
    log = tmp_path / "step.log"
    script = (
        "import subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
        "print('child', child.pid, flush=True); time.sleep(120)"
    )
    start = time.monotonic()
    outcome = gpu_check.run_limited([sys.executable, "-c", script], 3.0, log)
    assert outcome.rc is None and time.monotonic() - start < 20
    assert "killed after" in log.read_text()
    child = int(outcome.output.split("child ")[1].split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.1)
    assert not _alive(child), "the step's child outlived the time limit"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_quick_step_keeps_its_exit_status(tmp_path):
    outcome = gpu_check.run_limited(
        [sys.executable, "-c", "print('hello'); raise SystemExit(3)"], 30.0, tmp_path / "x.log"
    )
    assert outcome.rc == 3 and "hello" in outcome.output


# --- the report from canned outputs (no GPU needed) ---------------------------------------------


def _info() -> dict:
    return {
        "python": "3.12.3",
        "executable": "/opt/python3",
        "cpus": 16,
        "torch": "2.11.0+cu130",
        "torch_cuda": "13.0",
        "cuda_available": True,
        "device_count": 1,
        "nvcc": "/usr/local/cuda/bin/nvcc",
        "cuobjdump": None,
        "gpu": {"name": "NVIDIA H200", "capability": "9.0", "memory_gib": 139.8},
        "packages": {p: p not in ("cupy", "pykeops") for p in gpu_check.PACKAGES},
    }


def _args(tmp_path: Path | None = None, **changes):
    args = argparse.Namespace(
        python=sys.executable,
        out=str(tmp_path / "out") if tmp_path else "out",
        work=str(tmp_path / "work") if tmp_path else "work",
        bundle=None,
        case=None,
        budget=gpu_check.BUDGET_S,
        repeats=2,
        workers=4,
        only=None,
        skip_build=False,
        k=None,
        plan=False,
        plumbing_on_cpu=False,
    )
    for key, value in changes.items():
        setattr(args, key, value)
    return args


SEGMENT = {
    "case": "brats_2013_pat0003_1 (arrays from case.npz)",
    "shape": [240, 240, 155],
    "device": "cuda",
    "gpu": "NVIDIA H200",
    "cpu_threads": 16,
    "cpu": {
        "timings": {"load": 0.0, "preprocess": 0.4, "method": 9.5, "map_back": 0.05},
        "wall_s": 10.0,
        "voxels": 150000,
        "lambda": 0.97,
        "kept": 5,
        "probability": 0.99,
    },
    "cuda_warmup_s": 6.0,
    "cuda_runs": [
        {
            "timings": {"load": 0.0, "preprocess": 0.4, "method": 0.8, "map_back": 0.05},
            "wall_s": 1.3,
            "voxels": 150010,
            "lambda": 0.97,
            "kept": 5,
            "probability": 0.99,
        }
    ],
    "cuda_median_timings": {"load": 0.0, "preprocess": 0.4, "method": 0.8, "map_back": 0.05},
    "cuda_median_wall_s": 1.3,
    "dice_cuda_vs_cpu": 0.9995,
    "dice_cpu_vs_truth": 0.8,
    "dice_cuda_vs_truth": 0.8,
}
TRAIN = {
    "bundle": "build/gpu_check/run/bundle",
    "device": "cuda",
    "gpu": "NVIDIA H200",
    "autocast": "bf16",
    "phantoms": 4,
    "shape": [120, 120, 78],
    "schedules": {"classifier": {"epochs": 2, "per_epoch": 512}},
    "phantom_s": 3.0,
    "train_s": 25.0,
    "classifier_epochs": [
        {"epoch": 0.0, "items_per_s": 300.0, "seconds": 1.7},
        {"epoch": 1.0, "items_per_s": 900.0, "seconds": 0.6},
    ],
    "embedding_epochs": [],
    "patch_size": 32,
    "batch_size": 8,
}


def _fake_runner(segment: dict, junit: str):
    """A stand-in for run_limited: canned outputs per command, as the real ones look."""

    def run(cmd, timeout, log, env=None):
        text = " ".join(str(c) for c in cmd)
        if "setup.py" in text:
            out = "[wsls setup] CUDA kernels: ON, TORCH_CUDA_ARCH_LIST=9.0\n"
        elif "build_info" in text:
            kernels = dict.fromkeys(gpu_check.OPS, True)
            info = {"cuda": True, "cuda_arch_list": "9.0"}
            out = json.dumps({"build_info": info, "cuda_kernels": kernels, "so": None}) + "\n"
        elif " -m pytest " in text:
            xml = next(c for c in cmd if str(c).startswith("--junitxml=")).split("=", 1)[1]
            Path(xml).write_text(junit)
            out = "2 passed, 1 failed\n" if "<failure" in junit else "3 passed\n"
            rc = 1 if "<failure" in junit else 0
            return gpu_check.Outcome(rc, 1.0, out)
        elif "gpu_pipeline.py train" in text:
            out = "progress\nRESULT " + json.dumps(TRAIN) + "\n"
        elif "gpu_pipeline.py segment" in text:
            out = "RESULT " + json.dumps(segment) + "\n"
        elif "bench_affinity_grow" in text:
            out = "| table |\ntarget: growth of S = 256 seeds + NMS on 240x240x155 < 100 ms: "
            out += "42.0 ms -> met\n"
        elif "bench_pairwise_loss" in text:
            out = (
                "target: pairwise loss forward+backward at N = 10^6, K = 16 < 2 s: 1.500 s -> met\n"
            )
            out += "target: pairwise loss forward+backward at N = 10^6, K = 16 faster than KeOps: "
            out += "n/a (pykeops is not installed or --no-keops) -> not measured\n"
        elif "bench_attention_cam" in text:
            out = "W1130 12:00:00.000 torch noise\n"
            out += "target: attention CAM >= 50 % of peak memory bandwidth: 40.0 % -> NOT met\n"
        else:
            raise AssertionError(f"unexpected command {text}")
        return gpu_check.Outcome(0, 1.0, out)

    return run


JUNIT_OK = """<testsuites><testsuite>
<testcase classname="tests.test_op_attention_cam" name="test_cuda_matches_cpu[dtype0]"/>
<testcase classname="tests.test_op_precision" name="test_x[cuda]"/>
<testcase classname="tests.test_op_mask_nms" name="test_y[cuda]">
<skipped message="needs cupy"/></testcase>
</testsuite></testsuites>"""
JUNIT_FAILED = JUNIT_OK.replace(
    '<testcase classname="tests.test_op_precision" name="test_x[cuda]"/>',
    '<testcase classname="tests.test_op_precision" name="test_x[cuda]">'
    '<failure message="AssertionError: d features: error 3e-3 &gt; 2 x torch\'s 1e-3"/>'
    "</testcase>",
)


def _run_check(tmp_path, monkeypatch, segment=SEGMENT, junit=JUNIT_OK, info=None, **args):
    """A check run on canned step outputs: (its exit status, its report)."""
    monkeypatch.setattr(gpu_check, "run_limited", _fake_runner(segment, junit))
    code = gpu_check.Check(_args(tmp_path, **args), info or _info()).run()
    return code, (tmp_path / "out" / "gpu_check.md").read_text()


def test_report_from_canned_outputs(tmp_path, monkeypatch, capsys):
    code, report = _run_check(tmp_path, monkeypatch)
    assert code == 0
    assert "| CUDA tests (pytest -m cuda) | ok |" in report
    assert "2 passed, 0 failed, 0 errors, 1 skipped" in report
    assert "- needs cupy: 1" in report
    assert "| classifier epoch | patches/s | seconds |" in report and "| 1 | 900.0 |" in report
    assert "| growth of S = 256 seeds + NMS on 240x240x155 < 100 ms | 42.0 ms | met |" in report
    assert "| attention CAM >= 50 % of peak memory bandwidth | 40.0 % | NOT met |" in report
    assert "faster than KeOps | n/a (pykeops is not installed or --no-keops) |" in report
    assert "| Dice(CUDA mask, CPU mask) >= 0.99 | 0.9995 | met |" in report
    assert "< 1 s of compute (CUDA, median 'method') | 0.80 s | met |" in report
    assert "pykeops **no**" in report and "W1130" not in report
    doc = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert [s["status"] for s in doc["steps"]] == ["ok"] * 7
    assert len(doc["targets"]) == 6
    assert "target: Dice(CUDA mask, CPU mask) >= 0.99: 0.9995 -> met" in capsys.readouterr().out


def test_report_fails_on_a_failed_test_and_a_low_dice(tmp_path, monkeypatch):
    segment = {**SEGMENT, "dice_cuda_vs_cpu": 0.95}
    code, report = _run_check(tmp_path, monkeypatch, segment, JUNIT_FAILED)
    assert code == 1
    assert "| CUDA tests (pytest -m cuda) | FAILED |" in report
    assert "error 3e-3 > 2 x torch's 1e-3" in report
    assert "| Dice(CUDA mask, CPU mask) >= 0.99 | 0.9500 | NOT met |" in report


def test_steps_past_the_budget_are_skipped_with_a_reason(tmp_path, monkeypatch):
    code, _ = _run_check(tmp_path, monkeypatch, budget=10.0)  # under MIN_STEP_S
    assert code == 0
    doc = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert [s["status"] for s in doc["steps"]] == ["skipped"] * 7
    assert all(s["summary"].startswith("out of time: ") for s in doc["steps"])


def test_missing_packages_skip_with_one_line_reasons(tmp_path, monkeypatch):
    info = _info()
    info["packages"]["scipy"] = info["packages"]["nibabel"] = False
    _, report = _run_check(tmp_path, monkeypatch, info=info, bundle="some/bundle")
    assert "scipy, nibabel not installed (the method needs them; carry wheels in .whl/)" in report


# --- the bandwidth table --------------------------------------------------------------------


def test_peak_bandwidth_from_properties_and_names():
    from common import bandwidth_from_name, bandwidth_from_properties

    assert bandwidth_from_properties(2_619_000, 5120) == pytest.approx(3.35e12, rel=0.01)
    assert bandwidth_from_properties(3_201_000, 6144) == pytest.approx(4.92e12, rel=0.01)
    assert bandwidth_from_properties(0, 5120) is None
    assert bandwidth_from_name("NVIDIA H200") == 4.8e12
    assert bandwidth_from_name("NVIDIA H100 80GB HBM3") == 3.35e12
    assert bandwidth_from_name("NVIDIA H100 PCIe") == 2.0e12
    assert bandwidth_from_name("NVIDIA A100-SXM4-80GB") == 2.039e12
    assert bandwidth_from_name("NVIDIA A100-PCIE-40GB") == 1.555e12
    assert bandwidth_from_name("NVIDIA GeForce RTX 4090") is None


# --- the benchmarks' CPU --quick paths (their CPU tables keep their columns) --------------------


def _bench(script: str, *args: str, timeout: float = 300) -> str:
    proc = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--device", "cpu", "--quick", *args],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "target:" not in proc.stdout  # targets are GPU figures
    return proc.stdout


def test_bench_attention_cam_cpu_quick():
    out = _bench("bench_attention_cam.py", "--no-compile")
    header = "| shape | pass | impl | median ms | time / ours | peak extra MB | ours GB/s |"
    assert header in out and "| 8 patches K=256 8^3 | forward | ours |" in out


def test_bench_pairwise_loss_cpu_quick():
    out = _bench("bench_pairwise_loss.py", "--no-keops")
    header = "| N | K | pass | impl | median ms | runs | time / ours | peak extra MB |"
    assert header in out and "| 2048 | 16 | forward+backward | ours |" in out


@pytest.mark.slow
def test_bench_affinity_grow_cpu_quick():
    out = _bench("bench_affinity_grow.py", "--min-run-time", "0.05")
    assert "| volume | S | ours grow ms | ours scores ms | ours NMS ms |" in out
    assert "| volume | S | median region voxels | kept | packed output MB |" in out


@pytest.mark.slow
def test_bench_pairwise_loss_cpu_quick_with_keops():
    pytest.importorskip("pykeops")
    out = _bench("bench_pairwise_loss.py", timeout=600)
    assert "| 2048 | 16 | forward+backward | KeOps |" in out


@pytest.mark.slow
def test_bench_attention_cam_cpu_quick_compiled():
    out = _bench("bench_attention_cam.py", timeout=600)
    assert "| 8 patches K=256 8^3 | forward | compiled reference |" in out
