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


def test_the_inner_brain_loses_a_shell_of_the_asked_thickness():
    from scipy import ndimage

    from wsls.method.maps import inner_brain

    brain = torch.zeros(12, 11, 10, dtype=torch.bool)
    brain[1:11, 2:10, 1:9] = True
    brain[5, 5, 4] = False  # a hole: the brain around it is a shell too
    cube = ndimage.generate_binary_structure(3, 3)
    for edge in (1, 2):
        expected = ndimage.binary_erosion(brain.numpy(), cube, iterations=edge, border_value=0)
        assert torch.equal(inner_brain(brain.float(), edge), torch.from_numpy(expected))
    full = torch.ones(5, 5, 5)
    assert int(inner_brain(full, 1).sum()) == 27  # the grid's border counts as outside


def test_with_a_window_edge_the_classifier_does_not_see_the_brains_shell():
    from dataclasses import replace

    from helpers import tiny_config

    from wsls.method.maps import coarse_view_maps
    from wsls.models import Classifier3D, ClassifierSpec

    torch.manual_seed(0)
    config = tiny_config()
    classifier = Classifier3D(ClassifierSpec(4, width=4, stages=2)).eval()
    image = torch.randn(4, 24, 24, 20)
    brain = torch.zeros(24, 24, 20)
    brain[2:22, 2:22, 2:18] = 1
    image = image * brain
    bright = image.clone()
    bright[:, 2, 2:22, 2:18] = 50.0  # the brain's outermost slab

    def views(cfg, x):
        cam, acam, probability = coarse_view_maps(classifier, x, brain, cfg)
        return cam, probability

    edged, whole = replace(config, window_edge=2), replace(config, window_edge=0)
    for a, b in zip(views(edged, image), views(edged, bright), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(views(whole, image)[0], views(whole, bright)[0])


def test_a_memo_keeps_the_inner_brain_of_its_brain_only():
    from wsls.method.maps import inner_brain

    brain = torch.zeros(12, 12, 10)
    brain[1:11, 1:11, 1:9] = 1
    calls = []

    def make(b):
        calls.append(1)
        return inner_brain(b, 2)

    memo = WindowMemo()
    first = memo.mask("inner", brain, lambda: make(brain))
    assert torch.equal(memo.mask("inner", brain.clone(), lambda: make(brain)), first)
    assert len(calls) == 1
    other = brain.clone()
    other[6, 6, 5] = 0  # a hole: the inner brain loses the cube around it
    assert not torch.equal(memo.mask("inner", other, lambda: make(other)), first)
    assert len(calls) == 2
