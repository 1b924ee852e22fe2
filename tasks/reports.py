"""Tasks of the report stage: deliver a report at most once, record a decline, settle lost sends."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from followup.ledger import Ledger, ReportRow
from followup.models import Report
from followup.reporting.extinction import Extinction, query_extinction
from followup.reporting.hermes import HermesClient
from followup.reporting.hermes_recovery import resolve_unconfirmed_hermes
from followup.reporting.outbox import Outgoing, ReportClient, decline, deliver
from tasks.retry import SERVICE_RETRIES

__all__ = ["decline_report", "deliver_report", "galactic_extinction", "look_up_hermes_reports"]


@task(
    name="deliver report",
    task_run_name="deliver {outgoing.report.destination} report of {outgoing.report.event_id}",
    cache_policy=NO_CACHE,
    **SERVICE_RETRIES,
)
def deliver_report(client: ReportClient, ledger: Ledger, outgoing: Outgoing) -> ReportRow:
    """Send an (approved) report unless it went out before.

    Retried on :class:`~followup.exceptions.ServiceUnavailable` only: the ledger row says
    ``failed`` then, and nothing arrived. A send that may have arrived is recorded
    ``unconfirmed`` and never retried blindly.
    """
    row = deliver(ledger, outgoing, client)
    get_run_logger().info(
        "%s report of %s: %s %s", row.destination, row.event_id, row.status, row.remote_id or ""
    )
    return row


@task(
    name="decline report",
    task_run_name="decline {report.destination} report of {report.event_id}",
    cache_policy=NO_CACHE,
)
def decline_report(ledger: Ledger, report: Report) -> ReportRow:
    """Record that a person declined the report (unless it already went out)."""
    return decline(ledger, report)


@task(
    name="look up unconfirmed HERMES reports",
    task_run_name="look up unconfirmed HERMES reports of {event_id}",
    cache_policy=NO_CACHE,
    **SERVICE_RETRIES,
)
def look_up_hermes_reports(client: HermesClient, ledger: Ledger, event_id: str) -> list[ReportRow]:
    """Confirm the event's HERMES reports whose answer was lost, if HERMES lists them.

    Those it does not list keep ``unconfirmed`` with an alarm for a person; the next report run
    looks again. Nothing is ever sent here.
    """
    rows = resolve_unconfirmed_hermes(ledger, client, event_id)
    for row in rows:
        get_run_logger().info("HERMES report %s of %s: %s", row.id, event_id, row.status)
    return rows


@task(
    name="Galactic extinction",
    task_run_name="Galactic extinction at {ra:.4f} {dec:+.4f}",
    cache_policy=NO_CACHE,
)
def galactic_extinction(ra: float, dec: float, url: str) -> Extinction | None:
    """E(B-V) at a position from IRSA's dust service; None (logged) when it cannot be had.

    A Circular is not held back for its extinction line: without an answer it says nothing of it.
    """
    try:
        return query_extinction(ra, dec, url=url)
    except Exception as exc:  # astroquery raises requests' and its own errors
        get_run_logger().warning("no Galactic extinction at %.5f %+.5f: %s", ra, dec, exc)
        return None
