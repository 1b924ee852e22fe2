"""GCN Circulars: drafts in GCN's style, GCN's subject rule, the Circulars API client and email text.

A follow-up Circular reports one event: the subject names the event and the result
("LIGO/Virgo/KAGRA S250101ab: LCO optical upper limits"), the body opens with the authors "report on
behalf of" their team, gives the observations (times in UT, filters, exposures, AB magnitudes or
upper limits) as a fixed-width table and closes with the calibration and the usual remarks, in
plain ASCII text under ~60 lines (GCN's style guide, ``docs.circulars.styleguide.mdx``).

GCN accepts a subject only when it contains a known keyword or a parseable event name and does
not look like an auto-reply (``subjectIsValid`` in nasa-gcn/gcn.nasa.gov
``app/routes/circulars/circulars.lib.ts``); :func:`subject_is_valid` mirrors that rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field, SecretStr

from followup.exceptions import UncertainOutcome
from followup.http import BearerAuth, ServiceClient, required_secret
from followup.models import Measurement, Target
from followup.reporting.bands import band_label
from followup.reporting.circular_text import (
    calibration_sentence,
    cited,
    finish,
    listed,
    mag_text,
    observed_when,
    opening,
    table,
    wrap,
)
from followup.reporting.equipment import equipment_of

__all__ = [
    "AUTO_REPLY_MARKERS",
    "CIRCULARS_EMAIL",
    "GCN_URL",
    "SUBJECT_KEYWORDS",
    "Circular",
    "CircularRecord",
    "GcnCircularsClient",
    "alert_names",
    "checked_subject",
    "circular_email",
    "draft_circular",
    "event_label",
    "gcn_event_name",
    "parse_event_from_subject",
    "subject_is_valid",
]

GCN_URL = "https://gcn.nasa.gov/"
CIRCULARS_EMAIL = "circulars@gcn.nasa.gov"

SUBJECT_KEYWORDS: tuple[str, ...] = (
    "AGILE", "ALMA", "AMON", "ANTARES", "AXP", "Baksan Neutrino Observatory Alert", "CALET",
    "Chandra", "COLIBRI", "COLIBRÍ", "EP", "Fermi", "FRB", "FXT", "GOTO", "GRANDMA", "GRB", "GW",
    "HAWC", "HST", "IBAS", "IceCube", "INTEGRAL", "IPN", "JCMT", "KAGRA", "KamLAND", "KONUS",
    "LIGO", "LOFAR", "LVC", "LVK", "LXT", "MAGIC", "MASTER", "MAXI", "Nova", "NuEM", "Pan-STARRS",
    "POLAR", "RATIR", "SDSS", "SFXT", "SGR", "SN", "Super-Kamiokande", "Supernova", "Suzaku",
    "SVOM", "Swift", "transient", "VLA", "VLBI", "XRB", "XRF", "XRT", "XTR", "Virgo", "ZTF",
)  # fmt: skip
"""GCN's ``validSubjectKeywords`` (gcn.nasa.gov@11d32bd4); matched case-insensitively as substrings."""

AUTO_REPLY_MARKERS: tuple[str, ...] = (
    "this is an automatic reply", "automatic reply: ", "auto reply", "autoreply", "vacation",
    "out of the office", "out of office", "out of town", "away from my mail",
    "away from his e-mail", "away from her e-mail", "away from the office",
    "away from his office", "away from her office", "traveling until",
    "no longer receiving mail", "delivery failure notif", "mail delivery failure",
    "returned mail", "saxzlcnkgzmfpbhvyzsbub", "ponse_automatique", "off-line re:", "re: ",
    "fwd: ", " r: ", " ris: ", "subject:", "draft",
)  # fmt: skip
"""GCN's ``emailAutoReplyChecklist``: a subject containing any of these is refused."""


def _lvk(m: re.Match[str]) -> str:
    instrument = m.group(1).upper().replace("VIRGO", "Virgo")
    return f"{instrument} {m.group(2).upper()}{m.group(3).lower()}"


