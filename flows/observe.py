"""Stage flow ``observe``: strategy, approval, exactly-once submission, waiting for LCO."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.states import Completed, State

from flows.approvals import ask_for_strategy
from flows.events import (
    REQUEST_CANCELED,
    REQUEST_COMPLETED,
    REQUEST_SUBMITTED,
    emit_followup_event,
)
from flows.pointings import update_treasure_map
from flows.runtime import Runtime, load_runtime
from followup.cadence import PlannedRequest, plan_epochs
from followup.lco import (
    PortalClient,
    RequestGroupSpec,
    Semester,
    at_submission,
    build_request_group,
)
from followup.ledger import Ledger, RequestRow
from followup.models import (
    Alert,
    Approval,
    LcoState,
    ObservationRequest,
    ObservingStrategy,
    RequestStatus,
    Target,
    utcnow,
)
from followup.observing import CancelResult, SubmitOutcome
from followup.replanning import (
    PlanVersion,
    again_after_cancel,
    current_targets,
    superseded_targets,
)
from followup.strategies import choose_strategy, needs_approval
from tasks.artifacts import publish_table
from tasks.lco import cancel_superseded, decline_request, refresh_states, submit_request

__all__ = ["observe", "submit_planned", "wait_for_requests"]


def submit_planned(
    portal: PortalClient,
    ledger: Ledger,
    planned: list[PlannedRequest],
    semesters: list[Semester],
) -> None:
    """Submit planned requests, announcing each one that reached the portal.

    Rapid-response and time-critical windows are timed now, at submission (after any
    approval), not when the requests were planned.
    """
    for request, spec in planned:
        spec = at_submission(spec, now=utcnow(), semesters=semesters)
        request = request.model_copy(
            update={"window_start": spec.window_start, "window_end": spec.window_end}
        )
        result = submit_request(portal, ledger, request, build_request_group(spec))
        if result.outcome in {SubmitOutcome.SUBMITTED, SubmitOutcome.FOUND}:
            emit_followup_event(
                REQUEST_SUBMITTED,
                request.event_id,
                payload={"request_id": result.request_id, "group_id": result.group_id},
                group=request.group_name,
            )


def _plan_requests(
    alert: Alert,
    targets: list[Target],
    strategy: ObservingStrategy,
    proposal: str,
    semesters: list[Semester],
) -> list[PlannedRequest]:
    """One request group per target and epoch of the strategy's cadence."""
    planned_at = utcnow()
    return [
        planned
        for target in targets[: strategy.max_targets]
        for planned in plan_epochs(
            alert.event_id,
            target,
            strategy,
            proposal=proposal,
            now=planned_at,
            semesters=semesters,
        )
    ]


def _plan_current(
    ledger: Ledger,
    alert: Alert,
    targets: list[Target],
    strategy: ObservingStrategy,
    proposal: str,
    semesters: list[Semester],
) -> list[PlannedRequest]:
    """:func:`_plan_requests`, a field taken back after a plan dropped it as a new attempt."""
    planned = _plan_requests(alert, targets, strategy, proposal, semesters)
    return again_after_cancel(ledger, planned, plan=strategy.name)


def _describe(
    alert: Alert,
    strategy: ObservingStrategy,
    planned: list,
    reason: str,
    version: PlanVersion | None = None,
) -> str:
    lines = [
        f"### Telescope time for {alert.event_id} ({alert.alert_type.value})",
        f"**Why approval is needed:** {reason}",
        "",
    ]
    if version is not None:
        lines += [version.markdown(), ""]
    lines += [
        f"Strategy **{strategy.name}**: {strategy.instrument_type}, filters "
        f"{', '.join(strategy.filters)}, {strategy.exposure_count} x {strategy.exposure_time_s:.0f} s, "
        f"{strategy.observation_type.value}, {strategy.epochs} epoch(s).",
        "",
        "| group | target | epoch | window start (UTC) | window end (UTC) |",
        "|---|---|---|---|---|",
    ]
    for request, _ in planned:
        lines.append(
            f"| {request.group_name} | {request.target_name} | {request.epoch} | "
            f"{request.window_start:%Y-%m-%d %H:%M} | {request.window_end:%Y-%m-%d %H:%M} |"
        )
    return "\n".join(lines)


