"""Reports ready to leave: what each destination is sent, the text a person may edit, the send.

The report stage builds one :class:`Outgoing` per report (:func:`hermes_outgoing`,
:func:`tns_outgoing`, :func:`gcn_outgoing`); a person may edit its text before a public send
(:meth:`Outgoing.text_problems` says what an edit may not do, :meth:`Outgoing.with_text` applies
it); :func:`deliver` sends it at most once through
:func:`~followup.reporting.delivery.deliver_once`, and :func:`decline` records a "no".

The ledger keys a report by destination, event, target and the hash of the content as built,
before any edit: a rerun finds the same row, and the same approval, whatever the person typed.
"""

from __future__ import annotations

import copy
import unicodedata
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from followup.ledger import Ledger, ReportRow
from followup.models import (
    Alert,
    Measurement,
    Report,
    ReportDestination,
    ReportStatus,
    Target,
    content_hash,
)
from followup.reporting.at_report import (
    AtDiscovery,
    TnsReporter,
    build_at_report,
    discovery_points,
)
from followup.reporting.circular_text import team_phrase
from followup.reporting.delivery import Delivery, deliver_once
from followup.reporting.findings import (
    CandidateFinding,
    Coverage,
    candidates_circular,
    no_counterpart_circular,
    non_detection_message,
)
from followup.reporting.gcn import (
    Circular,
    GcnCircularsClient,
    alert_names,
    draft_circular,
    gcn_event_name,
)
from followup.reporting.hermes import (
    HermesClient,
    HermesMessage,
    build_hermes_message,
    is_public_topic,
)
from followup.reporting.hermes_recovery import LOOKUP_KEYS
from followup.reporting.render import render_markdown
from followup.reporting.tns import TnsClient
from followup.reporting.tns_models import TnsOutcomeStatus

__all__ = [
    "TEXT_LIMITS",
    "Outgoing",
    "ReportClient",
    "candidates_outgoing",
    "decline",
    "deliver",
    "event_name",
    "gcn_outgoing",
    "hermes_outgoing",
    "no_counterpart_outgoing",
    "non_detection_outgoing",
    "tns_outgoing",
]

ReportClient = HermesClient | TnsClient | GcnCircularsClient
"""The client :func:`deliver` sends with (the one of the report's destination)."""

TEXT_LIMITS: dict[ReportDestination, int] = {
    ReportDestination.HERMES: 10_000,
    ReportDestination.TNS: 2_000,
    ReportDestination.GCN: 10_000,
}
"""Longest editable text per destination, in characters: the HERMES message text, the TNS
remarks, the GCN Circular body. The project's own limits (none of the services publishes one):
far above any report it writes, low enough to catch a paste gone wrong."""

_ALLOWED_CONTROLS = {"\n", "\t", "\r"}
_CLIENTS: dict[ReportDestination, type] = {
    ReportDestination.HERMES: HermesClient,
    ReportDestination.TNS: TnsClient,
    ReportDestination.GCN: GcnCircularsClient,
}


class Outgoing(BaseModel):
    """One report ready to deliver.

    Attributes:
        report: The ledger's draft row: destination, event, target, hash of the built content.
        content: What is sent: a HERMES message, a TNS AT report (``{"at_report": ...}``) or a
            GCN Circular.
        markdown: The report rendered for a person.
        text: The part a person may edit (message text, remarks, Circular body).
        public: Sending needs a person's approval.
    """

    model_config = ConfigDict(frozen=True)

    report: Report
    content: HermesMessage | Circular | dict[str, Any]
    markdown: str
    text: str
    public: bool

    @property
    def destination(self) -> ReportDestination:
        """HERMES, TNS or GCN."""
        return self.report.destination

    @property
    def approval_subject(self) -> str:
        """The stable key of the approval of this report (destination, event, target, hash)."""
        report = self.report
        target = f"{report.target_name}:" if report.target_name else ""
        return (
            f"report:{report.destination.value.lower()}:{report.event_id}:"
            f"{target}{report.content_hash[:12]}"
        )

    def text_problems(self, text: str) -> list[str]:
        """Why ``text`` cannot replace the editable text; empty when it can.

        The text may be at most :data:`TEXT_LIMITS` characters long, hold no control characters
        but newlines and tabs, and (a GCN Circular's body) not be empty.
        """
        problems = []
        limit = TEXT_LIMITS[self.destination]
        if len(text) > limit:
            problems.append(f"the text has {len(text)} characters; at most {limit} are allowed")
        if any(unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROLS for c in text):
            problems.append("the text holds control characters (only newlines and tabs may be)")
        if self.destination is ReportDestination.GCN and not text.strip():
            problems.append("a GCN Circular needs a body")
        return problems

    def with_text(self, text: str) -> Outgoing:
        """This report with its editable text replaced (the ledger key stays the same)."""
        content = self.content
        if isinstance(content, HermesMessage):
            content = content.model_copy(update={"message_text": text})
        elif isinstance(content, Circular):
            content = content.model_copy(update={"body": text})
        else:
            content = copy.deepcopy(content)
            content["at_report"]["0"]["remarks"] = text
        return self.model_copy(update={"content": content, "text": text})