# GCN's subjectMatchers, in its order: (pattern, normaliser).
_EVENT_PATTERNS: tuple[tuple[re.Pattern[str], Any], ...] = tuple(
    (re.compile(p, re.IGNORECASE), f)
    for p, f in (
        (r"GRB[.\s_-]*(\d{6}(?:[a-z]|\.[0-9]+)?)", lambda m: f"GRB {m.group(1).upper()}"),
        (r"SGR[.\s_-]*(J*\d{4}\.?\d*\+\d{4})", lambda m: f"SGR {m.group(1).upper()}"),
        (
            r"SGR[.\s_-]*Swift[.\s_-]*(J*\d{4}\.?\d*\+\d{4})",
            lambda m: f"SGR Swift {m.group(1).upper()}",
        ),
        (r"IceCube[.\s_-]*(\d{6}[a-z])", lambda m: f"IceCube-{m.group(1).upper()}"),
        (
            r"IceCube[.\s_-]*Cascade[.\s_-]*(\d{6}[a-z])",
            lambda m: f"IceCube-Cascade {m.group(1).upper()}",
        ),
        (r"ZTF[.\s_-]*(\d{2}[a-z]*)", lambda m: f"ZTF{m.group(1).lower()}"),
        (r"HAWC[.\s_-]*(\d{6}A)", lambda m: f"HAWC-{m.group(1).upper()}"),
        (
            r"((?:LIGO|Virgo|KAGRA)(?:[/-](?:LIGO|Virgo|KAGRA))*)[-_ \s]?(S|G|GW)(\d{5,}[a-z]*)",
            _lvk,
        ),
        (r"ANTARES[.\s_-]*(\d{6}[a-z])", lambda m: f"ANTARES {m.group(1)}".upper()),
        (
            r"Baksan\sNeutrino\sObservatory\sAlert[.\s_-]*(\d{6}.\d{2})",
            lambda m: f"Baksan Neutrino Observatory Alert {m.group(1)}",
        ),
        (r"EP[.\s_-]*(\d{6}[a-z])", lambda m: f"EP{m.group(1).lower()}"),
        (
            r"SN[.\s_-]*(\d{4}[a-z]*)",
            lambda m: f"SN {m.group(1).upper() if len(m.group(1)) == 5 else m.group(1).lower()}",
        ),
        (r"GW[.\s_-]*(\d{6})", lambda m: f"GW{m.group(1)}"),
        (r"FRB[.\s_-]*(\d{8}[a-z]|\d{6}[a-z]?)", lambda m: f"FRB {m.group(1)}".upper()),
        (r"sb[.\s_-]*(\d{8})", lambda m: f"sb{m.group(1)}"),
        (r"XRF[.\s_-]*(\d{6}[a-z]?)", lambda m: f"XRF {m.group(1).upper()}"),
        (r"AT[.\s_-]*(\d{4}[a-z]+)", lambda m: f"AT{m.group(1).lower()}"),
    )
)


def parse_event_from_subject(subject: str) -> str | None:
    """The event id GCN derives from a subject (``parseEventFromSubject``), or None.

    Patterns matching at the start win over matches further in, as on GCN.
    """
    for pattern, normalise in _EVENT_PATTERNS:
        m = pattern.match(subject)
        if m:
            return normalise(m)
    for pattern, normalise in _EVENT_PATTERNS:
        m = pattern.search(subject)
        if m:
            return normalise(m)
    return None


def subject_is_valid(subject: str) -> bool:
    """GCN's subject rule: a known keyword or event name, and nothing that looks like an auto-reply.

    Example:
        >>> subject_is_valid("LIGO/Virgo/KAGRA S250101ab: LCO optical upper limits")
        True
        >>> subject_is_valid("Re: LCO observations")
        False
    """
    if not subject:
        return False
    lower = subject.lower()
    if any(marker in lower for marker in AUTO_REPLY_MARKERS):
        return False
    return (
        any(k.lower() in lower for k in SUBJECT_KEYWORDS)
        or parse_event_from_subject(subject) is not None
    )


