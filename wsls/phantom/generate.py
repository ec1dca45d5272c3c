"""A procedural multi-modal brain phantom with realistic lesions, deterministic by seed.

Anatomy (defined in mm, rendered at any grid): a skull-stripped brain envelope; folded cortex
(grey matter lining sulci that follow the zero sheets of a smooth random field, plus the
interhemispheric fissure); white matter; lateral/third/temporal ventricles; deep grey nuclei;
normal FLAIR-bright periventricular caps and enhancing choroid plexus (confounders, not lesion).

Lesions (label values as BraTS 2017+, plus two):
  1 necrotic or non-enhancing tumour core, 2 oedema, 4 enhancing tumour, 5 stroke, 6 MS.
  * tumour (4-20 % of the brain): irregular core (necrosis that is dark on FLAIR, enhancing rim
    on T1c; or a non-enhancing low-grade core), oedema that spreads along white matter and
    fades into it at its edge, mass effect pushing the ventricles away;
  * stroke: a cortical-subcortical territory lesion (0.3-3 % of the brain);
  * MS: many small ovoid lesions, mostly periventricular and radially oriented (0.5-4 %).

Imaging: per-tissue T1/T1c/T2/FLAIR contrasts with texture, point spread (partial volume),
smooth multiplicative bias fields, Rician noise, arbitrary per-modality gains, zero outside the
brain. What makes a FLAIR threshold imperfect (as on real data): dark necrosis and faint oedema
edges inside the lesion mask; bright caps, grey matter under a strong bias field and noise
outside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wsls.phantom.fields import (
    Grid,
    coarse_noise,
    ellipsoid,
    random_rotation,
    rotation_to,
    sample_noise,
    smooth_fields,
)

MODALITIES = ("flair", "t1", "t1c", "t2")
LESION_KINDS = ("tumour", "stroke", "ms")
LABEL_CORE, LABEL_EDEMA, LABEL_ENHANCING, LABEL_STROKE, LABEL_MS = 1, 2, 4, 5, 6

# anatomy codes and their intensities (flair, t1, t1c, t2), white matter T1 = 1
_BG, _CSF, _GM, _WM, _DEEP, _CAP, _PLEXUS = range(7)
_TISSUE_CONTRAST = np.array(
    [
        [0.00, 0.00, 0.00, 0.00],  # background
        [0.12, 0.22, 0.24, 1.00],  # CSF
        [0.60, 0.62, 0.64, 0.62],  # cortical grey matter
        [0.50, 1.00, 1.00, 0.42],  # white matter
        [0.56, 0.78, 0.79, 0.52],  # deep grey nuclei
        [0.74, 0.82, 0.83, 0.68],  # periventricular caps (normal, FLAIR-bright)
        [0.40, 0.62, 1.35, 0.72],  # choroid plexus (enhancing, normal)
    ],
    dtype=np.float32,
)
_GAINS = np.array([450.0, 800.0, 900.0, 1100.0])  # scanner units per modality (flair,t1,t1c,t2)


@dataclass(frozen=True)
class PhantomConfig:
    """Knobs of the phantom.

    Attributes:
        fov_mm: field of view in mm (x, y, z); voxel size = fov / shape.
        noise: Rician noise sd as a fraction of white matter intensity.
        bias: sd of the log of the smooth multiplicative bias field.
        blur_voxels: point-spread sd in voxels (partial volume).
        tumour_fraction, stroke_fraction, ms_fraction: (min, max) lesion volume as a fraction
            of the brain, drawn log-uniformly.
        kind_weights: probabilities of tumour/stroke/ms when lesions="random".
    """

    fov_mm: tuple[float, float, float] = (240.0, 240.0, 155.0)
    noise: float = 0.035
    bias: float = 0.12
    blur_voxels: float = 0.6
    tumour_fraction: tuple[float, float] = (0.04, 0.20)
    stroke_fraction: tuple[float, float] = (0.003, 0.03)
    ms_fraction: tuple[float, float] = (0.005, 0.04)
    kind_weights: tuple[float, float, float] = (0.5, 0.25, 0.25)


@dataclass
class Phantom:
    """One phantom case, canonical RAS voxel order.

    Attributes:
        image: (4, H, W, D) float32 in ``MODALITIES`` order (flair, t1, t1c, t2).
        labels: (H, W, D) uint8 lesion labels (see module docstring), 0 elsewhere.
        brain: (H, W, D) bool brain mask.
        affine: (4, 4) voxel-to-world matrix (RAS, mm).
        kinds: lesion kinds present (empty for a lesion-free case).
        seed: the seed it was made from.
    """

    image: np.ndarray
    labels: np.ndarray
    brain: np.ndarray
    affine: np.ndarray
    kinds: tuple[str, ...]
    seed: int
    modalities: tuple[str, ...] = MODALITIES
    tissues: np.ndarray | None = field(default=None, repr=False)

    @property
    def mask(self) -> np.ndarray:
        """(H, W, D) bool: every lesion (label > 0)."""
        return self.labels > 0

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.abs(np.diag(self.affine)[:3]))  # type: ignore[return-value]

    def to_case(self, case_id: str | None = None):
        """This phantom as a :class:`wsls.io.case.Case` (with a Volume for save_like)."""
        from wsls.io.case import Case
        from wsls.io.nifti import Volume

        volume = Volume.from_array(self.image, self.affine, self.modalities)
        return Case(
            case_id or f"phantom_{self.seed:04d}",
            volume.data,
            self.mask,
            self.brain.copy(),
            float(self.mask.any()),
            volume,
            self.modalities,
        )


def _loguniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


@dataclass
class _Subject:
    """Random anatomy parameters of one subject (mm)."""

    scale: float
    ventricles: float
    cortex: float
    sulcus_depth: float
    sulcus_half_width: float
    centre_z: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> _Subject:
        return cls(
            scale=rng.uniform(0.93, 1.05),
            ventricles=rng.uniform(0.85, 1.5),
            cortex=rng.uniform(2.2, 3.0),
            sulcus_depth=rng.uniform(12.0, 18.0),
            sulcus_half_width=rng.uniform(0.6, 1.1),
            centre_z=rng.uniform(-2.0, 6.0),
        )


def _ventricle_parts(subject: _Subject) -> list[tuple[np.ndarray, np.ndarray]]:
    """(centre, radii) of the ventricle ellipsoids, before the mass-effect warp."""
    v, z0 = subject.ventricles, subject.centre_z
    parts = []
    for side in (-1.0, 1.0):
        parts += [
            (np.array([side * 9.0 * v**0.5, -2.0, z0 + 12.0]), np.array([4.5 * v, 24.0, 6.5 * v])),
            (np.array([side * 11.0, 22.0, z0 + 8.0]), np.array([4.0 * v, 9.0, 7.0 * v])),
            (np.array([side * 16.0, -28.0, z0 + 6.0]), np.array([5.5 * v, 10.0, 7.0 * v])),
            (np.array([side * 28.0, -8.0, z0 - 14.0]), np.array([2.5 * v, 12.0, 2.5 * v])),
        ]
    parts.append((np.array([0.0, -2.0, z0]), np.array([1.6 * v, 14.0, 8.0])))
    return parts


def _deep_grey_parts(subject: _Subject) -> list[tuple[np.ndarray, np.ndarray]]:
    z0 = subject.centre_z
    parts = []
    for side in (-1.0, 1.0):
        parts += [
            (np.array([side * 15.0, 16.0, z0 + 8.0]), np.array([4.0, 8.0, 6.0])),  # caudate head
            (np.array([side * 11.0, -12.0, z0 + 1.0]), np.array([7.0, 11.0, 7.0])),  # thalamus
            (np.array([side * 24.0, 4.0, z0]), np.array([4.5, 12.0, 8.0])),  # putamen
        ]
    return parts


def _warp(axes, centre: np.ndarray, push_mm: float, reach_mm: float):
    """Mass effect: tissue near ``centre`` is pushed outwards by up to ``push_mm``.

    Returns full (H, W, D) source coordinates: the anatomy seen at p is the one that sat at
    centre + (p - centre) * (r - push(r)) / r, push(r) = push_mm * exp(-(r / reach)^2).
    """
    dx, dy, dz = (a - c for a, c in zip(axes, centre, strict=True))
    r = np.sqrt(dx * dx + dy * dy + dz * dz) + 1e-3
    factor = np.maximum(r - push_mm * np.exp(-((r / reach_mm) ** 2)), 0.0) / r
    return (
        (centre[0] + dx * factor).astype(np.float32),
        (centre[1] + dy * factor).astype(np.float32),
        (centre[2] + dz * factor).astype(np.float32),
    )


def _anatomy(
    grid: Grid, subject: _Subject, fields: dict[str, np.ndarray], warped
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tissue code map (H, W, D) uint8, the brain mask, and depth below the surface (mm)."""
    x, y, z = grid.axes()
    s, z0 = subject.scale, subject.centre_z
    zc = z - z0
    a = 66.0 * s * (1.0 - 0.04 * y / (84.0 * s))  # narrower frontally
    c = np.where(zc < 0, 0.8, 1.0) * 60.0 * s  # flatter base
    rb = np.sqrt((x / a) ** 2 + (y / (84.0 * s)) ** 2 + (zc / c) ** 2) * (
        1.0 + 0.035 * fields["shape"]
    )
    brain = rb < 1.0
    depth = (1.0 - rb) * 66.0 * s

    xw, yw, zw = warped
    # Sulci: zero sheets of a noise sampled at the radial projection onto the surface, so they
    # run perpendicular to the surface (gyri), to a depth that varies along the surface.
    rw = np.sqrt((xw / a) ** 2 + (yw / (84.0 * s)) ** 2 + ((zw - z0) / c) ** 2) + 1e-3
    # mostly the surface point, a little of the depth: sulci bend slightly as they deepen
    surface_point = tuple(
        0.65 * q + 0.35 * p
        for q, p in zip((xw / rw, yw / rw, z0 + (zw - z0) / rw), (xw, yw, zw), strict=True)
    )
    fold, depth_noise = sample_noise(fields["fold_coarse"], grid.fov, surface_point)
    grad = np.gradient(fold, *grid.spacing)
    grad_norm = np.sqrt(grad[0] ** 2 + grad[1] ** 2 + grad[2] ** 2) + 1e-3
    sheet_dist = np.abs(fold) / grad_norm  # mm to the nearest sulcal sheet (first order)
    sulcus_depth = subject.sulcus_depth * (1.0 + 0.35 * depth_noise)
    sulcus = (depth < sulcus_depth) & (sheet_dist < subject.sulcus_half_width)
    fissure_floor = z0 + 24.0 - 0.6 * np.maximum(np.abs(yw) - 30.0, 0.0)
    fissure_zone = zw > fissure_floor
    fissure = (np.abs(xw) < 1.0 + 0.3 * fold) & fissure_zone
    grey = (
        (depth < subject.cortex)
        | (
            (sheet_dist < subject.sulcus_half_width + subject.cortex)
            & (depth < subject.sulcus_depth + subject.cortex)
        )
        | ((np.abs(xw) < 1.0 + subject.cortex) & fissure_zone)
    )
    tissue = np.where(brain, _WM, _BG).astype(np.uint8)
    tissue[brain & grey] = _GM
    waxes = (xw, yw, zw)
    for centre, radii in _deep_grey_parts(subject):
        tissue[brain & (ellipsoid(waxes, centre, radii) < 1.0)] = _DEEP
    ventricle = np.zeros(grid.shape, dtype=bool)
    cap = np.zeros(grid.shape, dtype=bool)
    parts = _ventricle_parts(subject)
    for k, (centre, radii) in enumerate(parts):
        rho = ellipsoid(waxes, centre, radii)
        ventricle |= rho < 1.0
        if k % 4 in (1, 2) and k < 8:  # frontal and occipital horns get caps at their tips
            tip = (yw - centre[1]) * (1.0 if k % 4 == 1 else -1.0) > 0.4 * radii[1]
            cap |= (rho < 1.35) & tip
    tissue[brain & cap & ~ventricle] = _CAP
    tissue[brain & (sulcus | fissure | ventricle)] = _CSF
    for side in (-1.0, 1.0):
        plexus = ellipsoid(
            waxes, np.array([side * 16.0, -29.0, z0 + 5.0]), np.array([2.5, 4.0, 2.5])
        )
        tissue[brain & (plexus < 1.0)] = _PLEXUS
    return tissue, brain, depth


