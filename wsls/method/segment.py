"""The method on one prepared volume, as the paper's figure 1 reads: the classifier's maps and
the intensity model (:func:`volume_maps`), confident voxels, seeds, embeddings, region growing
and post-processing (:func:`segment_volume`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from wsls.method.confident import (
    ConfidentVoxels,
    cut_thin_bridges,
    select_confident,
    supported_lesion,
)
from wsls.method.config import WSLSConfig
from wsls.method.consensus import consensus
from wsls.method.embedding import embed_volume
from wsls.method.erasure import erased_probability, erased_view, evidence_region
from wsls.method.intensity import BrainVoxels, intensity_posterior
from wsls.method.maps import inference_autocast, member_views
from wsls.method.postprocess import postprocess
from wsls.method.quality import Quality, assess, contrast, low_contrast
from wsls.method.regions import Regions, segment_regions
from wsls.method.seeds import spread_seeds
from wsls.method.windows import WindowMemo
from wsls.models import classifier_members
from wsls.morphology import dilate


@dataclass
class VolumeMaps:
    """What the classifier and the intensity model say about one prepared volume.

    acam (H, W, D) in [0, 1] (zero outside the brain); cam (H, W, D) raw; probability: the best
    window's lesion probability; posterior (H, W, D) EM lesion posterior; agreement: with a
    classifier ensemble, how far the members agree (``wsls.method.consensus``), else None;
    windows: per classifier member, the windows its maps came from, which views of the same
    volume (the erase test's) reuse where they are unchanged (``wsls.method.windows``);
    voxels: the brain's voxels as the intensity model gathered them, which its second fit on
    the volume (the second look's) reuses; views: every member's (cam, acam, probability), which
    a refit of the intensity model (a faint lesion's) reuses. Tensors on the method's device
    while it runs, numpy on the host after (``to_host``, which leaves the windows, voxels and
    views behind)."""

    acam: Any
    cam: Any
    probability: float
    posterior: Any
    agreement: float | None = None
    windows: list[WindowMemo] | None = None
    voxels: BrainVoxels | None = None
    views: list[tuple[Tensor, Tensor, float]] | None = None

    def to_host(self) -> VolumeMaps:
        host = (_host(self.acam), _host(self.cam), self.probability, _host(self.posterior))
        return VolumeMaps(*host, self.agreement)

    def to(self, device: torch.device) -> VolumeMaps:
        move = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
        moved = (move(self.acam), move(self.cam), self.probability, move(self.posterior))
        return VolumeMaps(*moved, self.agreement)


@dataclass
class MethodResult:
    """mask (H, W, D) bool on the prepared grid; maps; confident voxels; regions (seeds, scores,
    kept, lambda), or None when the volume was judged lesion-free; the quality verdict. numpy
    arrays on the host (``segment_volume`` copies them back once, at its end)."""

    mask: Any
    maps: VolumeMaps
    confident: ConfidentVoxels
    regions: Regions | None
    quality: Quality = field(default_factory=Quality)

    def to_host(self) -> MethodResult:
        regions = None if self.regions is None else self.regions.to_host()
        return MethodResult(
            _host(self.mask), self.maps.to_host(), self.confident, regions, self.quality
        )


def _host(a: Any) -> np.ndarray:
    return a.cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def method_device(classifier: nn.Module) -> torch.device:
    """Where the method runs: where the classifier's weights are."""
    weight = next(classifier.parameters(), None)
    return weight.device if weight is not None else torch.device("cpu")


def to_device(image: np.ndarray, brain: np.ndarray, device: torch.device) -> tuple[Tensor, Tensor]:
    """A prepared volume on the method's device: the one copy from the host into the method."""
    # writable: a read-only array (the volume cache's) would be shared by a CPU tensor
    x = torch.as_tensor(np.require(image, np.float32, ("C", "W"))).to(device)
    return x, torch.as_tensor(np.require(brain, bool, ("C", "W"))).to(device)


def device_maps(
    classifier: nn.Module, image: Tensor, brain: Tensor, config: WSLSConfig
) -> VolumeMaps:
    """The classifier's maps (computed on its coarse view, upsampled to the prepared grid) and
    the intensity posterior (on the prepared grid), as tensors on the volume's device.

    For a classifier ensemble, every member's maps and posterior, and those of the member whose
    supported lesion estimate the others agree with (``wsls.method.consensus``); a member that
    finds no lesion (probability under ``min_lesion_probability``) counts as an empty estimate.
    """
    memos = [WindowMemo() for _ in classifier_members(classifier)]
    views = member_views(classifier, image, brain, config, memos)
    voxels = BrainVoxels(image, brain)
    maps = maps_of_views(views, image, brain, config, voxels)
    return replace(maps, windows=memos, voxels=voxels, views=views)


def maps_of_views(
    views: list[tuple[Tensor, Tensor, float]],
    image: Tensor,
    brain: Tensor,
    config: WSLSConfig,
    voxels: BrainVoxels | None = None,
) -> VolumeMaps:
    """:func:`device_maps` from the members' views (:func:`member_views`); the intensity
    model fits ``image`` (for the second look, the views are of another volume: the image with
    the first mask erased), whose brain voxels ``voxels`` holds when gathered already."""
    voxels = voxels if voxels is not None else BrainVoxels(image, brain)
    maps = [
        VolumeMaps(acam, cam, probability, intensity_posterior(image, brain, acam, config, voxels))
        for cam, acam, probability in views
    ]
    if len(maps) == 1:
        return maps[0]
    estimates = [
        supported_lesion(v.acam, brain, v.posterior, config.confident)
        if v.probability >= config.min_lesion_probability
        else torch.zeros_like(brain)
        for v in maps
    ]
    chosen, agreement = consensus(estimates)
    return replace(maps[chosen], agreement=agreement)


def volume_maps(
    classifier: nn.Module, image: np.ndarray, brain: np.ndarray, config: WSLSConfig
) -> VolumeMaps:
    """:func:`device_maps` for a prepared volume on the host, returned to the host."""
    x, b = to_device(image, brain, method_device(classifier))
    return device_maps(classifier, x, b, config).to_host()


def lesion_evidence(maps: VolumeMaps, support: Tensor | None) -> Tensor:
    """The map that scores candidates. The paper's rule scores by mean ACAM (``support`` None);
    the refined one by max(ACAM, posterior inside the lesion components the ACAM supports): an
    ACAM that lights up only a lesion's rim would otherwise prefer small candidates on that rim
    to the whole lesion."""
    if support is None:
        return maps.acam
    return torch.maximum(maps.acam, maps.posterior * support).float()


def growth_region(brain: Tensor, support: Tensor | None, margin: int | None) -> Tensor:
    """Where candidates may grow: the brain, or (with a margin) the supported lesion estimate
    dilated by ``margin`` voxels, so that no region runs off along tissue the evidence never
    pointed at."""
    if margin is None or support is None or not bool(support.any()):
        return brain
    return brain & dilate(support, margin)


def drawn_by_intensity(grown: Tensor, lesion: Tensor, band: int | None) -> Tensor:
    """The grown regions with the intensity model's boundary: the voxels of its lesion
    estimate ``lesion`` within ``band`` voxels of ``grown`` (None: ``grown`` as it is)."""
    if band is None:
        return grown
    return lesion & dilate(grown, band)


def segment_volume(
    classifier: nn.Module,
    embedding: nn.Module,
    image: np.ndarray,
    brain: np.ndarray,
    config: WSLSConfig,
    maps: VolumeMaps | None = None,
) -> MethodResult:
    """ACAM + weakly supervised representation (ACAM+WSR) on one prepared volume.

    Everything runs on the classifier's device: the volume is copied there once, and the
    result (mask, maps, regions) comes back to the host once, at the end.

    Args:
        image: (C, H, W, D) prepared; brain: (H, W, D) bool (numpy, on the host).
        maps: the volume's maps when already computed (on the host).
    """
    device = method_device(classifier)
    x, b = to_device(image, brain, device)
    m = maps.to(device) if maps is not None else device_maps(classifier, x, b, config)
    return segment_on_device(embedding, x, b, m, config, classifier).to_host()


def segment_on_device(
    embedding: nn.Module,
    x: Tensor,
    b: Tensor,
    m: VolumeMaps,
    config: WSLSConfig,
    classifier: nn.Module | None = None,
) -> MethodResult:
    """:func:`segment_volume` on a volume, brain and maps already on the method's device; the
    result stays there.

    With the classifier and ``second_look`` on, the mask faces the erase test
    (``wsls.method.erasure``). When the classifier still sees a lesion with the mask erased,
    and erasing all that it points at, before and after (``erasure.evidence_region``), leaves
    it none (it can vouch for a mask), the method segments again from the classifier's maps of
    the erased volume (the intensity model still fits the whole image), and keeps the second
    mask (with ``keep="all"``, the union of both) if erasing it leaves no lesion to the
    classifier; else the first, flagged. A classifier that cannot vouch leaves the test unread.
    A first look that finds nothing (no seed is intensity-consistent) is tested as a mask on
    all its evidence would be: the classifier's hot voxels and the estimate they support.

    With the classifier and ``em.faint_lesion_components``, a first mask that the verdict would
    flag for its contrast with the tissue around it (the lesion barely stands out of it) is
    dropped before the erase test, and the volume segmented again from its maps with that many
    lesion Gaussians in the mixture; the erase test and the verdict then read that mask.
    """
    if m.probability < config.min_lesion_probability:
        empty = torch.zeros_like(b)  # flagged: on a scan that has a lesion, this is a miss
        quality = assess(empty, b, x, m.probability, None, config.quality, m.agreement)
        return MethodResult(empty, m, confident_voxels(m, b, config)[0], None, quality)
    with inference_autocast(x.device, config.bf16):
        emb = embed_volume(embedding, x, b).float()
    result, supported = _segment(emb, x, b, m, config)
    faint = config.em.faint_lesion_components
    if (
        faint is not None
        and classifier is not None
        and _barely_stands_out(result.mask, x, b, config)
    ):
        config = replace(
            config, em=replace(config.em, lesion_components=faint, faint_lesion_components=None)
        )
        views = m.views
        if views is None:  # maps brought from the host
            views = member_views(classifier, x, b, config, m.windows)
        refit = maps_of_views(views, x, b, config, m.voxels)
        m = replace(refit, windows=m.windows, voxels=m.voxels, views=views)
        result, supported = _segment(emb, x, b, m, config)
    erased = evidence = None
    if classifier is not None and config.second_look:
        tested = result.mask
        if not bool(tested.any()):  # found nothing where the evidence points: test the evidence
            tested = evidence_region(tested, [(m.acam, m.posterior)], b, config)
        if bool(tested.any()):
            result, supported, erased, evidence = _erase_test(
                classifier, emb, x, b, m, config, result, supported, tested
            )
    # judged against the whole estimate: a cut or a growth that leaves most of it out is flagged
    result.quality = assess(
        result.mask, b, x, m.probability, supported, config.quality, m.agreement, erased, evidence
    )
    return result


def _barely_stands_out(mask: Tensor, x: Tensor, b: Tensor, config: WSLSConfig) -> bool:
    """Whether the verdict would flag ``mask`` for its contrast with the tissue around it."""
    if not bool(mask.any()):
        return False
    return low_contrast(contrast(x[0], mask, b, config.quality.shell), config.quality)


def _erase_test(
    classifier: nn.Module,
    emb: Tensor,
    x: Tensor,
    b: Tensor,
    m: VolumeMaps,
    config: WSLSConfig,
    result: MethodResult,
    supported: Tensor | None,
    tested: Tensor,
) -> tuple[MethodResult, Tensor | None, float, float | None]:
    """The erase test of ``result`` (erasing ``tested``: its mask, or its evidence when the
    mask is empty) and, where it fails and the classifier can vouch, the second look
    (:func:`segment_on_device`): the result kept, its supported estimate, its erased
    probability, and the probability with all the evidence erased (None when the test passed).
    """
    views = member_views(classifier, erased_view(x, b, tested, config), b, config, m.windows)
    erased = max(probability for _, _, probability in views)
    bound = config.quality.max_erased_probability
    if erased <= bound:
        return result, supported, erased, None
    second = replace(maps_of_views(views, x, b, config, m.voxels), probability=m.probability)
    pairs = [(m.acam, m.posterior), (second.acam, second.posterior)]
    region = evidence_region(tested, pairs, b, config)
    evidence = erased_probability(classifier, x, b, region, config, m.windows)
    if evidence > bound:  # the classifier cannot vouch: the test is not read
        return result, supported, erased, evidence
    look, look_supported = _segment(emb, x, b, second, config)
    if config.keep == "all":  # several lesions: the second look adds to the first
        look.mask = look.mask | result.mask
        if supported is not None:
            look_supported = look_supported | supported
    if bool(look.mask.any()):
        look_erased = erased_probability(classifier, x, b, look.mask, config, m.windows)
        if look_erased <= bound:
            return look, look_supported, look_erased, evidence
    return result, supported, erased, evidence


def confident_voxels(
    m: VolumeMaps, b: Tensor, config: WSLSConfig
) -> tuple[ConfidentVoxels, Tensor | None, Tensor | None]:
    """The confident voxels of the maps, and the supported lesion estimate they come from,
    whole and cut at thin bridges (both None for the paper's rule)."""
    supported = support = None
    if config.confident.rule != "paper":
        supported = supported_lesion(m.acam, b, m.posterior, config.confident)
        radius = config.regions.bridge_radius
        support = cut_thin_bridges(supported, m.acam, config.confident, radius)
    confident = select_confident(
        m.acam, b, m.posterior, config.confident, config.seed, support=support
    )
    return confident, supported, support


def _segment(
    emb: Tensor, x: Tensor, b: Tensor, m: VolumeMaps, config: WSLSConfig
) -> tuple[MethodResult, Tensor | None]:
    """Seeds, region growing on the embeddings ``emb`` and post-processing from the maps; the
    result (its verdict not yet given) and the whole supported estimate."""
    confident, supported, support = confident_voxels(m, b, config)
    evidence = lesion_evidence(m, support)
    lesion = confident.coords[confident.labels == 1]
    at = torch.as_tensor(lesion, device=x.device)
    weights = evidence[at[:, 0], at[:, 1], at[:, 2]].cpu().numpy()  # a few thousand values
    seeds = torch.as_tensor(spread_seeds(lesion, weights, config.regions.seeds), device=x.device)
    grow = growth_region(b, support, config.regions.bound_margin)
    estimate = (m.posterior >= 0.5) & b
    target = estimate
    if config.regions.target == "support" and support is not None:
        target = support
    regions = segment_regions(emb, seeds, evidence, grow, config.regions, target)
    mask = drawn_by_intensity(regions.mask, estimate, config.regions.boundary_band)
    mask = postprocess(mask, b, config, m.acam)
    return MethodResult(mask, m, confident, regions), supported
