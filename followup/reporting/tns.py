"""TNS: AT reports of new transients, sent at most once and confirmed through TNS's own reply.

The Transient Name Server takes form-encoded POSTs (``api_key`` plus a JSON ``data`` field) from a
bot identified by its ``User-Agent: tns_marker{...}``. A report is stored and processed
asynchronously: ``set/bulk-report`` answers a ``report_id``; ``get/bulk-report-reply`` answers
404 until the report is processed, then 200 with feedback codes (100 object created, 101 existing
object, 121 object name changed) or 400 with the rejection details.

TNS has quirks a client must survive without ever sending a report twice; how
:meth:`TnsClient.report_and_confirm` resolves each one:

* **An object may already be there.** A search by internal name and by position comes first; if
  TNS knows an object there, nothing is sent and its name is returned (``ALREADY_KNOWN``).
* **200 with nothing stored** (no or empty ``report_id``). A stored report always gets an id, so
  no id means TNS holds nothing to poll. The client waits one poll interval, searches again (in
  case the report arrived and was processed after all) and only then resends the *byte-identical*
  payload, at most ``max_resends`` times (default once). Identical bytes matter: if the first
  copy did arrive unseen, TNS's own guard ("An identical AT report (sender, RA/DEC, discovery
  date, internal_name) already exists") rejects the copy, which the client reads as confirmation
  (``FOUND``). A second 200 without id ends in ``NOT_STORED``: nothing confirmed, safe to try later.
* **404 for a report id that exists.** A report id is proof of storage, so the client never
  resends: it keeps polling until ``max_wait_s``, then searches by internal name and position;
  found -> ``FOUND``, else ``UNCONFIRMED`` with the report id (poll it again later with
  :meth:`TnsClient.confirm_report`).
* **504 (or a lost answer) after storing.** The report may be stored, so the client never resends
  in the same call: it searches by internal name and position until ``max_wait_s`` (the report
  shows up once processed). Found -> ``FOUND``; else ``UNCONFIRMED`` without report id. A later
  call to :meth:`report_and_confirm` searches first, so by then a stored report is found and only a
  report that really never arrived is sent again.
* **429.** The request was refused before any processing, so it is repeated after
  ``x-rate-limit-reset`` seconds (within ``max_wait_s``); beyond that, :class:`ServiceUnavailable`
  with ``retry_after`` is raised.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from enum import StrEnum
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, Field, SecretStr

from followup.exceptions import (
    NotFound,
    RequestRejected,
    ServiceError,
    ServiceUnavailable,
    UncertainOutcome,
)
from followup.models import Measurement, Target
from followup.reporting._http import ServiceClient, response_body
from followup.reporting.bands import tns_filter_id

__all__ = [
    "AT_TYPES",
    "FLUX_UNIT_AB_MAG",
    "TNS_SANDBOX_URL",
    "TNS_URL",
    "Dialect",
    "ReportIdentity",
    "TnsBotAuth",
    "TnsClient",
    "TnsFeedback",
    "TnsIdenticalReport",
    "TnsNotStored",
    "TnsObject",
    "TnsObjectDetails",
    "TnsOutcome",
    "TnsOutcomeStatus",
    "TnsRateLimit",
    "TnsReply",
    "build_at_report",
    "discovery_points",
    "report_identity",
    "tns_marker",
]

logger = logging.getLogger(__name__)

TNS_URL = "https://www.wis-tns.org/api/"
TNS_SANDBOX_URL = "https://sandbox.wis-tns.org/api/"

AT_TYPES: Mapping[str, str] = {
    "0": "Other - Undefined",
    "1": "PSN - Possible SN",
    "2": "PNV - Possible Nova",
    "3": "AGN - Known AGN",
    "4": "NUC - Possibly nuclear",
    "5": "FRB - Fast Radio Burst event",
}
"""TNS ``at_types`` ids."""

FLUX_UNIT_AB_MAG = "1"
"""TNS ``units`` id of AB magnitudes."""

Dialect = Literal["new", "legacy"]

# Field names of the two dialects TNS accepts (reference/apis.md 4.3).
_DIALECT_FIELDS: Mapping[str, Mapping[str, str]] = {
    "new": {
        "reporting_group": "reporting_group_id",
        "data_source": "discovery_data_source_id",
        "flux_units": "flux_units",
        "filter": "filter_value",
        "instrument": "instrument_value",
    },
    "legacy": {
        "reporting_group": "reporting_groupid",
        "data_source": "data_source_groupid",
        "flux_units": "flux_unitid",
        "filter": "filterid",
        "instrument": "instrumentid",
    },
}

_IDENTICAL = "an identical at report"
_T = TypeVar("_T")


def tns_marker(bot_id: int | str, bot_name: str, *, kind: Literal["bot", "user"] = "bot") -> str:
    """The ``User-Agent`` TNS identifies bots (or users) by.

    Example:
        >>> tns_marker(12345, "followup_bot")
        'tns_marker{"tns_id": 12345, "type": "bot", "name": "followup_bot"}'
    """
    if not str(bot_id).strip() or not bot_name.strip():
        raise ValueError("a TNS marker needs a bot id and a bot name")
    ident: int | str = int(bot_id) if str(bot_id).isdigit() else str(bot_id)
    return "tns_marker" + json.dumps({"tns_id": ident, "type": kind, "name": bot_name})


# ------------------------------------------------------------------------------- models
class TnsObject(BaseModel):
    """An object as the TNS search lists it.

    Attributes:
        objname: The designation without prefix, e.g. ``"2026abc"``.
        prefix: ``"AT"``, ``"SN"``...
        objid: TNS's numeric id.
    """

    objname: str
    prefix: str | None = None
    objid: int | None = None

    @property
    def full_name(self) -> str:
        """Prefix and name, e.g. ``"AT 2026abc"``."""
        return f"{self.prefix} {self.objname}" if self.prefix else self.objname


class TnsObjectDetails(TnsObject):
    """An object as ``get/object`` describes it.

    Attributes:
        ra_deg: Right ascension in degrees.
        dec_deg: Declination in degrees.
        internal_names: Internal names reporters gave it.
        discovery_date: Discovery date as TNS writes it.
        reporting_group: Name of the discovery reporting group.
        discoverer: Reporter string of the discovery report.
        object_type: Classification name, if classified.
        raw: The ``data`` TNS returned.
    """

    ra_deg: float | None = None
    dec_deg: float | None = None
    internal_names: list[str] = Field(default_factory=list)
    discovery_date: str | None = None
    reporting_group: str | None = None
    discoverer: str | None = None
    object_type: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)


class TnsFeedback(BaseModel):
    """One feedback message of a processed report (a key of ``feedback.at_report[i]``).

    Attributes:
        code: Message code: 100 created, 101 existing object, 121 name changed, ...
        message: TNS's text.
        objname: Object name the message is about.
        new_object_name: New name (code 121).
        prefix: Name prefix (code 101).
    """

    code: int
    message: str = ""
    objname: str | None = None
    new_object_name: str | None = None
    prefix: str | None = None


class TnsReply(BaseModel):
    """The answer of ``get/bulk-report-reply``.

    Attributes:
        report_id: The report asked about.
        processed: False while TNS answers 404 (not processed yet, or not found).
        objname: The object the report ended up on (``new_object_name`` after a 121).
        codes: Every feedback code, in order.
        feedback: The feedback messages.
        raw: TNS's JSON body.
    """

    report_id: str
    processed: bool
    objname: str | None = None
    codes: list[int] = Field(default_factory=list)
    feedback: list[TnsFeedback] = Field(default_factory=list)
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)

    @property
    def created(self) -> bool:
        """True when the report created a new object (code 100)."""
        return 100 in self.codes

    @property
    def existing(self) -> bool:
        """True when the report was added to an object TNS already had (code 101)."""
        return 101 in self.codes

    @property
    def renamed(self) -> bool:
        """True when TNS changed the object's name (code 121)."""
        return 121 in self.codes


