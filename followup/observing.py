"""Telescope requests exactly once: claim in the ledger, submit, poll in batches, cancel.

The ledger row is written *before* anything is sent. Whenever a POST may have reached the portal
without its answer reaching us (a crash between the POST and the ledger write, a timeout, a 5xx
after the body went out), the group is looked up by its deterministic name before anything is
sent again. The portal may still be processing a POST whose answer we lost, so after an
:class:`~followup.exceptions.UncertainOutcome` the look-up is repeated after delays; a group still
absent then did not arrive, which is a :class:`~followup.exceptions.ServiceUnavailable` the
calling task may retry (and every retry looks the name up again before sending).

Only the holder of the row's claim (:mod:`followup.ledger.claims`) talks to the portal about it.
Two callers of one request (two alerts of an event on two workers, a retry during a run) race for
the claim in the ledger; the loser waits until the holder has finished, then reads the row and
reports what the holder did. It never sends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from followup.exceptions import RequestRejected, ServiceUnavailable, UncertainOutcome
from followup.lco import PortalClient, RequestGroup, group_name_prefix
from followup.ledger import Ledger, RequestRow
from followup.ledger.claims import (
    DEFAULT_LEASE,
    DEFAULT_WAIT_S,
    holder_is_dead,
    new_owner,
    wait_for_release,
)
from followup.models import LcoState, ObservationRequest, RequestStatus

__all__ = [
    "CancelResult",
    "StateChange",
    "SubmitOutcome",
    "SubmitResult",
    "cancel_event_requests",
    "cancel_superseded_requests",
    "mark_declined",
    "refresh_request_states",
    "submit_once",
]

logger = logging.getLogger(__name__)

# A look-up by name is limited to groups created after the row was claimed, less this margin
# (clock skew between us and the portal).
CLOCK_MARGIN = timedelta(minutes=10)


class SubmitOutcome(StrEnum):
    """What :func:`submit_once` did about one request."""

    SUBMITTED = "submitted"
    """Sent now."""
    FOUND = "found"
    """An earlier POST had reached the portal."""
    ALREADY = "already"
    """The ledger already held the remote ids."""
    NOT_SENT = "not-sent"
    """Declined or rejected earlier: nothing is sent again."""


class SubmitResult(BaseModel):
    """What :func:`submit_once` did for one request.

    Attributes:
        group_name: The request group name.
        outcome: What was done (see :class:`SubmitOutcome`).
        group_id: LCO request group id.
        request_id: LCO request id.
        state: State at the portal.
        local_status: The ledger row's status afterwards.
    """

    group_name: str
    outcome: SubmitOutcome
    group_id: int | None = None
    request_id: int | None = None
    state: LcoState | None = None
    local_status: RequestStatus


class StateChange(BaseModel):
    """A request whose state at the portal differs from the ledger's."""

    group_name: str
    event_id: str
    request_id: int
    old: LcoState
    new: LcoState


class CancelResult(BaseModel):
    """What cancelling one request group achieved.

    Attributes:
        group_name: The request group name.
        canceled: True when the group is CANCELED now.
        state: Its state afterwards (COMPLETED, WINDOW_EXPIRED... when it had already finished).
        message: The portal's refusal for a group that had already finished.
        reason: Why it was cancelled, when a new plan dropped its target.
    """

    group_name: str
    canceled: bool
    state: LcoState | None
    message: str | None = None
    reason: str | None = None


def _record(ledger: Ledger, group: RequestGroup, *, portal: PortalClient) -> RequestRow:
    request_id = group.request_ids[0] if group.requests else None
    state = group.requests[0].state if group.requests else group.state
    return ledger.requests.finish(
        group.name,
        local_status=RequestStatus.SUBMITTED,
        group_id=group.id,
        request_id=request_id,
        state=state,
        portal_url=portal.request_url(request_id) if request_id is not None else None,
        detail=None,
    )


def _result(row: RequestRow, outcome: SubmitOutcome) -> SubmitResult:
    return SubmitResult(
        group_name=row.group_name,
        outcome=outcome,
        group_id=row.group_id,
        request_id=row.request_id,
        state=row.state,
        local_status=row.local_status,
    )


class _Claim(BaseModel):
    """How to take a request's claim: who takes it, for how long, how long to wait for it."""

    owner: str
    lease: timedelta = DEFAULT_LEASE
    wait_s: float = DEFAULT_WAIT_S
    poll_s: float = 0.1


