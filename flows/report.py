"""Stage flow ``report``: HERMES photometry, TNS AT reports of new candidates, a GCN Circular.

Every report is claimed in the ledger under (destination, event, target, content hash) before it
is sent, so rerunning this flow sends nothing new. Public sends (TNS, GCN, a HERMES topic that is
not a test topic) wait for a person in the Prefect UI, with the rendered message shown and its text
editable; a decline is recorded.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.approvals import ReportApproval, ask
from flows.events import REPORT_SENT, emit_followup_event
from flows.runtime import Runtime, load_runtime
from followup.exceptions import FollowupError
from followup.ledger import ReportRow
from followup.models import (
    Alert,
    Measurement,
    Report,
    ReportDestination,
    ReportStatus,
    Target,
    TargetKind,
    content_hash,
)
from followup.reporting import (
    build_hermes_message,
    circular_email,
    draft_circular,
    is_public_topic,
    render_markdown,
)
from followup.reporting.at_report import (
    AtDiscovery,
    TnsReporter,
    build_at_report,
    discovery_points,
)
from followup.reporting.delivery import Delivery, deliver_once
from followup.reporting.tns import TnsOutcomeStatus
from tasks.artifacts import publish_markdown, publish_table
from tasks.retry import RETRY_DELAYS_S, retry_if_unavailable

__all__ = ["report"]


def _approved(
    runtime: Runtime, *, subject: str, event_id: str, markdown: str, text: str, public: bool
) -> tuple[bool, str]:
    """Ask a person when the send is public; return the decision and the (edited) text."""
    if not public:
        return True, text
    decision, answer = ask(
        runtime.ledger,
        subject=subject,
        event_id=event_id,
        description=markdown,
        form=ReportApproval(text=text),
        timeout_s=runtime.settings.approval_timeout_s,
    )
    return decision.approved, answer.get("text", text)


def _declined(runtime: Runtime, report: Report) -> ReportRow:
    row, _ = runtime.ledger.reports.claim(report)
    if row.status not in {ReportStatus.SENT, ReportStatus.CONFIRMED, ReportStatus.UNCONFIRMED}:
        row = runtime.ledger.reports.update(row.id, status=ReportStatus.DECLINED)
    return row


def _row(row: ReportRow) -> dict[str, Any]:
    return {
        "destination": row.destination,
        "target": row.target_name,
        "status": row.status,
        "remote id": row.remote_id or "",
        "link": row.url or "",
        "ledger id": row.id,
    }


@task(
    name="send HERMES message",
    retries=len(RETRY_DELAYS_S),
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_if_unavailable,
    cache_policy=NO_CACHE,
)
def send_hermes(
    runtime: Runtime, alert: Alert, targets: list[Target], measurements: list[Measurement]
) -> ReportRow:
    """One HERMES message with the event's targets and photometry."""
    settings = runtime.settings
    message = build_hermes_message(
        alert.event_id,
        targets,
        measurements,
        title=f"LCO follow-up photometry of {alert.event_id}",
        authors=", ".join(settings.authors),
        topic=settings.hermes_topic,
        message_text=f"{settings.team} report forced photometry of {len(targets)} target(s) of "
        f"{alert.event_id} with the Las Cumbres Observatory network.",
    )
    report = Report(
        destination=ReportDestination.HERMES,
        event_id=alert.event_id,
        content_hash=content_hash(message.to_payload()),
        status=ReportStatus.DRAFT,
        # What resolve_unconfirmed_hermes looks a lost send up by.
        payload={
            "title": message.title,
            "topic": message.topic,
            "submitter": message.submitter,
            "authors": message.authors,
        },
    )
    approved, text = _approved(
        runtime,
        subject=f"report:hermes:{alert.event_id}:{report.content_hash[:12]}",
        event_id=alert.event_id,
        markdown=render_markdown(message),
        text=message.message_text,
        public=is_public_topic(message.topic),
    )
    if not approved:
        return _declined(runtime, report)
    if text != message.message_text:
        message = message.model_copy(update={"message_text": text})
    client = settings.hermes.get_client()

    def send() -> Delivery:
        receipt = client.submit_message(message)
        return Delivery(status=ReportStatus.CONFIRMED, remote_id=str(receipt.uuid), url=receipt.url)

    row, _ = deliver_once(runtime.ledger, report, send)
    return row


