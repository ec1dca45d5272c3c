"""Seeds for region growing: confident lesion voxels spread over the map."""

from __future__ import annotations

import numpy as np


def spread_seeds(candidates: np.ndarray, weights: np.ndarray, count: int) -> np.ndarray:
    """Farthest-point sampling: start at the highest-weight candidate, then repeatedly take the
    candidate farthest from the seeds so far (ties to the higher weight), so seeds cover every
    blob of the map instead of crowding the brightest one.

    Args:
        candidates: (N, 3) int voxel indices; weights: (N) (e.g. ACAM values).
    Returns:
        (min(count, N), 3) int64 seeds.
    """
    n = len(candidates)
    if n == 0 or count <= 0:
        return np.zeros((0, 3), dtype=np.int64)
    pts = candidates.astype(np.float64)
    tie = weights.astype(np.float64) * 1e-6
    chosen = [int(np.argmax(weights))]
    dist = np.full(n, np.inf)
    for _ in range(min(count, n) - 1):
        dist = np.minimum(dist, ((pts - pts[chosen[-1]]) ** 2).sum(1))
        nxt = int(np.argmax(dist + tie))
        if dist[nxt] == 0:
            break
        chosen.append(nxt)
    return candidates[chosen].astype(np.int64)
