"""A Gaussian mixture on voxel intensities with the weak map as spatial prior, in torch on the
volume's device.

"Locate with the weak maps, let intensity draw the boundary" (DESIGN section 8): the smoothed
ACAM says roughly where the lesion is; EM fits lesion and normal-tissue Gaussians to the
intensities inside the brain, each voxel's lesion prior being its smoothed map value. Normal
tissue gets several components (CSF, grey and white matter look different); the lesion one
(two where a first mask barely stands out: ``EMConfig.faint_lesion_components``).
The posterior is intensity-consistent where the ACAM is only approximately right.

By default the mixture sees one modality, the first: by convention the one that shows the whole
lesion (FLAIR for tumours and MS lesions, DWI for strokes). Adding modalities that mark only part
of it (T1c enhances only a tumour's rim) made the posterior worse on the shared BraTS cases, and
picking the modality that best separates the map's hot voxels from its cold ones picked T1c
whenever the ACAM sat on the enhancing rim.

Before it fits, the mixture removes a smooth polynomial field from the modalities it reads
(``EMConfig.bias_order``, :func:`without_field`): a raw scan's bias field lifts one part of the
brain above a dim lesion.

The statistics are float64 on every device, so the CPU and a GPU fit the same mixture.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import Tensor

from wsls import morphology
from wsls.method.confident import supported_lesion
from wsls.method.config import EMConfig, WSLSConfig


def _gauss_logpdfs(x: Tensor, means: Tensor, covs: Tensor) -> Tensor:
    """(K, N) log densities of the voxels x (N, C) under K Gaussians, means (K, C) and
    covariances (K, C, C)."""
    d = x.shape[1]
    if d == 1:  # the default (one modality): no factorisation, no triangular solve
        var = covs[:, 0, 0, None] + 1e-4
        z = (x[None, :, 0] - means[:, 0, None]) / torch.sqrt(var)
        return -0.5 * z * z - 0.5 * torch.log(2 * math.pi * var)
    covs = covs + 1e-4 * torch.eye(d, dtype=covs.dtype, device=covs.device)
    chol = torch.linalg.cholesky(covs)
    z = torch.linalg.solve_triangular(chol, (x[None] - means[:, None]).transpose(1, 2), upper=False)
    return (
        -0.5 * (z * z).sum(1)
        - torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1, keepdim=True)
        - 0.5 * d * math.log(2 * math.pi)
    )


def _weighted_stats(x: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    total = w.sum().clamp_min(1e-8)
    mean = (w[:, None] * x).sum(0) / total
    diff = x - mean
    cov = (w[:, None] * diff).T @ diff / total
    return mean, cov


def discriminative_channel(values: Tensor, hot: Tensor, cold: Tensor) -> int:
    """The channel (column of values (N, C)) whose hot and cold voxels differ most, in units of
    their pooled standard deviation."""
    best, best_score = 0, -1.0
    for c in range(values.shape[1]):
        a, b = values[hot, c], values[cold, c]
        if len(a) < 2 or len(b) < 2:
            continue
        var = 0.5 * (a.var(unbiased=False) + b.var(unbiased=False)) + 1e-8
        score = float((a.mean() - b.mean()).abs() / torch.sqrt(var))
        if score > best_score:
            best, best_score = c, score
    return best


def _init_components(x: Tensor, weights: Tensor, n: int) -> list[list]:
    """n Gaussians initialised on quantile bands of the first feature of the weighted voxels."""
    sel = weights > 0
    if sel.any():
        edges = torch.quantile(
            x[sel, 0], torch.linspace(0, 1, n + 1, dtype=x.dtype, device=x.device)
        )
    else:
        edges = torch.zeros(n + 1, dtype=x.dtype, device=x.device)
    comps = []
    for k in range(n):
        band = sel & (x[:, 0] >= edges[k]) & (x[:, 0] <= edges[k + 1])
        w = weights * band if int(band.sum()) >= 10 else weights
        comps.append([*_weighted_stats(x, w), 1.0 / n])
    return comps


def _columns(values: Tensor, hot: Tensor, cold: Tensor, channels) -> tuple[int, ...]:
    if channels == "first":
        return (0,)
    if channels == "auto":
        return (discriminative_channel(values, hot, cold),)
    if channels == "all":
        return tuple(range(values.shape[1]))
    return tuple(channels)


class BrainVoxels:
    """The brain's voxels of one volume as the mixture sees them, gathered once for all the
    fits on that volume: their flat indices, their values (N, C) float64, and per choice of one
    channel its distinct values with each voxel's row among them (a scan of integer intensities
    has a few thousand distinct values among millions of voxels, so the posterior of every voxel
    is computed once per value)."""

    def __init__(self, image: Tensor, brain: Tensor):
        self.shape, self.device = brain.shape, brain.device
        self.index = torch.nonzero(brain.flatten()).squeeze(1)
        self.values = image.flatten(1)[:, self.index].T.double()
        self._distinct: dict[tuple[int, ...], tuple[Tensor, Tensor]] = {}
        self._coords: Tensor | None = None

    def too_few(self) -> bool:
        """Too few brain voxels to fit a mixture (the posterior is then :meth:`empty`)."""
        return len(self.index) < 20

    def empty(self) -> Tensor:
        """A posterior of no lesion: (H, W, D) float32 zeros on the voxels' device."""
        return torch.zeros(self.shape, dtype=torch.float32, device=self.device)

    def distinct(self, columns: tuple[int, ...]) -> tuple[Tensor, Tensor]:
        if columns not in self._distinct:
            x = self.values[:, list(columns)]
            if len(columns) == 1:  # torch.unique(dim=0) is many times slower than flat unique
                values, row = torch.unique(x[:, 0], return_inverse=True)
                self._distinct[columns] = values[:, None], row
            else:  # value pairs are rarely shared
                self._distinct[columns] = x, torch.arange(len(x), device=x.device)
        return self._distinct[columns]

    def with_values(self, values: Tensor) -> BrainVoxels:
        """These voxels with other values (N, C) (their distinct values gathered anew)."""
        out = copy.copy(self)
        out.values, out._distinct = values, {}
        return out

    def coords(self) -> Tensor:
        """(N, 3) float64 the voxels' grid coordinates, standardised (each axis to mean 0 and
        standard deviation 1 over the brain); computed once per volume."""
        if self._coords is None:
            grid = torch.stack(torch.unravel_index(self.index, tuple(self.shape)), 1).double()
            self._coords = (grid - grid.mean(0)) / grid.std(0).clamp_min(1e-8)
        return self._coords


