"""Small helpers shared by the tests."""

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


def tiny_config(**changes):
    """A method small enough to train on 64x64x48 phantoms in seconds (``WSLSConfig``)."""
    from wsls.data.patches import PatchConfig
    from wsls.method.config import StageSchedule, WSLSConfig

    return WSLSConfig(
        **{
            "modalities": ("flair", "t1c", "t1", "t2"),
            "classifier_scale": 1,
            "patch": PatchConfig(size=16, min_lesion_voxels=10, samples_per_epoch=16, flip_lr=True),
            "width": 4,
            "stages": 2,
            "classifier": StageSchedule(1, 16),
            "embedding_schedule": StageSchedule(1, 4),
            "self_training": 1,
            "window_edge": 0,  # the phantoms' voxels are coarse (tests/test_method_windows.py)
            **changes,
        }
    )
