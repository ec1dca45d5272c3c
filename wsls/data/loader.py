"""The patch DataLoader for weakly supervised training: cases in, balanced labelled batches out."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from wsls.data.cache import VolumeCache
from wsls.data.patches import PatchConfig, PatchDataset, PatchSampler
from wsls.data.preprocess import PreprocessConfig


class PatchLoader:
    """Iterates batches ``(patches (B, C, p, p, p), labels (B,), meta)`` (plus mask patches
    (B, p, p, p) when built ``with_masks``) and remembers how many samples were consumed,
    so ``state_dict`` resumes exactly where training stopped (workers prefetch ahead)."""

    def __init__(self, sampler: PatchSampler, dataset: PatchDataset, loader: DataLoader) -> None:
        self.sampler = sampler
        self.dataset = dataset
        self.loader = loader
        self._state = sampler.state_dict()

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        self.sampler.load_state_dict(self._state)
        epoch, consumed = self._state["epoch"], self._state["position"]
        for batch in self.loader:
            consumed += len(batch[1])
            self._state = {"seed": self.sampler.seed, "epoch": epoch, "position": consumed}
            yield batch
        self._state = {"seed": self.sampler.seed, "epoch": epoch + 1, "position": 0}

    def state_dict(self) -> dict[str, int]:
        """Seed, epoch and samples consumed in it."""
        return dict(self._state)

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.load_state_dict(state)
        self._state = self.sampler.state_dict()

    def report(self) -> str:
        return self.sampler.format_report()


def build_patch_loader(
    cases: Sequence[Any],
    patch: PatchConfig | None = None,
    preprocessing: PreprocessConfig | None = None,
    *,
    negative_cases: Sequence[Any] = (),
    negatives_from: str = "all",
    batch_size: int = 8,
    num_workers: int = 2,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    cache: VolumeCache | None = None,
    with_masks: bool = False,
    prefetch_factor: int = 4,
) -> PatchLoader:
    """A DataLoader of balanced weakly labelled patches.

    Args:
        cases: CaseRef (read and cached), Case (preprocessed here) or Prepared objects.
        patch: patch geometry and sampling (default 32^3).
        preprocessing: default half resolution (``PreprocessConfig(downsample=2.0)``).
        negative_cases: lesion-free cases of another set to draw negatives from.
        negatives_from: "all", "cases" or "extra" (see :class:`PatchSampler`).
        batch_size, num_workers, prefetch_factor: as torch's DataLoader.
        seed: sampling seed.
        cache_dir: on-disk cache of decoded volumes (uncompressed .npy, memory-mapped by the
            workers); None keeps prepared volumes in memory only.
        cache: an existing :class:`VolumeCache` to share (overrides cache_dir/preprocessing).
        with_masks: also yield mask patches: only for the fully supervised reference.
    Returns:
        A :class:`PatchLoader`.
    """
    patch = patch or PatchConfig()
    cache = cache or VolumeCache(preprocessing or PreprocessConfig(downsample=2.0), cache_dir)
    all_items = list(cases) + list(negative_cases)
    prepared = [cache.get(item) for item in all_items]
    sampler = PatchSampler(
        prepared[: len(cases)], patch, seed, prepared[len(cases) :], negatives_from
    )
    images = [cache.image_source(item) for item in all_items]
    masks = [p.mask for p in prepared] if with_masks else None
    dataset = PatchDataset(images, patch.shape, cache.config.background, masks)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        drop_last=False,
    )
    return PatchLoader(sampler, dataset, loader)
