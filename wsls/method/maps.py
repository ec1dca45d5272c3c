"""Localisation maps of a classifier over a whole volume: windows of the training patch size on
the classifier's coarse view, blended, upsampled to the prepared grid."""

from __future__ import annotations

import contextlib
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from wsls.method.coarse import coarse_image, upsample
from wsls.method.config import WSLSConfig
from wsls.method.windows import WindowMemo, sliding_window
from wsls.models import Classifier3D, classifier_members, upsample_map


@torch.no_grad()
def classifier_maps(
    model: Classifier3D,
    image: Tensor,
    window: int = 32,
    overlap: float = 0.5,
    batch_size: int = 8,
    memo: WindowMemo | None = None,
) -> tuple[Tensor, Tensor, float]:
    """The classifier's raw CAM and its head's localisation map over a volume.

    The classifier sees windows of its training patch size (its receptive field is larger than
    a patch, so whole-volume features differ from the ones it was trained on); the windows'
    maps are blended before the per-volume normalisation.

    Args:
        image: (C, H, W, D) prepared (normalised) volume.
        memo: the windows of an earlier call on a volume of this shape, or an empty memo that
            keeps this call's (``wsls.method.windows.sliding_window``).
    Returns:
        cam (H, W, D) raw class map; map (H, W, D) in [0, 1]: ACAM for an 'acam' head,
        relu(CAM) / max for 'gap' and 'gmp'; the highest lesion probability of any window.
    """
    model.eval()
    stride = model.spec.stride
    # oneDNN's 3D convolutions run about 1.4-2 times faster on channels-last input (measured on
    # the 2-core CPU); on CUDA the layout stays as it was (not measured there)
    layout = torch.channels_last_3d if image.device.type == "cpu" else torch.contiguous_format

    def run(batch: Tensor) -> tuple[Tensor, Tensor]:
        out = model(batch.contiguous(memory_format=layout))
        size = tuple(batch.shape[2:])
        cam = upsample_map(out.cam.float(), stride, size)
        loc = upsample_map(out.maps.float(), stride, size)
        return torch.stack([cam, loc], dim=1), torch.sigmoid(out.logits.float())

    maps, probabilities = sliding_window(run, image, window, overlap, batch_size, memo=memo)
    loc = maps[1].clamp_min(0)
    peak = loc.max()
    return maps[0], loc / peak if peak > 0 else loc, float(probabilities.max())


def coarse_view_maps(
    classifier: Classifier3D,
    image: Tensor,
    brain: Tensor,
    config: WSLSConfig,
    memo: WindowMemo | None = None,
) -> tuple[Tensor, Tensor, float]:
    """A classifier run on the coarse view it was trained on, its maps upsampled to the
    prepared grid: raw CAM; localisation map (ACAM, or CAM for the GAP/GMP baselines) zero
    outside the brain with maximum 1; the best window's lesion probability.

    Args:
        image (C, H, W, D), brain (H, W, D): tensors on the classifier's device.
    """
    factor = config.classifier_scale
    if edge := config.window_edge:
        make = partial(inner_brain, brain, edge)
        inner = memo.mask(("inner", edge), brain, make) if memo is not None else make()
        image = torch.where(inner, image, config.preprocess.background)
    x = coarse_image(image, factor).contiguous()
    with inference_autocast(x.device, config.bf16):
        window, overlap = config.patch.shape[0], config.window_overlap
        cam, loc, probability = classifier_maps(classifier, x, window, overlap, memo=memo)
    cam = upsample(cam.float(), factor, tuple(brain.shape))
    loc = upsample(loc.float(), factor, tuple(brain.shape)).clamp_min(0) * brain
    peak = loc.max()
    return cam, (loc / peak if peak > 0 else loc).float(), probability


def inner_brain(brain: Tensor, edge: int) -> Tensor:
    """(H, W, D) brain -> bool, the brain without its outer shell ``edge`` voxels thick (a voxel
    is kept when every voxel of the cube around it, ``edge`` voxels each way, is brain; the
    grid's border counts as outside)."""
    near_outside = F.pad((brain <= 0).float()[None, None], (edge,) * 6, value=1.0)
    size = 2 * edge + 1
    for kernel in ((size, 1, 1), (1, size, 1), (1, 1, size)):  # a cube's max, axis by axis
        near_outside = F.max_pool3d(near_outside, kernel, stride=1)
    return near_outside[0, 0] == 0


def member_views(
    classifier: torch.nn.Module,
    image: Tensor,
    brain: Tensor,
    config: WSLSConfig,
    memos: list[WindowMemo] | None = None,
) -> list[tuple[Tensor, Tensor, float]]:
    """Per classifier member (the classifier itself, or an ensemble's members), its
    :func:`coarse_view_maps` of the volume: (CAM, ACAM, lesion probability). ``memos``: one
    window memo per member (:func:`classifier_maps`)."""
    members = classifier_members(classifier)
    memos = memos if memos is not None else [None] * len(members)
    return [
        coarse_view_maps(m, image, brain, config, memo)
        for m, memo in zip(members, memos, strict=True)
    ]


def inference_autocast(device: torch.device, bf16: bool):
    """bf16 autocast for the networks on CUDA when asked (the ops accumulate in float32);
    nothing on the CPU."""
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
