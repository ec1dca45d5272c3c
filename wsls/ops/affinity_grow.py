"""wsls.ops.affinity_grow: segmentation candidates grown from seeds by affinity (DESIGN.md
section 2), their mean-ACAM scores and greedy mask NMS, over bit-packed masks.

Packed masks: int64 words (S, H, W, ceil(D / 64)); voxel (h, w, d) of candidate s is bit d % 64
of ``words[s, h, w, d // 64]`` (bits past D are zero). 240 x 240 x 155 takes 1.4 MB per
candidate instead of 8.9 MB as bool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from . import _load  # noqa: F401  (registers the kernels)

# The largest bool output affinity_grow returns (packed=False). The bool stack is a view for
# convenience, 8 to 10 times the packed words that the op computes (one bit per voxel) and that
# candidate_scores, mask_nms and union take directly; 8 GiB is about the whole memory of the
# machines this project runs on (a 24 GB GPU holds the network, the embeddings and this at most),
# so a larger request is a mistake to refuse before the growth runs (it takes seconds), not after.
# The CPU also refuses what exceeds the memory available now (MemAvailable, where Linux says).
MAX_BOOL_BYTES = 8 << 30


@dataclass(frozen=True)
class PackedMasks:
    """S candidate masks over an (H, W, D) volume, bit-packed along D.

    words: int64 (S, H, W, ceil(D / 64)), bit d % 64 of word d // 64 is voxel (h, w, d).
    shape: (H, W, D). Accepted by mask_nms and candidate_scores; ``unpack()`` gives bool
    (S, H, W, D), ``union(indices)`` the bool (H, W, D) union of some (default: all) candidates,
    ``packed[indices]`` a subset.
    """

    words: Tensor
    shape: tuple[int, int, int]

    @property
    def num_candidates(self) -> int:
        return self.words.shape[0]

    @property
    def device(self) -> torch.device:
        return self.words.device

    def unpack(self) -> Tensor:
        return unpack_masks(self)

    def union(self, indices: Tensor | Sequence[int] | None = None) -> Tensor:
        return union_masks(self, indices)

    def __getitem__(self, indices) -> PackedMasks:
        words = self.words[indices]
        if words.dim() == 3:  # a single integer index keeps its candidate axis
            words = words[None]
        return PackedMasks(words, self.shape)


@torch.library.register_fake("wsls::affinity_grow")
def _affinity_grow_fake(embeddings, seeds, threshold, connectivity=6, mask=None):
    torch._check(embeddings.dim() == 4, lambda: "affinity_grow: embeddings must be (K, H, W, D)")
    torch._check(seeds.dim() == 2, lambda: "affinity_grow: seeds must be (S, 3)")
    _, H, W, D = embeddings.shape
    return seeds.new_empty((seeds.shape[0], H, W, (D + 63) // 64), dtype=torch.int64)


@torch.library.register_fake("wsls::mask_nms")
def _mask_nms_fake(masks, scores, iou_threshold):
    kept = torch.library.get_ctx().new_dynamic_size()
    return masks.new_empty((kept,), dtype=torch.int64)


@torch.library.register_fake("wsls::candidate_scores")
def _candidate_scores_fake(masks, acam):
    return acam.new_empty((masks.shape[0],))


@torch.library.register_fake("wsls::pack_masks")
def _pack_masks_fake(masks):
    S, H, W, D = masks.shape
    return masks.new_empty((S, H, W, (D + 63) // 64), dtype=torch.int64)


@torch.library.register_fake("wsls::unpack_masks")
def _unpack_masks_fake(masks, depth):
    S, H, W, _ = masks.shape
    return masks.new_empty((S, H, W, depth), dtype=torch.bool)


def affinity_grow(
    embeddings: Tensor,
    seeds: Tensor | Sequence[Sequence[int]],
    threshold: float,
    connectivity: int = 6,
    mask: Tensor | None = None,
    packed: bool = False,
) -> Tensor | PackedMasks:
    """Grow one candidate region per seed: the voxels whose affinity to the seed is >= threshold
    and that connect to it, all seeds in one batched kernel.

    Args:
        embeddings: (K, H, W, D) voxel embeddings f (float32/64, float16/bfloat16 computed in
            float32), K >= 1. NaN or Inf anywhere raises (on CUDA under debug checks, below).
        seeds: (S, 3) int64 voxel indices (h, w, d), inside the volume; S may be 0. A list is
            converted as it is: a list of S lists of 3 (``[]``: no seed); any other shape raises.
        threshold: lambda in (0, 1]. A(p, q) = 2 / (1 + exp(||f(p) - f(q)||^2)) >= lambda,
            i.e. d2 <= log(2 / lambda - 1); lambda = 1 keeps exactly equal embeddings.
        connectivity: 6 (faces) or 26 (faces, edges, corners): the connected component of the
            passing voxels holding the seed; 0: every passing voxel (the paper's global set).
        mask: optional (H, W, D) bool (the brain): growth stays inside it. A seed outside the
            mask gives an empty candidate.
        packed: return PackedMasks (1 bit per voxel) instead of bool (S, H, W, D).

    Not differentiable. Raises RuntimeError naming the argument on bad input, and before any
    work when the bool output would exceed ``MAX_BOOL_BYTES`` (8 GiB) or, on the CPU, the
    memory available (pass ``packed=True``).

    Host synchronisation: none with tensor seeds on the embeddings' device (a list of seeds is
    copied there first). On CUDA, seeds outside the volume and non-finite embeddings are only
    detected under ``wsls.ops.debug_checks(True)``; without it a seed outside the volume gives
    an empty candidate and a non-finite voxel never passes (the CPU always raises).
    """
    if not isinstance(seeds, Tensor):
        seeds = torch.as_tensor(seeds, dtype=torch.int64, device=embeddings.device)
        if seeds.numel() == 0 and seeds.dim() == 1:  # [] : no seed
            seeds = seeds.reshape(0, 3)
    if not packed:
        _check_bool_output(embeddings, seeds)
    words = torch.ops.wsls.affinity_grow(
        embeddings, seeds, float(threshold), int(connectivity), mask
    )
    result = PackedMasks(words, tuple(embeddings.shape[1:]))
    return result if packed else result.unpack()


def _available_host_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (Linux), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _format_bytes(n: int) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} B"


def _check_bool_output(embeddings: Tensor, seeds: Tensor) -> None:
    """Refuse a bool (S, H, W, D) output larger than MAX_BOOL_BYTES or, on the CPU, than the
    memory available, from the shapes alone (the C++ op checks the shapes themselves)."""
    if embeddings.dim() != 4 or seeds.dim() != 2:
        return
    S = seeds.shape[0]
    H, W, D = (int(n) for n in embeddings.shape[1:])
    needed = S * H * W * D
    limit, what = (
        MAX_BOOL_BYTES,
        "the limit of bool outputs (wsls.ops.affinity_grow.MAX_BOOL_BYTES)",
    )
    if embeddings.device.type == "cpu" and not torch.compiler.is_compiling():
        available = _available_host_bytes()
        if available is not None and available < limit:
            limit, what = available, "the memory available"
    if needed > limit:
        packed_bytes = S * H * W * ((D + 63) // 64) * 8
        raise RuntimeError(
            f"affinity_grow: a bool output of S = {S} candidates over the volume {H} x {W} x {D} "
            f"needs {_format_bytes(needed)}, more than {what} ({_format_bytes(limit)}); pass "
            f"packed=True ({_format_bytes(packed_bytes)})"
        )


def pack_masks(masks: Tensor) -> PackedMasks:
    """bool (S, H, W, D) -> PackedMasks."""
    return PackedMasks(torch.ops.wsls.pack_masks(masks), tuple(masks.shape[1:]))


def unpack_masks(packed: PackedMasks) -> Tensor:
    """PackedMasks -> bool (S, H, W, D)."""
    return torch.ops.wsls.unpack_masks(packed.words, packed.shape[2])


def union_masks(packed: PackedMasks, indices: Tensor | Sequence[int] | None = None) -> Tensor:
    """bool (H, W, D): the union of the candidates at indices (default: all); OR-reduced on the
    packed words in log2(S) steps. No host synchronisation with indices on the words' device (a
    list is copied there first)."""
    words = packed.words
    if indices is not None:
        words = words[torch.as_tensor(indices, dtype=torch.int64, device=words.device)]
    while words.shape[0] > 1:
        half = words.shape[0] // 2
        merged = words[:half] | words[half : 2 * half]
        if words.shape[0] % 2:
            merged[0] |= words[-1]
        words = merged
    if words.shape[0] == 0:
        words = packed.words.new_zeros((1,) + tuple(packed.words.shape[1:]))
    return torch.ops.wsls.unpack_masks(words, packed.shape[2])[0]


def _words(masks: Tensor | PackedMasks, op: str) -> Tensor:
    if isinstance(masks, PackedMasks):
        return masks.words
    if isinstance(masks, Tensor) and masks.dtype == torch.bool:
        return torch.ops.wsls.pack_masks(masks)
    if isinstance(masks, Tensor):  # packed words straight from torch.ops.wsls.affinity_grow
        return masks
    raise TypeError(f"{op}: masks must be PackedMasks or a bool tensor, got {type(masks)}")


def mask_nms(masks: Tensor | PackedMasks, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression of candidate masks.

    Args:
        masks: PackedMasks (S candidates) or bool (S, H, W, D).
        scores: (S) floating point, no NaN.
        iou_threshold: tau in [0, 1]: a candidate is dropped when a kept, higher-ranked one has
            IoU > tau with it (tau = 1 keeps all; tau = 0 drops any overlap).

    Returns the kept candidate indices (int64), by descending score, ties by lower index. IoU
    is counted exactly by popcount; two empty masks have IoU 0, so an empty candidate is never
    suppressed (filter by area first where that matters).

    Host synchronisation: on CUDA, one (the number of kept candidates is the output's size; the
    NaN check of the scores is read with it), so mask_nms cannot be captured in a CUDA graph.
    """
    return torch.ops.wsls.mask_nms(_words(masks, "mask_nms"), scores, float(iou_threshold))


def candidate_scores(masks: Tensor | PackedMasks, acam: Tensor) -> Tensor:
    """Mean of acam (H, W, D) over each candidate (PackedMasks or bool (S, H, W, D)) -> (S) in
    acam's dtype, summed in float64; 0 for an empty candidate. acam must have the candidates'
    volume (H, W, D). (Raw packed words, which do not record D, are only checked for
    ceil(D / 64) words per row.)"""
    if isinstance(masks, PackedMasks):
        volume = tuple(masks.shape)
    elif isinstance(masks, Tensor) and masks.dtype == torch.bool and masks.dim() == 4:
        volume = tuple(masks.shape[1:])
    else:
        volume = None
    if volume is not None and isinstance(acam, Tensor) and acam.dim() == 3:
        if tuple(acam.shape) != volume:
            raise RuntimeError(
                f"candidate_scores: masks over the volume (H, W, D) = {volume} do not fit acam "
                f"(H, W, D) = {tuple(acam.shape)}"
            )
    return torch.ops.wsls.candidate_scores(_words(masks, "candidate_scores"), acam)
