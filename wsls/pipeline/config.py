"""The configuration of the whole method, saved in every model bundle."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

from wsls.data.patches import PatchConfig
from wsls.data.preprocess import PreprocessConfig
from wsls.infer.regions import RegionConfig
from wsls.train.confident import ConfidentConfig
from wsls.train.embedding import EmbeddingTrainConfig
from wsls.train.intensity_em import EMConfig
from wsls.train.segmenter import SegmenterTrainConfig


@dataclass
class StageSchedule:
    """epochs and samples (patches or steps) per epoch of one training stage."""

    epochs: int = 1
    per_epoch: int = 100


@dataclass
class WSLSConfig:
    """Everything that defines a trained wsls model.

    Attributes:
        modalities: input channels, in order (names as in wsls.data.modalities).
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
        raise ValueError(f"{cls.__name__}: unknown settings {sorted(unknown)}")
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