class TnsRateLimit(BaseModel):
    """TNS's rate-limit headers of the last reply.

    Attributes:
        limit: ``x-rate-limit-limit``.
        remaining: ``x-rate-limit-remaining``.
        reset_s: ``x-rate-limit-reset``, seconds until the window resets.
        cone_limit: ``x-cone-rate-limit-limit`` (cone searches).
        cone_remaining: ``x-cone-rate-limit-remaining``.
        cone_reset_s: ``x-cone-rate-limit-reset``.
        seen_at: The client's clock when the headers arrived.
    """

    limit: int | None = None
    remaining: int | None = None
    reset_s: float | None = None
    cone_limit: int | None = None
    cone_remaining: int | None = None
    cone_reset_s: float | None = None
    seen_at: float | None = Field(default=None, repr=False)


class TnsOutcomeStatus(StrEnum):
    """How :meth:`TnsClient.report_and_confirm` ended."""

    CREATED = "created"
    """The reply confirmed a new object (code 100, or 121 with its new name)."""
    ATTACHED = "attached"
    """The reply confirmed the report was added to an object TNS already had (code 101)."""
    ALREADY_KNOWN = "already_known"
    """An object was found before sending; nothing was sent."""
    FOUND = "found"
    """The reply did not confirm (504, lasting 404, identical-report guard) but a search found it."""
    UNCONFIRMED = "unconfirmed"
    """A report may have arrived but nothing confirmed it within the wait; do not resend blindly."""
    NOT_STORED = "not_stored"
    """TNS answered 200 without a report id each time: nothing stored, safe to try later."""


class TnsOutcome(BaseModel):
    """The result of :meth:`TnsClient.report_and_confirm`.

    Attributes:
        status: How it ended.
        objname: The TNS designation (without prefix), when known.
        report_id: The report id TNS gave, when one was given.
        sends: ``set/bulk-report`` requests that reached TNS (429-refused ones not counted).
        reply: The last bulk-report reply, if one was processed.
        url: Link to the object page, when the name is known.
        notes: What happened and why, in order (for the ledger and the UI).
    """

    status: TnsOutcomeStatus
    objname: str | None = None
    report_id: str | None = None
    sends: int = 0
    reply: TnsReply | None = None
    url: str | None = None
    notes: list[str] = Field(default_factory=list)

    @property
    def confirmed(self) -> bool:
        """True when TNS is known to hold the object (by its reply or by a search)."""
        return self.status in {
            TnsOutcomeStatus.CREATED,
            TnsOutcomeStatus.ATTACHED,
            TnsOutcomeStatus.ALREADY_KNOWN,
            TnsOutcomeStatus.FOUND,
        }


class ReportIdentity(BaseModel):
    """What identifies the object of an AT report: its position and internal name.

    Attributes:
        ra_deg: Right ascension in degrees.
        dec_deg: Declination in degrees.
        internal_name: The reporter's internal name, if given.
    """

    ra_deg: float
    dec_deg: float
    internal_name: str | None = None


# ------------------------------------------------------------------------------- errors
class TnsNotStored(ServiceUnavailable):
    """``set/bulk-report`` answered 200 without a report id: TNS stored nothing to follow."""


class TnsIdenticalReport(RequestRejected):
    """TNS rejected a report because an identical one (sender, position, date, name) exists."""


# ------------------------------------------------------------------------------- builders
def _obsdate(m: Measurement) -> str:
    return m.date_obs.strftime("%Y-%m-%d %H:%M:%S")


