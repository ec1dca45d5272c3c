"""Small helpers shared by the op tests."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

HAS_CUDA = torch.cuda.is_available()

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def skip_without_cuda(device: str) -> None:
    if device == "cuda" and not HAS_CUDA:
        pytest.skip("needs a CUDA device")


def allocated_bytes(fn) -> tuple[int, object]:
    """Bytes of tensors allocated while fn() runs, frees ignored: an upper bound of its peak
    extra memory. Returns (bytes, fn's result)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    return sum(max(e.self_cpu_memory_usage, 0) for e in prof.events()), result


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)
