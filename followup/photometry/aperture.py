"""Aperture photometry at pixel positions with a local background annulus, and aperture corrections."""

from __future__ import annotations

import math

import numpy as np
from astropy import units as u
from astropy.table import QTable

from followup.photometry.background import annulus_stats
from followup.photometry.flags import PhotometryFlag
from followup.photometry.frame import (
    FWHM_TO_SIGMA,
    PreparedFrame,
    edge_flags,
    gaussian_pixels,
)
from followup.photometry.profile import MoffatProfile, fit_moffat, typical_profile
from followup.reduction import BPM_SATURATED

__all__ = [
    "aperture_correction",
    "gaussian_aperture_correction",
    "measure_apertures",
    "profile_aperture_correction",
]

_MIN_SEEN = 0.2
"""Below this fraction of the PSF on good pixels, a masked aperture's flux is not recovered."""


def measure_apertures(
    frame: PreparedFrame,
    xy: np.ndarray,
    *,
    radius: float | None = None,
    annulus: tuple[float, float] | None = None,
    background: bool = True,
) -> QTable:
    """Forced aperture photometry on a frame whose FWHM is known.

    See :func:`followup.photometry.aperture_photometry_at` for the method and the columns. With
    ``background`` False (a difference image, whose background is zero) the annulus is not
    subtracted and adds nothing to the error; its statistics are still reported.
    """
    from photutils.aperture import CircularAperture, aperture_photometry

    xy = np.atleast_2d(np.asarray(xy, float))
    radius = float(radius if radius is not None else frame.fwhm)
    r_in, r_out = annulus if annulus is not None else (3.0 * frame.fwhm, 5.0 * frame.fwhm)
    apertures = CircularAperture(xy, r=radius)
    phot = aperture_photometry(
        frame.data, apertures, error=frame.err, mask=frame.mask, method="exact"
    )
    sky = annulus_stats(frame, xy, r_in, r_out)
    sky_var = sky.median_variance()
    level = sky.median if background else np.zeros(len(xy))
    if not background:
        sky_var = np.zeros(len(xy))
    n = len(xy)
    flux = np.full(n, np.nan)
    flux_err = np.full(n, np.nan)
    peak = np.full(n, np.nan)
    masked_fraction = np.zeros(n)
    flags = np.zeros(n, np.int64)
    masks = apertures.to_mask(method="exact")
    if not isinstance(masks, list):
        masks = [masks]
    raw_sum = np.asarray(phot["aperture_sum"], float)
    raw_err = np.asarray(phot["aperture_sum_err"], float)
    sigma = frame.fwhm * FWHM_TO_SIGMA
    for k, (am, (x, y)) in enumerate(zip(masks, xy, strict=True)):
        cut_mask = am.cutout(frame.mask, fill_value=True)
        if cut_mask is None:  # entirely off the image
            flags[k] |= PhotometryFlag.NEAR_EDGE
            continue
        weights = am.data
        good = (weights > 0) & ~cut_mask
        area_good = float(np.sum(weights[good]))
        net = raw_sum[k] - level[k] * area_good
        var = raw_err[k] ** 2 + area_good**2 * sky_var[k]
        if np.any((weights > 0) & cut_mask):
            bbox = am.bbox
            psf = gaussian_pixels(x, y, sigma, bbox.ixmin, bbox.ixmax, bbox.iymin, bbox.iymax)
            total = float(np.sum(weights * psf))
            seen = float(np.sum(np.where(good, weights * psf, 0.0)))
            masked_fraction[k] = 1.0 - seen / total if total > 0 else 1.0
            if seen > _MIN_SEEN * total:  # put back the flux on masked pixels, by the PSF
                net *= total / seen
                var *= (total / seen) ** 2
            else:
                net = np.nan
            flags[k] |= PhotometryFlag.MASKED_PIXELS
        if np.any((weights > 0) & ((am.cutout(frame.flags, fill_value=0) & BPM_SATURATED) > 0)):
            flags[k] |= PhotometryFlag.SATURATED
        if np.any(good):
            cut_data = am.cutout(frame.data, fill_value=np.nan)
            peak[k] = float(np.nanmax(np.where(good, cut_data, -np.inf))) - level[k]
        flux[k] = net
        flux_err[k] = math.sqrt(var) if var > 0 else np.nan
    flags[edge_flags(xy, r_out if background else radius, frame.shape)] |= PhotometryFlag.NEAR_EDGE
    table = QTable(meta={"radius": radius, "annulus": (r_in, r_out), "fwhm": frame.fwhm})
    table["x"] = xy[:, 0] * u.pix
    table["y"] = xy[:, 1] * u.pix
    table["aperture_flux"] = flux * u.electron
    table["aperture_flux_err"] = flux_err * u.electron
    table["background"] = sky.median * u.electron
    table["background_std"] = sky.std * u.electron
    table["peak"] = peak * u.electron
    table["masked_fraction"] = masked_fraction
    table["flags"] = flags
    return table


