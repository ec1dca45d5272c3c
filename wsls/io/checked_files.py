"""Files recorded with their size and SHA-256, so a reader can tell whole files from damaged
ones: the prepared-volume cache, the per-case stage outputs and model bundles use these."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as the bytes of a .npy file (never pickled)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def records(blobs: Mapping[str, bytes]) -> dict[str, dict[str, int | str]]:
    """{file name: {"bytes": size, "sha256": digest}} of contents about to be written."""
    return {
        name: {"bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
        for name, blob in blobs.items()
    }


def damage(folder: Path, files: Mapping[str, Mapping]) -> str | None:
    """What is wrong with the recorded files in ``folder`` (sizes first, then checksums), or
    None when every one is whole."""
    for name, record in files.items():
        path = folder / name
        size = path.stat().st_size if path.exists() else None
        if size != record["bytes"]:
            found = "missing" if size is None else f"{size} bytes"
            return f"{name}: {found}, {record['bytes']} written"
    for name, record in files.items():
        if sha256_file(folder / name) != record["sha256"]:
            return f"{name}: checksum mismatch"
    return None
