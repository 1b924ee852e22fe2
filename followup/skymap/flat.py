"""Flat (single-resolution) HEALPix maps: read their columns in place, merge them to multi-order.

An nside-2048 flat map holds 50 million pixels (400 MB of float64). Reading it through astropy's
table machinery and converting whole-sky arrays costs several copies of that; here the table is
viewed where it lies in the file's bytes (:func:`flat_columns`) and converted block by block
(:func:`flat_to_multiorder`): each block of ``4**10`` nested pixels is gathered, merged with its
siblings, and dropped before the next, so the extra memory is a few blocks, not a few maps.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import astropy_healpix as ah
import numpy as np

from followup.bounded import fits_hdus
from followup.exceptions import SkymapError
from followup.skymap.sky import SkyMap

__all__ = [
    "HEADER_META_KEYS",
    "FlatTable",
    "flat_columns",
    "flat_to_multiorder",
    "nested_block_to_ring",
]

_BLOCK_ORDER = 10
"""Blocks of ``4**10`` (a million) nested pixels: 8 MB of float64 per layer."""

_TFORM = {"D": ">f8", "E": ">f4", "K": ">i8", "J": ">i4", "I": ">i2", "B": "u1"}
_TFORM_RE = re.compile(r"^\s*(\d*)\s*([A-Z])\s*$")
_FILL = {"PROB": 0.0, "DISTMU": np.inf, "DISTSIGMA": 1.0, "DISTNORM": 0.0}
# The header keys a sky map keeps as its metadata (here and in reading.py).
HEADER_META_KEYS = (
    "OBJECT",
    "DATE-OBS",
    "MJD-OBS",
    "DATE",
    "CREATOR",
    "ORIGIN",
    "INSTRUME",
    "REFERENC",
    "DISTMEAN",
    "DISTSTD",
    "LOGBCI",
    "LOGBSN",
    "VCSVERS",
    "RUNTIME",
)


@dataclass(frozen=True)
class FlatTable:
    """The columns of a flat map's binary table, viewed in the file's bytes (no copy).

    Attributes:
        columns: Column name (upper case) to a 1-D array (big-endian, possibly strided).
        units: Column name to its TUNIT (empty when none).
        header: The table header's keywords (upper case) and values.
        meta: The header values a :class:`SkyMap` keeps.
    """

    columns: dict[str, np.ndarray]
    units: dict[str, str]
    header: dict[str, Any]
    meta: dict[str, Any]


def flat_columns(data: bytes | bytearray) -> FlatTable | None:
    """View a flat HEALPix map's columns in place, or None to let the general reader decide.

    None is returned for anything but a plain flat map (multi-order maps, explicit indexing,
    column types other than numbers, vector columns next to others, truncated data), which
    astropy then reads and judges.

    Args:
        data: The whole FITS file.

    Returns:
        The table, or None.
    """
    for hdu in fits_hdus(data):
        cards = hdu.cards
        if str(cards.get("XTENSION", "")).strip().upper() != "BINTABLE":
            continue
        try:
            nfields = int(float(cards.get("TFIELDS", 0)))
            rowsize = int(float(cards.get("NAXIS1", 0)))
            nrows = int(float(cards.get("NAXIS2", 0)))
        except (TypeError, ValueError, OverflowError):
            return None
        names = [str(cards.get(f"TTYPE{i}", "")).strip().upper() for i in range(1, nfields + 1)]
        if not set(names) & {"UNIQ", "PROB", "PROBABILITY", "PROBDENSITY"}:
            continue
        if "UNIQ" in names or "PIXEL" in names or not set(names) & {"PROB", "PROBABILITY"}:
            return None
        formats, offsets, repeats, offset = [], [], [], 0
        for i in range(1, nfields + 1):
            match = _TFORM_RE.match(str(cards.get(f"TFORM{i}", "")))
            if match is None or match.group(2) not in _TFORM:
                return None
            repeat = int(match.group(1) or 1)
            base = np.dtype(_TFORM[match.group(2)])
            formats.append((base, (repeat,)) if repeat > 1 else base)
            offsets.append(offset)
            repeats.append(repeat)
            offset += repeat * base.itemsize
        if offset != rowsize or nrows <= 0 or len(set(names)) != nfields:
            return None
        if max(repeats) > 1 and nfields > 1:
            return None
        if hdu.data_start + rowsize * nrows > len(data):
            return None  # truncated: the general reader says so
        dtype = np.dtype(
            {"names": names, "formats": formats, "offsets": offsets, "itemsize": rowsize}
        )
        table = np.frombuffer(data, dtype=dtype, count=nrows, offset=hdu.data_start)
        columns = {name: table[name].reshape(-1) for name in names}
        units = {name: str(cards.get(f"TUNIT{i}", "")).strip() for i, name in enumerate(names, 1)}
        header = {key.upper(): value for key, value in cards.items()}
        meta = {key: header[key] for key in HEADER_META_KEYS if key in header}
        return FlatTable(columns, units, header, meta)
    return None


def flat_to_multiorder(
    values: Mapping[str, np.ndarray],
    nside: int,
    ordering: str,
    pixel: np.ndarray | None,
    meta: Mapping[str, Any],
    tail_probability: float,
) -> SkyMap:
    """Turn a flat map's columns into a multi-order :class:`SkyMap`, block by block.

    Sibling pixels merge when all their values are identical (lossless) or when all their
    densities lie in the faint tail holding at most ``tail_probability``.

    Args:
        values: ``PROB`` (probability per pixel) and optionally ``DISTMU``, ``DISTSIGMA``,
            ``DISTNORM``, one value per pixel (or per ``pixel`` entry).
        nside: The map's NSIDE.
        ordering: ``RING`` or ``NESTED``.
        pixel: Explicit pixel indices (in ``ordering``), or None for implicit indexing.
        meta: Header values to keep.
        tail_probability: See :meth:`SkyMap.from_fits`.

    Returns:
        The sky map.

    Raises:
        SkymapError: NaN, infinite, negative or all-zero probabilities.
    """
    order = int(ah.nside_to_level(nside))
    npix = 12 * nside * nside
    has_distance = all(k in values for k in ("DISTMU", "DISTSIGMA", "DISTNORM"))
    keys = ["PROB", "DISTMU", "DISTSIGMA", "DISTNORM"] if has_distance else ["PROB"]
    layers = {key: values[key] for key in keys}
    if pixel is not None:  # explicit indexing: rasterise (its NSIDE is bounded by the caller)
        nested = (
            np.asarray(ah.core.ring_to_nested(pixel, nside), dtype=np.int64)
            if ordering == "RING"
            else pixel
        )
        for key in keys:
            full = np.full(npix, _FILL[key])
            full[nested] = layers[key]
            layers[key] = full
        ordering = "NESTED"

    total, threshold = _scan(layers["PROB"], tail_probability)
    area = 4 * math.pi / npix
    tail_density = threshold / area

    block_order = min(order, _BLOCK_ORDER)
    block = 4**block_order
    root_level = order - block_order
    nblocks = npix // block
    out_uniq: list[np.ndarray] = []
    out_cols: list[list[np.ndarray]] = [[] for _ in keys]
    roots = [np.empty(nblocks) for _ in keys]
    root_alive = np.empty(nblocks, dtype=bool)
    for b in range(nblocks):
        lo = b * block
        if ordering == "NESTED":
            index: slice | np.ndarray = slice(lo, lo + block)
        else:
            index = nested_block_to_ring(lo, block_order, nside)
        cols = [np.asarray(layers[key][index], dtype=np.float64) for key in keys]
        cols[0] /= area
        top_density = float(cols[0].max())
        if top_density < tail_density or (
            top_density == cols[0].min() and all(c.min() == c.max() for c in cols[1:])
        ):
            # The whole block merges into one pixel: faint tail, or one value (empty sky,
            # a coarse pixel of a rasterised multi-order map).
            roots[0][b] = float(cols[0].mean()) if top_density < tail_density else top_density
            densest = int(np.argmax(cols[0]))
            for k, c in enumerate(cols[1:], 1):
                roots[k][b] = c[densest]
            root_alive[b] = True
            continue
        top, alive = _merge_levels(
            cols, order, root_level, lo, tail_density, None, out_uniq, out_cols
        )
        for k, c in enumerate(top):
            roots[k][b] = c[0]
        root_alive[b] = True if alive is None else bool(alive[0])
    top, alive = _merge_levels(
        roots, root_level, 0, 0, tail_density, root_alive, out_uniq, out_cols
    )
    idx = np.arange(top[0].size) if alive is None else np.flatnonzero(alive)
    if idx.size:
        out_uniq.append(4 + idx)
        for k, c in enumerate(top):
            out_cols[k].append(c[idx])
    uniq = np.concatenate(out_uniq).astype(np.int64)
    cols = [np.concatenate(parts) for parts in out_cols]
    if not total > 0:
        raise SkymapError("the sky map is all zero")
    meta = dict(meta)
    meta["flat_nside"] = nside
    meta["flat_ordering"] = ordering if pixel is None else "EXPLICIT"
    if has_distance:
        return SkyMap(uniq, cols[0], distmu=cols[1], distsigma=cols[2], distnorm=cols[3], meta=meta)
    return SkyMap(uniq, cols[0], meta=meta)


# The base faces' ring and position numbers (HEALPix: Gorski et al. 2005; healpix_base xyf2ring).
_JRLL = (2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4)
_JPLL = (1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7)


def _compact_bits(v: Any) -> Any:
    """The even bits of ``v`` packed together (the x coordinate of a nested index)."""
    v = v & 0x5555555555555555
    v = (v | (v >> 1)) & 0x3333333333333333
    v = (v | (v >> 2)) & 0x0F0F0F0F0F0F0F0F
    v = (v | (v >> 4)) & 0x00FF00FF00FF00FF
    v = (v | (v >> 8)) & 0x0000FFFF0000FFFF
    return (v | (v >> 16)) & 0x00000000FFFFFFFF


@functools.lru_cache(maxsize=2)
def _block_diagonals(block_order: int) -> tuple[np.ndarray, np.ndarray]:
    """``x + y`` and ``x - y`` of each nested pixel of a block, in the block's own coordinates."""
    q = np.arange(4**block_order, dtype=np.int64)
    x, y = _compact_bits(q), _compact_bits(q >> 1)
    return (x + y).astype(np.int32), (x - y).astype(np.int32)


