"""Pictures: valid PNGs (written atomically) with the lesion outlined and a real grey image."""

from __future__ import annotations

import numpy as np

from wsls.evaluation.figure import FigureSlice, render_figure
from wsls.viz import LESION_COLOUR, PREDICTION_COLOUR, save_case_slices


def _read_png(path) -> np.ndarray:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return (imread(path)[..., :3] * 255).round().astype(np.int64)


def _has_colour(rgb: np.ndarray, colour: str, tolerance: int = 40) -> int:
    target = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb - target).max(axis=-1) < tolerance).sum())


def test_case_slices_outline_lesion(tmp_path, data_small_phantoms):
    p = data_small_phantoms[0]
    path = save_case_slices(tmp_path / "case.png", p.image, p.modalities, p.mask, spacing=p.spacing)
    rgb = _read_png(path)
    assert _has_colour(rgb, LESION_COLOUR) > 20
    grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    assert len(np.unique(rgb[grey][:, 0])) > 100  # a real grey-level image, not a blank
    two = save_case_slices(tmp_path / "two.png", p.image[:2], p.modalities[:2], p.mask)
    assert rgb.shape[1] > 1.5 * _read_png(two).shape[1]  # one panel per modality
    assert sorted(f.name for f in tmp_path.iterdir()) == ["case.png", "two.png"]  # no temp file


def test_case_slices_without_mask(tmp_path):
    image = np.random.default_rng(1).random((2, 10, 12, 8)).astype(np.float32)
    path = save_case_slices(tmp_path / "x.png", image, ["a", "b"], slice_index=3)
    assert _read_png(path).shape[0] > 12


def test_figure_has_heat_maps_and_outlines(tmp_path):
    yy, xx = np.mgrid[:40, :48]
    truth = (yy - 20) ** 2 + (xx - 24) ** 2 < 64
    image = np.where(truth, 3.0, 1.0) + np.random.default_rng(0).random((40, 48))
    heat = np.exp(-((yy - 20) ** 2 + (xx - 22) ** 2) / 50.0)
    fig = FigureSlice(
        "case", 7, image, truth, (1.0, 1.0), heat={"ACAM": heat}, masks={"ACAM+WSR": truth},
        brain=np.ones_like(truth),
    )  # fmt: skip
    rgb = _read_png(render_figure(fig, tmp_path / "figure2.png"))
    assert _has_colour(rgb, LESION_COLOUR) > 20 and _has_colour(rgb, PREDICTION_COLOUR) > 20
    assert rgb.shape[1] > 2 * rgb.shape[0]  # three panels side by side
