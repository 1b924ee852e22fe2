"""Difference imaging: the reference resampled onto the science frame, PSF-matched and subtracted.

The chain (Alard & Lupton 1998, with a constant kernel):

1. **Registration** -- the reference is resampled onto the science frame's pixel grid through both
   WCSs. The pixel-to-pixel map is computed exactly on a coarse grid (every 64 pixels) and
   interpolated between, then the reference is interpolated with a cubic spline
   (``scipy.ndimage.map_coordinates``); its variance with a linear one. ``reproject.reproject_interp``
   does the same with the WCS evaluated at every pixel and took 38 s on a 4k frame here against
   about 2 s for this (``benchmarks/transients.py``).
2. **PSF matching** -- the sharper of the two images is convolved with a kernel fitted by linear
   least squares on stamps of bright unsaturated stars: a sum of Gaussians of three widths times
   polynomials in x and y, plus a constant background difference. A residual sub-pixel offset
   between the WCSs is absorbed by the kernel's odd terms. Radial wings out to
   :data:`WING_FWHM` FWHM are then fitted on larger stamps of the brightest stars
   (:func:`fit_wings`): Moffat PSFs of two nights differ most there. The kernel's sum is the flux
   ratio, so the result is in the science frame's electrons whichever image was convolved.
3. **Subtraction** -- ``D = S - R * K`` (reference sharper) or ``D = (S * K - R) / sum(K)``
   (science sharper); the variance is propagated from both error images (``err**2`` convolved
   with ``K**2``). Pixels masked in either image, or outside the reference, are flagged.

The difference is returned as a :class:`~followup.photometry.frame.PreparedFrame` with the
science header and WCS, so forced photometry and detection work on it unchanged; the
PSF-matched science frame (the science frame itself when the reference is sharper) is kept for
the zero point, since its PSF is the difference's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from followup.exceptions import PhotometryError
from followup.photometry.background import mesh_background
from followup.photometry.detection import detect_sources
from followup.photometry.frame import (
    FWHM_TO_SIGMA,
    MASKED_BITS,
    AnyFrame,
    PreparedFrame,
    prepare_frame,
)
from followup.photometry.fwhm import ensure_fwhm
from followup.reduction import BPM_BAD, BPM_SATURATED

__all__ = [
    "Difference",
    "combine_references",
    "correlation_factor",
    "cutouts",
    "fill_small_holes",
    "fit_kernel",
    "fit_wings",
    "resample_reference",
    "subtract",
]

GRID_STEP = 64
"""Pixels between exact WCS evaluations of the registration map."""
MIN_STARS = 6
"""Fewest clean stars a kernel is fitted on."""
BACKGROUND_BOX = 128
"""Cell of the smooth background removed from the difference (pixels)."""
RING = 3
"""Pixels beside a flagged reference pixel its resampled neighbours' spline rings into."""


@dataclass
class Difference:
    """A difference image and what made it.

    Attributes:
        frame: The difference (science electrons), its error and flags, with the science header
            and WCS and the FWHM of its PSF.
        science: The science frame as read.
        matched_science: The science frame with the difference's PSF (the science itself when
            the reference was convolved): its zero point calibrates the difference.
        reference: The reference resampled onto the science grid, PSF-matched and scaled to the
            science frame's flux (what was subtracted).
        kernel: The fitted convolution kernel.
        convolved: Which image was convolved, ``reference`` or ``science``.
        scale: Flux ratio science / reference.
        n_stars: Stars the kernel was fitted on.
        residual_rms: Normalised rms of the stamps' residuals (~1 for a good fit).
        stars: Pixel positions of the stars the kernel was fitted on.
        noise_correlation: Factor the convolved image's per-pixel variance was multiplied by
            (:func:`correlation_factor`): its noise is correlated over the kernel's width.
    """

    frame: PreparedFrame
    science: PreparedFrame
    matched_science: PreparedFrame
    reference: np.ndarray
    kernel: np.ndarray
    convolved: Literal["reference", "science"]
    scale: float
    n_stars: int
    residual_rms: float
    stars: np.ndarray | None = None
    noise_correlation: float = 1.0


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
        ``(data, err, flags)``; pixels the reference does not cover are flagged ``BPM_BAD``
        with zero data and error.

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


