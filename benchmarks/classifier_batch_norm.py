"""How right each cross-validation fold's classifier labels patches of its held-out cases in eval
mode, with the batch-norm statistics it was trained with and with them recomputed as
``classifier_batch_norm`` would (``wsls.training.batch_norm``: the same training batches).

Reads a run of ``benchmarks/eval_cv.py --data ...`` (its ``cache/`` and each fold's classifier,
training cases and held-out cases); trains nothing.

Run: python benchmarks/classifier_batch_norm.py results/cv20_98ff8fa --batches 100
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import statistics
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from wsls.data.patch_batches import PatchBatches
from wsls.data.patches import PatchSampler
from wsls.method.coarse import coarse_case
from wsls.method.trained import load_models
from wsls.models import ClassifierSpec
from wsls.training.batch_norm import recompute_batch_norm
from wsls.training.classifier import ClassifierTask, ClassifierTrainConfig


def _case(folder: Path) -> SimpleNamespace:
    meta = json.loads((folder / "meta.json").read_text())
    arrays = {name: np.load(folder / f"{name}.npy") for name in ("image", "brain", "mask")}
    return SimpleNamespace(id=meta.get("id", meta.get("case")), label=1.0, **arrays)


@torch.no_grad()
def _accuracy(model: torch.nn.Module, batches) -> float:
    model.eval()
    right = total = 0
    for x, y in batches:
        right += int(((model(x).logits.float() > 0).float() == y).sum())
        total += len(y)
    return right / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="an eval_cv.py --data run folder")
    parser.add_argument("--batches", type=int, default=100, help="classifier_batch_norm")
    parser.add_argument("--patches", type=int, default=400, help="held-out patches per fold")
    args = parser.parse_args()
    prepared = {c.id: c for c in map(_case, sorted((args.run / "cache").iterdir()))}
    rows = []
    for fold_rows in sorted(args.run.glob("fold*.json")):
        fold = fold_rows.stem
        models = load_models(args.run / fold / "wsls" / "bundle")
        config = models.config
        training = [_case(d) for d in sorted((args.run / fold / "wsls/cases/coarse").iterdir())]
        held_ids = sorted({r["case"] for r in json.loads(fold_rows.read_text())})
        held = [coarse_case(prepared[i], config.classifier_scale) for i in held_ids]
        plain = replace(config.patch, flip_lr=False, intensity_jitter=0.0)
        sampler = PatchSampler(held, replace(plain, samples_per_epoch=args.patches), seed=1)
        test = list(PatchBatches(sampler, [c.image for c in held], 8).epoch(0))
        spec = ClassifierSpec(
            len(config.modalities), config.width, config.stages, config.head, config.fusion
        )
        patch = replace(config.patch, samples_per_epoch=config.classifier.per_epoch)
        train = ClassifierTrainConfig(spec, patch, config.batch_size)
        task = ClassifierTask(training, train, seed=config.seed)
        before = _accuracy(models.classifier, test)
        model = copy.deepcopy(models.classifier)
        batches = task.train_batches(config.classifier.epochs, 0, 1)
        recompute_batch_norm(model, itertools.islice(batches, args.batches), task.training_step)
        after = _accuracy(model, test)
        rows.append((fold, before, after))
        print(f"{fold}: held-out patch accuracy {before:.3f} as trained, {after:.3f} recomputed")
    print(
        f"mean {statistics.mean(r[1] for r in rows):.3f} -> "
        f"{statistics.mean(r[2] for r in rows):.3f} over {len(rows)} folds"
    )


if __name__ == "__main__":
    main()
