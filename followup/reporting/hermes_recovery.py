"""HERMES sends whose answer was lost, resolved through HERMES's message query.

:func:`~followup.reporting.delivery.deliver_once` records a send that raised
:class:`~followup.exceptions.UncertainOutcome` as ``unconfirmed``: the message may be published.
HERMES can say which: its query API (``GET api/v0/query/``, LCOGT/hermes ``hermes/views.py``
``QueryApiView``) lists what was published on a topic in a time span. A message found there with
the report's title, topic, submitter and authors confirms the report with its uuid; when none is
found, a person must decide (a retry could publish it twice), and the alarm names the report in
the log and in the ledger row's ``alarm``.

Example:
    >>> rows = resolve_unconfirmed_hermes(ledger, hermes, "S250101ab")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from pydantic import ValidationError

from followup.ledger import Ledger, ReportRow
from followup.models import ReportDestination, ReportStatus, utcnow
from followup.reporting.hermes import HermesClient, HermesMessage

__all__ = ["LOOKUP_KEYS", "resolve_unconfirmed_hermes"]

logger = logging.getLogger(__name__)

LOOKUP_KEYS = ("title", "topic", "submitter", "authors")
"""What a HERMES report row's payload must hold for its message to be looked up."""


def _alarm(ledger: Ledger, row: ReportRow, text: str) -> ReportRow:
    logger.error("HERMES report %s of %s: %s", row.id, row.event_id, text)
    return ledger.reports.update(row.id, payload={**row.payload, "alarm": text})


def resolve_unconfirmed_hermes(
    ledger: Ledger,
    client: HermesClient,
    event_id: str,
    *,
    now: datetime | None = None,
    margin: timedelta = timedelta(minutes=5),
) -> list[ReportRow]:
    """Confirm the event's unconfirmed HERMES reports that HERMES published; flag the others.

    Each unconfirmed HERMES row is looked up between its claim (less ``margin``) and ``now``
    (plus ``margin``, for clock skew). Found: the row becomes ``confirmed`` with the message's
    uuid and link. Not found: the row stays ``unconfirmed`` and gets an ``alarm`` in its payload
    (and a log error) saying a person must check HERMES before anything is sent again.

    Args:
        ledger: The ledger.
        client: A HERMES client.
        event_id: The event whose reports to resolve.
        now: The time of the look-up (default now).
        margin: Slack on both ends of the span searched.

    Returns:
        The rows looked at, as they are afterwards.

    Raises:
        ServiceUnavailable: HERMES could not answer (nothing was changed for the rows left).
        AuthenticationError: The token was refused.
    """
    end = (now or utcnow()) + margin
    resolved = []
    for row in ledger.reports.for_event(event_id):
        if row.destination != ReportDestination.HERMES or row.status != ReportStatus.UNCONFIRMED:
            continue
        missing = [key for key in LOOKUP_KEYS if key not in row.payload]
        if missing:
            resolved.append(
                _alarm(
                    ledger,
                    row,
                    f"may have been published but cannot be looked up (the ledger row lacks "
                    f"{', '.join(missing)}): a person must check HERMES before it is sent again",
                )
            )
            continue
        try:
            lookup = HermesMessage(**{key: row.payload[key] for key in LOOKUP_KEYS})
        except ValidationError as exc:
            resolved.append(_alarm(ledger, row, f"cannot be looked up: {exc}"))
            continue
        start = row.created_at - margin
        found = client.find_message(lookup, start=start, end=end)
        if found is None:
            resolved.append(
                _alarm(
                    ledger,
                    row,
                    f"HERMES lists no message titled {lookup.title!r} on {lookup.topic} by "
                    f"{lookup.submitter} between {start:%Y-%m-%d %H:%M} and "
                    f"{end:%Y-%m-%d %H:%M} UTC; its answer was lost: a person must check "
                    "HERMES before it is sent again",
                )
            )
            continue
        logger.info(
            "HERMES report %s of %s found published as %s", row.id, row.event_id, found.uuid
        )
        notes = [
            *row.payload.get("notes", []),
            f"confirmed by HERMES's message query: {found.uuid}",
        ]
        payload = {k: v for k, v in row.payload.items() if k != "alarm"}
        resolved.append(
            ledger.reports.update(
                row.id,
                status=ReportStatus.CONFIRMED,
                remote_id=str(found.uuid),
                url=client.message_url(found.uuid),
                payload={**payload, "notes": notes},
            )
        )
    return resolved
