"""The erase test of the quality verdict: the classifier's probability once the mask is gone."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import wsls
from wsls import pretrained
from wsls.data.preprocess import preprocess
from wsls.io.layouts import open_dataset
from wsls.method.config import QualityConfig, WSLSConfig
from wsls.method.erasure import erase, erased_probability, evidence_region
from wsls.method.intensity import intensity_posterior
from wsls.method.quality import assess
from wsls.method.segment import (
    VolumeMaps,
    device_maps,
    segment_on_device,
    segment_volume,
    to_device,
)
from wsls.metrics import dice


def test_erase_fills_the_region_with_the_median_of_the_rest_of_the_brain():
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.standard_normal((2, 10, 9, 8)).astype(np.float32))
    brain = torch.zeros(10, 9, 8, dtype=torch.bool)
    brain[1:9, 1:8, 1:7] = True
    region = torch.zeros_like(brain)
    region[2:5, 2:5, 0:4] = True  # partly outside the brain: those voxels stay as they were
    before = image.clone()
    out = erase(image, brain, region)
    assert torch.equal(image, before)  # a copy
    inside, rest = region & brain, brain & ~region
    for c in range(2):
        assert torch.all(out[c][inside] == before[c][rest].median())
    assert torch.equal(out[:, ~inside], before[:, ~inside])
    assert torch.equal(erase(image, brain, torch.zeros_like(brain)), image)
    assert torch.equal(erase(image, brain, brain), image)  # no tissue left to fill from


def test_the_verdict_flags_a_lesion_left_outside_the_mask():
    brain = torch.ones(12, 12, 12, dtype=torch.bool)
    mask = torch.zeros_like(brain)
    mask[4:8, 4:8, 4:8] = True
    image = torch.zeros(1, 12, 12, 12)
    image[0][mask] = 5.0
    config = QualityConfig()
    for erased in (None, 0.2, config.max_erased_probability):
        quality = assess(mask, brain, image, 0.99, mask, config, erased=erased)
        assert quality.ok, quality.summary()
        assert ("erased_probability" in quality.measures) == (erased is not None)
    for evidence in (None, 0.1):
        quality = assess(mask, brain, image, 0.99, mask, config, erased=0.97, evidence=evidence)
        assert quality.flags == (
            "the classifier still sees a lesion once the mask is erased (probability 0.97)",
        )
        assert quality.measures["erased_probability"] == 0.97
    # all the evidence erased and still a lesion: the classifier cannot vouch for any mask
    quality = assess(mask, brain, image, 0.99, mask, config, erased=0.97, evidence=0.9)
    assert quality.ok, quality.summary()
    assert quality.measures["evidence_erased_probability"] == 0.9


def test_the_evidence_region_is_the_mask_every_hot_voxel_and_the_estimates_they_support():
    config = WSLSConfig()
    cut = config.confident.lesion_map
    brain = torch.ones(3, 8, dtype=torch.bool)
    brain[2, 7] = False
    mask = torch.zeros_like(brain)
    mask[0, 0] = True
    acam, posterior = torch.zeros(3, 8), torch.zeros(3, 8)
    acam[1, 2], acam[1, 5], acam[2, 7] = cut, cut - 0.01, 1.0  # (2, 7) outside the brain
    posterior[1, 1:4] = 0.9  # supported by the hot voxel (1, 2)
    posterior[1, 5] = 0.9  # not supported: its ACAM is under the cut
    after_acam = torch.zeros(3, 8)
    after_acam[2, 4] = 1.0
    maps = [(acam[..., None], posterior[..., None]), (after_acam[..., None], posterior[..., None])]
    region = evidence_region(mask[..., None], maps, brain[..., None], config)[..., 0]
    expected = [(0, 0), (1, 1), (1, 2), (1, 3), (2, 4)]
    assert sorted(map(tuple, torch.nonzero(region).tolist())) == expected


@pytest.fixture(scope="module")
def shipped_case(data_shared):
    """The shipped tumour model, a shared BraTS case prepared for it, and its segmentation."""
    models = wsls.load(pretrained.DEFAULT)
    em = replace(models.config.em, faint_lesion_components=None)  # the erase test alone
    models.config = replace(models.config, second_look=True, em=em)
    config = models.config
    (ref,) = [
        r
        for r in open_dataset(data_shared / "brats2015", "auto", config.modalities)
        if r.id == "brats_2013_pat0003_1"
    ]
    prepared = preprocess(ref.load(), config.preprocess)
    x, b = to_device(prepared.image, prepared.brain, torch.device("cpu"))
    maps = device_maps(models.classifier, x, b, config)
    result = segment_volume(
        models.classifier, models.embedding, prepared.image, prepared.brain, config, maps
    )
    return models, prepared, maps, result


def test_a_mask_on_the_tumour_takes_the_classifier_s_evidence_with_it(shipped_case):
    """On a real scan: erasing the method's mask (Dice > 0.85 on this training case of the
    shipped model) leaves a lesion-free brain to the classifier; erasing half of it, or the
    tumour's mirror image, leaves the tumour, and the classifier still finds it."""
    models, prepared, _, result = shipped_case
    config = models.config
    image = torch.from_numpy(np.ascontiguousarray(prepared.image, dtype=np.float32))
    brain, mask = torch.from_numpy(prepared.brain), torch.from_numpy(result.mask)
    truth = torch.from_numpy(prepared.mask) & brain
    assert dice(result.mask, truth.numpy()) > 0.85
    bound = config.quality.max_erased_probability
    whole = erased_probability(models.classifier, image, brain, mask, config)
    assert whole < bound
    assert result.quality.measures["erased_probability"] == pytest.approx(whole)
    rows = torch.nonzero(mask)[:, 0].double()
    half = mask.clone()
    half[int(torch.quantile(rows, 0.5)) :] = False
    mirror = torch.flip(truth, (0,)) & brain & ~truth
    for wrong in (half, mirror):
        assert erased_probability(models.classifier, image, brain, wrong, config) > bound
    assert "erased" not in result.quality.summary()


