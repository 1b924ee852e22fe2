"""Difference imaging: the reference resampled onto the science frame, PSF-matched and subtracted.

The chain (Alard & Lupton 1998, with a constant kernel):

1. **Registration** -- the reference is resampled onto the science frame's pixel grid through both
   WCSs. The pixel-to-pixel map is computed exactly on a coarse grid (every 64 pixels) and
   interpolated between, then the reference is interpolated with a cubic spline
   (``scipy.ndimage.map_coordinates``); its variance with a linear one. ``reproject.reproject_interp``
   does the same with the WCS evaluated at every pixel and took 38 s on a 4k frame here against
   about 2 s for this (``benchmarks/transients.py``). In :mod:`followup.photometry.registration`;
   small holes and thin bad lines are filled first (:mod:`followup.photometry.holes`).
2. **PSF matching** -- the sharper of the two images is convolved with a kernel fitted by linear
   least squares on stamps of bright unsaturated stars: a sum of Gaussians of three widths times
   polynomials in x and y, plus a constant background difference. A residual sub-pixel offset
   between the WCSs is absorbed by the kernel's odd terms. Radial wings out to
   :data:`~followup.photometry.kernel.WING_FWHM` FWHM are then fitted on larger stamps of the
   brightest stars (:func:`~followup.photometry.kernel.fit_wings`): Moffat PSFs of two nights
   differ most there. The kernel's sum is the flux ratio, so the result is in the science frame's
   electrons whichever image was convolved. In :mod:`followup.photometry.kernel`.
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
from followup.photometry.frame import (
    FWHM_TO_SIGMA,
    MASKED_BITS,
    AnyFrame,
    PreparedFrame,
    prepare_frame,
)
from followup.photometry.fwhm import ensure_fwhm
from followup.photometry.holes import FILLED_LINE, fill_small_holes, fill_thin_lines
from followup.photometry.kernel import (
    WING_FWHM,
    convolve,
    correlation_factor,
    fit_kernel,
    fit_wings,
    flux_ratio,
    gaussian_kernel,
    matching_stars,
)
from followup.photometry.registration import resample_reference
from followup.reduction import BPM_BAD, BPM_SATURATED

__all__ = [
    "Difference",
    "combine_references",
    "cutouts",
    "subtract",
]

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
            g = gaussian_kernel(width)
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
        xy = matching_stars(science, own, 2 * stamp_half) - np.array([x0, y0])
        try:
            ratio = flux_ratio(d, sci_data[y0:y1, x0:x1], xy, stamp_half)
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
    xy = matching_stars(sci, r_flags, half + stamp_half)
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
                spread = ndimage.maximum_filter(own_holes, size=2 * half + 1) > 0
                part_spoiled[y0:y1, x0:x1][out] |= spread & region[y0:y1, x0:x1][out]
        main = main or part
        obox = (
            slice(y0 + out[0].start, y0 + out[0].stop),
            slice(x0 + out[1].start, x0 + out[1].stop),
        )
        inside = region[obox]
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
    o = out or (slice(None), slice(None))
    if fixed is not None:
        kernel, bkg, n, rms = fixed[0].copy(), fixed[1], 0, math.nan
    else:
        variance = np.square(sci_err) + np.square(r_err)
        # The kernel takes the sharper image to the blurrier one: its core, its wings, then the
        # stars' flux ratio for its sum.
        sharp, blurred = (r_data, sci_data) if ref_sharper else (sci_data, r_data)
        kernel, bkg, n, rms = fit_kernel(
            sharp, blurred, variance, xy, sigma_k=sigma_k, half=half, stamp_half=stamp_half
        )
        kernel = fit_wings(sharp, blurred, variance, xy, kernel, wing_half=wing_half)
        kernel *= flux_ratio(sharp, blurred, xy, stamp_half, kernel) / kernel.sum()
    if ref_sharper:
        scale = float(kernel.sum())
        matched = convolve(r_data[o], kernel) + np.float32(bkg)
        gamma = correlation_factor(kernel, fwhm)
        var = np.square(sci_err[o]) + np.float32(gamma) * convolve(np.square(r_err[o]), kernel**2)
        return _Part(
            sci_data[o] - matched, var, matched, None, None, kernel, scale, n, rms, gamma, bkg
        )
    total = float(kernel.sum())
    if not total > 0:
        raise PhotometryError("the fitted PSF-matching kernel has no positive flux")
    scale = 1.0 / total
    conv_sci = convolve(sci_data[o], kernel / total)
    matched = ((r_data[o] - np.float32(bkg)) * np.float32(scale)).astype(np.float32)
    gamma = correlation_factor(kernel, fwhm)
    conv_var = np.float32(gamma) * np.clip(
        convolve(np.square(sci_err[o]), (kernel / total) ** 2), 0, None
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