def _subject_problem(subject: str) -> str | None:
    if not subject:
        return "the subject is empty"
    lower = subject.lower()
    markers = [m for m in AUTO_REPLY_MARKERS if m in lower]
    if markers:
        return f"the subject looks like an auto-reply to GCN (contains {markers[0]!r})"
    if not subject_is_valid(subject):
        return "the subject has no GCN keyword or event name (e.g. 'LIGO', 'GRB', 'transient')"
    return None


def checked_subject(name: str, result: str, facility: str = "LCO") -> str:
    """``<event>: <facility> <result>``, the subject of a follow-up Circular.

    Raises:
        ValueError: GCN would refuse the subject (:func:`subject_is_valid`), and why.
    """
    subject = f"{name}: {facility} {result}"
    problem = _subject_problem(subject)
    if problem:
        raise ValueError(f"GCN would refuse the subject {subject!r}: {problem}")
    return subject


def event_label(event_id: str) -> str:
    """The event as a follow-up subject names it.

    LVK superevents get the collaboration's name (``S250101ab`` -> ``LIGO/Virgo/KAGRA S250101ab``,
    mock ``MS...`` events too); ids GCN already recognises (``GRB 250101A``, ``EP250101a``,
    ``IceCube-250101A``) are kept as they are.
    """
    event_id = event_id.strip()
    if re.fullmatch(r"(M?S|GW)\d{6}[a-z]{1,3}|GW\d{6}(_\d{6})?|G\d{5,}", event_id):
        return f"LIGO/Virgo/KAGRA {event_id}"
    return event_id


_GRB_SOURCES = frozenset(
    {"Swift", "Fermi", "SVOM", "INTEGRAL", "AGILE", "Konus", "KONUS", "IPN", "GECAM", "CALET"}
)


def _names_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


def gcn_event_name(
    event_id: str,
    *,
    source: str | None = None,
    kind: str | None = None,
    event_time: datetime | None = None,
    names: Sequence[str] = (),
) -> str:
    """The event's name as a GCN subject must give it, so that GCN derives the event from it.

    Internal trigger ids (``Swift-1125809``, ``IceCube-138632_31747601``) give GCN no event: GCN
    reads the event only from a name it knows (``subjectMatchers`` in ``circulars.lib.ts``). In
    order, this returns: an LVK superevent with the collaboration's name; the first of ``names``
    (the notice's ``event_name``, its aliases) or ``event_id`` that GCN parses, as GCN normalises
    it (``IceCube-230416A``, ``EP240508a``, ``GRB 230410A``); for a gamma-ray trigger with no
    name yet, the GRB's date with the fraction of the day (``GRB 250101.476``), a form GCN
    parses; else the event id after its source when that makes a subject GCN accepts.

    Args:
        event_id: The event id the ledger keys the event by.
        source: Who issued the alert (``"Swift"``, ``"IceCube"``...).
        kind: The alert's kind (``"gamma-ray"``, ``"neutrino"``...).
        event_time: When the event happened (UTC).
        names: Other names the alert gives (notice ``event_name``, aliases, title).

    Returns:
        The name for the subject and the body.

    Raises:
        ValueError: No name GCN would accept can be made.

    Example:
        >>> gcn_event_name("IceCube-138632_31747601", names=["IceCube-230416A"])
        'IceCube-230416A'
    """
    label = event_label(event_id)
    if label != event_id:
        return label
    for candidate in (*names, event_id):
        parsed = parse_event_from_subject(candidate)
        # Only names GCN would derive *as given*: "Swift-1125809" must not become something else.
        if parsed and parsed.replace(" ", "").lower() in candidate.replace(" ", "").lower():
            return parsed
    if event_time is not None and (kind == "gamma-ray" or source in _GRB_SOURCES):
        t = event_time.astimezone(UTC)
        fraction = (t.hour * 3600 + t.minute * 60 + t.second) / 86400.0
        return f"GRB {t:%y%m%d}.{int(fraction * 1000):03d}"
    fallback = f"{source} {event_id}" if source and source not in event_id else event_id
    if kind == "radio" and not fallback.upper().startswith("FRB"):
        fallback = f"FRB {fallback}"  # CHIME, DSA-110: fast radio bursts
    if not subject_is_valid(fallback) and source:
        fallback = f"{source} transient {event_id}"  # GCN's generic keyword
    if not subject_is_valid(fallback):
        raise ValueError(f"no name GCN accepts for event {event_id!r} (source {source!r})")
    return fallback


