"""The wsls custom ops (torch.ops.wsls.*) with CPU and CUDA kernels, and their references.

Importing this package loads the compiled library; it needs torch and nothing else.
"""

from . import reference
from ._load import build_info, debug_checks, debug_checks_enabled, has_kernel
from .affinity_grow import (
    PackedMasks,
    affinity_grow,
    candidate_scores,
    mask_nms,
    pack_masks,
    union_masks,
    unpack_masks,
)
from .attention_cam import attention_cam
from .pairwise_loss import pairwise_affinity_loss
from .reference import AttentionCamResult, cam_gap, cam_gmp

__all__ = [
    "AttentionCamResult",
    "PackedMasks",
    "affinity_grow",
    "attention_cam",
    "build_info",
    "cam_gap",
    "cam_gmp",
    "candidate_scores",
    "debug_checks",
    "debug_checks_enabled",
    "has_kernel",
    "mask_nms",
    "pack_masks",
    "pairwise_affinity_loss",
    "reference",
    "union_masks",
    "unpack_masks",
]
