"""The U-Net baselines (WS-UNet, S-UNet) at inference: a lesion probability per voxel."""

from __future__ import annotations

import torch
from torch import Tensor

from wsls.method.windows import sliding_window
from wsls.models import UNet3D


@torch.no_grad()
def segmenter_probability(model: UNet3D, image: Tensor, window: int = 32) -> Tensor:
    """(C, H, W, D) -> lesion probability (H, W, D), by sliding windows of the training size."""
    model.eval()
    return sliding_window(lambda x: torch.sigmoid(model(x)), image, window)[0]