def _beside_the_tumour(models, prepared, maps, config):
    """segment_on_device's first arguments with maps that point at the wrong side of the
    brain (the ACAM mirrored, and the intensity posterior it leads to, read at the fit's prior
    ceiling: its prior of 0.9 lets normal tissue in, and the first mask lies there), and the
    tumour."""
    x, b = to_device(prepared.image, prepared.brain, torch.device("cpu"))
    acam = torch.flip(torch.as_tensor(maps.acam), (0,)) * b
    fit = replace(config, em=replace(config.em, decision_ceiling=None))
    wrong = VolumeMaps(acam, maps.cam, maps.probability, intensity_posterior(x, b, acam, fit))
    return (models.embedding, x, b, wrong), prepared.mask & prepared.brain


def test_the_second_look_finds_the_tumour_that_the_first_mask_missed(shipped_case):
    """Maps that point at the wrong side of the brain (the ACAM mirrored, and the intensity
    posterior it leads to) give a mask beside the tumour; with ``second_look`` on, the erase
    test fails it, and the second look, from the classifier's maps of the volume with that mask
    erased, finds the tumour."""
    models, prepared, maps, _ = shipped_case
    config = models.config
    args, truth = _beside_the_tumour(models, prepared, maps, config)
    first = segment_on_device(*args, replace(config, second_look=False), models.classifier)
    assert bool(first.mask.any()) and dice(first.mask.numpy(), truth) < 0.1
    assert "erased_probability" not in first.quality.measures  # off: no erase test
    unjudged = segment_on_device(*args, config)  # no classifier: no erase test, no second look
    assert torch.equal(unjudged.mask, first.mask)
    assert "erased_probability" not in unjudged.quality.measures
    second = segment_on_device(*args, config, models.classifier)
    assert dice(second.mask.numpy(), truth) > 0.85
    assert second.quality.measures["erased_probability"] < config.quality.max_erased_probability
    assert second.quality.measures["probability"] == maps.probability  # the scan's, as before