@dataclass
class _Canvas:
    """Noise-free intensity images being painted, plus the lesion label map."""

    image: np.ndarray  # (4, H, W, D)
    labels: np.ndarray  # (H, W, D) uint8
    texture: np.ndarray  # (H, W, D) fine texture, unit sd

    def paint(
        self,
        region: np.ndarray,
        values: Sequence[float],
        weight: np.ndarray | float = 1.0,
        label: int = 0,
    ) -> None:
        """Blend lesion ``values`` (flair, t1, t1c, t2) into ``region`` with ``weight``."""
        if not region.any():
            return
        w = weight[region] if isinstance(weight, np.ndarray) else weight
        het = 1.0 + 0.06 * self.texture[region]
        for m in range(4):
            channel = self.image[m]
            channel[region] = channel[region] * (1.0 - w) + values[m] * het * w
        if label:
            self.labels[region] = label


def _tumour(rng, grid, canvas, tissue, brain, fields, centre, radius_e, cfg_core: float) -> None:
    """Paint a tumour (labels 1, 2, 4) centred at ``centre`` with oedema radius ``radius_e``."""
    axes = grid.axes()
    rot = random_rotation(rng)
    stretch = np.array([1.0, rng.uniform(0.75, 1.1), rng.uniform(0.7, 1.05)])
    r = ellipsoid(axes, centre, stretch, rot)  # mm-like distance with random elongation
    u_edema = r / (radius_e * (1.0 + 0.25 * fields["tumour"]))
    radius_c = radius_e * cfg_core
    u_core = r / (radius_c * (1.0 + 0.2 * fields["edema"]))
    core = brain & (u_core < 1.0)
    allowed = np.isin(tissue, (_WM, _DEEP, _CAP)) | ((tissue == _GM) & (u_edema < 0.75))
    edema = brain & (u_edema < 1.0) & allowed & ~core
    fade = rng.uniform(0.2, 0.5)
    floor = rng.uniform(0.2, 0.5)
    weight = np.clip((1.0 - u_edema) / fade, floor, 1.0) * (1.0 + 0.12 * fields["hetero"])
    weight = np.clip(weight, 0.0, 1.0)
    canvas.paint(edema, (rng.uniform(0.8, 0.97), 0.72, 0.73, 0.86), weight, LABEL_EDEMA)
    if rng.random() < 0.75:  # high grade: necrosis and enhancing rim
        necrosis = core & (u_core < rng.uniform(0.45, 0.75))
        rim = core & ~necrosis
        canvas.paint(rim, (0.8, 0.62, rng.uniform(1.25, 1.5), 0.75), 1.0, LABEL_ENHANCING)
        canvas.paint(necrosis, (rng.uniform(0.25, 0.8), 0.30, 0.32, 0.95), 1.0, LABEL_CORE)
    else:  # low grade: non-enhancing core, patchy faint enhancement
        patchy = 1.0 + 0.15 * np.clip(fields["hetero"], 0, None)
        values = (rng.uniform(0.7, 0.9), 0.56, 0.58, 0.84)
        canvas.paint(core, values, 1.0, LABEL_CORE)
        canvas.image[2][core] *= patchy[core]


