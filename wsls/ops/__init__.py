"""The wsls custom ops (torch.ops.wsls.*) with CPU and CUDA kernels, and their references.

Importing this package loads the compiled library; it needs torch and nothing else.
"""

from . import reference
from ._load import build_info, has_kernel
from .attention_cam import attention_cam
from .pairwise_loss import pairwise_affinity_loss
from .reference import AttentionCamResult, cam_gap, cam_gmp

__all__ = [
    "AttentionCamResult",
    "attention_cam",
    "build_info",
    "cam_gap",
    "cam_gmp",
    "has_kernel",
    "pairwise_affinity_loss",
    "reference",
]