def hermes_outgoing(
    alert: Alert,
    targets: Sequence[Target],
    measurements: Sequence[Measurement],
    *,
    authors: Sequence[str],
    team: str,
    topic: str,
) -> Outgoing:
    """One HERMES message with the event's targets and their photometry.

    It is public (needs approval) unless ``topic`` is a test topic.
    """
    message = build_hermes_message(
        alert.event_id,
        targets,
        measurements,
        title=f"LCO follow-up photometry of {alert.event_id}",
        authors=", ".join(authors),
        topic=topic,
        message_text=f"{_capitalised(team_phrase(team))} report forced photometry of "
        f"{len(targets)} target(s) of {alert.event_id} with the Las Cumbres Observatory network.",
    )
    return _hermes_outgoing(alert, message)


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def tns_outgoing(
    alert: Alert,
    target: Target,
    measurements: Sequence[Measurement],
    *,
    reporter: TnsReporter,
) -> Outgoing | None:
    """An AT report of a new candidate: its first detection and last non-detection.

    Returns:
        The report (always public), or None when the candidate was never detected.
    """
    try:
        first, last_limit = discovery_points(measurements, target.name)
    except ValueError:
        return None
    at_report = build_at_report(
        AtDiscovery(
            target=target,
            first_detection=first,
            last_non_detection=last_limit,
            internal_name=target.name,
            remarks=f"Optical candidate counterpart of {alert.event_id} found in LCO follow-up "
            "imaging.",
            archive_id=None if last_limit else "0",
            archival_remarks=""
            if last_limit
            else "No earlier LCO image; absent from the reference catalog.",
        ),
        reporter,
    )
    report = Report(
        destination=ReportDestination.TNS,
        event_id=alert.event_id,
        target_name=target.name,
        content_hash=content_hash(at_report),
        status=ReportStatus.DRAFT,
        payload={
            "internal_name": target.name,
            "text": at_report["at_report"]["0"].get("remarks", ""),
        },
    )
    return Outgoing(
        report=report,
        content=at_report,
        markdown=render_markdown(at_report),
        text=at_report["at_report"]["0"].get("remarks", ""),
        public=True,
    )


def gcn_outgoing(
    alert: Alert,
    candidates: Sequence[Target],
    measurements: Sequence[Measurement],
    *,
    authors: Sequence[str],
    team: str,
) -> Outgoing:
    """The event's GCN Circular (always public).

    Raises:
        ValueError: Nothing to draft from (see :func:`followup.reporting.gcn.draft_circular`).
    """
    circular = draft_circular(
        alert.event_id,
        measurements,
        observers=authors,
        team=team,
        targets=candidates,
        event_time=alert.event_time,
        label=event_name(alert),
    )
    return _circular_outgoing(alert, circular)


def event_name(alert: Alert) -> str:
    """The event as a GCN subject names it, so that GCN derives the event (not an internal id)."""
    return gcn_event_name(
        alert.event_id,
        source=alert.source,
        kind=alert.kind.value,
        event_time=alert.event_time,
        names=alert_names(alert.extra, alert.title),
    )


def no_counterpart_outgoing(
    alert: Alert,
    coverage: Coverage,
    *,
    authors: Sequence[str],
    team: str,
    catalog: str | None = None,
) -> Outgoing:
    """The Circular saying no counterpart was found in the observed fields (always public).

    Raises:
        ValueError: A subject GCN would refuse, or no authors.
    """
    circular = no_counterpart_circular(
        alert.event_id,
        coverage,
        name=event_name(alert),
        observers=authors,
        team=team,
        event_time=alert.event_time,
        catalog=catalog,
    )
    return _circular_outgoing(alert, circular)


def candidates_outgoing(
    alert: Alert,
    findings: Sequence[CandidateFinding],
    measurements: Sequence[Measurement],
    *,
    authors: Sequence[str],
    team: str,
    coverage: Coverage | None = None,
    catalog: str | None = None,
) -> Outgoing:
    """The Circular reporting candidate counterparts (always public).

    Raises:
        ValueError: No candidate, one without photometry, or a subject GCN would refuse.
    """
    circular = candidates_circular(
        alert.event_id,
        findings,
        measurements,
        name=event_name(alert),
        observers=authors,
        team=team,
        event_time=alert.event_time,
        coverage=coverage,
        catalog=catalog,
    )
    return _circular_outgoing(alert, circular)


