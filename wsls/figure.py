"""A picture like the paper's figure 2: one axial slice of one case, side by side: the image with
the ground truth, CAM(GAP) and ACAM as heat maps, the ACAM+WSR and S-UNet segmentations as
outlines. Pure numpy (PNG through :mod:`wsls.viz`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wsls.viz import (
    LESION_COLOUR,
    PREDICTION_COLOUR,
    display_slice,
    draw_text,
    outline,
    resize,
    write_png,
)


@dataclass
class FigureSlice:
    """One axial slice of a case and what each method made of it (canonical RAS (x, y) arrays).

    Attributes:
        case_id: shown in the title.
        index: the axial slice index.
        image: (X, Y) the displayed modality (FLAIR).
        truth: (X, Y) bool ground truth.
        spacing: (x, y) voxel size in mm.
        heat: panel name -> (X, Y) map in [0, 1].
        masks: panel name -> (X, Y) bool segmentation.
        brain: (X, Y) bool brain mask (the picture is cut to it), or None.
    """

    case_id: str
    index: int
    image: np.ndarray
    truth: np.ndarray
    spacing: tuple[float, float]
    heat: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    brain: np.ndarray | None = None

    def cropped(self, margin: int = 4) -> FigureSlice:
        """The slice cut to the brain's bounding box (plus ``margin`` voxels)."""
        if self.brain is None or not self.brain.any():
            return self
        box = []
        for axis in (0, 1):
            hit = np.flatnonzero(self.brain.any(axis=1 - axis))
            box.append(slice(max(0, hit[0] - margin), hit[-1] + margin + 1))
        cut = tuple(box)
        return FigureSlice(
            self.case_id,
            self.index,
            self.image[cut],
            self.truth[cut],
            self.spacing,
            {k: v[cut] for k, v in self.heat.items()},
            {k: v[cut] for k, v in self.masks.items()},
            self.brain[cut],
        )


def heat_colours(values: np.ndarray) -> np.ndarray:
    """(...) values in [0, 1] -> (..., 3) float RGB in [0, 1] ('hot': black, red, yellow, white)."""
    t = np.clip(values, 0.0, 1.0)[..., None]
    return np.clip(np.concatenate([3 * t, 3 * t - 1, 3 * t - 2], axis=-1), 0.0, 1.0)


def _grey(image: np.ndarray) -> np.ndarray:
    inside = image[image != image.flat[0]] if (image != image.flat[0]).any() else image.ravel()
    lo, hi = np.percentile(inside, (0.5, 99.5)) if inside.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1.0
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


def render_figure(fig: FigureSlice, path: str | Path, pixels_per_mm: float = 2.0) -> Path:
    """Write the figure as a PNG: image + truth (red), heat panels, mask panels (cyan outline
    over the red truth outline), cut to the brain. Returns the path."""
    fig = fig.cropped()
    rows = max(1, int(round(fig.image.shape[1] * fig.spacing[1] * pixels_per_mm)))
    cols = max(1, int(round(fig.image.shape[0] * fig.spacing[0] * pixels_per_mm)))
    grey = resize(_grey(display_slice(fig.image)), rows, cols)
    truth = outline(resize(display_slice(fig.truth), rows, cols))
    panels: list[tuple[str, np.ndarray]] = []
    base = np.repeat(grey[..., None], 3, axis=2)
    first = base.copy()
    first[truth] = np.asarray(LESION_COLOUR) / 255.0
    panels.append(("GROUND TRUTH", first))
    for name, values in fig.heat.items():
        heat = resize(display_slice(values), rows, cols)
        alpha = np.clip(heat * 1.5, 0.0, 0.75)[..., None]
        panels.append((name, (1 - alpha) * base + alpha * heat_colours(heat)))
    for name, mask in fig.masks.items():
        panel = base.copy()
        panel[truth] = np.asarray(LESION_COLOUR) / 255.0
        panel[outline(resize(display_slice(mask), rows, cols))] = (
            np.asarray(PREDICTION_COLOUR) / 255.0
        )
        panels.append((name, panel))
    gap, label_h, title_h = 4, 12, 14
    width = len(panels) * (cols + gap) + gap
    canvas = np.zeros((title_h + label_h + rows + gap, max(width, 200), 3), np.uint8)
    title = f"{fig.case_id} AXIAL {fig.index}  RED: TRUTH  CYAN: SEGMENTATION"
    draw_text(canvas, title, 3, gap, (210, 210, 210))
    for i, (name, rgb) in enumerate(panels):
        left = gap + i * (cols + gap)
        draw_text(canvas, name.upper(), title_h + 2, left, (255, 255, 255))
        top = title_h + label_h
        canvas[top : top + rows, left : left + cols] = (rgb * 255).astype(np.uint8)
    return write_png(path, canvas)