def requests_rows(ledger: Ledger, event_id: str) -> list[dict]:
    """The requests table of an event, with links to the portal."""
    targets = {t.id: t.name for t in ledger.events.targets(event_id)}
    return [
        {
            "group": row.group_name,
            "target": targets.get(row.target_id, "?"),
            "epoch": row.epoch,
            "filters": row.filters_key,
            "type": row.observation_type,
            "status": row.local_status,
            "state": row.state,
            "request id": row.request_id,
            "portal": row.portal_url or "",
            "detail": row.detail or "",
        }
        for row in ledger.requests.for_event(event_id)
    ]


def _approval_subject(alert: Alert, version: PlanVersion | None) -> str:
    """``requests:<event>:<alert type>``, with ``:v<n>`` from the second plan version on.

    Two UPDATEs of one event are two plans: the second must not reuse the first's decision.
    """
    subject = f"requests:{alert.event_id}:{alert.alert_type.value.lower()}"
    return (
        f"{subject}:v{version.version}" if version is not None and version.version > 1 else subject
    )


def _ask_for_time(
    runtime: Runtime,
    alert: Alert,
    strategy: ObservingStrategy,
    planned: list[tuple[ObservationRequest, RequestGroupSpec]],
    reason: str,
    version: PlanVersion | None = None,
) -> tuple[Approval, ObservingStrategy | None]:
    """A person's decision on the planned requests, and the strategy as approved (None: declined).

    See :func:`flows.approvals.ask_for_strategy`.
    """
    return ask_for_strategy(
        runtime.ledger,
        subject=_approval_subject(alert, version),
        event_id=alert.event_id,
        description=_describe(alert, strategy, planned, reason, version),
        strategy=strategy,
        rules=runtime.strategies.approval,
        n_requests=len(planned),
        timeout_s=runtime.settings.approval_timeout_s,
    )


def _submitted(rows: list[RequestRow]) -> list[RequestRow]:
    return [r for r in rows if r.local_status == RequestStatus.SUBMITTED]


@flow(name="wait-for-requests", flow_run_name="wait-{event_id}")
def wait_for_requests(
    event_id: str,
    settings: str = "default",
    max_wait_seconds: float = 600,
    poll_frequency_seconds: float = 30,
) -> State:
    """Poll the event's requests (one batched query per cycle) until none is PENDING.

    Ends Completed when every request reached a terminal state, or Completed named
    ``StillPending`` after ``max_wait_seconds``: the ``refresh-requests`` schedule then follows the
    rest, so no process waits hours for the sky.
    """
    runtime = load_runtime(settings)
    portal = runtime.settings.lco.get_portal_client()
    logger = get_run_logger()
    deadline = time.monotonic() + max_wait_seconds
    while True:
        for change in refresh_states(portal, runtime.ledger, event_id):
            if change.new is LcoState.COMPLETED:
                emit_followup_event(
                    REQUEST_COMPLETED,
                    event_id,
                    payload={"request_id": change.request_id},
                    group=change.group_name,
                )
        pending = [r.group_name for r in runtime.ledger.requests.pending(event_id)]
        if not pending:
            states = {
                r.group_name: r.state
                for r in _submitted(runtime.ledger.requests.for_event(event_id))
            }
            return Completed(message=f"every request is terminal: {states}", data=states)
        if time.monotonic() >= deadline:
            logger.info("%d request(s) still pending after %.0f s", len(pending), max_wait_seconds)
            return Completed(
                name="StillPending",
                message=f"{len(pending)} request(s) still pending; refresh-requests follows them",
                data={name: LcoState.PENDING.value for name in pending},
            )
        time.sleep(min(poll_frequency_seconds, max(0.0, deadline - time.monotonic())))


def _new_requests(
    ledger: Ledger,
    planned: list[tuple[ObservationRequest, RequestGroupSpec]],
    version: PlanVersion | None,
) -> list[tuple[ObservationRequest, RequestGroupSpec]]:
    """What a person is asked about: from the second plan version on, only requests not yet made.

    The fields a new version keeps were requested (and approved) before; they are not asked
    about, nor declined, again.
    """
    if version is None or version.version <= 1:
        return planned
    return [p for p in planned if ledger.requests.find(p[0].group_name) is None]


