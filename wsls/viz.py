"""Pictures of cases with matplotlib: axial slices with the lesion outlined, heat maps with a
colour bar, written atomically as PNG.

Slices are shown in radiological convention: anterior at the top, the patient's right on the
left of the picture (input arrays are canonical RAS: axis 0 right, 1 anterior, 2 superior).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsls.io.atomic import atomic_path

LESION_COLOUR = "#ff2828"  # ground truth outlines
PREDICTION_COLOUR = "#28dcff"  # segmentation outlines


def display_slice(slice_xy: np.ndarray) -> np.ndarray:
    """(x, y) axial slice -> (rows, cols) picture: anterior up, patient's right on the left."""
    return slice_xy.T[::-1, ::-1]


def default_slice(mask: np.ndarray | None, image: np.ndarray) -> int:
    """The axial slice with the most lesion voxels, else the middle of the nonzero image."""
    if mask is not None and mask.any():
        return int(np.argmax(mask.sum(axis=(0, 1))))
    nonzero = np.flatnonzero(np.abs(image[0]).sum(axis=(0, 1)) > 0)
    return int(nonzero[len(nonzero) // 2]) if nonzero.size else image.shape[-1] // 2


def grey_window(image: np.ndarray) -> tuple[float, float]:
    """Display range of an image: its 0.5-99.5 percentiles off the background value."""
    inside = image[image != image.flat[0]]
    values = inside if inside.size else image.ravel()
    lo, hi = np.percentile(values, (0.5, 99.5)) if values.size else (0.0, 1.0)
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


def new_figure(panels: int, aspect: float, title: str | None = None, panel_inches: float = 3.0):
    """A figure of ``panels`` side by side (each ``aspect`` = height / width), and its axes."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(panel_inches * panels, panel_inches * aspect + 0.6), dpi=100)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return fig, axes


def show_grey(ax: Any, slice_xy: np.ndarray, spacing: Sequence[float], window=None) -> None:
    """An (x, y) slice in grey, radiological orientation, physical aspect ratio."""
    lo, hi = window or grey_window(slice_xy)
    ax.imshow(
        display_slice(slice_xy), cmap="gray", vmin=lo, vmax=hi, interpolation="nearest",
        aspect=spacing[1] / spacing[0],
    )  # fmt: skip


def outline(ax: Any, mask_xy: np.ndarray | None, colour: str, label: str | None = None) -> None:
    """The boundary of an (x, y) bool mask as a contour line."""
    if mask_xy is None or not np.any(mask_xy):
        return
    ax.contour(display_slice(np.asarray(mask_xy, float)), levels=[0.5], colors=[colour],
               linewidths=1.0)  # fmt: skip
    if label:
        ax.plot([], [], color=colour, label=label)


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write a matplotlib figure as PNG atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight", facecolor="white")
    return path


def save_case_slices(
    path: str | Path,
    image: np.ndarray,
    modalities: Sequence[str],
    mask: np.ndarray | None = None,
    slice_index: int | None = None,
    prediction: np.ndarray | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    title: str | None = None,
) -> Path:
    """Save one axial slice per modality side by side, with the lesion (red) and a prediction
    (cyan) outlined, as a PNG.

    Args:
        path: output .png file.
        image: (C, H, W, D) canonical RAS; each modality is windowed to its 0.5-99.5
            percentiles off the background.
        modalities: C names, the panels' titles.
        mask: (H, W, D) bool lesion mask, or None.
        slice_index: axial index along D (default: the slice with most lesion, else the middle).
        prediction: (H, W, D) bool, or None.
        spacing: voxel size (mm), for the physical aspect ratio.
        title: the figure's title (default: the slice index).
    Returns:
        The written path.
    """
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[None]
    k = default_slice(mask, image) if slice_index is None else int(slice_index)
    aspect = image.shape[2] * spacing[1] / (image.shape[1] * spacing[0])
    fig, axes = new_figure(len(image), aspect, title if title is not None else f"axial slice {k}")
    for c, ax in enumerate(axes):
        show_grey(ax, image[c][..., k], spacing)
        ax.set_title(modalities[c].upper() if c < len(modalities) else f"channel {c}", fontsize=9)
        outline(
            ax, None if mask is None else mask[..., k], LESION_COLOUR, "lesion" if c == 0 else None
        )
        outline(ax, None if prediction is None else prediction[..., k], PREDICTION_COLOUR,
                "prediction" if c == 0 else None)  # fmt: skip
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(loc="lower left", fontsize=7, framealpha=0.6)
    return save_figure(fig, path)
