"""Sliding windows: blending, per-window scores, and the memo that spares unchanged windows."""

from __future__ import annotations

import pytest
import torch

from wsls.method.windows import WindowMemo, sliding_window, window_starts


class Counted:
    """A per-window function (each window's output depends on that window alone) that counts the
    windows it is run on."""

    def __init__(self, scores: bool = True):
        self.windows, self.scores = 0, scores

    def __call__(self, batch):
        self.windows += len(batch)
        maps = batch * 2 + batch.mean(dim=(1, 2, 3, 4), keepdim=True)
        return (maps, batch.flatten(1).amax(1)) if self.scores else maps


def test_window_starts_cover_the_axis_and_end_flush():
    assert window_starts(40, 16, 8) == [0, 8, 16, 24]
    assert window_starts(45, 16, 8) == [0, 8, 16, 24, 29]
    assert window_starts(10, 16, 8) == [0]


def test_scores_come_per_window_beside_the_blend():
    torch.manual_seed(0)
    image = torch.randn(2, 20, 17, 13)
    fn = Counted()
    maps, scores = sliding_window(fn, image, window=8, overlap=0.5, batch_size=5)
    plain = sliding_window(Counted(scores=False), image, window=8, overlap=0.5, batch_size=5)
    torch.testing.assert_close(maps, plain, rtol=0, atol=0)
    assert maps.shape == image.shape and len(scores) == fn.windows == 4 * 4 * 3
    assert float(scores.max()) == float(image.max())


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_a_memo_runs_only_the_windows_a_change_reaches(batch_size):
    torch.manual_seed(1)
    image = torch.randn(2, 24, 24, 24)
    memo = WindowMemo()
    first = sliding_window(Counted(), image, 8, 0.5, batch_size, memo=memo)
    assert len(memo.windows) == 5**3
    changed = image.clone()
    changed[:, 11, 3, 20] = 5.0  # in two windows per axis along x, one along y and z
    fn = Counted()
    maps, scores = sliding_window(fn, changed, 8, 0.5, batch_size, memo=memo)
    assert fn.windows == 2
    whole, whole_scores = sliding_window(Counted(), changed, 8, 0.5, batch_size)
    torch.testing.assert_close(maps, whole, rtol=0, atol=0)
    torch.testing.assert_close(scores, whole_scores, rtol=0, atol=0)
    assert len(memo.windows) == 5**3 and not torch.equal(maps, first[0])
    again = Counted()
    sliding_window(again, image, 8, 0.5, batch_size, memo=memo)  # the memo kept the first call's
    assert again.windows == 0


def test_a_memo_of_another_volume_lends_nothing():
    memo = WindowMemo()
    sliding_window(Counted(), torch.randn(1, 16, 16, 16), 8, 0.5, memo=memo)
    fn = Counted()
    sliding_window(fn, torch.randn(1, 16, 16, 16), 8, 0.5, memo=memo)
    other = Counted()
    sliding_window(other, torch.randn(1, 12, 16, 16), 8, 0.5, memo=memo)
    assert fn.windows == 27 and other.windows == 2 * 3 * 3
