"""A local Gravitational Wave Treasure Map stand-in: the ``/api/v0`` pointings endpoints.

It follows TheTreasureMap/gwtm (``src/api_v0.py`` and ``pointing.from_json`` in
``src/models.py``; the enums of ``server/core/enums``): the token comes in the JSON body (or the
query string of a GET) as ``api_token``, and a request the API refuses outright is answered with
HTTP 500 and a plain-text reason, as the real one does: ``api_token is required``, ``Invalid
api_token``, ``graceid is required``, ``Invalid graceid``, ``Invalid request: json pointing or
json list of pointings are required``. Each pointing is checked on its own and a refused one is
listed in ``ERRORS`` as ``["Object: <its json>", [reasons]]`` while the others are stored:

* a new pointing needs ``ra``/``dec`` as decimals ("Invalid position argument..."),
  ``instrumentid`` of a known instrument ("Field instrumentid is required", "Invalid
  instrumentid. Can be id or name of instrument"), ``depth_unit`` ("depth_unit is required",
  "Invalid depth_unit..."), ``time`` in ``%Y-%m-%dT%H:%M:%S.%f`` form, ``depth`` when completed
  ("depth is required for completed observations") and a ``band`` of GWTM's bandpass list
  (`Field "band" is invalid...`); a ``status`` other than planned or completed is refused here
  (the real one silently ignores it);
* a posted ``id`` completes the submitter's planned pointing; one already completed or
  cancelled is refused ("This pointing has already been completed").

``POST /api/v0/update_pointings`` cancels the submitter's planned pointings of ``ids`` (a JSON
list in a string) and answers ``Updated N Pointings successfully``. The Treasure Map knows only GW
events: a graceid must look like an LVK superevent (``S250101ab``, mock ``MS...``, ``GW...``) or
be registered at ``POST /sandbox/events``.

Control API (not part of the Treasure Map): ``GET /sandbox/pointings``, ``POST /sandbox/events``
(``{"graceid": ...}``), ``POST /sandbox/reset``, and faults at ``/sandbox/faults`` (kinds
``status`` and ``hang``, endpoint ``pointings``).
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import threading
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from sandbox.fault_queue import FaultQueue, add_fault_routes

__all__ = ["BANDS", "DEFAULT_INSTRUMENTS", "DEFAULT_TOKEN", "TreasureMapState", "create_app"]

DEFAULT_TOKEN = "sandbox-treasuremap-token"

BANDS: tuple[str, ...] = (
    "U", "B", "V", "R", "I", "J", "H", "K", "u", "g", "r", "i", "z", "UVW1", "UVW2", "UVM2",
    "XRT", "clear", "open", "UHF", "VHF", "L", "S", "C", "X", "other", "TESS", "BAT", "HESS",
    "WISEL", "q",
)  # fmt: skip
"""GWTM's bandpass names, in the order of their ids (1..31)."""

STATUSES = ("planned", "completed", "cancelled")
DEPTH_UNITS = ("ab_mag", "vega_mag", "flux_erg", "flux_jy")

DEFAULT_INSTRUMENTS: dict[int, str] = {
    101: "LCO 1m Sinistro",
    102: "LCO 2m MuSCAT3",
    103: "LCO 0.4m QHY600",
}
"""The sandbox's instrument table (ids of its own; the real ones are looked up on the site)."""

_LVK_ID = re.compile(r"^(M?S\d{6}[a-z]{1,3}|GW\d{6}(_\d{6})?)$")
_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S")


def _is_number(value: Any, kind: type[float] | type[int]) -> bool:
    """Whether ``kind(value)`` reads the value (a bool is not a number here)."""
    if isinstance(value, bool):
        return False
    try:
        kind(value)
    except (TypeError, ValueError):
        return False
    return True


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    return None


