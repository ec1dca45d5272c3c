"""Timing and memory helpers shared by the benchmarks: medians, ratios, peak memory."""

from __future__ import annotations

import argparse
import ctypes
import gc
import re
from collections.abc import Callable, Iterator

import torch
import torch.utils.benchmark as tbench
from torch.profiler import ProfilerActivity, profile


def timing_parser(doc: str, quick_help: str) -> argparse.ArgumentParser:
    """The options every kernel benchmark takes: --device, --quick, --min-run-time."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument(
        "--min-run-time", type=float, help="seconds per timing (default 1, quick 0.2)"
    )
    return parser


def parse_timing_args(parser: argparse.ArgumentParser, build: str) -> argparse.Namespace:
    """Parsed options with --min-run-time defaulted by --quick; prints the build line."""
    args = parser.parse_args()
    args.min_run_time = args.min_run_time or (0.2 if args.quick else 1.0)
    print(f"wsls build: {build}")
    return args


def chosen_devices(choice: str) -> Iterator[str]:
    """The devices --device names, in order, skipping CUDA (and saying so) where there is none."""
    for device in ["cpu", "cuda"] if choice == "all" else [choice]:
        if device == "cuda" and not torch.cuda.is_available():
            print("\n### cuda: no CUDA device visible, skipped")
            continue
        yield device


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


# --- GPU ceilings and targets -------------------------------------------------------------

# Peak memory bandwidth (bytes/s) by device name, from the vendors' datasheets, used where the
# device properties give no memory clock or bus width. First match wins (case-insensitive).
PEAK_BANDWIDTH_BY_NAME = (
    ("H200", 4.8e12),  # H200 SXM and NVL: 141 GB HBM3e
    ("H100 NVL", 3.9e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),  # H100 SXM5 80 GB HBM3 ("NVIDIA H100 80GB HBM3")
    ("A100-SXM4-80GB", 2.039e12),
    ("A100 80GB PCIe", 1.935e12),
    ("A100", 1.555e12),  # 40 GB, SXM4 and PCIe
)


def bandwidth_from_properties(memory_clock_khz: int, memory_bus_bits: int) -> float | None:
    """Peak DRAM bandwidth in bytes/s: 2 transfers per memory clock (double data rate, as
    CUDA's deviceQuery counts) times the bus width; None when either is unknown (0)."""
    if not memory_clock_khz or not memory_bus_bits:
        return None
    return 2.0 * memory_clock_khz * 1e3 * memory_bus_bits / 8


def bandwidth_from_name(name: str) -> float | None:
    """The datasheet figure of PEAK_BANDWIDTH_BY_NAME for a device name, else None."""
    for key, value in PEAK_BANDWIDTH_BY_NAME:
        if key.lower() in name.lower():
            return value
    return None


def peak_memory_bandwidth(device: int | None = None) -> tuple[float | None, str]:
    """(peak bytes/s, where it comes from) for a CUDA device: torch.cuda.get_device_properties'
    memory_clock_rate and memory_bus_width where torch fills them (and they agree with the
    datasheet within 30 % where the name is in the table), else the datasheet table by name
    (H100, H200, A100), else (None, why)."""
    props = torch.cuda.get_device_properties(device)
    clock = int(getattr(props, "memory_clock_rate", 0) or 0)
    bus = int(getattr(props, "memory_bus_width", 0) or 0)
    derived = bandwidth_from_properties(clock, bus)
    table = bandwidth_from_name(props.name)
    if derived and not (table and abs(derived / table - 1) > 0.3):
        note = f" (datasheet table: {table / 1e12:.2f} TB/s)" if table else ""
        source = f"device properties: 2 x memory clock {clock / 1e3:.0f} MHz x {bus}-bit bus" + note
        return derived, source
    if derived:  # a clock that disagrees with the datasheet by > 30 %: trust the datasheet
        return table, (
            f"datasheet table by name ({props.name!r}); the device properties' "
            f"{derived / 1e12:.2f} TB/s is more than 30 % off it"
        )
    if table:
        return table, f"datasheet table by name ({props.name!r}; device properties give no clock)"
    return (
        None,
        f"unknown: no memory clock in the device properties and {props.name!r} not in the table",
    )


def measured_copy_bandwidth(nbytes: int = 1 << 30, repeats: int = 20) -> float:
    """Bytes/s of a device-to-device copy of nbytes (bytes read plus bytes written), median of
    repeats timed with CUDA events after a warm-up; random data."""
    x = torch.rand(nbytes // 4, device="cuda")
    y = torch.empty_like(x)
    y.copy_(x)
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        y.copy_(x)
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) / 1e3)
    del x, y
    torch.cuda.empty_cache()
    return 2 * nbytes / sorted(times)[len(times) // 2]


def print_ceilings() -> tuple[float | None, float]:
    """Print and return (peak bytes/s, measured copy bytes/s) of the current CUDA device."""
    peak, source = peak_memory_bandwidth()
    copy = measured_copy_bandwidth()
    peak_text = f"{peak / 1e12:.2f} TB/s" if peak else "unknown"
    print(f"peak memory bandwidth: {peak_text} ({source})")
    share = f", {100 * copy / peak:.0f} % of peak" if peak else ""
    print(f"measured device-to-device copy: {copy / 1e12:.2f} TB/s (read + write{share})")
    return peak, copy


def fmt_share(bytes_per_s: float | None, peak: float | None) -> str:
    """'63 %' of the peak, or 'n/a'."""
    if not bytes_per_s or not peak:
        return "n/a"
    return f"{100 * bytes_per_s / peak:.1f} %"


def report_target(name: str, measured: str, met: bool | None) -> None:
    """One line `target: NAME: MEASURED -> met | NOT met | not measured` (tools/gpu_check.py
    collects these into its report)."""
    verdict = "not measured" if met is None else ("met" if met else "NOT met")
    print(f"target: {name}: {measured} -> {verdict}", flush=True)
