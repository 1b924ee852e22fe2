"""Stage flow ``report``: HERMES photometry, TNS AT reports of new candidates, a GCN Circular.

The stage reads as the loop does: the flow builds each report
(:mod:`followup.reporting.outbox`), asks a person in an ``approve`` subflow when the send is
public (TNS, GCN, a HERMES topic that is not a test topic; the rendered message is shown and its
text editable, the edit checked before it is recorded), and hands the approved report, with the
client its Block built, to one thin task that delivers it. Every report is claimed in the ledger
under (destination, event, target, content hash) before it is sent, so rerunning this flow sends
nothing twice; a decline is recorded. A HERMES send whose answer was lost is looked up in
HERMES's message query (here, and again by every later run) instead of being sent again. A test or
mock alert reaches no service that is not a sandbox (:mod:`followup.drills`).

Only a candidate that passed vetting (its vetting kept in the ledger by ``process-frames``) is
reported to TNS, and its form shows what a person decides on: the science, reference and
difference cutouts and the light curve (PNG plots, also artifacts of the run), the real-bogus
score and every vetting reason.
"""

from __future__ import annotations

from typing import Any, cast

from prefect import flow, get_run_logger

from flows.approvals import ReportApproval, ask
from flows.events import REPORT_SENT, emit_followup_event
from flows.evidence import candidate_evidence, vetted_candidates
from flows.pointings import event_coverage
from flows.runtime import Runtime, load_runtime
from followup.exceptions import FollowupError
from followup.ledger import ReportRow
from followup.models import (
    Alert,
    Measurement,
    ReportDestination,
    ReportStatus,
    Target,
    TargetKind,
)
from followup.reporting import circular_email
from followup.reporting.findings import CandidateFinding, Coverage
from followup.reporting.gcn import Circular
from followup.reporting.hermes import HermesClient
from followup.reporting.outbox import (
    Outgoing,
    candidates_outgoing,
    gcn_outgoing,
    hermes_outgoing,
    no_counterpart_outgoing,
    non_detection_outgoing,
    tns_outgoing,
)
from tasks.artifacts import publish_markdown, publish_table
from tasks.reports import (
    decline_report,
    deliver_report,
    galactic_extinction,
    look_up_hermes_reports,
)

__all__ = ["report"]

_SENT = {ReportStatus.SENT, ReportStatus.CONFIRMED}


def _row(row: ReportRow) -> dict[str, Any]:
    return {
        "destination": row.destination,
        "target": row.target_name,
        "status": row.status,
        "remote id": row.remote_id or "",
        "link": row.url or "",
        "ledger id": row.id,
    }


def _publish_circular_draft(runtime: Runtime, circular: Circular, event_id: str) -> None:
    """The Circular and its ready email text, as an artifact (endorsed emailers send that)."""
    sender = runtime.settings.gcn.from_address or "followup@example.org"
    publish_markdown(
        "gcn-circular",
        event_id,
        f"### GCN Circular draft\n\n**Subject:** {circular.subject}\n\n```\n{circular.body}\n```"
        f"\n\n#### Ready email for endorsed submitters\n\n```\n"
        f"{circular_email(circular, from_addr=sender)}\n```",
        f"GCN Circular draft for {event_id}",
    )


def _build(
    runtime: Runtime,
    alert: Alert,
    targets: list[Target],
    measurements: list[Measurement],
    coverage: Coverage | None = None,
) -> list[Outgoing]:
    """The event's HERMES messages and TNS reports (the Circular follows, with TNS names).

    When the fields were observed and no candidate was detected, HERMES also gets the limits
    of every field.
    """
    settings = runtime.settings
    outgoing = []
    if measurements:
        outgoing.append(
            hermes_outgoing(
                alert,
                targets,
                measurements,
                authors=settings.authors,
                team=settings.team,
                topic=settings.hermes_topic,
            )
        )
    detected = _detected(targets, measurements)
    if coverage is not None and not detected:
        outgoing.append(
            non_detection_outgoing(
                alert,
                coverage,
                authors=settings.authors,
                team=settings.team,
                topic=settings.hermes_topic,
            )
        )
    if settings.send_tns:
        reporter = settings.tns.get_reporter()
        for candidate in vetted_candidates(runtime, alert.event_id, detected):
            at_report = tns_outgoing(alert, candidate, measurements, reporter=reporter)
            if at_report is not None:
                outgoing.append(at_report)
    return outgoing


def _detected(targets: list[Target], measurements: list[Measurement]) -> list[Target]:
    found = {m.target_name for m in measurements if m.is_detection}
    return [t for t in targets if t.kind is TargetKind.CANDIDATE and t.name in found]