def _stroke(
    rng, grid, canvas, tissue, brain, subject, fraction: float, brain_volume: float
) -> None:
    volume = fraction * brain_volume
    radius = (3.0 * volume / (4.0 * math.pi)) ** (1.0 / 3.0)
    direction = rng.standard_normal(3)
    direction[2] = abs(direction[2]) * 0.5
    direction /= np.linalg.norm(direction)
    s = subject.scale
    surface = direction * np.array([64.0 * s, 82.0 * s, 58.0 * s]) + np.array(
        [0.0, 0.0, subject.centre_z]
    )
    centre = surface - direction * (0.55 * radius + 4.0)
    radii = radius * np.array([0.75, 1.15, 1.15])
    box = grid.box(centre, 1.6 * radius)
    if box is None:
        return
    slices, axes = box
    rho = ellipsoid(axes, centre, radii, rotation_to(direction))
    rho = rho * (1.0 + 0.15 * canvas.texture[slices])
    region = np.zeros(grid.shape, dtype=bool)
    region[slices] = (rho < 1.0) & brain[slices] & np.isin(tissue[slices], (_GM, _WM, _DEEP, _CAP))
    canvas.paint(region, (rng.uniform(0.78, 0.9), 0.52, 0.55, 0.86), 1.0, LABEL_STROKE)