def discovery_points(
    measurements: Sequence[Measurement], target_name: str | None = None
) -> tuple[Measurement, Measurement | None]:
    """The first detection of a target and the last non-detection before it.

    Args:
        measurements: Measurements of one target (or of several, with ``target_name``).
        target_name: Keep only this target's measurements.

    Returns:
        ``(first_detection, last_non_detection)``; the second is None when no non-detection
        precedes the first detection.

    Raises:
        ValueError: No measurement, several targets without ``target_name``, or no detection.
    """
    points = [m for m in measurements if target_name is None or m.target_name == target_name]
    if not points:
        raise ValueError(f"no measurements{f' of {target_name!r}' if target_name else ''}")
    names = {m.target_name for m in points}
    if len(names) > 1:
        raise ValueError(f"measurements of several targets {sorted(names)}; pass target_name")
    detections = sorted((m for m in points if m.is_detection), key=lambda m: m.date_obs)
    if not detections:
        raise ValueError(f"target {points[0].target_name!r} has no detection (S/N >= 5) to report")
    first = detections[0]
    earlier = sorted(
        (m for m in points if not m.is_detection and m.date_obs < first.date_obs),
        key=lambda m: m.date_obs,
    )
    return first, (earlier[-1] if earlier else None)


def build_at_report(
    target: Target,
    first_detection: Measurement,
    last_non_detection: Measurement | None,
    *,
    reporter: str,
    reporting_group_id: str | int,
    discovery_data_source_id: str | int,
    instrument_id: str | int,
    filter_ids: Mapping[str, str] | None = None,
    at_type: str | int = "1",
    internal_name: str | None = None,
    remarks: str = "",
    host_name: str = "",
    position_error_arcsec: float | None = None,
    observer: str = "",
    more_detections: Sequence[Measurement] = (),
    archive_id: Literal["0", "1", "2"] | None = None,
    archival_remarks: str = "",
    proprietary_period_days: int = 0,
    proprietary_period_groups: Sequence[str | int] | None = None,
    dialect: Dialect = "new",
) -> dict[str, Any]:
    """Build the ``data`` JSON of a TNS AT report for one candidate.

    TNS requires the discovery photometry point and the last non-detection before it (or archival
    information instead); magnitudes are AB (flux unit id ``"1"``).

    Args:
        target: The candidate (its position becomes the report's ra/dec).
        first_detection: The discovery point (S/N >= 5).
        last_non_detection: The last upper limit before the discovery, or None with ``archive_id``.
        reporter: Reporter string, e.g. ``"A. Author (LCO), B. Author (UCSB)"``.
        reporting_group_id: TNS group id of the reporting group.
        discovery_data_source_id: TNS group id of the data source.
        instrument_id: TNS instrument id of the camera that took the data.
        filter_ids: TNS filter ids by LCO filter code, overriding the built-in Sloan ids.
        at_type: TNS AT type id (see :data:`AT_TYPES`); ``"1"`` = PSN.
        internal_name: The reporter's name for the object (default: the target name).
        remarks: Free text.
        host_name: Host galaxy name.
        position_error_arcsec: Position uncertainty in arcsec (each axis).
        observer: Observer name for the photometry.
        more_detections: Further detections of the same target after the first.
        archive_id: TNS archive id (``"0"`` other, ``"1"`` SDSS, ``"2"`` DSS) when there is no
            non-detection.
        archival_remarks: Remarks for the archival non-detection.
        proprietary_period_days: Proprietary period in days (0 = public at once).
        proprietary_period_groups: Groups that see the report during the period (default: the
            reporting group).
        dialect: ``"new"`` field names (``reporting_group_id``, ``filter_value``...) or
            ``"legacy"`` (``reporting_groupid``, ``filterid``...). TNS accepts both.

    Returns:
        ``{"at_report": {"0": {...}}}``, ready for :meth:`TnsClient.send_at_report`.

    Raises:
        ValueError: Mismatched targets, a detection given as non-detection (or the reverse), a
            non-detection not before the discovery, neither non-detection nor archive, an unknown
            dialect, at type or filter.
    """
    if dialect not in _DIALECT_FIELDS:
        raise ValueError(f"dialect must be 'new' or 'legacy', got {dialect!r}")
    if str(at_type) not in AT_TYPES:
        raise ValueError(f"at_type must be one of {sorted(AT_TYPES)}, got {at_type!r}")
    if not reporter.strip():
        raise ValueError("reporter must name the reporting authors")
    if not first_detection.is_detection:
        raise ValueError(
            f"first_detection of {first_detection.target_name!r} is not a detection (S/N {first_detection.snr:.1f})"
        )
    for m in (first_detection, last_non_detection, *more_detections):
        if m is not None and m.target_name != target.name:
            raise ValueError(f"measurement of {m.target_name!r} given for target {target.name!r}")
    for m in more_detections:
        if not m.is_detection or m.date_obs < first_detection.date_obs:
            raise ValueError("more_detections must be detections taken after the first detection")
    if last_non_detection is not None:
        if last_non_detection.is_detection:
            raise ValueError("last_non_detection is a detection; pass an upper limit")
        if last_non_detection.date_obs >= first_detection.date_obs:
            raise ValueError(
                "the last non-detection must precede the discovery: "
                f"{last_non_detection.date_obs.isoformat()} >= {first_detection.date_obs.isoformat()}"
            )
    elif archive_id is None:
        raise ValueError("TNS needs the last non-detection before the discovery, or archive_id")
    if proprietary_period_days < 0:
        raise ValueError("proprietary_period_days must be >= 0")

    f = _DIALECT_FIELDS[dialect]
    group = str(reporting_group_id)
    instrument = str(instrument_id)

    def point(m: Measurement) -> dict[str, Any]:
        values = {
            "obsdate": _obsdate(m),
            "flux": f"{m.mag:.3f}" if m.mag is not None else "",
            "flux_error": f"{m.mag_err:.3f}" if m.mag_err is not None else "",
            "limiting_flux": f"{m.limit_mag_5sigma:.3f}",
            f["flux_units"]: FLUX_UNIT_AB_MAG,
            f["filter"]: tns_filter_id(m.band, filter_ids),
            f["instrument"]: instrument,
            "exptime": "" if m.exposure_time_s is None else f"{m.exposure_time_s:g}",
            "observer": observer,
            "comments": f"{m.method} forced photometry, S/N {m.snr:.1f}",
        }
        return values

    if last_non_detection is not None:
        nd = last_non_detection
        non_detection: dict[str, Any] = {
            "obsdate": _obsdate(nd),
            "limiting_flux": f"{nd.limit_mag_5sigma:.3f}",
            f["flux_units"]: FLUX_UNIT_AB_MAG,
            f["filter"]: tns_filter_id(nd.band, filter_ids),
            f["instrument"]: instrument,
            "exptime": "" if nd.exposure_time_s is None else f"{nd.exposure_time_s:g}",
            "observer": observer,
            "comments": "5-sigma upper limit, forced photometry at the position",
        }
    else:
        non_detection = {"archiveid": str(archive_id), "archival_remarks": archival_remarks}

    error = "" if position_error_arcsec is None else f"{position_error_arcsec:g}"
    detections = [first_detection, *sorted(more_detections, key=lambda m: m.date_obs)]
    entry: dict[str, Any] = {
        "ra": {"value": f"{target.ra:.6f}", "error": error, "units": "arcsec"},
        "dec": {"value": f"{target.dec:.6f}", "error": error, "units": "arcsec"},
        f["reporting_group"]: group,
        f["data_source"]: str(discovery_data_source_id),
        "reporter": reporter,
        "discovery_datetime": _obsdate(first_detection),
        "at_type": str(at_type),
        "internal_name": internal_name or target.name,
        "host_name": host_name,
        "host_redshift": "",
        "transient_redshift": "",
        "remarks": remarks,
        "proprietary_period_groups": [str(g) for g in (proprietary_period_groups or [group])],
        "proprietary_period": {
            "proprietary_period_value": str(proprietary_period_days),
            "proprietary_period_units": "days",
        },
        "non_detection": non_detection,
        "photometry": {"photometry_group": {str(i): point(m) for i, m in enumerate(detections)}},
    }
    return {"at_report": {"0": entry}}


