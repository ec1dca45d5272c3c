"""Semi-synthetic cases: real lesion shapes (masks in MNI space) pasted into the phantom, or
into real scans of the same template space (more MS training cases with known truth).

The mask is resampled by affine: phantom voxel -> phantom world (mm) -> MNI world (an
axis-wise linear map taking the phantom's brain bounding box onto the MNI152 brain's) -> mask
voxel. The lesion gets MS or stroke contrast, multiplied into the acquired image so the
phantom's bias field and noise stay.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

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


def paste_into_scan(
    image: np.ndarray,
    brain: np.ndarray,
    host_lesion: np.ndarray,
    lesion: np.ndarray,
    blur: float = 0.7,
) -> tuple[np.ndarray, np.ndarray]:
    """A real scan with more real lesions: ``lesion`` (a mask on the scan's grid, e.g. another
    patient's in the same template space) given the contrast of the scan's own lesions.

    Each channel is shifted inside the new lesion by (mean of the host's lesions - mean of the
    voxels the new lesion covers), with a ``blur``-voxel soft edge, so the host's texture,
    noise and bias stay.

    Args:
        image: (C, H, W, D); brain, host_lesion, lesion: (H, W, D) bool.
    Returns:
        (image with the lesion, the lesion mask of the result: host | new).
    """
    from scipy import ndimage as ndi

    new = lesion & brain & ~host_lesion
    if not new.any() or not host_lesion.any():
        return image.copy(), host_lesion | new
    soft = ndi.gaussian_filter(new.astype(np.float32), blur) * brain
    out = image.astype(np.float32, copy=True)
    for c in range(out.shape[0]):
        shift = float(out[c][host_lesion].mean() - out[c][new].mean())
        out[c] += soft * shift
    return out, host_lesion | new


def write_pasted_dataset(
    host: Any, masks: list[Path], out: str | Path, names: dict[str, str] | None = None
) -> list[Path]:
    """MS-layout case folders: the ``host`` case (a CaseRef with a lesion mask) with each
    mask of ``masks`` pasted in (:func:`paste_into_scan`), one folder per mask, and the host
    itself. Returns the folders written.

    Args:
        names: modality -> file name (default: the MS layout's FLAIR, T1, T1POST, T2).
    """
    from wsls.data.preprocess import brain_mask
    from wsls.io.nifti import load_mask, save_like

    names = names or {"flair": "FLAIR", "t1": "T1", "t1c": "T1POST", "t2": "T2"}
    case = host.load()
    brain = case.brain if case.brain is not None else brain_mask(case.image)
    out = Path(out)
    written = []
    for mask_path in [None, *masks]:
        if mask_path is None:
            image, truth, name = case.image, case.mask, host.id
        else:
            lesion = load_mask(mask_path, case.volume)
            image, truth = paste_into_scan(case.image, brain, case.mask, lesion)
            name = f"{host.id}+{Path(mask_path).name.split('_')[0]}"
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for c, modality in enumerate(case.modalities):
            save_like(image[c], case.volume, folder / f"{names[modality]}.nii.gz")
        save_like(truth, case.volume, folder / "GOLD_STANDARD.nii.gz")
        written.append(folder)
    return written
