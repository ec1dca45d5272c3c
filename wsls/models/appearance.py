"""An appearance-only voxel embedding: what a voxel and its immediate surroundings look like,
never where it is (DESIGN section 8). Each modality is smoothed at a few fixed scales; a
per-voxel MLP (1x1x1 convolutions) maps those intensities to K embedding channels."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from wsls.models.layers import gaussian_smooth


@dataclass(frozen=True)
class AppearanceSpec:
    """in_channels: modalities; out_channels: K; sigmas: smoothing scales in voxels (0: the raw
    intensity); hidden: MLP width; layers: hidden layers."""

    in_channels: int
    out_channels: int = 16
    sigmas: tuple[float, ...] = (0.0, 1.0, 2.0)
    hidden: int = 64
    layers: int = 2

    def __post_init__(self) -> None:
        if min(self.in_channels, self.out_channels, self.hidden, self.layers) < 1:
            raise ValueError("AppearanceSpec: channels, hidden and layers must be >= 1")
        if not self.sigmas or min(self.sigmas) < 0:
            raise ValueError("AppearanceSpec: sigmas must be a non-empty list of values >= 0")


class AppearanceEmbedding(nn.Module):
    def __init__(self, spec: AppearanceSpec) -> None:
        super().__init__()
        self.spec = spec
        c = spec.in_channels * len(spec.sigmas)
        layers: list[nn.Module] = []
        for _ in range(spec.layers):
            layers += [
                nn.Conv3d(c, spec.hidden, 1),
                nn.BatchNorm3d(spec.hidden),
                nn.ReLU(inplace=True),
            ]
            c = spec.hidden
        layers.append(nn.Conv3d(c, spec.out_channels, 1))
        self.mlp = nn.Sequential(*layers)

    def spec_dict(self) -> dict:
        d = asdict(self.spec)
        d["sigmas"] = list(d["sigmas"])
        return {"kind": "appearance", **d}

    def scales(self, x: Tensor) -> Tensor:
        """x (B, C, H, W, D) -> the smoothed stack (B, C * len(sigmas), H, W, D)."""
        return torch.cat([gaussian_smooth(x, s) for s in self.spec.sigmas], dim=1)

    def forward(self, x: Tensor, points: bool = False) -> Tensor:
        """x (B, C, H, W, D) -> (B, K, H, W, D). With ``points=True`` x is already the smoothed
        stack of some voxels, (B, C * len(sigmas), N, 1, 1), as the trainer gathers it (going
        through forward keeps DistributedDataParallel's gradient hooks)."""
        return self.mlp(x if points else self.scales(x))
