"""Running networks on an accelerator while the pipeline around them works on host tensors."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def resolve_device(device: str | torch.device | None, hint: str | None = None) -> torch.device:
    """The device to run on: ``device`` if given, else the input's own device (``hint``), else
    CPU. A CUDA device that is not there is a one-line ValueError."""
    chosen = torch.device(device if device is not None else (hint or "cpu"))
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {chosen} asked for, but torch sees no CUDA device")
    if chosen.type == "cuda" and chosen.index is None:
        chosen = torch.device("cuda", torch.cuda.current_device())
    return chosen


def _to_host(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.float().cpu() if value.is_floating_point() else value.cpu()
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # NamedTuple outputs
        return type(value)(*(_to_host(v) for v in value))
    if isinstance(value, tuple | list):
        return type(value)(_to_host(v) for v in value)
    return value


class OnDevice(nn.Module):
    """Wraps a network so that it runs on ``device`` but takes and returns host tensors.

    The pipeline's map, embedding and U-Net helpers build their inputs on the CPU; wrapped
    networks move each batch (a few MB of windows) to the accelerator and the outputs back.
    Attributes of the wrapped network (``spec``...) stay reachable.
    """

    def __init__(self, module: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.inner = module.to(device)
        self.device = device

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return _to_host(self.inner(x.to(self.device), *args, **kwargs))


def on_device(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` itself for a CPU run of CPU weights, else wrapped in :class:`OnDevice`
    (which moves its weights to ``device``: the pipeline around it stays on the host)."""
    weight = next(module.parameters(), None)
    if device.type == "cpu" and (weight is None or weight.device.type == "cpu"):
        return module
    return OnDevice(module, device)
