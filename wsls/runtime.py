"""Where this process runs: its place under ``torchrun`` and the device it computes on.

The one reader of torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and the one
resolver of device strings, for training, segmentation and folder runs alike.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch

from wsls.errors import ConfigError


class Placement(NamedTuple):
    """This process under torchrun: (0, 1, 0) without it."""

    rank: int
    world_size: int
    local_rank: int


def placement() -> Placement:
    """Rank, world size and local rank from torchrun's environment.

    Raises:
        ConfigError: values that are not integers, or a rank outside the world.
    """
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise ConfigError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {err}") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ConfigError(
            f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}"
        )
    return Placement(rank, world, local)


def resolve_device(
    device: str | torch.device | None, fallback: str = "cpu", local_rank: int | None = None
) -> torch.device:
    """The device to compute on.

    Args:
        device: what the user asked for ("cpu", "cuda", "cuda:1"...); None takes ``fallback``.
        fallback: a device string, or "auto" (CUDA when available, else CPU).
        local_rank: a bare "cuda" means GPU ``local_rank`` (this process's under torchrun);
            None: the current CUDA device.
    Raises:
        ConfigError: a string torch does not know, or CUDA asked for where there is none.
    """
    if device is None:
        device = (
            ("cuda" if torch.cuda.is_available() else "cpu") if fallback == "auto" else fallback
        )
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"device {device!r} is not a device torch knows (cpu, cuda, cuda:1...)"
        ) from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {chosen} asked for, but torch sees no CUDA device")
        if chosen.index is None:
            index = torch.cuda.current_device() if local_rank is None else local_rank
            chosen = torch.device("cuda", index % torch.cuda.device_count())
    elif chosen.type != "cpu":
        raise ConfigError(f"device {chosen} is not supported: wsls runs on cpu or cuda")
    return chosen