def alert_names(extra: Mapping[str, Any], title: str | None = None) -> list[str]:
    """Names an alert gives besides its id: the notice's ``event_name``, aliases, the title."""
    names = _names_in(extra.get("event_name")) + _names_in(extra.get("aliases"))
    return [*names, *([title] if title else [])]


class Circular(BaseModel):
    """A GCN Circular ready to submit or mail.

    Attributes:
        subject: One line: event, facility and result.
        body: Plain text (or markdown with ``format="text/markdown"``).
        format: ``"text/plain"`` or ``"text/markdown"``.
        event_id: The event the Circular is about (GCN also derives it from the subject).
    """

    subject: str = Field(min_length=1)
    body: str = Field(min_length=1)
    format: Literal["text/plain", "text/markdown"] = "text/plain"
    event_id: str | None = None

    @property
    def line_count(self) -> int:
        """Lines of the body (GCN's style guide asks for fewer than about 60)."""
        return len(self.body.splitlines())

    def to_payload(self) -> dict[str, Any]:
        """The JSON body of ``POST /api/circulars``."""
        payload: dict[str, Any] = {
            "subject": self.subject,
            "body": self.body,
            "format": self.format,
        }
        if self.event_id:
            payload["eventId"] = self.event_id
        return payload


class CircularRecord(BaseModel):
    """A Circular as GCN stored it.

    Attributes:
        circular_id: GCN Circular number (the remote id to keep).
        created_on: When GCN stored it (UTC).
        subject: Subject as stored.
        body: Body as stored.
        submitter: Who GCN says submitted it.
        event_id: Event id GCN derived from the subject.
        format: Body format.
        url: Link to the Circular.
        raw: GCN's JSON answer.
    """

    circular_id: int
    created_on: datetime
    subject: str
    body: str
    submitter: str | None = None
    event_id: str | None = None
    format: str | None = None
    url: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)


# ------------------------------------------------------------------------------- the draft
def _hours(delta_s: float) -> str:
    return f"{delta_s / 3600.0:.2f}"


