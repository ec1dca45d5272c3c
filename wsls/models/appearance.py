"""An appearance-only voxel embedding: what a voxel and its immediate surroundings look like,
never where it is (DESIGN section 8). Each modality is smoothed at a few fixed scales; a
per-voxel MLP (1x1x1 convolutions) maps those intensities to K embedding channels."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from wsls.models.layers import gaussian_radius, gaussian_smooth


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

    @property
    def reach(self) -> int:
        """How far (voxels) a voxel's embedding reads: the widest smoothing's radius."""
        return max(gaussian_radius(s) for s in self.spec.sigmas)

    def scales(self, x: Tensor) -> Tensor:
        """x (B, C, H, W, D) -> the smoothed stack (B, C * len(sigmas), H, W, D)."""
        return torch.cat([gaussian_smooth(x, s) for s in self.spec.sigmas], dim=1)

    @torch.no_grad()
    def embed_points(self, x: Tensor, chunk: int = 16384) -> Tensor:
        """Inference on the smoothed stack of N voxels, x (N, C * len(sigmas)) -> (N, K): the
        eval-mode MLP as matrix products (batch norm folded into the layer before it) over
        chunks of voxels. On a CPU this is twice as fast as the 1x1x1 convolutions over one long
        (N, 1, 1) volume that training runs, and gives their numbers to float rounding."""
        if self.training:
            raise RuntimeError("embed_points runs the MLP in eval mode: call model.eval() first")
        layers: list[list] = []  # [weight, bias, relu after]
        for module in self.mlp:
            if isinstance(module, nn.Conv3d):
                layers.append([module.weight.flatten(1), module.bias, False])
            elif isinstance(module, nn.BatchNorm3d):
                scale = module.weight / torch.sqrt(module.running_var + module.eps)
                weight, bias, relu = layers[-1]
                bias = (bias - module.running_mean) * scale + module.bias
                layers[-1] = [weight * scale[:, None], bias, relu]
            elif isinstance(module, nn.ReLU):
                layers[-1][2] = True
            else:
                raise TypeError(f"embed_points: unexpected layer {type(module).__name__}")
        out = x.new_empty((len(x), self.spec.out_channels))
        for start in range(0, len(x), chunk):
            h = x[start : start + chunk]
            for weight, bias, relu in layers:
                h = torch.nn.functional.linear(h, weight, bias)
                h = h.relu_() if relu else h
            out[start : start + chunk] = h
        return out

    def forward(self, x: Tensor, points: bool = False) -> Tensor:
        """x (B, C, H, W, D) -> (B, K, H, W, D). With ``points=True`` x is already the smoothed
        stack of some voxels, (B, C * len(sigmas), N, 1, 1), as the trainer gathers it (going
        through forward keeps DistributedDataParallel's gradient hooks)."""
        return self.mlp(x if points else self.scales(x))