# the values with a field removed are rounded to this step (in units of the volume's standard
# deviation), so that they stay few distinct values (BrainVoxels.distinct)
FIELD_STEP = 1e-3


def without_field(
    voxels: BrainVoxels, columns: tuple[int, ...], order: int, fitted: Tensor
) -> BrainVoxels:
    """The voxels with a smooth field removed from each of ``columns``: a polynomial of degree
    ``order`` in the voxel coordinates, fitted to the voxels where ``fitted`` (N,) bool holds
    (:func:`polynomial_field`), centred so that the column's brain mean is unchanged."""
    if order == 0:
        return voxels
    values = voxels.values.clone()
    for c in columns:
        field = polynomial_field(voxels.coords(), values[:, c], order, fitted)
        values[:, c] = torch.round((values[:, c] - field) / FIELD_STEP) * FIELD_STEP
    return voxels.with_values(values)


def polynomial_field(
    coords: Tensor, values: Tensor, order: int, fitted: Tensor, every: int = 7, rounds: int = 5
) -> Tensor:
    """(N,) a polynomial of degree ``order`` in ``coords`` (N, 3) (standardised), least-squares
    fitted to ``values`` (N,) on every ``every``-th voxel where ``fitted`` holds, refitted
    ``rounds`` times without the voxels whose residual is more than two robust standard
    deviations (1.4826 MAD) from the median residual (lesions, vessels, CSF that the map did
    not point at), and centred to mean zero over the N voxels."""
    powers = [
        (a, b, c)
        for a in range(order + 1)
        for b in range(order + 1 - a)
        for c in range(order + 1 - a - b)
    ]
    sample = torch.arange(0, len(values), every, device=values.device)
    basis = _monomials(coords[sample], powers)
    y = values[sample]
    base = fitted[sample]
    keep = base
    coef = torch.zeros(len(powers), dtype=values.dtype, device=values.device)
    for _ in range(rounds):
        if int(keep.sum()) < 2 * len(powers):
            break
        coef = torch.linalg.lstsq(basis[keep], y[keep, None]).solution[:, 0]
        residual = y - basis @ coef
        median = residual[keep].median()
        spread = 1.4826 * (residual[keep] - median).abs().median()
        keep = base & ((residual - median).abs() <= 2.0 * spread)
    field = torch.zeros_like(values)
    for k, power in enumerate(powers):  # term by term: no (N, terms) matrix
        if power != (0, 0, 0):
            field += coef[k] * _monomial(coords, power)
    return field - field.mean()


