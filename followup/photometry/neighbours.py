"""Neighbours of a target: found around it, fitted jointly with it, and their light taken out.

A star two FWHM from a target puts its wing into the target's aperture, and one a few FWHM
further into the background annulus; either biases forced photometry by many sigma (a 15.5 mag
star 5 arcsec from a 19 mag kilonova made it 0.13 mag too bright). Around each target, sources
are detected on a cutout (:func:`~followup.photometry.detection.detect_sources`), and the target
and its neighbours are fitted together as pixel-integrated Gaussians of the frame's FWHM at
fixed positions, with a constant background: a linear least-squares problem. The neighbours'
fitted light is subtracted from the cutout, and the target is then measured on it like any
other position. Its error grows by how much the joint fit's error of the target's amplitude
exceeds a fit of the target alone (1 when the neighbours do not overlap it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from followup.photometry.detection import detect_sources
from followup.photometry.frame import FWHM_TO_SIGMA, PreparedFrame, gaussian_pixels

__all__ = ["Cleaned", "without_neighbours"]

_REACH_FWHM = 7.0
"""Sources within this many FWHM affect the target: its annulus reaches 5 FWHM, a wing 2 more."""
_MARGIN_FWHM = 2.0
"""The cutout extends this far beyond the reach, so that the neighbours' cores are fitted."""
_SAME_SOURCE_FWHM = 1.0
"""Detections closer than this to the target are the target (or inseparable from it)."""
_MAX_SHARPNESS = 3.0
"""Sharper detections are cosmic rays or hot pixels, not sources a PSF describes."""


@dataclass
class Cleaned:
    """A cutout around one target with its neighbours' light subtracted.

    Attributes:
        frame: The cutout (data cleaned; error and flags as on the frame).
        offset: Pixel (x, y) of the cutout's first pixel on the frame.
        neighbours: Neighbours subtracted.
        error_scale: Factor on the target's flux error for the neighbours' uncertainty.
    """

    frame: PreparedFrame
    offset: np.ndarray
    neighbours: int
    error_scale: float


def _cutout(frame: PreparedFrame, x: float, y: float, half: int) -> tuple[slice, slice]:
    ny, nx = frame.shape
    ix, iy = round(x), round(y)
    return (
        slice(max(0, iy - half), min(ny, iy + half + 1)),
        slice(max(0, ix - half), min(nx, ix + half + 1)),
    )


def _neighbours(
    frame: PreparedFrame, x: float, y: float, region: tuple[slice, slice]
) -> np.ndarray:
    """Pixel positions of sources near (x, y), other than the one at (x, y)."""
    found = detect_sources(frame, region=region)
    if not len(found):
        return np.zeros((0, 2))
    xy = np.column_stack([np.asarray(found["x"].value), np.asarray(found["y"].value)])
    distance = np.hypot(xy[:, 0] - x, xy[:, 1] - y)
    keep = (
        (distance > _SAME_SOURCE_FWHM * frame.fwhm)
        & (distance <= _REACH_FWHM * frame.fwhm)
        & (np.asarray(found["sharpness"], float) <= _MAX_SHARPNESS)
    )
    return xy[keep]


def _joint_fit(
    data: np.ndarray, weight: np.ndarray, models: np.ndarray
) -> tuple[np.ndarray, float, float]:
    """Amplitudes of ``models`` (n, npix) and a constant, by weighted least squares.

    Returns:
        The amplitudes, the variance of the first amplitude in this fit and in a fit of the
        first model and the constant alone.
    """
    design = np.vstack([models, np.ones(data.size)]).T
    normal = design.T @ (design * weight[:, None])
    cov = np.linalg.pinv(normal)
    params = cov @ (design.T @ (weight * data))
    alone = np.linalg.pinv(normal[np.ix_([0, -1], [0, -1])])
    return params[:-1], float(cov[0, 0]), float(alone[0, 0])


def without_neighbours(frame: PreparedFrame, x: float, y: float) -> Cleaned | None:
    """The target's surroundings with its neighbours' light subtracted; None without neighbours.

    Args:
        frame: A frame whose FWHM is known.
        x: The target's pixel x (0-based).
        y: The target's pixel y (0-based).
    """
    half = math.ceil((_REACH_FWHM + _MARGIN_FWHM) * frame.fwhm)
    rows, cols = _cutout(frame, x, y, half)
    others = _neighbours(frame, x, y, (rows, cols))
    if not len(others):
        return None
    data = frame.data[rows, cols]
    err = frame.err[rows, cols]
    good = ~frame.mask[rows, cols] & (err > 0)
    sigma = frame.fwhm * FWHM_TO_SIGMA
    x0, y0 = cols.start, rows.start
    positions = np.vstack([[x, y], others])
    models = np.stack(
        [gaussian_pixels(px, py, sigma, x0, cols.stop, y0, rows.stop) for px, py in positions]
    )
    weight = np.where(good, 1.0 / np.where(good, err, 1.0) ** 2, 0.0)
    amplitudes, joint_var, alone_var = _joint_fit(
        data[good].astype(float), weight[good], models[:, good]
    )
    cleaned = data - np.tensordot(amplitudes[1:], models[1:], axes=1).astype(np.float32)
    cut = replace(
        frame,
        data=cleaned.astype(np.float32),
        err=err,
        flags=frame.flags[rows, cols],
    )
    scale = math.sqrt(joint_var / alone_var) if alone_var > 0 and joint_var > alone_var else 1.0
    return Cleaned(
        frame=cut, offset=np.array([x0, y0], float), neighbours=len(others), error_scale=scale
    )
