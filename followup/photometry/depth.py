"""Depth from empty apertures: the noise of the sky where nothing is, around a position or per frame.

A 5-sigma limit is what the frame could have detected at a position, so it must not include the
noise of a source that is there (at a 15 mag star the Poisson noise of the star makes the limit
0.35-0.55 mag too bright). The noise here is measured, not modelled: the same photometry as the
targets' (apertures with their local annulus, or PSF fits) at many positions where no source is,
and the sigma-clipped standard deviation of those fluxes. It holds the sky's Poisson noise, read
noise, the annulus' error, correlated noise from resampling and faint unlisted sources alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from followup.photometry.flags import PhotometryFlag
from followup.photometry.frame import PreparedFrame
from followup.photometry.options import PhotometryOptions

__all__ = [
    "DEPTH_SNR",
    "EmptyApertureNoise",
    "empty_aperture_noise",
    "frame_empty_positions",
    "local_empty_positions",
    "noise_around",
]

DEPTH_SNR = 5.0
"""Limits and depths are at this S/N."""
MIN_EMPTY = 20
"""Fewer empty apertures than this give no measured noise (NaN)."""
_SHARED_POSITIONS = 250
"""Empty apertures of the measurement shared by many targets (noise to ~5 %, in ~1.5 s)."""
_BAD = PhotometryFlag.MASKED_PIXELS | PhotometryFlag.SATURATED | PhotometryFlag.NEAR_EDGE


@dataclass(frozen=True)
class EmptyApertureNoise:
    """The noise of the frame's photometry where there is no source.

    Attributes:
        sigma: Sigma-clipped standard deviation of the fluxes (electrons, before any aperture
            correction); NaN with fewer than :data:`MIN_EMPTY` apertures.
        n_apertures: Empty apertures measured and kept.
        offset: Their sigma-clipped median flux (electrons; near 0 when the background is right).
    """

    sigma: float
    n_apertures: int
    offset: float


def _source_positions(frame: PreparedFrame) -> np.ndarray:
    """Pixel positions (n, 2, 0-based) of the sources the frame's CAT lists (none without it)."""
    cat = frame.catalog
    if cat is None or not len(cat) or not {"x", "y"} <= set(cat.colnames):
        return np.zeros((0, 2))
    return np.column_stack([np.asarray(cat["x"], float) - 1, np.asarray(cat["y"], float) - 1])


def _away_from(
    positions: np.ndarray, sources: np.ndarray, distance: float, shape: tuple[int, int]
) -> np.ndarray:
    """The positions at least ``distance`` from every source and ``distance`` inside the image."""
    ny, nx = shape
    inside = (
        (positions[:, 0] >= distance)
        & (positions[:, 1] >= distance)
        & (positions[:, 0] <= nx - 1 - distance)
        & (positions[:, 1] <= ny - 1 - distance)
    )
    positions = positions[inside]
    if len(sources) and len(positions):
        from scipy.spatial import cKDTree

        near = cKDTree(sources).query(positions, distance_upper_bound=distance)[0]
        positions = positions[~np.isfinite(near)]
    return positions


def local_empty_positions(
    frame: PreparedFrame,
    x: float,
    y: float,
    *,
    inner_fwhm: float = 4.0,
    outer_fwhm: float = 16.0,
    spacing_fwhm: float = 2.5,
) -> np.ndarray:
    """Positions (n, 2) on rings around ``(x, y)``, away from the frame's listed sources.

    Rings run from ``inner_fwhm`` to ``outer_fwhm`` FWHM of the position, ``spacing_fwhm`` FWHM
    apart, with apertures ``spacing_fwhm`` FWHM apart along each ring (about 140 positions).
    """
    fwhm = frame.fwhm
    spacing = spacing_fwhm * fwhm
    points = []
    for radius in np.arange(inner_fwhm * fwhm, outer_fwhm * fwhm + 1e-9, spacing):
        n = max(6, int(2 * math.pi * radius / spacing))
        phase = radius / spacing  # turn each ring a little, so positions do not line up
        angle = np.arange(n) * 2 * math.pi / n + phase
        points.append(np.column_stack([x + radius * np.cos(angle), y + radius * np.sin(angle)]))
    positions = np.concatenate(points)
    return _away_from(positions, _source_positions(frame), 5.0 * fwhm, frame.shape)


def frame_empty_positions(frame: PreparedFrame, *, max_positions: int = 600) -> np.ndarray:
    """Positions (n, 2) on a grid over the whole frame, away from its listed sources."""
    ny, nx = frame.shape
    margin = 5.0 * frame.fwhm
    spacing = max(
        3.0 * frame.fwhm, math.sqrt((nx - 2 * margin) * (ny - 2 * margin) / max_positions)
    )
    xs = np.arange(margin, nx - margin, spacing)
    ys = np.arange(margin, ny - margin, spacing)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    return _away_from(grid, _source_positions(frame), 2.5 * frame.fwhm, frame.shape)


def empty_aperture_noise(
    frame: PreparedFrame, positions: np.ndarray, options: PhotometryOptions
) -> EmptyApertureNoise:
    """Measure the frame at empty positions the way targets are measured; the fluxes' scatter.

    Apertures with flagged pixels, saturated pixels or near the edge are left out; the rest are
    3-sigma clipped (about the median, iterated) so that a faint source in one does not count.

    Args:
        frame: A frame whose FWHM is known.
        positions: Pixel positions (n, 2) of empty sky.
        options: How targets are measured (method and aperture radius).
    """
    from astropy.stats import sigma_clipped_stats

    from followup.photometry.zeropoint import instrumental_fluxes

    positions = np.atleast_2d(np.asarray(positions, float)).reshape(-1, 2)
    if len(positions) < MIN_EMPTY:
        return EmptyApertureNoise(sigma=float("nan"), n_apertures=len(positions), offset=0.0)
    flux, _, flags, _ = instrumental_fluxes(frame, positions, options)
    good = np.isfinite(flux) & ((flags & _BAD) == 0)
    if good.sum() < MIN_EMPTY:
        return EmptyApertureNoise(sigma=float("nan"), n_apertures=int(good.sum()), offset=0.0)
    values = flux[good]
    _, median, std = sigma_clipped_stats(values, sigma=3.0, maxiters=10)
    kept = int(np.sum(np.abs(values - median) <= 3.0 * std))
    # A 3-sigma clip trims 0.27 % of a Gaussian and shrinks its standard deviation by 1.3 %.
    return EmptyApertureNoise(sigma=float(std) / 0.9866, n_apertures=kept, offset=float(median))


def noise_around(
    frame: PreparedFrame, xy: np.ndarray, options: PhotometryOptions, *, max_local: int = 8
) -> np.ndarray:
    """Empty-aperture noise (electrons, before aperture correction) around each position (n,).

    Each position gets the noise of about 140 empty apertures within 16 FWHM of it (about 1 s
    each); beyond ``max_local`` positions on one frame, all share one measurement over the
    whole frame, which bounds the time.
    """
    xy = np.atleast_2d(np.asarray(xy, float))
    if len(xy) > max_local:
        positions = frame_empty_positions(frame, max_positions=_SHARED_POSITIONS)
        shared = empty_aperture_noise(frame, positions, options).sigma
        return np.full(len(xy), shared)
    return np.array(
        [
            empty_aperture_noise(frame, local_empty_positions(frame, x, y), options).sigma
            for x, y in xy
        ]
    )