def _monomial(coords: Tensor, power: tuple[int, int, int]) -> Tensor:
    return coords[:, 0] ** power[0] * coords[:, 1] ** power[1] * coords[:, 2] ** power[2]


def _monomials(coords: Tensor, powers: list[tuple[int, int, int]]) -> Tensor:
    return torch.stack([_monomial(coords, p) for p in powers], 1)


def lesion_posterior(
    image: Tensor, brain: Tensor, weak_map: Tensor, config: EMConfig | None = None
) -> Tensor:
    """Posterior probability of lesion per voxel.

    Args:
        image: (C, H, W, D) normalised modalities; brain: (H, W, D) bool; weak_map: (H, W, D)
            in [0, 1] (ACAM); all on one device.
    Returns:
        (H, W, D) float32 in [0, 1] on that device, zero outside the brain.
    """
    return _posterior(BrainVoxels(image, brain), weak_map, config or EMConfig())


def _log_prior(prior: Tensor) -> tuple[Tensor, Tensor]:
    """(log P(normal), log P(lesion)) per voxel of a lesion prior."""
    return torch.log1p(-prior), torch.log(prior)


class Mixture:
    """A fitted mixture on one volume's brain voxels: the normal and lesion Gaussians (mean,
    covariance, weight each), the clipped spatial prior per voxel (and its logs, which the fit
    computed) and the columns it fits."""

    def __init__(
        self,
        voxels: BrainVoxels,
        normal: list[list],
        lesion: list[list],
        prior: Tensor,
        log_prior: tuple[Tensor, Tensor],
        columns: tuple[int, ...],
    ):
        self.voxels, self.normal, self.lesion = voxels, normal, lesion
        self.prior, self.log_prior, self.columns = prior, log_prior, columns

    def posterior(self, ceiling: float | None = None) -> Tensor:
        """(H, W, D) float32 posterior, zero outside the brain; ``ceiling`` lowers the prior's
        ceiling (``EMConfig.decision_ceiling``), None keeps the fit's."""
        voxels = self.voxels
        out = voxels.empty()
        log_prior = self.log_prior if ceiling is None else _log_prior(self.prior.clamp(max=ceiling))
        distinct, row = voxels.distinct(self.columns)
        log_odds = _log_odds(distinct, row, log_prior, self.normal, self.lesion)
        out.view(-1)[voxels.index] = torch.sigmoid(log_odds).float()
        return out


def _posterior(voxels: BrainVoxels, weak_map: Tensor, config: EMConfig) -> Tensor:
    """:func:`lesion_posterior` on the brain's voxels gathered already."""
    if voxels.too_few():
        return voxels.empty()
    return _fit(voxels, _smoothed(weak_map, config), config).posterior()


def _smoothed(weak_map: Tensor, config: EMConfig) -> Tensor:
    """The map smoothed by ``smooth_sigma``, before it becomes the prior (:func:`_fit`)."""
    return morphology.gaussian_filter(weak_map.float(), config.smooth_sigma)


