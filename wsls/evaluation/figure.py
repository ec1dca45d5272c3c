"""A picture like the paper's figure 2: one axial slice of one case, side by side: the image with
the ground truth, CAM(GAP) and ACAM as heat maps, the ACAM+WSR and S-UNet segmentations as
outlines (matplotlib, through :mod:`wsls.viz`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wsls.viz import (
    LESION_COLOUR,
    PREDICTION_COLOUR,
    display_slice,
    grey_window,
    new_figure,
    outline,
    save_figure,
    show_grey,
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


def render_figure(fig: FigureSlice, path: str | Path) -> Path:
    """Write the figure as a PNG: the image with the truth outlined (red), each heat map over
    the image with its colour bar, each segmentation outlined (cyan) over the truth; cut to the
    brain. Returns the path."""
    fig = fig.cropped()
    panels = 1 + len(fig.heat) + len(fig.masks)
    aspect = fig.image.shape[1] * fig.spacing[1] / (fig.image.shape[0] * fig.spacing[0])
    title = f"{fig.case_id}, axial slice {fig.index}: truth in red, segmentations in cyan"
    figure, axes = new_figure(panels, aspect, title)
    window = grey_window(fig.image)
    axes[0].set_title("ground truth", fontsize=9)
    show_grey(axes[0], fig.image, fig.spacing, window)
    outline(axes[0], fig.truth, LESION_COLOUR)
    for ax, (name, values) in zip(axes[1:], fig.heat.items(), strict=False):
        show_grey(ax, fig.image, fig.spacing, window)
        heat = ax.imshow(
            display_slice(np.ma.masked_less(values, 0.02)), cmap="inferno", vmin=0.0, vmax=1.0,
            alpha=0.75, interpolation="nearest", aspect=fig.spacing[1] / fig.spacing[0],
        )  # fmt: skip
        outline(ax, fig.truth, LESION_COLOUR)
        ax.set_title(name, fontsize=9)
        figure.colorbar(heat, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=7)
    for ax, (name, mask) in zip(axes[1 + len(fig.heat) :], fig.masks.items(), strict=True):
        show_grey(ax, fig.image, fig.spacing, window)
        outline(ax, fig.truth, LESION_COLOUR)
        outline(ax, mask, PREDICTION_COLOUR)
        ax.set_title(name, fontsize=9)
    return save_figure(figure, path)
