"""The slice picture is a valid PNG with the lesion outlined."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from wsls.viz import LESION_COLOUR, save_case_slices, write_png


def _read_png(path) -> np.ndarray:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        assert (
            zlib.crc32(kind + body) & 0xFFFFFFFF
            == struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0]
        )
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * 3)
    assert np.all(raw[:, 0] == 0)
    return raw[:, 1:].reshape(height, width, 3)


def test_write_png_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (7, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_read_png(write_png(tmp_path / "x.png", rgb)), rgb)


def test_case_slices_outline_lesion(tmp_path, data_small_phantoms):
    p = data_small_phantoms[0]
    path = save_case_slices(tmp_path / "case.png", p.image, p.modalities, p.mask, spacing=p.spacing)
    rgb = _read_png(path)
    assert rgb.shape[1] > 4 * 64  # four panels side by side
    red = np.all(rgb == LESION_COLOUR, axis=-1)
    assert red.sum() > 20
    grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    assert len(np.unique(rgb[grey][:, 0])) > 100  # a real grey-level image, not a blank


def test_case_slices_without_mask(tmp_path):
    image = np.random.default_rng(1).random((2, 10, 12, 8)).astype(np.float32)
    path = save_case_slices(tmp_path / "x.png", image, ["a", "b"], slice_index=3)
    assert _read_png(path).shape[0] > 12
