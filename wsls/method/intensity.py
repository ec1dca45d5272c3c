"""A Gaussian mixture on voxel intensities with the weak map as spatial prior.

"Locate with the weak maps, let intensity draw the boundary" (DESIGN section 8): the smoothed
ACAM says roughly where the lesion is; EM fits lesion and normal-tissue Gaussians to the
intensities inside the brain, each voxel's lesion prior being its smoothed map value. Normal
tissue gets several components (CSF, grey and white matter look different); the lesion one.
The posterior is intensity-consistent where the ACAM is only approximately right.

By default the mixture sees one modality, the first: by convention the one that shows the whole
lesion (FLAIR for tumours and MS lesions, DWI for strokes). Adding modalities that mark only part
of it (T1c enhances only a tumour's rim) made the posterior worse on the shared BraTS cases, and
picking the modality that best separates the map's hot voxels from its cold ones picked T1c
whenever the ACAM sat on the enhancing rim.
"""

from __future__ import annotations

import numpy as np

from wsls.method.confident import supported_lesion
from wsls.method.config import EMConfig, WSLSConfig


def _gauss_logpdf(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    d = x.shape[1]
    if d == 1:  # the default (one modality): no factorisation, no triangular solve
        var = float(cov[0, 0]) + 1e-4
        z = (x[:, 0] - mean[0]) / np.sqrt(var)
        return -0.5 * z * z - 0.5 * np.log(2 * np.pi * var)
    cov = cov + 1e-4 * np.eye(d)
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, (x - mean).T)
    return -0.5 * (z * z).sum(0) - np.log(np.diag(chol)).sum() - 0.5 * d * np.log(2 * np.pi)


def _weighted_stats(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    total = max(float(w.sum()), 1e-8)
    mean = (w[:, None] * x).sum(0) / total
    diff = x - mean
    cov = (w[:, None] * diff).T @ diff / total
    return mean, cov


def discriminative_channel(values: np.ndarray, hot: np.ndarray, cold: np.ndarray) -> int:
    """The channel (column of values (N, C)) whose hot and cold voxels differ most, in units of
    their pooled standard deviation."""
    best, best_score = 0, -1.0
    for c in range(values.shape[1]):
        a, b = values[hot, c], values[cold, c]
        if len(a) < 2 or len(b) < 2:
            continue
        score = abs(a.mean() - b.mean()) / np.sqrt(0.5 * (a.var() + b.var()) + 1e-8)
        if score > best_score:
            best, best_score = c, score
    return best


def _init_components(x, weights, n) -> list[list]:
    """n Gaussians initialised on quantile bands of the first feature of the weighted voxels."""
    sel = weights > 0
    edges = np.quantile(x[sel, 0], np.linspace(0, 1, n + 1)) if sel.any() else np.zeros(n + 1)
    comps = []
    for k in range(n):
        band = sel & (x[:, 0] >= edges[k]) & (x[:, 0] <= edges[k + 1])
        w = weights * band if band.sum() >= 10 else weights
        comps.append([*_weighted_stats(x, w), 1.0 / n])
    return comps


def lesion_posterior(
    image: np.ndarray, brain: np.ndarray, weak_map: np.ndarray, config: EMConfig | None = None
) -> np.ndarray:
    """Posterior probability of lesion per voxel.

    Args:
        image: (C, H, W, D) normalised modalities.
        brain: (H, W, D) bool.
        weak_map: (H, W, D) in [0, 1] (ACAM).
    Returns:
        (H, W, D) float32 in [0, 1], zero outside the brain.
    """
    from scipy import ndimage as ndi

    config = config or EMConfig()
    out = np.zeros(brain.shape, dtype=np.float32)
    if brain.sum() < 20:
        return out
    smooth = ndi.gaussian_filter(weak_map.astype(np.float32), config.smooth_sigma)[brain]
    peak = smooth.max()
    smooth = smooth / peak if peak > 0 else smooth
    prior = np.clip(smooth, config.prior_floor, config.prior_ceiling).astype(np.float64)
    values = image[:, brain].T.astype(np.float64)  # (N, C)
    hot, cold = smooth >= config.seed_high, smooth <= config.seed_low
    if hot.sum() < 10 or cold.sum() < 10:  # no usable map: split at the prior's median
        hot, cold = smooth >= np.median(smooth), smooth < np.median(smooth)
    if config.channels == "first":
        x = values[:, :1]
    elif config.channels == "auto":
        x = values[:, [discriminative_channel(values, hot, cold)]]
    elif config.channels == "all":
        x = values
    else:
        x = values[:, list(config.channels)]
    fit = np.linspace(0, len(x) - 1, min(len(x), config.fit_voxels)).astype(np.int64)
    x_fit = x[fit]
    normal = _init_components(x_fit, cold[fit].astype(np.float64), config.normal_components)
    lesion = _init_components(x_fit, hot[fit].astype(np.float64), config.lesion_components)
    log_prior = np.log1p(-prior), np.log(prior)
    log_prior_fit = log_prior[0][fit], log_prior[1][fit]
    for _ in range(config.iterations):
        resp = _responsibilities(x_fit, log_prior_fit, normal, lesion)
        for k, comp in enumerate(normal + lesion):
            comp[0], comp[1] = _weighted_stats(x_fit, resp[k])
        for group, rows in ((normal, resp[: len(normal)]), (lesion, resp[len(normal) :])):
            total = max(float(rows.sum()), 1e-8)
            for comp, r in zip(group, rows, strict=True):
                comp[2] = max(float(r.sum()) / total, 1e-6)
    log_odds = _log_odds(x, log_prior, normal, lesion)
    out[brain] = _sigmoid(log_odds)
    for _ in range(config.mrf_iterations if config.mrf_strength > 0 else 0):
        agree = ndi.gaussian_filter(out, config.mrf_sigma)[brain]  # neighbours' lesion share
        out[brain] = _sigmoid(log_odds + config.mrf_strength * (2.0 * agree - 1.0))
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)


