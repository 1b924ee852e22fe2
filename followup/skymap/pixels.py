"""HEALPix constants and index helpers shared by the sky-map modules."""

from __future__ import annotations

import math

import astropy_healpix as ah
import numpy as np
from astropy import units as u

SR_PER_DEG2 = (math.pi / 180.0) ** 2
"""Steradians in one square degree."""

MAX_ORDER = 29
"""Deepest HEALPix order a NUNIQ index can hold."""


def _nested_lonlat(ipix: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre RA/Dec (degrees) of nested pixels at mixed orders."""
    ipix = np.asarray(ipix, dtype=np.int64)
    order = np.asarray(order, dtype=np.int64)
    lon = np.empty(ipix.shape, dtype=float)
    lat = np.empty(ipix.shape, dtype=float)
    for o in np.unique(order):
        sel = order == o
        lo, la = ah.healpix_to_lonlat(ipix[sel], 2 ** int(o), order="nested")
        lon[sel] = lo.to_value(u.deg)
        lat[sel] = la.to_value(u.deg)
    return lon, lat


def _flatten_indices(ipix: np.ndarray, order: np.ndarray, target: int) -> np.ndarray:
    """Nested indices at ``target`` covering pixels given at mixed orders (sorted, unique).

    Each pixel becomes a range of indices at ``target``: its children when it is coarser, its
    parent when finer. When the ranges do not overlap (always so for the pixels of a multi-order
    map, which partition the sky), the result is their concatenation in order of start, with no
    sort or de-duplication of the (possibly millions of) expanded indices.
    """
    ipix = np.asarray(ipix, dtype=np.int64).ravel()
    order = np.asarray(order, dtype=np.int64).ravel()
    fine = order > target
    # Finer pixels: their parents, which several of them may share.
    parents = np.unique(ipix[fine] >> (2 * (order[fine] - target)))
    shift = 2 * (target - order[~fine])
    start = np.concatenate([ipix[~fine] << shift, parents])
    count = np.concatenate([np.left_shift(1, shift, dtype=np.int64), np.ones_like(parents)])
    by_start = np.argsort(start, kind="stable")
    start = start[by_start]
    count = count[by_start]
    total = int(count.sum())
    # Index k of the result lies in range j: start[j] + (k - first output index of range j).
    offset = np.repeat(start - (np.cumsum(count) - count), count)
    out = offset + np.arange(total, dtype=np.int64)
    if np.any(start[1:] < start[:-1] + count[:-1]):
        return np.unique(out)  # overlapping ranges (not from a map): de-duplicate
    return out
