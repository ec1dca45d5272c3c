"""Semi-synthetic cases: real lesion shapes (masks in MNI space) pasted into the phantom.

The mask is resampled by affine: phantom voxel -> phantom world (mm) -> MNI world (an
axis-wise linear map taking the phantom's brain bounding box onto the MNI152 brain's) -> mask
voxel. The lesion gets MS or stroke contrast, multiplied into the acquired image so the
phantom's bias field and noise stay.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from wsls.io.nifti import load_volume
from wsls.io.resample import resample_to_grid
from wsls.phantom.generate import (
    _CSF,
    _TISSUE_CONTRAST,
    LABEL_MS,
    LABEL_STROKE,
    Phantom,
    PhantomConfig,
    make_phantom,
)

# MNI152 brain extent in mm (cerebrum; x, y, z): what the phantom's brain box maps onto
MNI_BRAIN_BOX = (np.array([-70.0, -104.0, -45.0]), np.array([70.0, 70.0, 80.0]))
_LESION_CONTRAST = {
    "ms": (0.88, 0.70, 0.72, 0.85),
    "stroke": (0.84, 0.52, 0.55, 0.86),
}


def _world_box(mask: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.argwhere(mask)
    corners = np.c_[np.stack([idx.min(0), idx.max(0)]), np.ones(2)] @ affine.T
    return corners[:, :3].min(0), corners[:, :3].max(0)


def paste_lesion(phantom: Phantom, mask_path: str | Path, kind: str = "auto") -> Phantom:
    """A copy of a lesion-free ``phantom`` with the lesion of an MNI-space mask file.

    Args:
        phantom: the host (its own lesions, if any, are kept).
        mask_path: a NIfTI lesion mask in MNI space (any orientation).
        kind: "ms", "stroke", or "auto" ("ms" when the path mentions ms, else "stroke").
    """
    mask_path = Path(mask_path)
    if kind == "auto":
        kind = "ms" if "ms" in str(mask_path).lower() else "stroke"
    source = load_volume(mask_path)
    lo, hi = _world_box(phantom.brain, phantom.affine)
    mni_lo, mni_hi = MNI_BRAIN_BOX
    scale = (mni_hi - mni_lo) / (hi - lo)
    to_mni = np.eye(4)
    to_mni[:3, :3] = np.diag(scale)
    to_mni[:3, 3] = mni_lo - scale * lo
    lesion = (
        resample_to_grid(
            source.data[0], source.affine, phantom.brain.shape, to_mni @ phantom.affine, order=1
        )
        >= 0.5
    )
    tissues = phantom.tissues
    lesion &= phantom.brain & (tissues != _CSF if tissues is not None else True)
    image = phantom.image.copy()
    values = np.asarray(_LESION_CONTRAST[kind], np.float32)
    base = _TISSUE_CONTRAST[tissues[lesion]] if tissues is not None else _TISSUE_CONTRAST[3][None]
    ratio = values[None, :] / np.maximum(base, 0.05)  # (N, 4)
    for m in range(image.shape[0]):
        image[m][lesion] *= ratio[:, m]
    labels = phantom.labels.copy()
    labels[lesion] = LABEL_MS if kind == "ms" else LABEL_STROKE
    kinds = tuple(dict.fromkeys((*phantom.kinds, f"{kind}:{mask_path.name}")))
    return replace(phantom, image=image, labels=labels, kinds=kinds)


def make_semisynthetic(
    mask_path: str | Path,
    shape: tuple[int, int, int] = (120, 120, 78),
    seed: int = 0,
    kind: str = "auto",
    config: PhantomConfig | None = None,
) -> Phantom:
    """A lesion-free phantom of ``seed`` with the real lesion of ``mask_path`` pasted in."""
    return paste_lesion(make_phantom(shape, seed, (), config), mask_path, kind)


def lesion_mask_files(root: str | Path) -> list[Path]:
    """Lesion mask NIfTI files under ``root`` (e.g. shared/data/lesion_masks), sorted,
    skipping image templates (such as niivue-neglect's betsct1_unsmooth)."""
    files = sorted(Path(root).rglob("*.nii*"))
    skip = ("betsct1", "template", "mni152_t1")
    return [f for f in files if not any(k in f.name.lower() for k in skip)]
