"""The representation trainer's steps: which volumes and voxels each step draws."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np

from wsls.method.confident import ConfidentVoxels
from wsls.method.config import EmbeddingTrainConfig
from wsls.training.embedding import EmbeddingTask


def _task(n_volumes: int, cap: int) -> EmbeddingTask:
    rng = np.random.default_rng(0)
    cases = [SimpleNamespace(image=np.zeros((2, 8, 8, 8), np.float32))] * n_volumes
    confident = []
    for v in range(n_volumes):
        labels = np.array([1] * 6 + [0] * 10) if v != 3 else np.zeros(0, int)  # 3: nothing
        coords = rng.integers(0, 8, (len(labels), 3))
        confident.append(ConfidentVoxels(coords, labels))
    config = EmbeddingTrainConfig(voxels_per_volume=8, volumes_per_step=cap, steps_per_epoch=6)
    return EmbeddingTask(cases, confident, config, seed=1)


def _volumes(task: EmbeddingTask) -> list[list[int]]:
    return [[v for v, _ in batch["picks"]] for batch in task.train_batches(0, 0, 1)]


def test_every_volume_with_confident_voxels_up_to_the_cap():
    steps = _volumes(_task(6, cap=32))
    assert steps == [[0, 1, 2, 4, 5]] * 6


def test_a_step_holds_at_most_volumes_per_step_drawn_anew():
    task = _task(12, cap=4)
    steps = _volumes(task)
    assert all(len(s) == 4 and len(set(s)) == 4 and 3 not in s for s in steps)
    assert len({tuple(s) for s in steps}) > 1  # not the same four every step
    assert steps == _volumes(_task(12, cap=4))  # reproducible from the seed
    for batch in task.train_batches(0, 0, 1):
        for v, idx in batch["picks"]:
            labels = task.confident[v].labels[idx]
            assert len(idx) == 8 and (labels == 1).sum() == 4  # half lesion, half normal


class _Counting(Sequence):
    """Confident voxels as a stored selection serves them: each access counted (a disk read)."""

    def __init__(self, items):
        self.items, self.reads = items, 0

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        item = self.items[index]  # past the end: IndexError, which ends an iteration
        self.reads += 1
        return item


def test_each_step_reads_a_chosen_volume_once():
    task = _task(12, cap=4)
    task.confident = _Counting(task.confident)
    steps = _volumes(task)
    assert task.confident.reads == 12 + sum(len(s) for s in steps)  # one scan, then per pick
