"""Value conversions shared by the alert parsers: times, numbers, error regions, embedded sky maps.

Every function raises :class:`followup.exceptions.AlertParseError` with a short machine-friendly
reason (``invalid-time``, ``invalid-number``, ``invalid-skymap``...) and a detail naming the field,
so that a quarantined message says exactly what was wrong with it.
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from followup.bounded import fits_hdus
from followup.exceptions import AlertParseError
from followup.models import ErrorRegion, SkyPosition

__all__ = [
    "FITS_SIGNATURE",
    "GZIP_SIGNATURE",
    "angular_distance_deg",
    "as_bool",
    "as_float",
    "as_probabilities",
    "decode_skymap",
    "error_region",
    "fits_header_values",
    "neutrino_summary",
    "parse_time",
    "position",
    "skymap_summary",
    "trusted_position",
]

FITS_SIGNATURE = b"SIMPLE  ="
"""Every FITS file starts with this card."""

GZIP_SIGNATURE = b"\x1f\x8b"
"""Gzip magic bytes (flat HEALPix maps are often sent gzipped)."""

_B64_FITS_PREFIX = "U0lNUExFICA9"  # base64 of b"SIMPLE  =" (9 bytes, so 12 characters)
_B64_GZIP_PREFIX = "H4sI"  # base64 of a gzip header

_MIN_YEAR = 1960
_MAX_YEAR = 2200


def parse_time(value: Any, *, field: str) -> datetime:
    """Read an ISO 8601 timestamp as an aware UTC datetime.

    Accepts ``Z`` or numeric offsets, a space instead of ``T``, any number of fractional digits;
    a timestamp without a zone is read as UTC (as GCN, LVK and VOEvents mean it).

    Args:
        value: The string from the message (a datetime is passed through, made aware).
        field: Field name for the error message.

    Returns:
        The time in UTC.

    Raises:
        AlertParseError: ``invalid-time`` when the value is missing, not a string, unparseable or
            outside the years 1960-2200.
    """
    if isinstance(value, datetime):
        parsed = value
    else:
        if not isinstance(value, str) or not value.strip():
            raise AlertParseError("invalid-time", detail=f"{field}: expected an ISO 8601 string")
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            parsed = _parse_time_fallback(text, field)
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if not _MIN_YEAR <= parsed.year <= _MAX_YEAR:
        raise AlertParseError("invalid-time", detail=f"{field}: {value!r} is out of range")
    return parsed


def _parse_time_fallback(text: str, field: str) -> datetime:
    # fromisoformat refuses more than 6 fractional digits only in unusual spellings; trim them.
    head, dot, tail = text.partition(".")
    if dot:
        digits = "".join(ch for ch in tail if ch.isdigit())
        zone = tail[len(digits) :]
        try:
            return datetime.fromisoformat(f"{head}.{digits[:6].ljust(6, '0')}{zone}")
        except ValueError:
            pass
    raise AlertParseError("invalid-time", detail=f"{field}: {text[:60]!r} is not ISO 8601")


def as_float(value: Any, *, field: str, required: bool = False) -> float | None:
    """Read a finite number (ints, floats and numeric strings).

    Raises:
        AlertParseError: ``invalid-number`` for a non-numeric or non-finite value, or a missing one
            when ``required``.
    """
    if value is None or value == "":
        if required:
            raise AlertParseError("invalid-number", detail=f"{field}: missing")
        return None
    if isinstance(value, bool):
        raise AlertParseError("invalid-number", detail=f"{field}: expected a number, got a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AlertParseError(
            "invalid-number", detail=f"{field}: {str(value)[:40]!r} is not a number"
        ) from None
    if not math.isfinite(number):
        raise AlertParseError("invalid-number", detail=f"{field}: {value!r} is not finite")
    return number


def as_bool(value: Any, *, field: str) -> bool | None:
    """Read a boolean written as a JSON boolean, 0/1, or ``true``/``false``/``yes``/``no``.

    Raises:
        AlertParseError: ``invalid-boolean`` for anything else.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"true", "t", "yes", "y", "1"}:
            return True
        if text in {"false", "f", "no", "n", "0"}:
            return False
    raise AlertParseError("invalid-boolean", detail=f"{field}: {str(value)[:40]!r}")


