"""Flagged pixels filled before an image is resampled or convolved, with errors that say so.

A resampling or a convolution spreads a flagged pixel over its reach, and a masked pixel there
flags the whole reach: small clusters (cosmic rays, hot pixels) and thin lines (bad columns and
rows) are filled from their neighbours instead, their errors grown by what the fill cannot know.
Larger holes and saturated pixels stay flagged.
"""

from __future__ import annotations

import math

import numpy as np

from followup.photometry.frame import MASKED_BITS
from followup.reduction import BPM_SATURATED

__all__ = ["FILLED_LINE", "fill_small_holes", "fill_thin_lines"]

FILL_MAX_PIXELS = 30
"""Largest cluster of flagged pixels (a cosmic ray, a hot or bad pixel) filled in before an image
is resampled or convolved; larger ones stay flagged unless they are thin lines
(:func:`fill_thin_lines`); saturated ones always do."""


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
"""Widest run of flagged pixels across a line defect (a bad column or row) filled in: the runs
:data:`_LINE_NODES` has nodes for (a test checks that they agree)."""


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
    # Across columns first (Sinistro's defects), then across rows: the same on the transposes,
    # views that write through.
    _fill_across_columns(out_d, out_e, todo, good, lines)
    _fill_across_columns(out_d.T, out_e.T, todo.T, good.T, lines.T)
    return out_d, out_e, lines


def _fill_across_columns(
    data: np.ndarray, err: np.ndarray, todo: np.ndarray, good: np.ndarray, lines: np.ndarray
) -> None:
    """:func:`fill_thin_lines` across the columns, in place on ``data``, ``err`` and ``lines``.

    The pixels filled are those of ``todo`` not yet in ``lines``; ``good`` are the nodes.
    """
    ys, xs = np.nonzero(todo & ~lines)
    if not len(ys):
        return
    nx = todo.shape[1]

    def test(mask: np.ndarray, offset: int) -> np.ndarray:
        x = xs + offset
        ok = (x >= 0) & (x < nx)
        hit = np.zeros(len(xs), bool)
        hit[ok] = mask[ys[ok], x[ok]]
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
        wc, ws = _lagrange(cubic), _lagrange(straight)
        py, px = ys[sel], xs[sel]
        vals = [data[py, px + o] for o in cubic]
        errs = [err[py, px + o] for o in cubic]
        value = sum(w * v for w, v in zip(wc, vals, strict=True))
        line = sum(w * vals[cubic.index(o)] for w, o in zip(ws, straight, strict=True))
        noise2 = sum(w * w * e.astype(float) ** 2 for w, e in zip(wc, errs, strict=True))
        data[py, px] = np.asarray(value, np.float32)
        err[py, px] = np.sqrt(noise2 + (value - line) ** 2).astype(np.float32)
        lines[py, px] = True
