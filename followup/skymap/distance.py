"""The distance ansatz of Singer et al. (2016): ``p(r | n) = DISTNORM * r^2 * N(r; DISTMU, DISTSIGMA)``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

__all__ = ["DistanceAlongSight", "ansatz_moments", "ansatz_parameters"]


def _partial_moments(a: np.ndarray) -> tuple[np.ndarray, ...]:
    """Return the integrals of t^k phi(t) over t > -a for k = 0..4 (phi: standard normal)."""
    cdf = special.ndtr(a)
    pdf = np.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
    i0 = cdf
    i1 = pdf
    i2 = cdf - a * pdf
    i3 = (a * a + 2) * pdf
    i4 = 3 * cdf - (a**3 + 3 * a) * pdf
    return i0, i1, i2, i3, i4


def ansatz_moments(
    mu: np.ndarray | float, sigma: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Conditional distance mean, standard deviation and normalisation of the distance ansatz.

    The ansatz is ``p(r) = norm * r**2 * N(r; mu, sigma)`` for ``r > 0`` (Singer et al. 2016,
    the form of LVK's DISTMU/DISTSIGMA/DISTNORM layers).

    Args:
        mu: Location parameter(s) in Mpc (``inf`` where the pixel holds no distance information).
        sigma: Scale parameter(s) in Mpc, positive.

    Returns:
        ``(mean, std, norm)``: mean and standard deviation in Mpc and the normalisation in
        Mpc^-2. Pixels without information (non-finite ``mu`` or ``sigma <= 0``) give
        ``(nan, nan, 0)``.
    """
    mu_arr = np.asarray(mu, dtype=float)
    sigma_arr = np.asarray(sigma, dtype=float)
    mu_arr, sigma_arr = np.broadcast_arrays(mu_arr, sigma_arr)
    good = np.isfinite(mu_arr) & np.isfinite(sigma_arr) & (sigma_arr > 0)
    m = np.where(good, mu_arr, 1.0)
    s = np.where(good, sigma_arr, 1.0)
    with np.errstate(all="ignore"):
        i0, i1, i2, i3, i4 = _partial_moments(m / s)
        m2 = m**2 * i0 + 2 * m * s * i1 + s**2 * i2
        m3 = m**3 * i0 + 3 * m**2 * s * i1 + 3 * m * s**2 * i2 + s**3 * i3
        m4 = m**4 * i0 + 4 * m**3 * s * i1 + 6 * m**2 * s**2 * i2 + 4 * m * s**3 * i3 + s**4 * i4
        mean = m3 / m2
        var = np.maximum(m4 / m2 - mean**2, 0.0)
        norm = 1.0 / m2
    ok = good & np.isfinite(mean) & (m2 > 0)
    return (
        np.where(ok, mean, np.nan),
        np.where(ok, np.sqrt(var), np.nan),
        np.where(ok, norm, 0.0),
    )


def ansatz_parameters(mean_mpc: float, std_mpc: float) -> tuple[float, float, float]:
    """Invert :func:`ansatz_moments`: the ``(mu, sigma, norm)`` giving this mean and deviation.

    Args:
        mean_mpc: Wanted conditional mean distance in Mpc (> 0).
        std_mpc: Wanted conditional standard deviation in Mpc; the ansatz cannot be wider than
            ``std/mean = 1/sqrt(3)`` (its ``mu -> -inf`` limit).

    Returns:
        ``(mu, sigma, norm)`` in Mpc, Mpc and Mpc^-2.

    Raises:
        ValueError: The values are not positive or the ratio cannot be reached.
    """
    from scipy import optimize

    if not (mean_mpc > 0 and std_mpc > 0):
        raise ValueError(f"distance mean and std must be positive, got {mean_mpc}, {std_mpc}")
    if std_mpc / mean_mpc >= 0.57:
        raise ValueError(
            f"std/mean = {std_mpc / mean_mpc:.3f} is too wide for the distance ansatz (< 0.57)"
        )

    def residual(x: np.ndarray) -> np.ndarray:
        mean, std, _ = ansatz_moments(x[0] * mean_mpc, math.exp(x[1]) * mean_mpc)
        return np.array([float(mean) / mean_mpc - 1.0, float(std) / mean_mpc - std_mpc / mean_mpc])

    # Start from the narrow-distribution approximation mean ~ mu + 2 sigma^2 / mu.
    x0 = np.array([1.0 - 2 * (std_mpc / mean_mpc) ** 2, math.log(std_mpc / mean_mpc)])
    sol = optimize.root(residual, x0, method="hybr")
    if not sol.success or np.max(np.abs(residual(sol.x))) > 1e-8:
        raise ValueError(f"could not match distance {mean_mpc} +/- {std_mpc} Mpc: {sol.message}")
    mu = float(sol.x[0] * mean_mpc)
    sigma = float(math.exp(sol.x[1]) * mean_mpc)
    _, _, norm = ansatz_moments(mu, sigma)
    return mu, sigma, float(norm)


@dataclass(frozen=True)
class DistanceAlongSight:
    """The distance posterior along one line of sight (arrays when several positions are given).

    Attributes:
        mean_mpc: Conditional mean distance in Mpc (nan without distance information).
        std_mpc: Conditional standard deviation in Mpc.
        mu_mpc: Ansatz location parameter DISTMU in Mpc.
        sigma_mpc: Ansatz scale parameter DISTSIGMA in Mpc.
        norm_mpc2: Ansatz normalisation DISTNORM in Mpc^-2.
    """

    mean_mpc: np.ndarray | float
    std_mpc: np.ndarray | float
    mu_mpc: np.ndarray | float
    sigma_mpc: np.ndarray | float
    norm_mpc2: np.ndarray | float


def _ansatz_pdf(
    r: np.ndarray, mu: Any, sigma: Any, norm: Any, *, volume: bool
) -> np.ndarray | float:
    """``norm * N(r; mu, sigma)`` (times ``r**2`` unless ``volume``), zero for r <= 0."""
    mu = np.asarray(mu, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    norm = np.asarray(norm, dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):
        gauss = np.exp(-0.5 * ((r - mu) / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)
        value = norm * gauss * (1.0 if volume else r * r)
    value = np.where((r > 0) & np.isfinite(value), value, 0.0)
    return float(value) if np.ndim(value) == 0 else value
