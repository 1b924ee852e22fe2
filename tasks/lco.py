"""Tasks around the LCO portal: submit exactly once, refresh states in one query, cancel."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from followup.lco import PortalClient
from followup.ledger import Ledger
from followup.models import ObservationRequest
from followup.observing import (
    CancelResult,
    StateChange,
    SubmitResult,
    cancel_event_requests,
    cancel_superseded_requests,
    mark_declined,
    refresh_request_states,
    submit_once,
)
from tasks.retry import SERVICE_RETRIES

__all__ = [
    "cancel_requests",
    "cancel_superseded",
    "decline_request",
    "refresh_states",
    "submit_request",
]


@task(
    name="submit request",
    task_run_name="submit {request.group_name}",
    cache_policy=NO_CACHE,
    **SERVICE_RETRIES,
)
def submit_request(
    portal: PortalClient, ledger: Ledger, request: ObservationRequest, payload: dict[str, Any]
) -> SubmitResult:
    """Validate and submit one request group, unless it reached the portal before.

    Retried on :class:`~followup.exceptions.ServiceUnavailable` only; each retry looks the group
    name up before sending (``submit_once``), so a POST that did arrive is never sent twice.
    """
    event = ledger.events.get(request.event_id)
    if event is not None and event.retracted:
        get_run_logger().warning("%s is retracted: not submitting", request.event_id)
        return mark_declined(ledger, request, "event retracted")
    result = submit_once(portal, ledger, request, payload)
    get_run_logger().info(
        "%s: %s (request %s, %s)",
        request.group_name,
        result.outcome,
        result.request_id,
        result.state,
    )
    return result


@task(name="decline request", task_run_name="decline {request.group_name}", cache_policy=NO_CACHE)
def decline_request(ledger: Ledger, request: ObservationRequest, reason: str) -> SubmitResult:
    """Record that a request will not be sent."""
    return mark_declined(ledger, request, reason)


@task(
    name="refresh request states",
    cache_policy=NO_CACHE,
    **SERVICE_RETRIES,
)
def refresh_states(
    portal: PortalClient, ledger: Ledger, event_id: str | None = None
) -> list[StateChange]:
    """One batched portal query; the ledger takes every state change."""
    changes = refresh_request_states(portal, ledger, event_id=event_id)
    for change in changes:
        get_run_logger().info("%s: %s -> %s", change.group_name, change.old, change.new)
    return changes


@task(
    name="cancel requests",
    task_run_name="cancel requests of {event_id}",
    cache_policy=NO_CACHE,
    **SERVICE_RETRIES,
)
def cancel_requests(portal: PortalClient, ledger: Ledger, event_id: str) -> list[CancelResult]:
    """Cancel every request of an event that may still be observed."""
    results = cancel_event_requests(portal, ledger, event_id)
    get_run_logger().info(
        "%s: %d cancelled, %d already finished",
        event_id,
        sum(r.canceled for r in results),
        sum(not r.canceled for r in results),
    )
    return results


@task(
    name="cancel superseded requests",
    task_run_name="cancel superseded requests of {event_id}",
    cache_policy=NO_CACHE,
    **SERVICE_RETRIES,
)
def cancel_superseded(
    portal: PortalClient, ledger: Ledger, event_id: str, reasons: dict[str, str]
) -> list[CancelResult]:
    """Cancel the pending requests of targets a new plan version dropped, with the reason.

    A retry (or a rerun) finds the requests it cancelled CANCELED in the ledger and leaves them.
    """
    results = cancel_superseded_requests(portal, ledger, event_id, reasons)
    for result in results:
        get_run_logger().info(
            "%s: %s (%s)", result.group_name, result.state or "never sent", result.reason
        )
    return results
