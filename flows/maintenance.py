"""Scheduled flows: follow pending requests (``refresh-requests``), re-measure (``rerun-photometry``).

A follow-up run waits for LCO only for a short while; requests that complete later (the next
night, after a window opens) are followed here, so no process waits hours for the sky.
"""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger
from sqlalchemy import select

from flows.events import REQUEST_COMPLETED, emit_followup_event
from flows.frames import frames_task_runner, process_frames
from flows.report import report
from flows.runtime import Runtime, load_runtime
from followup.ledger import AlertRow, FrameRow, Ledger, RequestRow
from followup.models import AlertDecision, LcoState, utcnow
from tasks.lco import cancel_requests, refresh_states

__all__ = ["refresh_requests", "rerun_photometry"]


def _refresh_run_name() -> str:
    """``refresh-requests-<UTC time>``, e.g. ``refresh-requests-20250101T1205Z``."""
    return f"refresh-requests-{utcnow():%Y%m%dT%H%MZ}"


def _rerun_run_name() -> str:
    """``rerun-photometry-<UTC date>-<days>d``, e.g. ``rerun-photometry-20250101-3d``."""
    from prefect.runtime import flow_run

    days = flow_run.parameters.get("days", 3.0)
    return f"rerun-photometry-{utcnow():%Y%m%d}-{days:g}d"


def _latest_accepted_alert(ledger: Ledger, event_id: str) -> AlertRow | None:
    alerts = [a for a in ledger.alerts.for_event(event_id) if a.decision == AlertDecision.ACCEPTED]
    return alerts[-1] if alerts else None


def _process_and_report(runtime: Runtime, event_id: str, settings: str) -> None:
    alert = _latest_accepted_alert(runtime.ledger, event_id)
    if alert is None:
        return
    runner = frames_task_runner(runtime.settings.dask_address)
    process_frames.with_options(task_runner=runner)(alert.id, event_id, settings)
    report(alert.id, event_id, settings)


@flow(name="refresh-requests", flow_run_name=_refresh_run_name)
def refresh_requests(settings: str = "default") -> dict[str, list[str]]:
    """One batched status query for every pending request; move completed ones on.

    Events whose requests completed since the last look get their frames processed and reported;
    pending requests of retracted events are cancelled (in case the retraction run missed some).

    Returns:
        ``{"completed": [group names], "canceled": [group names]}``.
    """
    logger = get_run_logger()
    runtime = load_runtime(settings)
    portal = runtime.settings.lco.get_portal_client()
    changes = refresh_states(portal, runtime.ledger, None)
    completed = [c for c in changes if c.new is LcoState.COMPLETED]
    for change in completed:
        emit_followup_event(
            REQUEST_COMPLETED,
            change.event_id,
            payload={"request_id": change.request_id},
            group=change.group_name,
        )
    canceled: list[str] = []
    for event_id in sorted({r.event_id for r in runtime.ledger.requests.pending()}):
        event = runtime.ledger.events.get(event_id)
        if event is not None and event.retracted:
            canceled += [
                r.group_name
                for r in cancel_requests(portal, runtime.ledger, event_id)
                if r.canceled
            ]
    for event_id in sorted({c.event_id for c in completed}):
        _process_and_report(runtime, event_id, settings)
    logger.info("%d request(s) completed, %d cancelled", len(completed), len(canceled))
    return {"completed": [c.group_name for c in completed], "canceled": canceled}


@flow(name="rerun-photometry", flow_run_name=_rerun_run_name)
def rerun_photometry(settings: str = "default", days: float = 3.0) -> list[str]:
    """Process and report again every event with frames from the last ``days`` (new frames only).

    Measurements are stored once per frame, target and method, and reports once per content, so
    this measures what is new and sends only what changed.

    Returns:
        The events processed.
    """
    runtime = load_runtime(settings)
    since = utcnow() - timedelta(days=days)
    with runtime.ledger.session() as session:
        events = sorted(
            set(
                session.scalars(
                    select(RequestRow.event_id)
                    .join(FrameRow, FrameRow.request_row_id == RequestRow.id)
                    .where(FrameRow.created_at >= since)
                )
            )
        )
    for event_id in events:
        event = runtime.ledger.events.get(event_id)
        if event is None or not event.retracted:
            _process_and_report(runtime, event_id, settings)
    return events
