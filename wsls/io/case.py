"""A case on disk (:class:`CaseRef`) and in memory (:class:`Case`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from wsls.io.nifti import Volume, load_labels, load_mask, load_volume


@dataclass(frozen=True)
class LesionDefinition:
    """Which label values of a layout's label map count as lesion.

    Attributes:
        name: e.g. "whole tumour".
        labels: label values that are lesion; None means any value > ``threshold``.
        threshold: used when ``labels`` is None (0.5 suits 0/1 and 0/0.99999997 masks).
    """

    name: str = "lesion"
    labels: tuple[int, ...] | None = None
    threshold: float = 0.5

    def apply(self, label_map: np.ndarray) -> np.ndarray:
        """(H, W, D) label map -> (H, W, D) bool lesion mask."""
        if self.labels is None:
            return label_map > self.threshold
        return np.isin(np.rint(label_map).astype(np.int64), self.labels)


ANY_LESION = LesionDefinition("lesion")
BRATS_WHOLE_TUMOUR = LesionDefinition("whole tumour")  # label > 0
BRATS_TUMOUR_CORE = LesionDefinition("tumour core", labels=(1, 3, 4))
BRATS_ENHANCING = LesionDefinition("enhancing tumour", labels=(4,))


@dataclass
class Case:
    """One case in memory, canonical RAS voxel order.

    Attributes:
        id: case identifier.
        image: (C, H, W, D) float32 (the same array as ``volume.data``).
        mask: (H, W, D) bool lesion mask, or None.
        brain: (H, W, D) bool brain mask, or None (derive one with ``preprocess.brain_mask``).
        label: image-level label (1.0 lesion present, 0.0 absent), or None when unknown.
        volume: the image with its geometry, for ``save_like``.
        modalities: one name per channel.
    """

    id: str
    image: np.ndarray
    mask: np.ndarray | None
    brain: np.ndarray | None
    label: float | None
    volume: Volume
    modalities: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.image.shape[-3:])  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        return self.volume.spacing

    def subset(self, modalities: Sequence[str]) -> Case:
        """This case with only ``modalities`` as channels, in that order (DataError if one
        lacks); the case itself when it already has exactly those."""
        modalities = tuple(modalities)
        if tuple(self.modalities) == modalities:
            return self
        image = np.stack([self.channel(m) for m in modalities])
        return replace(self, image=image, modalities=modalities)

    def channel(self, modality: str) -> np.ndarray:
        """(H, W, D) image of one modality by name."""
        from wsls.errors import DataError
        from wsls.io.modalities import canonical_modality

        wanted = canonical_modality(modality) or modality.lower()
        if wanted not in self.modalities:
            raise DataError(
                self.id, f"has no {modality!r} image (has {', '.join(self.modalities)})"
            )
        return self.image[self.modalities.index(wanted)]


@dataclass(frozen=True)
class CaseRef:
    """A case found on disk; ``load()`` reads it.

    Attributes:
        id: case identifier.
        image_paths: one file per modality (or one 4D file), in channel order.
        modalities: one name per channel (empty: named after the files).
        mask_path: lesion label map, or None.
        brain_path: brain mask, or None.
        lesion: which label values are lesion.
        label: image-level label from a manifest; when None and a mask exists, ``load`` derives
            it as "the mask is not empty".
        on_grid_mismatch: "error" or "resample" (e.g. ISLES FLAIR onto the DWI grid).
    """

    id: str
    image_paths: tuple[Path, ...]
    modalities: tuple[str, ...]
    mask_path: Path | None = None
    brain_path: Path | None = None
    lesion: LesionDefinition = field(default_factory=LesionDefinition)
    label: float | None = None
    on_grid_mismatch: str = "error"

    def load(self) -> Case:
        """Read images, mask and brain mask from disk (raises DataError on bad input)."""
        volume = load_volume(
            self.image_paths,
            self.modalities or None,
            on_grid_mismatch=self.on_grid_mismatch,
        )
        mask = None
        if self.mask_path is not None:
            labels = load_labels(self.mask_path, volume, on_grid_mismatch=self.on_grid_mismatch)
            mask = self.lesion.apply(labels)
        brain = None
        if self.brain_path is not None:
            brain = load_mask(self.brain_path, volume, on_grid_mismatch=self.on_grid_mismatch)
        label = self.label
        if label is None and mask is not None:
            label = float(mask.any())
        return Case(self.id, volume.data, mask, brain, label, volume, volume.modalities)
