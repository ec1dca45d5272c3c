"""Building blocks shared by the networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvBlock(nn.Sequential):
    """Two 3x3x3 convolutions, each followed by batch norm and ReLU.

    Batch norm pools its training statistics over every voxel of the batch (8 patches of 32^3
    hold 262k voxels, one holds 33k: enough at batch size 1) and uses running statistics at
    inference, so a whole volume and a training patch are normalised alike. GroupNorm and
    instance norm make the features depend on the field of view (DESIGN section 8); a
    per-voxel norm over channels trains no better than chance here, as it removes the absolute
    intensity (a bright FLAIR is the lesion).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
        )


def pad_to_multiple(x: Tensor, multiple: int, value: float = 0.0) -> tuple[Tensor, tuple[int, ...]]:
    """Pad the spatial dims of x (B, C, H, W, D) at their far end up to a multiple; returns the
    padded tensor and the original spatial size (to crop outputs back)."""
    size = tuple(x.shape[2:])
    pad = [(-s) % multiple for s in size]
    if any(pad):
        x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]), value=value)
    return x, size


def crop_to(x: Tensor, size: tuple[int, ...]) -> Tensor:
    return x[..., : size[0], : size[1], : size[2]]


def gaussian_radius(sigma: float, truncate: float = 3.0) -> int:
    """How far (voxels) :func:`gaussian_smooth` reads from a voxel: 0 for ``sigma`` 0."""
    return max(1, int(truncate * sigma + 0.5)) if sigma > 0 else 0


def gaussian_kernel1d(sigma: float, truncate: float = 3.0) -> Tensor:
    radius = gaussian_radius(sigma, truncate)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_smooth(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian smoothing of each channel of x (B, C, H, W, D), sigma in voxels,
    replicate padding."""
    if sigma <= 0:
        return x
    k = gaussian_kernel1d(sigma).to(x)
    r = k.numel() // 2
    c = x.shape[1]
    for axis in range(3):
        shape = [1, 1, 1]
        shape[axis] = k.numel()
        weight = k.view(1, 1, *shape).expand(c, 1, *shape)
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = r
        x = F.conv3d(F.pad(x, pad, mode="replicate"), weight, groups=c)
    return x