def non_detection_outgoing(
    alert: Alert,
    coverage: Coverage,
    *,
    authors: Sequence[str],
    team: str,
    topic: str,
    catalog: str | None = None,
) -> Outgoing:
    """The HERMES message of the fields' non-detections (public unless a test topic)."""
    message = non_detection_message(
        alert.event_id,
        coverage,
        name=event_name(alert),
        authors=", ".join(authors),
        team=team,
        topic=topic,
        catalog=catalog,
    )
    return _hermes_outgoing(alert, message)


def _hermes_outgoing(alert: Alert, message: HermesMessage) -> Outgoing:
    """A HERMES message as a draft report, keeping what a lost send is looked up by."""
    report = Report(
        destination=ReportDestination.HERMES,
        event_id=alert.event_id,
        content_hash=content_hash(message.to_payload()),
        status=ReportStatus.DRAFT,
        # What resolve_unconfirmed_hermes looks a lost send up by.
        payload={
            **{key: getattr(message, key) for key in LOOKUP_KEYS},
            "text": message.message_text,
        },
    )
    return Outgoing(
        report=report,
        content=message,
        markdown=render_markdown(message),
        text=message.message_text,
        public=is_public_topic(message.topic),
    )


def _circular_outgoing(alert: Alert, circular: Circular) -> Outgoing:
    report = Report(
        destination=ReportDestination.GCN,
        event_id=alert.event_id,
        content_hash=content_hash({"subject": circular.subject, "body": circular.body}),
        status=ReportStatus.DRAFT,
        payload={"subject": circular.subject, "text": circular.body},
    )
    return Outgoing(
        report=report,
        content=circular,
        markdown=render_markdown(circular),
        text=circular.body,
        public=True,
    )


def _send_hermes(client: HermesClient, message: HermesMessage) -> Delivery:
    receipt = client.submit_message(message)
    return Delivery(status=ReportStatus.CONFIRMED, remote_id=str(receipt.uuid), url=receipt.url)


def _send_tns(client: TnsClient, at_report: dict[str, Any]) -> Delivery:
    outcome = client.report_and_confirm(at_report)
    if outcome.confirmed:
        status = ReportStatus.CONFIRMED
    elif outcome.status is TnsOutcomeStatus.UNCONFIRMED:
        status = ReportStatus.UNCONFIRMED
    else:
        status = ReportStatus.FAILED
    return Delivery(
        status=status,
        remote_id=outcome.objname or outcome.report_id,
        url=outcome.url,
        notes=outcome.notes,
    )


def _send_gcn(client: GcnCircularsClient, circular: Circular) -> Delivery:
    record = client.submit_circular(circular)
    return Delivery(
        status=ReportStatus.CONFIRMED, remote_id=str(record.circular_id), url=record.url
    )


def deliver(ledger: Ledger, outgoing: Outgoing, client: ReportClient) -> ReportRow:
    """Send the report at most once (:func:`~followup.reporting.delivery.deliver_once`).

    TNS looks earlier copies up itself, so a TNS report left ``sending`` or ``unconfirmed`` may
    be sent again; HERMES and GCN reports in that state wait for a person.

    Args:
        ledger: The ledger.
        outgoing: The report, as approved.
        client: The client of the report's destination.

    Returns:
        The ledger row after the attempt.

    Raises:
        TypeError: ``client`` is not the destination's client.
        ServiceUnavailable: Nothing was sent (the row is ``failed``; a retry may send).
    """
    destination = outgoing.destination
    if not isinstance(client, _CLIENTS[destination]):
        raise TypeError(f"a {destination} report needs a {_CLIENTS[destination].__name__}")
    content: Any = outgoing.content
    if destination is ReportDestination.HERMES:
        row, _ = deliver_once(ledger, outgoing.report, lambda: _send_hermes(client, content))
    elif destination is ReportDestination.TNS:
        row, _ = deliver_once(
            ledger, outgoing.report, lambda: _send_tns(client, content), retry_uncertain=True
        )
    else:
        row, _ = deliver_once(ledger, outgoing.report, lambda: _send_gcn(client, content))
    return row


def decline(ledger: Ledger, report: Report) -> ReportRow:
    """Record that a person declined the report (unless it already went out)."""
    row, _ = ledger.reports.claim(report)
    if row.status not in {ReportStatus.SENT, ReportStatus.CONFIRMED, ReportStatus.UNCONFIRMED}:
        row = ledger.reports.update(row.id, status=ReportStatus.DECLINED)
    return row
