"""Running a per-case stage: one case at a time (or a few in threads), each case's outputs
written to a :class:`~wsls.training.case_store.CaseStore` as soon as it is done, finished cases
skipped on resume, a progress bar with an ETA; and lazy views of the stored outputs."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from wsls.method.confident import ConfidentVoxels
from wsls.method.segment import VolumeMaps
from wsls.training.case_store import CaseStore

Compute = Callable[[int], tuple[dict[str, np.ndarray], dict[str, Any]]]


def resolve_workers(workers: int | None) -> int:
    """Threads for the per-case stages: ``None`` or 0 means one (the order and the arithmetic
    of a plain run; each case's outputs do not depend on the others, but a machine with few
    cores gains nothing from threads that share them); at most the CPU count."""
    if not workers:
        return 1
    return max(1, min(int(workers), os.cpu_count() or 1))


def run_per_case(
    store: CaseStore,
    compute: Compute,
    *,
    what: str,
    resume: bool,
    progress: bool,
    workers: int = 1,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, int]:
    """Compute and store every case's outputs of one stage.

    Args:
        compute: case index -> (arrays, small JSON-able results) of that case.
        resume: reuse the cases whose outputs are on disk, whole and of this stage's key.
        workers: threads computing cases at once.
        rank, world_size: under torchrun each rank computes every world_size-th case (the
            caller waits at a barrier before reading them all).
    Returns:
        {"computed": cases computed here, "reused": cases found done}.
    """
    from tqdm.auto import tqdm

    mine = [i for i in range(len(store)) if i % world_size == rank]
    todo = [i for i in mine if not (resume and store.valid(i))]
    reused = len(mine) - len(todo)
    bar = tqdm(
        total=len(mine), initial=reused, desc=what, unit="case", disable=not progress or rank
    )

    def one(index: int) -> None:
        arrays, meta = compute(index)
        store.save(index, arrays, meta)

    try:
        if workers <= 1:
            for index in todo:
                one(index)
                bar.update()
        else:
            with ThreadPoolExecutor(workers) as pool:
                for _ in pool.map(one, todo):
                    bar.update()
    finally:
        bar.close()
    return {"computed": len(todo), "reused": reused}


class StoredConfident(Sequence):
    """The confident voxels of every case, read from a stage's store when asked for."""

    def __init__(self, store: CaseStore) -> None:
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> ConfidentVoxels:  # type: ignore[override]
        coords = np.array(self.store.array(index, "coords"))
        return ConfidentVoxels(coords, np.array(self.store.array(index, "labels")))


def stored_maps(store: CaseStore, index: int) -> VolumeMaps:
    """A case's ACAM and posterior (read into memory) and lesion probability from the maps
    stage. The raw CAM is not kept (no later stage reads it): an empty array stands in."""
    meta = store.meta(index)
    acam, posterior = (np.array(store.array(index, n)) for n in ("acam", "posterior"))
    return VolumeMaps(acam, np.zeros(0, np.float32), meta["probability"], posterior)
