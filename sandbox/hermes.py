"""A local HERMES stand-in: ``api/v0/submit_message/`` and its ``validate/`` with HERMES's own rules.

It follows LCOGT/hermes (``hermes/views.py``, ``hermes/serializers.py``): token authentication
(an unknown token is refused with 403 ``{"detail": "Invalid token."}``; no token at all is an
anonymous user), the serializer's validation with its nested Django REST Framework error dicts,
``validate/`` answering 200 in every case, the dev server's "test topics only" rule as an option,
and the quirk of an account without SCiMMA credential getting ``{"error": ...}`` with status 200.
A published message is echoed back with its ``uuid``.

Control API (not part of HERMES):

* ``GET /sandbox/messages`` -- the messages published, in order.
* ``GET/POST/DELETE /sandbox/faults`` -- inject faults (see :mod:`sandbox.fault_queue`); kinds:
  ``error_200`` (the missing-credential error with status 200), ``status`` (any status and body),
  ``hang`` (wait ``delay_s`` then answer normally); endpoints ``submit``, ``validate``.
* ``POST /sandbox/reset`` -- forget messages and faults.
"""

from __future__ import annotations

import asyncio
import copy
import math
import threading
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from sandbox.fault_queue import FaultQueue, add_fault_routes

__all__ = ["DEFAULT_TOKEN", "HermesSandboxState", "create_app", "validate_hermes_message"]

DEFAULT_TOKEN = "sandbox-hermes-token"
NO_CREDENTIAL_ERROR = "User account does not have an associated SCIMMA auth credential. Please logout and log back in."
_UNITS = ("AB mag", "Vega mag", "mJy", "erg / s / cm² / Å")
_ERROR_UNITS = ("degrees", "mas", "arcsec", "arcmin")
_REQUIRED = "This field is required."


class HermesSandboxState:
    """What the HERMES stand-in knows: accounts, published messages, pending faults.

    Args:
        tokens: API token -> user name of accounts with a SCiMMA credential.
        tokens_without_credential: Tokens of accounts lacking a SCiMMA credential (their
            submissions get HERMES's error-with-200).
        dev_server: Apply hermes-dev's rule that only topics containing ``test`` are accepted.
    """

    def __init__(
        self,
        tokens: Mapping[str, str] | None = None,
        *,
        tokens_without_credential: Iterable[str] = (),
        dev_server: bool = False,
    ) -> None:
        self.tokens = dict(tokens) if tokens is not None else {DEFAULT_TOKEN: "sandbox-user"}
        self.no_credential = set(tokens_without_credential)
        self.dev_server = dev_server
        self.messages: list[dict[str, Any]] = []
        self.faults = FaultQueue()
        self.lock = threading.Lock()

    def reset(self) -> None:
        """Forget messages and faults."""
        with self.lock:
            self.messages.clear()
        self.faults.clear()


# ------------------------------------------------------------------------------ validation
def _string(value: Any) -> str | None:
    """DRF CharField: the error for a value that is not a string-like scalar, else None."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return "Not a valid string."
    return None


def _char(
    data: Mapping[str, Any], name: str, errors: dict[str, Any], *, required: bool, blank: bool
) -> None:
    if name not in data:
        if required:
            errors[name] = [_REQUIRED]
        return
    value = data[name]
    if value is None:
        if required:
            errors[name] = ["This field may not be null."]
        return
    problem = _string(value)
    if problem:
        errors[name] = [problem]
    elif not blank and str(value).strip() == "" and required:
        errors[name] = ["This field may not be blank."]


def _float(data: Mapping[str, Any], name: str, errors: dict[str, Any]) -> None:
    value = data.get(name)
    if value is None or value == "":
        return
    try:
        number = float(value)
    except (TypeError, ValueError):
        errors[name] = ["A valid number is required."]
        return
    if isinstance(value, bool) or not math.isfinite(number):
        errors[name] = ["A valid number is required."]


def _choice(
    data: Mapping[str, Any], name: str, choices: tuple[str, ...], errors: dict[str, Any]
) -> None:
    value = data.get(name)
    if value is not None and value not in choices:
        errors[name] = [f'"{value}" is not a valid choice.']


def _date(value: Any) -> str | None:
    """HERMES's validate_date: a JD/MJD in bounds, or a string dateutil can parse."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        from dateutil.parser import parse

        try:
            parse(str(value))
        except (ValueError, OverflowError):
            return f"{value} does not parse with dateutil.parser.parse. Please specify the date in a standard format or as a JD."
        return None
    if not (2400000 < number < 2600000 or 1000 < number < 150000):
        return (
            f"Date {number} in JD format must be within bounds of 2400000 to 2600000, "
            "and in MJD format within bounds of 15000 to 150000."
        )
    return None