def _hold(
    ledger: Ledger,
    request: ObservationRequest,
    claim: _Claim,
    sleep: Callable[[float], None],
) -> tuple[RequestRow, bool, bool]:
    """Take the request's claim, waiting while someone else holds it.

    Returns:
        The row; True when this call holds the claim (False: the row is no longer ``claimed``,
        nothing to send); True when the row was written by this call (no earlier POST can
        exist, so no look-up is needed).

    Raises:
        ClaimHeld: Someone else still held it after ``claim.wait_s``.
    """
    row, created = ledger.requests.claim(request, owner=claim.owner, lease=claim.lease)
    if created:
        return row, True, True
    row, held = _hold_row(ledger, row, claim, sleep)
    return row, held, False


def _hold_row(
    ledger: Ledger, row: RequestRow, claim: _Claim, sleep: Callable[[float], None]
) -> tuple[RequestRow, bool]:
    """Take the claim on a stored row while it is ``claimed``; True when this call holds it."""
    name = row.group_name
    while row.local_status == RequestStatus.CLAIMED:
        dead = row.claimed_by if holder_is_dead(row.claimed_by) else None
        held = ledger.requests.acquire(name, claim.owner, lease=claim.lease, take_from=dead)
        if held is not None:
            return held, True
        row = wait_for_release(
            lambda: ledger.requests.find(name),
            claim.owner,
            what=f"request group {name}",
            wait_s=claim.wait_s,
            poll_s=claim.poll_s,
            sleep=sleep,
        )
    return row, False


def submit_once(
    portal: PortalClient,
    ledger: Ledger,
    request: ObservationRequest,
    payload: Mapping[str, Any],
    *,
    validate: bool = True,
    recheck_delays_s: Sequence[float] = (5.0, 30.0),
    sleep: Callable[[float], None] = time.sleep,
    owner: str | None = None,
    lease: timedelta = DEFAULT_LEASE,
    wait_s: float = DEFAULT_WAIT_S,
) -> SubmitResult:
    """Submit one request group unless it has been submitted before, by anyone, ever.

    Args:
        portal: Observation Portal client.
        ledger: The ledger (its unique key on event, target, filters and epoch backs the promise).
        request: The request as the ledger keys it; ``request.group_name`` must equal
            ``payload["name"]``.
        payload: The request-group payload (see :func:`followup.lco.build_request_group`).
        validate: Ask the portal's validate endpoint first; an invalid payload is recorded as
            ``rejected`` with the portal's messages and never sent.
        recheck_delays_s: After an uncertain outcome, look the name up after each of these
            delays (the portal may still be processing our POST).
        sleep: Injectable sleep, for tests.
        owner: Who claims the request (default: unique to this call).
        lease: How long the claim holds if this caller dies while holding it.
        wait_s: How long to wait for another caller that holds the claim.

    Returns:
        What happened; the ledger row is updated with the remote ids. A caller that waited for
        another gets ``already`` (or ``not-sent``) with what the other recorded.

    Raises:
        ValueError: The payload's name differs from the request's group name.
        RequestRejected: The portal refused the payload (recorded as ``rejected``).
        ServiceUnavailable: Nothing was stored: the portal could not be reached or throttled
            us, a look-up failed, or an uncertain POST left no group after every look-up. A
            retry is safe: the row is claimed, so it looks the name up before sending.
        ClaimHeld: Another caller held the request for longer than ``wait_s`` (nothing sent).
        UncertainOutcome: Only with no ``recheck_delays_s``: the POST may have arrived and was
            not looked up.
    """
    if payload.get("name") != request.group_name:
        raise ValueError(
            f"payload name {payload.get('name')!r} differs from group name {request.group_name!r}"
        )
    claim = _Claim(owner=owner or new_owner(), lease=lease, wait_s=wait_s)
    row, held, created = _hold(ledger, request, claim, sleep)
    if row.local_status == RequestStatus.SUBMITTED:
        return _result(row, SubmitOutcome.ALREADY)
    if not held:
        return _result(row, SubmitOutcome.NOT_SENT)
    try:
        return _submit_held(
            portal, ledger, row, payload, created, validate, recheck_delays_s, sleep
        )
    finally:
        ledger.requests.release(row.group_name, claim.owner)