def _ms(rng, grid, canvas, tissue, brain, subject, fraction: float, brain_volume: float) -> None:
    target = fraction * brain_volume
    voxel = float(np.prod(grid.spacing))
    parts = _ventricle_parts(subject)[:8]
    white = np.flatnonzero(tissue == _WM)
    painted = 0.0
    for _ in range(80):
        if painted >= target:
            break
        if rng.random() < 0.65:  # periventricular, radially oriented (Dawson's fingers)
            vcentre, vradii = parts[rng.integers(len(parts))]
            direction = rng.standard_normal(3)
            direction /= np.linalg.norm(direction)
            centre = vcentre + direction * vradii * rng.uniform(1.1, 1.6)
        else:
            if white.size == 0:
                break
            centre = np.array(np.unravel_index(white[rng.integers(white.size)], grid.shape), float)
            centre = np.asarray(grid.origin) + centre * np.asarray(grid.spacing)
            direction = rng.standard_normal(3)
        long_r = rng.uniform(2.5, 8.0)
        radii = np.array(
            [
                long_r,
                rng.uniform(1.5, max(1.6, 0.6 * long_r)),
                rng.uniform(1.5, max(1.6, 0.5 * long_r)),
            ]
        )
        box = grid.box(centre, radii.max() + grid.spacing[0])
        if box is None:
            continue
        slices, axes = box
        inside = ellipsoid(axes, centre, radii, rotation_to(direction)) < 1.0
        inside &= brain[slices] & np.isin(tissue[slices], (_WM, _DEEP, _CAP, _GM))
        region = np.zeros(grid.shape, dtype=bool)
        region[slices] = inside
        t1 = 0.45 if rng.random() < 0.2 else 0.72  # some T1 black holes
        t1c = 1.2 if rng.random() < 0.15 else t1 + 0.02  # some active (enhancing) lesions
        canvas.paint(region, (rng.uniform(0.8, 0.95), t1, t1c, 0.85), 1.0, LABEL_MS)
        painted += inside.sum() * voxel


