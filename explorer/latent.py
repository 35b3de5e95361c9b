"""Latent-space math: ranges, sampling, interpolation and traversal. Latents are float32
numpy arrays, (D,) for one point and (N, D) for several."""

from __future__ import annotations

import numpy as np

from training.evaluate import ACTIVE_VARIANCE

DEFAULT_HALF_RANGE = 3.0  # without an atlas: ±3 standard deviations of the N(0, I) prior


def latent_ranges(means: np.ndarray | None, latent_dim: int, n_std: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension slider bounds: the encoded means' centre ± N_STD standard deviations
    (the prior's ±3 when no atlas is available), rounded outward to 0.01 so that values on
    the sliders' 0.01 grid never fall outside. Returns (low, high), each (D,) float64."""
    if means is None or len(means) < 2:
        half = np.full(latent_dim, DEFAULT_HALF_RANGE, np.float64)
        return -half, half
    centre = means.astype(np.float64).mean(axis=0)
    spread = np.maximum(means.astype(np.float64).std(axis=0), 0.01) * n_std
    return np.floor((centre - spread) * 100) / 100, np.ceil((centre + spread) * 100) / 100


def inactive_dimensions(means: np.ndarray | None) -> list[int]:
    """Indices of the latents the model does not use: those whose encoded means (N, D) vary by
    Var ≤ ACTIVE_VARIANCE (training.evaluate's active_units counts the others). The KL term
    has pulled such a latent's posterior onto the prior for every image, so it carries nothing
    and the decoder learns to ignore it: its slider and traversal row change little. [] without
    means."""
    if means is None or len(means) < 2:
        return []
    return [int(i) for i in np.flatnonzero(means.astype(np.float64).var(axis=0, ddof=1) <= ACTIVE_VARIANCE)]


def clamp(z: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(z, np.float32), low, high).astype(np.float32)


# The sliders' step: every latent the page keeps lies on this grid (frontend/latent.js rounds
# the same way, tested against snap_latent).
LATENT_DECIMALS = 2


def snap_latent(z: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Z (D,) rounded to the sliders' 0.01 grid (halves to even, as numpy rounds) and clipped
    to [LOW, HIGH]: (D,) float64, the values the sliders show."""
    return np.clip(np.round(np.asarray(z, np.float64), LATENT_DECIMALS), low, high)


def sample_prior(rng: np.random.Generator, latent_dim: int, count: int | None = None) -> np.ndarray:
    """Draws from N(0, I): (D,) when COUNT is None, else (COUNT, D)."""
    shape = (latent_dim,) if count is None else (count, latent_dim)
    return rng.standard_normal(shape).astype(np.float32)


def lerp(z0: np.ndarray, z1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Straight line: (T,) fractions -> (T, D)."""
    t = np.asarray(t, np.float32)[:, None]
    return ((1 - t) * z0 + t * z1).astype(np.float32)


def slerp(z0: np.ndarray, z1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation (Shoemake 1985) on the angle between z0 and z1, with the norm
    interpolated linearly so the path stays where a Gaussian prior keeps its mass. Falls back
    to lerp for (anti)parallel or zero vectors. (T,) fractions -> (T, D)."""
    z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
    t = np.asarray(t, np.float64)[:, None]
    n0, n1 = np.linalg.norm(z0), np.linalg.norm(z1)
    if n0 < 1e-8 or n1 < 1e-8:
        return lerp(z0, z1, t[:, 0])
    u0, u1 = z0 / n0, z1 / n1
    omega = np.arccos(np.clip(np.dot(u0, u1), -1.0, 1.0))
    if np.sin(omega) < 1e-6:
        return lerp(z0, z1, t[:, 0])
    direction = (np.sin((1 - t) * omega) * u0 + np.sin(t * omega) * u1) / np.sin(omega)
    return (direction * ((1 - t) * n0 + t * n1)).astype(np.float32)


def interpolate(z0: np.ndarray, z1: np.ndarray, steps: int, method: str = "slerp") -> np.ndarray:
    """STEPS points from z0 to z1 inclusive, (STEPS, D)."""
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    t = np.linspace(0.0, 1.0, steps)
    if method == "slerp":
        return slerp(z0, z1, t)
    if method == "lerp":
        return lerp(z0, z1, t)
    raise ValueError(f"method must be 'lerp' or 'slerp', got {method!r}")


def traverse(z: np.ndarray, low: np.ndarray, high: np.ndarray, columns: int) -> np.ndarray:
    """From Z, sweep each dimension across [low, high] while holding the others:
    (D,) -> (D, COLUMNS, D); row i varies dimension i."""
    z = np.asarray(z, np.float32)
    d = len(z)
    grid = np.repeat(np.repeat(z[None, None, :], d, axis=0), columns, axis=1)
    for i in range(d):
        grid[i, :, i] = np.linspace(low[i], high[i], columns)
    return grid.astype(np.float32)
