"""A 3D U-Net: the context embedding network f_R (K output channels) and, with one output
channel, the S-UNet / WS-UNet segmentation baselines."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsls.models.layers import ConvBlock, crop_to, pad_to_multiple


@dataclass(frozen=True)
class UNetSpec:
    """in_channels: modalities; out_channels: K for an embedding, 1 for segmentation (logits);
    width: channels of the first level, doubled per level; levels: resolution levels (stride
    2**(levels - 1))."""

    in_channels: int
    out_channels: int = 16
    width: int = 16
    levels: int = 4

    def __post_init__(self) -> None:
        if min(self.in_channels, self.out_channels, self.width, self.levels) < 1:
            raise ValueError("UNetSpec: in_channels, out_channels, width and levels must be >= 1")

    @property
    def stride(self) -> int:
        return 2 ** (self.levels - 1)


class UNet3D(nn.Module):
    def __init__(self, spec: UNetSpec) -> None:
        super().__init__()
        self.spec = spec
        widths = [spec.width * 2**i for i in range(spec.levels)]
        self.down = nn.ModuleList()
        c = spec.in_channels
        for w in widths:
            self.down.append(ConvBlock(c, w))
            c = w
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose3d(c, w, 2, stride=2))
            self.merge.append(ConvBlock(2 * w, w))
            c = w
        self.out = nn.Conv3d(c, spec.out_channels, 1)

    def spec_dict(self) -> dict:
        return {"kind": "unet", **asdict(self.spec)}

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W, D) -> (B, out_channels, H, W, D); any size (padded internally)."""
        x, size = pad_to_multiple(x, self.spec.stride)
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool3d(x, 2)
            x = block(x)
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1]), strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return crop_to(self.out(x), size)
