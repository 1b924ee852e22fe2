"""A local TNS stand-in: the bot API for AT reports, their replies, search and objects, quirks on demand.

It speaks TNS's API as reference/apis.md section 4 describes it: form-encoded POSTs carrying
``api_key`` (and ``data`` JSON or ``report_id``), a bot ``User-Agent: tns_marker{...}`` (401
otherwise), the ``{"id_code", "id_message", "data"}`` envelope, and rate-limit headers
(``x-rate-limit-*``, plus ``x-cone-rate-limit-*`` on cone searches) on every reply, with 429 once a
window's budget is spent.

Reports are stored at once and processed after ``processing_delay_s``: until then
``get/bulk-report-reply`` answers 404; afterwards 200 with feedback code 100 (new object named
``<year>aaa``, ``<year>aab``, ... after the discovery year) or 101 (an object already lies within
``match_radius_arcsec``), or 400 with the rejection details (missing fields, no discovery point,
no non-detection, non-detection after the discovery, a discovery date in the future, a group,
filter, instrument or flux-unit id not in TNS's lists (:mod:`sandbox.tns_values`), or "An identical
AT report ... already exists"). TNS does not publish the wording of its feedback; the stand-in's
names the field and the rule. Both field dialects of an AT report (``reporting_group_id``/``reporting_groupid``,
``filter_value``/``filterid``, ...) are accepted.

Control API (not part of TNS):

* ``GET /sandbox/reports``, ``GET /sandbox/objects``, ``GET /sandbox/calls`` -- what was stored,
  named and asked.
* ``POST /sandbox/objects`` -- add an object TNS "already knows": ``{"ra": 10.0, "dec": -5.0,
  "internal_names": ["ZTF26abc"]}``.
* ``POST /sandbox/process`` -- process every pending report now.
* ``GET/POST/DELETE /sandbox/faults`` -- TNS's quirks and failures (see :mod:`sandbox.fault_queue`):
  ``stored_nothing`` (bulk-report answers 200 without report id and stores nothing; variants
  ``missing``, ``empty``, ``null``), ``gateway_timeout`` (bulk-report stores the report, then
  answers 504), ``reply_404`` (bulk-report-reply answers 404 although the report exists),
  ``rate_limit`` (429 with ``x-rate-limit-reset: reset_s``), ``rename`` (the next new object is
  renamed at once: codes 100 and 121), ``status`` (any status/body), ``hang`` (answer after
  ``delay_s``; a bulk-report is stored first).
* ``POST /sandbox/reset`` -- forget reports, objects, calls and faults.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from sandbox.fault_queue import FaultQueue, add_fault_routes
from sandbox.tns_values import TnsValues

__all__ = [
    "DEFAULT_BOT",
    "SandboxObject",
    "SandboxReport",
    "TnsBot",
    "TnsSandboxState",
    "create_app",
]

_GATEWAY_TIMEOUT_HTML = (
    "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
    "<center><h1>504 Gateway Time-out</h1></center>\r\n</body>\r\n</html>\r\n"
)
_ENDPOINTS = ("bulk-report", "bulk-report-reply", "search", "object", "process")
_FAULT_KINDS = (
    "stored_nothing",
    "gateway_timeout",
    "reply_404",
    "rate_limit",
    "rename",
    "status",
    "hang",
)
_IDENTICAL = "An identical AT report (sender, RA/DEC, discovery date, internal_name) already exists"


@dataclass(frozen=True)
class TnsBot:
    """A TNS bot account: its id, name and API key."""

    bot_id: str
    name: str
    api_key: str


DEFAULT_BOT = TnsBot(bot_id="1", name="followup_sandbox_bot", api_key="sandbox-tns-api-key")


@dataclass
class SandboxObject:
    """An object the stand-in knows (``AT <objname>``)."""

    objname: str
    objid: int
    ra: float
    dec: float
    prefix: str = "AT"
    internal_names: list[str] = field(default_factory=list)
    discoverydate: str = ""
    discoverer: str = ""
    reporting_group_id: str = ""
    report_ids: list[str] = field(default_factory=list)
    former_names: list[str] = field(default_factory=list)


@dataclass
class SandboxReport:
    """A stored bulk report and what became of it."""

    report_id: str
    bot_id: str
    received_at: float
    data: dict[str, Any]
    state: str = "pending"  # pending | processed | rejected
    http_status: int | None = None
    feedback: dict[str, Any] | None = None
    objnames: list[str] = field(default_factory=list)


class _Window:
    """A fixed rate-limit window."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self.start = -math.inf
        self.used = 0

    def spend(self, now: float) -> tuple[bool, dict[str, str], float]:
        if now - self.start >= self.seconds:
            self.start, self.used = now, 0
        self.used += 1
        reset = max(0.0, self.start + self.seconds - now)
        ok = self.used <= self.limit
        remaining = max(0, self.limit - self.used)
        return (
            ok,
            {"limit": str(self.limit), "remaining": str(remaining), "reset": str(math.ceil(reset))},
            reset,
        )


