"""Loads the compiled library wsls._C, which registers the kernels of the torch.ops.wsls ops."""

from __future__ import annotations

import torch

try:
    from wsls import _C
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "wsls: the compiled extension wsls._C is missing or does not match this torch "
        f"({torch.__version__}). Build it with `pip install --no-build-isolation -e .` "
        f"(or `make setup`). Original error: {exc}"
    ) from exc


def build_info() -> dict:
    """What this build holds: version, torch version, CUDA kernels (version, architectures)."""
    return _C.build_info()


def has_kernel(op: str, device: str) -> bool:
    """Whether ``torch.ops.wsls.<op>`` has a kernel for ``device`` ('CPU' or 'CUDA')."""
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"wsls::{op}", device)


def debug_checks_enabled() -> bool:
    """Whether the CUDA ops check tensor values (see ``debug_checks``)."""
    return _C.debug_checks_enabled()


class debug_checks:
    """Switch the value checks of the CUDA ops: ``wsls.ops.debug_checks(True)`` turns them on,
    ``with wsls.ops.debug_checks(True): ...`` turns them on for a block and restores the previous
    setting after it.

    Every op checks dims, dtypes, devices and sizes on every call. The checks of tensor values
    (finite features and embeddings, seeds inside the volume) are always made on the CPU, where
    the data are in host memory; on CUDA they wait for the device, so they run only while debug
    checks are on. Off (the default), no op entry synchronises with the host (``mask_nms``
    excepted: its output size is the number of kept candidates) and every one can be captured in
    a CUDA graph; on, a CUDA op raises the same one-line errors as the CPU. The environment
    variable ``WSLS_DEBUG_CHECKS=1`` turns them on from the start.
    """

    def __init__(self, enabled: bool) -> None:
        self.previous = _C.set_debug_checks(bool(enabled))

    def __enter__(self) -> debug_checks:
        return self

    def __exit__(self, *exc) -> None:
        _C.set_debug_checks(self.previous)