def _submit_held(
    portal: PortalClient,
    ledger: Ledger,
    row: RequestRow,
    payload: Mapping[str, Any],
    created: bool,
    validate: bool,
    recheck_delays_s: Sequence[float],
    sleep: Callable[[float], None],
) -> SubmitResult:
    """Look up, validate and POST a request whose claim this call holds."""
    created_after = row.created_at - CLOCK_MARGIN
    if not created:
        # Claimed by an earlier attempt that may have POSTed and died before writing the answer.
        found = portal.find_request_group_by_name(row.group_name, created_after=created_after)
        if found is not None:
            logger.info("request group %s was already at the portal (id %s)", found.name, found.id)
            return _result(_record(ledger, found, portal=portal), SubmitOutcome.FOUND)
    if validate:
        validation = portal.validate_request_group(payload)
        if not validation.is_valid:
            detail = "; ".join(validation.messages)
            ledger.requests.finish(
                row.group_name, local_status=RequestStatus.REJECTED, detail=detail
            )
            raise RequestRejected(
                f"validate_request_group: the portal refused {row.group_name}: {detail}",
                operation="validate_request_group",
                status_code=200,
                body=validation.errors,
            )
    try:
        group = portal.submit_request_group(payload)
    except UncertainOutcome as exc:
        found = _look_up_after(portal, row, exc, created_after, recheck_delays_s, sleep)
        logger.info("request group %s arrived despite the lost answer", found.name)
        return _result(_record(ledger, found, portal=portal), SubmitOutcome.FOUND)
    except RequestRejected as exc:
        ledger.requests.finish(row.group_name, local_status=RequestStatus.REJECTED, detail=str(exc))
        raise
    return _result(_record(ledger, group, portal=portal), SubmitOutcome.SUBMITTED)


def _look_up_after(
    portal: PortalClient,
    row: RequestRow,
    lost: UncertainOutcome,
    created_after: datetime,
    delays_s: Sequence[float],
    sleep: Callable[[float], None],
) -> RequestGroup:
    """The group of a POST whose answer was lost, looked up by name after each delay.

    Raises:
        ServiceUnavailable: No group of that name after every look-up: the POST did not arrive.
        UncertainOutcome: ``lost`` itself, when there are no delays (nothing was looked up).
    """
    for delay in delays_s:
        sleep(delay)
        found = portal.find_request_group_by_name(row.group_name, created_after=created_after)
        if found is not None:
            return found
    if not delays_s:
        raise lost
    raise ServiceUnavailable(
        f"submit_request_group: no group named {row.group_name} after {len(delays_s)} look-up(s) "
        f"over {sum(delays_s):g} s: the POST did not arrive ({lost}); a retry looks the name "
        "up again before sending",
        operation="submit_request_group",
        url=lost.url,
    ) from lost


def mark_declined(
    ledger: Ledger,
    request: ObservationRequest,
    reason: str,
    *,
    owner: str | None = None,
    wait_s: float = DEFAULT_WAIT_S,
    sleep: Callable[[float], None] = time.sleep,
) -> SubmitResult:
    """Record that a person declined a request: it is claimed and will never be sent.

    A submission in progress elsewhere is waited for; a request it submitted stays submitted
    (cancelling it is :func:`cancel_event_requests`' job).

    Raises:
        ClaimHeld: Another caller held the request for longer than ``wait_s``.
    """
    row, held, _ = _hold(ledger, request, _Claim(owner=owner or new_owner(), wait_s=wait_s), sleep)
    if held:
        row = ledger.requests.finish(
            row.group_name, local_status=RequestStatus.DECLINED, detail=reason
        )
    return _result(row, SubmitOutcome.NOT_SENT)


def refresh_request_states(
    portal: PortalClient, ledger: Ledger, *, event_id: str | None = None
) -> list[StateChange]:
    """Bring the ledger's request states up to date with one batched portal query.

    Every submitted request of the event (or of every event) is read in one paged listing of the
    request groups created since the oldest one, never one call per request. A request the portal
    calls terminal can still turn COMPLETED later (late data); that change is recorded too.

    Returns:
        The requests whose state changed.
    """
    rows = [
        r
        for r in (ledger.requests.for_event(event_id) if event_id else ledger.requests.pending())
        if r.local_status == RequestStatus.SUBMITTED
        and r.request_id is not None
        and r.state != LcoState.COMPLETED
    ]
    if not rows:
        return []
    oldest = min(r.created_at for r in rows) - CLOCK_MARGIN
    name = group_name_prefix(event_id) if event_id else None
    statuses = portal.get_request_states(created_after=oldest, name=name)
    changes = []
    for row in rows:
        status = statuses.get(int(row.request_id))  # type: ignore[arg-type]
        if status is None:
            # Not in the listing (filtered out by the portal): read it alone.
            status_state = portal.get_request(int(row.request_id)).state  # type: ignore[arg-type]
        else:
            status_state = status.state
        if status_state != row.state:
            ledger.requests.update(row.group_name, state=status_state)
            changes.append(
                StateChange(
                    group_name=row.group_name,
                    event_id=row.event_id,
                    request_id=int(row.request_id),  # type: ignore[arg-type]
                    old=row.state,
                    new=status_state,
                )
            )
    return changes


