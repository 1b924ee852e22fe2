"""Reading HEALPix FITS sky maps: multi-order and flat, plain, gzipped or base64."""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import astropy_healpix as ah
import numpy as np
from astropy.io import fits

from followup.bounded import DecodeLimitExceeded, fits_declared_end, inflate
from followup.exceptions import SkymapError
from followup.skymap.pixels import SR_PER_DEG2
from followup.skymap.sky import SkyMap, SkymapSource

__all__ = ["MAX_FLAT_NSIDE", "MAX_SKYMAP_BYTES", "read_skymap"]

MAX_SKYMAP_BYTES = 512 * 2**20
"""Largest sky map read, once inflated. The largest real flat maps (nside 1024 with distance
layers, nside 2048 without) are about 400 MB; a map larger than this, or whose headers declare
more, is refused before it is inflated further (a 1 MB gzip can inflate to a GiB)."""

MAX_FLAT_NSIDE = 2048
"""Finest flat map read: an explicitly indexed map is rasterised to ``12 * NSIDE**2`` pixels, so
its NSIDE, not its size, decides the memory it takes (50 million pixels at 2048)."""

_HEADER_SLACK = 2**20  # what may follow the last header seen in the first bytes of a map


def _load_bytes(source: SkymapSource, max_bytes: int) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            if path.stat().st_size > max_bytes:
                raise SkymapError(f"sky map file {path} is larger than {max_bytes} bytes")
            data = path.read_bytes()
        except OSError as exc:
            raise SkymapError(f"cannot read sky map file {path}: {exc}") from exc
    elif hasattr(source, "read"):
        data = source.read(max_bytes + 1)
        if not isinstance(data, bytes | bytearray):
            raise SkymapError("sky map file objects must be opened in binary mode")
        data = bytes(data)
    else:
        raise SkymapError(f"cannot read a sky map from {type(source).__name__}")
    if not data:
        raise SkymapError("the sky map is empty (0 bytes)")
    if data[:2] == b"\x1f\x8b":
        try:
            data = inflate(data, limit=max_bytes, check=_fits_check(max_bytes), what="gzip sky map")
        except DecodeLimitExceeded as exc:
            raise SkymapError(f"sky map larger than the limit: {exc}") from None
        except SkymapError:
            raise
        except ValueError as exc:
            raise SkymapError(f"corrupt gzip sky map: {exc}") from None
    elif data[:8] == b"U0lNUExF":  # base64 of "SIMPLE", as LVK JSON alerts carry it
        try:
            data = base64.b64decode(data, validate=False)
        except ValueError as exc:
            raise SkymapError(f"corrupt base64 sky map: {exc}") from exc
    if len(data) > max_bytes:
        raise SkymapError(f"the sky map has {len(data)} bytes, larger than {max_bytes}")
    _fits_check(max_bytes)(data)
    return data


def _fits_check(max_bytes: int) -> Callable[[bytes], int | None]:
    """:func:`followup.bounded.fits_declared_end` for a map's first bytes, as SkymapError."""

    def check(head: bytes) -> int | None:
        try:
            return fits_declared_end(head, limit=max_bytes, slack=_HEADER_SLACK)
        except ValueError as exc:  # DecodeLimitExceeded too: "... larger than ..."
            raise SkymapError(str(exc)) from None

    return check


