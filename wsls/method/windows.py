"""Sliding windows over a volume, blended with weights that fall off towards window borders."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor


def window_starts(size: int, window: int, step: int) -> list[int]:
    """Starts of windows of length ``window`` covering [0, size) with the given step; the last
    window ends flush with the volume (one window at 0 if the volume is smaller)."""
    if size <= window:
        return [0]
    starts = list(range(0, size - window + 1, step))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def window_corners(
    shape: tuple[int, int, int], window: int, step: int
) -> Iterator[tuple[int, ...]]:
    for a in window_starts(shape[0], window, step):
        for b in window_starts(shape[1], window, step):
            for c in window_starts(shape[2], window, step):
                yield (a, b, c)


def blend_weights(window: int, device=None) -> Tensor:
    """(window,)^3 weights: a triangle peaking at the centre, never zero at the border."""
    t = torch.arange(window, dtype=torch.float32, device=device)
    w1 = 1.0 - (t + 0.5 - window / 2).abs() / (window / 2) + 1.0 / window
    return w1[:, None, None] * w1[None, :, None] * w1[None, None, :]


@torch.no_grad()
def sliding_window(
    fn: Callable[[Tensor], Tensor],
    image: Tensor,
    window: int,
    overlap: float = 0.5,
    batch_size: int = 8,
    fill: float = 0.0,
) -> Tensor:
    """Apply fn to windows of image (C, H, W, D) and blend the results.

    fn maps a batch of windows (B, C, w, w, w) to maps (B, M, w, w, w) on the same grid; the
    result is (M, H, W, D). A volume smaller than the window is padded with ``fill``.
    """
    shape = tuple(image.shape[1:])
    padded = tuple(max(s, window) for s in shape)
    if padded != shape:
        pad = [0, padded[2] - shape[2], 0, padded[1] - shape[1], 0, padded[0] - shape[0]]
        image = torch.nn.functional.pad(image, pad, value=fill)
    step = max(1, int(round(window * (1.0 - overlap))))
    corners = list(window_corners(padded, window, step))
    weight = blend_weights(window, image.device)
    out = None
    total = torch.zeros(padded, device=image.device)
    for i in range(0, len(corners), batch_size):
        chunk = corners[i : i + batch_size]
        batch = torch.stack(
            [image[:, a : a + window, b : b + window, c : c + window] for a, b, c in chunk]
        )
        maps = fn(batch)
        if out is None:
            out = torch.zeros((maps.shape[1], *padded), device=image.device, dtype=maps.dtype)
        for (a, b, c), m in zip(chunk, maps, strict=True):
            out[:, a : a + window, b : b + window, c : c + window] += m * weight
            total[a : a + window, b : b + window, c : c + window] += weight
    out = out / total
    return out[:, : shape[0], : shape[1], : shape[2]]
