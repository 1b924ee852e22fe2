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
* **429.** The request was refused before any processing. Before anything was sent, that is a
  :class:`ServiceUnavailable` with ``retry_after`` (``x-rate-limit-reset`` plus one second, TNS's
  advice) for the calling task to retry; its retry searches first. While a reply is polled, the
  next poll simply waits that long. When the last reply said the window is spent
  (``x-rate-limit-remaining: 0``), the next call waits for the reset first.

The client never retries a failed call by itself (the Prefect task does). The waits inside
:meth:`TnsClient.report_and_confirm` are the protocol's own (TNS processes reports
asynchronously: reply polls and confirming searches), all bounded by its ``max_wait_s``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Literal, TypeVar

import httpx
from pydantic import SecretStr

from followup.exceptions import NotFound, RequestRejected, ServiceUnavailable, UncertainOutcome
from followup.http import ServiceClient, required_secret, response_body
from followup.reporting.at_report import (
    AT_TYPES,
    FLUX_UNIT_AB_MAG,
    AtDiscovery,
    Dialect,
    ReportIdentity,
    TnsReporter,
    build_at_report,
    discovery_points,
    report_identity,
)
from followup.reporting.tns_models import (
    TnsFeedback,
    TnsObject,
    TnsObjectDetails,
    TnsOutcome,
    TnsOutcomeStatus,
    TnsRateLimit,
    TnsReply,
)

__all__ = [
    "AT_TYPES",
    "FLUX_UNIT_AB_MAG",
    "TNS_SANDBOX_URL",
    "TNS_URL",
    "AtDiscovery",
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
    "TnsReporter",
    "build_at_report",
    "discovery_points",
    "report_identity",
    "tns_marker",
]

logger = logging.getLogger(__name__)

TNS_URL = "https://www.wis-tns.org/api/"
TNS_SANDBOX_URL = "https://sandbox.wis-tns.org/api/"

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


# ------------------------------------------------------------------------------- errors
class TnsNotStored(ServiceUnavailable):
    """``set/bulk-report`` answered 200 without a report id: TNS stored nothing to follow."""


