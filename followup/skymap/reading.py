"""Reading HEALPix FITS sky maps: multi-order and flat, plain, gzipped or base64."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import astropy_healpix as ah
import numpy as np
from astropy.io import fits

from followup.bounded import DecodeLimitExceeded, fits_declared_end, inflate
from followup.exceptions import SkymapError
from followup.skymap.flat import HEADER_META_KEYS, flat_columns, flat_to_multiorder
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


def _load_bytes(source: SkymapSource, max_bytes: int) -> bytes | bytearray:
    data: bytes | bytearray
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
            data = inflate(
                data,
                limit=max_bytes,
                check=_fits_check(max_bytes),
                what="gzip sky map",
                as_bytearray=True,  # no second copy of a 400 MB map
            )
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


def _fits_check(max_bytes: int) -> Callable[[bytes | bytearray], int | None]:
    """:func:`followup.bounded.fits_declared_end` for a map's first bytes, as SkymapError."""

    def check(head: bytes | bytearray) -> int | None:
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
    flat = flat_columns(data)
    if flat is not None:
        columns, units, meta, hdr = flat.columns, flat.units, flat.meta, flat.header
    else:
        columns, units, meta, hdr = _astropy_columns(data)
    del data  # the columns of a flat map still view it; nothing else does
    return _to_skymap(columns, units, meta, hdr, tail_probability)


def _astropy_columns(
    data: bytes | bytearray,
) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, Any], dict[str, Any]]:
    """Columns, units, kept header values and all header values of a map, via astropy."""
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
    return columns, units, meta, hdr


def _to_skymap(
    columns: dict[str, np.ndarray],
    units: dict[str, str],
    meta: dict[str, Any],
    hdr: dict[str, Any],
    tail_probability: float,
) -> SkyMap:
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
    values = {"PROB": columns[key].reshape(-1)}
    for layer in ("DISTMU", "DISTSIGMA", "DISTNORM"):
        if layer in columns:
            values[layer] = columns[layer].reshape(-1)
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
    return flat_to_multiorder(values, nside, ordering, pixel, meta, tail_probability)


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
    meta: dict[str, Any] = {}
    for key in HEADER_META_KEYS:
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
