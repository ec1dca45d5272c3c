"""A cache of decoded, preprocessed cases, so .nii.gz files are decompressed once.

In memory (an LRU of :class:`Prepared` cases) and optionally on disk as uncompressed .npy
arrays that DataLoader workers memory-map (the page cache then shares them between processes).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from wsls.data.preprocess import CropBox, Prepared, PreprocessConfig, preprocess
from wsls.io.case import Case, CaseRef
from wsls.io.nifti import Geometry

_FORMAT_VERSION = 1


class CachedImage:
    """A prepared image on disk, memory-mapped on first use in each process."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._array: np.ndarray | None = None

    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_array": None}  # workers map the file themselves


def case_key(ref: CaseRef, config: PreprocessConfig) -> str:
    """A hash of the case's files (path, size, modification time) and the preprocessing."""
    files = [p for p in (*ref.image_paths, ref.mask_path, ref.brain_path) if p is not None]
    stamp = []
    for p in files:
        st = os.stat(p)
        stamp.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    payload = {
        "v": _FORMAT_VERSION,
        "id": ref.id,
        "files": stamp,
        "modalities": list(ref.modalities),
        "lesion": asdict(ref.lesion),
        "label": ref.label,
        "grid": ref.on_grid_mismatch,
        "config": asdict(config),
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


class VolumeCache:
    """Prepared cases by key: memory first, then disk, then load + preprocess (and store).

    Args:
        config: the preprocessing applied to every case.
        cache_dir: folder for the on-disk cache, or None for memory only.
        max_in_memory: how many prepared cases to keep in memory.
    """

    def __init__(
        self,
        config: PreprocessConfig | None = None,
        cache_dir: str | Path | None = None,
        max_in_memory: int = 64,
    ) -> None:
        self.config = config or PreprocessConfig()
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.max_in_memory = max_in_memory
        self._memory: OrderedDict[str, Prepared] = OrderedDict()
        self.hits = {"memory": 0, "disk": 0, "decoded": 0}

    def get(self, item: CaseRef | Case | Prepared) -> Prepared:
        """The prepared case for a CaseRef (cached), a loaded Case, or a Prepared (as is)."""
        if isinstance(item, Prepared):
            return item
        if isinstance(item, Case):
            return preprocess(item, self.config)
        key = case_key(item, self.config)
        if key in self._memory:
            self._memory.move_to_end(key)
            self.hits["memory"] += 1
            return self._memory[key]
        prepared = self._read(key)
        if prepared is None:
            prepared = preprocess(item.load(), self.config)
            self.hits["decoded"] += 1
            self._write(key, prepared)
        else:
            self.hits["disk"] += 1
        self._memory[key] = prepared
        while len(self._memory) > self.max_in_memory:
            self._memory.popitem(last=False)
        return prepared

    def image_source(self, item: CaseRef | Case | Prepared) -> Any:
        """What a DataLoader worker needs for a case: a CachedImage on disk, else the array."""
        if isinstance(item, CaseRef) and self.cache_dir is not None:
            path = self.cache_dir / case_key(item, self.config) / "image.npy"
            if path.exists():
                return CachedImage(path)
        return self.get(item).image

    def _read(self, key: str) -> Prepared | None:
        if self.cache_dir is None:
            return None
        folder = self.cache_dir / key
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        geometry = None
        if meta["geometry"] is not None:
            g = meta["geometry"]
            geometry = Geometry(
                np.asarray(g["affine"]),
                np.asarray(g["original_affine"]),
                tuple(g["original_shape"]),
                np.asarray(g["ornt"]),
                None,
            )
        mask_path = folder / "mask.npy"
        return Prepared(
            id=meta["id"],
            image=np.load(folder / "image.npy", mmap_mode="r"),
            mask=np.load(mask_path) if mask_path.exists() else None,
            brain=np.load(folder / "brain.npy"),
            label=meta["label"],
            modalities=tuple(meta["modalities"]),
            spacing=tuple(meta["spacing"]),
            crop=CropBox(tuple(meta["crop"][0]), tuple(meta["crop"][1]), tuple(meta["crop"][2])),
            resampled_shape=tuple(meta["resampled_shape"]),
            geometry=geometry,
            stats=[tuple(s) for s in meta["stats"]],
        )

    def _write(self, key: str, p: Prepared) -> None:
        if self.cache_dir is None:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        folder = self.cache_dir / key
        if folder.exists():
            return
        tmp = Path(tempfile.mkdtemp(dir=self.cache_dir, prefix=f".{key}."))
        np.save(tmp / "image.npy", np.ascontiguousarray(p.image))
        np.save(tmp / "brain.npy", p.brain)
        if p.mask is not None:
            np.save(tmp / "mask.npy", p.mask)
        g = p.geometry
        meta = {
            "id": p.id,
            "label": p.label,
            "modalities": list(p.modalities),
            "spacing": list(p.spacing),
            "crop": [list(p.crop.start), list(p.crop.stop), list(p.crop.full_shape)],
            "resampled_shape": list(p.resampled_shape),
            "stats": [list(s) for s in p.stats],
            "geometry": None
            if g is None
            else {
                "affine": np.asarray(g.affine).tolist(),
                "original_affine": np.asarray(g.original_affine).tolist(),
                "original_shape": list(g.original_shape),
                "ornt": np.asarray(g.ornt).tolist(),
            },
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        try:
            tmp.rename(folder)  # atomic: a reader sees a whole entry or none
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process stored it first
