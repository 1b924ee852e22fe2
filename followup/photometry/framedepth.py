"""A frame's 5-sigma depth from empty apertures over the whole frame, calibrated like its targets."""

from __future__ import annotations

import math

import numpy as np

from followup.coverage import FrameDepth
from followup.exceptions import PhotometryError
from followup.photometry.depth import DEPTH_SNR, empty_aperture_noise, frame_empty_positions
from followup.photometry.frame import AnyFrame, prepare_frame
from followup.photometry.fwhm import ensure_fwhm
from followup.photometry.options import PhotometryOptions
from followup.photometry.targets import frame_zero_point, start_and_mid_mjd
from followup.photometry.zeropoint import CatalogLike

__all__ = ["frame_depth"]


def frame_depth(
    frame: AnyFrame,
    *,
    catalog: CatalogLike = None,
    frame_name: str | None = None,
    options: PhotometryOptions | None = None,
) -> FrameDepth:
    """The 5-sigma depth of a frame: what a point source needed to be detected anywhere on it.

    The zero point is the targets' (reference stars, else ``L1ZP``); the noise is the
    sigma-clipped scatter of fluxes measured the targets' way at up to 600 empty positions on a
    grid over the frame (:mod:`~followup.photometry.depth`), aperture-corrected to total flux.
    With a colour term, the depth is at the reference stars' mean colour.

    Args:
        frame: A calibrated frame (electrons, WCS, FILTER, EXPTIME).
        catalog: Reference stars, as for :func:`followup.photometry.measure`.
        frame_name: Basename to record (default the file's).
        options: Method, aperture radius, FWHM (default: apertures of 1 FWHM).

    Raises:
        PhotometryError: The frame cannot be calibrated, or fewer than 20 empty apertures fit.
    """
    options = options or PhotometryOptions()
    fr = ensure_fwhm(prepare_frame(frame, fwhm=options.fwhm))
    zero_point, _ = frame_zero_point(fr, catalog, options)
    if zero_point.fwhm is not None and zero_point.fwhm != fr.fwhm:
        fr = prepare_frame(fr, fwhm=zero_point.fwhm)
    noise = empty_aperture_noise(fr, frame_empty_positions(fr), options)
    if not math.isfinite(noise.sigma) or noise.sigma <= 0:
        raise PhotometryError(
            f"frame {fr.label}: only {noise.n_apertures} empty apertures, no depth"
        )
    zp = zero_point.zero_point + zero_point.colour_coefficient * zero_point.reference_colour
    total = noise.sigma * zero_point.aperture_correction
    depth = zp - 2.5 * math.log10(DEPTH_SNR * total / fr.exptime)
    ny, nx = fr.shape
    corners = np.array([[-0.5, -0.5], [nx - 0.5, -0.5], [nx - 0.5, ny - 0.5], [-0.5, ny - 0.5]])
    ra, dec = fr.wcs.all_pix2world(corners[:, 0], corners[:, 1], 0)
    centre = fr.wcs.all_pix2world([(nx - 1) / 2.0], [(ny - 1) / 2.0], 0)
    _, mjd = start_and_mid_mjd(fr.header, fr.exptime)
    return FrameDepth(
        frame=frame_name or fr.name or "unknown",
        band=fr.band,
        mjd=mjd,
        ra=float(centre[0][0]) % 360.0,
        dec=float(centre[1][0]),
        footprint=[(float(a) % 360.0, float(d)) for a, d in zip(ra, dec, strict=True)],
        depth_5sigma=float(depth),
        zero_point=float(zp),
        n_apertures=noise.n_apertures,
        telescope=str(fr.header.get("TELID", "")) or None,
        instrument=str(fr.header.get("INSTRUME", "")) or None,
    )