def _fit(voxels: BrainVoxels, smooth: Tensor, config: EMConfig) -> Mixture:
    """EM on (at most ``fit_voxels`` of) the brain's voxels, the smoothed map ``smooth``
    (:func:`_smoothed`) as prior."""
    n = len(voxels.index)
    smooth = smooth.flatten()[voxels.index]
    peak = smooth.max()
    smooth = smooth / peak if peak > 0 else smooth
    prior = smooth.clamp(config.prior_floor, config.prior_ceiling).double()
    hot, cold = smooth >= config.seed_high, smooth <= config.seed_low
    if int(hot.sum()) < 10 or int(cold.sum()) < 10:  # no usable map: split at the median
        middle = float(np.median(smooth.double().cpu().numpy()))
        hot, cold = smooth >= middle, smooth < middle
    columns = _columns(voxels.values, hot, cold, config.channels)
    fit = torch.linspace(0, n - 1, min(n, config.fit_voxels), dtype=torch.float64)
    fit = fit.to(torch.int64).to(voxels.device)
    x_fit = voxels.values[fit][:, list(columns)]
    normal = _init_components(x_fit, cold[fit].double(), config.normal_components)
    lesion = _init_components(x_fit, hot[fit].double(), config.lesion_components)
    log_prior = _log_prior(prior)
    _, row = voxels.distinct(columns)
    clipped = smooth[fit] <= config.prior_floor, smooth[fit] >= config.prior_ceiling
    alike, count = _alike_voxels(row[fit], *clipped)
    x_em, kept = x_fit[alike], fit[alike]
    sides = [log_prior[0][kept]] * len(normal) + [log_prior[1][kept]] * len(lesion)
    _em(x_em, torch.stack(sides), count, normal, lesion, config.iterations)
    return Mixture(voxels, normal, lesion, prior, log_prior, columns)


def _em(
    x: Tensor, log_prior: Tensor, count: Tensor, normal: list[list], lesion: list[list], steps: int
) -> None:
    """``steps`` EM steps on voxels x (N, C), each standing for ``count`` (N,) alike voxels,
    with their log prior (K, N) of the class of each of the K Gaussians (normal ones first):
    the components ([mean, covariance, weight within the class]) are updated in place. The K
    Gaussians are computed together, as (K, N) arrays."""
    comps = normal + lesion
    means, covs, weights = _stacked(comps, x)
    classes = torch.tensor([0] * len(normal) + [1] * len(lesion), device=x.device)
    for _ in range(steps):
        logs = log_prior + torch.log(weights)[:, None] + _gauss_logpdfs(x, means, covs)
        resp = torch.softmax(logs, dim=0) * count
        mass = resp.sum(1)
        total = mass.clamp_min(1e-8)
        means = resp @ x / total[:, None]
        diff = x[None] - means[:, None]
        covs = (resp[:, :, None] * diff).transpose(1, 2) @ diff / total[:, None, None]
        class_mass = torch.zeros(2, dtype=x.dtype, device=x.device).index_add_(0, classes, mass)
        weights = (mass / class_mass[classes].clamp_min(1e-8)).clamp_min(1e-6)
    for k, comp in enumerate(comps):
        comp[:] = [means[k], covs[k], weights[k]]


def _alike_voxels(row: Tensor, at_floor: Tensor, at_ceiling: Tensor) -> tuple[Tensor, Tensor]:
    """The fit voxels grouped where they are alike to EM: the same value (``row`` among the
    distinct values) and a prior clipped to its floor, or to its ceiling. Most of the brain is
    far from the map's hot part, at the floor, so about 200,000 voxels make a few tens of
    thousands of groups; the voxels in between stay alone. Returns one voxel (its position in
    the fit voxels) per group, and the group's size as the float64 weight its responsibilities
    carry in the M step, which then computes what it would on every voxel."""
    alone = ~(at_floor | at_ceiling)
    key = row * 2 + at_ceiling.long()
    shared = 2 * (int(row.max()) + 1)
    key[alone] = shared + torch.arange(int(alone.sum()), device=row.device)
    position = torch.arange(len(row), device=row.device)
    first = torch.full((shared + int(alone.sum()),), len(row), device=row.device)
    first.scatter_reduce_(0, key, position, "amin")
    count = torch.bincount(key, minlength=len(first))
    return first[count > 0], count[count > 0].double()