def read_skymap(
    source: SkymapSource,
    *,
    tail_probability: float = 1e-4,
    max_bytes: int = MAX_SKYMAP_BYTES,
) -> SkyMap:
    """Read a HEALPix sky map from FITS bytes, a path or a binary file object.

    Accepts LVK multi-order maps (UNIQ, PROBDENSITY, DISTMU, DISTSIGMA, DISTNORM; ORDERING
    NUNIQ) and flat maps (RING or NESTED; a PROB or PROBABILITY column, vector columns too;
    optional distance layers; implicit or explicit indexing), plain, gzipped or base64.

    Args:
        source: The map.
        tail_probability: See :meth:`SkyMap.from_fits`.
        max_bytes: Largest map read, once inflated (see :data:`MAX_SKYMAP_BYTES`); a gzip
            stream is never inflated past it, nor past the size its headers declare.

    Returns:
        The sky map.

    Raises:
        SkymapError: Corrupt, truncated, empty, all-zero or NaN maps, not a HEALPix map, or
            larger than ``max_bytes`` (or a flat map finer than :data:`MAX_FLAT_NSIDE`).
    """
    data = _load_bytes(source, max_bytes)
    try:
        with fits.open(
            io.BytesIO(data), memmap=False, lazy_load_hdus=False, disable_image_compression=True
        ) as hdul:
            hdu = _find_healpix_hdu(hdul)
            header = hdu.header
            table = hdu.data
            names = {name.upper(): name for name in table.columns.names}
            columns = {key: np.asarray(table[name]) for key, name in names.items()}
            units = {c.name.upper(): (c.unit or "") for c in table.columns}
            meta = _header_meta(header)
            hdr = {k.upper(): header[k] for k in header if k}
    except SkymapError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError... on bad FITS
        raise SkymapError(f"corrupt or truncated FITS sky map: {exc}") from exc

    coordsys = str(hdr.get("COORDSYS", "C")).strip().upper()
    if coordsys not in ("C", "CELESTIAL", "EQUATORIAL", "ICRS"):
        raise SkymapError(f"sky map COORDSYS={coordsys!r}: only celestial (C) maps are supported")
    ordering = str(hdr.get("ORDERING", "")).strip().upper()

    if "UNIQ" in columns:
        uniq = columns["UNIQ"].ravel()
        if "PROBDENSITY" in columns:
            density = _to_per_sr(columns["PROBDENSITY"].ravel(), units.get("PROBDENSITY", ""))
        elif "PROB" in columns or "PROBABILITY" in columns:
            key = "PROB" if "PROB" in columns else "PROBABILITY"
            order, _ = ah.uniq_to_level_ipix(np.asarray(uniq, dtype=np.int64))
            density = columns[key].ravel().astype(float) / (4 * np.pi / (12.0 * 4.0**order))
        else:
            raise SkymapError(f"multi-order map without PROBDENSITY; columns: {sorted(columns)}")
        return SkyMap(
            uniq,
            density,
            distmu=_column(columns, "DISTMU"),
            distsigma=_column(columns, "DISTSIGMA"),
            distnorm=_column(columns, "DISTNORM"),
            meta=meta,
        )

    if ordering not in ("RING", "NESTED"):
        raise SkymapError(
            f"flat HEALPix map needs ORDERING RING or NESTED, got {ordering or 'nothing'!r}"
        )
    key = next((k for k in ("PROB", "PROBABILITY") if k in columns), None)
    if key is None:
        raise SkymapError(f"no PROB or PROBABILITY column; columns: {sorted(columns)}")
    values = {"PROB": columns[key].ravel()}
    for layer in ("DISTMU", "DISTSIGMA", "DISTNORM"):
        if layer in columns:
            values[layer] = columns[layer].ravel()
    explicit = str(hdr.get("INDXSCHM", "IMPLICIT")).strip().upper() == "EXPLICIT"
    pixel = columns["PIXEL"].ravel().astype(np.int64) if explicit and "PIXEL" in columns else None
    if explicit and pixel is None:
        raise SkymapError("explicitly indexed flat map without a PIXEL column")
    nside = hdr.get("NSIDE")
    npix_rows = values["PROB"].size
    if nside is None:
        if pixel is not None:
            raise SkymapError("explicitly indexed flat map without NSIDE")
        try:
            nside = ah.npix_to_nside(npix_rows)
        except ValueError as exc:
            raise SkymapError(f"{npix_rows} pixels is not a HEALPix map size") from exc
    try:
        nside = int(nside)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SkymapError(f"NSIDE={nside!r} is not a number") from exc
    if nside < 1 or nside & (nside - 1):
        raise SkymapError(f"NSIDE={nside} is not a power of two")
    if nside > MAX_FLAT_NSIDE:
        raise SkymapError(f"flat map NSIDE={nside} is finer than {MAX_FLAT_NSIDE}: not read")
    npix = 12 * nside * nside
    if pixel is None and npix_rows != npix:
        raise SkymapError(f"flat map has {npix_rows} pixels, NSIDE={nside} needs {npix}")
    if pixel is not None and (pixel.min() < 0 or pixel.max() >= npix):
        raise SkymapError("PIXEL indices outside the map")
    return _from_flat(values, nside, ordering, pixel, meta, tail_probability)


