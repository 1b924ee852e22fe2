"""Stand-ins for the LCO Observation Portal and Science Archive that speak the real HTTP API.

Two FastAPI apps share one :class:`LcoSandboxState`: the portal (``/api/...``) validates request
groups with the portal's own messages, stores them and moves them through the portal's state
machine on a simulated clock; the archive (``/frames/...``) lists the frames a completed request
produced and serves them at signed, expiring URLs with HTTP Range. What is *in* a frame is the
injected :data:`sandbox.specs.FrameRenderer`'s business (the synthetic sky); this module decides
which frames exist.

Both apps also answer a control API under ``/sandbox/...`` (not part of LCO's API) to inspect
submissions, move the clock, complete requests and inject faults: 5xx, 429 with Retry-After,
slow answers, "stored but the answer was lost", truncated downloads; and to damage frames as the
archive stores them (``POST /sandbox/damage``: truncated files, headers without a WCS), so that
the damage survives the download's md5 check as a broken file at the real archive would.

Run alone for manual trials: ``python -m sandbox.lco --port 8123`` (portal and archive on one
port; ``followup sandbox`` runs every stand-in).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import io
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from followup.models import LcoState, utcnow
from sandbox.specs import FrameRenderer, FrameSpec

__all__ = [
    "Clock",
    "Fault",
    "FrameDamage",
    "LcoSandboxState",
    "ManualClock",
    "ScaledClock",
    "create_app",
    "create_archive_app",
    "create_portal_app",
    "header_only_renderer",
    "main",
]

# --------------------------------------------------------------------------------------------
# Clocks
# --------------------------------------------------------------------------------------------


class Clock(Protocol):
    """The simulated time the sandbox runs on."""

    def now(self) -> datetime:
        """The current simulated time (aware UTC)."""
        ...

    def advance(self, seconds: float) -> datetime:
        """Jump forward by ``seconds`` and return the new time."""
        ...


class ManualClock:
    """A clock that only moves when told to (tests).

    Args:
        start: The initial time (aware UTC); now by default.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or utcnow()).astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The current simulated time."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        """Move forward by ``seconds`` (must be >= 0)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


class ScaledClock:
    """Real time, optionally sped up, plus any manual jumps (drills and demos).

    Args:
        scale: Simulated seconds per real second (60 makes a 10-minute completion delay last
            10 real seconds).
        start: Simulated time at creation; now by default.
    """

    def __init__(self, scale: float = 1.0, start: datetime | None = None) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = scale
        self._origin = (start or utcnow()).astimezone(UTC)
        self._real_origin = time.monotonic()
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The current simulated time."""
        with self._lock:
            elapsed = (time.monotonic() - self._real_origin) * self.scale + self._offset
        return self._origin + timedelta(seconds=elapsed)

    def advance(self, seconds: float) -> datetime:
        """Jump forward by ``seconds`` (must be >= 0)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        with self._lock:
            self._offset += seconds
        return self.now()


# --------------------------------------------------------------------------------------------
# The portal's configuration database (what /api/instruments/ says), as data
# --------------------------------------------------------------------------------------------

_FILTER_NAMES = {
    "U": "Bessell-U",
    "B": "Bessell-B",
    "V": "Bessell-V",
    "R": "Bessell-R",
    "I": "Bessell-I",
    "up": "SDSS-up",
    "gp": "SDSS-gp",
    "rp": "SDSS-rp",
    "ip": "SDSS-ip",
    "zs": "PanSTARRS-Z",
    "Y": "PanSTARRS-Y",
    "w": "PanSTARRS-w",
    "OIII": "OIII",
    "SII": "SII",
    "H-Alpha": "H-Alpha",
    "Astrodon-Exo": "Astrodon-Exo",
    "opaque": "Opaque",
    "CN": "CN",
    "400um-Pinhole": "400um Pinhole",
    "150um-Pinhole": "150um Pinhole",
}

_IMAGER_TYPES = {
    "EXPOSE": True,
    "REPEAT_EXPOSE": True,
    "STANDARD": True,
    "AUTO_FOCUS": False,
    "BIAS": False,
    "DARK": False,
    "SKY_FLAT": False,
    "SCRIPT": False,
    "ENGINEERING": False,
}


@dataclass(frozen=True)
class _InstrumentType:
    code: str
    telescope_class: str
    name: str
    kind: str  # IMAGE or SPECTRA
    optical_elements: Mapping[
        str, tuple[tuple[str, bool], ...]
    ]  # plural kind -> (code, schedulable)
    readout_modes: Mapping[str, float]  # code -> overhead per exposure, seconds
    default_readout: str
    configuration_types: Mapping[str, bool]  # code -> schedulable
    default_configuration_type: str
    guiding_modes: tuple[str, ...] = ("ON", "OFF")
    default_guiding: str = "ON"
    acquisition_modes: tuple[str, ...] = ("OFF",)
    default_acquisition: str = "OFF"
    rotator_modes: tuple[str, ...] = ()
    default_rotator: str = ""
    exposure_modes: tuple[str, ...] = ()
    default_exposure_mode: str = ""
    acceptability_threshold: float = 90.0
    pixel_scale: float = 0.389
    pixels: tuple[int, int] = (4096, 4096)


def _filters(*codes: str, unschedulable: Iterable[str] = ()) -> tuple[tuple[str, bool], ...]:
    off = set(unschedulable)
    return tuple((code, code not in off) for code in codes)


_CONFIGDB: dict[str, _InstrumentType] = {
    item.code: item
    for item in (
        _InstrumentType(
            code="0M4-SCICAM-QHY600",
            telescope_class="0m4",
            name="0.4 meter QHY600",
            kind="IMAGE",
            optical_elements={
                "filters": _filters(
                    "B",
                    "V",
                    "up",
                    "gp",
                    "rp",
                    "ip",
                    "zs",
                    "w",
                    "OIII",
                    "SII",
                    "H-Alpha",
                    "Astrodon-Exo",
                    "opaque",
                    unschedulable=("opaque",),
                )
            },
            readout_modes={"full_frame": 6.0, "central30x30": 1.0},
            default_readout="full_frame",
            configuration_types=_IMAGER_TYPES,
            default_configuration_type="EXPOSE",
            pixel_scale=0.731,
            pixels=(9576, 6388),
        ),
        _InstrumentType(
            code="1M0-SCICAM-SINISTRO",
            telescope_class="1m0",
            name="1.0 meter Sinistro",
            kind="IMAGE",
            optical_elements={
                "filters": _filters(
                    "U",
                    "B",
                    "V",
                    "R",
                    "I",
                    "up",
                    "gp",
                    "rp",
                    "ip",
                    "zs",
                    "Y",
                    "w",
                    "CN",
                    "400um-Pinhole",
                    "150um-Pinhole",
                    unschedulable=("CN", "400um-Pinhole", "150um-Pinhole"),
                )
            },
            readout_modes={"full_frame": 28.0, "central_2k_2x2": 12.0},
            default_readout="full_frame",
            configuration_types=_IMAGER_TYPES,
            default_configuration_type="EXPOSE",
        ),
        _InstrumentType(
            code="2M0-SCICAM-MUSCAT",
            telescope_class="2m0",
            name="2.0 meter MuSCAT",
            kind="IMAGE",
            optical_elements={
                f"narrowband_{channel}_positions": _filters("in", "out")
                for channel in ("g", "r", "i", "z")
            },
            readout_modes={"MUSCAT_SLOW": 10.0, "MUSCAT_FAST": 5.0},
            default_readout="MUSCAT_SLOW",
            configuration_types=_IMAGER_TYPES,
            default_configuration_type="EXPOSE",
            exposure_modes=("SYNCHRONOUS", "ASYNCHRONOUS"),
            default_exposure_mode="SYNCHRONOUS",
            pixel_scale=0.27,
            pixels=(2048, 2048),
        ),
        _InstrumentType(
            code="2M0-FLOYDS-SCICAM",
            telescope_class="2m0",
            name="2.0 meter FLOYDS",
            kind="SPECTRA",
            optical_elements={
                "slits": _filters("slit_1.2as", "slit_1.6as", "slit_2.0as", "slit_6.0as")
            },
            readout_modes={"default": 25.0},
            default_readout="default",
            configuration_types={
                "SPECTRUM": True,
                "REPEAT_SPECTRUM": True,
                "ARC": True,
                "LAMP_FLAT": True,
                "ENGINEERING": False,
                "SCRIPT": False,
            },
            default_configuration_type="SPECTRUM",
            acquisition_modes=("WCS", "BRIGHTEST"),
            default_acquisition="WCS",
            rotator_modes=("VFLOAT", "SKY"),
            default_rotator="VFLOAT",
            acceptability_threshold=100.0,
            pixel_scale=0.337,
            pixels=(2048, 512),
        ),
    )
}

_CONFIGURATION_TYPES = (
    "EXPOSE",
    "REPEAT_EXPOSE",
    "SKY_FLAT",
    "SKY",
    "STANDARD",
    "ARC",
    "LAMP_FLAT",
    "SPECTRUM",
    "REPEAT_SPECTRUM",
    "AUTO_FOCUS",
    "TRIPLE",
    "NRES_TEST",
    "NRES_SPECTRUM",
    "REPEAT_NRES_SPECTRUM",
    "NRES_EXPOSE",
    "NRES_DARK",
    "NRES_BIAS",
    "ENGINEERING",
    "SCRIPT",
    "BIAS",
    "DARK",
)
_TARGET_TYPES = ("ICRS", "ORBITAL_ELEMENTS", "HOUR_ANGLE", "SATELLITE")
_TELESCOPE_CLASSES = ("0m4", "1m0", "2m0")
_FRONT_PADDING_S = {"0m4": 90.0, "1m0": 120.0, "2m0": 180.0}
_CONFIG_FRONT_PADDING_S = 16.0
_ELEMENT_CHANGE_S = 2.0
_ACQUIRE_OVERHEAD_S = 90.0
_PROPOSAL_TIME_OVERUSE_ALLOWANCE = 1.1

# Sites, enclosures and telescopes by class: (site, enclosure, telescope, basename code,
# instrument id, longitude in degrees east). MuSCAT ids name the g/r/i/z channel cameras.
_TELESCOPES: dict[str, tuple[tuple[str, str, str, str, str, float], ...]] = {
    "1m0": (
        ("cpt", "doma", "1m0a", "1m010", "fa14", 20.81),
        ("lsc", "domb", "1m0a", "1m004", "fa15", -70.80),
        ("coj", "doma", "1m0a", "1m011", "fa12", 149.07),
        ("elp", "doma", "1m0a", "1m008", "fa05", -104.02),
        ("tfn", "doma", "1m0a", "1m001", "fa20", -16.51),
    ),
    "0m4": (
        ("ogg", "clma", "0m4b", "0m414", "sq34", -156.26),
        ("coj", "clma", "0m4a", "0m403", "sq35", 149.07),
        ("tfn", "aqwa", "0m4a", "0m410", "sq31", -16.51),
    ),
    "2m0": (
        ("ogg", "clma", "2m0a", "2m002", "ep02,ep03,ep04,ep05", -156.26),
        ("coj", "clma", "2m0a", "2m001", "ep06,ep07,ep08,ep09", 149.07),
    ),
}
_SITE_CODES = ("coj", "cpt", "tfn", "lsc", "elp", "ogg")
_SCIENCE_TYPES = ("EXPOSE", "REPEAT_EXPOSE", "STANDARD")
_MUSCAT_CHANNELS = (("g", "gp"), ("r", "rp"), ("i", "ip"), ("z", "zs"))

# --------------------------------------------------------------------------------------------
# DRF-style validation with the portal's messages
# --------------------------------------------------------------------------------------------

_REQUIRED = "This field is required."
_NULL = "This field may not be null."
_NUMBER = "A valid number is required."
_INTEGER = "A valid integer is required."
_DATETIME = (
    "Datetime has wrong format. Use one of these formats instead: "
    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
)


