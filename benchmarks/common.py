"""Timing and memory helpers shared by the benchmarks: medians, ratios, peak memory."""

from __future__ import annotations

import ctypes
import gc
import re
from collections.abc import Callable

import torch
import torch.utils.benchmark as tbench
from torch.profiler import ProfilerActivity, profile


def median_seconds(fn: Callable[[], object], min_run_time: float = 1.0) -> float:
    """Median wall time of fn() (CUDA synchronised), from torch.utils.benchmark."""
    fn()  # warm-up (and compile, for compiled functions)
    return (
        tbench.Timer(stmt="fn()", globals={"fn": fn})
        .blocked_autorange(min_run_time=min_run_time)
        .median
    )


def _vm_hwm_bytes() -> int:
    with open("/proc/self/status") as fh:
        return int(re.search(r"VmHWM:\s+(\d+) kB", fh.read()).group(1)) * 1024


def _vm_rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        return int(re.search(r"VmRSS:\s+(\d+) kB", fh.read()).group(1)) * 1024


def peak_extra_bytes(fn: Callable[[], object], device: str = "cpu") -> int | None:
    """Peak memory fn() adds above what is in use before it, results included.

    CUDA: the caching allocator's peak. CPU: the process's peak resident set (VmHWM, reset
    through /proc/self/clear_refs), after returning freed heap to the OS; None where Linux
    does not allow the reset.
    """
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        result = fn()
        torch.cuda.synchronize()
        del result
        return torch.cuda.max_memory_allocated() - base
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return None
    base = _vm_rss_bytes()
    result = fn()
    peak = _vm_hwm_bytes()
    del result
    return max(peak - base, 0)


def allocated_bytes(fn: Callable[[], object]) -> int:
    """Bytes of CPU tensors allocated while fn() runs (frees ignored): an upper bound of its
    peak extra memory as seen by torch's allocator."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return sum(max(e.self_cpu_memory_usage, 0) for e in prof.events())


def fmt_ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.3f}"


def fmt_mb(nbytes: int | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 2**20:.2f}"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """A Markdown table on stdout."""
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
