"""Cases whose arrays stay on disk: only their metadata live in memory.

A :class:`DiskCase` reads its ``image``, ``brain`` and ``mask`` as fresh read-only memory maps
on every access and keeps none of them, so the pages a stage touched stop counting towards the
process's resident memory once that stage lets go of the array. Training on hundreds of cases
then holds one case's arrays at a time, not every case's (DESIGN: training at scale).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def read_array(path: str | Path) -> np.ndarray:
    """A read-only memory map of an .npy file (nothing read until it is indexed)."""
    return np.load(path, mmap_mode="r")


class DiskImage:
    """A (C, h, w, d) image on disk for patch cutting: ``array()`` maps it afresh each time
    (cheap: a file open and a header), so no mapping outlives the patch cut from it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def array(self) -> np.ndarray:
        return read_array(self.path)


@dataclass
class DiskCase:
    """A prepared (or coarse) case stored as ``image.npy``, ``brain.npy`` and optionally
    ``mask.npy`` in ``folder``; the other fields are what :class:`~wsls.data.preprocess.Prepared`
    carries (``meta``: anything else, e.g. the crop and geometry of a cache entry)."""

    id: str
    folder: Path
    label: float | None
    modalities: tuple[str, ...] = ()
    meta: Any = None

    @property
    def image(self) -> np.ndarray:
        return read_array(self.folder / "image.npy")

    @property
    def brain(self) -> np.ndarray:
        return read_array(self.folder / "brain.npy")

    @property
    def mask(self) -> np.ndarray | None:
        path = self.folder / "mask.npy"
        return read_array(path) if path.exists() else None

    def image_source(self) -> DiskImage:
        return DiskImage(self.folder / "image.npy")

    def __getattr__(self, name: str) -> Any:  # spacing, crop, geometry, stats... of the meta
        meta = self.__dict__.get("meta")
        if meta is not None and hasattr(meta, name):
            return getattr(meta, name)
        raise AttributeError(name)


def image_source(case: Any) -> Any:
    """What a patch cutter keeps for a case: a :class:`DiskImage` for a case on disk (mapped
    per patch), else the image array itself."""
    source = getattr(case, "image_source", None)
    return source() if callable(source) else case.image