def _choose_kinds(rng: np.random.Generator, lesions, config: PhantomConfig) -> tuple[str, ...]:
    if isinstance(lesions, str):
        if lesions != "random":
            lesions = (lesions,)
        else:
            p = np.asarray(config.kind_weights, float)
            return (LESION_KINDS[int(rng.choice(3, p=p / p.sum()))],)
    kinds = tuple(lesions)
    for kind in kinds:
        if kind not in LESION_KINDS:
            raise ValueError(f"unknown lesion kind {kind!r}; use {LESION_KINDS}")
    return kinds


def make_phantom(
    shape: Sequence[int] = (120, 120, 78),
    seed: int = 0,
    lesions: str | Sequence[str] = "random",
    config: PhantomConfig | None = None,
) -> Phantom:
    """Make one phantom case.

    Args:
        shape: grid (H, W, D), e.g. 64^3 up to 240x240x155; voxel size = ``config.fov_mm / shape``.
        seed: everything is drawn from this seed (same seed, same case).
        lesions: "random" (one kind drawn by ``config.kind_weights``), a kind ("tumour",
            "stroke", "ms"), a sequence of kinds, or () for a lesion-free case.
        config: knobs; default :class:`PhantomConfig`.
    Returns:
        A :class:`Phantom`.
    """
    config = config or PhantomConfig()
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 16:
        raise ValueError(f"phantom shape must be 3 sizes >= 16, got {shape}")
    rng = np.random.default_rng(seed)
    grid = Grid.centred(shape, config.fov_mm)  # type: ignore[arg-type]
    subject = _Subject.draw(rng)
    kinds = _choose_kinds(rng, lesions, config)

    long_fields = smooth_fields(rng, grid, 70.0, 6)  # envelope, shared bias, 4 bias
    mid_fields = smooth_fields(rng, grid, 14.0, 3)  # (unused), tumour shape, core shape
    short_fields = smooth_fields(rng, grid, 5.0, 2)  # texture, lesion heterogeneity
    fields = {
        "shape": long_fields[0],
        "fold_coarse": coarse_noise(rng, config.fov_mm, 7.5, 2),
        "tumour": mid_fields[1],
        "edema": mid_fields[2],
        "texture": short_fields[0],
        "hetero": short_fields[1],
    }
    axes = grid.axes()
    voxel_volume = float(np.prod(grid.spacing))
    brain_volume_guess = 4.0 / 3.0 * math.pi * 66 * 84 * 54 * subject.scale**3

    tumour_plan = None
    warped = tuple(np.broadcast_to(a, shape) for a in axes)
    if "tumour" in kinds:
        side = rng.choice([-1.0, 1.0])
        centre = np.array(
            [
                side * rng.uniform(15, 38),
                rng.uniform(-45, 40),
                subject.centre_z + rng.uniform(-5, 28),
            ]
        )
        fraction = _loguniform(rng, config.tumour_fraction)
        # oedema is clipped to white matter and brain: aim a little higher than the target
        radius_e = (3.0 * fraction * brain_volume_guess * 1.35 / (4.0 * math.pi)) ** (1.0 / 3.0)
        core_ratio = rng.uniform(0.45, 0.75)
        push = 0.5 * radius_e * core_ratio
        warped = _warp(axes, centre, push, 1.8 * radius_e)
        tumour_plan = (centre, radius_e, core_ratio)

    tissue, brain, _ = _anatomy(grid, subject, fields, warped)
    brain_volume = float(brain.sum()) * voxel_volume
    base = _TISSUE_CONTRAST[:, :].T[:, tissue]  # (4, H, W, D)
    base *= 1.0 + 0.03 * fields["texture"][None]
    canvas = _Canvas(base.astype(np.float32), np.zeros(shape, np.uint8), fields["texture"])

    if tumour_plan is not None:
        _tumour(rng, grid, canvas, tissue, brain, fields, *tumour_plan)
    if "stroke" in kinds:
        _stroke(
            rng,
            grid,
            canvas,
            tissue,
            brain,
            subject,
            _loguniform(rng, config.stroke_fraction),
            brain_volume,
        )
    if "ms" in kinds:
        _ms(
            rng,
            grid,
            canvas,
            tissue,
            brain,
            subject,
            _loguniform(rng, config.ms_fraction),
            brain_volume,
        )
    canvas.labels[~brain] = 0

    image = _acquire(rng, canvas.image, brain, long_fields[1:], config)
    return Phantom(image, canvas.labels, brain, grid.affine, kinds, seed, MODALITIES, tissue)