def draft_circular(
    event_id: str,
    measurements: Iterable[Measurement],
    *,
    observers: Sequence[str],
    team: str,
    instrument_type: str | None = None,
    facility: str = "LCO",
    targets: Sequence[Target] = (),
    event_time: datetime | None = None,
    label: str | None = None,
    catalog: str | None = None,
    references: Sequence[str] = (),
    closing: str | None = "Further observations are planned.",
    acknowledgement: str | None = None,
    max_rows: int = 30,
) -> Circular:
    """Draft a follow-up Circular for one event from its measurements.

    The subject says ``candidate counterpart`` when any measurement is a detection (S/N >= 5) and
    ``upper limits`` otherwise. Rows are sorted by time; beyond ``max_rows`` they are summarised
    in one line saying how many more there are (never dropped silently).

    Args:
        event_id: The event (``"S250101ab"``, ``"GRB 250101A"``, ``"EP250101a"``).
        measurements: Forced photometry results to report.
        observers: Author list entries, e.g. ``["A. Author (LCO)", "B. Author (UCSB)"]``.
        team: The team the authors report for, e.g. ``"LCO Global Supernova Project"``.
        instrument_type: The strategy's instrument type, naming the camera of measurements
            whose frame header does not (each row names its telescope and camera, from
            :func:`~followup.reporting.equipment.equipment_of`).
        facility: Short facility name for the subject.
        targets: The targets measured (their positions are listed for detections).
        event_time: Event time T0 (UTC); adds a ``T-T0 (h)`` column.
        label: Event name for the subject and text (default :func:`event_label`).
        catalog: Reference catalog of the zero points (named in the calibration sentence).
        references: Prior Circulars to cite, e.g. ``["LIGO/Virgo/KAGRA Collaboration, GCN Circ. 12345"]``.
        closing: Closing sentence (None for none).
        acknowledgement: Acknowledgement sentence (None for none).
        max_rows: Most table rows to print.

    Returns:
        The Circular (plain text).

    Raises:
        ValueError: No measurements, no observers, a measurement of a target not in ``targets``
            (when targets are given), or a subject GCN would refuse.
    """
    points = sorted(measurements, key=lambda m: (m.date_obs, m.target_name))
    if not points:
        raise ValueError("a Circular needs at least one measurement")
    lines = opening(observers, team)
    if max_rows < 1:
        raise ValueError("max_rows must be >= 1")
    by_name = {t.name: t for t in targets}
    if targets:
        unknown = sorted({m.target_name for m in points} - set(by_name))
        if unknown:
            raise ValueError(f"measurements of targets that were not given: {unknown}")

    name = label or event_label(event_id)
    detections = [m for m in points if m.is_detection]
    result = "optical candidate counterpart" if detections else "optical upper limits"
    subject = checked_subject(name, result, facility)

    n_targets = len({m.target_name for m in points})
    when = observed_when(points[0].date_obs, points[-1].date_obs, event_time)
    filters = sorted({band_label(m.band) for m in points})
    equipment = {id(m): equipment_of(m, instrument_type=instrument_type).label for m in points}
    cameras = sorted(set(equipment.values()))

    lines += wrap(
        f"We observed {n_targets} target{'s' if n_targets != 1 else ''} in the localization of "
        f"{name}{cited(references)} with the {listed(cameras)} of the Las Cumbres Observatory "
        f"network {when}, in the {', '.join(filters)} filter{'s' if len(filters) != 1 else ''}."
    )
    lines.append("")
    if detections:
        det_names = sorted({m.target_name for m in detections})
        lines += wrap(
            f"Forced photometry detects a source (S/N >= 5) at {len(det_names)} of the {n_targets} "
            f"target position{'s' if n_targets != 1 else ''}:"
        )
        if by_name:
            lines.append("")
            lines += table(
                [(n, f"{by_name[n].ra:.5f}", f"{by_name[n].dec:+.5f}") for n in det_names],
                ("Target", "RA (deg)", "Dec (deg)"),
            )
        lines.append("")
        lines += wrap("The photometry (AB magnitudes; limits are 5-sigma) is:")
    else:
        lines += wrap(
            "Forced photometry at the target positions detects no source at S/N >= 5. "
            "The 5-sigma upper limits (AB) are:"
        )
    lines.append("")

    header = ["Target", "Date (UT)"]
    if event_time is not None:
        header.append("T-T0 (h)")
    header += ["Telescope", "Filter", "Exp (s)", "AB mag"]
    rows = []
    for m in points[:max_rows]:
        row = [m.target_name, f"{m.date_obs:%Y-%m-%d %H:%M:%S}"]
        if event_time is not None:
            row.append(_hours((m.date_obs - event_time).total_seconds()))
        row += [
            equipment[id(m)],
            band_label(m.band),
            "-" if m.exposure_time_s is None else f"{m.exposure_time_s:g}",
            mag_text(m),
        ]
        rows.append(row)
    lines += table(rows, header)
    if len(points) > max_rows:
        lines.append(f"({len(points) - max_rows} further measurements are not listed here.)")
    lines.append("")
    lines += wrap(calibration_sentence(catalog))
    body = finish(lines, closing, acknowledgement)
    return Circular(subject=subject, body=body, event_id=event_id)