def _current_targets(ledger: Ledger, event_id: str) -> list[Target]:
    """The targets of the event's latest plan version, best first (all stored ones without one)."""
    stored = {t.name: Target.model_validate(t.data) for t in ledger.events.targets(event_id)}
    names = current_targets(ledger, event_id)
    if names is None:
        return list(stored.values())
    return [stored[name] for name in names if name in stored]


def _cancel_superseded(runtime: Runtime, alert: Alert, portal: PortalClient) -> list[CancelResult]:
    """Cancel at LCO the pending requests of targets a plan version dropped, with the reason.

    Reads only the ledger (every version's dropped targets not taken back since), so a rerun
    or a later alert finishes what a crashed run left, and cancels nothing twice.
    """
    ledger = runtime.ledger
    reasons = superseded_targets(ledger, alert.event_id)
    if not reasons:
        return []
    runtime.fence(alert, "LCO")
    refresh_states(portal, ledger, alert.event_id)
    results = cancel_superseded(portal, ledger, alert.event_id, reasons)
    for result in results:
        emit_followup_event(
            REQUEST_CANCELED,
            alert.event_id,
            payload={
                "canceled": result.canceled,
                "state": result.state,
                "message": result.message,
                "reason": result.reason,
            },
            group=result.group_name,
        )
    if results:
        get_run_logger().info(
            "%s: %d request(s) of dropped fields cancelled", alert.event_id, len(results)
        )
    return results


@flow(name="observe", flow_run_name="observe-{event_id}")
def observe(
    alert_id: int, event_id: str = "", settings: str = "default", wait: bool = True
) -> list[dict]:
    """Ask LCO for images of the event's targets: strategy, approval, submission, waiting.

    Every request is claimed in the ledger before it is sent and looked up by name before any
    resend, so rerunning this flow never submits anything twice.

    Returns:
        The requests table of the event.
    """
    logger = get_run_logger()
    runtime = load_runtime(settings)
    ledger = runtime.ledger
    row, _ = ledger.alerts.get(alert_id)
    alert = Alert.model_validate(row.summary)
    portal = runtime.settings.lco.get_portal_client()
    _cancel_superseded(runtime, alert, portal)
    targets = _current_targets(ledger, alert.event_id)
    if not targets:
        logger.warning("%s has no targets: nothing to observe", alert.event_id)
        return requests_rows(ledger, alert.event_id)
    version_row = ledger.plans.latest(alert.event_id)
    version = PlanVersion.from_row(version_row) if version_row is not None else None
    strategy = choose_strategy(alert, runtime.strategies)
    semesters = portal.list_semesters(ending_after=utcnow())
    proposal = runtime.settings.lco.proposal_id
    planned = _plan_current(ledger, alert, targets, strategy, proposal, semesters)
    asked = _new_requests(ledger, planned, version)
    required, reason = needs_approval(
        strategy, alert, rules=runtime.strategies.approval, n_requests=len(asked)
    )
    if required and asked:
        decision, approved = _ask_for_time(runtime, alert, strategy, asked, reason, version)
        if approved is None:
            for request, _ in asked:
                decline_request(ledger, request, f"declined by {decision.decided_by}")
            rows = requests_rows(ledger, alert.event_id)
            publish_table("requests", alert.event_id, rows, "LCO requests (declined)")
            return rows
        if approved != strategy:
            strategy = approved
            planned = _plan_current(ledger, alert, targets, strategy, proposal, semesters)
    runtime.fence(alert, "LCO")  # before the portal client goes to the submitting task
    submit_planned(portal, ledger, planned, semesters)
    update_treasure_map(alert.event_id, settings)  # on the Treasure Map as soon as requested
    if wait:
        wait_for_requests(
            alert.event_id,
            settings,
            max_wait_seconds=runtime.settings.max_wait_s,
            poll_frequency_seconds=runtime.settings.poll_interval_s,
        )
    rows = requests_rows(ledger, alert.event_id)
    publish_table("requests", alert.event_id, rows, f"LCO requests of {alert.event_id}")
    return rows
