"""Scheduled flows: follow pending requests (``refresh-requests``), re-measure (``rerun-photometry``).

A follow-up run waits for LCO only for a short while; requests that complete later (the next
night, after a window opens) are followed here, so no process waits hours for the sky. An epoch
whose window closed without frames is requested again here while its event is live
(:mod:`followup.cadence`).
"""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger
from sqlalchemy import select

from flows.events import REQUEST_COMPLETED, REQUEST_SUBMITTED, emit_followup_event
from flows.frames import frames_task_runner, process_frames
from flows.report import report
from flows.runtime import Runtime, load_runtime
from followup.cadence import (
    events_with_expired_requests,
    note_rerequest,
    plan_rerequests,
    record_rerequest,
)
from followup.drills import DrillFenced
from followup.lco import PortalClient, Semester, at_submission, build_request_group
from followup.ledger import AlertRow, FrameRow, Ledger, RequestRow
from followup.models import Alert, AlertDecision, LcoState, utcnow
from followup.observing import SubmitOutcome
from tasks.lco import cancel_requests, refresh_states, submit_request

__all__ = ["refresh_requests", "request_again", "rerun_photometry"]


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


def request_again(runtime: Runtime, portal: PortalClient) -> list[str]:
    """Request again every epoch whose window closed without frames while its event is live.

    The reason is written on the expired request before anything is sent and on the new one
    once the portal has it; submission is the exactly-once ``submit request`` task.

    Returns:
        The group names sent (or found sent by an earlier run).
    """
    ledger = runtime.ledger
    now = utcnow()
    semesters: list[Semester] | None = None  # asked for only when something is to be sent
    sent = []
    for event_id in events_with_expired_requests(ledger):
        latest = _latest_accepted_alert(ledger, event_id)
        plans = plan_rerequests(
            ledger,
            event_id,
            runtime.strategies,
            proposal=runtime.settings.lco.proposal_id,
            now=now,
        )
        if not plans or latest is None:
            continue
        if semesters is None:
            semesters = portal.list_semesters(ending_after=now)
        try:
            runtime.fence(Alert.model_validate(latest.summary), "LCO")
        except DrillFenced as exc:  # one fenced drill must not stop the other events
            get_run_logger().warning("%s: not requested again: %s", event_id, exc)
            continue
        for plan in plans:
            # The windows are clipped to one semester here, as every request's.
            spec = at_submission(plan.spec, now=utcnow(), semesters=semesters)
            request = plan.request.model_copy(
                update={"window_start": spec.window_start, "window_end": spec.window_end}
            )
            note_rerequest(ledger, plan)
            result = submit_request(portal, ledger, request, build_request_group(spec))
            if result.outcome in {SubmitOutcome.SUBMITTED, SubmitOutcome.FOUND}:
                record_rerequest(ledger, plan)
                emit_followup_event(
                    REQUEST_SUBMITTED,
                    event_id,
                    payload={"request_id": result.request_id, "group_id": result.group_id},
                    group=request.group_name,
                )
                sent.append(request.group_name)
    return sent


@flow(name="refresh-requests", flow_run_name=_refresh_run_name)
def refresh_requests(settings: str = "default") -> dict[str, list[str]]:
    """One batched status query for every pending request; move completed ones on.

    Events whose requests completed since the last look get their frames processed and reported;
    pending requests of retracted events are cancelled (in case the retraction run missed some);
    epochs whose window closed without frames are requested again while their event is live.

    Returns:
        ``{"completed": [...], "canceled": [...], "requested_again": [...]}`` (group names).
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
    again = request_again(runtime, portal)
    for event_id in sorted({c.event_id for c in completed}):
        _process_and_report(runtime, event_id, settings)
    logger.info(
        "%d request(s) completed, %d cancelled, %d requested again",
        len(completed),
        len(canceled),
        len(again),
    )
    return {
        "completed": [c.group_name for c in completed],
        "canceled": canceled,
        "requested_again": again,
    }


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
