"""Deterministic, resumable, rank-sharded batches of patches for the trainers.

Cutting a patch from a prepared volume in memory is cheap (tens of thousands per second), so the
batches are assembled in the training process: no workers, no prefetch to account for when a
run resumes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from wsls.data.patches import PatchSampler, augment, extract_patch


class PatchBatches:
    """Batches of ``(patches (B, C, p, p, p), labels (B))`` (plus ``targets (B, p, p, p)`` when
    voxel targets are given) from a :class:`PatchSampler`'s epochs.

    Each rank takes an equal, disjoint slice of the epoch's samples. ``state`` says how many of
    this rank's batches of which epoch were consumed; ``epoch(...)`` resumes after them.
    """

    def __init__(
        self,
        sampler: PatchSampler,
        images: Sequence[Any],
        batch_size: int,
        fill: float = 0.0,
        targets: Sequence[np.ndarray] | None = None,
    ) -> None:
        self.sampler = sampler
        self.images = list(images)
        self.batch_size = batch_size
        self.fill = fill
        self.targets = None if targets is None else list(targets)
        self.size = sampler.config.shape
        self.state: dict[str, int] = {"epoch": -1, "batches": 0}

    def batches_per_epoch(self, world_size: int = 1) -> int:
        return (len(self.sampler) // world_size) // self.batch_size

    def _cut(self, spec) -> tuple[np.ndarray, np.ndarray | None]:
        image = self.images[spec.source]
        image = image.array() if hasattr(image, "array") else image  # a DiskImage: mapped now
        patch = extract_patch(image, spec.corner, self.size, self.fill)
        patch = augment(patch, spec, self.fill)
        target = None
        if self.targets is not None:
            t = self.targets[spec.source][None].astype(np.float32)
            target = extract_patch(t, spec.corner, self.size, 0.0)[0]
            target = target[::-1] if spec.flip else target
        return patch, target

    def epoch(self, epoch: int, rank: int = 0, world_size: int = 1) -> Iterator[Any]:
        specs = self.sampler.epoch_specs(epoch)
        per_rank = len(specs) // world_size
        mine = specs[rank * per_rank : (rank + 1) * per_rank]
        n_batches = per_rank // self.batch_size
        start = self.state["batches"] if self.state.get("epoch") == epoch else 0
        for b in range(start, n_batches):
            chunk = mine[b * self.batch_size : (b + 1) * self.batch_size]
            cut = [self._cut(s) for s in chunk]
            x = torch.from_numpy(np.stack([c[0] for c in cut]).astype(np.float32))
            y = torch.tensor([s.label for s in chunk], dtype=torch.float32)
            self.state = {"epoch": epoch, "batches": b + 1}
            if self.targets is None:
                yield x, y
            else:
                yield x, y, torch.from_numpy(np.stack([c[1] for c in cut]))