def _acquire(
    rng, image: np.ndarray, brain: np.ndarray, bias_fields: np.ndarray, config: PhantomConfig
) -> np.ndarray:
    """Point spread, bias field, Rician noise, gains; zero outside the brain (skull-stripped)."""
    from scipy import ndimage as ndi

    out = np.empty_like(image)
    shared = bias_fields[0]
    for m in range(4):
        channel = image[m]
        if config.blur_voxels > 0:
            channel = ndi.gaussian_filter(channel, config.blur_voxels, mode="constant")
        log_bias = config.bias * (0.7 * shared + 0.7 * bias_fields[1 + m]) / math.sqrt(0.98)
        channel = channel * np.exp(log_bias)
        sigma = config.noise * float(np.median(_TISSUE_CONTRAST[_WM]))
        real = channel + sigma * rng.standard_normal(channel.shape, dtype=np.float32)
        imag = sigma * rng.standard_normal(channel.shape, dtype=np.float32)
        channel = np.sqrt(real * real + imag * imag)
        gain = _GAINS[m] * rng.uniform(0.8, 1.25)
        out[m] = np.where(brain, channel * gain, 0.0)
    return out


def write_phantom_dataset(
    root: str | Path,
    n_cases: int = 8,
    shape: Sequence[int] = (120, 120, 78),
    seed: int = 0,
    healthy_fraction: float = 0.25,
    lesions: str | Sequence[str] = "random",
    config: PhantomConfig | None = None,
    brain_mask_file: bool = True,
) -> list[Path]:
    """Write phantoms as a BraTS 2017+ dataset folder that :class:`BratsLayout` reads.

    Each case ``<root>/phantom_NNNN/`` holds ``phantom_NNNN_{flair,t1,t1ce,t2,seg}.nii.gz``
    (and ``_brainmask``). Lesion-free cases (a ``healthy_fraction`` of them, chosen by seed)
    have an all-zero seg. Case i uses seed ``seed * 1000 + i``.

    Returns:
        The case folders.
    """
    from wsls.io.nifti import Volume, save_like

    root = Path(root)
    rng = np.random.default_rng(seed)
    n_healthy = int(round(healthy_fraction * n_cases))
    healthy = (
        set(rng.choice(n_cases, size=n_healthy, replace=False).tolist()) if n_healthy else set()
    )
    folders = []
    for i in range(n_cases):
        case_seed = seed * 1000 + i
        phantom = make_phantom(shape, case_seed, () if i in healthy else lesions, config)
        case_id = f"phantom_{case_seed:04d}"
        folder = root / case_id
        volume = Volume.from_array(phantom.image, phantom.affine, MODALITIES)
        for m, name in enumerate(("flair", "t1", "t1ce", "t2")):
            save_like(volume.data[m], volume, folder / f"{case_id}_{name}.nii.gz", dtype=np.float32)
        save_like(phantom.labels, volume, folder / f"{case_id}_seg.nii.gz", dtype=np.uint8)
        if brain_mask_file:
            save_like(phantom.brain, volume, folder / f"{case_id}_brainmask.nii.gz")
        folders.append(folder)
    return folders
