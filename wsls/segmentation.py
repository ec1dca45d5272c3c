"""The result of :func:`wsls.segment`: a mask and maps on the input's own grid, and saving them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wsls.data.preprocess import Prepared
from wsls.io.nifti import Geometry, save_like
from wsls.io.outputs import check_output
from wsls.method.quality import Quality


@dataclass
class Candidates:
    """The region-growing candidates, one per seed.

    Attributes:
        seeds: (S, 3) int64 voxel indices of the seeds on the input grid (the input's voxel
            order, as ``mask``).
        scores: (S,) float32 mean ACAM over each candidate region.
        kept: (S,) bool: the candidate survived non-maximum suppression and is in the mask.
        threshold: the affinity threshold lambda the regions were grown with (None when the
            volume was judged lesion-free and nothing was grown).
        seeds_prepared: (S, 3) the same seeds on the prepared (network) grid.
    """

    seeds: np.ndarray
    scores: np.ndarray
    kept: np.ndarray
    threshold: float | None
    seeds_prepared: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 3)))

    def __len__(self) -> int:
        return len(self.seeds)

    def __repr__(self) -> str:
        return (
            f"Candidates({len(self)} seeds, {int(np.count_nonzero(self.kept))} kept, "
            f"lambda={self.threshold})"
        )


@dataclass
class Segmentation:
    """A lesion segmentation on the grid of the image it was computed from.

    Arrays are in the input's voxel order: for a file, the order stored in the file (so
    ``nibabel.load(path).get_fdata()`` and ``mask`` overlay voxel for voxel); for an array, the
    array's own order.

    Attributes:
        mask: (H, W, D) bool lesion mask.
        acam: (H, W, D) float32 attention CAM in [0, 1] (0 outside the brain).
        candidates: seeds, scores and kept flags of the region-growing candidates.
        affine: (4, 4) voxel-to-world matrix (mm) of ``mask``'s grid.
        probability: the classifier's highest lesion probability over the volume's windows.
        lesion_free: True when the volume was judged lesion-free (empty mask, nothing grown).
        case_id: the case's name.
        quality: the quality verdict: ``quality.ok``, ``quality.flags`` (why to check the
            mask), ``quality.measures``.
        geometry: where the input lies (used by :meth:`save`).
        prepared: the case on the network's grid; ``result``: the method's raw output there
            (maps, confident voxels, regions).
        timings: seconds per step (load, preprocess, method, map back).
        input_warnings: what looked wrong in the input (modality order, file names, voxel
            size), one line each; also given as :class:`~wsls.errors.InputWarning`.
        sources: the files the input was read from; :meth:`save` never writes over them.
    """

    mask: np.ndarray
    acam: np.ndarray
    candidates: Candidates
    affine: np.ndarray
    probability: float
    lesion_free: bool
    case_id: str
    geometry: Geometry = field(repr=False)
    prepared: Prepared | None = field(default=None, repr=False)
    result: Any = field(default=None, repr=False)
    timings: dict[str, float] = field(default_factory=dict, repr=False)
    quality: Quality = field(default_factory=Quality)
    input_warnings: tuple[str, ...] = ()
    sources: tuple[Path, ...] = field(default=(), repr=False)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in ml."""
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    @property
    def lesion_ml(self) -> float:
        """Segmented lesion volume in ml."""
        return float(np.count_nonzero(self.mask)) * self.voxel_volume_ml

    def save(self, path: str | Path) -> Path:
        """Write the mask as NIfTI (uint8, 1 = lesion) with the input's orientation, affine
        and header (``.nii``, ``.nii.gz``, or ``.nrrd`` with pynrrd).

        Args:
            path: the file; or an existing folder, which gets ``<case_id>_lesion.nii.gz``.
        Returns:
            The path written (in a folder: the file inside it). The write is atomic: a
            failure leaves any previous file as it was.
        Raises:
            OutputError: ``path`` is one of the input's files, or cannot be written.
        """
        target = self._target(path, "lesion")
        canonical = self.geometry.to_canonical(self.mask)
        return save_like(np.ascontiguousarray(canonical), self.geometry, target)

    def save_acam(self, path: str | Path) -> Path:
        """Write the ACAM (float32) like :meth:`save` (a folder gets ``<case_id>_acam.nii.gz``)."""
        target = self._target(path, "acam")
        canonical = self.geometry.to_canonical(self.acam)
        return save_like(np.ascontiguousarray(canonical), self.geometry, target, dtype=np.float32)

    def _target(self, path: str | Path, what: str) -> Path:
        path = Path(path).expanduser()
        if path.is_dir():
            path = path / f"{self.case_id}_{what}.nii.gz"
        return check_output(path, inputs=self.sources)

    def __repr__(self) -> str:
        kept = int(np.count_nonzero(self.candidates.kept))
        return (
            f"Segmentation(case_id={self.case_id!r}, mask={self.mask.shape} with "
            f"{int(np.count_nonzero(self.mask))} lesion voxels ({self.lesion_ml:.1f} ml), "
            f"probability={self.probability:.3f}, candidates={len(self.candidates)} "
            f"({kept} kept), lambda={self.candidates.threshold}, "
            f"quality={self.quality.summary()!r})"
        )

    def summary(self) -> dict[str, Any]:
        """One row for a report: case, lesion volume, probability, candidates kept."""
        return {
            "case": self.case_id,
            "lesion_voxels": int(np.count_nonzero(self.mask)),
            "lesion_ml": round(self.lesion_ml, 3),
            "probability": round(float(self.probability), 4),
            "lesion_free": self.lesion_free,
            "candidates": len(self.candidates),
            "kept": int(np.count_nonzero(self.candidates.kept)),
            "lambda": self.candidates.threshold,
            "quality": self.quality.verdict,
            "flags": "; ".join(self.quality.flags),
            "warnings": "; ".join(self.input_warnings),
        }


def prepared_to_file_voxels(prepared: Prepared, points: np.ndarray) -> np.ndarray:
    """(N, 3) voxel indices on the prepared grid -> (N, 3) int64 indices in the file's voxel
    order (through world coordinates, so any crop, resampling and reorientation is undone)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    geometry = prepared.geometry
    if geometry is None or prepared.affine is None:
        raise ValueError(f"case {prepared.id}: no geometry to map seeds back with")
    homogeneous = np.c_[points, np.ones(len(points))]
    world = homogeneous @ prepared.affine.T
    file_index = world @ np.linalg.inv(geometry.original_affine).T
    index = np.rint(file_index[:, :3]).astype(np.int64)
    upper = np.asarray(geometry.original_shape, dtype=np.int64) - 1
    return np.clip(index, 0, upper)
