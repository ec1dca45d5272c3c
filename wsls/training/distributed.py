"""DistributedDataParallel helpers: detect ``torchrun``, set up the process group, and agree
across ranks on small JSON documents (no pickle: JSON text sent as byte tensors).

With one process every helper is a no-op that returns its input, so the training loop is
written once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from wsls.errors import UserError
from wsls.runtime import placement, resolve_device


@dataclass
class DistInfo:
    """Where this process stands.

    Attributes:
        rank, local_rank, world_size: as set by torchrun (0, 0, 1 without it).
        device: the device this rank trains on.
        owns_group: True if :func:`init_distributed` created the process group (and
            :func:`shutdown_distributed` should destroy it).
    """

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files and shows progress bars."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | torch.device | None = None) -> DistInfo:
    """Read torchrun's environment and initialise the process group when WORLD_SIZE > 1.

    The backend is NCCL for CUDA devices and gloo for CPU. A process group that the caller
    already initialised is reused (and left alone by :func:`shutdown_distributed`).
    """
    rank, world_size, local_rank = placement()
    if dist.is_available() and dist.is_initialized():
        world_size, rank = dist.get_world_size(), dist.get_rank()
    dev = resolve_device(device, "auto", local_rank)
    if world_size <= 1:
        return DistInfo(0, 0, 1, dev)
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"backend": backend}
        if dev.type == "cuda":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
        owns = True
    return DistInfo(rank, local_rank, world_size, dev, owns)


def shutdown_distributed(info: DistInfo) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def _comm_device(info: DistInfo) -> torch.device:
    return info.device if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Element-wise sum of ``values`` over ranks (float64)."""
    if not info.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device(info))
    dist.all_reduce(t)
    return t.cpu().tolist()


def broadcast_json(value: Any, info: DistInfo, src: int = 0) -> Any:
    """Rank ``src``'s ``value`` (a JSON document) on every rank."""
    if not info.distributed:
        return value
    device = _comm_device(info)
    data = json.dumps(value).encode("utf-8") if info.rank == src else b""
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    dist.broadcast(size, src)
    buf = torch.zeros(int(size.item()), dtype=torch.uint8, device=device)
    if info.rank == src:
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buf, src)
    return json.loads(bytes(buf.cpu().numpy()).decode("utf-8"))


def all_gather_json(value: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``value`` (a JSON document), in rank order, on every rank."""
    if not info.distributed:
        return [value]
    device = _comm_device(info)
    data = json.dumps(value).encode("utf-8")
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(info.world_size)]
    dist.all_gather(sizes, size)
    longest = max(int(s.item()) for s in sizes)
    buf = torch.zeros(longest, dtype=torch.uint8, device=device)
    if data:
        buf[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)
    bufs = [torch.zeros_like(buf) for _ in range(info.world_size)]
    dist.all_gather(bufs, buf)
    return [
        json.loads(bytes(b[: int(s.item())].cpu().numpy()).decode("utf-8"))
        for b, s in zip(bufs, sizes, strict=True)
    ]


def agree_or_raise(error: str | None, info: DistInfo, kind: type[Exception] = UserError) -> None:
    """Raise the same one-line error on every rank if rank 0 found one (all ranks call this)."""
    error = broadcast_json(error, info)
    if error:
        raise kind(error)


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op with one process)."""
    if info.distributed:
        dist.barrier()


def wrap_model(
    model: torch.nn.Module, info: DistInfo, find_unused_parameters: bool = False
) -> torch.nn.Module:
    """``model`` in DistributedDataParallel when running distributed, else ``model``."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or ``model`` itself)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model
