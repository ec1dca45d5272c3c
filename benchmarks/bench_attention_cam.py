"""Fused attention_cam vs its PyTorch reference (eager and torch.compile), forward and
forward+backward, on the shapes a user meets: a batch of 8 patches (K=256, 8x8x8) and one full
BraTS volume at stride 8 (K=256, 30x30x20). Prints median times, ratios reference/ours from one
process, peak memory, and the achieved memory bandwidth of the fused op.

Run: python benchmarks/bench_attention_cam.py [--device cpu|cuda|all] [--no-compile]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import fmt_mb, fmt_ms, median_seconds, peak_extra_bytes, print_table  # noqa: E402

from wsls.ops import attention_cam, build_info, reference  # noqa: E402

SHAPES = {
    "8 patches K=256 8^3": (8, 256, 8, 8, 8),
    "BraTS volume K=256 30x30x20": (1, 256, 30, 30, 20),
}


def make_inputs(shape, device, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    K = shape[1]
    return [
        torch.randn(shape, generator=g).to(device, dtype).requires_grad_(),
        (torch.randn(K, generator=g) / K**0.5).to(device, dtype).requires_grad_(),
        torch.randn(1, generator=g).to(device, dtype).requires_grad_(),
        torch.randn(3, K, generator=g).to(device, dtype).requires_grad_(),
    ]


def forward(fn, inputs):
    def run():
        with torch.no_grad():
            return fn(*inputs)

    return run


def forward_backward(fn, inputs):
    def run():
        out = fn(*inputs)
        return torch.autograd.grad(out[0].sum(), inputs)

    return run


def bench_device(device: str, use_compile: bool, min_run_time: float) -> None:
    impls = {"ours": attention_cam, "eager reference": reference.attention_cam}
    if use_compile:
        impls["compiled reference"] = torch.compile(reference.attention_cam)
    print(
        f"\n### {device}: {torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}, "
        f"{torch.get_num_threads()} threads\n"
    )
    rows = []
    for label, shape in SHAPES.items():
        inputs = make_inputs(shape, device)
        feature_bytes = inputs[0].numel() * inputs[0].element_size()
        for mode, wrap in (("forward", forward), ("forward+backward", forward_backward)):
            times, peaks = {}, {}
            for name, fn in impls.items():
                run = wrap(fn, inputs)
                try:
                    times[name] = median_seconds(run, min_run_time)
                    peaks[name] = peak_extra_bytes(run, device)
                except Exception as exc:  # torch.compile may fail on some setups: say so
                    print(f"{name} failed on {label} {mode}: {type(exc).__name__}: {exc}")
                    times[name] = peaks[name] = None
            moved = feature_bytes * (1 if mode == "forward" else 2)  # read F (+ write dF)
            ours = times["ours"]
            for name in impls:
                t = times[name]
                ratio = f"{t / ours:.2f}x" if t and ours else "n/a"
                bandwidth = f"{moved / ours / 1e9:.1f}" if name == "ours" and ours else ""
                rows.append([label, mode, name, fmt_ms(t), ratio, fmt_mb(peaks[name]), bandwidth])
    print_table(
        ["shape", "pass", "impl", "median ms", "time / ours", "peak extra MB", "ours GB/s"], rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled reference")
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds per timing")
    args = parser.parse_args()
    print(f"wsls build: {build_info()}")
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("\n### cuda: no CUDA device visible, skipped")
            continue
        bench_device(device, not args.no_compile, args.min_run_time)


if __name__ == "__main__":
    main()
