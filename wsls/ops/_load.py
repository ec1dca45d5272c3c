"""Loads the compiled library wsls._C, which registers the kernels of the torch.ops.wsls ops."""

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