def _angle_deg(value: Any, *, hours: bool) -> float:
    """Degrees from a TNS ra/dec value: decimal degrees or sexagesimal text."""
    try:
        deg = float(value)
    except (TypeError, ValueError):
        import astropy.units as u
        from astropy.coordinates import Angle  # only sexagesimal input needs astropy

        deg = Angle(str(value), unit=u.hourangle if hours else u.deg).deg
    if not math.isfinite(deg):
        raise ValueError(f"not a finite angle: {value!r}")
    return deg


def report_identity(report: Mapping[str, Any]) -> ReportIdentity:
    """Position and internal name of the single object of an AT report.

    Raises:
        ValueError: Not an ``{"at_report": {...}}`` payload, more than one report in it, or no
            readable ra/dec.
    """
    entries = report.get("at_report") if isinstance(report, Mapping) else None
    if not isinstance(entries, Mapping) or len(entries) != 1:
        raise ValueError('expected {"at_report": {"0": {...}}} holding exactly one AT report')
    entry = next(iter(entries.values()))
    try:
        ra = entry["ra"]["value"] if isinstance(entry["ra"], Mapping) else entry["ra"]
        dec = entry["dec"]["value"] if isinstance(entry["dec"], Mapping) else entry["dec"]
    except (KeyError, TypeError) as exc:
        raise ValueError("the AT report has no ra/dec value") from exc
    return ReportIdentity(
        ra_deg=_angle_deg(ra, hours=True) % 360.0,
        dec_deg=_angle_deg(dec, hours=False),
        internal_name=(entry.get("internal_name") or None),
    )