def cancel_event_requests(
    portal: PortalClient,
    ledger: Ledger,
    event_id: str,
    *,
    owner: str | None = None,
    wait_s: float = DEFAULT_WAIT_S,
    sleep: Callable[[float], None] = time.sleep,
) -> list[CancelResult]:
    """Cancel every request of an event that may still be observed, and record each outcome.

    Requests already finished are left alone and their state recorded; a request claimed but not
    known to be submitted (a POST may be in flight or lost) is looked up by name and cancelled if
    the portal has it, otherwise marked so that it is never sent. A submission in progress
    elsewhere is waited for first, and what it submitted is cancelled.

    Raises:
        ClaimHeld: A submission elsewhere held a request for longer than ``wait_s``.
    """
    claim = _Claim(owner=owner or new_owner(), wait_s=wait_s)
    rows = ledger.requests.for_event(event_id)
    return _cancel_rows(portal, ledger, [(row, "retracted") for row in rows], claim, sleep)


def cancel_superseded_requests(
    portal: PortalClient,
    ledger: Ledger,
    event_id: str,
    reasons: Mapping[str, str],
    *,
    owner: str | None = None,
    wait_s: float = DEFAULT_WAIT_S,
    sleep: Callable[[float], None] = time.sleep,
) -> list[CancelResult]:
    """Cancel the pending requests of the targets a new plan dropped, recording why.

    The same exchange as :func:`cancel_event_requests` for the requests of the targets named in
    ``reasons`` only; each request's ledger ``detail`` records its target's reason. A request
    cancelled before (state CANCELED) or finished is left alone, so a rerun cancels nothing twice.

    Args:
        portal: Observation Portal client.
        ledger: The ledger.
        event_id: The event.
        reasons: Why each dropped target was dropped, by target name
            (:func:`followup.replanning.superseded_targets`).
        owner: Who claims the requests (default: unique to this call).
        wait_s: How long to wait for a submission in progress elsewhere.
        sleep: Injectable sleep, for tests.

    Raises:
        ClaimHeld: A submission elsewhere held a request for longer than ``wait_s``.
    """
    if not reasons:
        return []
    names = {t.id: t.name for t in ledger.events.targets(event_id)}
    rows = [
        (row, f"cancelled: {reasons[names[row.target_id]]}")  # replanning.CANCELLED_BY_PLAN
        for row in ledger.requests.for_event(event_id)
        if names.get(row.target_id) in reasons
        and (row.local_status == RequestStatus.CLAIMED or row.state == LcoState.PENDING)
    ]
    claim = _Claim(owner=owner or new_owner(), wait_s=wait_s)
    return _cancel_rows(portal, ledger, rows, claim, sleep, record_reason=True)


def _cancel_rows(
    portal: PortalClient,
    ledger: Ledger,
    rows: Sequence[tuple[RequestRow, str]],
    claim: _Claim,
    sleep: Callable[[float], None],
    *,
    record_reason: bool = False,
) -> list[CancelResult]:
    """Cancel each row's group that may still be observed (see :func:`cancel_event_requests`).

    ``rows`` pairs each request with the reason recorded when it is never sent (and, with
    ``record_reason``, when it is cancelled at the portal, beside the portal's message).
    """
    results: list[CancelResult] = []
    for row, reason in rows:
        row, held = _hold_row(ledger, row, claim, sleep)
        if held:
            try:
                found = portal.find_request_group_by_name(
                    row.group_name, created_after=row.created_at - CLOCK_MARGIN
                )
            except BaseException:
                ledger.requests.release(row.group_name, claim.owner)
                raise
            # Recorded while held (finish releases), so no submission slips in between.
            if found is None:
                ledger.requests.finish(
                    row.group_name, local_status=RequestStatus.DECLINED, detail=reason
                )
                results.append(
                    CancelResult(
                        group_name=row.group_name,
                        canceled=True,
                        state=None,
                        message="never submitted",
                        reason=reason if record_reason else None,
                    )
                )
                continue
            row = _record(ledger, found, portal=portal)
        if row.local_status != RequestStatus.SUBMITTED or row.group_id is None:
            continue
        if row.state != LcoState.PENDING:
            continue
        outcome = portal.cancel_request_group(int(row.group_id))
        state = outcome.group.requests[0].state if outcome.group.requests else outcome.group.state
        detail = outcome.message
        if record_reason:
            detail = f"{reason} ({outcome.message})" if outcome.message else reason
        ledger.requests.update(row.group_name, state=state, detail=detail)
        results.append(
            CancelResult(
                group_name=row.group_name,
                canceled=outcome.canceled,
                state=state,
                message=outcome.message,
                reason=reason if record_reason else None,
            )
        )
    return results
