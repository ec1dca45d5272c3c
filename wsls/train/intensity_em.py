"""A two-class Gaussian mixture on voxel intensities with the weak map as spatial prior.

"Locate with the weak maps, let intensity draw the boundary" (DESIGN section 8): the smoothed
ACAM says roughly where the lesion is; EM fits a lesion and a normal-tissue Gaussian to the
modalities inside the brain, each voxel's prior being its smoothed map value. The posterior is
intensity-consistent where the ACAM is only approximately right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EMConfig:
    """iterations: EM steps; prior_floor, prior_ceiling: clip of the spatial prior (no voxel is
    certain a priori); smooth_sigma: Gaussian smoothing (voxels) of the map before it becomes the
    prior; seed_high, seed_low: map values that initialise the lesion and normal classes."""

    iterations: int = 25
    prior_floor: float = 0.02
    prior_ceiling: float = 0.9
    smooth_sigma: float = 2.0
    seed_high: float = 0.5
    seed_low: float = 0.1


def _gauss_logpdf(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    d = x.shape[1]
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


def lesion_posterior(
    image: np.ndarray, brain: np.ndarray, weak_map: np.ndarray, config: EMConfig | None = None
) -> np.ndarray:
    """Posterior probability of lesion per voxel.

    Args:
        image: (C, H, W, D) normalised modalities (the ones whose intensity marks the lesion).
        brain: (H, W, D) bool.
        weak_map: (H, W, D) in [0, 1] (ACAM).
    Returns:
        (H, W, D) float32 in [0, 1], zero outside the brain.
    """
    from scipy import ndimage as ndi

    config = config or EMConfig()
    out = np.zeros(brain.shape, dtype=np.float32)
    if not brain.any():
        return out
    smooth = ndi.gaussian_filter(weak_map.astype(np.float32), config.smooth_sigma)
    peak = smooth[brain].max()
    smooth = smooth / peak if peak > 0 else smooth
    prior = np.clip(smooth[brain], config.prior_floor, config.prior_ceiling).astype(np.float64)
    x = image[:, brain].T.astype(np.float64)  # (N, C)
    resp = (smooth[brain] >= config.seed_high).astype(np.float64)
    if resp.sum() < 10 or (1 - resp).sum() < 10:  # no usable map: start from the prior itself
        resp = prior.copy()
    normal0 = (smooth[brain] <= config.seed_low).astype(np.float64)
    if normal0.sum() < 10:
        normal0 = 1 - resp
    mu1, cov1 = _weighted_stats(x, resp)
    mu0, cov0 = _weighted_stats(x, normal0)
    for _ in range(config.iterations):
        l1 = np.log(prior) + _gauss_logpdf(x, mu1, cov1)
        l0 = np.log1p(-prior) + _gauss_logpdf(x, mu0, cov0)
        resp = 1.0 / (1.0 + np.exp(np.clip(l0 - l1, -60, 60)))
        mu1, cov1 = _weighted_stats(x, resp)
        mu0, cov0 = _weighted_stats(x, 1 - resp)
    out[brain] = resp.astype(np.float32)
    return out
