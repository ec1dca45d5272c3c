"""NRRD read/write through pynrrd (optional dependency), with affines in RAS+ world mm.

NRRD stores 'space directions' (one row per spatial axis, in the named space) and 'space
origin'. wsls works in RAS+ like NIfTI, so LPS spaces flip the x and y world axes.
A 4D NRRD must have its non-spatial (channel) axis first, marked by a 'none' direction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wsls.errors import DataError

_SPACE_SIGNS = {
    "right-anterior-superior": (1, 1, 1),
    "ras": (1, 1, 1),
    "left-posterior-superior": (-1, -1, 1),
    "lps": (-1, -1, 1),
    "left-anterior-superior": (-1, 1, 1),
    "las": (-1, 1, 1),
}


def _world_signs(header: dict, path: Path) -> np.ndarray:
    space = str(header.get("space", "right-anterior-superior")).lower()
    if space not in _SPACE_SIGNS:
        raise DataError(path, f"unsupported NRRD space {space!r}")
    return np.array(_SPACE_SIGNS[space], dtype=np.float64)


def read_nrrd(path: Path, nrrd: Any) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read an NRRD file.

    Returns:
        array (h, w, d) or (h, w, d, C) float32 in file order, (4, 4) RAS affine, header dict.
    """
    try:
        data, header = nrrd.read(str(path), index_order="F")
    except Exception as err:
        text = " ".join(str(err).split())
        raise DataError(path, f"cannot read NRRD ({type(err).__name__}: {text})") from None
    directions = header.get("space directions")
    if directions is None:
        directions, origin = np.eye(3), np.zeros(3)
    else:
        directions = np.asarray(directions, dtype=np.float64)
        origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)
    spatial_rows = ~np.isnan(directions).any(axis=1)
    if data.ndim == 4 and not spatial_rows[0]:
        data = np.moveaxis(data, 0, -1)  # channel axis last, like NIfTI
        directions = directions[spatial_rows]
    if directions.shape != (3, 3):
        raise DataError(path, f"expected 3 spatial axes, got directions {directions.tolist()}")
    signs = _world_signs(header, path)
    affine = np.eye(4)
    affine[:3, :3] = (directions * signs[None, :]).T  # columns: world step per voxel axis
    affine[:3, 3] = origin * signs
    return np.asarray(data, dtype=np.float32), affine, dict(header)


def write_nrrd(path: Path, array: np.ndarray, affine: np.ndarray, header: Any, nrrd: Any) -> None:
    """Write ``array`` (file order, channels last if 4D) with a RAS ``affine`` as NRRD.

    Keeps the reference's space (LPS or RAS) when the reference was an NRRD file.
    """
    space = "right-anterior-superior"
    if isinstance(header, dict) and str(header.get("space", "")).lower() in _SPACE_SIGNS:
        space = str(header["space"]).lower()
    signs = np.array(_SPACE_SIGNS[space], dtype=np.float64)
    directions = (np.asarray(affine)[:3, :3].T * signs[None, :]).astype(np.float64)
    out: dict[str, Any] = {
        "space": space,
        "space origin": np.asarray(affine)[:3, 3] * signs,
        "encoding": "gzip",
    }
    if array.ndim == 4:
        array = np.moveaxis(array, -1, 0)
        out["space directions"] = np.vstack([np.full((1, 3), np.nan), directions])
        out["kinds"] = ["list", "domain", "domain", "domain"]
    else:
        out["space directions"] = directions
        out["kinds"] = ["domain", "domain", "domain"]
    nrrd.write(
        str(path), np.ascontiguousarray(array) if array.ndim == 3 else array, out, index_order="F"
    )
