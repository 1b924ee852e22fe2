"""The frame's PSF width when the header does not give it: fitted on stars or on detections."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from followup.exceptions import PhotometryError
from followup.photometry.detection import detect_sources
from followup.photometry.frame import PreparedFrame, with_typical_fwhm
from followup.photometry.psf import fit_fwhm

__all__ = ["ensure_fwhm", "measure_fwhm"]


def ensure_fwhm(frame: PreparedFrame, xy: np.ndarray | None = None) -> PreparedFrame:
    """The frame with a known FWHM: fitted on stars at ``xy`` if given, else on detections.

    Raises:
        PhotometryError: Neither works (too few bright stars).
    """
    if frame.fwhm_known:
        return frame
    guess = with_typical_fwhm(frame)
    if xy is not None and len(xy) >= 3:
        fitted = fit_fwhm(guess, xy)
        if fitted is not None:
            return replace(frame, fwhm=fitted)
    return replace(frame, fwhm=measure_fwhm(guess))


def measure_fwhm(frame: PreparedFrame) -> float:
    """FWHM (pixels) of Gaussians fitted to the brightest clean detections of the frame.

    Raises:
        PhotometryError: Fewer than 3 bright stars.
    """
    table = detect_sources(frame, snr_min=30.0)
    table = table[(table["flags"] == 0) & (np.asarray(table["sharpness"]) < 2.0)]
    if len(table) >= 3:
        table.sort("snr", reverse=True)
        xy = np.column_stack([np.asarray(table["x"].value), np.asarray(table["y"].value)])[:40]
        fitted = fit_fwhm(frame, xy)
        if fitted is not None:
            return fitted
    raise PhotometryError("cannot measure the FWHM: no L1FWHM and too few bright stars; pass fwhm=")
