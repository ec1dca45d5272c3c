"""The classifier ensemble: the consensus picks the member the others agree with and reports
how far they agree; training several members from consecutive seeds; the bundle round trip; the
verdict's flag when the members disagree."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.helpers import tiny_config
from wsls.data.preprocess import PreprocessConfig, preprocess
from wsls.errors import ConfigError
from wsls.method.config import WSLSConfig
from wsls.method.consensus import consensus, overlap
from wsls.method.segment import device_maps, segment_volume, to_device
from wsls.method.trained import load_models, save_models
from wsls.models import (
    Classifier3D,
    ClassifierEnsemble,
    ClassifierSpec,
    EnsembleSpec,
    build_model,
    classifier_members,
)
from wsls.phantom.generate import make_phantom
from wsls.training.pipeline import train_wsls


def _box(lo: int, hi: int, shape=(12, 12, 12)) -> torch.Tensor:
    out = torch.zeros(shape, dtype=torch.bool)
    out[lo:hi, lo:hi, lo:hi] = True
    return out


def test_consensus_follows_the_majority_and_reports_the_dissent():
    lesion, shifted, elsewhere = _box(2, 8), _box(3, 9), _box(9, 12)
    chosen, agreement = consensus([elsewhere, lesion, shifted])
    assert chosen in (1, 2)
    assert agreement == 0.0  # the odd member overlaps neither
    chosen, agreement = consensus([lesion, lesion.clone(), shifted])
    assert chosen == 0  # the first of equals
    assert agreement == pytest.approx(overlap(lesion, shifted))
    assert 0.5 < agreement < 1.0
    assert consensus([lesion]) == (0, 1.0)
    empty = torch.zeros_like(lesion)
    assert consensus([empty, empty.clone(), lesion]) == (0, 0.0)  # two see no lesion
    assert overlap(empty, empty) == 1.0


def _members(n: int) -> list[Classifier3D]:
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(Classifier3D(ClassifierSpec(2, width=4, stages=2)))
    return out


def test_ensemble_forward_is_the_members_mean_and_rebuilds_from_its_spec():
    members = _members(3)
    ensemble = ClassifierEnsemble.of(members)
    assert classifier_members(ensemble)[1] is ensemble.members[1]
    assert classifier_members(members[0]) == [members[0]]
    x = torch.randn(2, 2, 16, 16, 16)
    with torch.no_grad():
        out, each = ensemble(x), [m(x) for m in members]
    assert torch.allclose(out.logits, sum(o.logits for o in each) / 3, atol=1e-6)
    assert torch.allclose(out.maps, sum(o.maps for o in each) / 3, atol=1e-6)
    rebuilt = build_model(ensemble.spec_dict())
    rebuilt.load_state_dict(ensemble.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x).logits, out.logits)
    with pytest.raises(ValueError, match="size must be an integer >= 2"):
        EnsembleSpec(ensemble.spec.member, 1)
    other = Classifier3D(ClassifierSpec(2, width=8, stages=2))
    with pytest.raises(ValueError, match="architectures differ"):
        ClassifierEnsemble.of([members[0], other])


def test_config_refuses_a_bad_member_count():
    with pytest.raises(ConfigError, match="classifier_members"):
        WSLSConfig(classifier_members=0)


@pytest.fixture(scope="module")
def cases():
    prepared = []
    for seed, lesions in enumerate(("tumour", (), "tumour")):
        case = make_phantom((64, 64, 48), seed=seed, lesions=lesions).to_case(f"p{seed}")
        prepared.append(preprocess(case, PreprocessConfig(downsample=2.0, pad_to_multiple=4)))
    return prepared


CONFIG = tiny_config(self_training=0)


def _train(cases, out, **changes):
    config = replace(CONFIG, modalities=cases[0].modalities, **changes)
    return train_wsls(cases[:2], out, config, progress=False, log=lambda _: None)


@pytest.fixture(scope="module")
def single(cases, tmp_path_factory):
    return _train(cases, tmp_path_factory.mktemp("single"))


def test_members_train_from_consecutive_seeds_and_survive_the_bundle(cases, single, tmp_path):
    shifted = _train(cases, tmp_path / "seed1", seed=1)
    trio = _train(cases, tmp_path / "three", classifier_members=3)
    assert isinstance(trio.classifier, ClassifierEnsemble)
    assert (tmp_path / "three" / "runs" / "classifier_member3").is_dir()
    first, second, _ = classifier_members(trio.classifier)
    for name, value in single.classifier.state_dict().items():
        assert torch.equal(first.state_dict()[name], value), name  # member 1: seed 0
        assert torch.equal(second.state_dict()[name], shifted.classifier.state_dict()[name])
    loaded = load_models(save_models(trio, tmp_path / "bundle"))
    assert loaded.config.classifier_members == 3
    test = cases[2]
    a = segment_volume(trio.classifier, trio.embedding, test.image, test.brain, trio.config)
    b = segment_volume(loaded.classifier, loaded.embedding, test.image, test.brain, loaded.config)
    assert np.array_equal(a.mask, b.mask)
    assert a.maps.agreement is not None and 0.0 <= a.maps.agreement <= 1.0
    assert a.quality.measures["member_agreement"] == a.maps.agreement
    alone = segment_volume(single.classifier, single.embedding, test.image, test.brain, CONFIG)
    assert alone.maps.agreement is None and "member_agreement" not in alone.quality.measures


def test_the_ensemble_follows_the_agreeing_members_and_flags_dissent(cases, single):
    # without the faint refit, whose maps (and members' agreement) are those of another mixture
    em = replace(single.config.em, faint_lesion_components=None)
    config = replace(single.config, min_lesion_probability=0.0, em=em)
    a = single.classifier
    b = Classifier3D(a.spec)
    with torch.no_grad():  # b: a's class map turned inside out, so its estimate lies elsewhere
        b.load_state_dict(a.state_dict())
        b.cls_weight.neg_()
    test = cases[0]
    x, brain = to_device(test.image, test.brain, torch.device("cpu"))
    maps_a, maps_b = device_maps(a, x, brain, config), device_maps(b, x, brain, config)
    assert not torch.equal(maps_a.acam, maps_b.acam)
    followed = device_maps(ClassifierEnsemble.of([b, a, a]), x, brain, config)
    assert torch.equal(followed.acam, maps_a.acam) and followed.agreement < 0.5
    unanimous = device_maps(ClassifierEnsemble.of([a, a]), x, brain, config)
    assert torch.equal(unanimous.acam, maps_a.acam) and unanimous.agreement == 1.0
    result = segment_volume(
        ClassifierEnsemble.of([b, a, a]), single.embedding, test.image, test.brain, config
    )
    assert result.quality.measures["member_agreement"] == pytest.approx(followed.agreement)
    assert any("classifiers disagree" in f for f in result.quality.flags)


def test_train_command_line_sets_the_member_count():
    from wsls import cli

    args = cli._parser().parse_args(["train", "data", "--out", "run", "--members", "3"])
    assert cli._config(args).classifier_members == 3
    args = cli._parser().parse_args(["train", "data", "--out", "run", "--preset", "ms"])
    assert cli._config(args).classifier_members == 1
