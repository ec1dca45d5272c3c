"""Pictures of cases: one axial slice per modality with the lesion outline, as a PNG.

Pure numpy (a minimal PNG writer and a 5x7 bitmap font), so no plotting library is needed.
Slices are shown in radiological convention: anterior at the top, the patient's right on the
left of the picture (input arrays are canonical RAS: axis 0 right, 1 anterior, 2 superior).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_FONT_ROWS = {
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "####. #...# #...# #...# #...# #...# ####.",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# ##..# #.#.# #..## #...# #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    " ": "..... ..... ..... ..... ..... ..... .....",
    "-": "..... ..... ..... .###. ..... ..... .....",
    "_": "..... ..... ..... ..... ..... ..... #####",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....",
    "/": "....# ....# ...#. ..#.. .#... #.... #....",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.",
    ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    "=": "..... ..... ##### ..... ##### ..... .....",
    "%": "##..# ##..# ...#. ..#.. .#... #..## #..##",
    "+": "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
}
LESION_COLOUR = (255, 40, 40)
PREDICTION_COLOUR = (40, 220, 255)


def _glyph(ch: str) -> np.ndarray:
    rows = _FONT_ROWS.get(ch.upper(), _FONT_ROWS[" "]).split()
    return np.array([[c == "#" for c in row] for row in rows], dtype=bool)


def draw_text(canvas: np.ndarray, text: str, row: int, col: int, colour, scale: int = 1) -> None:
    """Draw ``text`` on an (H, W, 3) uint8 canvas in place, top-left corner at (row, col)."""
    for k, ch in enumerate(text):
        glyph = np.kron(_glyph(ch), np.ones((scale, scale), dtype=bool))
        r0, c0 = row, col + k * 6 * scale
        h = max(0, min(glyph.shape[0], canvas.shape[0] - r0))
        w = max(0, min(glyph.shape[1], canvas.shape[1] - c0))
        if h and w:
            canvas[r0 : r0 + h, c0 : c0 + w][glyph[:h, :w]] = colour


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 (or (H, W) uint8 grey) array as an 8-bit PNG file."""
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    height, width = rgb.shape[:2]
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, -1)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def display_slice(slice_xy: np.ndarray) -> np.ndarray:
    """(x, y) axial slice -> (rows, cols) picture: anterior up, patient's right on the left."""
    return slice_xy.T[::-1, ::-1]


def _window(volume: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    values = volume[reference] if reference.any() else volume.ravel()
    lo, hi = np.percentile(values, (0.5, 99.5))
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


def outline(mask: np.ndarray) -> np.ndarray:
    """(rows, cols) bool mask -> its boundary pixels (mask pixels with a 4-neighbour outside)."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def resize(array: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Nearest-neighbour resize of a 2D picture to (rows, cols)."""
    r = np.minimum((np.arange(rows) * array.shape[0] / rows).astype(int), array.shape[0] - 1)
    c = np.minimum((np.arange(cols) * array.shape[1] / cols).astype(int), array.shape[1] - 1)
    return array[r][:, c]


def default_slice(mask: np.ndarray | None, image: np.ndarray) -> int:
    """The axial slice with the most lesion voxels, else the middle of the nonzero image."""
    if mask is not None and mask.any():
        return int(np.argmax(mask.sum(axis=(0, 1))))
    nonzero = np.flatnonzero(np.abs(image[0]).sum(axis=(0, 1)) > 0)
    return int(nonzero[len(nonzero) // 2]) if nonzero.size else image.shape[-1] // 2


def save_case_slices(
    path: str | Path,
    image: np.ndarray,
    modalities: Sequence[str],
    mask: np.ndarray | None = None,
    slice_index: int | None = None,
    prediction: np.ndarray | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    pixels_per_mm: float = 1.5,
    title: str | None = None,
) -> Path:
    """Save one axial slice per modality side by side, with lesion (red) and prediction (cyan)
    outlines, as a PNG.

    Args:
        path: output .png file.
        image: (C, H, W, D) canonical RAS; each modality is windowed to its 0.5-99.5
            percentiles inside the nonzero (brain) region.
        modalities: C names, written above the panels.
        mask: (H, W, D) bool lesion mask, or None.
        slice_index: axial index along D (default: the slice with most lesion, else the middle).
        prediction: (H, W, D) bool, outlined in cyan, or None.
        spacing: voxel size (mm) to keep the physical aspect ratio.
        pixels_per_mm: picture scale.
        title: text written at the top left (default: the slice index).
    Returns:
        The written path.
    """
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[None]
    k = default_slice(mask, image) if slice_index is None else int(slice_index)
    rows = max(1, int(round(image.shape[2] * spacing[1] * pixels_per_mm)))
    cols = max(1, int(round(image.shape[1] * spacing[0] * pixels_per_mm)))
    label_h, gap = 14, 4
    canvas = np.zeros((rows + label_h + 12, len(image) * (cols + gap) + gap, 3), np.uint8)
    draw_text(canvas, title if title is not None else f"AXIAL SLICE {k}", 2, gap, (200, 200, 200))
    outlines = []
    for array, colour in ((mask, LESION_COLOUR), (prediction, PREDICTION_COLOUR)):
        if array is not None:
            outlines.append(
                (
                    outline(resize(display_slice(np.asarray(array, bool)[..., k]), rows, cols)),
                    colour,
                )
            )
    for c in range(len(image)):
        brain = image[c] != image[c].flat[0]
        lo, hi = _window(image[c], brain)
        grey = np.clip((display_slice(image[c][..., k]) - lo) / (hi - lo), 0.0, 1.0)
        panel = np.repeat((resize(grey, rows, cols) * 255).astype(np.uint8)[..., None], 3, axis=2)
        for edge, colour in outlines:
            panel[edge] = colour
        left = gap + c * (cols + gap)
        canvas[label_h + 10 : label_h + 10 + rows, left : left + cols] = panel
        name = modalities[c] if c < len(modalities) else f"ch{c}"
        draw_text(canvas, name.upper(), label_h - 2, left, (255, 255, 255))
    return write_png(path, canvas)