def _stacked(group: list[list], x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The components of ``group`` as means (K, C), covariances (K, C, C) and weights (K,) in
    the dtype and on the device of the voxels x."""
    means, covs = torch.stack([c[0] for c in group]), torch.stack([c[1] for c in group])
    weights = torch.stack([torch.as_tensor(c[2], dtype=x.dtype, device=x.device) for c in group])
    return means, covs, weights


def _class_log(x: Tensor, row: Tensor, group: list[list], log_p: Tensor) -> Tensor:
    means, covs, weights = _stacked(group, x)
    logs = torch.log(weights)[:, None] + _gauss_logpdfs(x, means, covs)
    return log_p + torch.logsumexp(logs, dim=0)[row]


def _log_odds(x: Tensor, row: Tensor, log_prior, normal, lesion) -> Tensor:
    """(N,) log of P(lesion | x) / P(normal | x) with the spatial prior for N voxels whose
    values are the rows ``row`` of x."""
    return _class_log(x, row, lesion, log_prior[1]) - _class_log(x, row, normal, log_prior[0])


def intensity_posterior(
    image: Tensor,
    brain: Tensor,
    acam: Tensor,
    config: WSLSConfig,
    voxels: BrainVoxels | None = None,
) -> Tensor:
    """The EM lesion posterior, its prior refined by its own supported estimate.

    The ACAM is hot on part of a lesion only (often the rim, or one lobe of a large tumour), so
    a prior taken from it alone leaves the rest of the lesion unlikely and the posterior too
    small. Each round, the posterior's lesion components that the ACAM hits (supported_lesion)
    join the prior, max(ACAM, supported), and the mixture is refitted, until the supported
    estimate changes by less than ``em.support_tolerance`` of its size or ``em.support_rounds``
    refits were made. On the shared BraTS cases (held-out ACAMs) this raised the mean Dice of the
    supported estimate from 0.745 (one fit) to 0.859; components the ACAM does not hit never
    enter. The posterior returned is the last fit's, read so that a voxel is lesion only where
    it is with the prior capped at ``em.decision_ceiling`` (:func:`_read`).

    Args:
        image (C, H, W, D), brain (H, W, D) bool, acam (H, W, D): tensors on one device.
        voxels: the brain's voxels of ``image`` when gathered already (:class:`BrainVoxels`).
    """
    previous = None
    voxels = voxels if voxels is not None else BrainVoxels(image, brain)
    if voxels.too_few():
        return voxels.empty()
    acam = acam.float()
    smooth_acam = _smoothed(acam, config.em)
    voxels = _field_removed(voxels, smooth_acam, config.em)
    smooth = smooth_acam
    for _ in range(config.em.support_rounds + 1):
        mixture = _fit(voxels, smooth, config.em)
        posterior = mixture.posterior()
        if config.em.support_rounds == 0:
            break
        support = supported_lesion(acam, brain, posterior, config.confident)
        changed = int((support ^ previous).sum()) if previous is not None else support.numel()
        if changed <= config.em.support_tolerance * max(int(support.sum()), 1):
            break
        previous = support
        # the prior max(ACAM, support) smoothed: the smoothing is linear, so it is the smoothed
        # ACAM plus what the support adds to the ACAM smoothed, which is zero outside the
        # support and so costs its bounding box, not the brain's
        smooth = smooth_acam + _smoothed(support * (1 - acam), config.em)
    return _read(mixture, posterior, config.em.decision_ceiling)


def _field_removed(voxels: BrainVoxels, smooth: Tensor, config: EMConfig) -> BrainVoxels:
    """The voxels without their bias field (``config.bias_order``), fitted where the smoothed
    map ``smooth`` is under ``config.bias_exclude`` of its peak in the brain."""
    if config.bias_order == 0:
        return voxels
    share = smooth.flatten()[voxels.index]
    share = share / share.max().clamp_min(1e-8)
    if isinstance(config.channels, str):  # "first", or "all" and "auto" (any may be read)
        columns = (0,) if config.channels == "first" else tuple(range(voxels.values.shape[1]))
    else:
        columns = tuple(config.channels)
    return without_field(voxels, columns, config.bias_order, share < config.bias_exclude)


def _read(mixture: Mixture, fitted: Tensor, ceiling: float | None) -> Tensor:
    """The posterior the method reads: where the prior capped at ``ceiling`` leaves a voxel
    lesion (posterior >= 0.5), the fit's posterior ``fitted``, so that how sure the model is of
    a lesion voxel (the confident voxels' threshold) is unchanged; elsewhere the capped one
    (< 0.5)."""
    if ceiling is None:
        return fitted
    capped = mixture.posterior(ceiling)
    return torch.where(capped >= 0.5, fitted, capped)
