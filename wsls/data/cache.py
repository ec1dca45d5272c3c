"""A cache of decoded, preprocessed cases, so .nii.gz files are decompressed once.

In memory (an LRU of :class:`Prepared` cases) and optionally on disk as uncompressed .npy
arrays that DataLoader workers memory-map (the page cache then shares them between processes).

On disk each case is a folder built aside and renamed into place (``wsls.io.atomic``): a crash
or a full disk leaves a whole entry or none, and no temporary folder. ``meta.json`` records
each array file's size and SHA-256; an entry that does not match them (a file truncated or
damaged since) is rebuilt from the images, with one message.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from wsls.data.disk_case import DiskCase
from wsls.data.preprocess import CropBox, Prepared, PreprocessConfig, preprocess, target_shape
from wsls.io.atomic import atomic_folder, write_durable
from wsls.io.case import Case, CaseRef
from wsls.io.checked_files import damage, npy_bytes, records
from wsls.io.nifti import Geometry, image_grid
from wsls.io.orientation import spacing_of
from wsls.io.outputs import nearest_existing

_FORMAT_VERSION = 2  # 2: sizes and checksums of the arrays in meta.json
_HEADROOM = 8 << 20  # keep this much free beyond the entries


class CacheSpaceError(OSError):
    """Not enough free disk space for the prepared-volume cache (one line)."""


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(nearest_existing(folder)).free


def _size_mb(n: float) -> str:
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e6:.2f} MB"


def estimate_case_bytes(ref: CaseRef, config: PreprocessConfig) -> int:
    """An upper bound of one case's cache entry (no crop assumed), from its image header."""
    shape, affine = image_grid(ref.image_paths[0])
    target = target_shape(shape, spacing_of(affine), config)
    voxels = float(np.prod([n + 8 for n in target]))
    channels = max(len(ref.modalities), len(ref.image_paths))
    return int(voxels * (4 * channels + 1 + (1 if ref.mask_path is not None else 0)) + 4096)


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
        log: where the one-line message about a damaged entry goes.
    """

    def __init__(
        self,
        config: PreprocessConfig | None = None,
        cache_dir: str | Path | None = None,
        max_in_memory: int = 64,
        log: Callable[[str], None] = print,
    ) -> None:
        self.config = config or PreprocessConfig()
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.max_in_memory = max_in_memory
        self.log = log
        self._memory: OrderedDict[str, Prepared] = OrderedDict()
        self.hits = {"memory": 0, "disk": 0, "decoded": 0}
        self.rebuilt = 0  # damaged disk entries prepared again
        self._verified: set[str] = set()  # entries whose files this process has checked

    def check_space(self, refs: Iterable[Any]) -> None:
        """Before preparing anything: refuse when the cases not cached yet would not fit on
        the cache's disk (an upper bound estimated from the image headers).

        Raises:
            CacheSpaceError: one line with the space needed and free, and what to do.
        """
        if self.cache_dir is None:
            return
        needed = 0
        for ref in refs:
            if not isinstance(ref, CaseRef):
                continue
            if not (self.cache_dir / case_key(ref, self.config)).is_dir():
                needed += estimate_case_bytes(ref, self.config)
        if needed == 0:
            return
        free = _free_bytes(self.cache_dir)
        if needed + _HEADROOM > free:
            raise CacheSpaceError(
                f"not enough free space for the prepared-volume cache in {self.cache_dir}: "
                f"about {_size_mb(needed)} needed (an upper bound), {_size_mb(free)} free; "
                "free some space, use another output folder, or train without the cache "
                "(--no-cache, cache=False)"
            )

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
        prepared = self._stored(key, item)
        self._memory[key] = prepared
        while len(self._memory) > self.max_in_memory:
            self._memory.popitem(last=False)
        return prepared

    def _stored(self, key: str, item: CaseRef, arrays: bool = True) -> Prepared:
        """The on-disk entry (or, without one, the images decoded, prepared and stored);
        ``arrays=False``: an entry on disk is read without its arrays."""
        prepared = self._read(key, arrays)
        if prepared is None:
            prepared = preprocess(item.load(), self.config)
            self.hits["decoded"] += 1
            self._write(key, prepared)
        else:
            self.hits["disk"] += 1
        return prepared

    def lazy(self, item: CaseRef | Case | Prepared) -> DiskCase | Prepared:
        """The prepared case with its arrays left in the on-disk cache (a :class:`DiskCase`:
        metadata in memory, arrays memory-mapped on access), stored first if need be; without
        an on-disk cache, or for a Case or Prepared, what :meth:`get` gives."""
        if not isinstance(item, CaseRef) or self.cache_dir is None:
            return self.get(item)
        key = case_key(item, self.config)
        prepared = self._stored(key, item, arrays=False)
        meta = replace(prepared, image=None, brain=None, mask=None)
        folder = self.cache_dir / key
        return DiskCase(prepared.id, folder, prepared.label, tuple(prepared.modalities), meta)

    def image_source(self, item: CaseRef | Case | Prepared) -> Any:
        """What a DataLoader worker needs for a case: a CachedImage on disk, else the array."""
        if isinstance(item, CaseRef) and self.cache_dir is not None:
            path = self.cache_dir / case_key(item, self.config) / "image.npy"
            if path.exists():
                return CachedImage(path)
        return self.get(item).image

    def _read(self, key: str, arrays: bool = True) -> Prepared | None:
        """The stored entry (its files checked once per process), or None; ``arrays=False``:
        its metadata only (image, brain and mask None)."""
        if self.cache_dir is None:
            return None
        folder = self.cache_dir / key
        if not folder.is_dir():
            return None
        try:
            meta = json.loads((folder / "meta.json").read_text())
            problem = None if key in self._verified else _damage(folder, meta)
        except (OSError, ValueError, KeyError, TypeError) as err:
            problem = f"meta.json unreadable ({type(err).__name__})"
        if problem is not None:
            self.log(
                f"[wsls] cache entry {folder} is damaged ({problem}): rebuilding it from the images"
            )
            shutil.rmtree(folder, ignore_errors=True)
            self.rebuilt += 1
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
        self._verified.add(key)  # entries are never changed once renamed into place
        mask_path = folder / "mask.npy"
        return Prepared(
            id=meta["id"],
            image=np.load(folder / "image.npy", mmap_mode="r") if arrays else None,
            mask=np.load(mask_path) if arrays and mask_path.exists() else None,
            brain=np.load(folder / "brain.npy") if arrays else None,
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
        folder = self.cache_dir / key
        if folder.exists():
            return
        blobs = {
            name: npy_bytes(array)
            for name, array in (("image", p.image), ("brain", p.brain), ("mask", p.mask))
            if array is not None
        }
        needed = sum(len(b) for b in blobs.values())
        free = _free_bytes(self.cache_dir)
        if needed + _HEADROOM > free:
            raise CacheSpaceError(
                f"not enough free space for the prepared-volume cache in {self.cache_dir}: "
                f"case {p.id} needs {_size_mb(needed)}, {_size_mb(free)} free; free some "
                "space or train without the cache (--no-cache, cache=False)"
            )
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
        meta["files"] = records({f"{name}.npy": blob for name, blob in blobs.items()})
        # built aside, renamed into place (a reader sees a whole entry or none); an entry
        # another process stored first is kept
        with atomic_folder(folder, replace=False) as tmp:
            for name, blob in blobs.items():
                write_durable(tmp / f"{name}.npy", blob)
            write_durable(tmp / "meta.json", json.dumps(meta).encode("utf-8"))


def _damage(folder: Path, meta: dict[str, Any]) -> str | None:
    """What is wrong with a cache entry's files (sizes, then checksums), or None."""
    files = meta["files"]
    for name in ("image.npy", "brain.npy"):
        if name not in files:
            return f"no record of {name}"
    return damage(folder, files)