def combine_references(
    references: Sequence[PreparedFrame], science: PreparedFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Several references, resampled onto the science grid, as one with a single PSF and scale.

    An earlier frame of a field rarely has the same pointing, so one reference may leave part
    of the science frame uncovered. Each reference, in the order given, fills the pixels those
    before it leave flagged (off their footprint or masked); where several cover, the first is
    taken. When the mosaic is the blurrier image (the science will be convolved to it), each
    part is convolved with a Gaussian to the broadest part's FWHM (its error propagated with
    the Gaussian's noise correlation); each part is scaled to the first reference's flux from
    the science frame's stars in it.

    Args:
        references: Prepared references of the science frame's band, the main one first.
        science: The prepared science frame.

    Returns:
        ``(data, err, flags, fwhm)`` on the science grid, as :func:`resample_reference`, and
        the mosaic's FWHM in science pixels. A reference that fills no pixel, or whose part
        has too few stars to scale it, is left out (its pixels stay flagged).

    Raises:
        PhotometryError: The first reference does not overlap the science frame.
    """
    data, err, flags, fwhm, *_ = _combine(references, science)
    return data, err, flags, fwhm


Layer = tuple[tuple[int, int, int, int], np.ndarray, np.ndarray, np.ndarray]
"""A reference resampled onto a box ``(y0, y1, x0, x1)`` of the science grid: data, err, flags."""


def _combine(
    references: Sequence[PreparedFrame], science: PreparedFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, np.ndarray, list[Layer]]:
    """:func:`combine_references`, with which reference fills each pixel and their layers.

    Also returns the owner map (the index of the reference filling each pixel, -1 for none)
    and each reference's own layer (at the mosaic's PSF, before scaling), in that order.
    """
    from scipy import ndimage

    from followup.photometry.frame import pixel_scale

    data, err, flags = resample_reference(references[0], science)
    scale = pixel_scale(science.wcs)
    fwhms = [references[0].fwhm * pixel_scale(references[0].wcs) / scale]
    owner = np.where((flags & BPM_BAD) == 0, 0, -1).astype(np.int8)
    layers: list[tuple[tuple[int, int, int, int], np.ndarray, np.ndarray, np.ndarray]] = []
    ny, nx = science.shape
    pad = 64  # room for the Gaussian and the stars' stamps around a filled part
    for ref in references[1:]:
        hole = owner < 0
        if not hole.any():
            break
        rows, cols = np.nonzero(hole.any(axis=1))[0], np.nonzero(hole.any(axis=0))[0]
        box = (
            max(0, int(rows[0]) - pad),
            min(ny, int(rows[-1]) + 1 + pad),
            max(0, int(cols[0]) - pad),
            min(nx, int(cols[-1]) + 1 + pad),
        )
        try:
            d, e, f = resample_reference(ref, science, box=box)
        except PhotometryError:
            continue
        y0, y1, x0, x1 = box
        fills = hole[y0:y1, x0:x1] & ((f & BPM_BAD) == 0)
        if fills.sum() < 100:
            continue
        owner[y0:y1, x0:x1][fills] = len(fwhms)
        layers.append((box, d, e, f))
        fwhms.append(ref.fwhm * pixel_scale(ref.wcs) / scale)
    if not layers:
        owner0 = np.where((flags & BPM_BAD) == 0, 0, -1).astype(np.int8)
        whole = [((0, ny, 0, nx), data, err, flags)]
        return data, err, flags, fwhms[0], owner0, whole, fwhms[:1]
    fwhm = max(fwhms)
    sci_data = np.where(science.mask, 0.0, science.data).astype(np.float32)
    stamp_half = max(8, math.ceil(2.0 * max(science.fwhm, fwhm)))
    # Each part to the broadest part's PSF; then each pixel from the first part usable there.
    matched = []
    owner = np.full(science.shape, -1, np.int8)
    for k, (box, d, e, f) in enumerate([((0, ny, 0, nx), data, err, flags), *layers]):
        y0, y1, x0, x1 = box
        width = math.sqrt(max(fwhm**2 - fwhms[k] ** 2, 0.0)) * FWHM_TO_SIGMA
        if width > 0.15 and fwhm > science.fwhm:
            # The variance goes through g**2, a Gaussian of width sigma / sqrt(2) times
            # sum(g**2), and carries g's noise correlation.
            d = ndimage.gaussian_filter(d, width, mode="nearest", truncate=4.0)
            var = ndimage.gaussian_filter(np.square(e), width / math.sqrt(2), truncate=4.0)
            g = _gaussian(width)
            k2 = float(np.sum(np.square(g, dtype=float)))
            e = np.sqrt(np.clip(var * np.float32(correlation_factor(g, fwhm) * k2), 0, None))
            grown = ndimage.maximum_filter(
                ((f & BPM_BAD) > 0).view(np.uint8), size=2 * math.ceil(4 * width) + 1
            )
            f = np.where(grown > 0, f | BPM_BAD, f).astype(np.uint8)
        free = owner[y0:y1, x0:x1] < 0
        owner[y0:y1, x0:x1][free & ((f & BPM_BAD) == 0)] = k
        matched.append((box, d, e, f))
    out_d = np.zeros_like(data)
    out_e = np.zeros_like(err)
    out_f = np.full_like(flags, BPM_BAD)
    first_ratio: float | None = None
    first_level: float | None = None
    for k, (box, d, e, f) in enumerate(matched):
        y0, y1, x0, x1 = box
        where = owner[y0:y1, x0:x1] == k
        if not where.any():
            continue
        own = np.full(science.shape, BPM_BAD, np.uint8)
        own[y0:y1, x0:x1][where] = 0
        xy = _stars(science, own, 2 * stamp_half) - np.array([x0, y0])
        try:
            ratio = _flux_ratio(d, sci_data[y0:y1, x0:x1], xy, stamp_half)
        except PhotometryError:
            if first_ratio is None:
                raise
            owner[y0:y1, x0:x1][where] = -1
            continue
        if first_ratio is None:
            first_ratio = ratio
        factor = np.float32(ratio / first_ratio)
        # The sky of each night differs: each part's level is that of the science frame less
        # a common offset, or a step between parts would fringe the difference with sources.
        use = where & ~science.mask[y0:y1, x0:x1]
        level = float(np.median((sci_data[y0:y1, x0:x1] - d * factor)[use][::7]))
        if first_level is None:
            first_level = level
        out_d[y0:y1, x0:x1][where] = d[where] * factor + np.float32(level - first_level)
        out_e[y0:y1, x0:x1][where] = e[where] * factor
        out_f[y0:y1, x0:x1][where] = f[where]
    psfs = [fwhm if fwhm > science.fwhm else f for f in fwhms]
    return out_d, out_e, out_f, fwhm, owner, matched, psfs


def _gaussian(sigma: float) -> np.ndarray:
    """A normalised circular Gaussian kernel of width ``sigma`` pixels."""
    half = max(1, math.ceil(4.0 * sigma))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    g = np.exp(-(xx**2 + yy**2) / (2.0 * sigma * sigma))
    return (g / g.sum()).astype(np.float32)


def _linear_weights(grid: np.ndarray, n: int) -> np.ndarray:
    """(n, len(grid)) matrix interpolating linearly from ``grid`` nodes to pixels 0..n-1."""
    pixels = np.arange(n, dtype=float)
    k = np.clip(np.searchsorted(grid, pixels, side="right") - 1, 0, len(grid) - 2)
    t = (pixels - grid[k]) / (grid[k + 1] - grid[k])
    weights = np.zeros((n, len(grid)))
    weights[np.arange(n), k] = 1.0 - t
    weights[np.arange(n), k + 1] = t
    return weights


FILL_MAX_PIXELS = 30
"""Largest cluster of flagged pixels (a cosmic ray, a hot or bad pixel) filled in before an image
is resampled or convolved; larger ones (bad columns, saturated stars) stay flagged."""


def fill_small_holes(
    data: np.ndarray,
    err: np.ndarray,
    flags: np.ndarray,
    *,
    max_pixels: int = FILL_MAX_PIXELS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Small clusters of flagged pixels filled from their neighbours, with errors that say so.

    A convolution spreads a flagged pixel over the kernel's footprint: flagging that footprint
    turned each cosmic ray or hot pixel of the image convolved (about 1,600 on a 300 s Sinistro
    frame) into a blank square 11-25 pixels on a side on the difference, 2-4 % of the frame,
    and a kilonova that fell in one was lost (seed 2 of ``benchmarks/recovery.py``). Each
    cluster of at most ``max_pixels`` flagged pixels with no saturated pixel is filled with a
    Gaussian-weighted mean (sigma 1 pixel) of the unflagged pixels around it; its error is the
    neighbours' error and their spread added in quadrature (large where the cluster lies on a
    star's or a nucleus's slope), so the fill's uncertainty propagates into the difference's
    error instead of a flag.

    Args:
        data: Image (electrons).
        err: Its error.
        flags: Its BPM; clusters are of :data:`MASKED_BITS` pixels.
        max_pixels: Largest cluster filled.

    Returns:
        ``(data, err, filled)``: copies with the clusters filled, and the mask of filled pixels.
    """
    from scipy import ndimage

    masked = (flags & MASKED_BITS) > 0
    filled = np.zeros(masked.shape, bool)
    if not masked.any():
        return data, err, filled
    labels, n = ndimage.label(masked, structure=np.ones((3, 3), bool))
    owners = labels[masked]  # counted over the flagged pixels only: a full-frame pass is slow
    sizes = np.bincount(owners, minlength=n + 1)
    saturated = np.bincount(owners, weights=(flags[masked] & BPM_SATURATED) > 0, minlength=n + 1)
    out_d = np.array(data, np.float32, copy=True)
    out_e = np.array(err, np.float32, copy=True)
    ny, nx = masked.shape
    pad = 4
    for k, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is None or sizes[k] > max_pixels or saturated[k] > 0:
            continue
        y0, y1 = max(0, where[0].start - pad), min(ny, where[0].stop + pad)
        x0, x1 = max(0, where[1].start - pad), min(nx, where[1].stop + pad)
        box = (slice(y0, y1), slice(x0, x1))
        good = ~masked[box]
        hole = labels[box] == k
        d = np.where(good, data[box], 0.0).astype(float)
        num = ndimage.gaussian_filter(d, 1.0, mode="constant", truncate=4.0)
        den = ndimage.gaussian_filter(good.astype(float), 1.0, mode="constant", truncate=4.0)
        if not np.all(den[hole] > 0.02):
            continue  # too few unflagged pixels near it: it stays flagged
        ring = good & ndimage.binary_dilation(hole, np.ones((3, 3), bool), iterations=2)
        if ring.sum() < 4:
            continue
        values = np.asarray(data[box][ring], float)
        spread = float(np.std(values))
        noise2 = float(np.median(np.square(np.asarray(err[box][ring], float))))
        out_d[box][hole] = (num[hole] / den[hole]).astype(np.float32)
        out_e[box][hole] = np.float32(math.sqrt(noise2 + spread * spread))
        filled[box][hole] = True
    return out_d, out_e, filled


