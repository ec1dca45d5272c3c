"""The intensity model as it was in numpy (wsls 0.1 before the torch port): the reference the
torch EM is tested against (tests/test_method.py)."""

from __future__ import annotations

import numpy as np

from wsls.method.config import EMConfig


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
