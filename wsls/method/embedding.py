"""The representation model f_R at inference: embeddings of a whole volume (DESIGN section 2).

Two embeddings: "appearance" (per-voxel MLP on multi-scale intensities: it cannot learn where
a voxel is, only what it looks like) and "unet" (the paper's context U-Net).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from wsls.method.config import EmbeddingTrainConfig
from wsls.models import AppearanceEmbedding, AppearanceSpec, UNet3D, UNetSpec
from wsls.morphology import bounding_box


def build_embedding(config: EmbeddingTrainConfig, in_channels: int) -> nn.Module:
    if config.kind == "appearance":
        return AppearanceEmbedding(
            AppearanceSpec(in_channels, config.dim, tuple(config.sigmas), config.hidden)
        )
    return UNet3D(UNetSpec(in_channels, config.dim, config.unet_width, levels=3))


def embed_volume(model: nn.Module, image: Tensor, brain: Tensor | None = None) -> Tensor:
    """(C, H, W, D) -> (K, H, W, D) embeddings of a whole volume (eval mode, no grad).

    With ``brain`` ((H, W, D) bool) a per-voxel model (the appearance embedding) embeds the
    brain's voxels only and leaves the rest zero: region growing never leaves the brain, which
    is an eighth of a BraTS volume. Its smoothed intensities are computed on the brain's
    bounding box grown by the model's reach: all that the brain's voxels read."""
    model.eval()
    with torch.no_grad():
        if brain is None or not isinstance(model, AppearanceEmbedding):
            return model(image[None].float())[0]
        box = bounding_box(brain, model.reach)
        if box is None:
            return image.new_zeros((model.spec.out_channels, *brain.shape))
        stack = model.scales(image[None, :, box[0], box[1], box[2]].float())[0]
        inside = model.embed_points(stack[:, brain[box]].T.contiguous())
        out = inside.new_zeros((inside.shape[1], *brain.shape))
        out[:, brain] = inside.T
        return out