class _Invalid(Exception):
    """A field-level error: the DRF message list (or nested dict) for one field."""

    def __init__(self, detail: Any) -> None:
        super().__init__(str(detail))
        self.detail = detail


def _choice(value: Any, choices: Iterable[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _Invalid([f'"{value}" is not a valid choice.'])
    return value


def _float(value: Any, *, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or value is None or value == "":
        raise _Invalid([_NUMBER])
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _Invalid([_NUMBER]) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise _Invalid([_NUMBER])
    if low is not None and number < low:
        raise _Invalid([f"Ensure this value is greater than or equal to {low}."])
    if high is not None and number > high:
        raise _Invalid([f"Ensure this value is less than or equal to {high}."])
    return number


def _int(value: Any, *, low: int | None = None) -> int:
    if isinstance(value, bool) or value is None:
        raise _Invalid([_INTEGER])
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _Invalid([_INTEGER]) from None
    if number != int(number):
        raise _Invalid([_INTEGER])
    if low is not None and number < low:
        raise _Invalid([f"Ensure this value is greater than or equal to {low}."])
    return int(number)


def _str(value: Any, *, max_length: int | None = None, blank: str | None = None) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise _Invalid(["Not a valid string."])
    text = str(value).strip()
    if not text and blank is not None:
        raise _Invalid([blank])
    if max_length is not None and len(text) > max_length:
        raise _Invalid([f"Ensure this field has no more than {max_length} characters."])
    return text


def parse_datetime(value: Any) -> datetime:
    """Read an ISO 8601 time the way the portal does: naive times are UTC.

    Raises:
        ValueError: Not a readable time.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
    else:
        raise ValueError(f"not a time: {value!r}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _datetime(value: Any) -> datetime:
    try:
        return parse_datetime(value)
    except (TypeError, ValueError):
        raise _Invalid([_DATETIME]) from None


def _drf_time(value: datetime) -> str:
    """DRF's datetime format: ISO 8601 in UTC with ``Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _semester(when: datetime) -> str:
    """LCO semester code: A is February to July, B is August to January."""
    if when.month >= 8:
        return f"{when.year}B"
    if when.month == 1:
        return f"{when.year - 1}B"
    return f"{when.year}A"


class _Fields:
    """Collects DRF field errors for one object while reading its fields."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw if isinstance(raw, dict) else {}
        self.errors: dict[str, Any] = {}
        self.clean: dict[str, Any] = {}

    def take(
        self,
        key: str,
        reader: Callable[[Any], Any],
        *,
        required: bool = True,
        default: Any = None,
        null: str | None = None,
        allow_null: bool = False,
    ) -> Any:
        if key not in self.raw:
            if required:
                self.errors[key] = [_REQUIRED]
                return None
            if default is not None or allow_null:
                self.clean[key] = copy.deepcopy(default)
            return self.clean.get(key)
        value = self.raw[key]
        if value is None:
            if allow_null:
                self.clean[key] = None
                return None
            self.errors[key] = [null or _NULL]
            return None
        try:
            self.clean[key] = reader(value)
        except _Invalid as exc:
            self.errors[key] = exc.detail
            return None
        return self.clean[key]

    def many(
        self, key: str, reader: Callable[[Any], tuple[dict[str, Any], Any]], *, empty: str
    ) -> list[Any] | None:
        """A nested list: per-item errors in position, ``{}`` for valid items."""
        if key not in self.raw:
            self.errors[key] = [_REQUIRED]
            return None
        value = self.raw[key]
        if value is None:
            self.errors[key] = [_NULL]
            return None
        if not isinstance(value, list):
            self.errors[key] = {
                "non_field_errors": [
                    f'Expected a list of items but got type "{type(value).__name__}".'
                ]
            }
            return None
        results = [reader(item) for item in value]
        if any(errors for errors, _ in results):
            self.errors[key] = [errors for errors, _ in results]
            return None
        if not value:
            self.errors[key] = [empty]
            return None
        self.clean[key] = [clean for _, clean in results]
        return self.clean[key]

    def nested(self, key: str, reader: Callable[[Any], tuple[dict[str, Any], Any]]) -> Any:
        if key not in self.raw:
            self.errors[key] = [_REQUIRED]
            return None
        value = self.raw[key]
        if value is None:
            self.errors[key] = [_NULL]
            return None
        errors, clean = reader(value)
        if errors:
            self.errors[key] = errors
            return None
        self.clean[key] = clean
        return clean


def _not_a_dict(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, dict):
        return None
    return {
        "non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(raw).__name__}."]
    }


def _read_location(raw: Any) -> tuple[dict[str, Any], Any]:
    if (bad := _not_a_dict(raw)) is not None:
        return bad, None
    fields = _Fields(raw)
    fields.take("telescope_class", lambda v: _choice(v, _TELESCOPE_CLASSES))
    fields.take("site", lambda v: _choice(v, _SITE_CODES), required=False)
    fields.take("enclosure", _str, required=False)
    fields.take("telescope", _str, required=False)
    if fields.errors:
        return fields.errors, None
    clean = fields.clean
    if "enclosure" in clean and "site" not in clean:
        return {"non_field_errors": ["Must specify a site with an enclosure."]}, None
    if "telescope" in clean and "enclosure" not in clean:
        return {"non_field_errors": ["Must specify an enclosure with a telescope."]}, None
    return {}, clean


def _read_window(raw: Any, now: datetime) -> tuple[dict[str, Any], Any]:
    if (bad := _not_a_dict(raw)) is not None:
        return bad, None
    fields = _Fields(raw)
    fields.take("start", _datetime, required=False)

    def end_reader(value: Any) -> datetime:
        end = _datetime(value)
        if end < now:
            raise _Invalid(["Window end time must be in the future"])
        return end

    fields.take("end", end_reader)
    if fields.errors:
        return fields.errors, None
    clean = fields.clean
    clean.setdefault("start", now)
    if clean["end"] <= clean["start"]:
        message = (
            f"Window end '{clean['end']}' cannot be earlier than window start '{clean['start']}'"
        )
        return {"non_field_errors": [message]}, None
    return {}, clean


def _read_target(raw: Any) -> tuple[dict[str, Any], Any]:
    if (bad := _not_a_dict(raw)) is not None:
        return bad, None
    fields = _Fields(raw)
    fields.take("name", lambda v: _str(v, max_length=50, blank="This field may not be blank."))
    kind = fields.take("type", lambda v: _choice(v, _TARGET_TYPES))
    if kind == "ICRS":
        fields.take("ra", lambda v: _float(v, low=0.0, high=360.0))
        fields.take("dec", lambda v: _float(v, low=-90.0, high=90.0))
        for key, default in (
            ("proper_motion_ra", 0.0),
            ("proper_motion_dec", 0.0),
            ("epoch", 2000.0),
            ("parallax", 0.0),
        ):
            fields.take(key, lambda v: _float(v, high=20000.0), required=False, default=default)
    elif kind is not None:
        # Non-sidereal and other target types are stored as sent (numbers kept as numbers).
        for key, value in fields.raw.items():
            if key not in ("name", "type", "extra_params") and isinstance(value, int | float):
                fields.clean[key] = float(value)
            elif key == "scheme" and isinstance(value, str):
                fields.clean[key] = value
    fields.take("extra_params", _dict, required=False, default={})
    return fields.errors, (None if fields.errors else fields.clean)


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid([f'Expected a dictionary of items but got type "{type(value).__name__}".'])
    return dict(value)


def _read_constraints(raw: Any) -> tuple[dict[str, Any], Any]:
    if (bad := _not_a_dict(raw)) is not None:
        return bad, None
    fields = _Fields(raw)
    fields.take("max_airmass", lambda v: _float(v, low=1.0, high=25.0), required=False, default=1.6)
    fields.take(
        "min_lunar_distance",
        lambda v: _float(v, low=0.0, high=180.0),
        required=False,
        default=30.0,
    )
    fields.take(
        "max_lunar_phase", lambda v: _float(v, low=0.0, high=1.0), required=False, default=1.0
    )
    fields.take("max_seeing", lambda v: _float(v, low=0.0), required=False, allow_null=True)
    fields.take("min_transparency", lambda v: _float(v, low=0.0), required=False, allow_null=True)
    fields.take("extra_params", _dict, required=False, default={})
    return fields.errors, (None if fields.errors else fields.clean)


def _read_instrument_config(raw: Any) -> tuple[dict[str, Any], Any]:
    if (bad := _not_a_dict(raw)) is not None:
        return bad, None
    fields = _Fields(raw)
    fields.take("exposure_time", lambda v: _float(v, low=0.0))
    fields.take("exposure_count", lambda v: _int(v, low=1))
    fields.take("mode", _str, required=False)
    fields.take("rotator_mode", _str, required=False)

    def elements(value: Any) -> dict[str, str]:
        mapping = _dict(value)
        return {str(key): str(item) for key, item in mapping.items()}

    fields.take("optical_elements", elements, required=False, default={})
    fields.take("extra_params", _dict, required=False, default={})
    fields.take(
        "rois",
        lambda v: list(v) if isinstance(v, list) else _dict(v),
        required=False,
        default=[],
    )
    return fields.errors, (None if fields.errors else fields.clean)


def _read_mode_config(raw: Any) -> tuple[dict[str, Any], Any]:
    if (bad := _not_a_dict(raw)) is not None:
        return bad, None
    fields = _Fields(raw)
    fields.take("mode", _str, required=False)
    fields.take("optional", lambda v: bool(v), required=False)
    fields.take("exposure_time", lambda v: _float(v, low=0.0), required=False, allow_null=True)
    fields.take("optical_elements", _dict, required=False, default={})
    fields.take("extra_params", _dict, required=False, default={})
    return fields.errors, (None if fields.errors else fields.clean)


def _mode(
    kind: str, value: str | None, allowed: tuple[str, ...], default: str, instrument: str
) -> str:
    """The portal's ModeValidationHelper: a given mode must exist; a missing one gets the default."""
    if not allowed:
        return value or ""
    if not value:
        return default
    for mode in allowed:
        if mode.lower() == value.lower():
            return mode
    raise _Invalid(
        f"{kind.capitalize()} mode {value} is not available for instrument type {instrument}"
    )


def _read_configuration(raw: Any) -> tuple[dict[str, Any], Any]:
    if (bad := _not_a_dict(raw)) is not None:
        return bad, None
    fields = _Fields(raw)
    fields.take(
        "type", lambda v: _choice(str(v).upper() if isinstance(v, str) else v, _CONFIGURATION_TYPES)
    )

    def instrument_reader(value: Any) -> str:
        code = _str(value).upper()
        if code not in _CONFIGDB:
            raise _Invalid(
                [
                    f"Invalid instrument type {value}. Valid instruments may include: "
                    + ", ".join(_CONFIGDB)
                ]
            )
        return code

    fields.take("instrument_type", instrument_reader)
    fields.nested("target", _read_target)
    fields.nested("constraints", _read_constraints)
    fields.many(
        "instrument_configs",
        _read_instrument_config,
        empty="A configuration must have at least one instrument configuration",
    )
    fields.nested("acquisition_config", _read_mode_config)
    fields.nested("guiding_config", _read_mode_config)
    fields.take("repeat_duration", lambda v: _float(v, low=0.0), required=False, allow_null=True)
    fields.take("extra_params", _dict, required=False, default={})
    if fields.errors:
        return fields.errors, None
    try:
        return {}, _check_configuration(fields.clean)
    except _Invalid as exc:
        return {"non_field_errors": [exc.detail]}, None


def _check_configuration(data: dict[str, Any]) -> dict[str, Any]:
    """ConfigurationSerializer.validate: modes, configuration type, optical elements, repeats."""
    instrument = _CONFIGDB[data["instrument_type"]]
    code = instrument.code
    guiding = data["guiding_config"]
    guiding["mode"] = _mode(
        "guiding", guiding.get("mode"), instrument.guiding_modes, instrument.default_guiding, code
    )
    guiding.setdefault("optional", True)
    guiding.setdefault("exposure_time", None)
    kind = data["type"]
    if kind not in instrument.configuration_types:
        raise _Invalid(f"configuration type {kind} is not valid for instrument type {code}")
    if not instrument.configuration_types[kind]:
        raise _Invalid(f"configuration type {kind} is not schedulable for instrument type {code}")
    acquisition = data["acquisition_config"]
    acquisition["mode"] = _mode(
        "acquisition",
        acquisition.get("mode"),
        instrument.acquisition_modes,
        instrument.default_acquisition,
        code,
    )
    acquisition.setdefault("exposure_time", None)
    acquisition.pop("optional", None)
    acquisition.pop("optical_elements", None)
    for config in data["instrument_configs"]:
        config["mode"] = _mode(
            "readout",
            config.get("mode"),
            tuple(instrument.readout_modes),
            instrument.default_readout,
            code,
        )
        if instrument.rotator_modes:
            config["rotator_mode"] = _mode(
                "rotator",
                config.get("rotator_mode"),
                instrument.rotator_modes,
                instrument.default_rotator,
                code,
            )
        else:
            config["rotator_mode"] = ""
        available = instrument.optical_elements
        for element_type, value in list(config["optical_elements"].items()):
            plural = f"{element_type}s"
            if plural not in available:
                raise _Invalid(
                    f"optical_element of type {element_type} is not available on {code} instruments"
                )
            codes = {name.lower(): name for name, schedulable in available[plural] if schedulable}
            if value.lower() not in codes:
                raise _Invalid(f"optical element {value} of type {element_type} is not available")
            config["optical_elements"][element_type] = codes[value.lower()]
        for plural in available:
            singular = plural[:-1]
            if singular not in config["optical_elements"]:
                raise _Invalid(
                    f"Must set optical element of type {singular} for instrument type {code}"
                )
        if instrument.exposure_modes:
            extra = config["extra_params"]
            extra["exposure_mode"] = _mode(
                "exposure",
                extra.get("exposure_mode"),
                instrument.exposure_modes,
                instrument.default_exposure_mode,
                code,
            )
    if "REPEAT" in kind:
        if data.get("repeat_duration") is None:
            raise _Invalid(
                f"Must specify a configuration repeat_duration for {kind} type configurations."
            )
    elif data.get("repeat_duration") is not None:
        raise _Invalid("You may only specify a repeat_duration for REPEAT_* type configurations.")
    return data


def _read_request(raw: Any, now: datetime) -> tuple[dict[str, Any], Any]:
    if (bad := _not_a_dict(raw)) is not None:
        return bad, None
    fields = _Fields(raw)
    fields.nested("location", _read_location)
    fields.many(
        "configurations", _read_configuration, empty="You must specify at least 1 configuration"
    )
    windows = fields.many(
        "windows", lambda item: _read_window(item, now), empty="You must specify at least 1 window"
    )
    if windows and len({_semester(window["start"]) for window in windows}) > 1:
        fields.errors["windows"] = ["The observation windows must all be in the same semester"]
    fields.take(
        "acceptability_threshold",
        lambda v: _float(v, low=0.0, high=100.0),
        required=False,
    )
    fields.take("configuration_repeats", lambda v: _int(v, low=1), required=False, default=1)
    fields.take(
        "optimization_type",
        lambda v: _choice(v, ("TIME", "AIRMASS")),
        required=False,
        default="TIME",
    )
    fields.take("observation_note", lambda v: _str(v, max_length=255), required=False, default="")
    fields.take("extra_params", _dict, required=False, default={})
    if raw.get("cadence"):
        fields.errors["cadence"] = [
            "Please use the cadence endpoint to expand your cadence request"
        ]
    if fields.errors:
        return fields.errors, None
    data = fields.clean
    telescope_class = data["location"]["telescope_class"]
    valid = [code for code, item in _CONFIGDB.items() if item.telescope_class == telescope_class]
    for configuration in data["configurations"]:
        if configuration["instrument_type"] not in valid:
            location = data["location"]
            message = (
                f"Invalid instrument type '{configuration['instrument_type']}' at "
                f"site={location.get('site', 'Any')}, enc={location.get('enclosure', 'Any')}, "
                f"tel={location.get('telescope', 'Any')}. \n"
                "Valid instruments include: " + "".join(f"{code}, " for code in valid) + "."
            )
            return {"non_field_errors": [message]}, None
    if "acceptability_threshold" not in data:
        data["acceptability_threshold"] = max(
            _CONFIGDB[c["instrument_type"]].acceptability_threshold for c in data["configurations"]
        )
    return {}, data


def _durations(request: dict[str, Any]) -> dict[str, Any]:
    """Per-request duration breakdown in the shape of the validate endpoint."""
    configurations = []
    total = 0.0
    for configuration in request["configurations"]:
        instrument = _CONFIGDB[configuration["instrument_type"]]
        ic_durations = []
        for config in configuration["instrument_configs"]:
            readout = instrument.readout_modes.get(config["mode"], 0.0)
            duration = (
                config["exposure_count"] * (config["exposure_time"] + readout) + _ELEMENT_CHANGE_S
            )
            ic_durations.append({"duration": duration})
        duration = sum(item["duration"] for item in ic_durations) + _CONFIG_FRONT_PADDING_S
        if configuration["acquisition_config"].get("mode", "OFF") != "OFF":
            duration += _ACQUIRE_OVERHEAD_S
        if configuration.get("repeat_duration"):
            duration = max(duration, float(configuration["repeat_duration"]))
        configurations.append({"duration": duration, "instrument_configs": ic_durations})
        total += duration
    total = total * request.get("configuration_repeats", 1) + _FRONT_PADDING_S.get(
        request["location"]["telescope_class"], 120.0
    )
    largest = max(
        (window["end"] - window["start"]).total_seconds() for window in request["windows"]
    )
    return {
        "duration": round(total),
        "configurations": configurations,
        "largest_interval": largest,
    }


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


class Fault(BaseModel):
    """A failure the sandbox injects into matching calls (``POST /sandbox/faults``).

    Attributes:
        endpoint: Regular expression searched in ``"METHOD /path"``, e.g.
            ``"POST /api/requestgroups/$"`` or ``"GET /download/"``.
        status: HTTP status to answer instead (429, 500, 502, 503, 504...); None to pass the
            real answer through (after ``delay_s``, or cut by ``truncate_bytes``).
        count: How many matching calls to affect; None until the fault is deleted.
        retry_after: Seconds for the ``Retry-After`` header (429/503).
        delay_s: Wait this long before answering (a hang, when longer than the client's timeout).
        truncate_bytes: Send only this many body bytes of the real answer, then drop the
            connection (a broken download).
        after_store: Run the real endpoint first (the group is stored), then answer with
            ``status`` (or with the real answer after ``delay_s``): the "stored but the answer
            was lost" case.
        id: Assigned by the sandbox.
        hits: Calls affected so far.
    """

    model_config = ConfigDict(extra="forbid")

    endpoint: str = ".*"
    status: int | None = Field(default=None, ge=100, le=599)
    count: int | None = Field(default=1, ge=1)
    retry_after: float | None = Field(default=None, ge=0)
    delay_s: float = Field(default=0.0, ge=0)
    truncate_bytes: int | None = Field(default=None, ge=0)
    after_store: bool = False
    id: int = 0
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        """True when this fault applies to a call."""
        return re.search(self.endpoint, f"{method.upper()} {path}") is not None


class FrameDamage(BaseModel):
    """Damage done to the next matching frames the archive stores (``POST /sandbox/damage``).

    Attributes:
        kind: ``truncated`` (the file is cut in half) or ``no_wcs`` (every WCS keyword removed
            from every header).
        group: Only frames of request groups whose name contains this ("" for any).
        filter: Only frames in this filter (None for any).
        count: How many frames to damage.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["truncated", "no_wcs"]
    group: str = ""
    filter: str | None = None
    count: int = Field(default=1, ge=1)

    def matches(self, spec: FrameSpec) -> bool:
        """True when a frame is one this damage is for."""
        return (
            spec.configuration_type == "EXPOSE"
            and self.group in (spec.group_name or "")
            and (self.filter is None or spec.filter == self.filter)
        )


_WCS_KEY = re.compile(
    r"^(WCSAXES|CTYPE\d|CUNIT\d|CRVAL\d|CRPIX\d|CDELT\d|CROTA\d|CD\d_\d|PC\d_\d|PV\d_\d+"
    r"|LONPOLE|LATPOLE|RADESYS|EQUINOX|A_\w+|B_\w+|AP_\w+|BP_\w+)$"
)


def damage_frame(data: bytes, kind: str) -> bytes:
    """A frame's bytes with the damage ``kind`` done (see :class:`FrameDamage`)."""
    if kind == "truncated":
        return data[: len(data) // 2]
    from astropy.io import fits

    with fits.open(io.BytesIO(data)) as hdus:
        for hdu in hdus:
            for key in [k for k in hdu.header if _WCS_KEY.match(k)]:
                del hdu.header[key]
        out = io.BytesIO()
        hdus.writeto(out)
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------


@dataclass
class _SimRequest:
    request_id: int
    group_id: int
    window_start: datetime
    window_end: datetime
    complete_at: datetime
    duration_s: float
    outcome: LcoState
    block_id: int
    site: tuple[str, str, str, str, str, float] | None = None
    frames_made: bool = False


@dataclass
class _FrameEntry:
    frame_id: int
    spec: FrameSpec
    observation_id: int | None
    version_id: int
    version_key: str
    created: datetime
    public_date: datetime
    observation_day: date
    related: list[int] = field(default_factory=list)


class LcoSandboxState:
    """Everything the portal and archive stand-ins know, shared between them (thread-safe).

    Args:
        clock: The simulated clock (:class:`ManualClock` in tests, :class:`ScaledClock` for
            drills); a real-time :class:`ScaledClock` by default.
        renderer: Makes the FITS bytes of a frame (the synthetic sky); None serves
            :func:`header_only_renderer` files (correct headers, no sky).
        token: The one API token the portal and archive accept.
        username: The user the token belongs to.
        proposals: Proposal ids the user belongs to (the first is the default).
        time_allocation_hours: Hours of each observation type per proposal and semester
            (``NORMAL``, ``RAPID_RESPONSE``, ``TIME_CRITICAL``); 0 gives the portal's
            "does not have any ... time left" refusal.
        completion_delay_s: Simulated seconds from the later of submission and window start
            until a request completes.
        reduction_delay_s: Simulated seconds from completion until the BANZAI (level 91)
            frames reach the archive; raw frames and calibrations are there at completion.
        cache_dir: Where rendered frames are kept (each rendered once); None keeps them in memory.
        url_secret: Key signing download URLs; random by default.
        url_lifetime_s: Lifetime of a signed download URL (the archive's is 48 h).
        page_size: Default ``limit`` of portal listings (the portal's PAGE_SIZE is 10).
        first_id: First request group / request id. A sandbox started afresh against a ledger
            that outlives it should start above every id it handed out before (the real
            portal's ids are unique for ever).
        first_frame_id: First archive frame id (same reasoning); version ids start
            20,000,000 above it, so that a download cache keyed by basename and version never
            mistakes a restarted sandbox's frame for an earlier one of the same basename.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        renderer: FrameRenderer | None = None,
        *,
        token: str = "sandbox-token",
        username: str = "sandbox",
        proposals: Iterable[str] = ("SANDBOX-001",),
        time_allocation_hours: Mapping[str, float] | None = None,
        completion_delay_s: float = 600.0,
        reduction_delay_s: float = 0.0,
        cache_dir: str | Path | None = None,
        url_secret: bytes | None = None,
        url_lifetime_s: float = 172800.0,
        page_size: int = 10,
        first_id: int = 1000,
        first_frame_id: int = 50_000_000,
    ) -> None:
        self.clock: Clock = clock or ScaledClock()
        self.first_id = first_id
        self.first_frame_id = first_frame_id
        self.renderer = renderer
        self.token = token
        self.username = username
        self.proposals = list(proposals)
        if not self.proposals:
            raise ValueError("the sandbox needs at least one proposal")
        self.time_allocation_hours = {
            "NORMAL": 100.0,
            "RAPID_RESPONSE": 10.0,
            "TIME_CRITICAL": 10.0,
            **(time_allocation_hours or {}),
        }
        self.completion_delay_s = completion_delay_s
        self.reduction_delay_s = reduction_delay_s
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.url_secret = url_secret or secrets.token_bytes(32)
        self.url_lifetime_s = url_lifetime_s
        self.page_size = page_size
        self._lock = threading.RLock()
        self._render_lock = threading.Lock()
        self.reset()

    def __repr__(self) -> str:
        return f"LcoSandboxState(groups={len(self._groups)}, frames={len(self._frames)})"

    def reset(self) -> None:
        """Forget every group, request, frame, fault and counter (configuration stays)."""
        with self._lock:
            self._groups: dict[int, dict[str, Any]] = {}
            self._received_at: dict[int, float] = {}
            self._requests: dict[int, dict[str, Any]] = {}
            self._sim: dict[int, _SimRequest] = {}
            self._blocks: dict[int, dict[str, Any]] = {}
            self._frames: dict[int, _FrameEntry] = {}
            self._calibrations: dict[tuple[str, date, str, str | None], int] = {}
            self._frame_numbers: dict[tuple[str, date], itertools.count[int]] = {}
            self._rendered: dict[int, tuple[bytes | None, str, str, int]] = {}
            self._time_used: dict[tuple[str, str, str], float] = {}
            self._faults: list[Fault] = []
            self._damage: list[FrameDamage] = []
            self._next_outcomes: list[LcoState] = []
            self._ids = itertools.count(self.first_id)
            self._frame_ids = itertools.count(self.first_frame_id)
            self._version_ids = itertools.count(self.first_frame_id + 20_000_000)
            self.create_calls = 0
            self.validate_calls = 0

    # ------------------------------------------------------------------ time

    def now(self) -> datetime:
        """The simulated time."""
        return self.clock.now()

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward and apply every state change that became due."""
        now = self.clock.advance(seconds)
        self.refresh()
        return now

    # ------------------------------------------------------------------ faults

    def add_fault(self, fault: Fault) -> Fault:
        """Register a fault; returns it with its id."""
        with self._lock:
            fault = fault.model_copy(update={"id": next(self._ids), "hits": 0})
            re.compile(fault.endpoint)
            self._faults.append(fault)
            return fault

    def faults(self) -> list[Fault]:
        """The active faults."""
        with self._lock:
            return [fault.model_copy() for fault in self._faults]

    def clear_faults(self, fault_id: int | None = None) -> int:
        """Delete one fault (or all); returns how many were deleted."""
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if fault_id is not None and f.id != fault_id]
            return before - len(self._faults)

    def add_damage(self, damage: FrameDamage) -> FrameDamage:
        """Damage the next ``damage.count`` matching frames when they are stored."""
        with self._lock:
            self._damage.append(damage.model_copy())
            return damage

    def pending_damage(self) -> list[FrameDamage]:
        """Damage not done yet."""
        with self._lock:
            return [d.model_copy() for d in self._damage]

    def _take_damage(self, spec: FrameSpec) -> str | None:
        with self._lock:
            for damage in self._damage:
                if damage.matches(spec):
                    damage.count -= 1
                    if damage.count == 0:
                        self._damage.remove(damage)
                    return damage.kind
        return None

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first active fault matching a call, counting the hit (exhausted ones expire)."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    if fault.count is not None and fault.hits >= fault.count:
                        self._faults.remove(fault)
                    return fault.model_copy()
        return None

    def queue_outcomes(self, states: Iterable[LcoState | str]) -> None:
        """Make the next submitted requests end in these states (e.g. FAILURE_LIMIT_REACHED)."""
        with self._lock:
            self._next_outcomes += [LcoState(state) for state in states]

    # ------------------------------------------------------------------ portal: validation

    def _validate(self, raw: Any, *, user: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run the portal's serializer checks; returns (errors, cleaned group)."""
        now = self.now()
        if (bad := _not_a_dict(raw)) is not None:
            return bad, {}
        fields = _Fields(raw)
        fields.take("name", lambda v: _str(v, max_length=50, blank="Please provide a name."))

        def proposal_reader(value: Any) -> str:
            text = _str(value)
            if text not in self.proposals:
                raise _Invalid([f'Invalid pk "{text}" - object does not exist.'])
            return text

        fields.take("proposal", proposal_reader, null="Please provide a proposal.")
        fields.take("ipp_value", lambda v: _float(v, low=0.0))
        fields.take("operator", lambda v: _choice(v, ("SINGLE", "MANY")))
        fields.take(
            "observation_type",
            lambda v: _choice(v, ("NORMAL", "RAPID_RESPONSE", "TIME_CRITICAL")),
        )
        fields.many(
            "requests",
            lambda item: _read_request(item, now),
            empty="You must specify at least 1 request",
        )
        if fields.errors:
            return fields.errors, {}
        data = fields.clean
        try:
            self._check_group(data, now)
        except _Invalid as exc:
            return {"non_field_errors": [exc.detail]}, {}
        return {}, data

    def _check_group(self, data: dict[str, Any], now: datetime) -> None:
        """RequestGroupSerializer.validate: ipp, operator, time allocation, rapid response."""
        if not 0.5 <= data["ipp_value"] <= 2.0:
            raise _Invalid("requestgroups ipp_value must be >= 0.5, <= 2.0")
        if data["operator"] == "SINGLE" and len(data["requests"]) > 1:
            raise _Invalid("'Single' type requestgroups must have exactly one child request.")
        if data["operator"] != "SINGLE" and len(data["requests"]) == 1:
            raise _Invalid(
                f"'{data['operator'].title()}' type requestgroups must have more than one child request."
            )
        kind = data["observation_type"]
        needed: dict[tuple[str, str], float] = {}
        for request in data["requests"]:
            request["_durations"] = _durations(request)
            semester = _semester(request["windows"][0]["start"])
            for configuration in request["configurations"]:
                key = (semester, configuration["instrument_type"])
                needed.setdefault(key, 0.0)
            first = request["configurations"][0]["instrument_type"]
            needed[(semester, first)] += request["_durations"]["duration"]
        for (semester, instrument), duration in needed.items():
            allocated = self.time_allocation_hours.get(kind, 0.0)
            used = self._time_used.get((data["proposal"], semester, kind), 0.0)
            available = allocated - used
            if kind == "RAPID_RESPONSE":
                for request in data["requests"]:
                    for window in request["windows"]:
                        if window["start"] > now:
                            raise _Invalid(
                                "The Rapid Response observation window start time cannot be in the future."
                            )
                        if (window["end"] - now).total_seconds() > duration + 86400:
                            raise _Invalid(
                                "A Rapid Response observation must start within the next 24 hours, "
                                "so the window end time must be within the next (24 hours + the "
                                "observation duration)"
                            )
            if available <= 0.0:
                raise _Invalid(
                    f"Proposal {data['proposal']} does not have any {kind} time left allocated "
                    f"in semester {semester} on {instrument} instruments"
                )
            if available * _PROPOSAL_TIME_OVERUSE_ALLOWANCE < duration / 3600.0:
                raise _Invalid(
                    f"Proposal {data['proposal']} does not have enough {kind} time allocated "
                    f"in semester {semester}"
                )

    def validate(self, raw: Any, *, user: str | None) -> dict[str, Any]:
        """The answer of ``POST /api/requestgroups/validate/`` (always HTTP 200)."""
        with self._lock:
            self.validate_calls += 1
            errors, data = self._validate(copy.deepcopy(raw), user=user)
            if errors:
                return {"request_durations": {}, "errors": errors}
            requests = [request["_durations"] for request in data["requests"]]
            return {
                "request_durations": {
                    "requests": requests,
                    "duration": sum(item["duration"] for item in requests),
                },
                "errors": {},
            }

    # ------------------------------------------------------------------ portal: create

    def submit(
        self, raw: Any, *, user: str, received_at: float | None = None
    ) -> tuple[int, dict[str, Any]]:
        """``POST /api/requestgroups/``: (201, stored group) or (400, nested errors).

        Args:
            raw: The request body.
            user: The authenticated user.
            received_at: Wall-clock time (Unix seconds) the POST arrived; now when omitted.
                Kept for drills and the latency benchmark, never shown to portal clients.
        """
        received_at = time.time() if received_at is None else received_at
        with self._lock:
            self.create_calls += 1
            errors, data = self._validate(copy.deepcopy(raw), user=user)
            if errors:
                return 400, errors
            group = self._store(data, user)
            self._received_at[group["id"]] = received_at
            return 201, group

    def _store(self, data: dict[str, Any], user: str) -> dict[str, Any]:
        now = self.now()
        group_id = next(self._ids)
        requests = []
        for request in data["requests"]:
            request_id = next(self._ids)
            durations = request.pop("_durations")
            configurations = []
            for configuration in request["configurations"]:
                configuration = {"id": next(self._ids), **configuration}
                configuration["priority"] = len(configurations) + 1
                configurations.append(_represent_configuration(configuration))
            location = {k: v for k, v in request["location"].items() if v}
            representation = {
                "id": request_id,
                "location": location,
                "configurations": configurations,
                "windows": [
                    {"start": _drf_time(w["start"]), "end": _drf_time(w["end"])}
                    for w in request["windows"]
                ],
                "duration": durations["duration"],
                "state": LcoState.PENDING.value,
                "modified": _drf_time(now),
                "created": _drf_time(now),
                "acceptability_threshold": request["acceptability_threshold"],
                "configuration_repeats": request["configuration_repeats"],
                "optimization_type": request["optimization_type"],
                "observation_note": request["observation_note"],
                "extra_params": request["extra_params"],
            }
            self._requests[request_id] = representation
            start = min(w["start"] for w in request["windows"])
            end = max(w["end"] for w in request["windows"])
            complete_at = max(now, start) + timedelta(seconds=self.completion_delay_s)
            outcome = self._next_outcomes.pop(0) if self._next_outcomes else LcoState.COMPLETED
            block_id = next(self._ids)
            self._sim[request_id] = _SimRequest(
                request_id=request_id,
                group_id=group_id,
                window_start=start,
                window_end=end,
                complete_at=complete_at,
                duration_s=float(durations["duration"]),
                outcome=outcome,
                block_id=block_id,
                site=_pick_site(location, request_id),
            )
            self._blocks[block_id] = self._new_block(self._sim[request_id], now)
            requests.append(representation)
            semester = _semester(start)
            key = (data["proposal"], semester, data["observation_type"])
            self._time_used[key] = self._time_used.get(key, 0.0) + durations["duration"] / 3600.0
        group = {
            "id": group_id,
            "submitter": user,
            "requests": requests,
            "created": _drf_time(now),
            "state": LcoState.PENDING.value,
            "modified": _drf_time(now),
            "name": data["name"],
            "observation_type": data["observation_type"],
            "operator": data["operator"],
            "ipp_value": data["ipp_value"],
            "proposal": data["proposal"],
        }
        self._groups[group_id] = group
        return copy.deepcopy(group)

    def _new_block(self, sim: _SimRequest, now: datetime) -> dict[str, Any]:
        site = sim.site or ("", "", "", "", "", 0.0)
        return {
            "id": sim.block_id,
            "request": sim.request_id,
            "site": site[0],
            "enclosure": site[1],
            "telescope": site[2],
            "start": _drf_time(sim.complete_at - timedelta(seconds=sim.duration_s)),
            "end": _drf_time(sim.complete_at),
            "priority": 10,
            "state": "PENDING",
            "created": _drf_time(now),
            "modified": _drf_time(now),
        }

    # ------------------------------------------------------------------ portal: state machine

    def refresh(self) -> None:
        """Apply every transition due at the current simulated time."""
        with self._lock:
            now = self.now()
            for sim in self._sim.values():
                request = self._requests[sim.request_id]
                if request["state"] != LcoState.PENDING.value:
                    continue
                if now >= sim.complete_at and sim.complete_at <= sim.window_end:
                    self._set_request_state(sim, sim.outcome, sim.complete_at)
                elif now >= sim.window_end:
                    self._set_request_state(sim, LcoState.WINDOW_EXPIRED, sim.window_end)

    def _set_request_state(self, sim: _SimRequest, state: LcoState, when: datetime) -> None:
        request = self._requests[sim.request_id]
        request["state"] = state.value
        request["modified"] = _drf_time(when)
        block = self._blocks[sim.block_id]
        block["state"] = {
            LcoState.COMPLETED: "COMPLETED",
            LcoState.CANCELED: "CANCELED",
            LcoState.WINDOW_EXPIRED: "NOT_ATTEMPTED",
            LcoState.FAILURE_LIMIT_REACHED: "FAILED",
            LcoState.PENDING: "PENDING",
        }[state]
        block["modified"] = _drf_time(when)
        if state is LcoState.COMPLETED:
            block["end"] = _drf_time(when)
            block["start"] = _drf_time(when - timedelta(seconds=sim.duration_s))
            if not sim.frames_made:
                self._make_frames(sim, when)
                sim.frames_made = True
        group = self._groups[sim.group_id]
        new_state = _aggregate(
            [self._requests[r["id"]]["state"] for r in group["requests"]], group["operator"]
        )
        if new_state != group["state"]:
            group["state"] = new_state
            group["modified"] = _drf_time(when)

    def complete_request(self, request_id: int) -> dict[str, Any]:
        """Complete a request now (also a late COMPLETED after expiry, cancel or failure).

        Raises:
            KeyError: No such request.
        """
        with self._lock:
            self.refresh()
            sim = self._sim[request_id]
            if self._requests[request_id]["state"] != LcoState.COMPLETED.value:
                self._set_request_state(sim, LcoState.COMPLETED, self.now())
            return copy.deepcopy(self._requests[request_id])

    def force_request_state(self, request_id: int, state: LcoState | str) -> dict[str, Any]:
        """Move a request to any state now (drills: FAILURE_LIMIT_REACHED, WINDOW_EXPIRED...).

        Raises:
            KeyError: No such request.
        """
        with self._lock:
            self.refresh()
            self._set_request_state(self._sim[request_id], LcoState(state), self.now())
            return copy.deepcopy(self._requests[request_id])

    def cancel(self, group_id: int) -> tuple[int, dict[str, Any]]:
        """``POST /api/requestgroups/{id}/cancel/`` as the portal answers it.

        Raises:
            KeyError: No such group.
        """
        with self._lock:
            self.refresh()
            group = self._groups[group_id]
            state = group["state"]
            if state == LcoState.CANCELED.value:
                return 200, copy.deepcopy(group)
            if state != LcoState.PENDING.value:
                message = f"Cannot transition from request state {state} to CANCELED for {group_id}"
                return 400, {"errors": [message]}
            now = self.now()
            for request in group["requests"]:
                if self._requests[request["id"]]["state"] == LcoState.PENDING.value:
                    self._set_request_state(self._sim[request["id"]], LcoState.CANCELED, now)
            group["state"] = LcoState.CANCELED.value
            group["modified"] = _drf_time(now)
            return 200, copy.deepcopy(group)

    # ------------------------------------------------------------------ portal: reads

    def get_group(self, group_id: int) -> dict[str, Any]:
        """One stored group as the portal returns it.

        Raises:
            KeyError: No such group.
        """
        with self._lock:
            self.refresh()
            return copy.deepcopy(self._groups[group_id])

    def get_request(self, request_id: int) -> dict[str, Any]:
        """One stored request.

        Raises:
            KeyError: No such request.
        """
        with self._lock:
            self.refresh()
            return copy.deepcopy(self._requests[request_id])

    def observations(self, request_id: int, *, exclude_canceled: bool = False) -> list[dict]:
        """Scheduled blocks of a request.

        Raises:
            KeyError: No such request.
        """
        with self._lock:
            self.refresh()
            sim = self._sim[request_id]
            block = copy.deepcopy(self._blocks[sim.block_id])
            if exclude_canceled and block["state"] == "CANCELED":
                return []
            return [block]

    def list_groups(self, query: Mapping[str, list[str]]) -> list[dict[str, Any]]:
        """Groups matching the portal's filters, newest first.

        Raises:
            ValueError: A filter value is malformed; ``args[0]`` is the DRF error body.
        """
        errors: dict[str, list[str]] = {}
        states = query.get("state", [])
        excluded = query.get("exclude_state", [])
        for key, values in (("state", states), ("exclude_state", excluded)):
            for value in values:
                if value not in LcoState.__members__:
                    errors[key] = [
                        f"Select a valid choice. {value} is not one of the available choices."
                    ]
        bounds: dict[str, datetime] = {}
        for key in ("created_after", "created_before", "modified_after", "modified_before"):
            if query.get(key):
                try:
                    bounds[key] = parse_datetime(query[key][-1])
                except ValueError:
                    errors[key] = ["Enter a valid date/time."]
        request_id = None
        if query.get("request_id"):
            try:
                request_id = int(query["request_id"][-1])
            except ValueError:
                errors["request_id"] = ["Enter a number."]
        if errors:
            raise ValueError(errors)
        name = (query.get("name") or [None])[-1]
        proposal = (query.get("proposal") or [None])[-1]
        user = (query.get("user") or [None])[-1]
        with self._lock:
            self.refresh()
            selected = []
            for group in sorted(self._groups.values(), key=lambda g: -g["id"]):
                created = parse_datetime(group["created"])
                modified = parse_datetime(group["modified"])
                if states and group["state"] not in states:
                    continue
                if group["state"] in excluded:
                    continue
                if name and name.lower() not in group["name"].lower():
                    continue
                if proposal and group["proposal"] != proposal:
                    continue
                if user and group["submitter"] != user:
                    continue
                if request_id is not None and request_id not in [
                    r["id"] for r in group["requests"]
                ]:
                    continue
                if "created_after" in bounds and created < bounds["created_after"]:
                    continue
                if "created_before" in bounds and created > bounds["created_before"]:
                    continue
                if "modified_after" in bounds and modified < bounds["modified_after"]:
                    continue
                if "modified_before" in bounds and modified > bounds["modified_before"]:
                    continue
                selected.append(copy.deepcopy(group))
            return selected

    def instruments(self) -> dict[str, Any]:
        """``GET /api/instruments/``: the configdb view of every schedulable instrument type."""
        return {code: _represent_instrument(item) for code, item in _CONFIGDB.items()}

    def profile(self) -> dict[str, Any]:
        """``GET /api/profile/`` for the token's user."""
        return {
            "username": self.username,
            "first_name": "Sandbox",
            "last_name": "User",
            "email": f"{self.username}@sandbox.invalid",
            "profile": {
                "education_user": False,
                "notifications_enabled": False,
                "notifications_on_authored_only": False,
                "simple_interface": False,
                "view_authored_requests_only": False,
                "title": "",
                "staff_view": False,
                "institution": "followup sandbox",
                "api_quota": {"used": self.create_calls, "limit": 5000},
            },
            "is_staff": False,
            "is_superuser": False,
            "proposals": [
                {"id": proposal, "title": f"Sandbox proposal {proposal}", "current": True}
                for proposal in self.proposals
            ],
            "available_instrument_types": list(_CONFIGDB),
            "tokens": {"archive": None, "api_token": self.token},
            "proposal_notifications": [],
        }

    def submissions(self) -> dict[str, Any]:
        """What was submitted, for tests and drills (``GET /sandbox/requests``)."""
        with self._lock:
            self.refresh()
            results = []
            for group in sorted(self._groups.values(), key=lambda g: g["id"]):
                results.append(
                    {
                        "group_id": group["id"],
                        "name": group["name"],
                        "state": group["state"],
                        "proposal": group["proposal"],
                        "observation_type": group["observation_type"],
                        "created": group["created"],
                        "received_at": self._received_at.get(group["id"]),
                        "requests": [
                            {
                                "id": r["id"],
                                "state": self._requests[r["id"]]["state"],
                                "window_start": _drf_time(self._sim[r["id"]].window_start),
                                "window_end": _drf_time(self._sim[r["id"]].window_end),
                                "complete_at": _drf_time(self._sim[r["id"]].complete_at),
                                "frames": sorted(
                                    f.frame_id
                                    for f in self._frames.values()
                                    if f.spec.request_id == r["id"]
                                ),
                            }
                            for r in group["requests"]
                        ],
                    }
                )
            return {
                "count": len(results),
                "create_calls": self.create_calls,
                "validate_calls": self.validate_calls,
                "now": _drf_time(self.now()),
                "results": results,
            }

    # ------------------------------------------------------------------ archive: frames

    def _frame_number(self, instrument_id: str, day: date) -> int:
        counter = self._frame_numbers.setdefault((instrument_id, day), itertools.count(1))
        return next(counter)

    def _add_frame(
        self,
        spec: FrameSpec,
        day: date,
        observation_id: int | None,
        available_at: datetime | None = None,
    ) -> _FrameEntry:
        frame_id = next(self._frame_ids)
        entry = _FrameEntry(
            frame_id=frame_id,
            spec=spec,
            observation_id=observation_id,
            version_id=next(self._version_ids),
            version_key=hashlib.md5(
                f"{spec.basename}:{frame_id}".encode(), usedforsecurity=False
            ).hexdigest(),
            created=available_at or spec.date_obs,
            public_date=spec.date_obs + timedelta(days=365),
            observation_day=day,
        )
        self._frames[frame_id] = entry
        return entry

    def _make_frames(self, sim: _SimRequest, completed_at: datetime) -> None:
        """One level-0 and one level-91 frame per exposure, plus that night's calibrations."""
        group = self._groups[sim.group_id]
        request = self._requests[sim.request_id]
        if sim.site is None:
            return
        site_code, enclosure, telescope, tel_code, instrument_ids, longitude = sim.site
        cameras = instrument_ids.split(",")
        # A shot is one exposure of every camera that opens at once (MuSCAT: four channels).
        shots: list[tuple[dict[str, Any], str, list[tuple[str, str, float]]]] = []
        for configuration in request["configurations"]:
            instrument = _CONFIGDB[configuration["instrument_type"]]
            if instrument.kind != "IMAGE" or configuration["type"] not in _SCIENCE_TYPES:
                continue  # spectra are FLOYDS tarballs at level 90: not simulated
            for config in configuration["instrument_configs"]:
                if instrument.exposure_modes:
                    extra = config["extra_params"]
                    cameras_bands = [
                        (
                            camera,
                            code,
                            float(extra.get(f"exposure_time_{band}", config["exposure_time"])),
                        )
                        for camera, (band, code) in zip(cameras, _MUSCAT_CHANNELS, strict=False)
                    ]
                else:
                    cameras_bands = [
                        (
                            cameras[0],
                            config["optical_elements"].get("filter", ""),
                            float(config["exposure_time"]),
                        )
                    ]
                for _ in range(config["exposure_count"]):
                    shots.append((configuration, instrument.code, cameras_bands))
        if not shots:
            return
        # Shots run back to back (10 s readout) and the last one ends at completion.
        span = sum(max(e for _, _, e in bands) + 10.0 for _, _, bands in shots)
        cursor = completed_at - timedelta(seconds=span)
        day = _day_obs(cursor, longitude)
        seed_base = int(hashlib.sha256(str(sim.request_id).encode()).hexdigest()[:8], 16)
        index = 0
        for configuration, instrument_type, bands in shots:
            target = configuration["target"]
            for instrument_id, band, exposure in bands:
                number = self._frame_number(instrument_id, day)
                common = {
                    "frame_number": number,
                    "ra": float(target.get("ra", 0.0)) % 360.0,
                    "dec": float(target.get("dec", 0.0)),
                    "filter": band,
                    "exposure_time_s": exposure,
                    "date_obs": cursor,
                    "site_id": site_code,
                    "telescope_id": telescope,
                    "enclosure_id": enclosure,
                    "instrument_id": instrument_id,
                    "instrument_type": instrument_type,
                    "request_id": sim.request_id,
                    "group_id": sim.group_id,
                    "group_name": group["name"],
                    "proposal_id": group["proposal"],
                    "target_name": str(target.get("name", "")),
                    "seed": (seed_base + index) % (2**31),
                }
                index += 1
                stem = f"{site_code}{tel_code}-{instrument_id}-{day:%Y%m%d}-{number:04d}"
                raw = self._add_frame(
                    FrameSpec(basename=f"{stem}-e00", reduction_level=0, **common),
                    day,
                    sim.block_id,
                    available_at=completed_at,
                )
                reduced = self._add_frame(
                    FrameSpec(basename=f"{stem}-e91", reduction_level=91, **common),
                    day,
                    sim.block_id,
                    available_at=completed_at + timedelta(seconds=self.reduction_delay_s),
                )
                reduced.related.append(raw.frame_id)
                raw.related.append(reduced.frame_id)
                self._make_calibrations(
                    sim.site, instrument_id, instrument_type, day, band, exposure, cursor
                )
            cursor += timedelta(seconds=max(e for _, _, e in bands) + 10.0)

    def _make_calibrations(
        self,
        site: tuple[str, str, str, str, str, float],
        instrument_id: str,
        instrument_type: str,
        day: date,
        band: str,
        exposure: float,
        when: datetime,
    ) -> None:
        site_code, enclosure, telescope, tel_code, _, _ = site
        # Calibrations are taken in the afternoon/evening before the science (a few hours earlier).
        start = when - timedelta(hours=3)
        for kind, letter, filter_code, exptime in (
            ("BIAS", "b", None, 0.0),
            ("DARK", "d", None, max(exposure, 60.0)),
            ("SKYFLAT", "f", band, 10.0),
        ):
            key = (instrument_id, day, kind, filter_code)
            if key in self._calibrations:
                continue
            number = self._frame_number(instrument_id, day)
            spec = FrameSpec(
                basename=f"{site_code}{tel_code}-{instrument_id}-{day:%Y%m%d}-{number:04d}-{letter}00",
                frame_number=number,
                reduction_level=0,
                configuration_type=kind,  # type: ignore[arg-type]
                filter=filter_code,
                exposure_time_s=exptime,
                date_obs=start + timedelta(minutes=len(self._calibrations) % 60),
                site_id=site_code,
                telescope_id=telescope,
                enclosure_id=enclosure,
                instrument_id=instrument_id,
                instrument_type=instrument_type,
                proposal_id="calibrate",
                target_name="",
                seed=int(hashlib.sha256(f"{key}".encode()).hexdigest()[:8], 16) % (2**31),
            )
            self._calibrations[key] = self._add_frame(spec, day, None).frame_id

    def frame_entries(
        self, query: Mapping[str, list[str]], *, authenticated: bool
    ) -> list[_FrameEntry]:
        """Frames matching the archive's filters, newest observation first.

        Raises:
            ValueError: A filter value is malformed; ``args[0]`` is the DRF error body.
        """

        def last(*keys: str) -> str | None:
            for key in keys:
                if query.get(key):
                    return query[key][-1]
            return None

        errors: dict[str, list[str]] = {}
        numbers: dict[str, int] = {}
        for name, keys in (
            ("request_id", ("request_id", "REQNUM")),
            ("reduction_level", ("reduction_level", "RLEVEL")),
            ("observation_id", ("observation_id", "BLKUID")),
        ):
            value = last(*keys)
            if value is not None:
                try:
                    numbers[name] = int(float(value))
                except ValueError:
                    errors[keys[0]] = ["Enter a number."]
        day = last("dayobs", "DAY_OBS")
        day_value = None
        if day is not None:
            try:
                day_value = date.fromisoformat(day)
            except ValueError:
                errors["dayobs"] = ["Enter a valid date."]
        bounds: dict[str, datetime] = {}
        for key in ("start", "end"):
            if query.get(key):
                try:
                    bounds[key] = parse_datetime(query[key][-1])
                except ValueError:
                    errors[key] = ["Enter a valid date/time."]
        if errors:
            raise ValueError(errors)
        exact = {
            "proposal_id": last("proposal_id", "PROPID"),
            "instrument_id": last("instrument_id", "INSTRUME"),
            "site_id": last("site_id", "SITEID"),
            "telescope_id": last("telescope_id", "TELID"),
            "configuration_type": last("configuration_type", "OBSTYPE"),
            "primary_optical_element": last("primary_optical_element", "FILTER"),
            "basename_exact": last("basename_exact"),
            "target_name_exact": last("target_name_exact"),
        }
        basename = last("basename")
        target_name = last("target_name", "OBJECT")
        include = query.get("include_configuration_type", [])
        exclude = query.get("exclude_configuration_type", []) + query.get("exclude_OBSTYPE", [])
        exclude_calibrations = (last("exclude_calibrations") or "").lower() in ("true", "1")
        with self._lock:
            self.refresh()
            now = self.now()
            selected = []
            for entry in self._frames.values():
                spec = entry.spec
                record = {
                    "request_id": spec.request_id,
                    "reduction_level": spec.reduction_level,
                    "observation_id": entry.observation_id,
                    "proposal_id": spec.proposal_id,
                    "instrument_id": spec.instrument_id,
                    "site_id": spec.site_id,
                    "telescope_id": spec.telescope_id,
                    "configuration_type": spec.configuration_type,
                    "primary_optical_element": spec.filter,
                    "basename_exact": spec.basename,
                    "target_name_exact": spec.target_name,
                }
                if entry.created > now:
                    continue  # not ingested yet (BANZAI still reducing)
                if not authenticated and entry.public_date > now:
                    continue
                if any(record[key] != value for key, value in numbers.items()):
                    continue
                if any(value is not None and record[key] != value for key, value in exact.items()):
                    continue
                if basename and basename.lower() not in spec.basename.lower():
                    continue
                if target_name and target_name.lower() not in spec.target_name.lower():
                    continue
                if day_value is not None and entry.observation_day != day_value:
                    continue
                if "start" in bounds and spec.date_obs < bounds["start"]:
                    continue
                if "end" in bounds and spec.date_obs > bounds["end"]:
                    continue
                if include and spec.configuration_type not in include:
                    continue
                if spec.configuration_type in exclude:
                    continue
                if exclude_calibrations and spec.configuration_type != "EXPOSE":
                    continue
                selected.append(entry)
            selected.sort(key=lambda e: (e.spec.date_obs, e.frame_id), reverse=True)
            return selected

    def has_frame(self, frame_id: int) -> bool:
        """True when the archive holds this frame id."""
        with self._lock:
            return frame_id in self._frames

    def frame_entry(self, frame_id: int, *, authenticated: bool) -> _FrameEntry:
        """One frame.

        Raises:
            KeyError: No such frame, or not visible without a token.
        """
        with self._lock:
            self.refresh()
            entry = self._frames[frame_id]
            if entry.created > self.now() or (not authenticated and entry.public_date > self.now()):
                raise KeyError(frame_id)
            return entry

    def all_frame_specs(self) -> list[dict[str, Any]]:
        """Every frame with its spec (``GET /sandbox/frames``), for truth look-ups."""
        with self._lock:
            return [
                {"id": entry.frame_id, **entry.spec.model_dump(mode="json")}
                for entry in sorted(self._frames.values(), key=lambda e: e.frame_id)
            ]

    def frame_content(self, frame_id: int) -> tuple[bytes, str, str]:
        """The frame's bytes, md5 and extension, rendered once and cached.

        Raises:
            KeyError: No such frame.
        """
        entry = self._frames[frame_id]
        cached = self._rendered.get(frame_id)
        if cached is not None:
            data, md5, extension, _ = cached
            if data is not None:
                return data, md5, extension
            assert self.cache_dir is not None
            return (
                (self.cache_dir / f"{entry.spec.basename}{extension}").read_bytes(),
                md5,
                extension,
            )
        with self._render_lock:
            cached = self._rendered.get(frame_id)
            if cached is not None:
                return self.frame_content(frame_id)
            renderer = self.renderer or header_only_renderer
            data = renderer(entry.spec)
            if not isinstance(data, bytes | bytearray) or not data:
                raise RuntimeError(f"the renderer returned no bytes for {entry.spec.basename}")
            data = bytes(data)
            kind = self._take_damage(entry.spec)
            if kind is not None:
                data = damage_frame(data, kind)
            md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
            extension = ".fits.fz" if _is_compressed_fits(data) else ".fits"
            if self.cache_dir is not None:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                path = self.cache_dir / f"{entry.spec.basename}{extension}"
                tmp = path.with_suffix(path.suffix + ".tmp")
                tmp.write_bytes(data)
                tmp.replace(path)
                self._rendered[frame_id] = (None, md5, extension, len(data))
            else:
                self._rendered[frame_id] = (data, md5, extension, len(data))
            return data, md5, extension

    def sign(self, frame_id: int, filename: str, issued: datetime) -> dict[str, str]:
        """Query parameters of a signed download URL issued at ``issued``."""
        stamp = issued.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        expires = str(int(self.url_lifetime_s))
        message = f"{frame_id}/{filename}/{stamp}/{expires}".encode()
        signature = hmac.new(self.url_secret, message, hashlib.sha256).hexdigest()
        return {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Date": stamp,
            "X-Amz-Expires": expires,
            "X-Amz-SignedHeaders": "host",
            "X-Amz-Signature": signature,
        }

    def check_signature(
        self, frame_id: int, filename: str, params: Mapping[str, str]
    ) -> str | None:
        """None when a download URL is valid now, else the S3-style refusal message."""
        try:
            issued = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            expires = float(params["X-Amz-Expires"])
            given = params["X-Amz-Signature"]
        except (KeyError, ValueError):
            return "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters"
        message = f"{frame_id}/{filename}/{params['X-Amz-Date']}/{params['X-Amz-Expires']}".encode()
        expected = hmac.new(self.url_secret, message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given):
            return "The request signature we calculated does not match the signature you provided."
        if self.now() > issued + timedelta(seconds=expires):
            return "Request has expired"
        return None

    def frame_record(self, entry: _FrameEntry, base_url: str) -> dict[str, Any]:
        """The archive's frame record (``Frame.as_dict``) with a freshly signed URL."""
        _, md5, extension = self.frame_content(entry.frame_id)
        spec = entry.spec
        filename = f"{spec.basename}{extension}"
        url = f"{base_url.rstrip('/')}/download/{entry.frame_id}/{filename}?" + urlencode(
            self.sign(entry.frame_id, filename, self.now())
        )
        record = {
            "id": entry.frame_id,
            "basename": spec.basename,
            "area": None,
            "related_frames": list(entry.related),
            "version_set": [
                {
                    "id": entry.version_id,
                    "created": _drf_time(entry.created),
                    "key": entry.version_key,
                    "md5": md5,
                    "extension": extension,
                    "url": url,
                }
            ],
            "filename": filename,
            "url": url,
            "reduction_level": spec.reduction_level,
            "observation_day": entry.observation_day.isoformat(),
            "observation_date": _drf_time(spec.date_obs),
            "proposal_id": spec.proposal_id,
            "instrument_id": spec.instrument_id,
            "target_name": spec.target_name,
            "site_id": spec.site_id,
            "telescope_id": spec.telescope_id,
            "exposure_time": spec.exposure_time_s,
            "primary_optical_element": spec.filter or "",
            "public_date": _drf_time(entry.public_date),
            "configuration_type": spec.configuration_type,
            "observation_id": entry.observation_id,
            "request_id": spec.request_id,
            "modified": _drf_time(entry.created),
            "created": _drf_time(entry.created),
        }
        for legacy, key in (
            ("DATE_OBS", "observation_date"),
            ("DAY_OBS", "observation_day"),
            ("PROPID", "proposal_id"),
            ("INSTRUME", "instrument_id"),
            ("OBJECT", "target_name"),
            ("RLEVEL", "reduction_level"),
            ("SITEID", "site_id"),
            ("TELID", "telescope_id"),
            ("EXPTIME", "exposure_time"),
            ("FILTER", "primary_optical_element"),
            ("L1PUBDAT", "public_date"),
            ("OBSTYPE", "configuration_type"),
            ("BLKUID", "observation_id"),
            ("REQNUM", "request_id"),
        ):
            record[legacy] = record[key]
        return record

    def frame_headers(self, entry: _FrameEntry) -> dict[str, Any]:
        """The header keywords the archive indexes for a frame (``/frames/{id}/headers/``)."""
        return _spec_header(entry.spec, entry.observation_day, entry.observation_id)


def _aggregate(states: list[str], operator: str) -> str:
    """observation-portal ``aggregate_request_states``."""
    priority = ["WINDOW_EXPIRED", "PENDING", "COMPLETED", "FAILURE_LIMIT_REACHED", "CANCELED"]
    if operator == "MANY":
        priority = ["PENDING", "COMPLETED", "WINDOW_EXPIRED", "FAILURE_LIMIT_REACHED", "CANCELED"]
    for state in priority:
        if state in states:
            return state
    return LcoState.PENDING.value


def _pick_site(
    location: Mapping[str, Any], request_id: int
) -> tuple[str, str, str, str, str, float] | None:
    options = _TELESCOPES.get(location.get("telescope_class", ""), ())
    if location.get("site"):
        options = tuple(option for option in options if option[0] == location["site"])
    if not options:
        return None
    return options[request_id % len(options)]


def _day_obs(when: datetime, longitude_deg: float) -> date:
    """LCO's DAY-OBS: the date at local noon before the observation (noon-to-noon nights)."""
    local = when + timedelta(hours=longitude_deg / 15.0)
    return (local - timedelta(hours=12)).date()


def _is_compressed_fits(data: bytes) -> bool:
    head = data[: 2880 * 8]
    return b"ZIMAGE  =                    T" in head


def _represent_configuration(configuration: dict[str, Any]) -> dict[str, Any]:
    target = {k: v for k, v in configuration["target"].items() if v is not None}
    constraints = {
        "max_airmass": configuration["constraints"]["max_airmass"],
        "min_lunar_distance": configuration["constraints"]["min_lunar_distance"],
        "max_lunar_phase": configuration["constraints"]["max_lunar_phase"],
        "max_seeing": configuration["constraints"].get("max_seeing"),
        "min_transparency": configuration["constraints"].get("min_transparency"),
        "extra_params": configuration["constraints"]["extra_params"],
    }
    guiding = configuration["guiding_config"]
    acquisition = configuration["acquisition_config"]
    representation = {
        "id": configuration["id"],
        "instrument_type": configuration["instrument_type"],
        "type": configuration["type"],
        "extra_params": configuration["extra_params"],
        "priority": configuration["priority"],
        "instrument_configs": [
            {
                "optical_elements": config["optical_elements"],
                "mode": config["mode"],
                "exposure_time": config["exposure_time"],
                "exposure_count": config["exposure_count"],
                "rotator_mode": config.get("rotator_mode", ""),
                "extra_params": config["extra_params"],
                "rois": config["rois"] if isinstance(config["rois"], list) else [],
            }
            for config in configuration["instrument_configs"]
        ],
        "constraints": constraints,
        "acquisition_config": {
            "mode": acquisition["mode"],
            "exposure_time": acquisition.get("exposure_time"),
            "extra_params": acquisition.get("extra_params", {}),
        },
        "guiding_config": {
            "optional": bool(guiding.get("optional", True)),
            "mode": guiding["mode"],
            "optical_elements": guiding.get("optical_elements", {}),
            "exposure_time": guiding.get("exposure_time"),
            "extra_params": guiding.get("extra_params", {}),
        },
        "target": target,
    }
    if "REPEAT" in configuration["type"]:
        representation["repeat_duration"] = configuration.get("repeat_duration")
    return representation


def _represent_instrument(item: _InstrumentType) -> dict[str, Any]:
    def modes(
        kind: str, codes: Iterable[str], default: str, overheads: Mapping[str, float] | None = None
    ) -> dict[str, Any]:
        return {
            "type": kind,
            "modes": [
                {
                    "name": code,
                    "overhead": (overheads or {}).get(code, 0.0),
                    "code": code,
                    "schedulable": True,
                    "validation_schema": {},
                }
                for code in codes
            ],
            "default": default,
        }

    mode_groups = {
        "readout": modes("readout", item.readout_modes, item.default_readout, item.readout_modes),
        "guiding": modes("guiding", item.guiding_modes, item.default_guiding),
        "acquisition": modes("acquisition", item.acquisition_modes, item.default_acquisition),
    }
    if item.rotator_modes:
        mode_groups["rotator"] = modes("rotator", item.rotator_modes, item.default_rotator)
    if item.exposure_modes:
        mode_groups["exposure"] = modes("exposure", item.exposure_modes, item.default_exposure_mode)
    return {
        "type": item.kind,
        "class": item.telescope_class,
        "name": item.name,
        "optical_elements": {
            plural: [
                {
                    "name": _FILTER_NAMES.get(code, code),
                    "code": code,
                    "schedulable": schedulable,
                    "default": index == 0,
                }
                for index, (code, schedulable) in enumerate(elements)
            ]
            for plural, elements in item.optical_elements.items()
        },
        "modes": mode_groups,
        "default_acceptability_threshold": item.acceptability_threshold,
        "default_configuration_type": item.default_configuration_type,
        "configuration_types": {
            code: {"name": code, "code": code, "schedulable": schedulable}
            for code, schedulable in item.configuration_types.items()
        },
        "camera_type": {
            "science_field_of_view": item.pixel_scale * item.pixels[0] / 60.0,
            "autoguider_field_of_view": item.pixel_scale * item.pixels[0] / 60.0,
            "pixel_scale": item.pixel_scale,
            "pixels_x": item.pixels[0],
            "pixels_y": item.pixels[1],
            "orientation": 0.0,
        },
    }


def _spec_header(spec: FrameSpec, day: date, observation_id: int | None) -> dict[str, Any]:
    import astropy.units as u
    from astropy.coordinates import Angle

    header = {
        "ORIGIN": "LCOGT",
        "SITEID": spec.site_id,
        "ENCID": spec.enclosure_id,
        "TELID": spec.telescope_id,
        "TELESCOP": spec.telescope_id,
        "INSTRUME": spec.instrument_id,
        "OBSTYPE": spec.configuration_type,
        "OBJECT": spec.target_name,
        "FILTER": spec.filter or "air",
        "EXPTIME": spec.exposure_time_s,
        "DATE-OBS": spec.date_obs.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
        "DAY-OBS": f"{day:%Y%m%d}",
        "RLEVEL": spec.reduction_level,
        "PROPID": spec.proposal_id,
        "GROUPID": spec.group_name or "",
        "TRACKNUM": f"{spec.group_id:010d}" if spec.group_id is not None else "",
        "REQNUM": f"{spec.request_id:010d}" if spec.request_id is not None else "",
        "BLKUID": observation_id if observation_id is not None else "",
        "RA": Angle(spec.ra, u.deg).to_string(unit=u.hourangle, sep=":", precision=3, pad=True),
        "DEC": Angle(spec.dec, u.deg).to_string(
            unit=u.deg, sep=":", precision=2, alwayssign=True, pad=True
        ),
        "CAT-RA": Angle(spec.ra, u.deg).to_string(unit=u.hourangle, sep=":", precision=3, pad=True),
        "CAT-DEC": Angle(spec.dec, u.deg).to_string(
            unit=u.deg, sep=":", precision=2, alwayssign=True, pad=True
        ),
    }
    return header


def header_only_renderer(spec: FrameSpec) -> bytes:
    """A small, valid FITS file with a frame's real header keywords and an empty 64x64 image.

    Served when no synthetic sky is plugged in: clients can list, download, checksum and read
    headers, but there is no sky in it (``SANDBOX`` keyword says so).
    """
    import numpy as np
    from astropy.io import fits

    header = fits.Header()
    day = _day_obs(spec.date_obs, 0.0)
    for key, value in _spec_header(spec, day, None).items():
        header[key] = value
    header["SANDBOX"] = ("header-only", "no sky: no FrameRenderer configured")
    hdu = fits.PrimaryHDU(data=np.zeros((64, 64), dtype=np.int16), header=header)
    buffer = io.BytesIO()
    hdu.writeto(buffer)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# HTTP: faults, auth, pagination
# --------------------------------------------------------------------------------------------

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _FaultMiddleware:
    """Pure ASGI middleware applying the state's faults to every call outside ``/sandbox/``."""

    def __init__(self, app: Any, state: LcoSandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/sandbox/"):
            await self.app(scope, receive, send)
            return
        fault = self.state.take_fault(scope["method"], scope["path"])
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.after_store:
            captured: list[MutableMapping[str, Any]] = []

            async def capture(message: MutableMapping[str, Any]) -> None:
                captured.append(message)

            await self.app(scope, receive, capture)
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            if fault.status is not None:
                await _fault_response(fault)(scope, receive, send)
            else:
                for message in captured:
                    await send(message)
            return
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault.status is not None:
            await _fault_response(fault)(scope, receive, send)
            return
        if fault.truncate_bytes is not None:
            await self.app(scope, receive, _truncating(send, fault.truncate_bytes))
            return
        await self.app(scope, receive, send)


def _truncating(send: _Send, limit: int) -> _Send:
    sent = 0
    done = False

    async def cut(message: MutableMapping[str, Any]) -> None:
        nonlocal sent, done
        if done:
            return
        if message["type"] == "http.response.body":
            body = message.get("body", b"")
            if sent + len(body) >= limit:
                done = True
                # Fewer bytes than Content-Length, then end: the server drops the connection.
                await send(
                    {"type": "http.response.body", "body": body[: limit - sent], "more_body": False}
                )
                return
            sent += len(body)
        await send(message)

    return cut


def _fault_response(fault: Fault) -> Response:
    status = fault.status or 500
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = str(int(fault.retry_after))
    if status == 429:
        wait = int(fault.retry_after or 1)
        return JSONResponse(
            {"detail": f"Request was throttled. Expected available in {wait} seconds."},
            status_code=429,
            headers=headers,
        )
    if status >= 500:
        title = {
            500: "Server Error (500)",
            502: "502 Bad Gateway",
            503: "503 Service Temporarily Unavailable",
            504: "504 Gateway Time-out",
        }.get(status, f"{status} Error")
        return Response(
            f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>",
            status_code=status,
            media_type="text/html",
            headers=headers,
        )
    return JSONResponse({"detail": "Injected by the sandbox."}, status_code=status, headers=headers)


def _user(request: HttpRequest, state: LcoSandboxState, *, archive: bool = False) -> str | None:
    """The authenticated user, None when anonymous; a bad token is refused as DRF does."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "token":
        return None
    key = key.strip()
    if not key or " " in key:
        message = (
            "Invalid token header. No credentials provided."
            if not key
            else ("Invalid token header. Token string should not contain spaces.")
        )
        raise HTTPException(status_code=401 if archive else 403, detail=message)
    if not hmac.compare_digest(key, state.token):
        # The portal's first auth class is Session (no WWW-Authenticate) -> 403; the archive's
        # is token auth -> 401.
        raise HTTPException(
            status_code=401 if archive else 403,
            detail="Invalid token.",
            headers={"WWW-Authenticate": "Token"} if archive else None,
        )
    return state.username


def _require_user(request: HttpRequest, state: LcoSandboxState) -> str:
    user = _user(request, state)
    if user is None:
        raise HTTPException(status_code=403, detail="Authentication credentials were not provided.")
    return user


def _page(
    request: HttpRequest,
    items: list[Any],
    *,
    default_limit: int,
    max_limit: int | None,
) -> tuple[list[Any], dict[str, Any]]:
    """DRF LimitOffsetPagination: the page's items and its envelope (without ``results``)."""

    def integer(key: str, default: int) -> int:
        try:
            value = int(request.query_params.get(key, default))
        except ValueError:
            return default
        return value if value >= 0 else default

    limit = integer("limit", default_limit) or default_limit
    if max_limit is not None:
        limit = min(limit, max_limit)
    offset = integer("offset", 0)
    count = len(items)
    url = request.url
    next_url = None
    if offset + limit < count:
        next_url = str(url.include_query_params(limit=limit, offset=offset + limit))
    previous = None
    if offset > 0:
        if offset - limit <= 0:
            previous = str(url.include_query_params(limit=limit).remove_query_params("offset"))
        else:
            previous = str(url.include_query_params(limit=limit, offset=offset - limit))
    return items[offset : offset + limit], {"count": count, "next": next_url, "previous": previous}


def _query(request: HttpRequest) -> dict[str, list[str]]:
    query: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        query.setdefault(key, []).append(value)
    return query


async def _json_body(request: HttpRequest) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(status_code=400, detail=f"JSON parse error - {exc}") from exc


def _not_found(model: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"No {model} matches the given query.")


# --------------------------------------------------------------------------------------------
# Routers
# --------------------------------------------------------------------------------------------


def _portal_router(state: LcoSandboxState) -> APIRouter:
    router = APIRouter()

    @router.post("/api/requestgroups/")
    async def create_request_group(request: HttpRequest) -> JSONResponse:
        received_at = time.time()
        user = _require_user(request, state)
        payload = await _json_body(request)
        status, body = state.submit(payload, user=user, received_at=received_at)
        return JSONResponse(body, status_code=status)

    @router.post("/api/requestgroups/validate/")
    async def validate_request_group(request: HttpRequest) -> JSONResponse:
        user = _require_user(request, state)
        payload = await _json_body(request)
        return JSONResponse(state.validate(payload, user=user))

    @router.get("/api/requestgroups/")
    def list_request_groups(request: HttpRequest) -> JSONResponse:
        user = _user(request, state)
        try:
            groups = state.list_groups(_query(request)) if user else []
        except ValueError as exc:
            return JSONResponse(exc.args[0], status_code=400)
        page, envelope = _page(request, groups, default_limit=state.page_size, max_limit=None)
        return JSONResponse({**envelope, "results": page})

    @router.get("/api/requestgroups/{group_id}/")
    def get_request_group(group_id: int, request: HttpRequest) -> JSONResponse:
        if _user(request, state) is None:
            raise _not_found("RequestGroup")
        try:
            return JSONResponse(state.get_group(group_id))
        except KeyError:
            raise _not_found("RequestGroup") from None

    @router.post("/api/requestgroups/{group_id}/cancel/")
    def cancel_request_group(group_id: int, request: HttpRequest) -> JSONResponse:
        _require_user(request, state)
        try:
            status, body = state.cancel(group_id)
        except KeyError:
            raise _not_found("RequestGroup") from None
        return JSONResponse(body, status_code=status)

    @router.get("/api/requests/{request_id}/")
    def get_request(request_id: int, request: HttpRequest) -> JSONResponse:
        if _user(request, state) is None:
            raise _not_found("Request")
        try:
            return JSONResponse(state.get_request(request_id))
        except KeyError:
            raise _not_found("Request") from None

    @router.get("/api/requests/{request_id}/observations/")
    def get_request_observations(request_id: int, request: HttpRequest) -> JSONResponse:
        if _user(request, state) is None:
            raise _not_found("Request")
        exclude = request.query_params.get("exclude_canceled", "").lower() in ("true", "1")
        try:
            return JSONResponse(state.observations(request_id, exclude_canceled=exclude))
        except KeyError:
            raise _not_found("Request") from None

    @router.get("/api/instruments/")
    def get_instruments(request: HttpRequest) -> JSONResponse:
        _user(request, state)
        return JSONResponse(state.instruments())

    @router.get("/api/profile/")
    def get_profile(request: HttpRequest) -> JSONResponse:
        _require_user(request, state)
        return JSONResponse(state.profile())

    return router


def _archive_router(state: LcoSandboxState) -> APIRouter:
    router = APIRouter()

    def base(request: HttpRequest) -> str:
        return str(request.base_url)

    @router.get("/frames/")
    def list_frames(request: HttpRequest) -> JSONResponse:
        user = _user(request, state, archive=True)
        try:
            entries = state.frame_entries(_query(request), authenticated=user is not None)
        except ValueError as exc:
            return JSONResponse(exc.args[0], status_code=400)
        page, envelope = _page(request, entries, default_limit=100, max_limit=1000)
        results = [state.frame_record(entry, base(request)) for entry in page]
        return JSONResponse({**envelope, "results": results, "count_estimated": False})

    @router.get("/frames/{frame_id}/")
    def get_frame(frame_id: int, request: HttpRequest) -> JSONResponse:
        user = _user(request, state, archive=True)
        try:
            entry = state.frame_entry(frame_id, authenticated=user is not None)
        except KeyError:
            raise _not_found("Frame") from None
        return JSONResponse(state.frame_record(entry, base(request)))

    @router.get("/frames/{frame_id}/headers/")
    def get_frame_headers(frame_id: int, request: HttpRequest) -> JSONResponse:
        user = _user(request, state, archive=True)
        try:
            entry = state.frame_entry(frame_id, authenticated=user is not None)
        except KeyError:
            raise _not_found("Frame") from None
        return JSONResponse({"data": state.frame_headers(entry)})

    @router.api_route("/download/{frame_id}/{filename}", methods=["GET", "HEAD"])
    def download(frame_id: int, filename: str, request: HttpRequest) -> Response:
        refusal = state.check_signature(frame_id, filename, dict(request.query_params))
        if refusal is None and not state.has_frame(frame_id):
            refusal = "The specified key does not exist."
        if refusal is not None:
            code = "NoSuchKey" if "key" in refusal else "AccessDenied"
            return Response(
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{refusal}</Message></Error>",
                status_code=404 if code == "NoSuchKey" else 403,
                media_type="application/xml",
            )
        data, md5, _ = state.frame_content(frame_id)
        return _ranged(request, data, md5)

    return router


def _ranged(request: HttpRequest, data: bytes, md5: str) -> Response:
    total = len(data)
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{md5}"'}
    header = request.headers.get("range")
    media = "application/octet-stream"
    if header:
        match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else total - 1
            else:
                start = max(0, total - int(match.group(2)))
                end = total - 1
            if start >= total or end < start:
                return Response(
                    status_code=416, headers={**headers, "Content-Range": f"bytes */{total}"}
                )
            end = min(end, total - 1)
            body = data[start : end + 1] if request.method != "HEAD" else b""
            return Response(
                body,
                status_code=206,
                media_type=media,
                headers={
                    **headers,
                    "Content-Range": f"bytes {start}-{end}/{total}",
                    "Content-Length": str(end - start + 1),
                },
            )
    body = data if request.method != "HEAD" else b""
    return Response(body, media_type=media, headers={**headers, "Content-Length": str(total)})


class _Seconds(BaseModel):
    seconds: float = Field(ge=0)


class _StateChange(BaseModel):
    state: LcoState


class _Outcomes(BaseModel):
    states: list[LcoState]


def _control_router(state: LcoSandboxState) -> APIRouter:
    router = APIRouter(prefix="/sandbox")

    @router.get("/requests")
    def submissions() -> dict[str, Any]:
        return state.submissions()

    @router.post("/requests/{request_id}/complete")
    def complete(request_id: int) -> dict[str, Any]:
        try:
            return state.complete_request(request_id)
        except KeyError:
            raise _not_found("Request") from None

    @router.post("/requests/{request_id}/state")
    def force_state(request_id: int, change: _StateChange) -> dict[str, Any]:
        try:
            return state.force_request_state(request_id, change.state)
        except KeyError:
            raise _not_found("Request") from None

    @router.post("/outcomes")
    def outcomes(body: _Outcomes) -> dict[str, Any]:
        state.queue_outcomes(body.states)
        return {"queued": [s.value for s in body.states]}

    @router.get("/clock")
    def clock() -> dict[str, str]:
        return {"now": _drf_time(state.now())}

    @router.post("/clock/advance")
    def advance(body: _Seconds) -> dict[str, str]:
        return {"now": _drf_time(state.advance(body.seconds))}

    @router.get("/faults")
    def list_faults() -> list[Fault]:
        return state.faults()

    @router.post("/faults", status_code=201)
    def add_fault(fault: Fault) -> Fault:
        try:
            return state.add_fault(fault)
        except re.error as exc:
            raise HTTPException(status_code=400, detail=f"bad endpoint pattern: {exc}") from exc

    @router.delete("/faults")
    def clear_faults() -> dict[str, int]:
        return {"deleted": state.clear_faults()}

    @router.delete("/faults/{fault_id}")
    def delete_fault(fault_id: int) -> dict[str, int]:
        return {"deleted": state.clear_faults(fault_id)}

    @router.get("/frames")
    def frames() -> list[dict[str, Any]]:
        return state.all_frame_specs()

    @router.get("/damage")
    def list_damage() -> list[FrameDamage]:
        return state.pending_damage()

    @router.post("/damage", status_code=201)
    def add_damage(damage: FrameDamage) -> FrameDamage:
        return state.add_damage(damage)

    @router.post("/reset")
    def reset() -> dict[str, str]:
        state.reset()
        return {"status": "reset"}

    return router


def _build(state: LcoSandboxState, title: str, routers: list[APIRouter]) -> FastAPI:
    app = FastAPI(
        title=title, redirect_slashes=False, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.lco = state
    for router in routers:
        app.include_router(router)
    app.include_router(_control_router(state))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: HttpRequest, exc: StarletteHTTPException) -> Response:
        # Django's APPEND_SLASH: an unknown path without its trailing slash is redirected (301).
        path = request.url.path
        if exc.status_code == 404 and not path.endswith("/"):
            scope = {**request.scope, "path": path + "/"}
            for route in app.router.routes:
                match, _ = route.matches(scope)
                if match in (Match.FULL, Match.PARTIAL):
                    return RedirectResponse(
                        str(request.url.replace(path=path + "/")), status_code=301
                    )
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    app.add_middleware(_FaultMiddleware, state=state)
    return app


def create_portal_app(state: LcoSandboxState | None = None) -> FastAPI:
    """The Observation Portal stand-in (``/api/...`` at the root, plus ``/sandbox/...``)."""
    state = state or LcoSandboxState()
    return _build(state, "LCO Observation Portal (sandbox)", [_portal_router(state)])


def create_archive_app(state: LcoSandboxState | None = None) -> FastAPI:
    """The Science Archive stand-in (``/frames/...`` and downloads at the root, plus ``/sandbox/...``)."""
    state = state or LcoSandboxState()
    return _build(state, "LCO Science Archive (sandbox)", [_archive_router(state)])


def create_app(
    state: LcoSandboxState | None = None,
    *,
    service: Literal["portal", "archive", "both"] = "both",
) -> FastAPI:
    """The LCO stand-in: the portal, the archive, or both on one app (their paths do not clash).

    Args:
        state: Shared state; a fresh real-time one by default.
        service: Which API(s) the app serves.
    """
    state = state or LcoSandboxState()
    if service == "portal":
        return create_portal_app(state)
    if service == "archive":
        return create_archive_app(state)
    return _build(
        state, "LCO portal and archive (sandbox)", [_portal_router(state), _archive_router(state)]
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m sandbox.lco [--host H] [--port P] [--token T] [--scale S]``: both APIs on one port."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--token", default="sandbox-token")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="simulated seconds per real second"
    )
    parser.add_argument("--completion-delay", type=float, default=600.0, help="simulated seconds")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    state = LcoSandboxState(
        ScaledClock(args.scale),
        token=args.token,
        completion_delay_s=args.completion_delay,
        cache_dir=args.cache_dir,
    )
    uvicorn.run(create_app(state), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
