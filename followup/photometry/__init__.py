"""Forced photometry at a sky position, zero points against reference stars, limits, candidates, light curves.

The chain for one frame:

1. the frame (BANZAI e91, or one calibrated by :mod:`followup.reduction`) is read with its
   ``ERR`` and ``BPM`` (an error map is built from ``GAIN``/``RDNOISE`` when ``ERR`` is absent)
   (:mod:`~followup.photometry.frame`);
2. reference stars (a :class:`followup.catalogs.ReferenceCatalog`, a table, or the frame's own
   ``CAT`` calibrated by ``L1ZP``) are measured exactly like the target, at their catalogue
   positions projected through the WCS;
3. the zero point (AB magnitude of 1 e-/s) is the 3-sigma-clipped inverse-variance mean of
   ``reference mag - instrumental mag`` (optionally with a colour term); aperture fluxes are
   corrected to total flux with an aperture correction measured on bright stars, so the zero
   point is comparable with BANZAI's ``L1ZP`` (:mod:`~followup.photometry.zeropoint`);
4. the target is measured by forced aperture photometry (local annulus,
   :mod:`~followup.photometry.aperture`) or forced PSF photometry (a pixel-integrated Gaussian of
   the frame's FWHM, position fixed, :mod:`~followup.photometry.psf`); its flux is always given in
   microjansky (``flux_uJy = 10**(-0.4 * (mag - 23.9))``), its AB magnitude only when S/N >= 5,
   and the 5-sigma limiting magnitude always, from the noise of empty apertures around it
   (:mod:`~followup.photometry.targets`, :mod:`~followup.photometry.depth`).

A frame's own depth (5 sigma from empty apertures over the whole frame, for coverage) is
:func:`frame_depth`.

Transient candidates come from difference imaging (:mod:`~followup.photometry.difference`: the
reference -- an earlier archive frame of the field, :mod:`~followup.photometry.references` --
registered, PSF-matched and subtracted), found and scored on the difference
(:mod:`~followup.photometry.realbogus`), calibrated and measured there, host subtracted
(:mod:`~followup.photometry.transients`), and vetted with a reason per check
(:mod:`~followup.photometry.vetting`: score, minor planets, stars, host distance, credible
level). Without a reference, :mod:`~followup.photometry.candidates` takes sources of the frame's
CAT, or of :func:`detect_sources`, without a reference-catalogue counterpart (which needs a
catalogue deeper than the frame). Light curves and their plots are in
:mod:`~followup.photometry.lightcurve` and :mod:`~followup.photometry.plot`.

Quality problems are reported as :class:`PhotometryFlag` bits rather than by dropping rows.
How a frame is measured (method, aperture radius, FWHM, colour term) is one
:class:`PhotometryOptions`, shared by the zero point and the targets.
"""

from __future__ import annotations

from followup.photometry.candidates import associate_candidates, candidate_name, find_candidates
from followup.photometry.detection import detect_sources
from followup.photometry.difference import Difference, subtract
from followup.photometry.flags import PhotometryFlag, describe_flags
from followup.photometry.fluxes import AB_ZERO_POINT_UJY, flux_to_ujy, mag_to_ujy
from followup.photometry.forced import aperture_photometry_at, psf_photometry_at
from followup.photometry.framedepth import frame_depth
from followup.photometry.lightcurve import build_light_curve
from followup.photometry.options import PhotometryOptions
from followup.photometry.plot import plot_light_curve
from followup.photometry.targets import measure, measure_targets, photometry_table
from followup.photometry.transients import find_transients, measure_difference
from followup.photometry.vetting import vet_candidates
from followup.photometry.zeropoint import ZeroPoint, calibrate_zero_point, fit_zero_point

__all__ = [
    "AB_ZERO_POINT_UJY",
    "Difference",
    "PhotometryFlag",
    "PhotometryOptions",
    "ZeroPoint",
    "aperture_photometry_at",
    "associate_candidates",
    "build_light_curve",
    "calibrate_zero_point",
    "candidate_name",
    "describe_flags",
    "detect_sources",
    "find_candidates",
    "find_transients",
    "fit_zero_point",
    "flux_to_ujy",
    "frame_depth",
    "mag_to_ujy",
    "measure",
    "measure_difference",
    "measure_targets",
    "photometry_table",
    "plot_light_curve",
    "psf_photometry_at",
    "subtract",
    "vet_candidates",
]
