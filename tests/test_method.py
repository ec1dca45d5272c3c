"""The method's non-network steps: intensity EM, confident voxels, seeds, region growing,
post-processing, and the configuration's round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsls.method.confident import (
    cut_thin_bridges,
    precision,
    select_confident,
    supported_lesion,
)
from wsls.method.config import (
    ConfidentConfig,
    EMConfig,
    QualityConfig,
    RegionConfig,
    StageSchedule,
    WSLSConfig,
    paper_variant,
)
from wsls.method.intensity import intensity_posterior, lesion_posterior
from wsls.method.postprocess import postprocess
from wsls.method.presets import preset_config
from wsls.method.quality import assess
from wsls.method.regions import segment_regions
from wsls.method.seeds import spread_seeds
from wsls.method.segment import (
    VolumeMaps,
    drawn_by_intensity,
    growth_region,
    segment_on_device,
)
from wsls.metrics import dice


def ball(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


@pytest.fixture
def scene():
    """A brain with three normal intensities, a bright lesion, and a map that hits only the
    lesion's edge (as CAMs do)."""
    rng = np.random.default_rng(0)
    shape = (32, 32, 24)
    brain = ball(shape, (16, 16, 12), 14)
    tissue = rng.integers(0, 3, shape)
    flair = np.choose(tissue, [-1.0, 0.0, 0.6]) + 0.15 * rng.standard_normal(shape)
    lesion = ball(shape, (12, 18, 12), 5)
    flair[lesion] = 2.5 + 0.15 * rng.standard_normal(lesion.sum())
    other = rng.standard_normal(shape)  # a modality that does not show the lesion
    image = np.stack([flair, other]).astype(np.float32) * brain
    weak = ball(shape, (9, 18, 12), 3).astype(np.float32)
    return image, brain, lesion, weak


def em(image, brain, weak, config=None) -> np.ndarray:
    """The (torch) intensity model on numpy inputs, its posterior back as numpy."""
    T = torch.from_numpy
    return lesion_posterior(T(image), T(brain), T(weak), config).numpy()


def three_tissues(seed: int, noise: float):
    """A random generator and a (40, 40, 32) ball brain's FLAIR: three normal tissues (-1, 0,
    0.6) with Gaussian noise of standard deviation ``noise``."""
    rng = np.random.default_rng(seed)
    shape = (40, 40, 32)
    flair = np.choose(rng.integers(0, 3, shape), [-1.0, 0.0, 0.6])
    flair = flair + noise * rng.standard_normal(shape)
    return rng, ball(shape, (20, 20, 16), 18), flair


def lesion_estimate(image, brain, weak, **em_changes) -> np.ndarray:
    """Where the intensity model on FLAIR alone says lesion (posterior >= 0.5), with the
    ``EMConfig`` settings ``em_changes``."""
    from dataclasses import replace

    config = WSLSConfig(modalities=("flair",))
    config = replace(config, em=replace(config.em, **em_changes))
    T = torch.from_numpy
    return intensity_posterior(T(image), T(brain), T(weak), config).numpy() >= 0.5