class TreasureMapState:
    """What the Treasure Map stand-in knows.

    Args:
        tokens: API token -> user id (default one user with :data:`DEFAULT_TOKEN`).
        instruments: Instrument id -> name (default :data:`DEFAULT_INSTRUMENTS`).
        first_id: Id of the first pointing stored.
    """

    def __init__(
        self,
        tokens: dict[str, int] | None = None,
        *,
        instruments: dict[int, str] | None = None,
        first_id: int = 1,
    ) -> None:
        self.tokens = dict(tokens) if tokens is not None else {DEFAULT_TOKEN: 1}
        self.instruments = dict(instruments or DEFAULT_INSTRUMENTS)
        self.events: set[str] = set()
        self.pointings: dict[int, dict[str, Any]] = {}
        self.faults = FaultQueue()
        self.lock = threading.Lock()
        self._next = first_id

    def reset(self) -> None:
        """Forget pointings, registered events and faults."""
        with self.lock:
            self.pointings.clear()
            self.events.clear()
        self.faults.clear()

    def knows(self, graceid: str) -> bool:
        """True for an LVK superevent id or a registered event."""
        return bool(_LVK_ID.match(graceid)) or graceid in self.events

    def _instrument(self, value: Any) -> int | None:
        if _is_number(value, int) and int(value) in self.instruments:
            return int(value)
        if isinstance(value, str):
            return next((i for i, n in self.instruments.items() if n == value), None)
        return None

    def check(self, p: Any, user: int) -> tuple[dict[str, Any] | None, list[str]]:
        """One pointing as ``pointing.from_json`` judges it: the record to store, or the reasons."""
        if not isinstance(p, dict):
            return None, ["Invalid pointing: a JSON object is required"]
        errors: list[str] = []
        record: dict[str, Any] = {"submitterid": user}
        planned = "id" in p
        if planned:
            existing = self.pointings.get(int(p["id"])) if _is_number(p["id"], int) else None
            if existing is None or existing["submitterid"] != user:
                return None, ["Invalid planned pointing id"]
            if existing["status"] != "planned":
                errors.append("This pointing has already been " + existing["status"])
            record.update(copy.deepcopy(existing))
            record["status"] = "completed"
        if "status" in p:
            if p["status"] in ("planned", "completed", 1, 2):
                status = p["status"]
                record["status"] = STATUSES[status - 1] if isinstance(status, int) else status
            else:
                errors.append("Invalid status. Only 'planned' or 'completed' can be posted")
        elif not planned:
            record["status"] = "completed"
        if not planned:
            ra, dec = p.get("ra", p.get("RA")), p.get("dec", p.get("DEC"))
            if not (_is_number(ra, float) and _is_number(dec, float)) or not (
                0 <= float(ra) < 360 and -90 <= float(dec) <= 90
            ):
                errors.append(
                    "Invalid position argument. Must be decimal format ra/RA, dec/DEC, or "
                    'geometry type "POINT(RA DEC)"'
                )
            else:
                record["position"] = f"POINT({float(ra)} {float(dec)})"
            if "instrumentid" not in p:
                errors.append("Field instrumentid is required")
            elif (instrument := self._instrument(p["instrumentid"])) is None:
                errors.append("Invalid instrumentid. Can be id or name of instrument")
            else:
                record["instrumentid"] = instrument
            if p.get("band") in BANDS:
                record["band"] = p["band"]
            else:
                errors.append(
                    'Field "band" is invalid, or manually state the wavelength, frequency, or '
                    "energy regime of your observation"
                )
        if "depth" in p:
            if _is_number(p["depth"], float):
                record["depth"] = float(p["depth"])
            else:
                errors.append("Invalid depth. Must be decimal")
        elif record.get("status") == "completed" and record.get("depth") is None:
            errors.append("depth is required for completed observations")
        if "depth_unit" not in p:
            errors.append("depth_unit is required")
        elif p["depth_unit"] in DEPTH_UNITS:
            record["depth_unit"] = p["depth_unit"]
        else:
            errors.append("Invalid depth_unit. Must be ab_mag, vega_mag, flux_erg, or flux_jy")
        if "pos_angle" in p:
            if _is_number(p["pos_angle"], float):
                record["pos_angle"] = float(p["pos_angle"])
            else:
                errors.append("Invalid pos_angle. Must be decimal")
        if "time" in p:
            when = _parse_time(p["time"])
            if when is None:
                errors.append(
                    "Error parsing date. Should be %Y-%m-%dT%H:%M:%S.%f format. e.g. "
                    "2019-05-01T12:00:00.00"
                )
            else:
                record["time"] = when.strftime("%Y-%m-%dT%H:%M:%S")
        elif record.get("status") == "planned":
            errors.append(
                'Field "time" is required for when the pointing is planned to be observed'
            )
        else:
            errors.append('Field "time" is required for the observed pointing')
        return (None, errors) if errors else (record, [])

    def store(self, record: dict[str, Any], graceid: str, replaces: int | None) -> int:
        """Store a checked pointing (a completion replaces its planned one's state) and its id."""
        with self.lock:
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
            if replaces is not None:
                self.pointings[replaces].update(record, dateupdated=now)
                return replaces
            pointing_id = self._next
            self._next += 1
            self.pointings[pointing_id] = {
                **record,
                "id": pointing_id,
                "graceid": graceid,
                "datecreated": now,
            }
            return pointing_id


