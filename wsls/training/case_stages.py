"""The per-case stages of training, each a function of one case's index that returns the
arrays and small results to store (:mod:`wsls.training.per_case` runs and stores them): the
classifier's coarse view; the maps, the intensity model and the confident voxels; the
self-training rounds' confident voxels. Every case's results depend on that case alone (and on
the trained networks), so they can be computed in any order, in parallel, or resumed."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from wsls.method.coarse import coarse_case
from wsls.method.confident import ConfidentConfig, ConfidentVoxels, precision, select_confident
from wsls.method.segment import VolumeMaps, device_maps, method_device, segment_volume, to_device
from wsls.training.case_store import CaseStore, fingerprint
from wsls.training.per_case import Compute, stored_maps


def case_source(case: Any) -> str:
    """What a case's stored outputs were computed from: its cache entry (named by a hash of its
    files and preprocessing), or for a case in memory its id, grid, statistics and label."""
    folder = getattr(case, "folder", None)
    if folder is not None:
        return fingerprint("cache", Path(folder).name, case.id)
    stats = [[float(v) for v in s] for s in getattr(case, "stats", [])]
    return fingerprint("memory", case.id, list(np.shape(case.image)), stats, case.label)


def normal_only_if_healthy(case: Any, selection: ConfidentVoxels) -> ConfidentVoxels:
    """A case labelled lesion-free (image label 0) can only give normal voxels: its map's
    brightest spot is not a lesion."""
    if case.label is not None and case.label == 0:
        keep = selection.labels == 0
        return ConfidentVoxels(selection.coords[keep], selection.labels[keep])
    return selection


def precision_entry(selection: ConfidentVoxels, mask: np.ndarray | None) -> dict:
    """The report's line for a case: precision against its mask, or the lesion voxel count."""
    if mask is None:
        return {"lesion_voxels": selection.counts()[0]}
    return precision(selection, mask)


def _selection_arrays(selection: ConfidentVoxels) -> dict[str, np.ndarray]:
    return {"coords": selection.coords, "labels": selection.labels}


def _in_memory(case: Any) -> tuple[np.ndarray, np.ndarray]:
    """One case's image and brain read into memory (writable: the method's tensors share
    them), for the time its stage works on it."""
    return np.array(case.image), np.array(case.brain)


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def coarse_stage(cases, factor: int) -> Compute:
    """The classifier's view of case i (``wsls.method.coarse``)."""

    def compute(index: int):
        case = cases[index]
        image, brain = _in_memory(case)
        mask = None if case.mask is None else np.array(case.mask)
        c = coarse_case(SimpleNamespace(id=case.id, image=image, brain=brain, mask=mask,
                                        label=case.label), factor)  # fmt: skip
        arrays = {"image": c.image, "brain": c.brain}
        if c.mask is not None:
            arrays["mask"] = c.mask
        return arrays, {"label": c.label}

    return compute


def maps_stage(cases, classifier, config) -> Compute:
    """Case i's maps (ACAM on the classifier's coarse view, intensity posterior) and confident
    voxels, as :func:`wsls.method.segment.volume_maps` and ``select_confident`` give them; with
    a voxel mask, also the precision of the paper's and the refined rules (evaluation). The
    posterior is read at the fit's prior ceiling (``EMConfig.decision_ceiling`` None) and
    without a bias field removed (``EMConfig.bias_order`` 0), so the networks stay those
    trained before the method read it otherwise."""
    device = method_device(classifier)
    config = replace(config, em=replace(config.em, decision_ceiling=None, bias_order=0))

    def compute(index: int):
        case = cases[index]
        image, brain = _in_memory(case)
        t0 = _clock(device)
        x, b = to_device(image, brain, device)
        maps = device_maps(classifier, x, b, config).to_host()
        t1 = _clock(device)
        rule, seed = config.confident, config.seed + index
        selection = select_confident(maps.acam, brain, maps.posterior, rule, seed)
        selection = normal_only_if_healthy(case, selection)
        t2 = time.perf_counter()
        mask = case.mask
        meta = {
            "probability": float(maps.probability),
            "precision": precision_entry(selection, mask),
            "seconds": {"maps": t1 - t0, "confident": t2 - t1},
        }
        if mask is not None:
            meta["rules"] = _rule_stats(maps, brain, mask, config)
        arrays = {"acam": maps.acam, "posterior": maps.posterior, **_selection_arrays(selection)}
        return arrays, meta

    return compute


def _rule_stats(maps: VolumeMaps, brain, mask, config) -> dict[str, dict]:
    """Precision of the paper's and the refined confident voxels of one case."""
    rules = {
        "paper": ConfidentConfig.paper(config.confident.budget),
        "refined": replace(config.confident, rule="refined"),
    }
    return {
        name: precision(select_confident(maps.acam, brain, maps.posterior, rule, config.seed), mask)
        for name, rule in rules.items()
    }


def self_training_stage(cases, classifier, embedding, maps: CaseStore, config) -> Compute:
    """Case i's confident voxels from the method's own segmentation (a self-training round)."""

    def compute(index: int):
        case = cases[index]
        t0 = time.perf_counter()
        selection = self_training_voxels(
            classifier, embedding, case, stored_maps(maps, index), config, index
        )
        selection = normal_only_if_healthy(case, selection)
        meta = {
            "precision": precision_entry(selection, case.mask),
            "seconds": {"self_training": time.perf_counter() - t0},
        }
        return _selection_arrays(selection), meta

    return compute


def self_training_voxels(classifier, embedding, case, maps, config, index) -> ConfidentVoxels:
    """Confident voxels from the method's own segmentation: lesion well inside it (and
    intensity-consistent), normal outside a margin around it. That segmentation does not cut
    the supported estimate at thin bridges (``RegionConfig.bridge_radius``), let the intensity
    model draw the regions' boundary (``RegionConfig.boundary_band``), look twice
    (``second_look``) nor segment a faint lesion again (``EMConfig.faint_lesion_components``):
    they are the final segmentation's, so the networks stay those trained before they
    existed."""
    from scipy import ndimage as ndi

    image, brain = _in_memory(case)
    em = replace(config.em, faint_lesion_components=None)
    uncut = replace(
        config,
        regions=replace(config.regions, bridge_radius=0, boundary_band=None),
        second_look=False,
        em=em,
    )
    mask = segment_volume(classifier, embedding, image, brain, uncut, maps).mask
    inner = ndi.binary_erosion(mask, iterations=1) & (maps.posterior >= 0.5)
    outer = ~ndi.binary_dilation(mask, iterations=2) & brain
    pseudo = np.where(inner, 1.0, np.where(outer, 0.0, 0.5)).astype(np.float32)  # map and posterior
    rule = replace(
        config.confident,
        rule="refined",
        lesion_map=0.99,
        normal_map=0.01,
        lesion_posterior=0.99,
        normal_posterior=0.01,
    )
    return select_confident(pseudo, brain, pseudo, rule, config.seed + index)


def mean_rule_stats(metas: list[dict]) -> dict:
    """The report's "rules": each rule's precision averaged over the cases (NaN ones left out)."""
    out = {}
    for name in metas[0]["rules"]:
        stats = [m["rules"][name] for m in metas]
        out[name] = {key: _mean_defined([s[key] for s in stats]) for key in stats[0]}
    return out


def _mean_defined(values) -> float:
    """Mean of the values that are not NaN (a lesion-free case has no lesion precision)."""
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")