class TnsSandboxState:
    """What the TNS stand-in knows.

    Args:
        bots: Accounts allowed in (default: :data:`DEFAULT_BOT`).
        processing_delay_s: Seconds between storing a report and processing it.
        match_radius_arcsec: A report within this distance of a known object is added to it (101).
        rate_limit: Requests per ``rate_window_s`` before 429.
        cone_rate_limit: Cone searches per ``rate_window_s`` before 429.
        rate_window_s: Length of a rate-limit window in seconds.
        clock: Monotonic seconds (injectable so tests control time).
        first_report_id: The first report id handed out.
        values: The id lists reports are checked against (TNS's ``get/values``).
        utc_now: The wall-clock time (a discovery date after it is refused).
    """

    def __init__(
        self,
        *,
        bots: Iterable[TnsBot] | None = None,
        processing_delay_s: float = 1.0,
        match_radius_arcsec: float = 3.0,
        rate_limit: int = 100,
        cone_rate_limit: int = 50,
        rate_window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        first_report_id: int = 1001,
        values: TnsValues | None = None,
        utc_now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.values = values or TnsValues()
        self.utc_now = utc_now
        self.bots = {b.bot_id: b for b in (bots if bots is not None else [DEFAULT_BOT])}
        self.processing_delay_s = processing_delay_s
        self.match_radius_arcsec = match_radius_arcsec
        self.clock = clock
        self.reports: dict[str, SandboxReport] = {}
        self.objects: dict[str, SandboxObject] = {}
        self.calls: list[dict[str, Any]] = []
        self.faults = FaultQueue()
        self.lock = threading.RLock()
        self._window = _Window(rate_limit, rate_window_s)
        self._cone_window = _Window(cone_rate_limit, rate_window_s)
        self._first_report_id = first_report_id
        self._next_report_id = first_report_id
        self._next_objid = 1
        self._names_per_year: dict[int, int] = {}

    def reset(self) -> None:
        """Forget reports, objects, calls and faults."""
        with self.lock:
            self.reports.clear()
            self.objects.clear()
            self.calls.clear()
            self._next_report_id = self._first_report_id
            self._next_objid = 1
            self._names_per_year.clear()
            self._window.start = self._cone_window.start = -math.inf
        self.faults.clear()

    # ----------------------------------------------------------------- objects
    def new_name(self, year: int) -> str:
        """The next designation of ``year``: ``<year>aaa``, ``<year>aab``, ..."""
        n = self._names_per_year.get(year, 0)
        self._names_per_year[year] = n + 1
        letters = ""
        for _ in range(3):
            n, r = divmod(n, 26)
            letters = chr(ord("a") + r) + letters
        return f"{year}{letters}" if n == 0 else f"{year}{chr(ord('a') + n - 1)}{letters}"

    def add_object(
        self,
        ra: float,
        dec: float,
        *,
        objname: str | None = None,
        internal_names: Iterable[str] = (),
        discoverydate: str = "",
        prefix: str = "AT",
    ) -> SandboxObject:
        """Register an object (as if reported earlier by someone else)."""
        with self.lock:
            year = (
                int(discoverydate[:4])
                if re.match(r"\d{4}", discoverydate)
                else datetime.now(UTC).year
            )
            name = objname or self.new_name(year)
            obj = SandboxObject(
                objname=name,
                objid=self._next_objid,
                ra=ra % 360.0,
                dec=dec,
                prefix=prefix,
                internal_names=list(internal_names),
                discoverydate=discoverydate,
            )
            self._next_objid += 1
            self.objects[name] = obj
            return obj

    def nearest(
        self, ra: float, dec: float, radius_arcsec: float
    ) -> list[tuple[float, SandboxObject]]:
        """Objects within ``radius_arcsec``, nearest first."""
        hits = [(_separation_arcsec(ra, dec, o.ra, o.dec), o) for o in self.objects.values()]
        return sorted((h for h in hits if h[0] <= radius_arcsec), key=lambda h: h[0])

    # ----------------------------------------------------------------- reports
    def store(self, bot_id: str, data: dict[str, Any]) -> SandboxReport:
        """Store a report for processing after the delay."""
        with self.lock:
            report = SandboxReport(
                report_id=str(self._next_report_id),
                bot_id=bot_id,
                received_at=self.clock(),
                data=data,
            )
            self._next_report_id += 1
            self.reports[report.report_id] = report
            return report

    def process_due(self, *, force: bool = False) -> int:
        """Process the reports whose delay has passed (all pending ones with ``force``)."""
        done = 0
        with self.lock:
            now = self.clock()
            for report in sorted(self.reports.values(), key=lambda r: int(r.report_id)):
                if report.state == "pending" and (
                    force or now - report.received_at >= self.processing_delay_s
                ):
                    self._process(report)
                    done += 1
        return done

    def _process(self, report: SandboxReport) -> None:
        entries = report.data.get("at_report")
        results: list[dict[str, Any]] = []
        rejected = False
        if not isinstance(entries, dict) or not entries:
            results.append({"at_report": [_msg("No AT report found in the data", 3)]})
            rejected = True
        else:
            for entry in entries.values():
                outcome, ok = self._process_entry(report, entry if isinstance(entry, dict) else {})
                results.append(outcome)
                rejected = rejected or not ok
        report.feedback = {"at_report": results}
        report.state = "rejected" if rejected else "processed"
        report.http_status = 400 if rejected else 200

    def _process_entry(
        self, report: SandboxReport, entry: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        echo = {
            k: entry.get(k)
            for k in ("internal_name", "reporter", "discovery_datetime")
            if k in entry
        }
        errors, ra, dec, discovered = _check_at_report(entry, self.values, self.utc_now())
        if errors:
            return {**errors, "at_rep": echo}, False
        internal_name = str(entry.get("internal_name") or "")
        for other in self.reports.values():
            if other is report or other.bot_id != report.bot_id or other.state != "processed":
                continue
            for previous in (other.data.get("at_report") or {}).values():
                _, pra, pdec, pdate = _check_at_report(previous, self.values, self.utc_now())
                if (
                    pra is not None
                    and str(previous.get("internal_name") or "") == internal_name
                    and pdate == discovered
                    and _separation_arcsec(ra, dec, pra, pdec) < 1.0
                ):
                    return {"at_report": [_msg(_IDENTICAL, 5)], "at_rep": echo}, False
        hits = self.nearest(ra, dec, self.match_radius_arcsec)
        if hits:
            obj = hits[0][1]
            feedback = {
                "101": {
                    "objname": obj.objname,
                    "prefix": obj.prefix,
                    "message": f"The reported object already exists: {obj.prefix} {obj.objname}",
                    "message_id": 101,
                }
            }
        else:
            obj = self.add_object(
                ra,
                dec,
                internal_names=[],
                discoverydate=discovered.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            )
            obj.discoverer = str(entry.get("reporter", ""))
            obj.reporting_group_id = str(
                _get(entry, "reporting_group_id", "reporting_groupid", "groupid") or ""
            )
            feedback = {
                "100": {
                    "objname": obj.objname,
                    "message": f"A new object was created: AT {obj.objname}",
                    "message_id": 100,
                }
            }
            if self.faults.take("process", {"rename"}) is not None:
                old = obj.objname
                new = self.new_name(discovered.year)
                del self.objects[old]
                obj.objname = new
                obj.former_names.append(old)
                self.objects[new] = obj
                feedback["121"] = {
                    "objname": old,
                    "new_object_name": new,
                    "message": f"The object name was changed from {old} to {new}",
                    "message_id": 121,
                }
        if internal_name and internal_name not in obj.internal_names:
            obj.internal_names.append(internal_name)
        obj.report_ids.append(report.report_id)
        report.objnames.append(obj.objname)
        return {**feedback, "at_rep": echo}, True


# ------------------------------------------------------------------------------ AT report rules
def _msg(message: str, message_id: int | None = None) -> dict[str, Any]:
    return {"message": message, "message_id": message_id}


def _get(entry: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = entry.get(name)
        if value not in (None, ""):
            return value
    return None


def _angle(value: Any, *, hours: bool) -> float | None:
    if isinstance(value, dict):
        value = value.get("value")
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        import astropy.units as u
        from astropy.coordinates import Angle

        try:
            number = float(Angle(str(value), unit=u.hourangle if hours else u.deg).deg)
        except Exception:
            return None
    if not math.isfinite(number) or (not hours and not -90 <= number <= 90):
        return None
    return number % 360.0 if hours else number


def _tns_date(value: Any) -> datetime | None:
    """TNS dates: ``YYYY-MM-DD HH:MM:SS[.fff]``, ``YYYY-MM-DD.fff`` (fraction of day) or a JD."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        if 2400000 < number < 2600000:
            return datetime(1858, 11, 17, tzinfo=UTC) + timedelta(days=number - 2400000.5)
        return None
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})(\.\d+)", text)
    if m:
        day = datetime.fromisoformat(m.group(1)).replace(tzinfo=UTC)
        return day + timedelta(days=float("0" + m.group(2)))
    try:
        parsed = datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _check_point(
    point: Any, values: TnsValues, *, limit_only: bool
) -> dict[str, list[dict[str, Any]]]:
    errors: dict[str, list[dict[str, Any]]] = {}
    if not isinstance(point, dict):
        return {"photometry": [_msg("Invalid photometry entry", 3)]}
    if _tns_date(point.get("obsdate")) is None:
        errors["obsdate"] = [
            _msg("Required field" if not point.get("obsdate") else "Invalid date", 3)
        ]
    value = point.get("limiting_flux") if limit_only else point.get("flux")
    try:
        float(value)
    except (TypeError, ValueError):
        errors["limiting_flux" if limit_only else "flux"] = [_msg("Required field", 3)]
    for legacy, new, kind in (
        ("flux_unitid", "flux_units", "units"),
        ("filterid", "filter_value", "filters"),
        ("instrumentid", "instrument_value", "instruments"),
    ):
        value = str(_get(point, new, legacy) or "").strip()
        if not value.isdigit():
            errors[legacy] = [_msg("Required field (a numeric id from get/values)", 3)]
        elif not values.knows(kind, value):
            errors[legacy] = [_msg(f"Invalid {kind[:-1]} id {value} (not in TNS's {kind})", 3)]
    return errors


def _check_at_report(
    entry: Any, values: TnsValues, now: datetime
) -> tuple[dict[str, Any], float | None, float | None, datetime | None]:
    """TNS's rules for one AT report: (errors by field, ra, dec, discovery date)."""
    if not isinstance(entry, dict):
        return {"at_report": [_msg("Invalid AT report", 3)]}, None, None, None
    errors: dict[str, Any] = {}
    ra = _angle(entry.get("ra"), hours=True)
    dec = _angle(entry.get("dec"), hours=False)
    if ra is None:
        errors["ra"] = [_msg("Required field" if not entry.get("ra") else "Invalid value", 3)]
    if dec is None:
        errors["dec"] = [_msg("Required field" if not entry.get("dec") else "Invalid value", 3)]
    for legacy, names in (
        ("reporting_groupid", ("reporting_group_id", "reporting_groupid", "groupid")),
        ("data_source_groupid", ("discovery_data_source_id", "data_source_groupid", "groupid")),
    ):
        value = _get(entry, *names)
        if value is None:
            errors[legacy] = [_msg("Required field", 3)]
        elif not str(value).strip().isdigit() or not values.knows("groups", value):
            errors[legacy] = [_msg(f"Invalid group id {value!r}", 3)]
    if not str(entry.get("reporter") or "").strip():
        errors["reporter"] = [_msg("Required field", 3)]
    discovered = _tns_date(entry.get("discovery_datetime"))
    if discovered is None:
        errors["discovery_datetime"] = [_msg("Required field", 3)]
    elif discovered > now:
        errors["discovery_datetime"] = [_msg("The discovery date cannot be in the future", 3)]
    if str(entry.get("at_type", "")) not in {"0", "1", "2", "3", "4", "5"}:
        errors["at_type"] = [_msg("Required field (0-5)", 3)]
    group = (
        (entry.get("photometry") or {}).get("photometry_group")
        if isinstance(entry.get("photometry"), dict)
        else None
    )
    points = list(group.values()) if isinstance(group, dict) else []
    if not points:
        errors["photometry"] = [
            _msg("At least one Photometry point - that of the discovery - should be filled", 2)
        ]
    else:
        point_errors = {
            i: e for i, p in enumerate(points) if (e := _check_point(p, values, limit_only=False))
        }
        if point_errors:
            errors["photometry"] = [
                {"photometry_group": {str(i): e for i, e in point_errors.items()}}
            ]
    nd = entry.get("non_detection")
    if not isinstance(nd, dict) or not (
        nd.get("obsdate") or str(nd.get("archiveid", "")).strip() != ""
    ):
        errors["non_detection"] = [_msg("Last non-detection or archival info must be filled", 6)]
    elif nd.get("obsdate"):
        nd_errors = _check_point(nd, values, limit_only=True)
        if nd_errors:
            errors["non_detection"] = [nd_errors]
        else:
            nd_date = _tns_date(nd["obsdate"])
            if discovered is not None and nd_date is not None and nd_date >= discovered:
                errors["non_detection"] = [
                    _msg("Last non-detection should precede the Discovery Datetime", 1)
                ]
    return errors, ra, dec, discovered


def _separation_arcsec(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    h = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin((r2 - r1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h)))) * 3600.0


# ------------------------------------------------------------------------------ the app
class _NewObject(BaseModel):
    ra: float = Field(ge=0, lt=360)
    dec: float = Field(ge=-90, le=90)
    objname: str | None = None
    internal_names: list[str] = Field(default_factory=list)
    discoverydate: str = ""
    prefix: str = "AT"


def _envelope(code: int, message: str, data: Any) -> dict[str, Any]:
    return {"id_code": code, "id_message": message, "data": data}


def _parse_marker(user_agent: str) -> dict[str, Any] | None:
    if not user_agent.startswith("tns_marker"):
        return None
    try:
        marker = json.loads(user_agent[len("tns_marker") :])
    except ValueError:
        return None
    return marker if isinstance(marker, dict) else None


def create_app(state: TnsSandboxState | None = None) -> FastAPI:
    """The TNS stand-in as a FastAPI app (state injectable; ``app.state.tns`` holds it)."""
    state = state if state is not None else TnsSandboxState()
    app = FastAPI(title="TNS sandbox", description=__doc__)
    app.state.tns = state
    add_fault_routes(app, state.faults, kinds=_FAULT_KINDS, endpoints=_ENDPOINTS)
    front = _FrontDoor(state)
    _add_report_routes(app, front)
    _add_query_routes(app, front)
    _add_control_routes(app, state)
    return app


class _FrontDoor:
    """What every TNS API call goes through: rate limits, faults, the bot's key, the reply."""

    def __init__(self, state: TnsSandboxState) -> None:
        self.state = state

    def reply(self, status: int, body: Any, headers: dict[str, str], *, endpoint: str) -> Response:
        """Answer a call and record it."""
        state = self.state
        with state.lock:
            state.calls.append({"endpoint": endpoint, "status": status, "at": state.clock()})
        if isinstance(body, str):
            return Response(body, status, headers=headers, media_type="text/html")
        return JSONResponse(body, status, headers=headers)

    def bad_request(self, message: str, headers: dict[str, str], endpoint: str) -> Response:
        """TNS's 400 with its error message."""
        body = _envelope(400, "Bad request", {"errors": message})
        return self.reply(400, body, headers, endpoint=endpoint)

    async def enter(
        self, request: Request, endpoint: str, *, cone: bool = False
    ) -> tuple[dict[str, str], TnsBot | None, dict[str, str], Response | None]:
        """Rate limit, injected faults and authentication, in that order.

        Returns:
            The form fields, the bot (None when refused), the rate-limit headers, and the
            refusal to send (None when the call may proceed).
        """
        state = self.state
        fields = {k: str(v) for k, v in (await request.form()).items()}
        headers, limited = self._spend(cone)
        if limited:
            body = _envelope(429, "Too Many Requests", {})
            return fields, None, headers, self.reply(429, body, headers, endpoint=endpoint)
        fault = state.faults.take(endpoint, {"rate_limit", "status", "hang"})
        if fault is not None and fault.kind == "hang":
            await asyncio.sleep(fault.delay_s)
        elif fault is not None and fault.kind == "rate_limit":
            reset_s = fault.reset_s if fault.reset_s is not None else 10.0
            headers.update(
                {"x-rate-limit-remaining": "0", "x-rate-limit-reset": f"{math.ceil(reset_s)}"}
            )
            body = _envelope(429, "Too Many Requests", {})
            return fields, None, headers, self.reply(429, body, headers, endpoint=endpoint)
        elif fault is not None:
            status = fault.status or 500
            body = (
                fault.body if fault.body is not None else _envelope(status, "Injected failure", {})
            )
            return fields, None, headers, self.reply(status, body, headers, endpoint=endpoint)
        marker = _parse_marker(request.headers.get("user-agent", ""))
        bot = state.bots.get(str(marker.get("tns_id"))) if marker else None
        if (
            bot is None
            or marker.get("type") != "bot"
            or marker.get("name") != bot.name
            or fields.get("api_key") != bot.api_key
        ):
            body = _envelope(401, "Unauthorized: invalid api key or tns_marker User-Agent", {})
            return fields, None, headers, self.reply(401, body, headers, endpoint=endpoint)
        state.process_due()
        return fields, bot, headers, None

    def _spend(self, cone: bool) -> tuple[dict[str, str], bool]:
        """Spend one call of the rate-limit windows; returns their headers and whether exceeded."""
        state = self.state
        now = state.clock()
        with state.lock:
            ok, window, _ = state._window.spend(now)
            headers = {f"x-rate-limit-{k}": v for k, v in window.items()}
            if cone:
                cone_ok, cone_window, _ = state._cone_window.spend(now)
                headers.update({f"x-cone-rate-limit-{k}": v for k, v in cone_window.items()})
                ok = ok and cone_ok
        return headers, not ok


def _json_field(fields: dict[str, str]) -> Any:
    try:
        return json.loads(fields.get("data", ""))
    except ValueError:
        return None


def _add_report_routes(app: FastAPI, front: _FrontDoor) -> None:
    """``set/bulk-report`` and ``get/bulk-report-reply``."""
    state = front.state

    @app.post("/api/set/bulk-report")
    async def bulk_report(request: Request) -> Response:
        endpoint = "bulk-report"
        fields, bot, headers, refused = await front.enter(request, endpoint)
        if refused or bot is None:
            return refused
        data = _json_field(fields)
        if not isinstance(data, dict) or not ({"at_report", "classification_report"} & set(data)):
            return front.bad_request(
                'data must be JSON {"at_report": {...}} or {"classification_report": {...}}',
                headers,
                endpoint,
            )
        quirk = state.faults.take(endpoint, {"stored_nothing", "gateway_timeout"})
        if quirk is not None and quirk.kind == "stored_nothing":
            variant = quirk.variant or "missing"
            payload: dict[str, Any] = (
                {} if variant == "missing" else {"report_id": "" if variant == "empty" else None}
            )
            return front.reply(200, _envelope(200, "OK", payload), headers, endpoint=endpoint)
        report = state.store(bot.bot_id, copy.deepcopy(data))
        if quirk is not None and quirk.kind == "gateway_timeout":
            return front.reply(504, _GATEWAY_TIMEOUT_HTML, headers, endpoint=endpoint)
        body = _envelope(200, "OK", {"report_id": int(report.report_id)})
        return front.reply(200, body, headers, endpoint=endpoint)

    @app.post("/api/get/bulk-report-reply")
    async def bulk_report_reply(request: Request) -> Response:
        endpoint = "bulk-report-reply"
        fields, _, headers, refused = await front.enter(request, endpoint)
        if refused:
            return refused
        report_id = fields.get("report_id", "").strip()
        report = state.reports.get(report_id)
        not_found = _envelope(
            404, "Not found: the report does not exist or is not processed yet", {}
        )
        if report is not None and state.faults.take(endpoint, {"reply_404"}) is not None:
            return front.reply(404, not_found, headers, endpoint=endpoint)
        if report is None or report.state == "pending":
            return front.reply(404, not_found, headers, endpoint=endpoint)
        status = report.http_status or 200
        message = "OK" if status == 200 else "Bad request"
        body = _envelope(status, message, {"feedback": copy.deepcopy(report.feedback)})
        return front.reply(status, body, headers, endpoint=endpoint)


def _search(
    state: TnsSandboxState, query: dict[str, Any], cone: bool
) -> list[SandboxObject] | None:
    """Objects a ``get/search`` query finds (None when its cone is malformed)."""
    with state.lock:
        candidates = list(state.objects.values())
        if cone:
            ra = _angle(query.get("ra"), hours=True)
            dec = _angle(query.get("dec"), hours=False)
            try:
                radius = float(query.get("radius") or 5.0)
            except (TypeError, ValueError):
                radius = math.nan
            scale = {"arcsec": 1.0, "arcmin": 60.0, "deg": 3600.0}.get(
                str(query.get("units") or "arcsec")
            )
            if ra is None or dec is None or scale is None or not radius > 0:
                return None
            candidates = [o for _, o in state.nearest(ra, dec, radius * scale)]
        name = str(query.get("objname") or "").strip()
        if name:
            exact = str(query.get("objname_exact_match", "0")) in ("1", "true", "True")
            candidates = [
                o
                for o in candidates
                if (o.objname == name or name in o.former_names)
                or (not exact and name in o.objname)
            ]
        internal = str(query.get("internal_name") or "").strip()
        if internal:
            exact = str(query.get("internal_name_exact_match", "0")) in ("1", "true", "True")
            candidates = [
                o
                for o in candidates
                if any(n == internal or (not exact and internal in n) for n in o.internal_names)
            ]
        return candidates if (cone or name or internal) else []


def _add_query_routes(app: FastAPI, front: _FrontDoor) -> None:
    """``get/search`` and ``get/object``."""
    state = front.state

    @app.post("/api/get/search")
    async def search(request: Request) -> Response:
        endpoint = "search"
        body = await request.form()
        query = _loads(str(body.get("data", "")))
        cone = isinstance(query, dict) and str(query.get("ra", "")).strip() != ""
        _, _, headers, refused = await front.enter(request, endpoint, cone=cone)
        if refused:
            return refused
        if not isinstance(query, dict):
            return front.bad_request("data must be a JSON object", headers, endpoint)
        found = _search(state, query, cone)
        if found is None:
            return front.bad_request("invalid ra, dec, radius or units", headers, endpoint)
        rows = [{"objname": o.objname, "prefix": o.prefix, "objid": o.objid} for o in found]
        return front.reply(200, _envelope(200, "OK", rows), headers, endpoint=endpoint)

    @app.post("/api/get/object")
    async def get_object(request: Request) -> Response:
        endpoint = "object"
        fields, _, headers, refused = await front.enter(request, endpoint)
        if refused:
            return refused
        query = _json_field(fields)
        if not isinstance(query, dict) or not (query.get("objname") or query.get("objid")):
            return front.bad_request("data must be JSON with objname or objid", headers, endpoint)
        name, objid = str(query.get("objname") or ""), str(query.get("objid") or "")
        with state.lock:
            obj = next(
                (
                    o
                    for o in state.objects.values()
                    if o.objname == name or str(o.objid) == objid or name in o.former_names
                ),
                None,
            )
        if obj is None:
            return front.reply(404, _envelope(404, "Not found", {}), headers, endpoint=endpoint)
        data = {
            "objname": obj.objname,
            "name_prefix": obj.prefix,
            "objid": obj.objid,
            "radeg": obj.ra,
            "decdeg": obj.dec,
            "internal_names": ", ".join(obj.internal_names),
            "discoverydate": obj.discoverydate,
            "discoverer": obj.discoverer,
            "reporting_group": {"group_id": obj.reporting_group_id},
            "object_type": {"name": None, "id": None},
        }
        return front.reply(200, _envelope(200, "OK", data), headers, endpoint=endpoint)


def _add_control_routes(app: FastAPI, state: TnsSandboxState) -> None:
    """The sandbox's own control API under ``/sandbox/``."""

    @app.get("/sandbox/reports", tags=["sandbox control"])
    async def list_reports() -> list[dict[str, Any]]:
        state.process_due()
        with state.lock:
            return [copy.deepcopy(asdict(r)) for r in state.reports.values()]

    @app.get("/sandbox/objects", tags=["sandbox control"])
    async def list_objects() -> list[dict[str, Any]]:
        state.process_due()
        with state.lock:
            return [copy.deepcopy(asdict(o)) for o in state.objects.values()]

    @app.post("/sandbox/objects", tags=["sandbox control"], status_code=201)
    async def add_object(obj: _NewObject) -> dict[str, Any]:
        created = state.add_object(
            obj.ra,
            obj.dec,
            objname=obj.objname,
            internal_names=obj.internal_names,
            discoverydate=obj.discoverydate,
            prefix=obj.prefix,
        )
        return asdict(created)

    @app.post("/sandbox/process", tags=["sandbox control"])
    async def process_now() -> dict[str, int]:
        return {"processed": state.process_due(force=True)}

    @app.get("/sandbox/calls", tags=["sandbox control"])
    async def list_calls() -> list[dict[str, Any]]:
        with state.lock:
            return copy.deepcopy(state.calls)

    @app.post("/sandbox/reset", tags=["sandbox control"], status_code=204)
    async def reset() -> None:
        state.reset()


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
