"""The stars' radial profile as a circular Moffat: fitted on the frame, for aperture corrections.

Real LCO stars are not Gaussian: about 74 % (Sinistro) and 82 % (MuSCAT3) of a star's flux lies
within one FWHM of its centre, against 94 % for a Gaussian, so a Gaussian's aperture correction
makes magnitudes 0.15-0.26 mag too faint. A Moffat profile
``I(r) = (beta - 1) / (pi alpha^2) (1 + (r / alpha)^2)^-beta`` holds
``1 - (1 + (r / alpha)^2)^(1 - beta)`` of its flux within ``r`` (Moffat 1969, A&A 3, 455), and
fits such wings with one more parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, least_squares

from followup.photometry.background import annulus_stats
from followup.photometry.frame import PreparedFrame

__all__ = ["TYPICAL_BETA", "MoffatProfile", "fit_moffat", "typical_profile"]

_SUBPIXELS = 3
"""Each pixel is integrated over a 3 x 3 grid: the profile's core spans only a few pixels."""


@dataclass(frozen=True)
class MoffatProfile:
    """A circular Moffat profile.

    Attributes:
        alpha: Core width in pixels.
        beta: Power of the wings (> 1; large values tend to a Gaussian).
        n_stars: Stars it was fitted on (0 for an assumed profile).
    """

    alpha: float
    beta: float
    n_stars: int = 0

    @property
    def fwhm(self) -> float:
        """Full width at half maximum in pixels."""
        return 2.0 * self.alpha * math.sqrt(2.0 ** (1.0 / self.beta) - 1.0)

    def encircled(self, radius: float) -> float:
        """Fraction of the flux within ``radius`` pixels of the centre."""
        return 1.0 - (1.0 + (radius / self.alpha) ** 2) ** (1.0 - self.beta)

    def aperture_correction(self, radius: float, total_radius: float) -> float:
        """Flux within ``total_radius`` over the flux within ``radius`` (pixels)."""
        return self.encircled(total_radius) / self.encircled(radius)


def _beta_for(fraction_in_fwhm: float) -> float:
    """The Moffat ``beta`` that holds ``fraction_in_fwhm`` of the flux within one FWHM."""

    def held(beta: float) -> float:
        x2 = 4.0 * (2.0 ** (1.0 / beta) - 1.0)  # (FWHM / alpha)^2
        return 1.0 - (1.0 + x2) ** (1.0 - beta) - fraction_in_fwhm

    return float(brentq(held, 1.05, 200.0))


TYPICAL_BETA = _beta_for(0.74)
"""The ``beta`` of LCO Sinistro stars (74 % of the flux within one FWHM): used only when no star
on the frame can be fitted."""


def typical_profile(fwhm: float) -> MoffatProfile:
    """LCO's typical profile (:data:`TYPICAL_BETA`) at a FWHM in pixels."""
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / TYPICAL_BETA) - 1.0))
    return MoffatProfile(alpha=alpha, beta=TYPICAL_BETA, n_stars=0)


def _moffat_pixels(dx: np.ndarray, dy: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """Unit-flux Moffat integrated over pixels whose centres are at offsets ``dx``, ``dy``."""
    steps = (np.arange(_SUBPIXELS) + 0.5) / _SUBPIXELS - 0.5
    total = np.zeros(np.broadcast(dx, dy).shape)
    norm = (beta - 1.0) / (math.pi * alpha**2) / _SUBPIXELS**2
    for sy in steps:
        for sx in steps:
            total += (1.0 + ((dx + sx) ** 2 + (dy + sy) ** 2) / alpha**2) ** -beta
    return norm * total


def fit_moffat(
    frame: PreparedFrame, xy: np.ndarray, *, max_stars: int = 40, min_stars: int = 2
) -> MoffatProfile | None:
    """Fit one circular Moffat to the stars at ``xy`` (each with its own flux and centre).

    Each star's pixels within 3 FWHM, background-subtracted with the median of an annulus at
    4-6 FWHM, are fitted by least squares weighted with the frame's errors; the centre of each
    star is its flux-weighted centroid and its flux is solved linearly for each trial profile.
    Stars with flagged pixels near them or off the image are left out. The bright stars weigh
    most; a fit on faint stars alone (S/N ~20) comes out with too large a ``beta`` (its
    correction from 1 to 2 FWHM 4 % low on synthetic beta = 2.5 stars), still closer than a
    Gaussian's (20 % low there).

    Args:
        frame: A frame whose FWHM is known (a first guess is enough).
        xy: Pixel positions (n, 2) of stars, brightest first.
        max_stars: Stars used at most.
        min_stars: Fewer usable stars give None.

    Returns:
        The profile, or None when too few stars can be used or the fit fails.
    """
    xy = np.atleast_2d(np.asarray(xy, float))
    if len(xy) == 0 or not frame.fwhm_known:
        return None
    half = max(3, math.ceil(3.0 * frame.fwhm))
    ny, nx = frame.shape
    sky = annulus_stats(frame, xy, 4.0 * frame.fwhm, 6.0 * frame.fwhm)
    stamps: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for k, (x, y) in enumerate(xy):
        ix, iy = round(x), round(y)
        if ix - half < 0 or iy - half < 0 or ix + half >= nx or iy + half >= ny:
            continue
        if not math.isfinite(sky.median[k]):
            continue
        cut = (slice(iy - half, iy + half + 1), slice(ix - half, ix + half + 1))
        if frame.mask[cut].any():
            continue
        data = frame.data[cut].astype(float) - sky.median[k]
        err = frame.err[cut].astype(float)
        yy, xx = np.mgrid[iy - half : iy + half + 1, ix - half : ix + half + 1]
        core = np.hypot(xx - x, yy - y) <= 1.5 * frame.fwhm
        weight = np.clip(data, 0, None) * core
        if weight.sum() <= 0 or not (err > 0).all():
            continue
        cx = float(np.sum(weight * xx) / weight.sum())
        cy = float(np.sum(weight * yy) / weight.sum())
        keep = np.hypot(xx - cx, yy - cy) <= 3.0 * frame.fwhm
        stamps.append((xx[keep] - cx, yy[keep] - cy, data[keep], 1.0 / err[keep]))
        if len(stamps) >= max_stars:
            break
    if len(stamps) < min_stars:
        return None

    def residuals(params: np.ndarray) -> np.ndarray:
        alpha, beta = math.exp(params[0]), 1.0 + math.exp(params[1])
        out = []
        for dx, dy, data, inv in stamps:
            model = _moffat_pixels(dx, dy, alpha, beta)
            w2 = inv**2
            amp = float(np.sum(w2 * model * data) / np.sum(w2 * model**2))
            out.append((data - amp * model) * inv)
        return np.concatenate(out)

    start = typical_profile(frame.fwhm)
    try:
        fit = least_squares(
            residuals,
            x0=[math.log(start.alpha), math.log(start.beta - 1.0)],
            bounds=([math.log(0.2), math.log(0.05)], [math.log(50.0), math.log(100.0)]),
            loss="soft_l1",
        )
    except (ValueError, np.linalg.LinAlgError):
        return None
    if not fit.success:
        return None
    return MoffatProfile(
        alpha=math.exp(fit.x[0]), beta=1.0 + math.exp(fit.x[1]), n_stars=len(stamps)
    )
