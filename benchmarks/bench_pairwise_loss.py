"""Tiled pairwise_affinity_loss vs the dense eager PyTorch reference and KeOps (a pykeops
LazyTensor formula of the same loss), forward and forward+backward, all in one process.

Inputs: N embeddings of K features (standard normal), labels 80 % normal (0), 10 % lesion (1),
10 % ignored (-1), one group, the default 'balanced' reduction. Prints median times, the ratio
time / ours (> 1: ours is faster), and the peak extra memory of each call. The dense reference
runs only up to --dense-max rows (it holds several N x N matrices), KeOps up to --keops-max on
the CPU (its time grows as N^2: about 20 s at N = 16,384 there); larger sizes say why they are
skipped. CUDA runs N up to 10^6.

On CUDA the table adds N^2 / time (pairs per second and pass) and ours' memory bandwidth as a
share of the device's peak (common.peak_memory_bandwidth; the loss is compute-bound: N^2 pairs
from N K floats, so that share is tiny), and it reports the targets at N = 10^6, K = 16:
forward+backward under 2 s, and faster than KeOps. KeOps at a size whose time, predicted from
the last size it ran at (N^2 scaling), passes --keops-cap-s is not run: the target then uses
that prediction and says so.

Run: python benchmarks/bench_pairwise_loss.py [--device cpu|cuda|all] [--sizes 4096x16,...]
  --quick: CPU N = 2048, K = 16; CUDA N = 65536, 262144, 10^6 (K = 16), forward+backward only;
  0.2 s per timing and one timed run of calls slower than 2 s.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

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

from wsls.ops import build_info, pairwise_affinity_loss, reference  # noqa: E402

SIZES = {
    "cpu": [(4096, 16), (4096, 32), (16384, 16), (16384, 32), (65536, 16), (65536, 32)],
    "cuda": [(4096, 16), (16384, 16), (65536, 16), (65536, 32), (262144, 16), (1_000_000, 16)],
}
QUICK_SIZES = {"cpu": [(2048, 16)], "cuda": [(65536, 16), (262144, 16), (1_000_000, 16)]}
TARGET_SIZE = (1_000_000, 16)
TARGET_SECONDS = 2.0  # forward+backward at N = 10^6, K = 16
PASSES = ("forward", "forward+backward")


def make_inputs(n: int, k: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, k, generator=g)
    u = torch.rand(n, generator=g)
    labels = torch.where(u < 0.8, 0, torch.where(u < 0.9, 1, -1))
    return emb.to(device), labels.to(device)


def keops_loss(embeddings, labels, groups=None, reduction="balanced", eps=1e-6):
    """The same loss as a KeOps LazyTensor reduction (symbolic, never N x N in memory).

    Same-class pairs: d2 + log((1 + e^-d2) / 2) = softplus(d2) - log 2; different-class pairs:
    -log(max(tanh(d2 / 2), eps)) with tanh(d2 / 2) = (1 - e^-d2) / (1 + e^-d2); the diagonal
    (same class, d2 = 0) adds 0. Labels and groups ride along as float columns.
    """
    from pykeops.torch import LazyTensor

    w_same, w_diff = reference.pair_weights(*reference.pair_counts(labels, groups), reduction)
    x = embeddings.contiguous()
    dt = x.dtype
    col = {
        "v": (labels >= 0).to(dt)[:, None],
        "l": labels.to(dt)[:, None],
        "g": (groups if groups is not None else torch.zeros_like(labels)).to(dt)[:, None],
    }
    x_i, x_j = LazyTensor(x[:, None, :]), LazyTensor(x[None, :, :])
    v_i, v_j = LazyTensor(col["v"][:, None, :]), LazyTensor(col["v"][None, :, :])
    l_i, l_j = LazyTensor(col["l"][:, None, :]), LazyTensor(col["l"][None, :, :])
    g_i, g_j = LazyTensor(col["g"][:, None, :]), LazyTensor(col["g"][None, :, :])
    d2 = x_i.sqdist(x_j)
    e = (-d2).exp()
    same = 1 - (l_i - l_j).abs().sign()
    pair = v_i * v_j * (1 - (g_i - g_j).abs().sign())
    loss_same = d2 + ((1 + e) * 0.5).log()
    loss_diff = -(((1 - e) / (1 + e) - eps).relu() + eps).log()
    per_pair = pair * (same * (w_same * loss_same) + (1 - same) * (w_diff * loss_diff))
    return per_pair.sum(dim=1).sum()


def forward(fn, emb, labels):
    def run():
        with torch.no_grad():
            return fn(emb, labels)

    return run


def forward_backward(fn, emb, labels):
    def run():
        x = emb.detach().requires_grad_()
        fn(x, labels).backward()
        return x.grad

    return run


def measure(run, device: str, min_run_time: float, slow_s: float = 2.0, slow_runs: int = 3):
    """(median seconds, runs, peak extra bytes). The peak measurement doubles as the warm-up
    (and KeOps' compilation); calls slower than slow_s are timed slow_runs times, faster ones by
    torch.utils.benchmark for min_run_time seconds."""
    peak = peak_extra_bytes(run, device)
    start = time.perf_counter()
    run()
    if device == "cuda":
        torch.cuda.synchronize()
    first = time.perf_counter() - start
    if first < slow_s:
        return median_seconds(run, min_run_time), "auto", peak
    times = [first]
    for _ in range(slow_runs - 1):
        start = time.perf_counter()
        run()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), str(len(times)), peak


def check_agreement(impls, emb, labels) -> str:
    """max relative difference of the losses against ours, as a sanity line."""
    with torch.no_grad():
        ours = float(impls["ours"](emb, labels))
        parts = []
        for name, fn in impls.items():
            if name != "ours":
                try:
                    other = float(fn(emb, labels))
                    parts.append(f"{name} {abs(other - ours) / abs(ours):.1e}")
                except Exception as exc:  # reported again, per pass, by the timing
                    parts.append(f"{name} failed ({type(exc).__name__})")
    return f"loss {ours:.6f}; relative difference to ours: " + ", ".join(parts)


def bench_device(device: str, sizes, args) -> None:
    try:
        import pykeops  # noqa: F401

        have_keops = not args.no_keops
    except ImportError:
        have_keops = False
        print("pykeops is not installed: the KeOps column is skipped (pip install pykeops)")
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"\n### {device}: {name}, {torch.get_num_threads()} threads\n")
    cuda = device == "cuda"
    peak = print_ceilings()[0] if cuda else None
    keops_max = args.keops_max if device == "cpu" else 1 << 62
    passes = PASSES[1:] if args.quick and cuda else PASSES
    slow_runs = 1 if args.quick else 3
    rows, results_at = [], {}
    keops_last = None  # (N, forward+backward seconds) of the last size KeOps ran at
    for n, k in sizes:
        emb, labels = make_inputs(n, k, device)
        impls = {"ours": pairwise_affinity_loss}
        if n <= args.dense_max:
            impls["dense reference"] = reference.pairwise_affinity_loss
        else:
            print(f"N={n}: dense reference skipped (N x N matrices; --dense-max {args.dense_max})")
        keops_predicted = None
        if keops_last and args.keops_cap_s:
            keops_predicted = keops_last[1] * (n / keops_last[0]) ** 2
        if (
            have_keops
            and n <= keops_max
            and not (keops_predicted and keops_predicted > args.keops_cap_s)
        ):
            impls["KeOps"] = keops_loss
        elif have_keops and n > keops_max:
            print(f"N={n}: KeOps skipped (N^2 time on the CPU; --keops-max {keops_max})")
        elif have_keops:
            print(
                f"N={n}: KeOps skipped: predicted {keops_predicted:.1f} s per forward+backward "
                f"from N={keops_last[0]} (N^2 scaling) > --keops-cap-s {args.keops_cap_s}"
            )
        print(f"N={n} K={k}: {check_agreement(impls, emb, labels)}", flush=True)
        for mode in passes:
            wrap = forward if mode == "forward" else forward_backward
            results = {}
            for impl, fn in impls.items():
                try:
                    results[impl] = measure(
                        wrap(fn, emb, labels), device, args.min_run_time, slow_runs=slow_runs
                    )
                except Exception as exc:  # out of memory, KeOps build problems: say so
                    print(f"{impl} failed on N={n} K={k} {mode}: {type(exc).__name__}: {exc}")
                    results[impl] = (None, "", None)
            ours = results["ours"][0]
            results_at[(n, k, mode)] = {i: r[0] for i, r in results.items()}
            if mode == "forward+backward" and results.get("KeOps", (None,))[0]:
                keops_last = (n, results["KeOps"][0])
            elif mode == "forward+backward" and keops_predicted:
                results_at[(n, k, mode)]["KeOps (predicted)"] = keops_predicted
            for impl, (t, runs, peak_bytes) in results.items():
                ratio = f"{t / ours:.1f}x" if t and ours else "n/a"
                row = [str(n), str(k), mode, impl, fmt_ms(t), runs, ratio, fmt_mb(peak_bytes)]
                if cuda:
                    # bytes: embeddings and labels read (+ the embeddings' gradient written)
                    moved = n * k * emb.element_size() * (1 if mode == "forward" else 2) + n * 8
                    row.append(f"{n * n / t / 1e9:.1f}" if t else "n/a")
                    row.append(fmt_share(moved / t if t else None, peak) if impl == "ours" else "")
                rows.append(row)
                print("  " + " ".join(rows[-1]), flush=True)  # progress; the table comes last
    print()
    headers = ["N", "K", "pass", "impl", "median ms", "runs", "time / ours", "peak extra MB"]
    if cuda:
        headers += ["N^2 / time (G pairs/s)", "ours % of peak bandwidth"]
    print_table(headers, rows)
    if cuda:
        print()
        report_targets(results_at.get((*TARGET_SIZE, "forward+backward")), have_keops)


def report_targets(times: dict | None, have_keops: bool) -> None:
    """The two targets at N = 10^6, K = 16, forward+backward (target lines)."""
    label = "pairwise loss forward+backward at N = 10^6, K = 16"
    ours = (times or {}).get("ours")
    measured = f"{ours:.3f} s" if ours else "n/a (not run)"
    report_target(
        f"{label} < {TARGET_SECONDS:g} s", measured, None if not ours else ours < TARGET_SECONDS
    )
    keops = (times or {}).get("KeOps")
    predicted = (times or {}).get("KeOps (predicted)")
    if ours and keops:
        report_target(
            f"{label} faster than KeOps", f"KeOps / ours {keops / ours:.1f}x", ours < keops
        )
    elif ours and predicted:
        text = f"KeOps / ours {predicted / ours:.1f}x (KeOps predicted by N^2 scaling, not run)"
        report_target(f"{label} faster than KeOps", text, ours < predicted)
    else:
        why = "pykeops is not installed or --no-keops" if not have_keops else "KeOps did not run"
        report_target(f"{label} faster than KeOps", f"n/a ({why})", None)


def parse_sizes(text: str):
    return [tuple(int(v) for v in item.split("x")) for item in text.split(",") if item]


def main() -> None:
    parser = timing_parser(__doc__, "fewer sizes, short timings")
    parser.add_argument("--sizes", type=parse_sizes, help="NxK,... (default: per device)")
    parser.add_argument("--dense-max", type=int, default=16384, help="largest N for the dense")
    parser.add_argument("--keops-max", type=int, default=16384, help="largest N for KeOps (CPU)")
    parser.add_argument("--no-keops", action="store_true")
    parser.add_argument(
        "--keops-cap-s",
        type=float,
        help="skip KeOps where its forward+backward is predicted to take longer (seconds)",
    )
    args = parse_timing_args(parser, build_info())
    for device in chosen_devices(args.device):
        default = (QUICK_SIZES if args.quick else SIZES)[device]
        bench_device(device, args.sizes or default, args)


if __name__ == "__main__":
    main()