# ------------------------------------------------------------------------------- the client
class TnsBotAuth(httpx.Auth):
    """Identify the bot by TNS's ``User-Agent: tns_marker{...}`` (the api_key rides in the form)."""

    def __init__(self, marker: str) -> None:
        self._marker = marker

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Set the marker as the User-Agent."""
        request.headers["User-Agent"] = self._marker
        yield request


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class TnsClient(ServiceClient):
    """Client of the TNS bot API (``/api/``).

    Args:
        api_key: The bot's API key, sent as the ``api_key`` form field; never logged or repr'd.
        bot_id: The bot's TNS id.
        bot_name: The bot's TNS name.
        base_url: ``TNS_URL``, ``TNS_SANDBOX_URL`` or a local stand-in.
        marker_type: ``"bot"`` (or ``"user"`` for a user account).
        timeout: Seconds for connect, read and write.
        transport: An httpx transport to use instead of the network.
        sleep: Waits between polls (injectable for tests).
        clock: Monotonic seconds (injectable for tests).

    Example:
        >>> with TnsClient(SecretStr("..."), bot_id=1234, bot_name="followup_bot",
        ...                base_url=TNS_SANDBOX_URL) as tns:
        ...     outcome = tns.report_and_confirm(report, poll_interval_s=2, max_wait_s=120)
    """

    def __init__(
        self,
        api_key: SecretStr | str,
        *,
        bot_id: int | str,
        bot_name: str,
        base_url: str = TNS_URL,
        marker_type: Literal["bot", "user"] = "bot",
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        if not key.get_secret_value():
            raise ValueError("a TNS api_key is required")
        self._api_key = key
        self.marker = tns_marker(bot_id, bot_name, kind=marker_type)
        self.rate_limit = TnsRateLimit()
        self._sleep = sleep
        self._clock = clock
        super().__init__(
            base_url,
            service="TNS",
            auth=TnsBotAuth(self.marker),
            timeout=timeout,
            transport=transport,
            secrets=[key],
        )

    # --------------------------------------------------------------- plumbing
    def _post(
        self,
        path: str,
        operation: str,
        fields: Mapping[str, str],
        *,
        creates: bool = False,
        passthrough: Sequence[int] = (),
    ) -> httpx.Response:
        data = {"api_key": self._api_key.get_secret_value(), **fields}
        try:
            response = self._request(
                "POST",
                path,
                operation=operation,
                creates=creates,
                passthrough=passthrough,
                data=data,
            )
        except ServiceError as exc:
            if exc.status_code == 429:
                logger.warning(
                    "TNS %s rate limited; reset in %s s",
                    operation,
                    getattr(exc, "retry_after", None),
                )
            raise
        self._note_rate_limit(response.headers)
        return response

    def _note_rate_limit(self, headers: httpx.Headers) -> None:
        if not any(h.startswith(("x-rate-limit", "x-cone-rate-limit")) for h in headers):
            return
        self.rate_limit = TnsRateLimit(
            seen_at=self._clock(),
            limit=_int(headers.get("x-rate-limit-limit")),
            remaining=_int(headers.get("x-rate-limit-remaining")),
            reset_s=_float(headers.get("x-rate-limit-reset")),
            cone_limit=_int(headers.get("x-cone-rate-limit-limit")),
            cone_remaining=_int(headers.get("x-cone-rate-limit-remaining")),
            cone_reset_s=_float(headers.get("x-cone-rate-limit-reset")),
        )

    def _envelope(
        self, response: httpx.Response, operation: str, *, creates: bool = False
    ) -> dict[str, Any]:
        """The JSON envelope ``{"id_code", "id_message", "data"}``; an error id_code in a 200 is raised."""
        body = response_body(response)
        url = str(response.request.url)
        if not isinstance(body, dict):
            cls = UncertainOutcome if creates else ServiceUnavailable
            raise cls(
                f"TNS {operation}: HTTP {response.status_code} with a body that is not a JSON object: "
                f"{self._text(response)[:200]!r}",
                operation=operation,
                status_code=response.status_code,
                url=url,
                body=self._scrub(body),
            )
        code = _int(str(body.get("id_code"))) if body.get("id_code") is not None else None
        if response.status_code == 200 and code is not None and code >= 400:
            # TNS sometimes reports a failure inside a 200 envelope; treat it like that status.
            fake = httpx.Response(
                code, headers=response.headers, json=body, request=response.request
            )
            raise self._error_for(
                fake, where=f"TNS {operation}", operation=operation, url=url, creates=creates
            )
        return body

    def _object_url(self, objname: str | None) -> str | None:
        if not objname:
            return None
        root = self.base_url.rstrip("/")
        root = root[: -len("/api")] if root.endswith("/api") else root
        return f"{root}/object/{objname}"

    # --------------------------------------------------------------- endpoints
    def search(
        self,
        ra: float | None = None,
        dec: float | None = None,
        radius_arcsec: float = 3.0,
        *,
        internal_name: str | None = None,
        objname: str | None = None,
    ) -> list[TnsObject]:
        """Search TNS objects by position (cone), internal name or name (``get/search``).

        Args:
            ra: Right ascension in degrees (with ``dec``).
            dec: Declination in degrees.
            radius_arcsec: Cone radius in arcsec.
            internal_name: Exact internal name to look for.
            objname: Exact TNS name (``"2026abc"``) to look for.

        Returns:
            The matching objects (possibly empty).

        Raises:
            ValueError: Neither a full position nor a name was given, or a bad radius.
            ServiceUnavailable: TNS could not be reached, or 429 (``retry_after`` = reset).
            AuthenticationError: 401/403 (api key or marker refused).
        """
        if (ra is None) != (dec is None):
            raise ValueError("give ra and dec together")
        if ra is None and not internal_name and not objname:
            raise ValueError("search needs a position (ra, dec) or a name")
        if not radius_arcsec > 0:
            raise ValueError(f"radius_arcsec must be > 0, got {radius_arcsec}")
        query = {
            "ra": "" if ra is None else f"{ra:.6f}",
            "dec": "" if dec is None else f"{dec:.6f}",
            "radius": "" if ra is None else f"{radius_arcsec:g}",
            "units": "" if ra is None else "arcsec",
            "objname": objname or "",
            "objname_exact_match": 1 if objname else 0,
            "internal_name": internal_name or "",
            "internal_name_exact_match": 1 if internal_name else 0,
            "objid": "",
            "public_timestamp": "",
        }
        response = self._post("get/search", "search", {"data": json.dumps(query)})
        data = self._envelope(response, "search").get("data")
        if isinstance(data, dict):  # older replies: {"data": {"reply": [...]}}
            data = data.get("reply", [])
        if not isinstance(data, list):
            raise ServiceUnavailable(
                f"TNS search: unexpected data {data!r}",
                operation="search",
                url=str(response.request.url),
            )
        return [
            TnsObject(
                objname=str(o["objname"]), prefix=o.get("prefix"), objid=_int(str(o.get("objid")))
            )
            for o in data
            if isinstance(o, dict) and o.get("objname")
        ]

    def get_object(self, objname: str) -> TnsObjectDetails:
        """Details of one object (``get/object``).

        Raises:
            NotFound: TNS has no such object.
            ServiceUnavailable: TNS could not be reached, or 429.
        """
        query = {"objname": objname, "objid": "", "photometry": "0", "spectra": "0"}
        response = self._post("get/object", "get_object", {"data": json.dumps(query)})
        data = self._envelope(response, "get_object").get("data")
        if isinstance(data, dict) and isinstance(data.get("reply"), dict):
            data = data["reply"]
        if not isinstance(data, dict) or not data.get("objname"):
            raise NotFound(
                f"TNS get_object: no object {objname!r}",
                operation="get_object",
                status_code=response.status_code,
                url=str(response.request.url),
                body=data,
            )
        names = data.get("internal_names") or ""
        group = data.get("reporting_group")
        otype = data.get("object_type")
        return TnsObjectDetails(
            objname=str(data["objname"]),
            prefix=data.get("name_prefix") or data.get("prefix"),
            objid=_int(str(data.get("objid"))),
            ra_deg=_float(str(data.get("radeg"))),
            dec_deg=_float(str(data.get("decdeg"))),
            internal_names=[
                n.strip()
                for n in (names.split(",") if isinstance(names, str) else names)
                if n.strip()
            ],
            discovery_date=data.get("discoverydate"),
            reporting_group=group.get("group_name") if isinstance(group, dict) else group,
            discoverer=data.get("discoverer"),
            object_type=otype.get("name") if isinstance(otype, dict) else otype,
            raw=data,
        )

    def send_at_report(self, report: Mapping[str, Any]) -> str:
        """Send an AT report (``set/bulk-report``) and return the report id TNS gave it.

        This only hands the report over; TNS processes it later. Use :meth:`get_report_reply`
        or, better, :meth:`report_and_confirm`.

        Args:
            report: ``{"at_report": {"0": {...}}}`` as :func:`build_at_report` makes it.

        Returns:
            The report id (as a string).

        Raises:
            ValueError: ``report`` is not an AT report payload.
            TnsNotStored: 200 without a report id: TNS stored nothing to follow.
            UncertainOutcome: 500/502/504 or a lost answer: TNS may have stored the report.
            ServiceUnavailable: Not sent (connection refused), 429 or 503.
            AuthenticationError: 401/403.
            RequestRejected: 400 (malformed data).
        """
        if not isinstance(report, Mapping) or not isinstance(report.get("at_report"), Mapping):
            raise ValueError('send_at_report takes {"at_report": {"0": {...}}}')
        response = self._post(
            "set/bulk-report", "send_at_report", {"data": json.dumps(report)}, creates=True
        )
        body = self._envelope(response, "send_at_report", creates=True)
        data = body.get("data")
        report_id = data.get("report_id") if isinstance(data, dict) else None
        if report_id is None or str(report_id).strip() == "":
            raise TnsNotStored(
                f"TNS send_at_report: HTTP {response.status_code} without a report id "
                f"({self._scrub(json.dumps(body))[:300]}): TNS stored nothing to follow",
                operation="send_at_report",
                status_code=response.status_code,
                url=str(response.request.url),
                body=self._scrub(body),
            )
        logger.info("TNS stored AT report %s", report_id)
        return str(report_id)

    def get_report_reply(self, report_id: str | int) -> TnsReply:
        """What became of a report (``get/bulk-report-reply``).

        Returns:
            A reply with ``processed=False`` while TNS answers 404 (not processed yet), else the
            processed reply with its codes and object name.

        Raises:
            TnsIdenticalReport: Rejected because TNS already holds an identical report.
            RequestRejected: 400: the report was rejected; ``body`` is TNS's ``feedback``.
            ServiceUnavailable: TNS could not be reached, 5xx, or 429 (``retry_after``).
            AuthenticationError: 401/403.
        """
        rid = str(report_id).strip()
        if not rid:
            raise ValueError("report_id must be non-empty")
        response = self._post(
            "get/bulk-report-reply", "get_report_reply", {"report_id": rid}, passthrough=(400, 404)
        )
        if response.status_code == 404:
            return TnsReply(
                report_id=rid, processed=False, raw=self._scrub(_as_dict(response_body(response)))
            )
        body = _as_dict(response_body(response))
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        feedback = data.get("feedback", {}) if isinstance(data, dict) else {}
        if response.status_code == 400:
            summary = _feedback_summary(feedback)
            cls = (
                TnsIdenticalReport
                if _IDENTICAL in json.dumps(feedback).lower()
                else RequestRejected
            )
            raise cls(
                f"TNS rejected report {rid}: {summary}",
                operation="get_report_reply",
                status_code=400,
                url=str(response.request.url),
                body=feedback,
            )
        body = self._envelope(response, "get_report_reply")
        entries = feedback.get("at_report", []) if isinstance(feedback, dict) else []
        if isinstance(entries, dict):
            entries = list(entries.values())
        messages: list[TnsFeedback] = []
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            for key, value in entry.items():
                if str(key).isdigit() and isinstance(value, dict):
                    messages.append(
                        TnsFeedback(
                            code=int(key),
                            message=str(value.get("message", "")),
                            objname=value.get("objname"),
                            new_object_name=value.get("new_object_name"),
                            prefix=value.get("prefix"),
                        )
                    )
        if _IDENTICAL in json.dumps(entries).lower():
            raise TnsIdenticalReport(
                f"TNS report {rid}: {_feedback_summary(feedback)}",
                operation="get_report_reply",
                status_code=response.status_code,
                url=str(response.request.url),
                body=feedback,
            )
        codes = [m.code for m in messages]
        renamed = next(
            (m.new_object_name for m in messages if m.code == 121 and m.new_object_name), None
        )
        named = next((m.objname for m in messages if m.code in (100, 101) and m.objname), None)
        objname = renamed or named or next((m.objname for m in messages if m.objname), None)
        return TnsReply(
            report_id=rid,
            processed=bool(messages),
            objname=objname,
            codes=codes,
            feedback=messages,
            raw=body,
        )

    # --------------------------------------------------------------- exactly once
    def _until(self, deadline: float, call: Callable[[], _T], notes: list[str], what: str) -> _T:
        """Run ``call``; on 429/503/not-reached, wait (reset or 1 s) and repeat until ``deadline``.

        When the last reply said no requests remain in the window, wait for its reset first
        (TNS's advice), so that the budget is not burnt on 429s.
        """
        while True:
            limits = self.rate_limit
            if limits.remaining == 0 and limits.reset_s is not None and limits.seen_at is not None:
                wait = max(0.0, limits.reset_s - (self._clock() - limits.seen_at)) + 1.0
                if self._clock() + wait <= deadline:
                    notes.append(f"{what}: rate-limit window spent; waited {wait:g} s")
                    self._sleep(wait)
            try:
                return call()
            except (UncertainOutcome, TnsNotStored):
                raise
            except ServiceUnavailable as exc:
                wait = exc.retry_after if exc.retry_after is not None else 1.0
                if exc.status_code == 429:
                    wait += 1.0  # TNS's advice: sleep reset + 1 s
                if self._clock() + wait > deadline:
                    notes.append(
                        f"{what}: {exc.status_code or 'no answer'}, no time left to wait {wait:g} s"
                    )
                    raise
                notes.append(f"{what}: {exc.status_code or 'not reached'}; waited {wait:g} s")
                self._sleep(wait)

    def _find(
        self, ident: ReportIdentity, radius_arcsec: float, deadline: float, notes: list[str]
    ) -> TnsObject | None:
        """An object under the report's internal name, else the nearest one within the radius."""
        if ident.internal_name:
            hits = self._until(
                deadline, lambda: self.search(internal_name=ident.internal_name), notes, "search"
            )
            if hits:
                notes.append(
                    f"search: internal name {ident.internal_name!r} is {hits[0].full_name}"
                )
                return hits[0]
        hits = self._until(
            deadline,
            lambda: self.search(ident.ra_deg, ident.dec_deg, radius_arcsec),
            notes,
            "cone search",
        )
        if not hits:
            return None
        best = hits[0]
        if len(hits) > 1:
            best_sep = math.inf
            for hit in hits[:5]:
                try:
                    details = self._until(
                        deadline, lambda h=hit: self.get_object(h.objname), notes, "get_object"
                    )
                except (NotFound, ServiceUnavailable):
                    continue
                if details.ra_deg is None or details.dec_deg is None:
                    continue
                sep = _separation_arcsec(
                    ident.ra_deg, ident.dec_deg, details.ra_deg, details.dec_deg
                )
                if sep < best_sep:
                    best, best_sep = hit, sep
        notes.append(f"search: {best.full_name} within {radius_arcsec:g} arcsec of the position")
        return best

    def _search_internal_name(
        self, name: str, deadline: float, notes: list[str]
    ) -> TnsObject | None:
        try:
            hits = self._until(deadline, lambda: self.search(internal_name=name), notes, "search")
        except ServiceUnavailable:
            return None
        return hits[0] if hits else None

    def _try_find(
        self, ident: ReportIdentity, radius_arcsec: float, deadline: float, notes: list[str]
    ) -> TnsObject | None:
        """:meth:`_find` after something was sent: an unavailable TNS means "not found yet"."""
        try:
            return self._find(ident, radius_arcsec, deadline, notes)
        except ServiceUnavailable as exc:
            notes.append(
                f"search failed ({exc.status_code or 'not reached'}): counted as not found yet"
            )
            return None

    def _outcome(self, status: TnsOutcomeStatus, **fields: Any) -> TnsOutcome:
        outcome = TnsOutcome(status=status, url=self._object_url(fields.get("objname")), **fields)
        logger.info(
            "TNS report outcome: %s %s (report %s)",
            status.value,
            outcome.objname,
            outcome.report_id,
        )
        return outcome

    def report_and_confirm(
        self,
        report: Mapping[str, Any],
        *,
        poll_interval_s: float = 2.0,
        max_wait_s: float = 120.0,
        search_radius_arcsec: float = 3.0,
        max_resends: int = 1,
    ) -> TnsOutcome:
        """Report one object to TNS at most once and confirm the delivery through TNS itself.

        1. Search by internal name and position: an object already there is returned and nothing
           is sent.
        2. Send the report once; handle TNS's quirks as the module docstring explains (never a
           blind resend).
        3. Poll the reply (at once, again after ``poll_interval_s``, then slower) until processed
           or ``max_wait_s`` is spent, then confirm by search.

        Args:
            report: ``{"at_report": {"0": {...}}}`` with exactly one report.
            poll_interval_s: Seconds between the first reply polls (TNS processes within
                seconds); later waits grow 1.5 times each, up to 30 s, to spare the rate limit.
            max_wait_s: Total seconds this call may take, waits for rate limits included.
            search_radius_arcsec: Cone radius for "is it already there".
            max_resends: Resends allowed after a 200 without report id (0 disables them).

        Returns:
            The outcome; ``outcome.confirmed`` tells whether TNS is known to hold the object.

        Raises:
            ValueError: Not a single AT report, or bad timing arguments.
            RequestRejected: TNS rejected the report (400 reply or 400 on send): nothing stored.
            AuthenticationError: The api key or bot marker was refused.
            ServiceUnavailable: TNS stayed unreachable or rate limited before anything was sent.
        """
        if not poll_interval_s > 0 or not max_wait_s > 0:
            raise ValueError("poll_interval_s and max_wait_s must be > 0")
        if max_resends < 0:
            raise ValueError("max_resends must be >= 0")
        ident = report_identity(report)
        deadline = self._clock() + max_wait_s
        notes: list[str] = []

        found = self._find(ident, search_radius_arcsec, deadline, notes)
        if found is not None:
            notes.append("an object is already there: nothing sent")
            return self._outcome(
                TnsOutcomeStatus.ALREADY_KNOWN, objname=found.objname, sends=0, notes=notes
            )

        sends = 0
        while True:
            try:
                report_id = self._until(
                    deadline, lambda: self.send_at_report(report), notes, "send"
                )
                sends += 1
                notes.append(f"sent: report id {report_id}")
                break
            except TnsNotStored:
                sends += 1
                notes.append("sent: TNS answered 200 without a report id (nothing stored)")
                if sends > max_resends:
                    notes.append("no resend left: nothing stored, safe to try again later")
                    return self._outcome(TnsOutcomeStatus.NOT_STORED, sends=sends, notes=notes)
                self._sleep(min(poll_interval_s, max(0.0, deadline - self._clock())))
                found = self._find(ident, search_radius_arcsec, deadline, notes)
                if found is not None:
                    return self._outcome(
                        TnsOutcomeStatus.FOUND, objname=found.objname, sends=sends, notes=notes
                    )
                notes.append("nothing found by search: resending the identical payload")
            except UncertainOutcome as exc:
                sends += 1
                notes.append(
                    f"sent: no usable answer (HTTP {exc.status_code or 'none'}); TNS may hold the report: "
                    "settling by search, no resend"
                )
                return self._settle_by_search(
                    ident, search_radius_arcsec, deadline, poll_interval_s, notes, sends
                )

        return self._confirm(
            report_id, ident, search_radius_arcsec, deadline, poll_interval_s, notes, sends
        )

    def confirm_report(
        self,
        report_id: str,
        report: Mapping[str, Any],
        *,
        poll_interval_s: float = 2.0,
        max_wait_s: float = 120.0,
        search_radius_arcsec: float = 3.0,
    ) -> TnsOutcome:
        """Confirm a report sent earlier (an ``UNCONFIRMED`` outcome with an id); never sends.

        Raises:
            ValueError: Bad arguments.
            RequestRejected: TNS rejected the report.
        """
        if not poll_interval_s > 0 or not max_wait_s > 0:
            raise ValueError("poll_interval_s and max_wait_s must be > 0")
        ident = report_identity(report)
        deadline = self._clock() + max_wait_s
        return self._confirm(
            str(report_id), ident, search_radius_arcsec, deadline, poll_interval_s, [], 0
        )

    def _confirm(
        self,
        report_id: str,
        ident: ReportIdentity,
        radius: float,
        deadline: float,
        poll_interval_s: float,
        notes: list[str],
        sends: int,
    ) -> TnsOutcome:
        polls = 0
        interval = poll_interval_s
        while True:
            try:
                reply = self._until(
                    deadline, lambda: self.get_report_reply(report_id), notes, "reply"
                )
            except TnsIdenticalReport:
                notes.append("reply: TNS already holds an identical report: finding its object")
                found = self._try_find(ident, radius, deadline, notes)
                if found is not None:
                    return self._outcome(
                        TnsOutcomeStatus.FOUND,
                        objname=found.objname,
                        report_id=report_id,
                        sends=sends,
                        notes=notes,
                    )
                return self._outcome(
                    TnsOutcomeStatus.UNCONFIRMED, report_id=report_id, sends=sends, notes=notes
                )
            except ServiceUnavailable:
                break  # out of time while TNS was unavailable: settle by search below
            polls += 1
            if reply.processed:
                if reply.objname:
                    new_object = reply.created or (reply.renamed and not reply.existing)
                    status = TnsOutcomeStatus.CREATED if new_object else TnsOutcomeStatus.ATTACHED
                    notes.append(f"reply: codes {reply.codes} -> {reply.objname}")
                    return self._outcome(
                        status,
                        objname=reply.objname,
                        report_id=report_id,
                        sends=sends,
                        reply=reply,
                        notes=notes,
                    )
                notes.append(f"reply: processed (codes {reply.codes}) but no object name")
                break
            if polls % 3 == 0 and ident.internal_name:
                # TNS sometimes answers 404 for a report it holds; the object, once processed,
                # carries our internal name, which settles it without waiting out max_wait_s.
                found = self._search_internal_name(ident.internal_name, deadline, notes)
                if found is not None:
                    notes.append(
                        f"reply: still 404 after {polls} polls, but {found.full_name} carries our internal name"
                    )
                    return self._outcome(
                        TnsOutcomeStatus.FOUND,
                        objname=found.objname,
                        report_id=report_id,
                        sends=sends,
                        notes=notes,
                    )
            if self._clock() + interval > deadline:
                break
            self._sleep(interval)
            interval = _next_interval(interval, poll_interval_s)
        notes.append(
            f"reply: not confirmed after {polls} poll(s); report id {report_id} exists, so no resend"
        )
        found = self._try_find(ident, radius, deadline, notes)
        if found is not None:
            return self._outcome(
                TnsOutcomeStatus.FOUND,
                objname=found.objname,
                report_id=report_id,
                sends=sends,
                notes=notes,
            )
        notes.append("not found by search either: unconfirmed; poll the report id again later")
        return self._outcome(
            TnsOutcomeStatus.UNCONFIRMED, report_id=report_id, sends=sends, notes=notes
        )

    def _settle_by_search(
        self,
        ident: ReportIdentity,
        radius: float,
        deadline: float,
        poll_interval_s: float,
        notes: list[str],
        sends: int,
    ) -> TnsOutcome:
        searches = 0
        interval = poll_interval_s
        while True:
            searches += 1
            found = self._try_find(ident, radius, deadline, notes)
            if found is not None:
                return self._outcome(
                    TnsOutcomeStatus.FOUND, objname=found.objname, sends=sends, notes=notes
                )
            if self._clock() + interval > deadline:
                break
            self._sleep(interval)
            interval = _next_interval(interval, poll_interval_s)
        notes.append(
            f"not found after {searches} search(es): unconfirmed; a later report_and_confirm searches "
            "first, so it sends only if the report never arrived"
        )
        return self._outcome(TnsOutcomeStatus.UNCONFIRMED, sends=sends, notes=notes)


def _next_interval(interval: float, first: float) -> float:
    """Polls slow down by half each time, up to 30 s (or the first interval, if longer)."""
    return min(interval * 1.5, max(first, 30.0))


def _as_dict(body: Any) -> dict[str, Any]:
    return body if isinstance(body, dict) else {"text": body}


def _feedback_summary(feedback: Any) -> str:
    """One line of the messages inside TNS feedback."""
    found: list[str] = []

    def walk(node: Any, field: str) -> None:
        if isinstance(node, dict):
            if "message" in node:
                found.append(f"{field}: {node['message']}" if field else str(node["message"]))
                return
            for key, value in node.items():
                walk(
                    value,
                    field if str(key).isdigit() or key in ("at_report", "at_rep") else str(key),
                )
        elif isinstance(node, list):
            for value in node:
                walk(value, field)

    walk(feedback, "")
    return "; ".join(found) or json.dumps(feedback)[:300]


def _separation_arcsec(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle distance in arcsec (haversine), degrees in."""
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    h = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin((r2 - r1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h)))) * 3600.0