LINE_MAX_WIDTH = 2
"""Widest run of flagged pixels across a line defect (a bad column or row) filled in."""
FILLED_LINE = 64
"""A reference pixel filled across a line defect: flagged on the difference itself, but not
grown by the kernel or the resampling's rings (not a BANZAI bit; internal to this module)."""


def _lagrange(nodes: tuple[int, ...], at: float = 0.0) -> np.ndarray:
    """Weights of the polynomial through ``nodes`` (pixel offsets) evaluated at ``at``."""
    out = np.ones(len(nodes))
    for j, oj in enumerate(nodes):
        for m, om in enumerate(nodes):
            if m != j:
                out[j] *= (at - om) / (oj - om)
    return out


# Per run of flagged pixels across a line (its length, the pixel's place in it): the cubic's
# four nodes and the two the straight line between the nearest good pixels is drawn through.
_LINE_NODES: dict[tuple[int, int], tuple[tuple[int, ...], tuple[int, int]]] = {
    (1, 0): ((-2, -1, 1, 2), (-1, 1)),
    (2, 0): ((-2, -1, 2, 3), (-1, 2)),
    (2, 1): ((-3, -2, 1, 2), (-2, 1)),
}


def fill_thin_lines(
    data: np.ndarray,
    err: np.ndarray,
    flags: np.ndarray,
    filled: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bad columns and rows at most :data:`LINE_MAX_WIDTH` pixels wide, filled across.

    A bad column too long for :func:`fill_small_holes` stayed a line of zeros: convolved, it
    took its light from everything within the kernel's reach, and where another reference of a
    mosaic filled the column itself, the dark band around it was left unflagged (seed 31 of
    ``benchmarks/recovery.py``: a reference's bad column through the host's nucleus, the host
    under-subtracted by 16 % of its light at the kilonova). Each flagged pixel of a run at most
    :data:`LINE_MAX_WIDTH` wide across the line, with two good pixels either side, is the cubic
    through those four; its error is theirs, propagated, and the cubic's difference from the
    straight line between the nearest two added in quadrature (large on a star's or a nucleus's
    peak). Saturated pixels are never filled.

    Args:
        data: Image (electrons).
        err: Its error.
        flags: Its BPM (:data:`MASKED_BITS` pixels are the holes).
        filled: Pixels already filled (:func:`fill_small_holes`): neither filled again nor
            used as nodes.

    Returns:
        ``(data, err, lines)``: copies with the lines filled, and the mask of pixels filled.
    """
    masked = (flags & MASKED_BITS) > 0
    done = np.zeros(masked.shape, bool) if filled is None else filled
    todo = masked & ~done & ((flags & BPM_SATURATED) == 0)
    lines = np.zeros(masked.shape, bool)
    if not todo.any():
        return data, err, lines
    out_d = np.array(data, np.float32, copy=True)
    out_e = np.array(err, np.float32, copy=True)
    good = ~masked
    for axis in (1, 0):  # across columns first (Sinistro's defects), then across rows
        ys, xs = np.nonzero(todo & ~lines)
        if not len(ys):
            break
        along = xs if axis == 1 else ys
        size = masked.shape[axis]

        def at(offset: int, ys: np.ndarray = ys, xs: np.ndarray = xs, axis: int = axis):
            if axis == 1:
                return ys, xs + offset
            return ys + offset, xs

        def inside(offset: int, along: np.ndarray = along, size: int = size) -> np.ndarray:
            return (along + offset >= 0) & (along + offset < size)

        def test(mask: np.ndarray, offset: int) -> np.ndarray:
            ok = inside(offset)
            hit = np.zeros(len(ok), bool)
            yy, xx = at(offset)
            hit[ok] = mask[yy[ok], xx[ok]]
            return hit

        before, after = test(todo, -1), test(todo, 1)
        runs = {
            (1, 0): ~before & ~after,
            (2, 0): ~before & after & ~test(todo, 2),
            (2, 1): before & ~after & ~test(todo, -2),
        }
        for key, (cubic, straight) in _LINE_NODES.items():
            sel = runs[key].copy()
            for offset in cubic:
                sel &= test(good, offset)
            if not sel.any():
                continue
            wc = _lagrange(cubic)
            ws = _lagrange(straight)
            py, px = ys[sel], xs[sel]
            vals = [out_d[at(o, py, px)] for o in cubic]
            errs = [out_e[at(o, py, px)] for o in cubic]
            value = sum(w * v for w, v in zip(wc, vals, strict=True))
            line = sum(w * vals[cubic.index(o)] for w, o in zip(ws, straight, strict=True))
            noise2 = sum(w * w * e.astype(float) ** 2 for w, e in zip(wc, errs, strict=True))
            out_d[py, px] = np.asarray(value, np.float32)
            out_e[py, px] = np.sqrt(noise2 + (value - line) ** 2).astype(np.float32)
            lines[py, px] = True
    return out_d, out_e, lines


def _basis(sigma_k: float, half: int) -> list[np.ndarray]:
    """Alard-Lupton basis: Gaussians of three widths times polynomials (degrees 4, 3, 2)."""
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(float)
    out: list[np.ndarray] = []
    for width, degree in ((0.5, 4), (1.0, 3), (2.0, 2)):
        s = max(0.5, width * sigma_k)
        g = np.exp(-(xx**2 + yy**2) / (2 * s * s))
        for i in range(degree + 1):
            for j in range(degree + 1 - i):
                b = g * (xx / half) ** i * (yy / half) ** j
                out.append(b)
    # Orthogonalise for a well-conditioned fit (the span is what matters).
    flat = np.array([b.ravel() for b in out]).T
    q, _ = np.linalg.qr(flat)
    return [q[:, k].reshape(xx.shape) for k in range(q.shape[1])]


def _stars(science: PreparedFrame, reference_flags: np.ndarray, half: int) -> np.ndarray:
    """Pixel positions of bright, unsaturated, unmasked stars of the science frame.

    They come from the frame's CAT when it has one (unflagged rows: BANZAI writes NaN FWHM on
    flagged ones), else from :func:`detect_sources`.
    """
    cat = science.catalog
    if cat is not None and {"x", "y", "flux", "fluxerr"} <= set(cat.colnames) and len(cat):
        x = np.asarray(cat["x"], float) - 1.0
        y = np.asarray(cat["y"], float) - 1.0
        flux = np.asarray(cat["flux"], float)
        with np.errstate(invalid="ignore", divide="ignore"):
            snr = flux / np.asarray(cat["fluxerr"], float)
        ok = np.isfinite(snr) & (snr >= 30.0)
        if "flag" in cat.colnames:
            ok &= np.asarray(cat["flag"]) == 0
        if "fwhm" in cat.colnames:
            fw = np.asarray(cat["fwhm"], float)
            ok &= np.isfinite(fw) & (fw > 0.7 * science.fwhm) & (fw < 1.5 * science.fwhm)
    else:
        table = detect_sources(science, snr_min=30.0)
        x = np.asarray(table["x"].value, float)
        y = np.asarray(table["y"].value, float)
        flux = np.asarray(table["flux"].value, float)
        snr = np.asarray(table["snr"], float)
        ok = (np.asarray(table["flags"]) == 0) & (np.asarray(table["sharpness"]) < 2.0)
    ny, nx = science.shape
    ok &= (x > 2 * half) & (x < nx - 1 - 2 * half) & (y > 2 * half) & (y < ny - 1 - 2 * half)
    peak = flux / (2 * math.pi * (science.fwhm * FWHM_TO_SIGMA) ** 2)
    if science.saturate:
        ok &= peak < 0.5 * science.saturate
    # No other CAT source within the stamp: a neighbour half in it, or a variable one (the
    # transient itself), biases the kernel's sum, the flux scale every host is subtracted with.
    if len(x) > 1:
        from scipy.spatial import cKDTree

        all_xy = np.column_stack([x, y])
        d, _ = cKDTree(all_xy).query(all_xy, k=2)
        ok &= d[:, 1] > half
    idx = np.nonzero(ok)[0]
    for k in idx:
        xi, yi = round(x[k]), round(y[k])
        stamp = reference_flags[yi - half : yi + half + 1, xi - half : xi + half + 1]
        stamp2 = science.flags[yi - half : yi + half + 1, xi - half : xi + half + 1]
        if stamp.any() or (stamp2 & MASKED_BITS).any():
            ok[k] = False
    idx = np.nonzero(ok)[0]
    # The brightest unsaturated ones (at most 150: the fit's cost grows with them), point-like:
    # a compact galaxy passes the CAT's FWHM cut, but its light is less concentrated than a
    # star's, and in a flux ratio weighted by brightness it pulled the scale by a per cent.
    idx = idx[np.argsort(-snr[idx])][:300]
    idx = idx[_point_like(science, x[idx], y[idx])][:150]
    return np.column_stack([x[idx], y[idx]])


def _point_like(science: PreparedFrame, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Which sources have a star's concentration (flux within 1 FWHM over that within 2.5).

    A source is kept when its concentration is within 3 robust sigma (and at least 0.02) of the
    median's: galaxies are less concentrated, blends and cosmic rays more.
    """
    n = len(x)
    if n < 5:
        return np.ones(n, bool)
    fw = science.fwhm
    half = math.ceil(4.0 * fw)
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    r = np.hypot(xx, yy)
    core, total, ring = r <= fw, r <= 2.5 * fw, (r > 3.0 * fw) & (r <= 4.0 * fw)
    ny, nx = science.shape
    conc = np.full(n, np.nan)
    for k in range(n):
        xi, yi = round(x[k]), round(y[k])
        if not (half <= xi < nx - half and half <= yi < ny - half):
            continue
        stamp = science.data[yi - half : yi + half + 1, xi - half : xi + half + 1]
        stamp = stamp - np.median(stamp[ring])
        whole = float(stamp[total].sum())
        if whole > 0:
            conc[k] = float(stamp[core].sum()) / whole
    good = np.isfinite(conc)
    if good.sum() < 5:
        return good
    median = float(np.median(conc[good]))
    spread = max(0.02, 3 * 1.4826 * float(np.median(np.abs(conc[good] - median))))
    return good & (np.abs(conc - median) <= spread)


