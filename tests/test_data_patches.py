"""Patch positions, balanced seeded resumable sampling, and no voxel truth on the weak path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsls.data.loader import build_patch_loader
from wsls.data.patches import PatchConfig, PatchDataset, PatchSampler, patch_positions
from wsls.data.preprocess import PreprocessConfig, preprocess


class _Prepared:
    """A minimal prepared case: brain, mask, label and image."""

    def __init__(self, case_id, brain, mask, label, seed=0):
        self.id, self.brain, self.mask, self.label = case_id, brain, mask, label
        rng = np.random.default_rng(seed)
        self.image = rng.standard_normal((2, *brain.shape)).astype(np.float32)


def _toy(case_id="toy", seed=0, lesion=True):
    brain = np.zeros((24, 24, 20), bool)
    brain[2:22, 2:22, 2:18] = True
    mask = np.zeros_like(brain)
    if lesion:
        mask[4:8, 5:9, 4:7] = True
    return _Prepared(case_id, brain, mask if lesion else None, 1.0 if lesion else 0.0, seed)


def test_positions_match_brute_force():
    case = _toy()
    cfg = PatchConfig(size=8, stride=3, min_lesion_voxels=5, min_brain_fraction=0.6)
    pos = patch_positions(case.id, case.brain, case.mask, case.label, cfg)
    seen_pos, seen_neg, ambiguous = set(), set(), 0
    for a in sorted(set(range(0, 17, 3)) | {16}):
        for b in sorted(set(range(0, 17, 3)) | {16}):
            for c in sorted(set(range(0, 13, 3)) | {12}):
                les = case.mask[a : a + 8, b : b + 8, c : c + 8].sum()
                frac = case.brain[a : a + 8, b : b + 8, c : c + 8].mean()
                if les >= 5:
                    seen_pos.add((a, b, c))
                elif les == 0 and frac >= 0.6:
                    seen_neg.add((a, b, c))
                elif les > 0:
                    ambiguous += 1
    assert {tuple(p) for p in pos.positives} == seen_pos
    assert {tuple(p) for p in pos.negatives} == seen_neg
    assert pos.ambiguous == ambiguous
    for corner, frac in zip(pos.negatives, pos.negative_brain, strict=True):
        a, b, c = corner
        assert np.isclose(frac, case.brain[a : a + 8, b : b + 8, c : c + 8].mean())


def test_manifest_labels_without_masks():
    healthy = _toy(lesion=False)
    pos = patch_positions("h", healthy.brain, None, 0.0, PatchConfig(size=8))
    assert len(pos.positives) == 0 and len(pos.negatives) > 0 and pos.label_source == "manifest"
    sick = patch_positions("s", healthy.brain, None, 1.0, PatchConfig(size=8))
    assert len(sick.positives) == len(sick.negatives) == 0 and "without a mask" in sick.note


def test_balance_determinism_and_epochs():
    cases = [_toy("a", 0), _toy("b", 1)]
    cfg = PatchConfig(size=8, stride=2, samples_per_epoch=200)
    first = list(PatchSampler(cases, cfg, seed=5))
    again = list(PatchSampler(cases, cfg, seed=5))
    other = list(PatchSampler(cases, cfg, seed=6))
    assert first == again and first != other
    labels = np.array([s.label for s in first])
    assert labels.sum() == 100
    assert {s.source for s in first} == {0, 1}
    sampler = PatchSampler(cases, cfg, seed=5)
    e0, e1 = list(sampler), list(sampler)
    assert e0 == first and e1 != e0 and sampler.epoch == 2


def test_resume_mid_epoch():
    cases = [_toy("a", 0), _toy("b", 1)]
    cfg = PatchConfig(size=8, samples_per_epoch=50)
    full = PatchSampler(cases, cfg, seed=1)
    reference = list(full) + list(full)
    part = PatchSampler(cases, cfg, seed=1)
    it = iter(part)
    taken = [next(it) for _ in range(30)]
    state = part.state_dict()
    resumed = PatchSampler(cases, cfg, seed=1)
    resumed.load_state_dict(state)
    rest = list(resumed) + list(resumed)
    assert taken + rest == reference[: 30 + len(rest)]
    with pytest.raises(ValueError, match="seed"):
        PatchSampler(cases, cfg, seed=2).load_state_dict(state)


def test_negatives_from_another_set_and_errors():
    sick = _toy("sick")
    sick.brain = sick.mask.copy()  # only lesion is brain: no negatives in the case itself
    cfg = PatchConfig(size=8, samples_per_epoch=40, min_brain_fraction=0.5)
    with pytest.raises(ValueError, match="no negative patch position"):
        PatchSampler([sick], cfg)
    healthy = _toy("healthy", lesion=False)
    sampler = PatchSampler([sick], cfg, negative_cases=[healthy], negatives_from="extra")
    specs = list(sampler)
    assert {s.source for s in specs if s.label == 0} == {1}
    assert {s.source for s in specs if s.label == 1} == {0}
    table = sampler.format_report()
    assert "sick" in table and "extra negatives" in table


def test_dataset_returns_no_voxel_truth():
    cases = [_toy("a", 0), _toy("b", 1)]
    cfg = PatchConfig(size=8, samples_per_epoch=16, flip_lr=True)
    sampler = PatchSampler(cases, cfg, seed=0)
    dataset = PatchDataset([c.image for c in cases], cfg.shape)
    assert dataset.masks is None
    for spec in sampler:
        item = dataset[spec]
        assert len(item) == 3
        patch, label, meta = item
        assert patch.shape == (2, 8, 8, 8) and label.shape == ()
        assert set(meta) == {"source", "corner", "brain_fraction"}
        a, b, c = spec.corner
        expected = cases[spec.source].image[:, a : a + 8, b : b + 8, c : c + 8]
        expected = expected[:, ::-1] if spec.flip else expected
        np.testing.assert_array_equal(patch.numpy(), expected)
    # the images alone decide the patches: wiping the masks after sampling changes nothing
    spec = next(iter(PatchSampler(cases, cfg, seed=3)))
    before = dataset[spec][0].clone()
    for c in cases:
        c.mask[:] = False
    assert torch.equal(dataset[spec][0], before)


def test_patch_outside_volume_is_filled():
    small = _Prepared("small", np.ones((5, 6, 7), bool), np.ones((5, 6, 7), bool), 1.0)
    cfg = PatchConfig(size=8, samples_per_epoch=4, positive_fraction=1.0)
    sampler = PatchSampler([small], cfg)
    dataset = PatchDataset([small.image], cfg.shape, fill=-1.0)
    patch = dataset[next(iter(sampler))][0]
    assert patch.shape == (2, 8, 8, 8) and torch.all(patch[:, 5:] == -1.0)


def test_loader_with_workers_resumes(data_small_phantoms, tmp_path):
    cases = [p.to_case(f"p{i}") for i, p in enumerate(data_small_phantoms)]
    cfg = PatchConfig(size=16, samples_per_epoch=48)
    loader = build_patch_loader(
        cases, cfg, PreprocessConfig(downsample=2.0), batch_size=8, num_workers=2, seed=4
    )
    batches = list(loader)
    assert len(batches) == 6
    x, y, meta = batches[0]
    assert x.shape == (8, 4, 16, 16, 16) and y.shape == (8,)
    assert sum(float(b[1].sum()) for b in batches) == 24
    # stop after two batches, save, rebuild, resume: the same batches follow
    again = build_patch_loader(
        cases, cfg, PreprocessConfig(downsample=2.0), batch_size=8, num_workers=0, seed=4
    )
    it = iter(again)
    next(it), next(it)
    state = again.state_dict()
    assert state["position"] == 16
    fresh = build_patch_loader(
        cases, cfg, PreprocessConfig(downsample=2.0), batch_size=8, num_workers=0, seed=4
    )
    fresh.load_state_dict(state)
    rest = list(fresh)
    assert len(rest) == 4
    for got, want in zip(rest, batches[2:], strict=True):
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_loader_disk_cache(tmp_path, data_write_nifti):
    from wsls.data.cache import VolumeCache
    from wsls.io.layouts import open_dataset
    from wsls.phantom.generate import write_phantom_dataset

    write_phantom_dataset(
        tmp_path / "ds",
        n_cases=2,
        shape=(48, 48, 32),
        seed=1,
        healthy_fraction=0.0,
        lesions="tumour",
    )
    refs = list(open_dataset(tmp_path / "ds"))
    cache = VolumeCache(PreprocessConfig(downsample=2.0), tmp_path / "cache")
    loader = build_patch_loader(
        refs, PatchConfig(size=8, samples_per_epoch=16), cache=cache, num_workers=0
    )
    assert cache.hits["decoded"] == 2
    list(loader)
    second = VolumeCache(PreprocessConfig(downsample=2.0), tmp_path / "cache")
    again = build_patch_loader(
        refs, PatchConfig(size=8, samples_per_epoch=16), cache=second, num_workers=0
    )
    assert second.hits == {"memory": 0, "disk": 2, "decoded": 0}
    assert type(again.dataset.images[0]).__name__ == "CachedImage"
    x1 = next(iter(loader))[0]
    x2 = next(iter(again))[0]
    assert x1.shape == x2.shape
    direct = preprocess(refs[0].load(), PreprocessConfig(downsample=2.0))
    np.testing.assert_array_equal(np.asarray(second.get(refs[0]).image), direct.image)


def test_with_masks_for_supervised_reference(data_small_phantoms):
    cases = [p.to_case() for p in data_small_phantoms[:1]]
    loader = build_patch_loader(
        cases,
        PatchConfig(size=16, samples_per_epoch=8),
        batch_size=4,
        num_workers=0,
        with_masks=True,
        negative_cases=[data_small_phantoms[2].to_case("healthy")],
    )
    x, y, meta, m = next(iter(loader))
    assert m.shape == (4, 16, 16, 16) and m.dtype == torch.bool
    assert bool((m.flatten(1).any(1).float() == y).all())


def test_intensity_jitter_is_seeded_and_spares_the_background():
    from wsls.data.patch_batches import PatchBatches

    rng = np.random.default_rng(0)
    brain = np.zeros((24, 24, 24), bool)
    brain[2:22, 2:22, 2:22] = True
    mask = np.zeros_like(brain)
    mask[8:14, 8:14, 8:14] = True
    image = np.where(brain, 1.0 + rng.random((2, *brain.shape)), 0.0).astype(np.float32)
    case = type("C", (), {"id": "c", "brain": brain, "mask": mask, "label": 1.0, "image": image})
    config = PatchConfig(size=8, samples_per_epoch=16, min_lesion_voxels=1, intensity_jitter=0.2)
    specs = PatchSampler([case], config, seed=3).epoch_specs(0)
    assert all(len(s.gain) == 2 and len(s.shift) == 2 for s in specs)
    assert specs == PatchSampler([case], config, seed=3).epoch_specs(0)  # deterministic
    assert len({s.gain for s in specs}) == len(specs)
    plain = PatchSampler([case], PatchConfig(size=8, samples_per_epoch=16, min_lesion_voxels=1))
    assert all(s.gain == () for s in plain.epoch_specs(0))
    batches = PatchBatches(PatchSampler([case], config, seed=3), [image], batch_size=16)
    x, _ = next(iter(batches.epoch(0)))
    for patch, spec in zip(x.numpy(), specs, strict=True):
        raw = image[:, spec.corner[0] : spec.corner[0] + 8, spec.corner[1] : spec.corner[1] + 8,
                    spec.corner[2] : spec.corner[2] + 8]  # fmt: skip
        raw = raw[:, ::-1] if spec.flip else raw
        inside = raw != 0
        expected = (
            raw * np.asarray(spec.gain)[:, None, None, None]
            + np.asarray(spec.shift)[:, None, None, None]
        )
        np.testing.assert_allclose(patch[inside], expected[inside], rtol=1e-5)
        assert np.all(patch[~inside] == 0)


def test_cache_checks_an_entry_once_and_lazy_reads_no_arrays(tmp_path, monkeypatch):
    from wsls.data import cache as cache_module
    from wsls.data.cache import VolumeCache
    from wsls.io.layouts import open_dataset
    from wsls.phantom.generate import write_phantom_dataset

    write_phantom_dataset(tmp_path / "ds", 1, (48, 48, 32), seed=1, lesions="tumour")
    (ref,) = open_dataset(tmp_path / "ds")
    config = PreprocessConfig(downsample=2.0)
    VolumeCache(config, tmp_path / "cache").get(ref)  # stored
    checks, loads = [], []
    damage, load = cache_module._damage, np.load
    monkeypatch.setattr(cache_module, "_damage", lambda *a: checks.append(1) or damage(*a))
    monkeypatch.setattr(cache_module.np, "load", lambda *a, **k: loads.append(a) or load(*a, **k))
    cache = VolumeCache(config, tmp_path / "cache", max_in_memory=0)
    lazy = cache.lazy(ref)
    assert loads == [] and lazy.id == ref.id
    cache.get(ref)
    cache.get(ref)
    assert len(checks) == 1 and cache.hits["disk"] == 3
