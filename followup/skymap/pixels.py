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
    """Nested indices at ``target`` covering pixels given at mixed orders (sorted, unique)."""
    parts = []
    for o in np.unique(order):
        sel = ipix[order == o]
        if o >= target:
            parts.append(np.unique(sel >> (2 * (int(o) - target))))
        else:
            k = 4 ** (target - int(o))
            base = sel << (2 * (target - int(o)))
            parts.append((base[:, None] + np.arange(k, dtype=np.int64)[None, :]).ravel())
    if not parts:
        return np.empty(0, dtype=np.int64)
    return np.unique(np.concatenate(parts))