def fit_kernel(
    source: np.ndarray,
    target: np.ndarray,
    variance: np.ndarray,
    xy: np.ndarray,
    *,
    sigma_k: float,
    half: int,
    stamp_half: int,
) -> tuple[np.ndarray, float, int, float]:
    """Fit ``target ~ source * K + b`` on stamps around ``xy``.

    Args:
        source: The image to convolve.
        target: The image to match.
        variance: Variance of ``target - source * K`` (both images' noise).
        xy: Star positions (0-based pixels).
        sigma_k: Gaussian width of the expected kernel (pixels).
        half: Kernel half-size.
        stamp_half: Half-size of the fitted stamps.

    Returns:
        ``(kernel, background, n_stars, residual_rms)``.

    Raises:
        PhotometryError: Fewer than :data:`MIN_STARS` usable stars.
    """
    from scipy.signal import fftconvolve

    basis = _basis(sigma_k, half)
    nb = len(basis)
    rows: list[np.ndarray] = []
    rhs: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    pad = stamp_half + half
    for x, y in xy:
        xi, yi = round(x), round(y)
        big = source[yi - pad : yi + pad + 1, xi - pad : xi + pad + 1].astype(float)
        tgt = target[yi - stamp_half : yi + stamp_half + 1, xi - stamp_half : xi + stamp_half + 1]
        var = variance[yi - stamp_half : yi + stamp_half + 1, xi - stamp_half : xi + stamp_half + 1]
        if big.shape != (2 * pad + 1, 2 * pad + 1) or not np.all(var > 0):
            continue
        cols = [fftconvolve(big, b, mode="valid").ravel() for b in basis]
        cols.append(np.ones(tgt.size))
        rows.append(np.array(cols).T)
        rhs.append(tgt.ravel().astype(float))
        weights.append(1.0 / var.ravel().astype(float))
    if len(rows) < MIN_STARS:
        raise PhotometryError(f"only {len(rows)} clean stars to match the PSFs (need {MIN_STARS})")
    coef, use, chi = _clipped_fit(rows, rhs, weights)
    kernel = sum(c * b for c, b in zip(coef[:nb], basis, strict=True))
    return np.asarray(kernel), float(coef[nb]), int(use.sum()), float(np.sqrt(np.median(chi[use])))


WING_FWHM = 5.0
"""Reach of the PSF-matching kernel's wings, in FWHM of the blurrier image."""
WING_STARS = 60
"""Brightest clean stars the kernel's wings are fitted on."""
WING_RINGS = 5
"""Radial hat functions the wings are made of."""


def _wing_basis(inner: int, outer: int, rings: int = WING_RINGS) -> list[np.ndarray]:
    """Radial hat functions, each 1 on a ring and 0 at its neighbours', from ``inner`` to ``outer``.

    The nodes are spaced geometrically (a Moffat wing falls as a power of the radius); the first
    hat is 0 at ``inner`` (where the core kernel ends), the last falls to 0 beyond ``outer``.
    """
    yy, xx = np.mgrid[-outer : outer + 1, -outer : outer + 1].astype(float)
    r = np.hypot(xx, yy)
    nodes = inner * (outer / inner) ** (np.arange(rings + 1) / rings)
    out = []
    for j in range(1, rings + 1):
        lo, mid = nodes[j - 1], nodes[j]
        hi = nodes[j + 1] if j < rings else outer + 1.0
        rise = np.clip((r - lo) / (mid - lo), 0.0, 1.0)
        fall = np.clip((hi - r) / (hi - mid), 0.0, 1.0)
        out.append(np.where(r <= mid, rise, fall))
    return out


def _embed(kernel: np.ndarray, half: int) -> np.ndarray:
    """``kernel`` centred on a (2 half + 1)-pixel square of zeros."""
    k = kernel.shape[0] // 2
    out = np.zeros((2 * half + 1, 2 * half + 1))
    out[half - k : half + k + 1, half - k : half + k + 1] = kernel
    return out