def _findings(runtime: Runtime, event_id: str, candidates: list[Target]) -> list[CandidateFinding]:
    """Each detected candidate with its TNS name (once reported), host and extinction."""
    tns_names = {
        r.target_name: r.remote_id
        for r in runtime.ledger.reports.for_event(event_id)
        if r.destination == ReportDestination.TNS and r.status in _SENT and r.remote_id
    }
    rows = {t.name: t for t in runtime.ledger.events.targets(event_id)}
    url = runtime.settings.irsa_dust_url
    findings = []
    for c in candidates:
        data = rows[c.name].data if c.name in rows else {}
        name = tns_names.get(c.name)
        findings.append(
            CandidateFinding(
                name=c.name,
                ra=c.ra,
                dec=c.dec,
                tns_name=None if name is None else (name if name[:2].isalpha() else f"AT {name}"),
                host_name=data.get("host_name"),
                host_redshift=data.get("host_redshift"),
                host_offset_arcsec=data.get("host_offset_arcsec"),
                extinction=galactic_extinction(c.ra, c.dec, url) if url else None,
            )
        )
    return findings


def _circular(
    runtime: Runtime,
    alert: Alert,
    targets: list[Target],
    measurements: list[Measurement],
    coverage: Coverage | None,
) -> Outgoing | None:
    """The Circular: candidates found, no counterpart in the fields, or the targets' limits."""
    settings = runtime.settings
    detected = _detected(targets, measurements)
    people = {"authors": settings.authors, "team": settings.team}
    try:
        if detected:
            findings = _findings(runtime, alert.event_id, detected)
            circular = candidates_outgoing(
                alert, findings, measurements, coverage=coverage, **people
            )
        elif coverage is not None:
            circular = no_counterpart_outgoing(alert, coverage, **people)
        else:
            circular = gcn_outgoing(alert, [], measurements, **people)
    except (FollowupError, ValueError) as exc:
        get_run_logger().error("no GCN Circular for %s: %s", alert.event_id, exc)
        return None
    _publish_circular_draft(runtime, cast(Circular, circular.content), alert.event_id)
    return circular


def _settle(
    runtime: Runtime, alert: Alert, outgoing: Outgoing, *, evidence: str | None = None
) -> ReportRow:
    """Ask a person when the send is public (``evidence`` below the message), then deliver."""
    if outgoing.destination is ReportDestination.GCN and not runtime.settings.send_gcn:
        row, _ = runtime.ledger.reports.claim(outgoing.report)  # a draft: people email it
        return row
    if outgoing.public:
        decision, answer = ask(
            runtime.ledger,
            subject=outgoing.approval_subject,
            event_id=alert.event_id,
            description=outgoing.markdown + (f"\n\n---\n\n{evidence}" if evidence else ""),
            form=ReportApproval(text=outgoing.text),
            timeout_s=runtime.settings.approval_timeout_s,
            check=lambda form: outgoing.text_problems(form.text),
        )
        if not decision.approved:
            return decline_report(runtime.ledger, outgoing.report)
        outgoing = outgoing.with_text(answer.text)
    client = runtime.report_client(alert, outgoing.destination)
    row = deliver_report(client, runtime.ledger, outgoing)
    if isinstance(client, HermesClient) and row.status == ReportStatus.UNCONFIRMED:
        # A send whose answer was lost (now or in an earlier run): HERMES may list it.
        looked_up = look_up_hermes_reports(client, runtime.ledger, alert.event_id)
        row = next((r for r in looked_up if r.id == row.id), row)
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
    coverage = event_coverage(ledger, alert.event_id)
    if not measurements and coverage is None:
        logger.info(
            "%s has no measurements or observed fields yet: nothing to report", alert.event_id
        )
        return []
    measured = {m.target_name for m in measurements}
    targets = [
        Target.model_validate(t.data)
        for t in ledger.events.targets(alert.event_id)
        if t.name in measured
    ]
    rows = []
    for o in _build(runtime, alert, targets, measurements, coverage):
        evidence = None
        asked = bool(ledger.approvals.for_subject(o.approval_subject))
        if o.destination is ReportDestination.TNS and o.report.target_name and not asked:
            evidence = candidate_evidence(
                runtime, alert.event_id, o.report.target_name, measurements
            )
        rows.append(_settle(runtime, alert, o, evidence=evidence))
    circular = _circular(runtime, alert, targets, measurements, coverage)
    if circular is not None:  # after TNS: it names the objects TNS designated
        rows.append(_settle(runtime, alert, circular))
    for row in rows:
        if row.status in _SENT:
            emit_followup_event(
                REPORT_SENT,
                alert.event_id,
                payload={"remote_id": row.remote_id, "url": row.url},
                destination=row.destination,
            )
    table = [_row(r) for r in rows]
    publish_table("reports", alert.event_id, table, f"reports of {alert.event_id}")
    return table