def _angle(value: Any, *, dec: bool) -> float | None:
    """Decimal degrees from a number or sexagesimal text (as HERMES's validate_ra/dec), or None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number is not None:
        if not math.isfinite(number) or (dec and not -90 <= number <= 90):
            return None
        return number if dec else number % 360.0
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude

    try:
        return (
            float(Latitude(str(value), unit=u.deg).deg)
            if dec
            else float(Longitude(str(value), unit=u.hourangle).deg)
        )
    except Exception:
        return None


def _list(data: Mapping[str, Any], name: str) -> tuple[list[Any] | None, Any]:
    value = data.get(name)
    if value is None:
        return [], None
    if not isinstance(value, list):
        return None, {
            "non_field_errors": [f'Expected a list of items but got type "{type(value).__name__}".']
        }
    return value, None


def _each(items: list[Any], check: Any) -> list[dict[str, Any]] | None:
    results = []
    for item in items:
        if not isinstance(item, dict):
            results.append(
                {
                    "non_field_errors": [
                        f"Invalid data. Expected a dictionary, but got {type(item).__name__}."
                    ]
                }
            )
        else:
            results.append(check(item))
    return results if any(results) else None


def _check_reference(ref: dict[str, Any]) -> dict[str, Any]:
    if ref.get("source") and ref.get("citation"):
        return {}
    if ref.get("source"):
        return {"citation": ["Must set citation with source"]}
    if ref.get("citation"):
        return {"source": ["Must set source with citation"]}
    if not ref.get("url"):
        message = "Must set source/citation or url"
        return {"source": message, "citation": message, "url": message}
    return {}


def _check_target(target: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, Any] = {}
    _char(target, "name", errors, required=True, blank=False)
    for name in ("ra", "dec"):
        value = target.get(name)
        if value not in (None, "") and _angle(value, dec=name == "dec") is None:
            errors[name] = ["Must be in a format astropy understands"]
    for name in (
        "ra_error",
        "dec_error",
        "pm_ra",
        "pm_dec",
        "distance",
        "distance_error",
        "redshift",
        "host_redshift",
    ):
        _float(target, name, errors)
    _choice(target, "ra_error_units", _ERROR_UNITS, errors)
    _choice(target, "dec_error_units", _ERROR_UNITS, errors)
    if errors:
        return errors
    ra, dec = target.get("ra"), target.get("dec")
    ra = None if ra == "" else ra
    dec = None if dec == "" else dec
    if ra is None or dec is None:
        if ra is not None:
            return {"dec": ["Must set dec if ra is set"]}
        if dec is not None:
            return {"ra": ["Must set ra if dec is set"]}
        if not target.get("orbital_elements"):
            message = "ra/dec or orbital elements are required"
            return {
                "ra": [message],
                "dec": [message],
                "orbital_elements": {"non_field_errors": [message]},
            }
    return {}


def _check_photometry(point: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, Any] = {}
    _char(point, "target_name", errors, required=True, blank=False)
    _char(point, "date_obs", errors, required=True, blank=False)
    if "date_obs" not in errors and "date_obs" in point:
        problem = _date(point["date_obs"])
        if problem:
            errors["date_obs"] = [problem]
    _char(point, "bandpass", errors, required=True, blank=False)
    for name in (
        "brightness",
        "brightness_error",
        "limiting_brightness",
        "limiting_brightness_error",
        "exposure_time",
    ):
        _float(point, name, errors)
    _choice(point, "brightness_unit", _UNITS, errors)
    _choice(point, "limiting_brightness_unit", _UNITS, errors)
    if errors:
        return errors
    if not (point.get("instrument") or point.get("telescope")):
        message = "Must have at least one of telescope or instrument set"
        return {"telescope": [message], "instrument": [message]}

    def truthy(name: str) -> bool:
        value = point.get(name)
        return value not in (None, "") and float(value) != 0.0

    if not (truthy("brightness") or truthy("limiting_brightness")):
        message = "brightness or limiting_brightness are required"
        return {"brightness": [message], "limiting_brightness": [message]}
    return {}


def _check_data(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        return {
            "non_field_errors": [
                f"Invalid data. Expected a dictionary, but got {type(data).__name__}."
            ]
        }
    errors: dict[str, Any] = {}
    if data.get("event_id") is not None and _string(data["event_id"]):
        errors["event_id"] = [_string(data["event_id"])]
    checks = {
        "references": _check_reference,
        "targets": _check_target,
        "photometry": _check_photometry,
    }
    lists: dict[str, list[Any]] = {}
    for name, check in checks.items():
        items, problem = _list(data, name)
        if problem:
            errors[name] = problem
            continue
        lists[name] = items or []
        item_errors = _each(lists[name], check)
        if item_errors:
            errors[name] = item_errors
    if errors:
        return errors
    names = [t.get("name") for t in lists["targets"]]
    duplicate = [
        {"name": ["The target name must be unique within the submission"]}
        if names.count(n) > 1
        else {}
        for n in names
    ]
    if any(duplicate):
        errors["targets"] = duplicate
    unknown = [
        {}
        if p.get("target_name") in names
        else {"target_name": ["The target_name must reference a name in your target table"]}
        for p in lists["photometry"]
    ]
    if any(unknown):
        errors["photometry"] = unknown
    return errors


def validate_hermes_message(payload: Any, *, dev_server: bool = False) -> dict[str, Any]:
    """HERMES's ``HermesMessageSerializer`` errors for a message: ``{}`` when it is valid.

    Covers the top-level fields, ``data.references``, ``data.targets`` and ``data.photometry``
    (spectroscopy and astrometry pass through unchecked in this stand-in).
    """
    if not isinstance(payload, dict):
        return {
            "non_field_errors": [
                f"Invalid data. Expected a dictionary, but got {type(payload).__name__}."
            ]
        }
    errors: dict[str, Any] = {}
    _char(payload, "title", errors, required=True, blank=False)
    _char(payload, "topic", errors, required=True, blank=False)
    _char(payload, "submitter", errors, required=True, blank=False)
    for name in ("message_text", "authors"):
        if payload.get(name) is not None and _string(payload[name]):
            errors[name] = [_string(payload[name])]
    if "topic" not in errors and dev_server and "test" not in str(payload["topic"]):
        errors["topic"] = ["Hermes Dev can only submit to a test topic."]
    if "data" in payload:
        data_errors = _check_data(payload["data"])
        if data_errors:
            errors["data"] = data_errors
    return errors


def _clean(payload: dict[str, Any]) -> dict[str, Any]:
    """The validated message as HERMES echoes it: nulls/blanks dropped, defaults filled, angles in degrees."""
    message = copy.deepcopy(payload)
    for flag in ("submit_to_tns", "submit_to_mpc", "submit_to_gcn"):
        message.pop(flag, None)
    message.setdefault("authors", "")
    message.setdefault("message_text", "")
    data = message.get("data")
    if isinstance(data, dict):
        for target in data.get("targets") or []:
            for key in [k for k, v in target.items() if v is None or v == ""]:
                del target[key]
            for name in ("ra", "dec"):
                if name in target:
                    target[name] = _angle(target[name], dec=name == "dec")
            target.setdefault("ra_error_units", "degrees")
            target.setdefault("dec_error_units", "degrees")
            target.setdefault("epoch", "2000.0")
            target.setdefault("new_discovery", False)
        for point in data.get("photometry") or []:
            for key in [k for k, v in point.items() if v is None or v == ""]:
                del point[key]
            point.setdefault("brightness_unit", "AB mag")
            point.setdefault("limiting_brightness_unit", "AB mag")
    return message


# ------------------------------------------------------------------------------ the app
def create_app(state: HermesSandboxState | None = None) -> FastAPI:
    """The HERMES stand-in as a FastAPI app (state injectable; ``app.state.hermes`` holds it)."""
    state = state if state is not None else HermesSandboxState()
    app = FastAPI(title="HERMES sandbox", description=__doc__)
    app.state.hermes = state
    add_fault_routes(
        app, state.faults, kinds=("error_200", "status", "hang"), endpoints=("submit", "validate")
    )

    @app.get("/api/v0/heartbeat/")
    async def heartbeat() -> dict[str, Any]:
        return {"status": "ok", "sandbox": True}

    @app.get("/api/v0/submit_message/")
    async def describe() -> dict[str, str]:
        return {
            "message": "This endpoint is used to send a generic hermes message (sandbox stand-in)."
        }

    @app.post("/api/v0/submit_message/validate/")
    async def validate(request: Request) -> Response:
        _, refused = _authenticate(state, request)
        if refused:
            return refused
        fault = await _injected(state, "validate")
        if fault:
            return fault
        payload, bad = await _read_json(request)
        if bad:
            return bad
        return JSONResponse(validate_hermes_message(payload, dev_server=state.dev_server))

    @app.post("/api/v0/submit_message/")
    async def submit(request: Request) -> Response:
        token, refused = _authenticate(state, request)
        if refused:
            return refused
        fault = await _injected(state, "submit")
        if fault:
            return fault
        payload, bad = await _read_json(request)
        if bad:
            return bad
        errors = validate_hermes_message(payload, dev_server=state.dev_server)
        if errors:
            return JSONResponse(errors, 400)
        if token is None or token in state.no_credential:
            # HERMES's quirk: no status set, so this error goes out as a 200.
            return JSONResponse({"error": NO_CREDENTIAL_ERROR})
        message = _clean(payload)
        message["uuid"] = str(uuid.uuid4())
        with state.lock:
            state.messages.append(
                {
                    "uuid": message["uuid"],
                    "user": state.tokens.get(token, ""),
                    "received_at": datetime.now(UTC).isoformat(),
                    "message": copy.deepcopy(message),
                }
            )
        return JSONResponse(message)

    @app.get("/sandbox/messages", tags=["sandbox control"])
    async def list_messages() -> list[dict[str, Any]]:
        with state.lock:
            return copy.deepcopy(state.messages)

    @app.post("/sandbox/reset", tags=["sandbox control"], status_code=204)
    async def reset() -> None:
        state.reset()

    return app


def _authenticate(
    state: HermesSandboxState, request: Request
) -> tuple[str | None, JSONResponse | None]:
    """DRF TokenAuthentication after SessionAuthentication: bad tokens are a 403."""
    header = request.headers.get("authorization")
    if not header:
        return None, None
    parts = header.split()
    if not parts or parts[0].lower() != "token":
        return None, None
    if len(parts) == 1:
        return None, JSONResponse({"detail": "Invalid token header. No credentials provided."}, 403)
    if len(parts) > 2:
        return None, JSONResponse(
            {"detail": "Invalid token header. Token string should not contain spaces."}, 403
        )
    if parts[1] not in state.tokens and parts[1] not in state.no_credential:
        return None, JSONResponse({"detail": "Invalid token."}, 403)
    return parts[1], None


async def _injected(state: HermesSandboxState, endpoint: str) -> Response | None:
    """The answer an injected fault gives instead of the endpoint (None: no fault, or a hang)."""
    fault = state.faults.take(endpoint)
    if fault is None:
        return None
    if fault.kind == "hang":
        await asyncio.sleep(fault.delay_s)
        return None
    if fault.kind == "error_200":
        return JSONResponse({"error": NO_CREDENTIAL_ERROR})
    body = fault.body if fault.body is not None else {"detail": "Injected failure."}
    headers = {"Retry-After": f"{fault.reset_s:g}"} if fault.reset_s is not None else None
    if isinstance(body, str):
        return Response(body, fault.status or 500, headers=headers, media_type="text/html")
    return JSONResponse(body, fault.status or 500, headers=headers)


async def _read_json(request: Request) -> tuple[Any, JSONResponse | None]:
    try:
        return await request.json(), None
    except ValueError as exc:
        return None, JSONResponse({"detail": f"JSON parse error - {exc}"}, 400)
