"""The per-case stages of training (wsls.training.per_case): each case's maps, intensity
posterior and confident voxels written to disk and read back lazily, equal to the in-memory
computation; deterministic; a run killed during them resumes without recomputing a finished
case and ends with the same model as a run never killed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.helpers import tiny_config
from wsls.data.preprocess import PreprocessConfig, preprocess
from wsls.method.confident import select_confident
from wsls.method.config import WSLSConfig
from wsls.method.segment import volume_maps
from wsls.phantom.generate import make_phantom
from wsls.training import pipeline
from wsls.training.case_stages import normal_only_if_healthy

CONFIG = tiny_config()


@pytest.fixture(scope="module")
def cases():
    prepared = []
    for seed, lesions in enumerate(("tumour", (), "tumour", "tumour")):
        case = make_phantom((64, 64, 48), seed=seed, lesions=lesions).to_case(f"p{seed}")
        prepared.append(preprocess(case, PreprocessConfig(downsample=2.0, pad_to_multiple=4)))
    return prepared


def _train(cases, out, **kwargs):
    config = replace(CONFIG, modalities=cases[0].modalities)
    return pipeline.train_wsls(cases, out, config, progress=False, log=lambda _: None, **kwargs)


def _weights(models) -> dict[str, torch.Tensor]:
    out = {f"classifier.{k}": v for k, v in models.classifier.state_dict().items()}
    out.update({f"embedding.{k}": v for k, v in models.embedding.state_dict().items()})
    return out


def _same(a, b) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def straight(cases, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    return out, _train(cases, out)


def test_stored_outputs_equal_the_in_memory_computation(cases, straight):
    out, models = straight
    # training reads the posterior at the fit's prior ceiling and without a bias field removed
    # (case_stages.maps_stage), whatever the configuration says
    assert models.config.em.bias_order == 2
    em = replace(models.config.em, decision_ceiling=None, bias_order=0)
    config = replace(models.config, em=em)
    for i, case in enumerate(cases):
        folder = sorted((out / "cases" / "maps").glob(f"{i:05d}-*"))[0]
        maps = volume_maps(models.classifier, case.image, case.brain, config)
        assert np.array_equal(np.load(folder / "acam.npy"), maps.acam)
        assert np.array_equal(np.load(folder / "posterior.npy"), maps.posterior)
        sel = select_confident(
            maps.acam, case.brain, maps.posterior, models.config.confident, CONFIG.seed + i
        )
        sel = normal_only_if_healthy(case, sel)
        assert np.array_equal(np.load(folder / "coords.npy"), sel.coords)
        assert np.array_equal(np.load(folder / "labels.npy"), sel.labels)
    assert (out / "cases" / "self_training1").is_dir()


def test_training_is_deterministic(cases, straight, tmp_path):
    assert _same(straight[1], _train(cases, tmp_path / "again"))
    report = (straight[0] / "report.json").read_text()
    assert (tmp_path / "again" / "report.json").read_text() == report


def _counting(monkeypatch, stage_name, calls, stop_after=None):
    """Wrap a per-case stage so that it counts its cases and, optionally, is "killed" (a
    KeyboardInterrupt, as Ctrl-C gives) once stop_after cases are done."""
    original = getattr(pipeline, stage_name)

    def wrapped(*args, **kwargs):
        compute = original(*args, **kwargs)

        def counted(index):
            if stop_after is not None and len(calls) == stop_after:
                raise KeyboardInterrupt
            calls.append(index)
            return compute(index)

        return counted

    monkeypatch.setattr(pipeline, stage_name, wrapped)


@pytest.mark.parametrize("stage", ["maps_stage", "self_training_stage"])
def test_killed_during_per_case_stage_resumes_without_recomputing(
    cases, straight, tmp_path, monkeypatch, stage
):
    run = tmp_path / "run"
    first: list[int] = []
    with monkeypatch.context() as patch:
        _counting(patch, stage, first, stop_after=2)
        with pytest.raises(KeyboardInterrupt):
            _train(cases, run)
    assert first == [0, 1]
    again: list[int] = []
    with monkeypatch.context() as patch:
        _counting(patch, stage, again)
        resumed = _train(cases, run, resume=True)
    assert again == [2, 3]  # the finished cases are read back, not recomputed
    assert _same(resumed, straight[1])
    assert (run / "report.json").read_text() == (straight[0] / "report.json").read_text()


def test_self_training_segments_without_the_cut_the_band_the_second_look_or_the_faint_refit(
    cases, straight, monkeypatch
):
    from wsls.training import case_stages

    _, models = straight
    seen = []
    real = case_stages.segment_volume

    def recording(classifier, embedding, image, brain, config, maps):
        seen.append(config)
        return real(classifier, embedding, image, brain, config, maps)

    monkeypatch.setattr(case_stages, "segment_volume", recording)
    regions = replace(models.config.regions, bridge_radius=3, boundary_band=2)
    config = replace(models.config, regions=regions)
    maps = volume_maps(models.classifier, cases[0].image, cases[0].brain, config)
    case_stages.self_training_voxels(models.classifier, models.embedding, cases[0], maps, config, 0)
    assert [(c.regions.bridge_radius, c.regions.boundary_band) for c in seen] == [(0, None)]
    assert config.second_look and not seen[0].second_look  # no erase test, no second look
    assert config.em.faint_lesion_components == 2 and seen[0].em.faint_lesion_components is None
    restored = replace(
        seen[0], regions=config.regions, second_look=config.second_look, em=config.em
    )
    assert restored == config  # nothing else changed


def test_damaged_case_output_is_recomputed_on_resume(cases, straight, tmp_path, monkeypatch):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(straight[0], run)
    folders = sorted((run / "cases" / "maps").iterdir())
    truncated = folders[1] / "acam.npy"
    truncated.write_bytes(truncated.read_bytes()[:-10])
    flipped = folders[2] / "posterior.npy"  # same size, one byte changed: the checksum
    data = bytearray(flipped.read_bytes())
    data[-1] ^= 0xFF
    flipped.write_bytes(bytes(data))
    calls: list[int] = []
    _counting(monkeypatch, "maps_stage", calls)
    resumed = _train(cases, run, resume=True)
    assert calls == [1, 2]
    assert _same(resumed, straight[1])


def test_threads_give_the_same_outputs(cases, straight, tmp_path, monkeypatch):
    import wsls.training.per_case as per_case

    monkeypatch.setattr(per_case.os, "cpu_count", lambda: 2)  # threads even on one core
    models = _train(cases, tmp_path / "threads", workers=2)
    assert _same(models, straight[1])


def test_wsls_train_from_cache_killed_and_resumed(tmp_path, monkeypatch):
    """Through ``wsls.train`` (cases memory-mapped from the cache, coarse views stored):
    killed in the maps stage, resumed, the same bundle weights as a run never killed."""
    from wsls.method.trained import load_models
    from wsls.phantom.generate import write_phantom_dataset
    from wsls.training.run import train

    data = tmp_path / "data"
    write_phantom_dataset(data, 4, (64, 64, 48), seed=5, healthy_fraction=0.25, lesions="tumour")
    config = WSLSConfig().updated(
        {
            "preprocess": {"target_spacing": [3.0, 3.0, 3.0], "pad_to_multiple": 8},
            "patch": {"size": 16, "min_lesion_voxels": 20},
            "width": 4,
            "stages": 2,
            "classifier": {"epochs": 1, "per_epoch": 16},
            "embedding_schedule": {"epochs": 1, "per_epoch": 4},
        }
    )
    quiet = {"progress": False, "log": lambda _: None}
    straight = load_models(train(data, tmp_path / "a", config, **quiet))
    calls: list[int] = []
    with monkeypatch.context() as patch:
        _counting(patch, "maps_stage", calls, stop_after=3)
        with pytest.raises(KeyboardInterrupt):
            train(data, tmp_path / "b", config, **quiet)
    calls.clear()
    with monkeypatch.context() as patch:
        _counting(patch, "maps_stage", calls)
        resumed = load_models(train(data, tmp_path / "b", config, resume=True, **quiet))
    assert calls == [3]
    assert (tmp_path / "b" / "cases" / "coarse").is_dir()
    assert _same(resumed, straight)
