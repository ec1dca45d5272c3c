"""The configuration of the whole method, saved in every model bundle: every setting of every
step (intensity model, confident voxels, region growing, the trained networks' schedules) in one
place, so a bundle's ``config.json`` is one document."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any

from wsls.data.patches import PatchConfig
from wsls.data.preprocess import PreprocessConfig
from wsls.errors import ConfigError


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
    support_rounds: refits of the pipeline's support refinement (wsls.method.segment
        .intensity_posterior): the posterior's lesion components that the ACAM hits become the
        prior of the next fit; 0 fits once, on the ACAM alone.
    support_tolerance: the refinement stops once the supported estimate changes by less than
        this share of its voxels.
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

    def __post_init__(self) -> None:
        for name in ("iterations", "normal_components", "lesion_components", "fit_voxels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"EMConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.support_rounds < 0:
            raise ConfigError(f"EMConfig: support_rounds must be >= 0, got {self.support_rounds}")


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

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ConfigError(f"ConfidentConfig: rule must be one of {RULES}, got {self.rule!r}")

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
    """

    seeds: int = 64
    threshold: float | None = None
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS
    connectivity: int = 6
    iou_threshold: float = 0.5
    min_score: float = 0.5


EMBEDDINGS = ("appearance", "unet")


@dataclass
class EmbeddingTrainConfig:
    """kind: "appearance" or "unet"; dim: K; voxels_per_volume: confident voxels drawn per
    volume and step (half lesion, half normal where available); steps_per_epoch; crop: edge
    of the U-Net's training crops; reduction: of the pairwise loss."""

    kind: str = "appearance"
    dim: int = 16
    voxels_per_volume: int = 1024
    steps_per_epoch: int = 50
    crop: int = 48
    reduction: str = "balanced"
    hidden: int = 64
    sigmas: tuple[float, ...] = (0.0, 1.0, 2.0)
    unet_width: int = 8

    def __post_init__(self) -> None:
        if self.kind not in EMBEDDINGS:
            raise ConfigError(
                f"EmbeddingTrainConfig: kind must be one of {EMBEDDINGS}, got {self.kind!r}"
            )


@dataclass
class SegmenterTrainConfig:
    """width, levels: the U-Net; patch: patches (positives = patches holding target voxels);
    batch_size; dice_weight: weight of the soft Dice term beside BCE."""

    width: int = 8
    levels: int = 3
    patch: PatchConfig = field(default_factory=lambda: PatchConfig(size=32, min_lesion_voxels=1))
    batch_size: int = 4
    dice_weight: float = 1.0


@dataclass
class StageSchedule:
    """epochs and samples (patches or steps) per epoch of one training stage."""

    epochs: int = 1
    per_epoch: int = 100


@dataclass
class WSLSConfig:
    """Everything that defines a trained wsls model.

    Attributes:
        modalities: input channels, in order (names as in wsls.io.modalities).
        preprocess: grid and normalisation of the prepared volume, where the lesion's boundary
            is drawn (default: the scan's own resolution, brain crop, z-score).
        classifier_scale: the classifier sees the prepared volume averaged over blocks of this
            many voxels per axis (2: 2 mm for 1 mm scans); its maps are upsampled back.
        patch: classifier patches (size, lesion voxels that make a patch positive...).
        width, stages, head, fusion: the classifier (stages - 1 poolings).
        classifier: its schedule (epochs, patches per epoch); batch_size: patches per step.
        baseline_classifier: the schedule of the CAM(GAP) and CAM(GMP) baselines.
        window_overlap: overlap of the sliding windows that compute a volume's maps.
        em: the intensity model whose posterior refines the ACAM.
        confident: which voxels train the representation model ("refined" or "paper").
        embedding: the representation model and its loss; embedding_schedule: its schedule.
        regions: seeds, lambda (None: chosen per volume), connectivity, NMS.
        self_training: rounds of re-training the embedding on its own segmentations.
        fill_holes: fill enclosed holes of the final mask, slice by slice and in 3D.
        min_component: drop connected components smaller than this many voxels (prepared grid).
        min_lesion_probability: a volume whose best window scores below this gets an empty mask.
        segmenter, segmenter_schedule: the WS-UNet and S-UNet baselines.
        seed: seeds every stage.
    """

    modalities: tuple[str, ...] = ("flair", "t1c")
    preprocess: PreprocessConfig = field(
        default_factory=lambda: PreprocessConfig(downsample=1.0, pad_to_multiple=8)
    )
    classifier_scale: int = 2
    patch: PatchConfig = field(
        default_factory=lambda: PatchConfig(size=32, min_lesion_voxels=100, flip_lr=True)
    )
    width: int = 16
    stages: int = 3
    head: str = "acam"
    fusion: str = "mean"
    classifier: StageSchedule = field(default_factory=lambda: StageSchedule(6, 800))
    baseline_classifier: StageSchedule = field(default_factory=lambda: StageSchedule(6, 800))
    batch_size: int = 8
    window_overlap: float = 0.5
    em: EMConfig = field(default_factory=EMConfig)
    confident: ConfidentConfig = field(default_factory=ConfidentConfig)
    embedding: EmbeddingTrainConfig = field(default_factory=EmbeddingTrainConfig)
    embedding_schedule: StageSchedule = field(default_factory=lambda: StageSchedule(3, 60))
    regions: RegionConfig = field(default_factory=RegionConfig)
    self_training: int = 1
    fill_holes: bool = True
    min_component: int = 0
    min_lesion_probability: float = 0.5
    segmenter: SegmenterTrainConfig = field(default_factory=SegmenterTrainConfig)
    segmenter_schedule: StageSchedule = field(default_factory=lambda: StageSchedule(4, 400))
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WSLSConfig:
        return _from_dict(cls, data)


def paper_variant(config: WSLSConfig) -> WSLSConfig:
    """The paper's own choices on top of ``config``: its confident-voxel rule (ACAM >= 0.1
    lesion, <= 0.01 normal), candidates scored by mean ACAM, regions grown globally
    ({q : A(p, q) >= lambda}, no connectivity), the context U-Net as representation model, no
    self-training and no hole filling. The paper gives no rule for lambda: the variant keeps
    ``config.regions.threshold`` (None: wsls's per-volume choice)."""
    return replace(
        config,
        confident=ConfidentConfig.paper(config.confident.budget),
        regions=replace(config.regions, connectivity=0),
        embedding=replace(config.embedding, kind="unet"),
        self_training=0,
        fill_holes=False,
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