class TnsIdenticalReport(RequestRejected):
    """TNS rejected a report because an identical one (sender, position, date, name) exists."""


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
    """Client of the TNS bot API (``/api/``); errors follow :mod:`followup.http`.

    Args:
        api_key: The bot's API key, sent as the ``api_key`` form field; never logged or repr'd.
        bot_id: The bot's TNS id.
        bot_name: The bot's TNS name.
        base_url: ``TNS_URL``, ``TNS_SANDBOX_URL`` or a local stand-in.
        marker_type: ``"bot"`` (or ``"user"`` for a user account).
        timeout: Seconds for connect, read and write.
        transport: An httpx transport to use instead of the network.
        sleep: Waits between reply polls and searches (injectable for tests).
        clock: Monotonic seconds (injectable for tests).

    Example:
        >>> with TnsClient(SecretStr("..."), bot_id=1234, bot_name="followup_bot",
        ...                base_url=TNS_SANDBOX_URL) as tns:
        ...     outcome = tns.report_and_confirm(report, poll_interval_s=2, max_wait_s=120)
    """

    service = "TNS"

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
        key = required_secret(api_key, "a TNS api_key")
        self._api_key = key
        self.marker = tns_marker(bot_id, bot_name, kind=marker_type)
        self.rate_limit = TnsRateLimit()
        self._sleep = sleep
        self._clock = clock
        super().__init__(
            base_url,
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
        except ServiceUnavailable as exc:
            if exc.status_code == 429:
                # TNS's advice: wait for the reset, then one second more.
                exc.retry_after = (exc.retry_after or 0.0) + 1.0
                logger.warning("TNS %s rate limited; retry in %g s", operation, exc.retry_after)
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
        body = self._json(response, operation=operation, creates=creates)
        code = _int(str(body.get("id_code"))) if body.get("id_code") is not None else None
        if response.status_code == 200 and code is not None and code >= 400:
            # TNS sometimes reports a failure inside a 200 envelope; treat it like that status.
            raise self._status_error(
                response, operation=operation, creates=creates, status=code, body=body
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
    def _paced(self, deadline: float, call: Callable[[], _T], notes: list[str], what: str) -> _T:
        """Run ``call`` once; first wait for the rate-limit reset when the last reply spent it.

        TNS's advice is to wait for ``x-rate-limit-reset`` (plus one second) once
        ``x-rate-limit-remaining`` reaches 0, so that the budget is not burnt on 429s. The wait
        is skipped when it would pass ``deadline``; the call then meets the 429 and raises. A
        failed call is not repeated here.
        """
        limits = self.rate_limit
        if limits.remaining == 0 and limits.reset_s is not None and limits.seen_at is not None:
            wait = max(0.0, limits.reset_s - (self._clock() - limits.seen_at)) + 1.0
            if self._clock() + wait <= deadline:
                notes.append(f"{what}: rate-limit window spent; waited {wait:g} s")
                self._sleep(wait)
                self.rate_limit = TnsRateLimit()  # the window has reset
        return call()

    def _find(
        self, ident: ReportIdentity, radius_arcsec: float, deadline: float, notes: list[str]
    ) -> TnsObject | None:
        """An object under the report's internal name, else the nearest one within the radius."""
        if ident.internal_name:
            hits = self._paced(
                deadline, lambda: self.search(internal_name=ident.internal_name), notes, "search"
            )
            if hits:
                notes.append(
                    f"search: internal name {ident.internal_name!r} is {hits[0].full_name}"
                )
                return hits[0]
        hits = self._paced(
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
                    details = self._paced(
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
            hits = self._paced(deadline, lambda: self.search(internal_name=name), notes, "search")
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
            max_wait_s: Total seconds this call may wait (reply polls, confirming searches and
                rate-limit resets).
            search_radius_arcsec: Cone radius for "is it already there".
            max_resends: Resends allowed after a 200 without report id (0 disables them).

        Returns:
            The outcome; ``outcome.confirmed`` tells whether TNS is known to hold the object.

        Raises:
            ValueError: Not a single AT report, or bad timing arguments.
            RequestRejected: TNS rejected the report (400 reply or 400 on send): nothing stored.
            AuthenticationError: The api key or bot marker was refused.
            ServiceUnavailable: TNS was unreachable, rate limited or answering 503 before a report
                was stored (the first search, or a send): nothing to confirm. The calling task
                retries after ``retry_after``; the retry searches first.
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
                report_id = self._paced(
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
            wait = interval
            try:
                reply = self._paced(
                    deadline, lambda: self.get_report_reply(report_id), notes, "reply"
                )
            except TnsIdenticalReport:
                notes.append("reply: TNS already holds an identical report: finding its object")
                found = self._try_find(ident, radius, deadline, notes)
                return self._found_or_unconfirmed(found, report_id, sends, notes)
            except ServiceUnavailable as exc:
                # A poll that got no answer is a poll without news: the next one waits at least
                # as long as TNS asked.
                reply = None
                wait = max(interval, exc.retry_after or 0.0)
                notes.append(f"reply: {exc.status_code or 'not reached'}; next poll in {wait:g} s")
            polls += 1
            if reply is not None and reply.processed:
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
                    return self._found_or_unconfirmed(found, report_id, sends, notes)
            if self._clock() + wait > deadline:
                break
            self._sleep(wait)
            interval = _next_interval(interval, poll_interval_s)
        notes.append(
            f"reply: not confirmed after {polls} poll(s); report id {report_id} exists, so no resend"
        )
        found = self._try_find(ident, radius, deadline, notes)
        if found is None:
            notes.append("not found by search either: unconfirmed; poll the report id again later")
        return self._found_or_unconfirmed(found, report_id, sends, notes)

    def _found_or_unconfirmed(
        self, found: TnsObject | None, report_id: str, sends: int, notes: list[str]
    ) -> TnsOutcome:
        """FOUND when a search found the object of a stored report, else UNCONFIRMED."""
        if found is None:
            return self._outcome(
                TnsOutcomeStatus.UNCONFIRMED, report_id=report_id, sends=sends, notes=notes
            )
        return self._outcome(
            TnsOutcomeStatus.FOUND,
            objname=found.objname,
            report_id=report_id,
            sends=sends,
            notes=notes,
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