def create_app(state: TreasureMapState | None = None) -> FastAPI:
    """The Treasure Map stand-in as a FastAPI app (``app.state.treasuremap`` holds its state)."""
    state = state if state is not None else TreasureMapState()
    app = FastAPI(title="Treasure Map sandbox", description=__doc__)
    app.state.treasuremap = state
    add_fault_routes(app, state.faults, kinds=("status", "hang"), endpoints=("pointings",))

    def refuse(message: str) -> Response:
        return PlainTextResponse(message, 500)

    async def args_of(request: Request) -> dict[str, Any] | None:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            return body
        return dict(request.query_params) if request.method == "GET" else None

    def user_of(args: dict[str, Any]) -> int | Response:
        if "api_token" not in args:
            return refuse("api_token is required")
        user = state.tokens.get(args["api_token"]) if isinstance(args["api_token"], str) else None
        return refuse("Invalid api_token") if user is None else user

    @app.post("/api/v0/pointings")
    async def post_pointings(request: Request) -> Response:
        args = await args_of(request)
        if args is None:
            return refuse("Endpoint only accepts json argument parameters")
        user = user_of(args)
        if isinstance(user, Response):
            return user
        graceid = args.get("graceid")
        if not isinstance(graceid, str):
            return refuse("graceid is required")
        if not state.knows(graceid):
            return refuse("Invalid graceid")
        if "pointing" in args:
            pointings = [args["pointing"]]
        elif isinstance(args.get("pointings"), list):
            pointings = args["pointings"]
        else:
            return refuse(
                "Invalid request: json pointing or json list of pointings are required\n"
                "You can find API documentation here: treasuremap.space/documentation.com"
            )
        fault = state.faults.take("pointings")
        if fault is not None and fault.kind == "status" and fault.variant != "after_store":
            return PlainTextResponse(str(fault.body or "Injected failure"), fault.status or 500)
        ids, errors = [], []
        for p in pointings:
            record, reasons = state.check(p, user)
            if record is None:
                errors.append(["Object: " + json.dumps(p), reasons])
                continue
            replaces = int(p["id"]) if isinstance(p, dict) and "id" in p else None
            ids.append(state.store(record, graceid, replaces))
        if fault is not None and fault.kind == "status":
            return PlainTextResponse(str(fault.body or "Injected failure"), fault.status or 500)
        if fault is not None and fault.kind == "hang":
            await asyncio.sleep(fault.delay_s)
        return JSONResponse({"pointing_ids": ids, "ERRORS": errors, "WARNINGS": []})

    @app.get("/api/v0/pointings")
    async def get_pointings(request: Request) -> Response:
        args = await args_of(request) or {}
        user = user_of(args)
        if isinstance(user, Response):
            return user
        with state.lock:
            found = [copy.deepcopy(p) for p in state.pointings.values()]
        if "graceid" in args:
            found = [p for p in found if p["graceid"] == args["graceid"]]
        if "status" in args:
            if args["status"] not in STATUSES:
                return refuse(
                    f"Invalid status: f{args['status']}. Only 'completed', 'planned', and "
                    "'cancelled'"
                )
            found = [p for p in found if p["status"] == args["status"]]
        return JSONResponse([{k: v for k, v in p.items() if k != "graceid"} for p in found])

    @app.post("/api/v0/update_pointings")
    async def update_pointings(request: Request) -> Response:
        args = await args_of(request) or {}
        user = user_of(args)
        if isinstance(user, Response):
            return user
        if args.get("status", "cancelled") != "cancelled":
            return refuse("planned status can only be updated to 'cancelled'")
        try:
            if "id" in args:
                ids = [int(args["id"])]
            elif "ids" in args:
                ids = [int(i) for i in json.loads(args["ids"])]
            else:
                return refuse("id or ids of pointing event is required")
        except (TypeError, ValueError):
            return refuse("There was a problem reading your list of ids")
        updated = 0
        with state.lock:
            for pointing_id in ids:
                p = state.pointings.get(pointing_id)
                if p and p["submitterid"] == user and p["status"] == "planned":
                    p["status"] = "cancelled"
                    p["dateupdated"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
                    updated += 1
        return PlainTextResponse(f"Updated {updated} Pointings successfully", 200)

    @app.get("/api/v0/instruments")
    async def instruments(request: Request) -> Response:
        args = await args_of(request) or {}
        user = user_of(args)
        if isinstance(user, Response):
            return user
        return JSONResponse(
            [{"id": i, "instrument_name": n} for i, n in sorted(state.instruments.items())]
        )

    @app.get("/sandbox/pointings", tags=["sandbox control"])
    async def list_pointings() -> list[dict[str, Any]]:
        with state.lock:
            return [copy.deepcopy(p) for p in state.pointings.values()]

    @app.post("/sandbox/events", tags=["sandbox control"], status_code=204)
    async def register_event(request: Request) -> None:
        body = await request.json()
        state.events.add(str(body["graceid"]))

    @app.post("/sandbox/reset", tags=["sandbox control"], status_code=204)
    async def reset() -> None:
        state.reset()

    return app
