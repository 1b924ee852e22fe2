"""GCN Circulars: the JSON archive record (``gcn.circulars``) and the legacy text form (``.gcn3``).

A circular is attached to the event its subject names (``GRB 230410A``, ``S200129m``,
``EP240315a``...), as the GCN archive does; a circular that names no event gets the id
``GCN-Circular-<number>``. Its kind is always ``circular``, so trigger rules and flows can tell it
from a notice.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from followup.alerts.fields import parse_time
from followup.alerts.registry import MessageContext, Parser, register_parser
from followup.exceptions import AlertParseError
from followup.models import Alert, AlertKind, AlertType

__all__ = [
    "CIRCULAR_JSON",
    "CIRCULAR_TEXT",
    "alert_from_circular_record",
    "alert_from_circular_text",
    "event_id_from_subject",
]

_EVENT_PATTERNS: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"\b(M?S\d{6}[a-z]{1,4})\b"), lambda m: m.group(1)),
    (re.compile(r"\bGRB\s?(\d{6}[A-Z]?)\b"), lambda m: f"GRB {m.group(1)}"),
    (re.compile(r"\bEP\s?(\d{6}[a-z]{1,2})\b"), lambda m: f"EP{m.group(1)}"),
    (re.compile(r"\bIceCube-(\d{6}[A-Z])\b"), lambda m: f"IceCube-{m.group(1)}"),
    (re.compile(r"\bKM3-(\d{6}[A-Z])\b"), lambda m: f"KM3-{m.group(1)}"),
    (re.compile(r"\bFRB\s?(\d{8}[A-Z]?)\b"), lambda m: f"FRB {m.group(1)}"),
    (re.compile(r"\b(AT|SN)\s?(\d{4}[a-z]{1,3})\b"), lambda m: f"{m.group(1)} {m.group(2)}"),
    (re.compile(r"\b(ZTF\d{2}[a-z]{7})\b"), lambda m: m.group(1)),
    (re.compile(r"\b(SGR|FXT|XRF)\s?(\d{6}[A-Z]?)\b"), lambda m: f"{m.group(1)} {m.group(2)}"),
)
_HEADER_LINE = re.compile(r"^([A-Z][A-Z ]{1,15}):\s*(.*)$")
_TEXT_DATE_FORMATS = ("%y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%y/%m/%d %H:%M")


def event_id_from_subject(subject: str) -> str | None:
    """The event a circular subject names, written as GCN writes it (earliest match wins).

    Example:
        >>> event_id_from_subject("LIGO/Virgo S200129m: Not observable by Fermi-GBM")
        'S200129m'
        >>> event_id_from_subject("GRB980329 VLA observations")
        'GRB 980329'
    """
    best: tuple[int, str] | None = None
    for pattern, build in _EVENT_PATTERNS:
        match = pattern.search(subject)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), build(match))
    return best[1] if best else None


def _circular_alert(
    *,
    number: int,
    subject: str,
    body: str,
    issued_at: datetime,
    fmt: str,
    event_id: str | None,
    version: int | None,
    extra: dict[str, Any],
) -> Alert:
    event = event_id or event_id_from_subject(subject) or f"GCN-Circular-{number}"
    if len(event) > 64:
        event = f"GCN-Circular-{number}"
    extra = {
        "notice_type": "gcn.circulars",
        "circular_id": number,
        "subject": subject,
        "body": body,
        **extra,
    }
    if version is not None:
        extra["version"] = version
    return Alert(
        source="GCN",
        kind=AlertKind.CIRCULAR,
        format=fmt,
        event_id=event,
        alert_type=AlertType.UPDATE if version and version > 1 else AlertType.INITIAL,
        issued_at=issued_at,
        urls={"circular": f"https://gcn.nasa.gov/circulars/{number}"},
        title=f"GCN Circular {number}: {subject}"[:300],
        extra=extra,
    )


def alert_from_circular_record(record: dict[str, Any], ctx: MessageContext | None = None) -> Alert:
    """Normalise a circular in the archive's JSON form (``gcn/circulars.schema.json``).

    Raises:
        AlertParseError: ``invalid-circular`` when a required field (circularId, subject, body,
            createdOn) is missing or of the wrong type.
    """
    number = record.get("circularId")
    subject = record.get("subject")
    body = record.get("body")
    created = record.get("createdOn")
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise AlertParseError("invalid-circular", detail="circularId must be a positive integer")
    if not isinstance(subject, str) or not subject.strip():
        raise AlertParseError("invalid-circular", detail="subject must be a non-empty string")
    if not isinstance(body, str):
        raise AlertParseError("invalid-circular", detail="body must be a string")
    version = record.get("version")
    version = version if isinstance(version, int) and not isinstance(version, bool) else None
    stamp = record.get("editedOn") if version and version > 1 else created
    if stamp is None:
        stamp = created
    issued_at = _epoch_ms(stamp, "editedOn" if stamp is not created else "createdOn")
    extra: dict[str, Any] = {
        key: record[key]
        for key in ("submitter", "eventType", "submittedHow", "format", "bibcode", "editedBy")
        if key in record
    }
    if stamp is not created and created is not None:
        extra["created_on"] = _epoch_ms(created, "createdOn").isoformat()
    event_id = record.get("eventId")
    return _circular_alert(
        number=number,
        subject=subject.strip(),
        body=body,
        issued_at=issued_at,
        fmt="circular-json",
        event_id=event_id.strip() if isinstance(event_id, str) and event_id.strip() else None,
        version=version,
        extra=extra,
    )


def _epoch_ms(value: Any, field: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AlertParseError("invalid-circular", detail=f"{field} must be milliseconds since 1970")
    try:
        when = datetime.fromtimestamp(value / 1000.0, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise AlertParseError("invalid-time", detail=f"{field}: {value!r} out of range") from None
    return parse_time(when, field=field)


def alert_from_circular_text(
    text: str | dict[str, Any], ctx: MessageContext | None = None, *, fmt: str = "circular-text"
) -> Alert:
    """Normalise a circular in the legacy text form, or hop's ``GCNCircular`` (header + body).

    The text form starts with ``TITLE:``, ``NUMBER:``, ``SUBJECT:``, ``DATE:`` (``YY/MM/DD
    HH:MM:SS GMT``) and ``FROM:`` lines, then a blank line and the body.

    Raises:
        AlertParseError: ``invalid-circular`` when NUMBER, SUBJECT or DATE is missing or invalid.
    """
    if isinstance(text, dict):
        header = {str(k).strip().lower(): str(v).strip() for k, v in text["header"].items()}
        body = str(text.get("body", ""))
    else:
        header, body = _split_text(text)
    title = header.get("title", "")
    number_text = header.get("number", "")
    subject = header.get("subject", "")
    if not number_text.isdigit() or int(number_text) < 1:
        raise AlertParseError("invalid-circular", detail=f"NUMBER {number_text[:20]!r}")
    if not subject:
        raise AlertParseError("invalid-circular", detail="no SUBJECT")
    issued_at = _text_date(header.get("date", ""))
    extra: dict[str, Any] = {"title_line": title}
    if header.get("from"):
        extra["submitter"] = header["from"]
    return _circular_alert(
        number=int(number_text),
        subject=subject,
        body=body,
        issued_at=issued_at,
        fmt=fmt,
        event_id=None,
        version=None,
        extra=extra,
    )


def _split_text(text: str) -> tuple[dict[str, str], str]:
    header: dict[str, str] = {}
    lines = text.replace("\r\n", "\n").split("\n")
    index = 0
    last_key = None
    for index, line in enumerate(lines):  # noqa: B007 - index is used after the loop
        if not line.strip():
            break
        match = _HEADER_LINE.match(line)
        if match:
            last_key = match.group(1).strip().lower()
            header[last_key] = match.group(2).strip()
        elif last_key is not None and line.startswith((" ", "\t")):
            header[last_key] += " " + line.strip()
        else:
            raise AlertParseError("invalid-circular", detail=f"header line {line[:60]!r}")
    else:
        index = len(lines)
    body = "\n".join(lines[index + 1 :]).strip("\n")
    return header, body


def _text_date(value: str) -> datetime:
    text = value.strip()
    for suffix in (" GMT", " UT", " UTC"):
        text = text.removesuffix(suffix)
    for fmt in _TEXT_DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise AlertParseError("invalid-circular", detail=f"DATE {value[:40]!r}")


def _looks_like_circular_record(document: Any, ctx: MessageContext) -> bool:
    if not isinstance(document, dict):
        return False
    schema = document.get("$schema")
    if isinstance(schema, str) and "/circulars" in schema:
        return True
    return {"circularId", "subject", "body"} <= document.keys()


def _looks_like_circular_text(document: Any, ctx: MessageContext) -> bool:
    if isinstance(document, dict):
        return isinstance(document.get("header"), dict) and isinstance(document.get("body"), str)
    return isinstance(document, str) and document.lstrip().upper().startswith("TITLE:")


CIRCULAR_JSON = register_parser(
    Parser(
        name="circular-json",
        container="json",
        accepts=_looks_like_circular_record,
        parse=lambda doc, ctx: alert_from_circular_record(doc, ctx),
        description="GCN Circular, JSON archive record (gcn.circulars topic)",
    )
)

CIRCULAR_TEXT = register_parser(
    Parser(
        name="circular-text",
        container="text",
        accepts=_looks_like_circular_text,
        parse=lambda doc, ctx: alert_from_circular_text(doc, ctx),
        description="GCN Circular, legacy text form (.gcn3)",
    )
)

# hop's GCNCircular model travels as JSON {"header": {...}, "body": "..."}.
register_parser(
    Parser(
        name="circular-hop",
        container="json",
        accepts=_looks_like_circular_text,
        parse=lambda doc, ctx: alert_from_circular_text(doc, ctx, fmt="circular-hop"),
        description="GCN Circular as hop's GCNCircular model (header and body as JSON)",
    )
)