def fit_wings(
    source: np.ndarray,
    target: np.ndarray,
    variance: np.ndarray,
    xy: np.ndarray,
    core: np.ndarray,
    *,
    wing_half: int,
    max_stars: int = WING_STARS,
) -> np.ndarray:
    """The core kernel with the Moffat wings it lacks: ``target ~ source * (a core + wings)``.

    The core kernel, fitted on stamps of 2 FWHM, cannot hold the light the blurrier image's
    PSF has beyond them: a Moffat PSF of beta 2.5 has 6 % of its flux beyond 2 FWHM, one of
    beta 4.5 1 %, and the beta of LCO's PSF changes from night to night. A point source leaves
    little of that in its aperture, but a galaxy is the sum of its points: each leaves its
    wing's difference everywhere around it, and 1.3 arcsec from the nucleus of a host 3.5 mag
    brighter than a kilonova that was a tenth of the kilonova's flux (the recovery benchmark).
    The wings are radial hat functions (:func:`_wing_basis`) from the core's edge out to
    ``wing_half``, fitted with the core's amplitude by weighted least squares on stamps of that
    size around the brightest stars, each with its own constant (the backgrounds of both images
    vary over a stamp that size); stars that fit badly are clipped as in :func:`fit_kernel`.

    Args:
        source: The image convolved.
        target: The image matched.
        variance: Variance of ``target - source * K``.
        xy: Star positions (0-based pixels), brightest first.
        core: The core kernel (:func:`fit_kernel`).
        wing_half: Half-size of the kernel with its wings (pixels).
        max_stars: Brightest stars used.

    Returns:
        The kernel, ``2 wing_half + 1`` pixels on a side; the core alone (embedded) when fewer
        than :data:`MIN_STARS` stars have stamps that size.
    """
    from scipy.fft import irfft2, next_fast_len, rfft2

    core_half = core.shape[0] // 2
    embedded = _embed(core, wing_half)
    if wing_half <= core_half + 2:
        return embedded
    basis = [embedded, *_wing_basis(core_half, wing_half)]
    stamp = wing_half
    pad = stamp + wing_half
    size = 2 * pad + 1
    shape = (next_fast_len(size + 2 * wing_half, real=True),) * 2
    spectra = [rfft2(b, shape) for b in basis]
    rows: list[np.ndarray] = []
    rhs: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    lo = 2 * wing_half  # 'valid' part of the full convolution, the target stamp's pixels
    for x, y in xy:
        if len(rows) >= max_stars:
            break
        xi, yi = round(x), round(y)
        if yi - pad < 0 or xi - pad < 0:
            continue
        big = source[yi - pad : yi + pad + 1, xi - pad : xi + pad + 1].astype(float)
        tgt = target[yi - stamp : yi + stamp + 1, xi - stamp : xi + stamp + 1].astype(float)
        var = variance[yi - stamp : yi + stamp + 1, xi - stamp : xi + stamp + 1]
        if big.shape != (size, size) or tgt.shape != (2 * stamp + 1,) * 2 or not np.all(var > 0):
            continue
        f = rfft2(big - np.median(big), shape)
        cols = [
            irfft2(f * s, shape)[lo : lo + 2 * stamp + 1, lo : lo + 2 * stamp + 1] for s in spectra
        ]
        w = 1.0 / var.ravel().astype(float)
        a = np.array([c.ravel() for c in cols]).T
        t = tgt.ravel()
        # Each star's own constant, eliminated: weighted means out of the columns and target.
        a = a - (w @ a) / w.sum()
        t = t - (w @ t) / w.sum()
        rows.append(a)
        rhs.append(t)
        weights.append(w)
    if len(rows) < MIN_STARS:
        return embedded
    coef, _, _ = _clipped_fit(rows, rhs, weights)
    return np.asarray(sum(c * b for c, b in zip(coef, basis, strict=True)))