def test_em_posterior_recovers_lesion_from_edge_map(scene):
    image, brain, lesion, weak = scene
    post = em(image, brain, weak)
    assert dice(post >= 0.5, lesion) > 0.9
    assert post[~brain].max() == 0
    # fitted on a sixth of the brain voxels, the posterior of every voxel barely moves
    sub = em(image, brain, weak, EMConfig(fit_voxels=int(brain.sum()) // 6))
    assert dice(sub >= 0.5, post >= 0.5) > 0.97
    # on the second modality alone, intensity says nothing: the posterior stays near the prior
    noise = em(image, brain, weak, EMConfig(channels=(1,)))
    assert dice(noise >= 0.5, lesion) < 0.5


@pytest.mark.parametrize(
    "config, levels",
    [
        pytest.param(EMConfig(), None, id="one-channel"),
        pytest.param(EMConfig(channels="all", lesion_components=2), None, id="two-channels"),
        pytest.param(EMConfig(fit_voxels=3000), None, id="subsample"),
        # too few hot voxels: split at the median
        pytest.param(EMConfig(seed_high=1.0), None, id="median-split"),
        # a raw scan's few hundred values, z-scored: the posterior computed once per value, and
        # EM fits the voxels alike (same value, prior at its floor or ceiling) once
        pytest.param(EMConfig(), 40, id="integer-intensities"),
    ],
)
def test_torch_em_matches_the_numpy_em_it_replaced(scene, config, levels):
    """The same mixture as wsls's numpy EM (tests/numpy_em.py): float64 statistics on both
    sides, so the posteriors differ by float32 rounding of the output only."""
    from numpy_em import lesion_posterior as numpy_posterior

    image, brain, _, weak = scene
    if levels is not None:
        image = (np.round(image * levels) / levels).astype(np.float32)
    ours, theirs = em(image, brain, weak, config), numpy_posterior(image, brain, weak, config)
    assert np.abs(ours - theirs).max() < 1e-5
    assert np.array_equal(ours >= 0.5, theirs >= 0.5)


def test_em_groups_voxels_alike_only_where_the_prior_is_clipped():
    from wsls.method.intensity import _alike_voxels

    row = torch.tensor([3, 3, 1, 3, 1, 1, 0, 3])
    floor = torch.tensor([1, 1, 1, 0, 0, 0, 0, 1], dtype=torch.bool)
    ceiling = torch.tensor([0, 0, 0, 1, 1, 0, 0, 0], dtype=torch.bool)
    first, count = _alike_voxels(row, floor, ceiling)
    pairs = zip(first.tolist(), count.tolist(), strict=True)
    groups = {(int(row[f]), bool(floor[f]), bool(ceiling[f])): int(c) for f, c in pairs}
    # value 3 at the floor three times; 1 at the floor, 3 and 1 at the ceiling once each; the
    # voxels in between (positions 5 and 6) alone, whatever their value
    assert groups == {
        (3, True, False): 3,
        (1, True, False): 1,
        (3, False, True): 1,
        (1, False, True): 1,
        (1, False, False): 1,
        (0, False, False): 1,
    }
    assert count.dtype == torch.float64 and int(count.sum()) == len(row)
    assert sorted(first.tolist())[:2] == [0, 2]  # a group's first voxel stands for it


def test_a_brain_too_small_to_fit_gets_a_posterior_of_no_lesion():
    image = torch.rand(1, 6, 6, 6) + 3.0
    brain = torch.zeros(6, 6, 6, dtype=torch.bool)
    brain[1:4, 1:3, 1:4] = True  # 18 voxels: under the 20 a mixture needs
    weak = torch.ones(6, 6, 6)
    for post in (
        lesion_posterior(image, brain, weak),
        intensity_posterior(image, brain, weak, WSLSConfig()),
    ):
        assert post.shape == brain.shape and post.dtype == torch.float32
        assert not bool(post.any())
    brain[4, 1:3, 1] = True  # 20 voxels, all hot in the map: lesion somewhere
    assert bool(lesion_posterior(image, brain, weak).any())


def test_supported_lesion_and_refined_rule(scene):
    image, brain, lesion, weak = scene
    post = em(image, brain, weak)
    support = supported_lesion(weak, brain, post, ConfidentConfig())
    assert dice(support, lesion) > 0.9
    sel = select_confident(weak, brain, post, ConfidentConfig(budget=500))
    stats = precision(sel, lesion)
    assert stats["lesion_precision"] > 0.95 and stats["normal_precision"] > 0.95
    assert stats["lesion_voxels"] == 500 and stats["normal_voxels"] == 500
    assert brain[tuple(sel.coords.T)].all()
    with pytest.raises(ValueError, match="needs the EM posterior"):
        select_confident(weak, brain, None, ConfidentConfig())


@pytest.mark.parametrize("kind", ["numpy", "tensor"])
def test_thin_bridges_are_cut_from_the_support(kind):
    shape = (48, 24, 24)
    lesion = ball(shape, (12, 12, 12), 7)
    ribbon = np.zeros(shape, bool)
    ribbon[19:44, 11:13, 6:18] = True  # a 2-voxel sheet from the lesion on
    elsewhere = ball(shape, (40, 12, 12), 3)  # a blob at the sheet's far end
    support = lesion | ribbon | elsewhere
    weak = np.where(ball(shape, (12, 12, 12), 3), 1.0, 0.0).astype(np.float32)
    wrap = (lambda a: a) if kind == "numpy" else torch.from_numpy
    cut = cut_thin_bridges(wrap(support), wrap(weak), ConfidentConfig(), radius=2)
    assert type(cut) is type(wrap(support))
    cut = np.asarray(cut)
    assert cut[lesion].all() and not cut[elsewhere].any()
    assert cut[ribbon].sum() < 0.2 * ribbon.sum() and not (cut & ~support).any()
    whole = cut_thin_bridges(wrap(support), wrap(weak), ConfidentConfig(), radius=0)
    assert np.array_equal(np.asarray(whole), support)
    thin = np.asarray(cut_thin_bridges(wrap(ribbon), wrap(weak), ConfidentConfig(), radius=2))
    assert np.array_equal(thin, ribbon)  # nothing survives the opening: kept whole


def test_paper_rule_thresholds(scene):
    _, brain, _, weak = scene
    sel = select_confident(weak * 0.5, brain, None, ConfidentConfig.paper(budget=10_000))
    values = (weak * 0.5)[tuple(sel.coords.T)]
    assert np.all(values[sel.labels == 1] >= 0.1) and np.all(values[sel.labels == 0] <= 0.01)


def test_paper_variant_keeps_the_classifier_as_training_left_it():
    config = WSLSConfig()
    paper = paper_variant(config)
    assert config.classifier_batch_norm > 0 and paper.classifier_batch_norm == 0
    assert paper.confident == ConfidentConfig.paper(config.confident.budget)
    assert (paper.self_training, paper.second_look, paper.embedding.kind) == (0, False, "unet")
    assert paper.em.decision_ceiling is None
    assert paper_variant(paper) == paper


def test_spread_seeds_cover_blobs():
    a = np.argwhere(ball((40, 40, 10), (8, 8, 5), 3))
    b = np.argwhere(ball((40, 40, 10), (30, 30, 5), 3))
    coords = np.concatenate([a, b])
    weights = np.r_[np.ones(len(a)), 0.5 * np.ones(len(b))]
    seeds = spread_seeds(coords, weights, 4)
    assert len(seeds) == 4 and tuple(seeds[0]) == tuple(a[0])
    near_b = np.abs(seeds - np.array([30, 30, 5])).max(1) <= 3
    assert near_b.any() and not near_b.all()
    assert spread_seeds(coords[:0], weights[:0], 4).shape == (0, 3)


def test_segment_regions_picks_lambda_by_the_estimate(scene):
    image, brain, lesion, weak = scene
    emb = torch.from_numpy(np.stack([image[0], 0 * image[0]]).astype(np.float32))
    post = torch.from_numpy(em(image, brain, weak))
    seeds = torch.from_numpy(np.argwhere(lesion)[:5])
    brain_t = torch.from_numpy(brain)
    regions = segment_regions(emb, seeds, post, brain_t, RegionConfig(), (post >= 0.5) & brain_t)
    assert dice(regions.mask.numpy(), lesion) > 0.9
    fixed = segment_regions(emb, seeds, post, brain_t, RegionConfig(threshold=0.999))
    assert fixed.threshold == 0.999 and fixed.mask.sum() < lesion.sum()
    empty = segment_regions(emb, seeds[:0], post, brain_t, RegionConfig(threshold=0.9))
    assert not empty.mask.any() and len(empty.kept) == 0


def test_regions_grown_on_the_growth_box_are_those_of_the_whole_volume():
    """segment_regions grows on the bounding box of ``grow``: the same mask, scores, kept
    candidates and lambda as on the whole volume, with a target reaching beyond the box (the
    Dice that picks lambda counts all of it), and no crop when a seed lies outside ``grow``."""
    from wsls.method.regions import _segment_regions

    shape, centre = (32, 32, 24), (12, 18, 12)
    radius = np.sqrt(sum((g - c) ** 2 for g, c in zip(np.indices(shape), centre, strict=True)))
    emb = torch.from_numpy(np.stack([0.2 * radius, 0 * radius]).astype(np.float32))
    evidence = torch.from_numpy(np.exp(-radius / 8).astype(np.float32))
    grow = torch.from_numpy(ball(shape, centre, 7))
    target = torch.from_numpy(ball(shape, (16, 18, 12), 5))  # two voxels beyond the box
    seeds, config = torch.tensor([centre]), RegionConfig()
    whole = _segment_regions(emb, seeds, evidence, grow, config, target)
    boxed = segment_regions(emb, seeds, evidence, grow, config, target)
    assert whole.threshold == boxed.threshold
    for got, want in zip(boxed[:4], whole[:4], strict=True):
        assert torch.equal(got, want)
    box = (slice(5, 20), slice(11, 26), slice(5, 20))
    box_part = (emb[:, 5:20, 11:26, 5:20], seeds - torch.tensor([5, 11, 5]), evidence[box])
    without_the_rest = _segment_regions(*box_part, grow[box], config, target[box])
    assert without_the_rest.threshold != whole.threshold  # the rest of the target counts
    outside = torch.tensor([centre, (25, 18, 12)])  # the second seed is off the growth region
    beside = segment_regions(emb, outside, evidence, grow, config, target)
    assert torch.equal(
        beside.mask, _segment_regions(emb, outside, evidence, grow, config, target).mask
    )


def test_postprocess_fills_holes_and_drops_specks():
    brain = np.ones((20, 20, 20), bool)
    shell = ball(brain.shape, (10, 10, 10), 6) & ~ball(brain.shape, (10, 10, 10), 3)
    speck = np.zeros_like(brain)
    speck[1, 1, 1] = True
    config = WSLSConfig(min_component=5)
    out = postprocess(shell | speck, brain, config)
    assert out[10, 10, 10] and not out[1, 1, 1]


def test_strongest_component_is_the_one_the_classifier_points_at():
    brain = np.ones((30, 30, 30), bool)
    big, small = ball(brain.shape, (8, 8, 8), 6), ball(brain.shape, (22, 22, 22), 4)
    acam = 0.9 * ball(brain.shape, (22, 22, 22), 3)  # hot on the smaller blob only
    out = postprocess(big | small, brain, WSLSConfig(keep="strongest"), acam)
    assert np.array_equal(out, small)
    every = postprocess(big | small, brain, WSLSConfig(keep="all"), acam)
    assert np.array_equal(every, big | small)


def test_growth_stays_near_the_supported_estimate():
    brain = np.ones((30, 30, 30), bool)
    support = ball(brain.shape, (15, 15, 15), 5)
    region = growth_region(brain, support, 3)
    assert region[support].all() and region[15, 15, 23] and not region[15, 15, 24]
    assert growth_region(brain, support, None) is brain
    assert growth_region(brain, np.zeros_like(brain), 3) is brain  # no estimate: no bound


def test_the_intensity_model_draws_the_boundary_of_the_grown_regions():
    """With ``boundary_band``, the mask is the lesion estimate within that many voxels of the
    regions: a region grown past the lesion is cut back to it, a lesion edge the region fell
    short of by up to the band is taken, and an estimate far from every region stays out."""
    shape = (40, 40, 30)
    lesion = ball(shape, (14, 20, 15), 6)
    elsewhere = ball(shape, (32, 20, 15), 3)  # bright tissue no region reached
    grown = ball(shape, (14, 20, 15), 8) & ~ball(shape, (8, 20, 15), 1)  # blurred, a bay
    estimate = torch.from_numpy(lesion | elsewhere)
    drawn = drawn_by_intensity(torch.from_numpy(grown), estimate, 2).numpy()
    assert np.array_equal(drawn, lesion)
    cut = drawn_by_intensity(torch.from_numpy(grown), estimate, 0).numpy()
    assert np.array_equal(cut, lesion & grown) and not cut[8, 20, 15]
    assert np.array_equal(drawn_by_intensity(torch.from_numpy(grown), estimate, None), grown)


def test_the_method_segments_with_the_intensity_models_boundary_where_asked(scene):
    """Regions grown on an embedding that sees FLAIR blurred (as the appearance model's
    smoothed scales) spill past the lesion; with ``boundary_band`` the mask keeps to the
    intensity model's estimate and draws the lesion."""
    from dataclasses import replace

    from torch import nn

    class Blurred(nn.Module):
        def forward(self, x):
            blur = nn.functional.avg_pool3d(x[:, :1], 5, stride=1, padding=2)
            return torch.cat([blur, torch.ones_like(blur)], 1)

    image, brain, lesion, weak = (torch.from_numpy(a) for a in scene)
    posterior = torch.from_numpy(em(*scene[:2], scene[3]))
    estimate = posterior.numpy() >= 0.5
    maps = VolumeMaps(weak, weak, 0.99, posterior)
    masks = {}
    for band in (None, 2):
        config = WSLSConfig()
        config = replace(config, regions=replace(config.regions, boundary_band=band))
        masks[band] = segment_on_device(Blurred(), image, brain, maps, config).mask.numpy()
    lesion = lesion.numpy()
    assert (masks[None] & ~estimate).sum() > 10
    assert not (masks[2] & ~estimate).any()
    assert dice(masks[2], lesion) > max(dice(masks[None], lesion), 0.98)


def test_quality_flags_unreliable_segmentations(scene):
    image, brain, lesion, _ = scene
    image, brain, lesion = (torch.from_numpy(a) for a in (image, brain, lesion))
    config = QualityConfig()
    good = assess(lesion, brain, image, 0.99, lesion, config)
    assert good.ok and good.summary() == "ok" and good.measures["contrast"] > 2
    shifted = torch.roll(lesion, 8, dims=0) & brain  # normal tissue: no contrast
    bad = assess(shifted, brain, image, 0.6, lesion, config)
    assert not bad.ok and bad.verdict == "check"
    text = bad.summary()
    for reason in ("unsure", "barely differs"):
        assert reason in text, text
    huge = assess(brain, brain, image, 0.99, lesion, config)
    assert "covers 100 % of the brain" in huge.summary() and "times the evidence" in huge.summary()


def test_quality_flags_a_mask_too_small_for_the_lesion_type(scene):
    image, brain, lesion, _ = scene
    image, brain, lesion = (torch.from_numpy(a) for a in (image, brain, lesion))
    share = int(lesion.sum()) / int(brain.sum())
    above = assess(lesion, brain, image, 0.99, lesion, QualityConfig(min_brain_fraction=share))
    assert above.ok and above.measures["brain_fraction"] == pytest.approx(share)
    bound = 1.01 * share
    small = QualityConfig(min_brain_fraction=bound)
    below = assess(lesion, brain, image, 0.99, lesion, small)
    assert below.flags == (
        f"the mask covers only {100 * share:.2f} % of the brain, less than a lesion of this "
        f"kind ({100 * bound:.2g} %)",
    )
    empty = assess(torch.zeros_like(lesion), brain, image, 0.99, lesion, small)
    assert not any("covers only" in f for f in empty.flags)  # "empty mask" says it


def test_only_the_tumour_preset_bounds_mask_size_and_recomputes_the_classifier_batch_norm():
    tumour = preset_config("tumour")
    assert tumour.classifier_batch_norm == WSLSConfig().classifier_batch_norm > 0
    assert tumour.quality.min_brain_fraction > 0.0
    for name in ("ms", "stroke"):
        config = preset_config(name)
        assert config.classifier_batch_norm == 0 and config.quality.min_brain_fraction == 0.0


def test_quality_flags_a_mask_that_leaves_out_most_of_the_supported_estimate(scene):
    """The evidence supports a second, larger lesion that the mask does not hold: the mask
    itself is bright and plausible, so only the share of the estimate it holds gives it away."""
    image, brain, lesion, _ = scene
    elsewhere = ball(lesion.shape, (22, 9, 12), 6) & brain
    assert not (elsewhere & lesion).any()
    image = image.copy()
    image[0][elsewhere] = image[0][lesion].mean()  # a second lesion, as bright as the first
    support = lesion | elsewhere
    image, brain, lesion, support = (torch.from_numpy(a) for a in (image, brain, lesion, support))
    config = QualityConfig()
    part = assess(lesion, brain, image, 0.99, support, config)
    held = int(lesion.sum()) / int(support.sum())
    assert held < config.min_support_in_mask
    assert part.measures["support_in_mask"] == pytest.approx(held)
    assert part.flags == (
        f"the mask holds only {100 * held:.0f} % of the evidence-supported estimate",
    )
    whole = assess(support, brain, image, 0.99, support, config)
    assert whole.ok and whole.measures["support_in_mask"] == 1.0
    assert assess(lesion, brain, image, 0.99, None, config).ok  # the paper's rule: no estimate


def test_no_lesion_found_is_flagged(scene):
    """Under min_lesion_probability the mask is empty, and the verdict says to check it (on a
    scan with a lesion that is a miss)."""
    image, brain, lesion, weak = (torch.from_numpy(a) for a in scene)
    maps = VolumeMaps(weak, weak, 0.29, lesion.float())
    result = segment_on_device(None, image, brain, maps, WSLSConfig())
    assert not result.mask.any() and result.regions is None
    text = result.quality.summary()
    assert text.startswith("check") and "empty mask" in text and "0.29" in text, text


def test_config_round_trip():
    config = WSLSConfig(modalities=("flair", "t1"), classifier=StageSchedule(2, 64))
    again = WSLSConfig.from_dict(config.to_dict())
    assert again == config
    with pytest.raises(ValueError, match="unknown settings"):
        WSLSConfig.from_dict({"modalitys": ["flair"]})


def test_a_setting_an_old_bundle_lacks_takes_its_presets_value():
    from wsls.method.presets import preset_config, saved_config

    for name in ("tumour", "ms"):
        saved = preset_config(name).to_dict()
        del saved["regions"]["bridge_radius"]  # written before the setting existed
        assert saved_config(saved) == preset_config(name)
    assert saved_config({"preset": "ms"}).regions.bridge_radius == 0
    assert saved_config({}).regions.bridge_radius == 2
    with pytest.raises(ValueError, match="unknown settings"):
        saved_config({"preset": "ms", "modalitys": ["flair"]})


def test_a_bundle_saved_before_window_edge_keeps_the_windows_it_was_trained_with():
    from dataclasses import replace

    from wsls.method.config import paper_variant
    from wsls.method.presets import saved_config

    assert preset_config("tumour").window_edge == 3
    assert preset_config("ms").window_edge == preset_config("stroke").window_edge == 0
    assert paper_variant(preset_config("tumour")).window_edge == 0
    saved = preset_config("tumour").to_dict()
    assert saved_config(saved).window_edge == 3
    del saved["window_edge"]  # a bundle trained before the setting existed saw the whole brain
    assert saved_config(saved) == replace(preset_config("tumour"), window_edge=0)


def test_the_bias_field_is_removed_at_segmentation_only_and_by_the_tumour_preset_only():

    from wsls.method.config import paper_variant
    from wsls.method.presets import saved_config

    assert preset_config("tumour").em.bias_order == 2
    assert preset_config("ms").em.bias_order == preset_config("stroke").em.bias_order == 0
    assert paper_variant(preset_config("tumour")).em.bias_order == 0
    # segmentation only: a bundle saved before the setting existed takes its preset's value
    for name in ("tumour", "ms"):
        saved = preset_config(name).to_dict()
        del saved["em"]["bias_order"], saved["em"]["bias_exclude"]
        assert saved_config(saved) == preset_config(name)
    with pytest.raises(ValueError, match="bias_order"):
        EMConfig(bias_order=5)
    with pytest.raises(ValueError, match="bias_exclude"):
        EMConfig(bias_exclude=0.0)


def test_two_lesion_gaussians_draw_a_lesion_of_two_intensities():
    # half the lesion far brighter than the brain, half barely above its brightest tissue (0.6):
    # one lesion Gaussian centres between them and leaves the faint half to normal tissue
    rng, brain, flair = three_tissues(0, 0.2)
    lesion = ball(flair.shape, (20, 20, 16), 9) & brain
    bright = lesion & (rng.random(flair.shape) < 0.5)
    flair[lesion] = 1.0 + 0.2 * rng.standard_normal(int(lesion.sum()))
    flair[bright] = 6.0 + 0.2 * rng.standard_normal(int(bright.sum()))
    weak = ball(flair.shape, (20, 20, 16), 7).astype(np.float32)
    image = flair[None].astype(np.float32)
    found = {n: lesion_estimate(image, brain, weak, lesion_components=n) for n in (1, 2)}
    assert dice(found[1], lesion) < 0.85
    assert found[1][bright].mean() > 0.99
    assert dice(found[2], lesion) > 0.92


def test_faint_lesions_get_two_gaussians_at_segmentation_only_in_every_preset():
    from wsls.method.config import paper_variant
    from wsls.method.presets import saved_config

    for name in ("tumour", "ms", "stroke"):
        em = preset_config(name).em
        assert (em.lesion_components, em.faint_lesion_components) == (1, 2)
        saved = preset_config(name).to_dict()
        del saved["em"]["faint_lesion_components"]  # saved before it existed: the preset's
        assert saved_config(saved) == preset_config(name)
    assert paper_variant(preset_config("tumour")).em.faint_lesion_components is None
    with pytest.raises(ValueError, match="faint_lesion_components"):
        EMConfig(faint_lesion_components=0)


def test_only_the_ms_preset_lets_the_intensity_model_draw_the_boundary_at_segmentation():
    from wsls.method.presets import saved_config

    assert preset_config("ms").regions.boundary_band == 2
    assert preset_config("tumour").regions.boundary_band is None
    assert preset_config("stroke").regions.boundary_band is None
    assert paper_variant(preset_config("ms")).regions.boundary_band is None
    for name in ("tumour", "ms"):
        saved = preset_config(name).to_dict()
        del saved["regions"]["boundary_band"]  # saved before it existed: the preset's
        assert saved_config(saved) == preset_config(name)
    with pytest.raises(ValueError, match="boundary_band"):
        RegionConfig(boundary_band=-1)


def test_otsu_threshold_splits_two_modes():
    from wsls.training.pipeline import otsu_threshold

    rng = np.random.default_rng(0)
    low, high = rng.normal(0.1, 0.02, 5000), rng.normal(0.7, 0.05, 500)
    t = otsu_threshold(np.r_[low, high])
    assert np.mean(low >= t) < 0.01 and np.all(high >= t)


@pytest.fixture
def core_scene():
    """A map on a bright core at a lesion's edge; the rest of the lesion only moderately bright;
    a look-alike blob the map never hits."""
    rng, brain, flair = three_tissues(0, 0.2)
    shape = brain.shape
    lesion, core = ball(shape, (14, 22, 16), 9), ball(shape, (11, 22, 16), 3)
    distractor = ball(shape, (30, 12, 16), 3)
    for region, mean, sd in ((lesion, 1.6, 0.4), (core, 3.0, 0.2), (distractor, 1.6, 0.4)):
        flair[region] = mean + sd * rng.standard_normal(region.sum())
    image = (flair[None] * brain).astype(np.float32)
    weak = ball(shape, (8, 22, 16), 3).astype(np.float32)
    return image, brain, lesion, distractor, weak


def test_support_refinement_grows_the_prior_over_the_whole_lesion(core_scene):
    """One fit keeps the core; refitting with the supported estimate as prior takes the whole
    lesion, and the look-alike blob stays out."""
    from dataclasses import replace

    image, brain, lesion, distractor, weak = core_scene
    config = WSLSConfig(modalities=("flair",))
    found = {}
    for rounds in (0, config.em.support_rounds):
        # no field removed: a lesion an eighth of the brain that the map barely touches would
        # be partly taken for one (EMConfig.bias_exclude)
        c = replace(config, em=replace(config.em, support_rounds=rounds, bias_order=0))
        T = torch.from_numpy
        post = intensity_posterior(T(image), T(brain), T(weak), c)
        found[rounds] = supported_lesion(weak, brain, post.numpy(), c.confident)
    assert dice(found[0], lesion) < 0.5
    assert dice(found[config.em.support_rounds], lesion) > 0.95
    assert not found[config.em.support_rounds][distractor].any()


def test_the_refined_prior_is_smoothed_as_the_whole_map_would_be(core_scene):
    """Each support round's prior, max(ACAM, support), is smoothed as the smoothed ACAM plus
    what the support adds to it: the posterior is the one of smoothing the whole map, to float
    rounding."""
    from dataclasses import replace

    from wsls.method.intensity import BrainVoxels, _fit, _read, _smoothed

    image, brain, _, _, weak = core_scene
    T = torch.from_numpy
    x, b, acam = T(image), T(brain), T(weak).float()
    config = WSLSConfig(modalities=("flair",))
    config = replace(config, em=replace(config.em, support_tolerance=0.0, bias_order=0))
    voxels, prior, rounds = BrainVoxels(x, b), acam, []
    for _ in range(config.em.support_rounds + 1):  # every round: the tolerance is zero
        mixture = _fit(voxels, _smoothed(prior, config.em), config.em)
        posterior = mixture.posterior()
        support = supported_lesion(acam, b, posterior, config.confident)
        rounds.append(int(support.sum()))
        prior = torch.maximum(acam, support.float())
    assert rounds[-1] > rounds[0]  # the support grew the prior
    whole = _read(mixture, posterior, config.em.decision_ceiling)
    assert torch.allclose(intensity_posterior(x, b, acam, config), whole, atol=1e-5)


def test_the_decision_ceiling_caps_only_the_prior_the_posterior_is_read_with(scene):
    from wsls.method.intensity import BrainVoxels, _fit, _read, _smoothed

    image, brain, _, weak = scene
    voxels = BrainVoxels(torch.from_numpy(image), torch.from_numpy(brain))
    # on the modality that does not show the lesion, posteriors stay away from 0 and 1
    config = EMConfig(channels=(1,))
    mixture = _fit(voxels, _smoothed(torch.from_numpy(weak), config), config)
    whole, capped = mixture.posterior().double(), mixture.posterior(0.5).double()
    prior = torch.zeros(brain.shape, dtype=torch.float64)
    prior.view(-1)[voxels.index] = mixture.prior
    inside = torch.from_numpy(brain) & (whole > 1e-3) & (whole < 1 - 1e-3)
    logit = lambda p: torch.log(p) - torch.log1p(-p)  # noqa: E731
    shift = (logit(prior.clamp(max=0.5)) - logit(prior))[inside]
    assert (prior[inside] > 0.5).any() and (prior[inside] < 0.5).any()
    assert torch.allclose(logit(capped[inside]) - logit(whole[inside]), shift, atol=1e-3)
    assert torch.equal(capped[prior <= 0.5], whole[prior <= 0.5])
    assert (capped <= whole).all()
    # the method's reading: the capped posterior decides; a voxel it keeps keeps the fit's
    read, kept = _read(mixture, mixture.posterior(), 0.5), capped >= 0.5
    assert kept.any() and (~kept & torch.from_numpy(brain)).any()
    assert torch.equal(read[kept].double(), whole[kept])
    assert torch.equal(read[~kept].double(), capped[~kept])


def test_a_map_wider_than_the_lesion_lets_intensity_draw_its_boundary():
    """A map hot over a lesion and its margin of normal tissue gives the margin a prior of 0.9:
    read with it, normal voxels a little brighter than their class enter the estimate; read
    with the decision ceiling (0.5), only voxels likelier lesion than normal do."""
    rng, brain, flair = three_tissues(0, 0.15)
    shape = brain.shape
    lesion = ball(shape, (14, 22, 16), 7)
    flair[lesion] = 2.0 + 0.5 * rng.standard_normal(lesion.sum())
    margin = ball(shape, (14, 22, 16), 10) & ~lesion
    image = (flair[None] * brain).astype(np.float32)
    weak = ball(shape, (14, 22, 16), 9).astype(np.float32)
    found = {c: lesion_estimate(image, brain, weak, decision_ceiling=c) for c in (None, 0.5)}
    assert EMConfig().decision_ceiling == 0.5
    assert found[0.5][margin].mean() < 0.5 * found[None][margin].mean()
    assert found[0.5][lesion].mean() > 0.97
    assert dice(found[0.5], lesion) > dice(found[None], lesion) + 0.03


@pytest.fixture
def field_scene():
    """A brain of three tissues with a dim lesion (as a tumour's edema on FLAIR), a quadratic
    bias field that lifts the lesion's side of the brain to the lesion's brightness, and a map
    on the lesion."""
    rng, brain, flair = three_tissues(1, 0.15)
    shape = brain.shape
    lesion = ball(shape, (12, 20, 16), 6)
    flair[lesion] = 1.3 + 0.2 * rng.standard_normal(lesion.sum())
    i, j, _ = np.indices(shape) / 20.0 - 1.0
    field = 0.6 * i**2 - 0.8 * i + 0.3 * j  # +1.4 on the lesion's side, -0.2 across the brain
    image = ((flair + field)[None] * brain).astype(np.float32)
    weak = ball(shape, (12, 20, 16), 4).astype(np.float32)
    return image, brain, lesion, field, weak


def test_a_polynomial_field_is_recovered_and_centred(field_scene):
    """Fitted where the lesion is left out (as the map leaves it out), the field removed is the
    true one, centred; fitted everywhere, the robust fit still follows it, the lesion pulling
    it a little; the values stay on a grid (few distinct values)."""
    from wsls.method.intensity import FIELD_STEP, BrainVoxels, without_field

    image, brain, lesion, field, _ = field_scene
    voxels = BrainVoxels(torch.from_numpy(image), torch.from_numpy(brain))
    truth = field[brain] - field[brain].mean()
    errors = {}
    for name, fitted in (("outside", ~lesion[brain]), ("everywhere", np.ones(len(truth), bool))):
        corrected = without_field(voxels, (0,), 2, torch.from_numpy(fitted))
        removed = (voxels.values[:, 0] - corrected.values[:, 0]).numpy()
        errors[name] = np.abs(removed - truth)
        assert abs(corrected.values[:, 0].mean() - voxels.values[:, 0].mean()) < FIELD_STEP
        steps = corrected.values[:, 0] / FIELD_STEP
        assert torch.allclose(steps, steps.round(), atol=1e-6)
    assert errors["outside"].max() < 0.1 * np.ptp(truth)
    assert errors["everywhere"].mean() < 0.1 * np.ptp(truth)
    assert errors["everywhere"].mean() > errors["outside"].mean()
    assert without_field(voxels, (0,), 0, torch.ones(len(truth), dtype=torch.bool)) is voxels


def test_removing_the_bias_field_keeps_the_mixture_on_the_lesion(field_scene):
    """With the field, the normal tissue on the lesion's side is as bright as the lesion and the
    mixture takes much of it; with it removed, the posterior is the lesion."""
    image, brain, lesion, _, weak = field_scene
    found = {order: lesion_estimate(image, brain, weak, bias_order=order) for order in (0, 2)}
    assert dice(found[0], lesion) < 0.7
    assert dice(found[2], lesion) > 0.95


def test_em_config_validation():
    with pytest.raises(ValueError, match="fit_voxels"):
        EMConfig(fit_voxels=0)
    with pytest.raises(ValueError, match="support_rounds"):
        EMConfig(support_rounds=-1)
    with pytest.raises(ValueError, match="decision_ceiling"):
        EMConfig(decision_ceiling=1.0)
