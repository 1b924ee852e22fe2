"""Stacks of calibrated exposures of one pointing, cosmic rays rejected by clipping."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from followup.exceptions import ReductionError
from followup.reduction.combine import exposure_time
from followup.reduction.frames import BPM_BAD, BPM_COSMIC_RAY, flags_of

__all__ = ["stack_exposures"]


def _check_exposures(frames: Sequence[CCDData], max_offset_pixels: float) -> None:
    """Raise unless the frames are two or more calibrated exposures of one shape and pointing."""
    if len(frames) < 2:
        raise ReductionError(f"stacking needs at least 2 exposures, got {len(frames)}")
    first = frames[0]
    shape = first.shape
    for k, ccd in enumerate(frames):
        if ccd.shape != shape:
            raise ReductionError(f"exposure {k} shape {ccd.shape} differs from {shape}")
        if ccd.unit != u.electron or ccd.uncertainty is None:
            raise ReductionError(f"exposure {k} must be calibrated (electrons with an uncertainty)")
        if first.wcs is not None and ccd.wcs is not None:
            centre = first.wcs.pixel_to_world(shape[1] / 2, shape[0] / 2)
            x, y = ccd.wcs.world_to_pixel(centre)
            shift = math.hypot(float(x) - shape[1] / 2, float(y) - shape[0] / 2)
            if shift > max_offset_pixels:
                raise ReductionError(
                    f"exposure {k} is offset by {shift:.2f} px: stacking does not resample"
                )


def stack_exposures(
    frames: Sequence[CCDData],
    *,
    sigma: float = 3.0,
    max_offset_pixels: float = 0.5,
) -> CCDData:
    """Stack calibrated exposures of one pointing; cosmic rays are rejected by sigma clipping.

    No resampling is done: the exposures must share shape and WCS (LCO repeats exposures without
    dithering). Values are combined per second of exposure with a clipped mean, then scaled to
    the total exposure time; flagged pixels (other than cosmic rays) are excluded per exposure.

    Args:
        frames: Two or more calibrated frames (electrons) with ``uncertainty`` and ``EXPTIME``.
        sigma: Rejection threshold in robust standard deviations.
        max_offset_pixels: Largest allowed shift between the frames' WCS (pixels).

    Returns:
        The stack in electrons over the summed ``EXPTIME``, with ``uncertainty`` and ``flags``
        (bits kept where no exposure had a good value), ``NCOMBINE`` and ``HISTORY``.

    Raises:
        ReductionError: Fewer than two frames, different shapes or pointings, frames not in
            electrons or without uncertainty.
    """
    import bottleneck as bn

    _check_exposures(frames, max_offset_pixels)
    first = frames[0]
    shape = first.shape
    times = np.array([exposure_time(c) for c in frames], np.float32)
    total = float(times.sum())
    n = len(frames)
    ny, nx = shape
    out = np.empty(shape, np.float32)
    err = np.empty(shape, np.float32)
    flags_out = np.empty(shape, np.uint8)
    step = max(1, int(64e6 // (4 * 4 * n * nx)))
    for start in range(0, ny, step):
        stop = min(start + step, ny)
        rate = np.stack(
            [
                np.asarray(c.data[start:stop], np.float32) / t
                for c, t in zip(frames, times, strict=True)
            ]
        )
        var = np.stack(
            [
                (np.asarray(c.uncertainty.array[start:stop], np.float32) / t) ** 2
                for c, t in zip(frames, times, strict=True)
            ]  # type: ignore[union-attr]
        )
        fl = np.stack([flags_of(c)[start:stop] for c in frames])
        bad = (fl & ~np.uint8(BPM_COSMIC_RAY)) > 0
        rate[bad] = np.nan
        med = bn.nanmedian(rate, axis=0)
        # Clip against the expected noise (robust to few exposures, where a MAD is poor).
        limit = np.float32(sigma) * np.sqrt(bn.nanmedian(var, axis=0))
        rejected = np.abs(rate - med) > limit
        rate[rejected] = np.nan
        var[~np.isfinite(rate)] = np.nan
        count = np.sum(np.isfinite(rate), axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            w = 1.0 / var
            mean = bn.nansum(rate * w, axis=0) / bn.nansum(w, axis=0)
            out[start:stop] = mean * np.float32(total)
            err[start:stop] = np.sqrt(1.0 / bn.nansum(w, axis=0)) * np.float32(total)
        kept = np.bitwise_and.reduce(fl, axis=0) & ~np.uint8(BPM_COSMIC_RAY)
        kept[count == 0] |= BPM_BAD
        flags_out[start:stop] = kept
    header = (
        fits.Header(first.meta) if not isinstance(first.meta, fits.Header) else first.meta.copy()
    )
    header["EXPTIME"] = (total, "[s] Total exposure time of the stack")
    header["NCOMBINE"] = (n, "Exposures stacked")
    header["CRMETHOD"] = ("clipping", f"Cosmic rays rejected by {sigma}-sigma clipping")
    header["HISTORY"] = (
        f"followup.reduction.stack_exposures: {n} exposures, {sigma}-sigma clipped weighted mean"
    )
    bad_out = ~np.isfinite(out)
    out[bad_out] = 0.0
    err[bad_out] = 0.0
    flags_out[bad_out] |= BPM_BAD
    return CCDData(
        out,
        unit=u.electron,
        uncertainty=StdDevUncertainty(err, copy=False),
        flags=flags_out,
        mask=flags_out != 0,
        wcs=first.wcs,
        meta=header,
    )
