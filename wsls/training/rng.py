"""Seeding and capturing/restoring every random number generator a training step may use:
torch (CPU and the current CUDA device), numpy's global generator and Python's ``random``."""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global generator and ``random``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the global generator users rely on)
    torch.manual_seed(seed)  # seeds every CUDA device too


@dataclass
class RngState:
    """A snapshot of all generators (cheap to take: a few kB copied)."""

    torch_cpu: torch.Tensor
    torch_cuda: list[torch.Tensor]
    numpy: tuple
    python: tuple

    def to_json(self) -> dict[str, Any]:
        """A JSON document (byte states in base64)."""
        name, keys, pos, has_gauss, cached = self.numpy
        return {
            "torch": _b64(self.torch_cpu),
            "cuda": [_b64(t) for t in self.torch_cuda],
            "numpy": {
                "name": name,
                "keys": [int(k) for k in keys],
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached),
            },
            "python": [self.python[0], list(self.python[1]), self.python[2]],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RngState:
        n = doc["numpy"]
        numpy_state = (
            n["name"],
            np.asarray(n["keys"], dtype=np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
        py = doc["python"]
        return cls(
            torch_cpu=_unb64(doc["torch"]),
            torch_cuda=[_unb64(s) for s in doc.get("cuda", [])],
            numpy=numpy_state,
            python=(py[0], tuple(py[1]), py[2]),
        )


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


def capture_rng() -> RngState:
    """The current state of every generator."""
    # the current device only: touching every GPU would create a context on each from each rank
    cuda = [torch.cuda.get_rng_state()] if torch.cuda.is_initialized() else []
    return RngState(torch.get_rng_state(), cuda, np.random.get_state(), random.getstate())  # noqa: NPY002


def restore_rng(state: RngState) -> None:
    """Put every generator back into ``state`` (the CUDA one, of the current device, only if
    both sides have CUDA)."""
    torch.set_rng_state(state.torch_cpu)
    if state.torch_cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state(state.torch_cuda[0])
    np.random.set_state(state.numpy)  # noqa: NPY002
    random.setstate(state.python)
