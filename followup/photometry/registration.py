"""Registration: a reference resampled onto the science frame's pixel grid through both WCSs.

The pixel-to-pixel map is computed exactly on a coarse grid and interpolated between, then the
reference is interpolated with a cubic spline (``scipy.ndimage.map_coordinates``), after its
small holes and thin bad lines are filled (:mod:`followup.photometry.holes`).
"""

from __future__ import annotations

import math

import numpy as np

from followup.exceptions import PhotometryError
from followup.photometry.frame import MASKED_BITS, PreparedFrame
from followup.photometry.holes import FILLED_LINE, fill_small_holes, fill_thin_lines
from followup.reduction import BPM_BAD, BPM_SATURATED

__all__ = ["REACH_MARGIN", "resample_reference"]

GRID_STEP = 64
"""Pixels between exact WCS evaluations of the registration map."""


def resample_reference(
    reference: PreparedFrame,
    science: PreparedFrame,
    *,
    grid_step: int = GRID_STEP,
    box: tuple[int, int, int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference's data, error and flags on the science frame's pixel grid.

    Args:
        reference: The prepared reference.
        science: The prepared science frame.
        grid_step: Pixels between exact WCS evaluations.
        box: ``(y0, y1, x0, x1)``: only this part of the science grid (default: all of it).

    Returns:
        ``(data, err, flags)``; pixels the reference does not cover, or masked there and not
        filled, are flagged ``BPM_BAD`` with zero data and error; pixels filled across a bad
        column or row (:func:`~followup.photometry.holes.fill_thin_lines`) carry
        :data:`~followup.photometry.holes.FILLED_LINE`, not a BANZAI bit.

    Raises:
        PhotometryError: The frames do not overlap.
    """
    from scipy import ndimage

    y0, y1, x0, x1 = box if box is not None else (0, science.shape[0], 0, science.shape[1])
    ny, nx = y1 - y0, x1 - x0
    gy = np.unique(np.append(np.arange(0, ny, grid_step), ny - 1)).astype(float)
    gx = np.unique(np.append(np.arange(0, nx, grid_step), nx - 1)).astype(float)
    mx, my = np.meshgrid(gx, gy)
    ra, dec = science.wcs.all_pix2world(mx.ravel() + x0, my.ravel() + y0, 0)
    rx, ry = reference.wcs.all_world2pix(ra, dec, 0)
    rx, ry = rx.reshape(mx.shape), ry.reshape(mx.shape)
    rny, rnx = reference.shape
    if not ((rx > -0.5) & (rx < rnx - 0.5) & (ry > -0.5) & (ry < rny - 0.5)).any():
        raise PhotometryError(f"the reference {reference.label} does not cover {science.label}")
    # Bilinear interpolation of the coarse map is separable: Wy @ coarse @ Wx.T.
    wy, wx = _linear_weights(gy, ny), _linear_weights(gx, nx)
    coords = np.empty((2, ny, nx), np.float32)
    coords[0] = wy @ ry @ wx.T
    coords[1] = wy @ rx @ wx.T
    # Only the part of the reference the grid reaches is filled and spline-filtered (the same
    # pixels come out: see REACH_MARGIN); its coordinates shift by whole pixels, exactly.
    cy0, cy1 = _reach(coords[0], rny)
    cx0, cx1 = _reach(coords[1], rnx)
    part = (slice(cy0, cy1), slice(cx0, cx1))
    coords[0] -= np.float32(cy0)
    coords[1] -= np.float32(cx0)
    # Cosmic rays and hot pixels are filled in (their error says so) rather than flagged: a
    # flagged pixel grows by the interpolation's and the kernel's reach on the difference.
    ref_in, ref_err, filled = fill_small_holes(
        reference.data[part], reference.err[part], reference.flags[part]
    )
    ref_in, ref_err, lines = fill_thin_lines(ref_in, ref_err, reference.flags[part], filled)
    filled |= lines
    ref_data = np.where(reference.mask[part] & ~filled, 0.0, ref_in).astype(np.float32)
    data = ndimage.map_coordinates(
        ref_data, coords, order=3, mode="constant", cval=0.0, output=np.float32
    )
    # Errors and flags from the nearest reference pixel (the error of a spline-interpolated
    # pixel is close to that of the pixel it mostly comes from); flags then grow by a pixel.
    iy = np.rint(coords[0]).astype(np.int32)
    ix = np.rint(coords[1]).astype(np.int32)
    del coords
    outside = (iy < -cy0) | (iy >= rny - cy0) | (ix < -cx0) | (ix >= rnx - cx0)
    np.clip(iy, 0, cy1 - cy0 - 1, out=iy)
    np.clip(ix, 0, cx1 - cx0 - 1, out=ix)
    err = ref_err[iy, ix]
    ref_flags = reference.flags[part][iy, ix]
    bad = ((ref_flags & MASKED_BITS) > 0) & ~filled[iy, ix]
    on_line = lines[iy, ix]
    del iy, ix
    bad |= outside
    bad = ndimage.maximum_filter(bad.view(np.uint8), size=3) > 0
    flags = np.where(bad, BPM_BAD, 0).astype(np.uint8)
    if on_line.any():
        on_line = ndimage.maximum_filter(on_line.view(np.uint8), size=3) > 0
        flags[on_line & ~bad] |= FILLED_LINE
    flags |= ref_flags & BPM_SATURATED
    data[bad] = 0.0
    err = np.where(bad, 0.0, err).astype(np.float32)
    return data, err, flags


REACH_MARGIN = 96
"""Pixels of the reference kept around those a resampling reaches. Filling a hole reads at most
``FILL_MAX_PIXELS`` + 4 pixels from it, and the cubic spline's prefilter carries an edge's
effect a factor 0.268 less a pixel further (1e-19 at 60 pixels): with this margin the resampled
pixels are those of the whole reference."""


def _reach(coords: np.ndarray, size: int) -> tuple[int, int]:
    """``(start, stop)`` of the reference pixels ``coords`` reach along one axis.

    Widened by :data:`REACH_MARGIN`, within ``0..size``; the whole axis when no coordinate is
    finite.
    """
    lowest, highest = float(np.nanmin(coords)), float(np.nanmax(coords))
    if not (math.isfinite(lowest) and math.isfinite(highest)):
        return 0, size
    low = math.floor(lowest) - REACH_MARGIN
    high = math.ceil(highest) + 1 + REACH_MARGIN
    # An even start: ``rint`` rounds halves to even, so the nearest pixel of a coordinate
    # shifted by it is the nearest pixel of the coordinate, shifted.
    start, stop = max(0, low - low % 2), min(size, high)
    if stop <= start:  # all of it off the reference on this axis: any one pixel will do
        return (0, 1) if high <= 0 else (size - 1, size)
    return start, stop


def _linear_weights(grid: np.ndarray, n: int) -> np.ndarray:
    """(n, len(grid)) matrix interpolating linearly from ``grid`` nodes to pixels 0..n-1."""
    pixels = np.arange(n, dtype=float)
    k = np.clip(np.searchsorted(grid, pixels, side="right") - 1, 0, len(grid) - 2)
    t = (pixels - grid[k]) / (grid[k + 1] - grid[k])
    weights = np.zeros((n, len(grid)))
    weights[np.arange(n), k] = 1.0 - t
    weights[np.arange(n), k + 1] = t
    return weights