def test_a_first_look_that_finds_nothing_is_tested_on_its_evidence(shipped_case):
    """Maps whose ACAM points at the wrong side of the brain and whose intensity model finds no
    lesion there give no seed and an empty first mask; the erase test then erases what the
    evidence pointed at, the classifier still sees the tumour, and the second look finds it."""
    models, prepared, maps, _ = shipped_case
    config = models.config
    (embedding, x, b, wrong), truth = _beside_the_tumour(models, prepared, maps, config)
    nothing = replace(wrong, posterior=torch.zeros_like(wrong.posterior))
    first = segment_on_device(embedding, x, b, nothing, replace(config, second_look=False))
    assert not bool(first.mask.any()) and "empty mask" in first.quality.flags
    second = segment_on_device(embedding, x, b, nothing, config, models.classifier)
    assert dice(second.mask.numpy(), truth) > 0.85
    assert second.quality.measures["erased_probability"] < config.quality.max_erased_probability


def test_keep_all_adds_the_second_look_to_the_first_mask(shipped_case):
    """With ``keep="all"`` (several lesions), the second look's mask joins the first."""
    models, prepared, maps, _ = shipped_case
    config = replace(models.config, keep="all")
    args, truth = _beside_the_tumour(models, prepared, maps, config)
    first = segment_on_device(*args, replace(config, second_look=False), models.classifier)
    both = segment_on_device(*args, config, models.classifier)
    assert bool(first.mask.any()) and torch.all(both.mask[first.mask])
    added = (both.mask & ~first.mask).numpy()
    assert dice(added, truth) > 0.85


class _SureEverywhere(torch.nn.Module):
    """A classifier that finds a lesion in any window: the shipped one, its logits raised."""

    def __init__(self, classifier):
        super().__init__()
        self.inner, self.spec = classifier, classifier.spec

    def forward(self, x):
        out = self.inner(x)
        return out._replace(logits=out.logits + 20.0)


def test_a_classifier_that_cannot_vouch_leaves_the_erase_test_unread(shipped_case):
    """A classifier still sure of a lesion once all it points at is erased: the erase test
    fails the mask on the tumour, but the verdict does not read it, and no second look runs."""
    models, prepared, maps, result = shipped_case
    config = models.config
    x, b = to_device(prepared.image, prepared.brain, torch.device("cpu"))
    sure = _SureEverywhere(models.classifier)
    judged = segment_on_device(models.embedding, x, b, maps.to(x.device), config, sure)
    assert torch.equal(judged.mask, torch.as_tensor(result.mask))  # no second look
    measures = judged.quality.measures
    assert measures["erased_probability"] > config.quality.max_erased_probability
    assert measures["evidence_erased_probability"] > config.quality.max_erased_probability
    assert judged.quality.flags == result.quality.flags


def test_a_mask_that_barely_stands_out_is_segmented_again_with_two_lesion_gaussians(
    shipped_case,
):
    """Where the verdict would flag the first mask for its contrast, the volume is segmented
    again with ``faint_lesion_components`` lesion Gaussians: the mask, maps and verdict of that
    mixture from the start; where it would not, the first mask stays."""
    models, prepared, _, _ = shipped_case
    x, b = to_device(prepared.image, prepared.brain, torch.device("cpu"))
    em = replace(models.config.em, lesion_components=1, faint_lesion_components=2)
    one = replace(models.config, em=em)

    def segmented(config):
        maps = device_maps(models.classifier, x, b, config)
        return segment_on_device(models.embedding, x, b, maps, config, models.classifier)

    def bound(config, min_contrast):
        return replace(config, quality=replace(config.quality, min_contrast=min_contrast))

    never = segmented(replace(one, em=replace(one.em, faint_lesion_components=None)))
    two = replace(one, em=replace(one.em, lesion_components=2, faint_lesion_components=None))
    direct = segmented(bound(two, 100.0))
    flagged = segmented(bound(one, 100.0))  # every mask barely stands out
    assert torch.equal(flagged.mask, direct.mask)
    assert torch.equal(flagged.maps.posterior, direct.maps.posterior)
    assert flagged.quality.measures == direct.quality.measures
    assert not torch.equal(flagged.maps.posterior, never.maps.posterior)
    standing = segmented(bound(one, -100.0))  # none does
    assert torch.equal(standing.mask, never.mask)
