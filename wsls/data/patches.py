"""Weakly labelled 3D patches: where they can be cut, a balanced seeded sampler, and a Dataset.

The split keeps voxel-level truth away from the learner. :class:`PatchSampler` reads lesion and
brain masks to decide, for every patch position, a patch label ("at least m lesion voxels", or
the case's manifest label) and yields :class:`PatchSpec` (case index, corner, label, brain
fraction). :class:`PatchDataset` holds images only and cuts the patch a spec names.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Sampler

from wsls.settings import COUNT, FLAG, FRACTION, Rule, check_fields


@dataclass(frozen=True)
class PatchConfig:
    """How patches are cut and sampled (sizes in voxels of the prepared grid).

    Attributes:
        size: patch edge (or three edges).
        min_lesion_voxels: a patch with at least this many lesion voxels is positive; one with
            none is negative; in between it is ambiguous and never sampled.
        min_brain_fraction: negatives must be at least this fraction brain.
        stride: step between candidate corners.
        samples_per_epoch: patches per epoch.
        positive_fraction: share of positives in an epoch (0.5: balanced).
        case_balanced: draw a case uniformly first, then a position in it (otherwise every
            position is equally likely, so big lesions dominate).
        flip_lr: randomly mirror patches left-right (augmentation, seeded).
        intensity_jitter: scale each channel of a patch by exp(N(0, s)) and shift it by
            N(0, s) (in brain standard deviations; augmentation against other scanners'
            contrasts); 0: none.
    """

    size: int | tuple[int, int, int] = 32
    min_lesion_voxels: int = 1
    min_brain_fraction: float = 0.5
    stride: int = 2
    samples_per_epoch: int = 512
    positive_fraction: float = 0.5
    case_balanced: bool = True
    flip_lr: bool = False
    intensity_jitter: float = 0.0

    RULES = {
        "size": Rule(
            "any_of",
            options=(Rule("int", 4, 256), Rule("tuple", item=Rule("int", 4, 256), length=3)),
        ),
        "min_lesion_voxels": COUNT,
        "min_brain_fraction": FRACTION,
        "stride": Rule("int", 1, 256),
        "samples_per_epoch": COUNT,
        "positive_fraction": FRACTION,
        "case_balanced": FLAG,
        "flip_lr": FLAG,
        "intensity_jitter": Rule("float", 0.0, 1.0),
    }

    def __post_init__(self) -> None:
        check_fields(self, self.RULES)

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.size
        return (s, s, s) if isinstance(s, int) else tuple(int(v) for v in s)  # type: ignore[return-value]


class PatchSpec(NamedTuple):
    """One sample: which source, where, its weak label and how much of it is brain."""

    source: int
    corner: tuple[int, int, int]
    label: float
    brain_fraction: float
    flip: bool
    gain: tuple[float, ...] = ()  # per channel (intensity augmentation), () for none
    shift: tuple[float, ...] = ()


def augment(patch: np.ndarray, spec: PatchSpec, fill: float = 0.0) -> np.ndarray:
    """``patch`` (C, p, p, p) mirrored left-right and with its channels' intensities scaled
    and shifted as ``spec`` says (background voxels, equal to ``fill``, stay)."""
    if spec.flip:
        patch = patch[:, ::-1]
    if spec.gain:
        inside = patch != fill
        gain = np.asarray(spec.gain, np.float32)[:, None, None, None]
        shift = np.asarray(spec.shift, np.float32)[:, None, None, None]
        patch = np.where(inside, patch * gain + shift, patch)
    return np.ascontiguousarray(patch)


@dataclass
class CasePositions:
    """Patch corners a case offers (prepared-grid voxels).

    Attributes:
        case_id: the case.
        positives, negatives: (N, 3) int32 corners.
        positive_brain, negative_brain: (N,) float32 brain fraction of each.
        ambiguous: positions with some but fewer than m lesion voxels.
        label_source: "mask", "manifest" or "none".
        note: why a case offers nothing, where it does not.
    """

    case_id: str
    positives: np.ndarray
    negatives: np.ndarray
    positive_brain: np.ndarray
    negative_brain: np.ndarray
    ambiguous: int
    label_source: str
    note: str = ""


def _integral(volume: np.ndarray) -> np.ndarray:
    out = np.zeros(tuple(n + 1 for n in volume.shape), dtype=np.int32)
    out[1:, 1:, 1:] = volume.astype(np.int32).cumsum(0).cumsum(1).cumsum(2)
    return out


def _box_sums(
    integral: np.ndarray, starts: list[np.ndarray], size: tuple[int, int, int]
) -> np.ndarray:
    """Sums over every box with corner in the open grid ``starts`` and edges ``size``."""
    a0, b0, c0 = np.ix_(*starts)
    a1, b1, c1 = a0 + size[0], b0 + size[1], c0 + size[2]
    s = integral
    return (
        s[a1, b1, c1]
        - s[a0, b1, c1]
        - s[a1, b0, c1]
        - s[a1, b1, c0]
        + s[a0, b0, c1]
        + s[a0, b1, c0]
        + s[a1, b0, c0]
        - s[a0, b0, c0]
    )


def _pad_to_patch(array: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    pad = [(0, max(0, p - n)) for n, p in zip(array.shape[-3:], size, strict=True)]
    if not any(p[1] for p in pad):
        return array
    return np.pad(array, [(0, 0)] * (array.ndim - 3) + pad)


def patch_positions(
    case_id: str,
    brain: np.ndarray,
    mask: np.ndarray | None,
    label: float | None,
    config: PatchConfig,
) -> CasePositions:
    """All candidate corners of one case, split into positives and negatives.

    Args:
        brain: (h, w, d) bool.
        mask: (h, w, d) bool lesion mask, or None (then ``label`` decides).
        label: the case's image-level label (used without a mask).
    """
    size = config.shape
    brain = _pad_to_patch(np.asarray(brain, bool), size)
    starts = [
        np.unique(np.r_[np.arange(0, n - p + 1, config.stride), n - p]).astype(np.int64)
        for n, p in zip(brain.shape, size, strict=True)
    ]
    volume = float(np.prod(size))
    brain_frac = (_box_sums(_integral(brain), starts, size) / volume).astype(np.float32)
    grid = np.stack(np.meshgrid(*starts, indexing="ij"), axis=-1).astype(np.int32)
    empty = np.zeros((0, 3), np.int32), np.zeros(0, np.float32)
    mostly_brain = brain_frac >= config.min_brain_fraction
    if mask is not None:
        lesion = _box_sums(_integral(_pad_to_patch(np.asarray(mask, bool), size)), starts, size)
        positive = lesion >= config.min_lesion_voxels
        negative = (lesion == 0) & mostly_brain
        ambiguous = int(((lesion > 0) & ~positive).sum())
        return CasePositions(
            case_id,
            grid[positive],
            grid[negative],
            brain_frac[positive],
            brain_frac[negative],
            ambiguous,
            "mask",
        )
    if label is not None and label < 0.5:
        return CasePositions(
            case_id,
            *empty[:1],
            grid[mostly_brain],
            *empty[1:],
            brain_frac[mostly_brain],
            0,
            "manifest",
        )
    note = (
        "lesion case without a mask: its patches cannot be labelled (use whole-volume samples)"
        if label is not None
        else "no mask and no label"
    )
    return CasePositions(
        case_id,
        empty[0],
        empty[0],
        empty[1],
        empty[1],
        0,
        "manifest" if label is not None else "none",
        note,
    )


class PatchSampler(Sampler):
    """Balanced, seeded, resumable sampler of weakly labelled patch positions.

    Args:
        cases: prepared cases (objects with ``id``, ``brain``, ``mask`` and ``label``).
        config: patch geometry and sampling.
        seed: epoch e draws from ``numpy.random.default_rng([seed, e])``.
        negative_cases: lesion-free cases of another set, drawn from for negatives. Their
            sources are numbered after ``cases``.
        negatives_from: "all" (cases and negative_cases), "cases", or "extra" (only
            negative_cases).
    """

    def __init__(
        self,
        cases: Sequence[Any],
        config: PatchConfig | None = None,
        seed: int = 0,
        negative_cases: Sequence[Any] = (),
        negatives_from: str = "all",
    ) -> None:
        self.config = config or PatchConfig()
        self.seed = int(seed)
        self.epoch = 0
        self.position = 0
        self.n_cases = len(cases)
        image = getattr(cases[0], "image", None) if len(cases) else None
        self.channels = int(np.shape(image)[0]) if image is not None else 1
        self.positions: list[CasePositions] = []
        for case in list(cases) + list(negative_cases):
            self.positions.append(
                patch_positions(case.id, case.brain, case.mask, case.label, self.config)
            )
        for extra in self.positions[self.n_cases :]:
            if len(extra.positives):  # only lesion-free positions of extra cases are used
                extra.positives = extra.positives[:0]
                extra.positive_brain = extra.positive_brain[:0]
        if negatives_from not in ("all", "cases", "extra"):
            raise ValueError(
                f"negatives_from must be 'all', 'cases' or 'extra', not {negatives_from!r}"
            )
        neg_range = {
            "all": range(len(self.positions)),
            "cases": range(self.n_cases),
            "extra": range(self.n_cases, len(self.positions)),
        }[negatives_from]
        self._pos_sources = np.array(
            [i for i in range(self.n_cases) if len(self.positions[i].positives)]
        )
        self._neg_sources = np.array([i for i in neg_range if len(self.positions[i].negatives)])
        n_pos = round(self.config.samples_per_epoch * self.config.positive_fraction)
        if n_pos > 0 and not len(self._pos_sources):
            raise ValueError(
                "PatchSampler: no positive patch position in any case\n" + self.format_report()
            )
        if self.config.samples_per_epoch - n_pos > 0 and not len(self._neg_sources):
            raise ValueError(
                "PatchSampler: no negative patch position (lesion-free and mostly brain); use "
                "smaller patches, a lower min_brain_fraction or negative_cases\n"
                + self.format_report()
            )
        self._cached_epoch: int | None = None
        self._cached_specs: list[PatchSpec] = []

    def __len__(self) -> int:
        return self.config.samples_per_epoch

    def report(self) -> list[dict[str, Any]]:
        """Per case: id, label source, positive/negative/ambiguous position counts, note."""
        rows = []
        for i, p in enumerate(self.positions):
            rows.append(
                {
                    "case": p.case_id,
                    "role": "case" if i < self.n_cases else "extra negatives",
                    "labels from": p.label_source,
                    "positives": len(p.positives),
                    "negatives": len(p.negatives),
                    "ambiguous": p.ambiguous,
                    "note": p.note,
                }
            )
        return rows

    def format_report(self) -> str:
        """The report as an aligned text table."""
        rows = self.report()
        c = self.config
        head = (
            f"{'case':<28} {'role':<16} {'labels':<9} "
            f"{'positives':>9} {'negatives':>9} {'ambiguous':>9}"
        )
        lines = [
            f"patch {c.shape}, stride {c.stride}, m={c.min_lesion_voxels}, "
            f"min brain {c.min_brain_fraction}",
            head,
        ]
        for r in rows:
            lines.append(
                f"{r['case']:<28} {r['role']:<16} {r['labels from']:<9} {r['positives']:>9} "
                f"{r['negatives']:>9} {r['ambiguous']:>9} {r['note']}".rstrip()
            )
        return "\n".join(lines)

    def _draw(self, rng: np.random.Generator, sources: np.ndarray, n: int, positive: bool):
        attr = "positives" if positive else "negatives"
        counts = np.array([len(getattr(self.positions[s], attr)) for s in sources])
        if self.config.case_balanced:
            chosen = sources[rng.integers(0, len(sources), n)]
            index = (rng.random(n) * counts[np.searchsorted(sources, chosen)]).astype(np.int64)
        else:
            offsets = np.r_[0, np.cumsum(counts)]
            flat = rng.integers(0, offsets[-1], n)
            k = np.searchsorted(offsets, flat, side="right") - 1
            chosen, index = sources[k], flat - offsets[k]
        return chosen, index

    def epoch_specs(self, epoch: int) -> list[PatchSpec]:
        """The full, deterministic list of samples of one epoch."""
        if self._cached_epoch == epoch:
            return self._cached_specs
        rng = np.random.default_rng([self.seed, epoch])
        n = self.config.samples_per_epoch
        n_pos = round(n * self.config.positive_fraction)
        specs: list[PatchSpec] = []
        for positive, count in ((True, n_pos), (False, n - n_pos)):
            if count == 0:
                continue
            sources = self._pos_sources if positive else self._neg_sources
            chosen, index = self._draw(rng, sources, count, positive)
            for s, k in zip(chosen.tolist(), index.tolist(), strict=True):
                p = self.positions[s]
                corner = (p.positives if positive else p.negatives)[k]
                fraction = (p.positive_brain if positive else p.negative_brain)[k]
                specs.append(
                    PatchSpec(
                        s, tuple(int(v) for v in corner), float(positive), float(fraction), False
                    )
                )
        order = rng.permutation(len(specs))
        flips = rng.random(len(specs)) < 0.5 if self.config.flip_lr else np.zeros(len(specs), bool)
        specs = [specs[i]._replace(flip=bool(f)) for i, f in zip(order, flips, strict=True)]
        if self.config.intensity_jitter > 0:
            s = self.config.intensity_jitter
            gains = np.exp(rng.normal(0.0, s, (len(specs), self.channels)))
            shifts = rng.normal(0.0, s, (len(specs), self.channels))
            specs = [
                spec._replace(gain=tuple(g.tolist()), shift=tuple(b.tolist()))
                for spec, g, b in zip(specs, gains, shifts, strict=True)
            ]
        self._cached_epoch, self._cached_specs = epoch, specs
        return specs

    def __iter__(self) -> Iterator[PatchSpec]:
        specs = self.epoch_specs(self.epoch)
        while self.position < len(specs):
            spec = specs[self.position]
            self.position += 1
            yield spec
        self.epoch += 1
        self.position = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = int(epoch), 0

    def state_dict(self) -> dict[str, int]:
        """Where the sampler is: the next sample is ``epoch_specs(epoch)[position]``."""
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state.get("seed", self.seed)) != self.seed:
            raise ValueError(
                f"sampler state was saved with seed {state['seed']}, this one has {self.seed}"
            )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def extract_patch(
    image: np.ndarray, corner: Sequence[int], size: tuple[int, int, int], fill: float = 0.0
) -> np.ndarray:
    """Cut (C, *size) at ``corner`` from (C, h, w, d); parts outside the volume get ``fill``."""
    src = tuple(
        slice(c, min(c + p, n)) for c, p, n in zip(corner, size, image.shape[-3:], strict=True)
    )
    block = np.asarray(image[(slice(None), *src)], dtype=np.float32)
    if block.shape[-3:] == size:
        return np.array(block, copy=True)
    out = np.full((image.shape[0], *size), fill, dtype=np.float32)
    out[(slice(None), *(slice(0, s.stop - s.start) for s in src))] = block
    return out


class PatchDataset(torch.utils.data.Dataset):
    """Cuts the patches a :class:`PatchSampler` names. Holds images only (no lesion masks),
    unless ``masks`` is given for the fully supervised reference.

    Args:
        images: per source, a (C, h, w, d) array or an object with ``.array()`` returning one
            (e.g. :class:`wsls.data.cache.CachedImage`, loaded lazily in each worker).
        size: patch size.
        fill: value outside the volume (the normalised background).
        masks: per source (h, w, d) bool masks; only for supervised training.
    Items:
        (patch (C, p, p, p) float32 tensor, label () float32 tensor,
         {"source": int, "corner": (3,) int64 tensor, "brain_fraction": float})
        plus a fourth element, the mask patch (p, p, p) bool tensor, only with ``masks``.
    """

    def __init__(
        self,
        images: Sequence[Any],
        size: int | tuple[int, int, int],
        fill: float = 0.0,
        masks: Sequence[np.ndarray] | None = None,
    ) -> None:
        self.images = list(images)
        self.size = (size, size, size) if isinstance(size, int) else tuple(size)
        self.fill = float(fill)
        self.masks = None if masks is None else list(masks)

    def __len__(self) -> int:
        return len(self.images)

    def _image(self, source: int) -> np.ndarray:
        item = self.images[source]
        return item.array() if hasattr(item, "array") else item

    def __getitem__(self, spec: PatchSpec):
        spec = PatchSpec(*spec)
        patch = extract_patch(self._image(spec.source), spec.corner, self.size, self.fill)
        patch = augment(patch, spec, self.fill)
        meta = {
            "source": spec.source,
            "corner": torch.tensor(spec.corner, dtype=torch.int64),
            "brain_fraction": float(spec.brain_fraction),
        }
        out = (torch.from_numpy(patch), torch.tensor(spec.label, dtype=torch.float32), meta)
        if self.masks is None:
            return out
        m = extract_patch(self.masks[spec.source][None], spec.corner, self.size, 0.0)[0] > 0.5
        if spec.flip:
            m = np.ascontiguousarray(m[::-1])
        return (*out, torch.from_numpy(m))
