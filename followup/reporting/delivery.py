"""Deliver a report at most once per destination, event, target and content.

The ledger row is claimed under the report's key before anything is sent, and moved to
``sending`` by one compare-and-set that also makes the caller its claim's holder
(:mod:`followup.ledger.claims`): of two callers of one report (two workers, a retry during a run),
one sends and the other waits for it, then reports what it recorded; the loser never sends. A
rerun finds the row: a report already sent or confirmed is not sent again; one left ``sending``
by a process that died mid-call (its claim ran out) or ``unconfirmed`` (the send raised
:class:`~followup.exceptions.UncertainOutcome`) may have arrived, so it is only sent again when the
destination can look itself up first (TNS searches by name and position before sending);
otherwise a person decides. An uncertain send is recorded and returned, never raised into a retry:
the task's retry policy resends only what surely did not arrive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from pydantic import BaseModel, Field

from followup.exceptions import ServiceUnavailable, UncertainOutcome
from followup.ledger import Ledger, ReportRow
from followup.ledger.claims import (
    DEFAULT_LEASE,
    DEFAULT_WAIT_S,
    held_by_other,
    holder_is_dead,
    new_owner,
    wait_for_release,
)
from followup.models import Report, ReportStatus

__all__ = ["Delivery", "deliver_once"]

logger = logging.getLogger(__name__)

DONE = frozenset({ReportStatus.SENT, ReportStatus.CONFIRMED, ReportStatus.DECLINED})
MAYBE_ARRIVED = frozenset({ReportStatus.SENDING, ReportStatus.UNCONFIRMED})
SENDABLE = frozenset({ReportStatus.DRAFT, ReportStatus.FAILED, ReportStatus.AWAITING_APPROVAL})


class Delivery(BaseModel):
    """What a send achieved (returned by the ``send`` callable of :func:`deliver_once`).

    Attributes:
        status: ``confirmed``, ``sent``, ``unconfirmed`` or ``failed``.
        remote_id: HERMES uuid, TNS object name or report id, GCN circular id.
        url: Link to the report, when there is one.
        notes: What happened, for the ledger.
    """

    status: ReportStatus
    remote_id: str | None = None
    url: str | None = None
    notes: list[str] = Field(default_factory=list)


def deliver_once(
    ledger: Ledger,
    report: Report,
    send: Callable[[], Delivery],
    *,
    retry_uncertain: bool = False,
    owner: str | None = None,
    lease: timedelta = DEFAULT_LEASE,
    wait_s: float = DEFAULT_WAIT_S,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[ReportRow, bool]:
    """Send a report unless the same content went to the same place before.

    Args:
        ledger: The ledger (its unique key on destination, event, target and content hash).
        report: The report to deliver (``status`` is ignored; the ledger's row decides).
        send: Calls the service; returns a :class:`Delivery`. An :class:`UncertainOutcome` means
            the report may have arrived; a :class:`ServiceUnavailable` that nothing was sent.
        retry_uncertain: The destination finds earlier copies itself (TNS), so a row left
            ``sending`` or ``unconfirmed`` may be sent again by a later call.
        owner: Who claims the report (default: unique to this call).
        lease: How long the claim holds if this caller dies while sending.
        wait_s: How long to wait for another caller that is sending it.
        sleep: Injectable sleep, for tests.

    Returns:
        The ledger row after the attempt, and True when ``send`` was called. A send that raised
        :class:`UncertainOutcome` gives the row ``unconfirmed``, with the error in its payload.
        A caller that waited for another sender gets the row that sender recorded, and False.

    Raises:
        ServiceUnavailable: The service could not be reached (the row is ``failed``; a later
            attempt may send).
        ClaimHeld: Another caller was sending it for longer than ``wait_s`` (nothing sent).
    """
    owner = owner or new_owner()
    row, _ = ledger.reports.claim(report)
    report_id = row.id
    sendable = SENDABLE | MAYBE_ARRIVED if retry_uncertain else SENDABLE
    while True:
        if row.status in DONE:
            logger.info(
                "%s report of %s already %s: nothing sent",
                row.destination,
                row.event_id,
                row.status,
            )
            return row, False
        if held_by_other(row, owner):
            # Another caller is sending it: wait, then report what it recorded; never send.
            row = wait_for_release(
                lambda: ledger.reports.get(report_id),
                owner,
                what=f"{row.destination} report {row.id} of {row.event_id}",
                wait_s=wait_s,
                sleep=sleep,
            )
            return row, False
        if row.status not in sendable:
            return _not_resent(ledger, row, owner), False
        taken = ledger.reports.transition(
            row.id,
            owner,
            from_statuses=sendable,
            to_status=ReportStatus.SENDING,
            lease=lease,
            take_from=_dead(row),
        )
        if taken is not None:
            return _send(ledger, taken, send), True
        row = ledger.reports.get(row.id) or row  # someone got in between: look again


def _not_resent(ledger: Ledger, row: ReportRow, owner: str) -> ReportRow:
    """A report that may have arrived (a send cut short, an uncertain answer): mark it, not resend."""
    logger.warning(
        "%s report of %s may have arrived (%s): not sending it again",
        row.destination,
        row.event_id,
        row.status,
    )
    marked = ledger.reports.transition(
        row.id,
        owner,
        from_statuses=MAYBE_ARRIVED,
        to_status=ReportStatus.UNCONFIRMED,
        lease=None,
        take_from=_dead(row),
    )
    return marked or ledger.reports.get(row.id) or row


def _dead(row: ReportRow) -> str | None:
    """The row's holder when it is known dead (its claim may be taken over), else None."""
    return row.claimed_by if holder_is_dead(row.claimed_by) else None


def _send(ledger: Ledger, row: ReportRow, send: Callable[[], Delivery]) -> ReportRow:
    """Call ``send`` for a report this caller holds, and record the outcome (releasing it)."""
    try:
        delivery = send()
    except UncertainOutcome as exc:
        logger.warning(
            "%s report of %s may have arrived; recorded as unconfirmed: %s",
            row.destination,
            row.event_id,
            exc,
        )
        return ledger.reports.finish(
            row.id, status=ReportStatus.UNCONFIRMED, payload={**row.payload, "error": str(exc)}
        )
    except ServiceUnavailable as exc:
        ledger.reports.finish(
            row.id, status=ReportStatus.FAILED, payload={**row.payload, "error": str(exc)}
        )
        raise
    except Exception:
        # A rejection or a bug: nothing was accepted; a fixed payload has another content hash.
        ledger.reports.finish(row.id, status=ReportStatus.FAILED)
        raise
    payload = {**row.payload, "notes": delivery.notes} if delivery.notes else row.payload
    return ledger.reports.finish(
        row.id,
        status=delivery.status,
        remote_id=delivery.remote_id,
        url=delivery.url,
        payload=payload,
    )
