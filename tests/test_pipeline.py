"""The trainers on tiny phantoms: bit-exact resume of the classifier, the whole method trained,
saved as a bundle, reloaded and run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wsls.data.patches import PatchConfig
from wsls.data.preprocess import PreprocessConfig, preprocess
from wsls.method.config import StageSchedule, WSLSConfig
from wsls.method.segment import segment_volume
from wsls.method.trained import load_models, save_models
from wsls.models import ClassifierSpec
from wsls.phantom.generate import make_phantom
from wsls.training import FitConfig, TrainingInterrupted, fit
from wsls.training.classifier import ClassifierTask, ClassifierTrainConfig
from wsls.training.pipeline import train_wsls


@pytest.fixture(scope="module")
def cases():
    prepared = []
    for seed, lesions in enumerate(("tumour", (), "tumour")):  # the healthy one offers negatives
        phantom = make_phantom((64, 64, 48), seed=seed, lesions=lesions)
        case = phantom.to_case(f"p{seed}")
        prepared.append(preprocess(case, PreprocessConfig(downsample=2.0, pad_to_multiple=4)))
    return prepared


PATCH = PatchConfig(size=16, min_lesion_voxels=10, samples_per_epoch=16, flip_lr=True)
TRAIN = ClassifierTrainConfig(ClassifierSpec(4, width=4, stages=2), PATCH, batch_size=4)


class InterruptingTask(ClassifierTask):
    def __init__(self, *args, stop_at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls, self.stop_at = 0, stop_at

    def training_step(self, model, batch):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return super().training_step(model, batch)


def test_classifier_resume_is_bit_exact(cases, tmp_path):
    config = FitConfig(epochs=2, progress=False, select_metric="train_loss", seed=3)
    straight = fit(ClassifierTask(cases, TRAIN, seed=3), tmp_path / "a", config)
    with pytest.raises(TrainingInterrupted):
        fit(InterruptingTask(cases, TRAIN, seed=3, stop_at=6), tmp_path / "b", config)
    resumed = fit(ClassifierTask(cases, TRAIN, seed=3), tmp_path / "b", config, resume=True)
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert [h["train_loss"] for h in straight.history] == [h["train_loss"] for h in resumed.history]


def test_train_save_load_segment(cases, tmp_path):
    config = WSLSConfig(
        modalities=cases[0].modalities,
        classifier_scale=1,
        patch=PATCH,
        width=4,
        stages=2,
        classifier=StageSchedule(1, 16),
        classifier_batch_norm=2,
        embedding_schedule=StageSchedule(1, 4),
        segmenter_schedule=StageSchedule(1, 8),
        self_training=1,
    )
    models = train_wsls(
        cases[:2],
        tmp_path / "run",
        config,
        baselines=("classifier_gap", "ws_unet"),
        progress=False,
        log=lambda _: None,
    )
    assert set(models.baselines) == {"classifier_gap", "ws_unet"}
    assert (tmp_path / "run" / "report.json").exists()
    for name, batches in (("classifier", 2), ("embedding", 0)):
        run = json.loads((tmp_path / "run" / "runs" / name / "config.json").read_text())
        assert run["fit"]["batch_norm_batches"] == batches, name
    path = save_models(models, tmp_path / "bundle")
    loaded = load_models(path, modalities=cases[0].modalities)
    test = cases[2]
    a = segment_volume(models.classifier, models.embedding, test.image, test.brain, config)
    b = segment_volume(loaded.classifier, loaded.embedding, test.image, test.brain, loaded.config)
    assert loaded.config == config
    assert np.array_equal(a.mask, b.mask) and np.allclose(a.maps.acam, b.maps.acam)
    assert a.mask.shape == test.brain.shape and not (a.mask & ~test.brain).any()


@pytest.mark.slow
def test_torchrun_trains_every_stage(tmp_path):
    """2 processes (gloo, CPU) through the whole method: one process group for all stages."""
    import json
    import os
    import subprocess
    import sys

    from tests.api_helpers import ROOT, TINY_CONFIG
    from wsls.phantom.generate import write_phantom_dataset

    write_phantom_dataset(
        tmp_path / "data", 4, (64, 64, 48), seed=3, healthy_fraction=0.25, lesions="tumour"
    )
    (tmp_path / "tiny.json").write_text(json.dumps(TINY_CONFIG))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "wsls",
         "train", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--config",
         str(tmp_path / "tiny.json"), "--no-progress", "--no-cache"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "bundle" / "config.json").exists()
    assert (tmp_path / "run" / "runs" / "embedding_round1" / "final.safetensors").exists()