def _log_odds(x, log_prior, normal, lesion) -> np.ndarray:
    """(N,) log of P(lesion | x) / P(normal | x) with the spatial prior, for the voxels x."""
    from scipy.special import logsumexp

    def class_log(group, log_p):
        return log_p + logsumexp(
            [np.log(pi) + _gauss_logpdf(x, m, c) for m, c, pi in group], axis=0
        )

    return class_log(lesion, log_prior[1]) - class_log(normal, log_prior[0])


def _responsibilities(x, log_prior, normal, lesion) -> np.ndarray:
    """(components, N) posterior of each Gaussian (normal ones first) for the voxels x (N, C)."""
    logs = [log_prior[0] + np.log(pi) + _gauss_logpdf(x, m, c) for m, c, pi in normal]
    logs += [log_prior[1] + np.log(pi) + _gauss_logpdf(x, m, c) for m, c, pi in lesion]
    stacked = np.stack(logs)
    resp = np.exp(stacked - stacked.max(0))
    resp /= resp.sum(0)
    return resp


def intensity_posterior(
    image: np.ndarray, brain: np.ndarray, acam: np.ndarray, config: WSLSConfig
) -> np.ndarray:
    """The EM lesion posterior, its prior refined by its own supported estimate.

    The ACAM is hot on part of a lesion only (often the rim, or one lobe of a large tumour), so
    a prior taken from it alone leaves the rest of the lesion unlikely and the posterior too
    small. Each round, the posterior's lesion components that the ACAM hits (supported_lesion)
    join the prior, max(ACAM, supported), and the mixture is refitted, until the supported
    estimate changes by less than ``em.support_tolerance`` of its size or ``em.support_rounds``
    refits were made. On the shared BraTS cases (held-out ACAMs) this raised the mean Dice of the
    supported estimate from 0.745 (one fit) to 0.859; components the ACAM does not hit never
    enter.
    """
    prior, previous = acam, None
    for _ in range(config.em.support_rounds + 1):
        posterior = lesion_posterior(image, brain, prior, config.em)
        if config.em.support_rounds == 0:
            break
        support = supported_lesion(acam, brain, posterior, config.confident)
        changed = np.count_nonzero(support ^ previous) if previous is not None else support.size
        if changed <= config.em.support_tolerance * max(np.count_nonzero(support), 1):
            break
        previous = support
        prior = np.maximum(acam, support.astype(np.float32))
    return posterior