def _find_healpix_hdu(hdul: fits.HDUList) -> fits.BinTableHDU:
    tables = [h for h in hdul if isinstance(h, fits.BinTableHDU)]
    if not tables:
        raise SkymapError("no binary table HDU: not a HEALPix FITS map")
    for hdu in tables:
        names = {n.upper() for n in hdu.columns.names}
        if names & {"UNIQ", "PROB", "PROBABILITY", "PROBDENSITY"}:
            return hdu
    raise SkymapError(
        f"no HEALPix probability column; columns: {[h.columns.names for h in tables]}"
    )


def _header_meta(header: fits.Header) -> dict[str, Any]:
    keep = (
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
    meta: dict[str, Any] = {}
    for key in keep:
        if key in header:
            value = header[key]
            if isinstance(value, np.generic):
                value = value.item()
            meta[key] = value
    return meta


def _column(columns: dict[str, np.ndarray], key: str) -> np.ndarray | None:
    return columns[key].ravel() if key in columns else None


def _to_per_sr(values: np.ndarray, unit: str) -> np.ndarray:
    unit = unit.strip().lower().replace(" ", "")
    values = values.astype(float)
    if unit in ("", "sr-1", "1/sr", "sr**-1", "sr^-1", "/sr"):
        return values
    if unit in ("deg-2", "1/deg2", "deg**-2", "deg^-2", "/deg2"):
        return values / SR_PER_DEG2
    raise SkymapError(f"PROBDENSITY unit {unit!r} is not per steradian or per square degree")


def _tail_threshold(density: np.ndarray, prob: np.ndarray, tail_probability: float) -> float:
    """A density below which pixels hold at most ``tail_probability`` (conservative).

    Densities are binned by their binary exponent (one cheap pass over nside-2048 maps), so the
    threshold is within a factor two below the exact one.
    """
    if tail_probability <= 0:
        return 0.0
    # The biased binary exponent straight from the IEEE-754 bits (densities are >= 0).
    exponent = (np.ascontiguousarray(density, dtype=np.float64).view(np.int64) >> 52) & 0x7FF
    cum = np.cumsum(np.bincount(exponent, weights=prob))
    # Bins [0, k) hold cum[k-1]; every density below 2**(k - 1023) lies in them.
    k = int(np.searchsorted(cum, tail_probability, side="right"))
    return float(np.ldexp(1.0, k - 1023)) if k > 0 else 0.0


def _from_flat(
    values: dict[str, np.ndarray],
    nside: int,
    ordering: str,
    pixel: np.ndarray | None,
    meta: dict[str, Any],
    tail_probability: float,
) -> SkyMap:
    order = int(ah.nside_to_level(nside))
    npix = 12 * nside * nside
    prob_in = values["PROB"] = values["PROB"].astype(np.float64)
    if not np.isfinite(prob_in).all():
        n_nan = int(np.isnan(prob_in).sum())
        raise SkymapError(
            f"the sky map has {n_nan} NaN and {int(np.isinf(prob_in).sum())} infinite pixels"
        )
    if prob_in.min() < 0:
        raise SkymapError(f"the sky map has {int((prob_in < 0).sum())} negative pixels")
    has_distance = all(k in values for k in ("DISTMU", "DISTSIGMA", "DISTNORM"))
    keys = ["PROB", "DISTMU", "DISTSIGMA", "DISTNORM"] if has_distance else ["PROB"]
    fill = {"PROB": 0.0, "DISTMU": np.inf, "DISTSIGMA": 1.0, "DISTNORM": 0.0}

    def to_nested(arr: np.ndarray, key: str) -> np.ndarray:
        arr = arr.astype(np.float64, copy=False)
        if pixel is None and ordering == "NESTED":
            return arr
        out = np.full(npix, fill[key])
        index = pixel if pixel is not None else None
        if ordering == "RING":
            if index is None:
                if key == "PROB":
                    index = np.nonzero(arr)[0]
                    arr = arr[index]
                else:
                    index = np.arange(npix, dtype=np.int64)
            index = np.asarray(ah.core.ring_to_nested(index, nside), dtype=np.int64)
        out[index] = arr
        return out

    if ordering == "RING" and pixel is None and has_distance:
        # Distance layers need a full permutation anyway.
        index = np.asarray(ah.core.ring_to_nested(np.arange(npix), nside), dtype=np.int64)
        nested = {}
        for key in keys:
            out = np.empty(npix)
            out[index] = values[key].astype(np.float64, copy=False)
            nested[key] = out
    else:
        nested = {key: to_nested(values[key], key) for key in keys}

    total = float(nested["PROB"].sum())
    if not total > 0:
        raise SkymapError("the sky map is all zero")
    area = 4 * math.pi / npix
    density = nested["PROB"] / area
    threshold = _tail_threshold(density, nested["PROB"] / total, tail_probability)
    stack = [density] + [nested[k] for k in keys[1:]]
    uniq, cols = _merge_siblings(order, stack, threshold)
    meta = dict(meta)
    meta["flat_nside"] = nside
    meta["flat_ordering"] = ordering
    if has_distance:
        return SkyMap(uniq, cols[0], distmu=cols[1], distsigma=cols[2], distnorm=cols[3], meta=meta)
    return SkyMap(uniq, cols[0], meta=meta)


def _merge_siblings(
    order: int, columns: list[np.ndarray], tail_density: float
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Turn full-sky NESTED arrays into a multi-order map, merging groups of four siblings.

    Siblings merge when all their values are identical (lossless) or when all their densities
    (``columns[0]``) are below ``tail_density`` (the parent takes their mean density and the
    distance layers of the densest child).
    """
    out_uniq: list[np.ndarray] = []
    out_cols: list[list[np.ndarray]] = [[] for _ in columns]
    current = columns
    alive: np.ndarray | None = None  # None: every pixel at this level is a live leaf
    for level in range(order, 0, -1):
        n = current[0].size
        groups = [c.reshape(n // 4, 4) for c in current]
        equal = np.ones(n // 4, dtype=bool)
        for g in groups:
            same = g == g[:, :1]
            same |= np.isnan(g) & np.isnan(g[:, :1])
            equal &= same.all(axis=1)
        merge = equal | (groups[0] < tail_density).all(axis=1) if tail_density > 0 else equal
        if alive is not None:
            merge &= alive.reshape(n // 4, 4).all(axis=1)
        keep = ~np.repeat(merge, 4)
        if alive is not None:
            keep &= alive
        idx = np.nonzero(keep)[0]
        if idx.size:
            out_uniq.append(4 * 4**level + idx)
            for k, c in enumerate(current):
                out_cols[k].append(c[idx])
        densest = np.argmax(groups[0], axis=1)
        rows = np.arange(n // 4)
        parent = [groups[0].mean(axis=1)]
        for g in groups[1:]:
            parent.append(np.where(equal, g[:, 0], g[rows, densest]))
        parent[0] = np.where(equal, groups[0][:, 0], parent[0])
        current = parent
        alive = merge
    idx = np.arange(current[0].size) if alive is None else np.nonzero(alive)[0]
    if idx.size:
        out_uniq.append(4 + idx)
        for k, c in enumerate(current):
            out_cols[k].append(c[idx])
    uniq = np.concatenate(out_uniq).astype(np.int64)
    cols = [np.concatenate(parts) for parts in out_cols]
    return uniq, cols