def gaussian_aperture_correction(fwhm: float, radius: float) -> float:
    """Total over aperture flux of a Gaussian PSF of ``fwhm`` in an aperture of ``radius`` pixels.

    Kept for comparison only: real LCO stars have wider wings (see
    :mod:`followup.photometry.profile`), and photometry never uses this.
    """
    sigma = fwhm * FWHM_TO_SIGMA
    return 1.0 / (1.0 - math.exp(-(radius**2) / (2 * sigma**2)))


def profile_aperture_correction(
    frame: PreparedFrame, xy: np.ndarray | None, radius: float
) -> tuple[float, MoffatProfile]:
    """The aperture correction of a Moffat profile fitted to the stars at ``xy``.

    "Total" is the flux within ``max(2 FWHM, radius)``, as for the correction measured on stars.
    When no star can be fitted, LCO's typical profile at the frame's FWHM is used (its
    ``n_stars`` is 0).

    Returns:
        The correction and the profile it comes from.
    """
    profile = fit_moffat(frame, xy) if xy is not None and len(xy) else None
    if profile is None:
        profile = typical_profile(frame.fwhm)
    big_radius = max(2.0 * frame.fwhm, radius)
    return profile.aperture_correction(radius, big_radius), profile


def aperture_correction(
    frame: PreparedFrame,
    xy: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    flags: np.ndarray,
    radius: float,
) -> tuple[float, bool]:
    """Total/aperture flux ratio from bright, clean stars; a Moffat profile's when too few.

    "Total" is the flux in 2 FWHM. The ratio is an inverse-variance weighted, 3-sigma clipped
    mean over stars with S/N > 30 in the small aperture. With fewer than 3 such stars, it is the
    ratio of a Moffat profile fitted to the clean stars at ``xy`` (never a Gaussian's: real
    stars hold 74-82 % of their flux within one FWHM, a Gaussian 94 %).

    Returns:
        The correction and whether it comes from a profile rather than measured ratios.
    """
    big_radius = max(2.0 * frame.fwhm, radius)
    if big_radius == radius:
        return 1.0, False
    usable = (flags == 0) & np.isfinite(flux) & (flux_err > 0)
    bright = usable & (flux / np.where(flux_err > 0, flux_err, np.inf) > 30)

    def modelled() -> tuple[float, bool]:
        stars = usable & (flux > 5 * np.where(usable, flux_err, np.inf))
        order = np.argsort(-np.where(stars, flux, -np.inf))[: int(stars.sum())]
        return profile_aperture_correction(frame, xy[order], radius)[0], True

    if bright.sum() < 3:
        return modelled()
    order = np.argsort(-flux[bright])[:100]
    idx = np.nonzero(bright)[0][order]
    big = measure_apertures(frame, xy[idx], radius=big_radius)
    big_flux = np.asarray(big["aperture_flux"].value, float)
    big_err = np.asarray(big["aperture_flux_err"].value, float)
    ok = (np.asarray(big["flags"]) == 0) & np.isfinite(big_flux) & (big_err > 0)
    if ok.sum() < 3:
        return modelled()
    ratio = big_flux[ok] / flux[idx][ok]
    # The ring between the apertures carries most of the noise of the ratio.
    ring_err = np.sqrt(np.clip(big_err[ok] ** 2 - flux_err[idx][ok] ** 2, 0, None)) / flux[idx][ok]
    ring_err = np.maximum(ring_err, 1e-4)
    use = np.ones(len(ratio), bool)
    mean = float(np.median(ratio))
    for _ in range(5):
        w = 1.0 / ring_err[use] ** 2
        mean = float(np.sum(w * ratio[use]) / np.sum(w))
        resid = (ratio - mean) / ring_err
        scale = max(1.4826 * float(np.median(np.abs(resid[use]))), 1.0)
        new_use = np.abs(resid) <= 3.0 * scale
        if new_use.sum() < 3 or np.array_equal(new_use, use):
            break
        use = new_use
    return mean, False