@functools.lru_cache(maxsize=2)
def _ring_tables(nside: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each ring number: its first pixel, pixels per quarter, and 1 when not shifted."""
    ring = np.arange(4 * nside, dtype=np.int64)
    north, south = ring < nside, ring >= 3 * nside
    quarter = np.where(north, ring, np.where(south, 4 * nside - ring, nside))
    start = np.where(
        north,
        2 * ring * (ring - 1),
        np.where(
            south,
            12 * nside * nside - 2 * quarter * (quarter + 1),
            2 * nside * (nside - 1) + (ring - nside) * 4 * nside,
        ),
    )
    shifted = north | south | (((ring - nside) & 1) == 0)
    return start, quarter, 1 - shifted.astype(np.int64)


def nested_block_to_ring(lo: int, block_order: int, nside: int) -> np.ndarray:
    """RING indices of the nested pixels ``lo .. lo + 4**block_order - 1`` (one aligned block).

    The same numbers as ``astropy_healpix.core.nested_to_ring`` (a test compares them), about
    five times faster: a block is a square of one base face, so every pixel's ring and place
    on it follow from its diagonals ``x + y`` and ``x - y`` in the block (computed once) and
    small per-ring tables, with no per-pixel bit juggling.
    """
    if 12 * nside * nside >= 2**31:  # int32 arithmetic below
        return np.asarray(
            ah.core.nested_to_ring(np.arange(lo, lo + 4**block_order, dtype=np.int64), nside),
            dtype=np.int64,
        )
    face, q = divmod(int(lo), nside * nside)
    ox, oy = int(_compact_bits(q)), int(_compact_bits(q >> 1))
    diag_sum, diag_diff = _block_diagonals(block_order)
    start, quarter, kshift = _ring_tables(nside)
    rings = (_JRLL[face] * nside - ox - oy - 1) - np.arange(2 * 2**block_order - 1)
    n = quarter[rings]
    twice = (_JPLL[face] * n + (ox - oy + 1) + kshift[rings]).astype(np.int32)[diag_sum] + diag_diff
    index = (start[rings] - 1).astype(np.int32)[diag_sum] + (twice >> 1)
    wrap = twice < 2  # position 0 or below: the ring's end (polar caps)
    if wrap.any():
        index[wrap] += (4 * n).astype(np.int32)[diag_sum[wrap]]
    return index


def _scan(prob: np.ndarray, tail_probability: float) -> tuple[float, float]:
    """Check the probabilities and find the faint tail, in chunks: ``(total, tail bound)``.

    Probabilities are binned by their binary exponent (one cheap pass), so the bound (a
    probability per pixel below which pixels hold at most ``tail_probability`` of the total)
    is within a factor two below the exact one.
    """
    total = 0.0
    hist = np.zeros(2048)
    n_nan = n_inf = n_neg = 0
    step = 4**_BLOCK_ORDER
    for lo in range(0, prob.size, step):
        chunk = np.ascontiguousarray(prob[lo : lo + step], dtype=np.float64)
        subtotal = float(chunk.sum())  # NaN or inf when any pixel is
        if not math.isfinite(subtotal):
            n_nan += int(np.isnan(chunk).sum())
            n_inf += int(np.isinf(chunk).sum())
            continue
        if chunk.min() < 0:
            n_neg += int((chunk < 0).sum())
            continue
        total += subtotal
        if tail_probability > 0:
            exponent = (chunk.view(np.int64) >> 52) & 0x7FF
            hist += np.bincount(exponent, weights=chunk, minlength=2048)
    if n_nan or n_inf:
        raise SkymapError(f"the sky map has {n_nan} NaN and {n_inf} infinite pixels")
    if n_neg:
        raise SkymapError(f"the sky map has {n_neg} negative pixels")
    if not total > 0:
        raise SkymapError("the sky map is all zero")
    if tail_probability <= 0:
        return total, 0.0
    cum = np.cumsum(hist) / total
    # Bins [0, k) hold cum[k-1]; every probability below 2**(k - 1023) lies in them.
    k = int(np.searchsorted(cum, tail_probability, side="right"))
    return total, float(np.ldexp(1.0, k - 1023)) if k > 0 else 0.0


def _merge_levels(
    columns: list[np.ndarray],
    top: int,
    bottom: int,
    first: int,
    tail_density: float,
    alive: np.ndarray | None,
    out_uniq: list[np.ndarray],
    out_cols: list[list[np.ndarray]],
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Merge groups of four siblings from level ``top`` up to level ``bottom``.

    ``columns`` hold consecutive nested pixels at ``top`` starting at index ``first``
    (``columns[0]`` is the density); ``alive`` marks which of them are still leaves (None:
    all). Pixels that stop merging are appended to ``out_uniq``/``out_cols``; the arrays at
    ``bottom`` and their ``alive`` mask are returned for the caller to continue.
    """
    current = columns
    for level in range(top, bottom, -1):
        n = current[0].size
        groups = [c.reshape(n // 4, 4) for c in current]
        dens = groups[0]
        d0, d1, d2, d3 = dens[:, 0], dens[:, 1], dens[:, 2], dens[:, 3]
        equal = (d0 == d1) & (d0 == d2) & (d0 == d3)
        for g in groups[1:]:
            for j in (1, 2, 3):
                equal &= (g[:, 0] == g[:, j]) | (np.isnan(g[:, 0]) & np.isnan(g[:, j]))
        if tail_density > 0:
            merge = equal | (np.maximum(np.maximum(d0, d1), np.maximum(d2, d3)) < tail_density)
        else:
            merge = equal
        if alive is not None:
            merge &= alive.reshape(n // 4, 4).all(axis=1)
        keep = ~np.repeat(merge, 4)
        if alive is not None:
            keep &= alive
        idx = np.flatnonzero(keep)
        if idx.size:
            out_uniq.append(4 * 4**level + first + idx)
            for k, c in enumerate(current):
                out_cols[k].append(c[idx])
        parent = [np.where(equal, d0, (d0 + d1 + d2 + d3) * 0.25)]
        if len(groups) > 1:
            densest = np.argmax(dens, axis=1)
            rows = np.arange(n // 4)
            parent += [np.where(equal, g[:, 0], g[rows, densest]) for g in groups[1:]]
        current = parent
        alive = merge
        first //= 4
    return current, alive