@task(
    name="send TNS report",
    task_run_name="send TNS report of {target.name}",
    retries=len(RETRY_DELAYS_S),
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_condition_fn=retry_if_unavailable,
    cache_policy=NO_CACHE,
)
def send_tns(
    runtime: Runtime, alert: Alert, target: Target, measurements: list[Measurement]
) -> ReportRow | None:
    """An AT report of a new candidate: its first detection and last non-detection."""
    tns = runtime.settings.tns
    try:
        first, last_limit = discovery_points(measurements, target.name)
    except ValueError:
        return None  # never detected: nothing to report to TNS
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
        TnsReporter(
            reporter=tns.reporter,
            reporting_group_id=tns.reporting_group_id,
            discovery_data_source_id=tns.discovery_data_source_id,
        ),
    )
    report = Report(
        destination=ReportDestination.TNS,
        event_id=alert.event_id,
        target_name=target.name,
        content_hash=content_hash(at_report),
        status=ReportStatus.DRAFT,
        payload={"internal_name": target.name},
    )
    entry = at_report["at_report"]["0"]
    approved, remarks = _approved(
        runtime,
        subject=f"report:tns:{alert.event_id}:{target.name}:{report.content_hash[:12]}",
        event_id=alert.event_id,
        markdown=render_markdown(at_report),
        text=entry.get("remarks", ""),
        public=True,
    )
    if not approved:
        return _declined(runtime, report)
    entry["remarks"] = remarks
    client = tns.get_client()

    def send() -> Delivery:
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

    row, _ = deliver_once(runtime.ledger, report, send, retry_uncertain=True)
    return row


@task(name="GCN Circular", cache_policy=NO_CACHE)
def gcn_circular(
    runtime: Runtime, alert: Alert, candidates: list[Target], measurements: list[Measurement]
) -> ReportRow:
    """Draft the Circular (an artifact with the ready email text); submit it when configured."""
    settings = runtime.settings
    circular = draft_circular(
        alert.event_id,
        measurements,
        observers=settings.authors,
        team=settings.team,
        targets=candidates,
        event_time=alert.event_time,
    )
    email = circular_email(circular, from_addr=settings.gcn.from_address or "followup@example.org")
    publish_markdown(
        "gcn-circular",
        alert.event_id,
        f"### GCN Circular draft\n\n**Subject:** {circular.subject}\n\n```\n{circular.body}\n```\n\n"
        f"#### Ready email for endorsed submitters\n\n```\n{email}\n```",
        f"GCN Circular draft for {alert.event_id}",
    )
    report = Report(
        destination=ReportDestination.GCN,
        event_id=alert.event_id,
        content_hash=content_hash({"subject": circular.subject, "body": circular.body}),
        status=ReportStatus.DRAFT,
        payload={"subject": circular.subject},
    )
    if not settings.send_gcn:
        row, _ = runtime.ledger.reports.claim(report)
        return row
    approved, body = _approved(
        runtime,
        subject=f"report:gcn:{alert.event_id}:{report.content_hash[:12]}",
        event_id=alert.event_id,
        markdown=render_markdown(circular),
        text=circular.body,
        public=True,
    )
    if not approved:
        return _declined(runtime, report)
    circular = circular.model_copy(update={"body": body})
    client = settings.gcn.get_client()

    def send() -> Delivery:
        record = client.submit_circular(circular)
        return Delivery(
            status=ReportStatus.CONFIRMED, remote_id=str(record.circular_id), url=record.url
        )

    row, _ = deliver_once(runtime.ledger, report, send)
    return row


@flow(name="report", flow_run_name="report-{event_id}")
def report(alert_id: int, event_id: str = "", settings: str = "default") -> list[dict[str, Any]]:
    """Report the event's measurements: HERMES, TNS for new candidates, a GCN Circular.

    Returns:
        One row per report: destination, target, status, remote id, link, ledger id.
    """
    logger = get_run_logger()
    runtime = load_runtime(settings)
    ledger = runtime.ledger
    alert_row, _ = ledger.alerts.get(alert_id)
    alert = Alert.model_validate(alert_row.summary)
    measurements = ledger.frames.measurements(alert.event_id)
    if not measurements:
        logger.info("%s has no measurements yet: nothing to report", alert.event_id)
        return []
    measured = {m.target_name for m in measurements}
    targets = [
        Target.model_validate(t.data)
        for t in ledger.events.targets(alert.event_id)
        if t.name in measured
    ]
    candidates = [t for t in targets if t.kind is TargetKind.CANDIDATE]
    rows: list[ReportRow] = [send_hermes(runtime, alert, targets, measurements)]
    if runtime.settings.send_tns:
        for candidate in candidates:
            row = send_tns(runtime, alert, candidate, measurements)
            if row is not None:
                rows.append(row)
    try:
        rows.append(gcn_circular(runtime, alert, candidates, measurements))
    except (FollowupError, ValueError) as exc:
        logger.error("no GCN Circular for %s: %s", alert.event_id, exc)
    for row in rows:
        if row.status in {ReportStatus.SENT, ReportStatus.CONFIRMED}:
            emit_followup_event(
                REPORT_SENT,
                alert.event_id,
                payload={"remote_id": row.remote_id, "url": row.url},
                destination=row.destination,
            )
    table = [_row(r) for r in rows]
    publish_table("reports", alert.event_id, table, f"reports of {alert.event_id}")
    return table
