"""The 3D VGG-like classifier and its three CAM heads: GAP, GMP and ACAM (attention_cam)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsls.models.layers import ConvBlock, crop_to, pad_to_multiple
from wsls.ops import attention_cam
from wsls.ops.reference import fusion_weights

HEADS = ("acam", "gap", "gmp")


@dataclass(frozen=True)
class ClassifierSpec:
    """Architecture of the classifier.

    Attributes:
        in_channels: modalities.
        width: channels of the first stage; each stage doubles them.
        stages: convolution stages; stages - 1 poolings, so the CAM stride is 2**(stages - 1).
        head: "acam" (attention-refined CAM, the paper's), "gap" or "gmp" (the CAM baselines).
        fusion: how ACAM fuses its three axis re-weightings: "mean" or "geometric".
    """

    in_channels: int
    width: int = 16
    stages: int = 4
    head: str = "acam"
    fusion: str = "mean"

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"ClassifierSpec: head must be one of {HEADS}, got {self.head!r}")
        if self.fusion not in ("mean", "geometric"):
            raise ValueError(
                f"ClassifierSpec: fusion must be 'mean' or 'geometric', got {self.fusion!r}"
            )
        if self.stages < 1 or self.width < 1 or self.in_channels < 1:
            raise ValueError("ClassifierSpec: in_channels, width and stages must be positive")

    @property
    def stride(self) -> int:
        return 2 ** (self.stages - 1)

    @property
    def features(self) -> int:
        return self.width * 2 ** (self.stages - 1)


class ClassifierOutput(NamedTuple):
    """logits (B); cam (B, h, w, d) raw class map at feature resolution; maps (B, h, w, d) the
    head's localisation map before the per-sample normalisation (relu(CAM) times the attention
    weights for 'acam', relu(CAM) otherwise): windows of a volume blend on this scale."""

    logits: Tensor
    cam: Tensor
    maps: Tensor


class Classifier3D(nn.Module):
    """VGG-like 3D CNN: stages of two 3x3x3 convolutions with max pooling between them, then a
    linear lesion/no-lesion head whose weights give the CAM. Any input size works (padded to a
    multiple of the stride, outputs cropped back)."""

    def __init__(self, spec: ClassifierSpec) -> None:
        super().__init__()
        self.spec = spec
        blocks, c = [], spec.in_channels
        for i in range(spec.stages):
            blocks.append(ConvBlock(c, spec.width * 2**i))
            c = spec.width * 2**i
        self.blocks = nn.ModuleList(blocks)
        self.cls_weight = nn.Parameter(torch.randn(c) / c**0.5)
        self.cls_bias = nn.Parameter(torch.zeros(1))
        self.att_weight = nn.Parameter(torch.zeros(3, c))  # uniform attention at start

    def spec_dict(self) -> dict:
        return {"kind": "classifier", **asdict(self.spec)}

    def features(self, x: Tensor) -> Tensor:
        """x (B, C, H, W, D) -> features (B, K, ceil(H/s), ceil(W/s), ceil(D/s))."""
        x, _ = pad_to_multiple(x, self.spec.stride)
        for i, block in enumerate(self.blocks):
            if i:
                x = F.max_pool3d(x, 2)
            x = block(x)
        return x

    def head(self, feats: Tensor) -> ClassifierOutput:
        spec = self.spec
        if spec.head == "acam":
            out = attention_cam(feats, self.cls_weight, self.cls_bias, self.att_weight, spec.fusion)
            weights = fusion_weights(out.scores_h, out.scores_w, out.scores_d, spec.fusion)
            return ClassifierOutput(out.logits, out.cam, out.cam.relu() * weights)
        cam = torch.einsum("bkhwd,k->bhwd", feats, self.cls_weight)
        if spec.head == "gap":
            logits = cam.flatten(1).mean(dim=1) + self.cls_bias
        else:
            logits = feats.flatten(2).amax(dim=2) @ self.cls_weight + self.cls_bias
        return ClassifierOutput(logits, cam, cam.detach().relu())

    def forward(self, x: Tensor) -> ClassifierOutput:
        return self.head(self.features(x))


def upsample_map(maps: Tensor, stride: int, size: tuple[int, ...]) -> Tensor:
    """(B, h, w, d) map at feature resolution -> (B, H, W, D) on the input grid (trilinear, cell
    centres aligned)."""
    up = F.interpolate(maps[:, None], scale_factor=stride, mode="trilinear", align_corners=False)[
        :, 0
    ]
    return crop_to(up, size)