def circular_email(
    circular: Circular,
    *,
    from_addr: str,
    to_addr: str = CIRCULARS_EMAIL,
    date: datetime | None = None,
) -> str:
    """The email that submits a Circular, for endorsed submitters who send by mail.

    Args:
        circular: The Circular.
        from_addr: The endorsed submitter's address (GCN matches it to the account).
        to_addr: ``circulars@gcn.nasa.gov`` (``circulars@dev.gcn.nasa.gov`` for the dev site).
        date: Date header (default now, UTC).

    Returns:
        The RFC 5322 message text (headers, blank line, plain-text body).

    Raises:
        ValueError: An address is missing or the subject would be refused.
    """
    if "@" not in from_addr or "@" not in to_addr:
        raise ValueError("from_addr and to_addr must be email addresses")
    problem = _subject_problem(circular.subject)
    if problem:
        raise ValueError(f"GCN would refuse the subject {circular.subject!r}: {problem}")
    msg = EmailMessage()
    msg["From"] = from_addr
    msg["To"] = to_addr
    msg["Subject"] = circular.subject
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    msg.set_content(
        circular.body, subtype="markdown" if circular.format == "text/markdown" else "plain"
    )
    return msg.as_string()


# ------------------------------------------------------------------------------- the client
class GcnCircularsClient(ServiceClient):
    """Client of GCN's Circulars API (``POST /api/circulars``), for partner apps with an access token.

    Errors follow :mod:`followup.http`; the access token is sent as ``Authorization: Bearer``.

    Args:
        access_token: OIDC access token with scope ``gcn.nasa.gov/circular-submitter``.
        base_url: ``GCN_URL`` (``https://dev.gcn.nasa.gov/`` for the dev site) or a sandbox URL.
        timeout: Seconds for connect, read and write.
        transport: An httpx transport to use instead of the network.
    """

    service = "GCN"

    def __init__(
        self,
        access_token: SecretStr | str,
        *,
        base_url: str = GCN_URL,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        token = required_secret(access_token, "a GCN access token")
        super().__init__(
            base_url,
            auth=BearerAuth(token),
            timeout=timeout,
            transport=transport,
            secrets=[token],
        )

    def submit_circular(self, circular: Circular | Mapping[str, Any]) -> CircularRecord:
        """Submit a Circular; GCN distributes it at once.

        Returns:
            The stored Circular with its number.

        Raises:
            ValueError: The subject fails GCN's rule (checked before sending).
            AuthenticationError: 403 "Bearer missing", "Invalid scope" or "User is not in the
                submitters group".
            RequestRejected: 400 "subject is invalid", "body is invalid", "format is invalid",
                "missing required parameter", "Wrong IdP"; 405.
            UncertainOutcome: 500/502/504 or a lost answer: the Circular may be published. (An
                expired or forged token also makes GCN answer 500.)
            ServiceUnavailable: GCN could not be reached, 429 or 503.
        """
        if not isinstance(circular, Circular):
            circular = Circular.model_validate(
                {**circular, "event_id": circular.get("eventId", circular.get("event_id"))}
                if isinstance(circular, Mapping)
                else circular
            )
        problem = _subject_problem(circular.subject)
        if problem:
            raise ValueError(f"GCN would refuse the subject {circular.subject!r}: {problem}")
        response = self._request(
            "POST",
            "api/circulars",
            operation="submit_circular",
            creates=True,
            json=circular.to_payload(),
        )
        body = self._json(response, operation="submit_circular", creates=True)
        if "circularId" not in body:
            raise UncertainOutcome(
                f"GCN submit_circular: HTTP {response.status_code} without a circularId "
                f"({self._text(response)[:200]!r}); the Circular may be published",
                operation="submit_circular",
                status_code=response.status_code,
                url=str(response.request.url),
                body=self._scrub(body),
            )
        circular_id = int(body["circularId"])
        created = body.get("createdOn")
        created_on = (
            datetime.fromtimestamp(created / 1000.0, UTC)
            if isinstance(created, int | float)
            else datetime.now(UTC)
        )
        return CircularRecord(
            circular_id=circular_id,
            created_on=created_on,
            subject=str(body.get("subject", circular.subject)),
            body=str(body.get("body", circular.body)),
            submitter=body.get("submitter"),
            event_id=body.get("eventId"),
            format=body.get("format"),
            url=str(self._client.base_url.join(f"circulars/{circular_id}")),
            raw=body,
        )