def _clipped_fit(
    rows: list[np.ndarray], rhs: list[np.ndarray], weights: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least squares over star stamps, stars that fit badly clipped (three passes).

    Args:
        rows: Each star's design matrix (pixels x coefficients).
        rhs: Each star's target pixels.
        weights: Each star's inverse pixel variances.

    Returns:
        The coefficients, which stars were used, and each star's mean chi-square.
    """
    use = np.ones(len(rows), bool)
    coef = np.zeros(rows[0].shape[1])
    chi = np.zeros(len(rows))
    for _ in range(3):
        idx = np.nonzero(use)[0]
        a = np.vstack([rows[k] * np.sqrt(weights[k])[:, None] for k in idx])
        b = np.concatenate([rhs[k] * np.sqrt(weights[k]) for k in idx])
        coef, *_ = np.linalg.lstsq(a, b, rcond=None)
        chi = np.array(
            [np.mean((rhs[k] - rows[k] @ coef) ** 2 * weights[k]) for k in range(len(rows))]
        )
        limit = np.median(chi[use]) + 3 * 1.4826 * np.median(np.abs(chi[use] - np.median(chi[use])))
        new = chi <= max(limit, 1.5)
        if new.sum() < MIN_STARS or (new == use).all():
            break
        use = new
    return coef, use, chi


def subtract(science: AnyFrame, reference: AnyFrame | Sequence[AnyFrame]) -> Difference:
    """The difference of a science frame and a reference of the same field and band.

    Args:
        science: A reduced science frame (electrons, WCS).
        reference: A reduced frame of the same band covering the science frame (any telescope,
            exposure time or depth; better seeing and depth give a cleaner difference), or
            several, first the main one: each fills what those before it leave uncovered
            (:func:`combine_references`).

    Raises:
        PhotometryError: Unreadable frames, different bands, no overlap, too few stars to match
            the PSFs.
    """
    from scipy import ndimage

    sci = ensure_fwhm(prepare_frame(science))
    from astropy.io import fits

    # An HDUList is a list too: it is one frame.
    several = isinstance(reference, list | tuple) and not isinstance(reference, fits.HDUList)
    refs = [ensure_fwhm(prepare_frame(r)) for r in (reference if several else [reference])]
    for ref in refs:
        if sci.band != ref.band:
            raise PhotometryError(
                f"the reference {ref.label} is in {ref.band}, the science frame in {sci.band}"
            )
    # The resampled reference's FWHM in science pixels.
    from followup.photometry.frame import pixel_scale

    owner: np.ndarray | None = None
    layers: list[Layer] = []
    if len(refs) == 1:
        r_data, r_err, r_flags = resample_reference(refs[0], sci)
        fwhm_ref = refs[0].fwhm * pixel_scale(refs[0].wcs) / pixel_scale(sci.wcs)
        psfs = [fwhm_ref]
    else:
        r_data, r_err, r_flags, fwhm_ref, owner, layers, psfs = _combine(refs, sci)
    ref_sharper = fwhm_ref <= sci.fwhm
    sigma_k = math.sqrt(abs(sci.fwhm**2 - fwhm_ref**2)) * FWHM_TO_SIGMA
    # Each part's kernel width: a part of the mosaic keeps its own PSF when the references are
    # the sharper (only the science is convolved to one PSF when they are the blurrier).
    sigmas = [math.sqrt(abs(sci.fwhm**2 - f**2)) * FWHM_TO_SIGMA for f in psfs]
    widest = max([sigma_k, *sigmas])
    half = max(4, math.ceil(3.0 * max(widest, 0.5 * FWHM_TO_SIGMA * max(sci.fwhm, fwhm_ref))))
    stamp_half = max(8, math.ceil(2.0 * max(sci.fwhm, fwhm_ref)))
    wing_half = max(half, math.ceil(WING_FWHM * max(sci.fwhm, fwhm_ref)))
    xy = _stars(sci, r_flags, half + stamp_half)
    sci_err = sci.err
    sci_filled = np.zeros(sci.shape, bool)
    sci_in = sci.data
    if not ref_sharper:
        # The science is convolved: its cosmic rays and hot pixels are filled in, as the
        # reference's are when it is the one convolved (they stay flagged themselves).
        sci_in, sci_err, sci_filled = fill_small_holes(sci.data, sci.err, sci.flags)
        sci_in, sci_err, sci_lines = fill_thin_lines(sci_in, sci_err, sci.flags, sci_filled)
        sci_filled |= sci_lines
    sci_data = np.where(sci.mask & ~sci_filled, 0.0, sci_in).astype(np.float32)
    del sci_in
    ny, nx = sci.shape
    if owner is None:
        owner = np.zeros(sci.shape, np.int8)
    # Each reference of a mosaic is matched on its own: its kernel and flux scale are fitted on
    # the stars it covers, so a part taken on another night (other transparency, other PSF
    # wings) is subtracted at its own scale: one kernel for all parts left a few per cent of a
    # host's light where a secondary reference filled in.
    on = np.round(xy).astype(int) if len(xy) else np.zeros((0, 2), int)
    star_owner = owner[on[:, 1], on[:, 0]] if len(xy) else np.zeros(0, np.int8)
    diff = np.zeros(sci.shape, np.float32)
    var = np.zeros(sci.shape, np.float32)
    matched = np.zeros(sci.shape, np.float32)
    conv_sci = None if ref_sharper else np.zeros(sci.shape, np.float32)
    conv_var = None if ref_sharper else np.zeros(sci.shape, np.float32)
    main: _Part | None = None
    parts: list[int] = []
    part_spoiled = np.zeros(sci.shape, bool)
    own_spoiled: np.ndarray | None = None
    for k in range(int(owner.max()) + 1):
        region = owner == k
        if not region.any():
            continue
        if k == 0:
            y0, y1, x0, x1 = 0, ny, 0, nx
            ref_d, ref_e = r_data, r_err
            stars = xy[star_owner == 0]
        else:
            # The part's own reference over its box: its kernel is fitted on every clean star
            # that reference covers there, not only on the few of the part it fills.
            (y0, y1, x0, x1), ref_d, ref_e, ref_f = layers[k]
            stars = _clean(xy, ref_f, (y0, x0), half + stamp_half)
        box = (slice(y0, y1), slice(x0, x1))
        # Convolved only around the pixels the part fills (its stars may lie further out).
        rows = np.nonzero(region[box].any(axis=1))[0]
        cols = np.nonzero(region[box].any(axis=0))[0]
        reach = 2 * wing_half + 2
        out = (
            slice(max(0, int(rows[0]) - reach), min(y1 - y0, int(rows[-1]) + 1 + reach)),
            slice(max(0, int(cols[0]) - reach), min(x1 - x0, int(cols[-1]) + 1 + reach)),
        )
        try:
            part = _match_part(
                sci_data[box],
                sci_err[box],
                ref_d if k else ref_d[box],
                ref_e if k else ref_e[box],
                stars - np.array([x0, y0]),
                ref_sharper=ref_sharper,
                sigma_k=sigmas[k] if k < len(sigmas) else sigma_k,
                half=half,
                stamp_half=stamp_half,
                wing_half=wing_half,
                fwhm=sci.fwhm if ref_sharper else fwhm_ref,
                out=out,
            )
        except PhotometryError:
            if k == 0 or main is None:
                raise
            # Too few stars of its own: the part is matched as the mosaic has it (scaled to the
            # first reference's flux) with the first reference's kernel.
            y0, y1, x0, x1 = 0, ny, 0, nx
            out = (
                slice(
                    max(0, int(rows[0]) + box[0].start - reach),
                    min(ny, int(rows[-1]) + box[0].start + 1 + reach),
                ),
                slice(
                    max(0, int(cols[0]) + box[1].start - reach),
                    min(nx, int(cols[-1]) + box[1].start + 1 + reach),
                ),
            )
            part = _match_part(
                sci_data,
                sci_err,
                r_data,
                r_err,
                xy[:0],
                ref_sharper=ref_sharper,
                sigma_k=sigma_k,
                half=half,
                stamp_half=stamp_half,
                wing_half=wing_half,
                fwhm=sci.fwhm if ref_sharper else fwhm_ref,
                out=out,
                fixed=(main.kernel, main.background),
            )
        else:
            if k and ref_sharper:
                # The part's own reference is convolved with its holes as zeros: what the kernel
                # spreads them over is spoiled, also where another part fills the holes.
                own_holes = ((ref_f[out] & BPM_BAD) > 0).view(np.uint8)
                own_spoiled = ndimage.maximum_filter(own_holes, size=2 * half + 1) > 0
        main = main or part
        obox = (
            slice(y0 + out[0].start, y0 + out[0].stop),
            slice(x0 + out[1].start, x0 + out[1].stop),
        )
        inside = region[obox]
        if own_spoiled is not None:
            part_spoiled[obox][inside & own_spoiled] = True
            own_spoiled = None
        diff[obox][inside] = part.diff[inside]
        var[obox][inside] = part.var[inside]
        parts.append(k)
        matched[obox][inside] = part.matched[inside]
        if conv_sci is not None and conv_var is not None:
            assert part.conv_sci is not None and part.conv_var is not None
            conv_sci[obox][inside] = part.conv_sci[inside]
            conv_var[obox][inside] = part.conv_var[inside]
    assert main is not None
    kernel, scale, n, rms, gamma = main.kernel, main.scale, main.n_stars, main.rms, main.gamma
    if ref_sharper:
        matched_science = sci
        fwhm = sci.fwhm
        spoilers = (r_flags & BPM_BAD) > 0
    else:
        assert conv_sci is not None and conv_var is not None
        # Pixels no reference matched hold nothing convolved: flagged for the zero point.
        matched_science = replace(
            sci,
            data=conv_sci,
            err=np.sqrt(conv_var).astype(np.float32),
            flags=sci.flags | (r_flags & BPM_BAD),
            fwhm=fwhm_ref,
        )
        fwhm = fwhm_ref
        # Only the science is convolved: a flagged reference pixel spoils itself and what the
        # resampling's spline rings into beside it, not the kernel's reach (a reference's bad
        # column 6 px from seed 22's kilonova flagged it, 16 px of columns lost).
        spoilers = sci.mask & ~sci_filled
    # A masked pixel of the convolved image spoils every pixel within the kernel's core (its
    # wings hold a few per cent of the flux, spread thin).
    spoiled = ndimage.maximum_filter(spoilers.astype(np.uint8), size=2 * half + 1) > 0
    spoiled |= part_spoiled
    # Pixels filled across a bad line are flagged themselves (their neighbours were never
    # zeros for the spline to ring around).
    ringing = ((r_flags & ~np.uint8(FILLED_LINE)) > 0).view(np.uint8)
    spoiled |= ndimage.maximum_filter(ringing, size=2 * RING + 1) > 0
    spoiled |= (r_flags & FILLED_LINE) > 0
    flags = sci.flags.copy()
    flags[spoiled & ((sci.flags & MASKED_BITS) == 0)] |= BPM_BAD
    flags |= r_flags & BPM_SATURATED
    err = np.sqrt(np.clip(var, 0, None)).astype(np.float32)
    diff = np.asarray(diff, np.float32)
    masked = (flags & MASKED_BITS) > 0
    # Sky gradients differ between the nights (Moon, twilight): what is left of them is smooth
    # and is removed like a background, point sources and their residuals being clipped out.
    # Each part of a mosaic has its own (another night's sky, its own kernel's background):
    # one mesh across a seam smoothed the step between two parts into ramps, half the step
    # on either side, and a step of 0.9 sigma a pixel made a row of S/N 6-9 sources on it.
    if min(diff.shape) >= 2 * BACKGROUND_BOX:
        if len(parts) > 1:
            _remove_part_backgrounds(diff, masked, owner, parts)
        else:
            smooth, _ = mesh_background(diff, masked, BACKGROUND_BOX)
            diff -= smooth
    diff[masked] = 0.0
    if len(parts) > 1:
        # Each part's errors are scaled to the noise its difference shows: kernels fitted on
        # different references correlate the noise each their own way.
        for k in parts:
            region = (owner == k) & ~masked
            err[region] *= np.float32(_noise_scale(diff, np.square(err), region, fwhm))
    frame = replace(
        sci,
        data=diff,
        err=err,
        flags=flags,
        fwhm=fwhm,
        catalog=None,
        name=f"{sci.name or 'science'}-diff",
    )
    return Difference(
        frame=frame,
        science=sci,
        matched_science=matched_science,
        reference=matched,
        kernel=kernel,
        convolved="reference" if ref_sharper else "science",
        scale=scale,
        n_stars=n,
        residual_rms=rms,
        stars=xy,
        noise_correlation=gamma,
    )


def _remove_part_backgrounds(
    diff: np.ndarray, masked: np.ndarray, owner: np.ndarray, parts: Sequence[int]
) -> None:
    """Subtract from each part of a mosaic's difference (in place) a smooth background of its own.

    Each part's mesh is made of its own unmasked pixels only, and its boxes beyond the part
    continue the nearest box's level, so the background does not bend towards the next part's
    level at the seam.
    """
    for k in parts:
        region = owner == k
        rows, cols = np.nonzero(region.any(axis=1))[0], np.nonzero(region.any(axis=0))[0]
        box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
        inside = region[box]
        mask = masked[box] | ~inside
        if mask.all():
            continue
        # A plane first: a part narrower than a few boxes has its edge beyond its outer boxes'
        # centres, where the mesh cannot follow a slope (a kernel whose sum varies over the
        # part leaves one on another night's sky).
        yy, xx = np.nonzero(~mask)
        step = max(1, len(yy) // 200_000)
        yy, xx = yy[::step], xx[::step]
        values = diff[box][yy, xx].astype(float)
        design = np.column_stack([np.ones(len(yy)), xx / 1000.0, yy / 1000.0])
        use = np.ones(len(values), bool)
        for _ in range(5):
            coef = np.linalg.lstsq(design[use], values[use], rcond=None)[0]
            resid = values - design @ coef
            mad = 1.4826 * float(np.median(np.abs(resid[use])))
            new = np.abs(resid) <= 3.0 * mad
            if new.sum() < 100 or (new == use).all():
                break
            use = new
        # Broadcast rows and columns: two full index grids of a 4k part are 256 MB.
        gy, gx = np.ogrid[0 : inside.shape[0], 0 : inside.shape[1]]
        plane = (coef[0] + coef[1] * gx / 1000.0 + coef[2] * gy / 1000.0).astype(np.float32)
        part = diff[box] - plane
        smooth, _ = mesh_background(part, mask, BACKGROUND_BOX, fill="nearest")
        diff[box][inside] = (part - smooth)[inside]


def _clean(xy: np.ndarray, flags: np.ndarray, origin: tuple[int, int], half: int) -> np.ndarray:
    """The stars whose stamps lie on a layer's box with no flagged pixel."""
    y0, x0 = origin
    ny, nx = flags.shape
    keep = []
    for k, (x, y) in enumerate(xy):
        xi, yi = round(x) - x0, round(y) - y0
        inside = half <= xi < nx - half and half <= yi < ny - half
        if inside and not flags[yi - half : yi + half + 1, xi - half : xi + half + 1].any():
            keep.append(k)
    return xy[keep]


@dataclass
class _Part:
    """One reference's (or one mosaic part's) match to the science frame, on a box of it."""

    diff: np.ndarray
    var: np.ndarray
    matched: np.ndarray
    conv_sci: np.ndarray | None
    conv_var: np.ndarray | None
    kernel: np.ndarray
    scale: float
    n_stars: int
    rms: float
    gamma: float
    background: float = 0.0


def _match_part(
    sci_data: np.ndarray,
    sci_err: np.ndarray,
    r_data: np.ndarray,
    r_err: np.ndarray,
    xy: np.ndarray,
    *,
    ref_sharper: bool,
    sigma_k: float,
    half: int,
    stamp_half: int,
    wing_half: int,
    fwhm: float,
    out: tuple[slice, slice] | None = None,
    fixed: tuple[np.ndarray, float] | None = None,
) -> _Part:
    """Fit the kernel and flux scale on the stars ``xy`` and subtract, on arrays of one box.

    ``fwhm`` is the difference's (the blurrier image's) FWHM, for the noise correlation; the
    outputs cover ``out`` of the box (all of it by default): the fit needs only the stars'
    stamps, the convolutions only the pixels to fill. ``fixed``: ``(kernel, background)``
    fitted elsewhere, applied as they are.
    """
    variance = np.square(sci_err) + np.square(r_err)
    o = out or (slice(None), slice(None))
    if fixed is not None:
        kernel, bkg, n, rms = fixed[0].copy(), fixed[1], 0, math.nan
    if ref_sharper:
        if fixed is None:
            kernel, bkg, n, rms = fit_kernel(
                r_data, sci_data, variance, xy, sigma_k=sigma_k, half=half, stamp_half=stamp_half
            )
            kernel = fit_wings(r_data, sci_data, variance, xy, kernel, wing_half=wing_half)
            kernel *= _flux_ratio(r_data, sci_data, xy, stamp_half, kernel) / kernel.sum()
        scale = float(kernel.sum())
        matched = _convolve(r_data[o], kernel) + np.float32(bkg)
        gamma = correlation_factor(kernel, fwhm)
        var = np.square(sci_err[o]) + np.float32(gamma) * _convolve(np.square(r_err[o]), kernel**2)
        return _Part(
            sci_data[o] - matched, var, matched, None, None, kernel, scale, n, rms, gamma, bkg
        )
    if fixed is None:
        kernel, bkg, n, rms = fit_kernel(
            sci_data, r_data, variance, xy, sigma_k=sigma_k, half=half, stamp_half=stamp_half
        )
        kernel = fit_wings(sci_data, r_data, variance, xy, kernel, wing_half=wing_half)
        kernel *= _flux_ratio(sci_data, r_data, xy, stamp_half, kernel) / kernel.sum()
    total = float(kernel.sum())
    if not total > 0:
        raise PhotometryError("the fitted PSF-matching kernel has no positive flux")
    scale = 1.0 / total
    conv_sci = _convolve(sci_data[o], kernel / total)
    matched = ((r_data[o] - np.float32(bkg)) * np.float32(scale)).astype(np.float32)
    gamma = correlation_factor(kernel, fwhm)
    conv_var = np.float32(gamma) * np.clip(
        _convolve(np.square(sci_err[o]), (kernel / total) ** 2), 0, None
    )
    var = conv_var + np.square(r_err[o] * np.float32(scale))
    return _Part(
        conv_sci - matched, var, matched, conv_sci, conv_var, kernel, scale, n, rms, gamma, bkg
    )


NOISE_SAMPLES = 2000
"""Random PSF-sized apertures on which a part's noise is compared with its errors."""


def _noise_scale(diff: np.ndarray, var: np.ndarray, region: np.ndarray, fwhm: float) -> float:
    """Robust scatter of aperture sums over their propagated errors, at least 1.

    Apertures of radius ``fwhm`` at random pixels of ``region`` (sources, residuals and masked
    pixels are outliers the median absolute deviation ignores).
    """
    ys, xs = np.nonzero(region)
    if len(ys) < 1000:
        return 1.0
    r = max(1, round(fwhm))
    ny, nx = diff.shape
    rng = np.random.default_rng(len(ys))
    pick = rng.integers(0, len(ys), NOISE_SAMPLES)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = np.hypot(xx, yy) <= fwhm
    pulls = []
    for y, x in zip(ys[pick], xs[pick], strict=True):
        if not (r <= y < ny - r and r <= x < nx - r):
            continue
        v = var[y - r : y + r + 1, x - r : x + r + 1][disk]
        if not np.all(v > 0):
            continue
        pulls.append(
            float(diff[y - r : y + r + 1, x - r : x + r + 1][disk].sum() / np.sqrt(v.sum()))
        )
    if len(pulls) < 100:
        return 1.0
    p = np.asarray(pulls)
    return max(1.0, float(1.4826 * np.median(np.abs(p - np.median(p)))))


def correlation_factor(kernel: np.ndarray, fwhm: float) -> float:
    """How much more variance a PSF-sized sum of a convolved image has than its pixels say.

    Convolving white noise of variance ``v`` with ``K`` leaves ``v * sum(K**2)`` in each pixel,
    but neighbouring pixels share the same input pixels: the sum over an aperture ``F`` has
    variance ``v * ||F * K||**2``, not ``v * sum(K**2) * ||F||**2``. Their ratio, for an aperture
    of radius ``fwhm`` (the forced photometry's and about the matched filter's scale), is the
    factor the propagated variance must carry so that fluxes and their S/N have honest errors;
    without it a 2.2" frame against a 1.8" reference had pulls of 1.26.

    Args:
        kernel: The convolution kernel (any normalisation).
        fwhm: FWHM of the difference's PSF (pixels).

    Returns:
        The ratio (1 for a delta kernel; about 20 for a kernel of 1.4 px sigma and a 5.7 px
        aperture).
    """
    from scipy.signal import fftconvolve

    k = np.asarray(kernel, float)
    k2 = float(np.sum(k * k))
    if not k2 > 0:
        return 1.0
    r = max(1.0, float(fwhm))
    half = math.ceil(r) + 1
    sub = 4
    grid = (np.arange((2 * half + 1) * sub) + 0.5) / sub - half - 0.5
    inside = (np.hypot(grid[None, :], grid[:, None]) <= r).astype(float)
    aperture = inside.reshape(2 * half + 1, sub, 2 * half + 1, sub).mean(axis=(1, 3))
    aperture /= aperture.sum()
    smeared = fftconvolve(aperture, k, mode="full")
    return max(1.0, float(np.sum(smeared**2) / (np.sum(aperture**2) * k2)))


def _flux_ratio(
    source: np.ndarray,
    target: np.ndarray,
    xy: np.ndarray,
    half: int,
    kernel: np.ndarray | None = None,
) -> float:
    """Median ratio of the stars' fluxes, target over source, in apertures of ``half`` pixels.

    The kernel's own sum is biased low by the noise of the image it convolves (a noisy
    regressor); the ratio of large-aperture fluxes of bright stars is not, and it sets the flux
    scale every host galaxy is subtracted with (1 % of a host 3 mag brighter is 16 % of the
    transient).

    With ``kernel`` (the PSF-matching kernel, any normalisation) each source stamp is first
    convolved with it normalised to unit sum, so both apertures hold stars of the same PSF.
    Without it the apertures lose different shares of two different PSFs' wings (Moffat wings,
    whose beta changes from night to night, reach well past 2 FWHM): a ratio off by a few per
    cent, which left 0.7 % of a bright host's light at its core.
    """
    from scipy.signal import fftconvolve

    ratios = []
    yy, xx = np.mgrid[-2 * half : 2 * half + 1, -2 * half : 2 * half + 1]
    r = np.hypot(xx, yy)
    inner, ring = r <= half, (r > 1.3 * half) & (r <= 2 * half)
    k_half = 0
    unit = None
    if kernel is not None:
        total = float(np.sum(kernel))
        if not total > 0:
            raise PhotometryError("the fitted PSF-matching kernel has no positive flux")
        unit = np.asarray(kernel, float) / total
        k_half = unit.shape[0] // 2
    for x, y in xy:
        xi, yi = round(x), round(y)
        p = 2 * half + k_half
        if yi - p < 0 or xi - p < 0:
            continue
        a = source[yi - p : yi + p + 1, xi - p : xi + p + 1]
        b = target[yi - 2 * half : yi + 2 * half + 1, xi - 2 * half : xi + 2 * half + 1]
        if unit is not None and a.shape == (2 * p + 1, 2 * p + 1):
            a = fftconvolve(a.astype(float), unit, mode="valid")
        if a.shape != r.shape or b.shape != r.shape:
            continue
        ring_a, ring_b = a[ring], b[ring]
        fa = float((a[inner] - np.median(ring_a)).sum())
        fb = float((b[inner] - np.median(ring_b)).sum())
        if fa > 0 and fb > 0:
            # Variance of each aperture sum: the ring's pixel scatter over the aperture (the
            # convolved stamp's pixels are correlated, so this is a floor) and the star's
            # Poisson noise (both images are in electrons).
            n_in = float(inner.sum())
            va = n_in * _robust_var(ring_a) + fa
            vb = n_in * _robust_var(ring_b) + fb
            ratios.append((fa, fb, va, vb))
    if len(ratios) < 3:
        raise PhotometryError("too few stars to scale the reference's flux")
    fa_all, fb_all, va_all, vb_all = np.array(ratios).T
    each = fb_all / fa_all
    # Each star's ratio with its error and a floor of RATIO_FLOOR: no single star (perhaps a
    # compact galaxy, a blend or a variable) decides the scale, as the brightest one did when
    # the ratio was one of summed fluxes.
    var = each**2 * (va_all / fa_all**2 + vb_all / fb_all**2 + RATIO_FLOOR**2)
    keep = np.ones(len(each), bool)
    centre = float(np.median(each))
    for _ in range(3):
        mad = 1.4826 * np.median(np.abs(each[keep] - centre))
        new = np.abs(each - centre) <= 3 * np.sqrt(mad**2 + var)
        if new.sum() < 3:
            break
        keep = new
        w = 1.0 / var[keep]
        centre = float(np.sum(w * each[keep]) / np.sum(w))
    return centre


RATIO_FLOOR = 0.003
"""Systematic error of one star's flux ratio (PSF variation over the frame, blends)."""


def _robust_var(values: np.ndarray) -> float:
    """Variance of the values from their median absolute deviation."""
    return float((1.4826 * np.median(np.abs(values - np.median(values)))) ** 2)


def _convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``image`` convolved with a small kernel (same shape, float32), by FFT."""
    from scipy.fft import set_workers
    from scipy.signal import fftconvolve

    with set_workers(2):
        return np.asarray(
            fftconvolve(image.astype(np.float32), kernel.astype(np.float32), mode="same"),
            np.float32,
        )


def cutouts(difference: Difference, x: float, y: float, half: int = 25) -> dict[str, np.ndarray]:
    """Science, reference (matched) and difference stamps around a pixel position.

    Returns:
        ``{"science", "reference", "difference"}``: float32 arrays of ``2 * half + 1`` pixels on
        a side (NaN off the frame).
    """
    ny, nx = difference.frame.shape
    xi, yi = round(x), round(y)
    out: dict[str, np.ndarray] = {}
    for name, image in (
        ("science", difference.science.data),
        ("reference", difference.reference),
        ("difference", difference.frame.data),
    ):
        stamp = np.full((2 * half + 1, 2 * half + 1), np.nan, np.float32)
        y0, y1 = max(0, yi - half), min(ny, yi + half + 1)
        x0, x1 = max(0, xi - half), min(nx, xi + half + 1)
        if y0 < y1 and x0 < x1:
            stamp[y0 - (yi - half) : y1 - (yi - half), x0 - (xi - half) : x1 - (xi - half)] = image[
                y0:y1, x0:x1
            ]
        out[name] = stamp
    return out
