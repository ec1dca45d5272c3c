"""Per-case stage outputs on disk: one folder per case and stage, written atomically, checked
before reuse, read back lazily (memory maps), so later stages stream them case by case and a
resumed run reuses every case a killed one finished.

``<run>/cases/<stage>/<index>-<case id>/``: the arrays as .npy and ``meta.json`` (the stage's
fingerprint, each file's size and SHA-256, and the stage's small per-case results).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wsls.data.disk_case import read_array
from wsls.io.atomic import atomic_folder, write_durable
from wsls.io.checked_files import damage, npy_bytes, records


def fingerprint(*parts: Any) -> str:
    """A short hash of JSON-able parts and tensors/arrays (what a stage's outputs depend on)."""
    h = hashlib.sha256()
    for part in parts:
        if hasattr(part, "state_dict"):  # a network: its weights, in order
            for name, value in part.state_dict().items():
                h.update(name.encode())
                h.update(value.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


class CaseStore:
    """The outputs of one per-case stage, for cases numbered 0..n-1.

    Args:
        root: the stage's folder (``<run>/cases/<stage>``).
        key: the stage's fingerprint; a folder written under another key is stale.
        ids: the case ids, in order (part of each folder's name).
        sources: per case, a fingerprint of its input (its cache entry, or its shape and
            statistics); a folder written from another input is stale.
    """

    def __init__(self, root: str | Path, key: str, ids: list[str], sources: list[str]) -> None:
        self.root = Path(root)
        self.key = key
        self.ids = list(ids)
        self.sources = list(sources)

    def __len__(self) -> int:
        return len(self.ids)

    def folder(self, index: int) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.ids[index])[:80]
        return self.root / f"{index:05d}-{safe}"

    def save(self, index: int, arrays: Mapping[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Write case ``index``'s outputs (replacing any older folder), whole or not at all."""
        blobs = {f"{name}.npy": npy_bytes(a) for name, a in arrays.items()}
        record = {
            "key": self.key,
            "case": self.ids[index],
            "source": self.sources[index],
            "files": records(blobs),
            "meta": meta,
        }
        with atomic_folder(self.folder(index)) as tmp:
            for name, blob in blobs.items():
                write_durable(tmp / name, blob)
            write_durable(tmp / "meta.json", json.dumps(record).encode())

    def meta(self, index: int) -> dict[str, Any]:
        return json.loads((self.folder(index) / "meta.json").read_text())["meta"]

    def array(self, index: int, name: str) -> np.ndarray:
        """A read-only memory map of one output (read as it is indexed)."""
        return read_array(self.folder(index) / f"{name}.npy")

    def valid(self, index: int) -> bool:
        """Whether case ``index`` has whole outputs of this stage's key (sizes and checksums)."""
        folder = self.folder(index)
        try:
            record = json.loads((folder / "meta.json").read_text())
            mine = (self.key, self.ids[index], self.sources[index])
            if (record.get("key"), record.get("case"), record.get("source")) != mine:
                return False
            return damage(folder, record["files"]) is None
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def metas(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self.meta(i)