def as_probabilities(value: Any, *, field: str) -> dict[str, float]:
    """Read a mapping of names to probabilities (classification, properties).

    Non-numeric entries are an error; an absent value is an empty mapping.

    Raises:
        AlertParseError: ``invalid-number`` or ``invalid-probability`` for a bad entry.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise AlertParseError("invalid-probability", detail=f"{field}: expected a mapping")
    result: dict[str, float] = {}
    for key, raw in value.items():
        number = as_float(raw, field=f"{field}.{key}", required=True)
        assert number is not None
        if not -1e-9 <= number <= 1 + 1e-9:
            raise AlertParseError(
                "invalid-probability", detail=f"{field}.{key}: {number} is not in [0, 1]"
            )
        result[str(key)] = number
    return result


def error_region(value: Any, *, containment: Any = None, field: str) -> ErrorRegion | None:
    """Read a GCN ``ra_dec_error``: a radius, ``[radius]``, ``[a, b]`` or ``[a, b, pa]`` in degrees.

    ``[a, b, pa]`` is an ellipse (semi-major, semi-minor, position angle). ``[a, b]`` gives no
    orientation, so it becomes the enclosing circle of radius ``max(a, b)``.

    Raises:
        AlertParseError: ``invalid-position`` for a negative or malformed error.
    """
    if value is None:
        return None
    level = as_float(containment, field=f"{field}.containment") if containment is not None else 0.9
    if level is None or not 0 < level <= 1:
        # Some producers write percentages.
        level = level / 100 if level is not None and 1 < level <= 100 else 0.9
    if isinstance(value, list | tuple):
        numbers = [as_float(v, field=field, required=True) for v in value]
        if not numbers or len(numbers) > 3:
            raise AlertParseError("invalid-position", detail=f"{field}: expected 1 to 3 numbers")
        values = [float(v) for v in numbers if v is not None]
        if any(v < 0 for v in values[:2]):
            raise AlertParseError("invalid-position", detail=f"{field}: negative error")
        if len(values) == 3:
            major, minor = max(values[0], values[1]), min(values[0], values[1])
            return ErrorRegion(
                radius_deg=major,
                semi_minor_deg=minor,
                position_angle_deg=values[2],
                containment=level,
            )
        return ErrorRegion(radius_deg=max(values), containment=level)
    radius = as_float(value, field=field, required=True)
    assert radius is not None
    if radius < 0:
        raise AlertParseError("invalid-position", detail=f"{field}: negative error radius")
    return ErrorRegion(radius_deg=radius, containment=level)


def position(ra: Any, dec: Any, error: ErrorRegion | None, *, field: str) -> SkyPosition:
    """Build a :class:`SkyPosition`, checking the ranges.

    Raises:
        AlertParseError: ``invalid-position`` when RA is outside [0, 360] or Dec outside [-90, 90].
    """
    ra_deg = as_float(ra, field=f"{field}.ra", required=True)
    dec_deg = as_float(dec, field=f"{field}.dec", required=True)
    assert ra_deg is not None and dec_deg is not None
    if not 0 <= ra_deg <= 360 or not -90 <= dec_deg <= 90:
        raise AlertParseError(
            "invalid-position", detail=f"{field}: RA {ra_deg}, Dec {dec_deg} out of range"
        )
    return SkyPosition(ra=ra_deg % 360.0, dec=dec_deg, error=error)


def trusted_position(
    ra: Any, dec: Any, error: ErrorRegion | None, *, field: str, extra: dict[str, Any]
) -> SkyPosition | None:
    """A position, unless its values are a placeholder for "no position"; flagged in ``extra``.

    Issuers fill the position fields of a notice that has none with zeros: RA 0 and Dec 0 (GCN
    Classic before a localisation), RA 0 with an error of 0 (AGILE MCAL), or an error circle
    that covers the sky. Such a position is not returned; ``extra["position_placeholder"]``
    keeps what was given and why it was not trusted. An error of exactly 0 at a real position
    says nothing about the error: the position is kept without one, and
    ``extra["position_note"]`` says so.

    Raises:
        AlertParseError: ``invalid-position`` for values out of range (see :func:`position`).
    """
    sky = position(ra, dec, error, field=field)
    radius = error.radius_deg if error is not None else None
    why = None
    if sky.ra == 0 and sky.dec == 0:
        why = "RA 0, Dec 0"
    elif radius == 0 and (sky.ra == 0 or sky.dec == 0):
        why = f"RA {sky.ra:g}, Dec {sky.dec:g} with an error of 0"
    elif radius is not None and radius >= 180:
        why = f"an error radius of {radius:g} deg covers the sky"
    if why is not None:
        extra["position_placeholder"] = {
            "ra": sky.ra,
            "dec": sky.dec,
            "error_deg": radius,
            "why": f"{why}: a placeholder, not a localisation",
        }
        return None
    if radius == 0:
        extra["position_note"] = "error radius 0 is no error estimate: kept without one"
        return SkyPosition(ra=sky.ra, dec=sky.dec, error=None)
    return sky


def neutrino_summary(extra: Mapping[str, Any]) -> str:
    """``signalness 0.34, energy 127 TeV`` from ``extra`` (for a neutrino alert's title)."""
    parts = []
    if extra.get("signalness") is not None:
        parts.append(f"signalness {extra['signalness']:.2g}")
    if extra.get("energy_tev") is not None:
        parts.append(f"energy {extra['energy_tev']:.3g} TeV")
    return ", ".join(parts)


def angular_distance_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle distance between two positions in degrees (haversine, stable at small angles)."""
    phi1, phi2 = math.radians(dec1), math.radians(dec2)
    dphi = phi2 - phi1
    dlam = math.radians(ra2 - ra1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlam / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))


def decode_skymap(value: Any, *, field: str) -> bytes:
    """Return the FITS bytes of an embedded sky map (raw bytes, or base64 text).

    Only the first bytes are checked (a FITS ``SIMPLE`` card or a gzip header); the map itself is
    read later by :mod:`followup.skymap`, so a large map costs one base64 decode here and nothing
    more.

    Args:
        value: ``bytes`` (Avro form) or base64 ``str`` (JSON form).
        field: Field name for the error message.

    Raises:
        AlertParseError: ``invalid-skymap`` when the value is not base64, is truncated, or does not
            decode to a FITS file (or gzipped FITS).
    """
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    elif isinstance(value, str):
        text = value.strip()
        if not (text.startswith(_B64_FITS_PREFIX) or text.startswith(_B64_GZIP_PREFIX)):
            raise AlertParseError(
                "invalid-skymap", detail=f"{field}: base64 text does not start a FITS file"
            )
        try:
            data = binascii.a2b_base64(text, strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            raise AlertParseError("invalid-skymap", detail=f"{field}: bad base64 ({exc})") from None
    else:
        raise AlertParseError("invalid-skymap", detail=f"{field}: expected bytes or base64 text")
    if data.startswith(FITS_SIGNATURE):
        if len(data) % 2880:
            raise AlertParseError(
                "invalid-skymap",
                detail=f"{field}: {len(data)} bytes is not a whole number of FITS blocks",
            )
        return data
    if data.startswith(GZIP_SIGNATURE):
        return data
    raise AlertParseError("invalid-skymap", detail=f"{field}: not a FITS file")


def fits_header_values(
    data: bytes, keys: Iterable[str], *, max_blocks: int = 40
) -> dict[str, str | float | bool]:
    """Read a few header keywords of an uncompressed FITS file without parsing the whole file.

    Scans the primary header and the headers that follow it (data units are skipped by their
    declared sizes, see :func:`followup.bounded.fits_hdus`), stopping after ``max_blocks``
    2880-byte blocks of headers. The first occurrence of each key wins. Used to read
    ``DISTMEAN``/``DISTSTD`` and the map's ``ORDERING`` at ingest without loading the map.

    Args:
        data: The FITS bytes.
        keys: Header keywords to look for (upper case).
        max_blocks: Header blocks to read at most.

    Returns:
        The keywords found, as float, bool or str.
    """
    wanted = {k.upper() for k in keys}
    found: dict[str, str | float | bool] = {}
    for hdu in fits_hdus(data, max_blocks=max_blocks):
        for key in wanted - found.keys():
            if key in hdu.cards:
                found[key] = hdu.cards[key]
        if not wanted - found.keys():
            break
    return found


def skymap_summary(data: bytes) -> dict[str, Any]:
    """Describe an embedded sky map cheaply: size, compression and a few header values.

    Returns:
        ``{"bytes": int, "compressed": bool, "header": {...}}`` with ORDERING, MOC, MOCORDER,
        NSIDE, DISTMEAN, DISTSTD, OBJECT, DATE-OBS, CREATOR, INSTRUME when present.
    """
    header = fits_header_values(
        data,
        (
            "ORDERING",
            "MOC",
            "MOCORDER",
            "NSIDE",
            "DISTMEAN",
            "DISTSTD",
            "OBJECT",
            "DATE-OBS",
            "CREATOR",
            "INSTRUME",
        ),
    )
    return {"bytes": len(data), "compressed": data.startswith(GZIP_SIGNATURE), "header": header}
