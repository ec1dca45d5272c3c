"""The representation trainer: an embedding network f_R learns from confident voxels only, with
the pairwise affinity loss over all pairs of them within each volume (DESIGN section 2).

Two embeddings: "appearance" (per-voxel MLP on multi-scale intensities: it cannot learn where
a voxel is, only what it looks like) and "unet" (the paper's context U-Net, trained on crops).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from wsls.data.preprocess import Prepared
from wsls.method.confident import ConfidentVoxels
from wsls.method.config import EmbeddingTrainConfig
from wsls.method.embedding import build_embedding
from wsls.models import AppearanceEmbedding
from wsls.ops import pairwise_affinity_loss
from wsls.training.loop import fit
from wsls.training.task import FitConfig, FitResult, Task


def _draw(rng: np.random.Generator, sel: ConfidentVoxels, n: int) -> np.ndarray:
    """Up to n indices into sel, half lesion and half normal where both are there."""
    les = np.flatnonzero(sel.labels == 1)
    nor = np.flatnonzero(sel.labels == 0)
    n_les = min(len(les), n // 2) if len(nor) else min(len(les), n)
    n_nor = min(len(nor), n - n_les)
    parts = [rng.choice(les, n_les, replace=False), rng.choice(nor, n_nor, replace=False)]
    return np.concatenate(parts)


class EmbeddingTask(Task):
    """Task for :func:`wsls.training.fit`: confident voxels in, embeddings, pairwise loss."""

    name = "embedding"

    def __init__(
        self,
        cases: Sequence[Prepared],
        confident: Sequence[ConfidentVoxels],
        config: EmbeddingTrainConfig,
        seed: int = 0,
    ) -> None:
        self.cases = cases  # sequences, not lists: a lazy one reads each case when asked
        self.confident = confident
        self.config = config
        self.seed = seed
        self.state = {"epoch": -1, "batches": 0}
        self.in_channels = self.cases[0].image.shape[0]
        self._scales: list[Tensor] | None = None
        self._volumes: list[int] | None = None

    def config_dict(self) -> dict:
        d = asdict(self.config)
        d["sigmas"] = list(d["sigmas"])
        return d

    def build_model(self) -> nn.Module:
        return build_embedding(self.config, self.in_channels)

    def _appearance_features(self, model: AppearanceEmbedding) -> list[Tensor]:
        """Per volume, the smoothed stack at its confident voxels only, (F, n): the fixed
        smoothing is computed once per volume, one volume at a time, and only the voxels the
        steps can draw are kept (a few hundred kB per case at most, not whole stacks)."""
        if self._scales is None:
            self._scales = []
            with torch.no_grad():
                for case, sel in zip(self.cases, self.confident, strict=True):
                    stack = model.scales(torch.from_numpy(np.array(case.image))[None])[0]
                    c = sel.coords
                    self._scales.append(stack[:, c[:, 0], c[:, 1], c[:, 2]].clone())
                    del stack
        return self._scales

    def _drawable(self) -> list[int]:
        """The volumes that have confident voxels (read once: a stored selection is read
        from disk each time it is asked for)."""
        if self._volumes is None:
            self._volumes = [v for v, sel in enumerate(self.confident) if len(sel.labels)]
        return self._volumes

    def train_batches(self, epoch: int, rank: int, world_size: int):
        start = self.state["batches"] if self.state.get("epoch") == epoch else 0
        per_rank = self.config.steps_per_epoch // world_size
        for step in range(start, per_rank):
            rng = np.random.default_rng([self.seed, epoch, rank * per_rank + step])
            volumes = self._drawable()
            if len(volumes) > self.config.volumes_per_step:  # else every volume, rng untouched
                volumes = sorted(rng.choice(volumes, self.config.volumes_per_step, replace=False))
            chosen = {int(v): self.confident[v] for v in volumes}  # each read once per step
            n = self.config.voxels_per_volume
            picks = [(v, _draw(rng, sel, n)) for v, sel in chosen.items()]
            corner = coords = None
            if self.config.kind == "unet":  # one volume per step, a crop around a confident voxel
                v, idx = picks[int(rng.integers(len(picks)))]
                coords = chosen[v].coords[idx]
                centre = coords[int(rng.integers(len(idx)))]
                shape = np.array(self.cases[v].image.shape[1:])
                size = np.minimum(self.config.crop, shape)
                corner = np.clip(centre - size // 2, 0, shape - size)
                picks = [(v, idx)]
            labels = [chosen[v].labels[idx] for v, idx in picks]
            self.state = {"epoch": epoch, "batches": step + 1}
            yield {"picks": picks, "labels": labels, "coords": coords, "corner": corner}

    def loader_state(self) -> dict:
        return dict(self.state)

    def load_loader_state(self, state: dict) -> None:
        self.state = {"epoch": int(state.get("epoch", -1)), "batches": int(state.get("batches", 0))}

    def _embed_picks(self, model: nn.Module, batch: dict) -> tuple[Tensor, Tensor, Tensor]:
        embs, labels, groups = [], [], []
        inner = model.module if hasattr(model, "module") else model
        if self.config.kind == "appearance":
            feats = self._appearance_features(inner)
            xs = []
            for (v, idx), picked in zip(batch["picks"], batch["labels"], strict=True):
                xs.append(feats[v][:, idx])  # (F, n): the stack at confident voxels idx
                labels.append(torch.from_numpy(picked))
                groups.append(torch.full((len(idx),), v, dtype=torch.int64))
            x = torch.cat(xs, dim=1)  # one batch: batch norm sees every volume's voxels
            embs.append(model(x[None, :, :, None, None], points=True)[0, :, :, 0, 0].T)
        else:
            (v, idx), corner = batch["picks"][0], batch["corner"]
            size = np.minimum(self.config.crop, self.cases[v].image.shape[1:])
            sl = tuple(slice(int(a), int(a + s)) for a, s in zip(corner, size, strict=True))
            crop = torch.from_numpy(np.ascontiguousarray(self.cases[v].image[(slice(None), *sl)]))
            c = batch["coords"] - corner
            inside = np.all((c >= 0) & (c < size), axis=1)
            c = c[inside]
            out = model(crop[None])[0]
            embs.append(out[:, c[:, 0], c[:, 1], c[:, 2]].T)
            labels.append(torch.from_numpy(batch["labels"][0][inside]))
            groups.append(torch.zeros(len(c), dtype=torch.int64))
        return torch.cat(embs).float(), torch.cat(labels), torch.cat(groups)

    def training_step(self, model, batch):
        emb, labels, groups = self._embed_picks(model, batch)
        loss = pairwise_affinity_loss(emb, labels, groups, reduction=self.config.reduction)
        return loss, {"voxels": float(len(labels))}

    def items_in(self, batch) -> int:
        n = sum(len(idx) for _, idx in batch["picks"])
        return n * (n - 1)


def train_embedding(
    cases: Sequence[Prepared],
    confident: Sequence[ConfidentVoxels],
    run_dir: str | Path,
    config: EmbeddingTrainConfig,
    fit_config: FitConfig | None = None,
    *,
    resume: bool = False,
) -> FitResult:
    """Train the representation model on the cases' confident voxels."""
    fit_config = fit_config or FitConfig(select_metric="train_loss")
    task = EmbeddingTask(cases, confident, config, seed=fit_config.seed)
    return fit(task, run_dir, fit_config, resume=resume)
