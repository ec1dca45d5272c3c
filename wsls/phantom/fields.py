"""Building blocks of the phantom: a world-coordinate grid, smooth random fields, ellipsoids.

World coordinates are mm in canonical RAS (x right, y anterior, z superior), centred on the
field of view, so anatomy is defined once and rendered at any voxel size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """A voxel grid: ``shape`` voxels of ``spacing`` mm, voxel (0,0,0) centred at ``origin``."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    @classmethod
    def centred(cls, shape: tuple[int, int, int], fov_mm: tuple[float, float, float]) -> Grid:
        spacing = tuple(f / n for f, n in zip(fov_mm, shape, strict=True))
        origin = tuple(-(n - 1) * s / 2.0 for n, s in zip(shape, spacing, strict=True))
        return cls(tuple(shape), spacing, origin)  # type: ignore[arg-type]

    @property
    def fov(self) -> tuple[float, float, float]:
        """Field of view in mm."""
        return tuple(n * s for n, s in zip(self.shape, self.spacing, strict=True))  # type: ignore[return-value]

    @property
    def affine(self) -> np.ndarray:
        """(4, 4) voxel-to-world matrix (RAS, mm)."""
        out = np.diag([*self.spacing, 1.0])
        out[:3, 3] = self.origin
        return out

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Open (broadcastable) world coordinate arrays x (H,1,1), y (1,W,1), z (1,1,D)."""
        x, y, z = (
            (o + s * np.arange(n, dtype=np.float32)).astype(np.float32)
            for o, s, n in zip(self.origin, self.spacing, self.shape, strict=True)
        )
        return x[:, None, None], y[None, :, None], z[None, None, :]

    def box(
        self, centre: np.ndarray, radius_mm: float
    ) -> tuple[tuple[slice, slice, slice], tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
        """Voxel slices of the cube centre +- radius (clipped) and its open world axes."""
        slices, axes = [], []
        for c, o, s, n in zip(centre, self.origin, self.spacing, self.shape, strict=True):
            lo = max(0, int(np.floor((c - radius_mm - o) / s)))
            hi = min(n, int(np.ceil((c + radius_mm - o) / s)) + 1)
            if hi <= lo:
                return None
            slices.append(slice(lo, hi))
            axes.append((o + s * np.arange(lo, hi, dtype=np.float32)).astype(np.float32))
        x, y, z = axes
        return tuple(slices), (x[:, None, None], y[None, :, None], z[None, None, :])  # type: ignore[return-value]


def smooth_fields(
    rng: np.random.Generator, grid: Grid, length_mm: float, count: int = 1
) -> np.ndarray:
    """``count`` smooth Gaussian random fields with correlation length about ``length_mm``.

    White noise on a coarse grid (step length/2), smoothed there, upsampled trilinearly.
    Returns (count, H, W, D) float32, each with zero mean and unit sd.
    """
    import torch
    import torch.nn.functional as F
    from scipy import ndimage as ndi

    step = length_mm / 2.0
    coarse = [
        max(4, int(np.ceil(n * s / step)) + 3)
        for n, s in zip(grid.shape, grid.spacing, strict=True)
    ]
    noise = rng.standard_normal((count, *coarse), dtype=np.float32)
    noise = ndi.gaussian_filter(noise, sigma=(0, 1.0, 1.0, 1.0), mode="wrap")
    up = F.interpolate(
        torch.from_numpy(noise)[None], size=grid.shape, mode="trilinear", align_corners=True
    )
    out = up[0].numpy()
    out -= out.mean(axis=(1, 2, 3), keepdims=True)
    out /= out.std(axis=(1, 2, 3), keepdims=True) + 1e-6
    return out


def ellipsoid(
    axes: tuple[np.ndarray, np.ndarray, np.ndarray],
    centre: np.ndarray,
    radii: np.ndarray,
    rotation: np.ndarray | None = None,
) -> np.ndarray:
    """Normalised radius of an ellipsoid: < 1 inside. Broadcasts over open or full axes."""
    dx, dy, dz = (a - c for a, c in zip(axes, centre, strict=True))
    if rotation is not None:
        r = rotation
        dx, dy, dz = (
            r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz,
            r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
            r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz,
        )
    return np.sqrt((dx / radii[0]) ** 2 + (dy / radii[1]) ** 2 + (dz / radii[2]) ** 2)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def rotation_to(direction: np.ndarray) -> np.ndarray:
    """A rotation whose first column (the ellipsoid's first axis) points along ``direction``."""
    a = direction / (np.linalg.norm(direction) + 1e-9)
    helper = np.array([0.0, 0.0, 1.0]) if abs(a[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    b = np.cross(a, helper)
    b /= np.linalg.norm(b)
    c = np.cross(a, b)
    return np.stack([a, b, c], axis=1)


def coarse_noise(
    rng: np.random.Generator, fov_mm: tuple[float, float, float], length_mm: float, count: int
) -> np.ndarray:
    """Smooth noise on a coarse grid spanning the field of view, for :func:`sample_noise`.

    Returns (count, a, b, c) float32 with unit sd; grid step is ``length_mm / 2``.
    """
    from scipy import ndimage as ndi

    step = length_mm / 2.0
    coarse = [max(4, int(np.ceil(f / step)) + 3) for f in fov_mm]
    noise = rng.standard_normal((count, *coarse), dtype=np.float32)
    noise = ndi.gaussian_filter(noise, sigma=(0, 1.0, 1.0, 1.0), mode="wrap")
    noise /= noise.std(axis=(1, 2, 3), keepdims=True) + 1e-6
    return noise


def sample_noise(
    noise: np.ndarray,
    fov_mm: tuple[float, float, float],
    points: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """Trilinear samples of coarse ``noise`` (count, a, b, c) at world points (mm, full arrays).

    Returns (count, *points[0].shape) float32.
    """
    import torch
    import torch.nn.functional as F

    shape = np.broadcast_shapes(*(p.shape for p in points))
    # grid_sample's last coordinate indexes the input's last axis: order (z, y, x)
    normalised = [
        np.broadcast_to(p / (f / 2.0), shape).astype(np.float32)
        for p, f in zip(points, fov_mm, strict=True)
    ]
    grid = torch.from_numpy(np.stack(normalised[::-1], axis=-1))[None]
    out = F.grid_sample(
        torch.from_numpy(noise)[None],
        grid,
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    )
    return out[0].numpy()
