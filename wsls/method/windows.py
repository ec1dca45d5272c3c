"""Sliding windows over a volume, blended with weights that fall off towards window borders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

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


@dataclass
class WindowMemo:
    """The windows of one :func:`sliding_window` call, by corner: each window's input and what
    ``fn`` gave on it. A volume that differs from that call's in a few places (the scan with a
    mask erased) then runs only the windows those places fall in. ``masks`` keeps masks derived
    from the volume's brain (``wsls.method.maps.inner_brain``), by name, with that brain."""

    windows: dict[tuple[int, ...], tuple[Tensor, Tensor, Tensor | None]] = field(
        default_factory=dict
    )
    masks: dict[object, tuple[Tensor, Tensor]] = field(default_factory=dict)

    def mask(self, key: object, brain: Tensor, make: Callable[[], Tensor]) -> Tensor:
        """The mask ``make()`` gives, computed once per brain it was derived from."""
        held = self.masks.get(key)
        if held is None or not torch.equal(held[0], brain):
            held = self.masks[key] = (brain, make())
        return held[1]

    def lookup(self, corner: tuple[int, ...], window: Tensor):
        """(output, score) of the window at ``corner`` if its input was ``window``, else None."""
        held = self.windows.get(corner)
        if held is None or not torch.equal(held[0], window):
            return None
        return held[1:]


@torch.no_grad()
def sliding_window(
    fn: Callable[[Tensor], Tensor | tuple[Tensor, Tensor]],
    image: Tensor,
    window: int,
    overlap: float = 0.5,
    batch_size: int = 8,
    fill: float = 0.0,
    memo: WindowMemo | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Apply fn to windows of image (C, H, W, D) and blend the results.

    fn maps a batch of windows (B, C, w, w, w) to maps (B, M, w, w, w) on the same grid, or to
    (maps, scores (B,)); the result is (M, H, W, D), or (maps, scores of every window). A
    volume smaller than the window is padded with ``fill``.

    memo: an empty memo keeps this call's windows; one that holds a call's windows gives their
    outputs to the windows whose input is the same, which do not run again.
    """
    shape = tuple(image.shape[1:])
    padded = tuple(max(s, window) for s in shape)
    if padded != shape:
        pad = [0, padded[2] - shape[2], 0, padded[1] - shape[1], 0, padded[0] - shape[0]]
        image = torch.nn.functional.pad(image, pad, value=fill)
    step = max(1, int(round(window * (1.0 - overlap))))
    corners = list(window_corners(padded, window, step))
    crop = lambda a, b, c: image[:, a : a + window, b : b + window, c : c + window]  # noqa: E731
    lend = memo is not None and bool(memo.windows)
    done = {k: memo.lookup(k, crop(*k)) for k in corners} if lend else {}
    todo = [k for k in corners if done.get(k) is None]
    for i in range(0, len(todo), batch_size):
        chunk = todo[i : i + batch_size]
        batch = torch.stack([crop(*k) for k in chunk])
        out = fn(batch)
        maps, scores = out if isinstance(out, tuple) else (out, None)
        for j, k in enumerate(chunk):
            done[k] = maps[j], None if scores is None else scores[j]
            if memo is not None and not lend:
                memo.windows[k] = batch[j], *done[k]
    weight = blend_weights(window, image.device)
    first = done[corners[0]][0]
    out = torch.zeros((first.shape[0], *padded), device=image.device, dtype=first.dtype)
    total = torch.zeros(padded, device=image.device)
    for a, b, c in corners:
        out[:, a : a + window, b : b + window, c : c + window] += done[a, b, c][0] * weight
        total[a : a + window, b : b + window, c : c + window] += weight
    out = (out / total)[:, : shape[0], : shape[1], : shape[2]]
    if done[corners[0]][1] is None:
        return out
    return out, torch.stack([done[k][1] for k in corners])
