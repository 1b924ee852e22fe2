"""Forced photometry at pixel positions, aperture or PSF, on any calibrated frame."""

from __future__ import annotations

import numpy as np
from astropy.table import QTable

from followup.photometry.aperture import measure_apertures
from followup.photometry.frame import AnyFrame, prepare_frame
from followup.photometry.fwhm import ensure_fwhm
from followup.photometry.psf import measure_psf

__all__ = ["aperture_photometry_at", "psf_photometry_at"]


def aperture_photometry_at(
    frame: AnyFrame,
    xy: np.ndarray,
    *,
    radius: float | None = None,
    annulus: tuple[float, float] | None = None,
    fwhm: float | None = None,
) -> QTable:
    """Forced aperture photometry with a local background annulus at pixel positions.

    Flagged pixels (BPM bits 1, 2, 4, 8) and pixels off the image are left out of the aperture and
    the flux is scaled up by the fraction of a Gaussian PSF they would have held (flag
    ``MASKED_PIXELS``). The error adds the pixel errors in the aperture and the uncertainty of
    the background (1.2533 std / sqrt(n) per pixel for a median).

    Args:
        frame: A calibrated frame (electrons, WCS not needed here).
        xy: Pixel positions, shape (n, 2), 0-based (x, y).
        radius: Aperture radius in pixels; default 1 FWHM.
        annulus: Background annulus radii in pixels; default (3, 5) FWHM.
        fwhm: FWHM in pixels (default from the header or the frame).

    Returns:
        QTable with columns ``x``, ``y`` (pix), ``aperture_flux``, ``aperture_flux_err`` (electron),
        ``background`` (electron per pixel), ``background_std`` (electron), ``peak`` (electron,
        highest pixel in the aperture above the background), ``masked_fraction`` (of the PSF in
        the aperture), ``flags``; meta ``radius``, ``annulus``, ``fwhm``.

    Raises:
        PhotometryError: A frame that cannot be measured.
    """
    fr = ensure_fwhm(prepare_frame(frame, fwhm=fwhm))
    return measure_apertures(fr, xy, radius=radius, annulus=annulus)


def psf_photometry_at(
    frame: AnyFrame,
    xy: np.ndarray,
    *,
    fwhm: float | None = None,
    fit_radius: float | None = None,
    annulus: tuple[float, float] | None = None,
) -> QTable:
    """Forced PSF photometry: flux of a pixel-integrated circular Gaussian at fixed positions.

    The background is the annulus median (as for apertures); the flux is the weighted linear
    least-squares amplitude over pixels within ``fit_radius``, with weights from a noise model
    (sky variance from the annulus' ``ERR`` plus the source's own Poisson noise from a first,
    unweighted estimate). Flagged pixels get zero weight, so no correction is needed for them.

    Args:
        frame: A calibrated frame (electrons).
        xy: Pixel positions, shape (n, 2), 0-based.
        fwhm: PSF FWHM in pixels (default from the header or the frame).
        fit_radius: Radius of the fitted pixels; default 1.5 FWHM.
        annulus: Background annulus radii in pixels; default (3, 5) FWHM.

    Returns:
        QTable with ``x``, ``y`` (pix), ``psf_flux``, ``psf_flux_err`` (electron), ``background``
        (electron per pixel), ``peak`` (electron above background, brightest fitted pixel),
        ``reduced_chi2``, ``masked_fraction``, ``flags``; meta ``fwhm``.

    Raises:
        PhotometryError: A frame that cannot be measured.
    """
    fr = ensure_fwhm(prepare_frame(frame, fwhm=fwhm))
    return measure_psf(fr, xy, fit_radius=fit_radius, annulus=annulus)
