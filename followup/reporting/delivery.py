"""Deliver a report at most once per destination, event, target and content.

The ledger row is claimed under the report's key before anything is sent, and marked ``sending``
while the service is called. A rerun finds the row: a report already sent or confirmed is not sent
again; one left ``sending`` (the process died mid-call) or ``unconfirmed`` (the send raised
:class:`~followup.exceptions.UncertainOutcome`) may have arrived, so it is only sent again when the
destination can look itself up first (TNS searches by name and position before sending);
otherwise a person decides. An uncertain send is recorded and returned, never raised into a retry:
the task's retry policy resends only what surely did not arrive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import BaseModel, Field

from followup.exceptions import ServiceUnavailable, UncertainOutcome
from followup.ledger import Ledger, ReportRow
from followup.models import Report, ReportStatus

__all__ = ["Delivery", "deliver_once"]

logger = logging.getLogger(__name__)

DONE = frozenset({ReportStatus.SENT, ReportStatus.CONFIRMED, ReportStatus.DECLINED})
MAYBE_ARRIVED = frozenset({ReportStatus.SENDING, ReportStatus.UNCONFIRMED})


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
) -> tuple[ReportRow, bool]:
    """Send a report unless the same content went to the same place before.

    Args:
        ledger: The ledger (its unique key on destination, event, target and content hash).
        report: The report to deliver (``status`` is ignored; the ledger's row decides).
        send: Calls the service; returns a :class:`Delivery`. An :class:`UncertainOutcome` means
            the report may have arrived; a :class:`ServiceUnavailable` that nothing was sent.
        retry_uncertain: The destination finds earlier copies itself (TNS), so a row left
            ``sending`` or ``unconfirmed`` may be sent again by a later call.

    Returns:
        The ledger row after the attempt, and True when ``send`` was called. A send that raised
        :class:`UncertainOutcome` gives the row ``unconfirmed``, with the error in its payload.

    Raises:
        ServiceUnavailable: The service could not be reached (the row is ``failed``; a later
            attempt may send).
    """
    row, _ = ledger.reports.claim(report)
    if row.status in DONE:
        logger.info(
            "%s report of %s already %s: nothing sent", row.destination, row.event_id, row.status
        )
        return row, False
    if row.status in MAYBE_ARRIVED and not retry_uncertain:
        logger.warning(
            "%s report of %s may have arrived (%s): not sending it again",
            row.destination,
            row.event_id,
            row.status,
        )
        return ledger.reports.update(row.id, status=ReportStatus.UNCONFIRMED), False
    ledger.reports.update(row.id, status=ReportStatus.SENDING)
    try:
        delivery = send()
    except UncertainOutcome as exc:
        logger.warning(
            "%s report of %s may have arrived; recorded as unconfirmed: %s",
            row.destination,
            row.event_id,
            exc,
        )
        row = ledger.reports.update(
            row.id, status=ReportStatus.UNCONFIRMED, payload={**row.payload, "error": str(exc)}
        )
        return row, True
    except ServiceUnavailable as exc:
        ledger.reports.update(
            row.id, status=ReportStatus.FAILED, payload={**row.payload, "error": str(exc)}
        )
        raise
    except Exception:
        # A rejection or a bug: nothing was accepted; a fixed payload has another content hash.
        ledger.reports.update(row.id, status=ReportStatus.FAILED)
        raise
    payload = {**row.payload, "notes": delivery.notes} if delivery.notes else row.payload
    row = ledger.reports.update(
        row.id,
        status=delivery.status,
        remote_id=delivery.remote_id,
        url=delivery.url,
        payload=payload,
    )
    return row, True
