"""The configuration of the whole method, saved in every model bundle: every setting of every
step (intensity model, confident voxels, region growing, the trained networks' schedules) in one
place, so a bundle's ``config.json`` is one document."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any

from wsls.data.patches import PatchConfig
from wsls.data.preprocess import PreprocessConfig
from wsls.errors import ConfigError
from wsls.settings import (
    COUNT,
    FLAG,
    FRACTION,
    NESTED,
    OPEN_FRACTION,
    POSITIVE,
    Rule,
    check_fields,
)


@dataclass(frozen=True)
class EMConfig:
    """Attributes:
    iterations: EM steps.
    normal_components, lesion_components: Gaussians per class.
    channels: "first" (the lesion modality), "auto" (the modality that best separates the map's
        hot and cold voxels), "all", or channel indices.
    prior_floor, prior_ceiling: clip of the spatial prior (no voxel is certain a priori).
    smooth_sigma: Gaussian smoothing (voxels) of the map before it becomes the prior.
    seed_high, seed_low: map values whose voxels initialise the lesion and normal classes.
    fit_voxels: the Gaussians are fitted on at most this many brain voxels (evenly spaced in
        raster order); the posterior is then computed for every voxel.
    support_rounds: refits of the support refinement (wsls.method.intensity
        .intensity_posterior): the posterior's lesion components that the ACAM hits become the
        prior of the next fit; 0 fits once, on the ACAM alone.
    support_tolerance: the refinement stops once the supported estimate changes by less than
        this share of its voxels.
    decision_ceiling: the prior's ceiling where the method decides which voxels are lesion
        (posterior >= 0.5; the fit keeps ``prior_ceiling``, and a voxel kept as lesion keeps
        the fit's posterior). At 0.5 a voxel is lesion only where its intensity is likelier
        under the lesion Gaussian than under the normal ones: the map says where the lesion
        is, intensity alone draws its boundary, and the shell of partial-volume voxels around
        a lesion, which a prior of 0.9 (odds of 9) let in, stays out. None: ``prior_ceiling``,
        as the networks' training reads it (``wsls.training.case_stages.maps_stage``).
    bias_order: degree of a smooth polynomial field (in the voxel coordinates) removed from the
        modalities the mixture reads before it fits them (:func:`wsls.method.intensity
        .without_field`); 0 removes none. An MRI bias field makes one part of the brain brighter
        than another: on a raw FLAIR it lifts a lobe above the tumour's dimmer edema, which
        the mixture then calls lesion or leaves out. Segmentation only: the networks' training
        reads the maps without it (``maps_stage``), so they stay those trained before it
        existed.
    bias_exclude: the field is fitted on the brain's voxels where the smoothed map is under
        this share of its peak, so that a lesion the map points at is not taken for a field.
    faint_lesion_components: where the first mask barely differs from the tissue around it
        (its contrast under ``QualityConfig.min_contrast``, the verdict's flag), it is dropped
        before the erase test and the volume segmented again with this many lesion Gaussians
        (``wsls.method.segment.segment_on_device``; needs the classifier): a lesion
        whose edema is barely brighter than white matter, or whose core is darker, is not one
        intensity, and one Gaussian centred on its brightest part leaves the rest out; on a
        lesion that stands out, a second Gaussian takes in the partial-volume shell around
        it. None: never. Segmentation only, as ``bias_order``.
    """

    iterations: int = 30
    normal_components: int = 3
    lesion_components: int = 1
    channels: str | tuple[int, ...] = "first"
    prior_floor: float = 0.02
    prior_ceiling: float = 0.9
    smooth_sigma: float = 2.0
    seed_high: float = 0.5
    seed_low: float = 0.1
    fit_voxels: int = 200_000
    support_rounds: int = 5
    support_tolerance: float = 0.02
    decision_ceiling: float | None = 0.5
    bias_order: int = 2
    bias_exclude: float = 0.05
    faint_lesion_components: int | None = 2

    RULES = {
        "iterations": Rule("int", 1, 1000),
        "normal_components": Rule("int", 1, 10),
        "lesion_components": Rule("int", 1, 10),
        "channels": Rule(
            "any_of",
            options=(
                Rule("str", choices=("first", "auto", "all")),
                Rule("tuple", item=Rule("int", 0, 63), min_length=1),
            ),
        ),
        "prior_floor": OPEN_FRACTION,
        "prior_ceiling": OPEN_FRACTION,
        "smooth_sigma": Rule("float", 0.0, 50.0),
        "seed_high": FRACTION,
        "seed_low": FRACTION,
        "fit_voxels": Rule("int", 100),
        "support_rounds": Rule("int", 0, 50),
        "support_tolerance": FRACTION,
        "decision_ceiling": Rule("float", 0.0, 1.0, open_low=True, open_high=True, optional=True),
        "bias_order": Rule("int", 0, 4),
        "bias_exclude": OPEN_FRACTION,
        "faint_lesion_components": Rule("int", 1, 10, optional=True),
    }

    def __post_init__(self) -> None:
        check_fields(self, self.RULES)
        if not self.prior_floor < self.prior_ceiling:
            raise ConfigError(
                f"EMConfig.prior_floor = {self.prior_floor} must be below prior_ceiling = "
                f"{self.prior_ceiling}"
            )


RULES = ("paper", "refined")


@dataclass(frozen=True)
class ConfidentConfig:
    """Attributes:
    rule: "refined" or "paper".
    lesion_map: ACAM at or above which a voxel can be lesion (paper: 0.1).
    normal_map: ACAM at or below which a voxel can be normal (paper: 0.01).
    lesion_posterior, normal_posterior: EM posterior bounds of the refined rule.
    band: width in voxels of the band around the lesion estimate that normal voxels come from.
    band_fraction: share of the normal voxels taken from that band.
    budget: at most this many voxels per class and volume (random subsample).
    """

    rule: str = "refined"
    lesion_map: float = 0.5
    normal_map: float = 0.1
    lesion_posterior: float = 0.9
    normal_posterior: float = 0.1
    band: int = 4
    band_fraction: float = 0.5
    budget: int = 4096

    RULES = {
        "rule": Rule("str", choices=RULES),
        "lesion_map": FRACTION,
        "normal_map": FRACTION,
        "lesion_posterior": FRACTION,
        "normal_posterior": FRACTION,
        "band": Rule("int", 0, 64),
        "band_fraction": FRACTION,
        "budget": Rule("int", 1, 1_000_000),
    }

    def __post_init__(self) -> None:
        check_fields(self, self.RULES)

    @classmethod
    def paper(cls, budget: int = 4096) -> ConfidentConfig:
        return cls(rule="paper", lesion_map=0.1, normal_map=0.01, budget=budget)


DEFAULT_LAMBDAS = (
    0.05,
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    0.95,
    0.97,
    0.98,
    0.99,
    0.995,
    0.999,
)


@dataclass(frozen=True)
class RegionConfig:
    """Attributes:
    seeds: how many seeds (spread over the confident lesion voxels).
    threshold: lambda; None picks it per volume from ``lambdas`` as the one whose segmentation
        best agrees with the intensity posterior (no voxel label needed).
    lambdas: the grid for that choice.
    connectivity: 6, 26, or 0 (the paper's global set, no connectivity).
    iou_threshold: NMS suppresses a candidate overlapping a better one by more than this.
    min_score: keep only candidates scoring at least this fraction of the best score.
    bound_margin: candidates grow only within this many voxels of the supported lesion
        estimate (None: anywhere in the brain).
    target: what lambda's segmentation must agree with: "posterior" (the intensity model's
        lesion estimate, posterior >= 0.5) or "support" (its components the ACAM hits).
    bridge_radius: the supported estimate the segmentation starts from (seeds, bound, target,
        verdict) is cut where bridges thinner than about twice this many voxels hold it
        together (``wsls.method.confident.cut_thin_bridges``); 0 keeps it whole. Training
        (its self-training segmentation included) does not cut.
    boundary_band: the intensity model draws the grown regions' boundary: the mask is the
        voxels of the intensity model's lesion estimate (posterior >= 0.5) within this many
        voxels of the regions (before holes are filled); the regions say which lesions, not
        where each ends. None: the regions' own boundary (the embedding sees intensities
        smoothed over ``EmbeddingTrainConfig.sigmas``, so it draws a blurred one).
    """

    seeds: int = 64
    threshold: float | None = None
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS
    connectivity: int = 6
    iou_threshold: float = 0.5
    min_score: float = 0.5
    bound_margin: int | None = 6
    target: str = "support"
    bridge_radius: int = 2
    boundary_band: int | None = None

    RULES = {
        "seeds": Rule("int", 1, 4096),
        "threshold": Rule("float", 0.0, 1.0, open_low=True, open_high=True, optional=True),
        "lambdas": Rule("tuple", item=OPEN_FRACTION, min_length=1),
        "connectivity": Rule("int", choices=(0, 6, 26)),
        "iou_threshold": FRACTION,
        "min_score": FRACTION,
        "bound_margin": Rule("int", 0, 100, optional=True),
        "target": Rule("str", choices=("posterior", "support")),
        "bridge_radius": Rule("int", 0, 20),
        "boundary_band": Rule("int", 0, 20, optional=True),
    }

    def __post_init__(self) -> None:
        check_fields(self, self.RULES)


EMBEDDINGS = ("appearance", "unet")


@dataclass
class EmbeddingTrainConfig:
    """kind: "appearance" or "unet"; dim: K; voxels_per_volume: confident voxels drawn per
    volume and step (half lesion, half normal where available); volumes_per_step: at most this
    many volumes per step (drawn anew each step when there are more, so a step's memory does
    not grow with the data set; up to it, every volume); steps_per_epoch; crop: edge
    of the U-Net's training crops; reduction: of the pairwise loss."""

    kind: str = "appearance"
    dim: int = 16
    voxels_per_volume: int = 1024
    volumes_per_step: int = 32
    steps_per_epoch: int = 50
    crop: int = 48
    reduction: str = "balanced"
    hidden: int = 64
    sigmas: tuple[float, ...] = (0.0, 1.0, 2.0)
    unet_width: int = 8

    RULES = {
        "kind": Rule("str", choices=EMBEDDINGS),
        "dim": Rule("int", 1, 256),
        "voxels_per_volume": Rule("int", 2, 100_000),
        "volumes_per_step": Rule("int", 1, 100_000),
        "steps_per_epoch": COUNT,
        "crop": Rule("int", 8, 256),
        "reduction": Rule("str", choices=("mean", "balanced", "sum")),
        "hidden": Rule("int", 1, 4096),
        "sigmas": Rule("tuple", item=Rule("float", 0.0, 50.0), min_length=1),
        "unet_width": Rule("int", 1, 256),
    }

    def __post_init__(self) -> None:
        check_fields(self, self.RULES)


@dataclass
class SegmenterTrainConfig:
    """width, levels: the U-Net; patch: patches (positives = patches holding target voxels);
    batch_size; dice_weight: weight of the soft Dice term beside BCE."""

    width: int = 8
    levels: int = 3
    patch: PatchConfig = field(default_factory=lambda: PatchConfig(size=32, min_lesion_voxels=1))
    batch_size: int = 4
    dice_weight: float = 1.0

    RULES = {
        "width": Rule("int", 1, 256),
        "levels": Rule("int", 1, 6),
        "patch": NESTED,
        "batch_size": Rule("int", 1, 1024),
        "dice_weight": Rule("float", 0.0),
    }

    def __post_init__(self) -> None:
        check_fields(self, self.RULES)


@dataclass(frozen=True)
class QualityConfig:
    """Bounds of the quality verdict (wsls.method.quality): a segmentation is flagged when
    the classifier's probability is under ``min_probability``, the mask covers more than
    ``max_brain_fraction`` of the brain or less than ``min_brain_fraction`` (a lesion of the
    preset's kind is not that small: 0 for none), its lesion-modality contrast with a
    ``shell``-voxel band around it is under ``min_contrast`` brain standard deviations, it exceeds
    ``max_over_support`` times the supported lesion estimate (whole: before the cut at thin
    bridges), it holds less than ``min_support_in_mask`` of that estimate (the evidence points
    elsewhere, or the cut left most of it out), the classifier's lesion probability stays
    above ``max_erased_probability`` once the mask, dilated by ``erase_margin`` voxels, is
    replaced by normal tissue (the lesion, or part of it, lies outside the mask:
    wsls.method.erasure), or, with several classifiers, some member's estimate overlaps the
    followed one's by a Dice under ``min_member_agreement``."""

    min_probability: float = 0.9
    max_brain_fraction: float = 0.3
    # half the smallest whole tumour of the 20 development cases (1.1 % of its brain); every
    # mask under it in their runs was a miss (Dice 0) beside the tumour
    min_brain_fraction: float = 0.005
    # the low-contrast masks of the development cases that stopped short of their tumour
    # (0.55-0.57 of its volume, Dice 0.65-0.66) measured 1.45-1.49
    min_contrast: float = 1.5
    shell: int = 5
    max_over_support: float = 1.5
    min_support_in_mask: float = 0.5
    min_member_agreement: float = 0.5
    # the probability at which the method decides that a volume holds a lesion
    # (WSLSConfig.min_lesion_probability's default)
    max_erased_probability: float = 0.5
    erase_margin: int = 2

    RULES = {
        "min_probability": FRACTION,
        "max_brain_fraction": FRACTION,
        "min_brain_fraction": FRACTION,
        "min_contrast": Rule("float"),
        "shell": Rule("int", 1, 50),
        "max_over_support": POSITIVE,
        "min_support_in_mask": FRACTION,
        "min_member_agreement": FRACTION,
        "max_erased_probability": FRACTION,
        "erase_margin": Rule("int", 0, 50),
    }

    def __post_init__(self) -> None:
        check_fields(self, self.RULES)


@dataclass
class StageSchedule:
    """epochs and samples (patches or steps) per epoch of one training stage."""

    epochs: int = 1
    per_epoch: int = 100

    RULES = {"epochs": Rule("int", 1, 100_000), "per_epoch": COUNT}

    def __post_init__(self) -> None:
        check_fields(self, self.RULES)


PRESETS = ("tumour", "ms", "stroke")


@dataclass
class WSLSConfig:
    """Everything that defines a trained wsls model.

    Attributes:
        preset: the lesion type these settings were made for (wsls.method.presets: "tumour",
            the defaults, "ms" or "stroke").
        modalities: input channels, in order (names as in wsls.io.modalities).
        preprocess: grid and normalisation of the prepared volume, where the lesion's boundary
            is drawn (default: the scan's own resolution, brain crop, z-score).
        classifier_scale: the classifier sees the prepared volume averaged over blocks of this
            many voxels per axis (2: 2 mm for 1 mm scans); its maps are upsampled back.
        patch: classifier patches (size, lesion voxels that make a patch positive...).
        width, stages, head, fusion: the classifier (stages - 1 poolings).
        classifier: its schedule (epochs, patches per epoch); batch_size: patches per step.
        classifier_members: classifiers trained alike from seeds seed, seed + 1, ...; on each
            volume the method follows the one the others agree with (wsls.method.consensus),
            and the verdict reports how far they agree. Each member costs its training and,
            per volume, its maps and intensity model.
        classifier_batch_norm: after training, the classifier's batch-norm statistics are
            recomputed as exact means over this many training batches
            (wsls.training.batch_norm; the ms and stroke presets keep 0); 0 keeps the running
            averages of its last steps, which label a fold's held-out patches worse
            (benchmarks/classifier_batch_norm.py).
        baseline_classifier: the schedule of the CAM(GAP) and CAM(GMP) baselines.
        window_overlap: overlap of the sliding windows that compute a volume's maps.
        window_edge: where the classifier maps a whole volume (segmentation, and the maps that
            training's confident voxels come from), its windows see the brain without its outer
            shell this many voxels thick (set to the background): bright voxels at a raw scan's
            edge can outscore a tumour. The maps still cover the whole brain. 0: all of it
            (the "ms" and "stroke" presets and the paper's variant: measured on tumours only).
        em: the intensity model whose posterior refines the ACAM.
        confident: which voxels train the representation model ("refined" or "paper").
        embedding: the representation model and its loss; embedding_schedule: its schedule.
        regions: seeds, lambda (None: chosen per volume), connectivity, NMS.
        self_training: rounds of re-training the embedding on its own segmentations.
        fill_holes: fill enclosed holes of the final mask, slice by slice and in 3D.
        min_component: drop connected components smaller than this many voxels (prepared grid).
        keep: "all" components of the final mask, or the "strongest" (the most ACAM: a single
            lesion such as a glioma).
        min_lesion_probability: a volume whose best window scores below this gets an empty mask.
        second_look: run the erase test (the verdict flags a mask that, once erased, leaves the
            classifier a lesion) and, where it fails, segment again from the classifier's maps
            of the erased volume, keeping that mask if erasing it removes the lesion the
            classifier sees (wsls.method.segment). The test is read only where the classifier
            can vouch for a mask (wsls.method.erasure). On for the tumour preset, off for
            "ms" and "stroke" (several lesions per scan; not measured there).
        quality: the bounds of the quality verdict.
        bf16: run the networks under bf16 autocast on CUDA when segmenting (the ops and the
            intensity model stay in float32/float64); no effect on the CPU.
        segmenter, segmenter_schedule: the WS-UNet and S-UNet baselines.
        seed: seeds every stage.
    """

    preset: str = "tumour"
    modalities: tuple[str, ...] = ("flair", "t1c")
    preprocess: PreprocessConfig = field(
        default_factory=lambda: PreprocessConfig(downsample=1.0, pad_to_multiple=8)
    )
    classifier_scale: int = 2
    patch: PatchConfig = field(
        default_factory=lambda: PatchConfig(
            size=32, min_lesion_voxels=100, flip_lr=True, intensity_jitter=0.1
        )
    )
    width: int = 16
    stages: int = 3
    head: str = "acam"
    fusion: str = "mean"
    classifier: StageSchedule = field(default_factory=lambda: StageSchedule(10, 800))
    classifier_members: int = 1
    classifier_batch_norm: int = 100
    baseline_classifier: StageSchedule = field(default_factory=lambda: StageSchedule(6, 800))
    batch_size: int = 8
    window_overlap: float = 0.5
    window_edge: int = 3
    em: EMConfig = field(default_factory=EMConfig)
    confident: ConfidentConfig = field(default_factory=ConfidentConfig)
    embedding: EmbeddingTrainConfig = field(default_factory=EmbeddingTrainConfig)
    embedding_schedule: StageSchedule = field(default_factory=lambda: StageSchedule(3, 60))
    regions: RegionConfig = field(default_factory=RegionConfig)
    self_training: int = 1
    fill_holes: bool = True
    min_component: int = 0
    keep: str = "strongest"
    min_lesion_probability: float = 0.5
    second_look: bool = True
    quality: QualityConfig = field(default_factory=QualityConfig)
    bf16: bool = True
    segmenter: SegmenterTrainConfig = field(default_factory=SegmenterTrainConfig)
    segmenter_schedule: StageSchedule = field(default_factory=lambda: StageSchedule(4, 400))
    seed: int = 0

    RULES = {
        "preset": Rule("str", choices=PRESETS),
        "modalities": Rule("tuple", item=Rule("str"), min_length=1),
        "preprocess": NESTED,
        "classifier_scale": Rule("int", 1, 8),
        "patch": NESTED,
        "width": Rule("int", 1, 256),
        "stages": Rule("int", 1, 6),
        "head": Rule("str", choices=("acam", "gap", "gmp")),
        "fusion": Rule("str", choices=("mean", "geometric")),
        "classifier": NESTED,
        "classifier_members": Rule("int", 1, 16),
        "classifier_batch_norm": Rule("int", 0, 100_000),
        "baseline_classifier": NESTED,
        "batch_size": Rule("int", 1, 1024),
        "window_overlap": Rule("float", 0.0, 1.0, open_high=True),
        "window_edge": Rule("int", 0, 32),
        "em": NESTED,
        "confident": NESTED,
        "embedding": NESTED,
        "embedding_schedule": NESTED,
        "regions": NESTED,
        "self_training": Rule("int", 0, 10),
        "fill_holes": FLAG,
        "min_component": Rule("int", 0),
        "keep": Rule("str", choices=("all", "strongest")),
        "min_lesion_probability": FRACTION,
        "second_look": FLAG,
        "quality": NESTED,
        "bf16": FLAG,
        "segmenter": NESTED,
        "segmenter_schedule": NESTED,
        "seed": Rule("int", 0, 2**31 - 1),
    }

    def __post_init__(self) -> None:
        check_fields(self, self.RULES)
        if len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(f"WSLSConfig.modalities = {self.modalities!r}: a modality twice")

    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WSLSConfig:
        return _from_dict(cls, data)

    def updated(self, changes: dict[str, Any]) -> WSLSConfig:
        """This configuration with the settings of ``changes`` (nested as in ``to_dict``)
        replaced; the rest kept. Validated like any configuration."""
        return _from_dict(type(self), _merge(self.to_dict(), changes))


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def paper_variant(config: WSLSConfig) -> WSLSConfig:
    """The paper's own choices on top of ``config``: its confident-voxel rule (ACAM >= 0.1
    lesion, <= 0.01 normal), candidates scored by mean ACAM, regions grown globally
    ({q : A(p, q) >= lambda}, no connectivity, anywhere in the brain), the context U-Net as
    representation model, one classifier with the batch-norm statistics training left it and
    windows that see the whole brain, the regions' own boundary, no self-training, no second
    look, no hole filling, every component kept. The paper gives no rule for lambda: the
    variant keeps ``config.regions.threshold`` (None: wsls's per-volume choice, by agreement
    with the intensity posterior, read at the fit's prior ceiling, without a bias field removed
    and with one lesion Gaussian, as it was before ``EMConfig.decision_ceiling``,
    ``EMConfig.bias_order`` and ``EMConfig.faint_lesion_components``)."""
    return replace(
        config,
        confident=ConfidentConfig.paper(config.confident.budget),
        em=replace(config.em, decision_ceiling=None, bias_order=0, faint_lesion_components=None),
        regions=replace(
            config.regions,
            connectivity=0,
            bound_margin=None,
            target="posterior",
            boundary_band=None,
        ),
        embedding=replace(config.embedding, kind="unet"),
        classifier_members=1,
        classifier_batch_norm=0,
        window_edge=0,
        self_training=0,
        second_look=False,
        fill_holes=False,
        keep="all",
    )


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_jsonable(v) for v in value]
    return value


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) dataclass from its asdict(); unknown keys are an error."""
    hints = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(hints)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown settings {sorted(unknown)}")
    kwargs = {}
    defaults = cls()
    for name, value in data.items():
        current = getattr(defaults, name)
        if is_dataclass(current) and isinstance(value, dict):
            kwargs[name] = _from_dict(type(current), value)
        elif isinstance(current, tuple) and isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)
