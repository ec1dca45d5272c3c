"""Fused attention_cam vs its PyTorch reference (eager and torch.compile), forward and
forward+backward, on the shapes a user meets: a batch of 8 patches (K=256, 8x8x8) and one full
BraTS volume at stride 8 (K=256, 30x30x20). Prints median times, ratios reference/ours from one
process, peak memory, and the achieved memory bandwidth of the fused op.

On CUDA it adds a shape several times the L2 cache (64 patches, K=256, 16^3: 268 MB of float32
features), prints the device's peak memory bandwidth (from its properties, else a datasheet
table by name; see common.peak_memory_bandwidth) and a measured device-to-device copy, gives
ours' bandwidth as a share of that peak, and reports the target: forward >= 50 % of peak on the
large shape. Bytes counted: the features read once and the cam and acam maps written (forward);
plus the features' gradient written (forward+backward: the logits' gradient needs only the
pooled features).

Run: python benchmarks/bench_attention_cam.py [--device cpu|cuda|all] [--no-compile] [--quick]
  --quick: CPU the 8-patch shape only, CUDA the large shape only; 0.2 s per timing.
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    chosen_devices,
    fmt_mb,
    fmt_ms,
    fmt_share,
    median_seconds,
    parse_timing_args,
    peak_extra_bytes,
    print_ceilings,
    print_table,
    report_target,
    timing_parser,
)

from wsls.ops import attention_cam, build_info, reference  # noqa: E402

SHAPES = {
    "8 patches K=256 8^3": (8, 256, 8, 8, 8),
    "BraTS volume K=256 30x30x20": (1, 256, 30, 30, 20),
}
LARGE = "64 patches K=256 16^3"  # CUDA only: 268 MB of features, several times any L2
CUDA_SHAPES = {**SHAPES, LARGE: (64, 256, 16, 16, 16)}
TARGET_SHARE = 0.5  # attention CAM forward >= 50 % of the peak memory bandwidth


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


def bench_device(device: str, use_compile: bool, min_run_time: float, quick: bool = False) -> None:
    impls = {"ours": attention_cam, "eager reference": reference.attention_cam}
    if use_compile:
        impls["compiled reference"] = torch.compile(reference.attention_cam)
    print(
        f"\n### {device}: {torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}, "
        f"{torch.get_num_threads()} threads\n"
    )
    peak = None
    if device == "cuda":
        peak, _ = print_ceilings()
        print()
    shapes = CUDA_SHAPES if device == "cuda" else SHAPES
    if quick:
        shapes = (
            {LARGE: CUDA_SHAPES[LARGE]} if device == "cuda" else dict([next(iter(SHAPES.items()))])
        )
    rows, shares = [], {}
    for label, shape in shapes.items():
        inputs = make_inputs(shape, device)
        feature_bytes = inputs[0].numel() * inputs[0].element_size()
        B, _, H, W, D = shape
        map_bytes = 2 * B * H * W * D * inputs[0].element_size()  # cam and acam written
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
            # read F, write cam and acam (+ write dF)
            moved = feature_bytes * (1 if mode == "forward" else 2) + map_bytes
            ours = times["ours"]
            for name in impls:
                t = times[name]
                ratio = f"{t / ours:.2f}x" if t and ours else "n/a"
                bandwidth = f"{moved / ours / 1e9:.1f}" if name == "ours" and ours else ""
                row = [label, mode, name, fmt_ms(t), ratio, fmt_mb(peaks[name]), bandwidth]
                if device == "cuda":
                    ours_bw = moved / ours if name == "ours" and ours else None
                    row.append(fmt_share(ours_bw, peak) if name == "ours" else "")
                    if ours_bw and peak:
                        shares[(label, mode)] = ours_bw / peak
                rows.append(row)
    headers = ["shape", "pass", "impl", "median ms", "time / ours", "peak extra MB", "ours GB/s"]
    if device == "cuda":
        headers.append("ours % of peak bandwidth")
    print_table(headers, rows)
    if device == "cuda":
        print()
        for mode in ("forward", "forward+backward"):
            share = shares.get((LARGE, mode))
            measured = f"{100 * share:.1f} % ({LARGE}, {mode})" if share else "n/a"
            if mode == "forward":
                met = None if share is None else share >= TARGET_SHARE
                report_target("attention CAM >= 50 % of peak memory bandwidth", measured, met)
            else:
                print(f"attention CAM {mode} on {LARGE}: {measured} of peak memory bandwidth")


def main() -> None:
    parser = timing_parser(__doc__, "one shape, short timings")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled reference")
    args = parse_timing_args(parser, build_info())
    for device in chosen_devices(args.device):
        bench_device(device, not args.no_compile, args.min_run_time, args.quick)


if __name__ == "__main__":
    main()
