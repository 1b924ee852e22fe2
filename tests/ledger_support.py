"""Helpers of the ledger tests: store alerts the way the listener does."""

from __future__ import annotations

from followup.ledger import IncomingMessage, Ledger, MessageOutcome, RecordedOutcome
from followup.models import Alert, AlertDecision


def incoming(
    uuid: str | None, raw: bytes = b"raw", offset: int = 0, topic: str = "gcn.notices.x"
) -> IncomingMessage:
    """A Kafka message as the listener hands it to the ledger."""
    return IncomingMessage(
        topic=topic,
        raw=raw,
        message_uuid=uuid,
        partition=0,
        offset=offset,
        kafka_timestamp_ms=1_700_000_000_000,
    )


def store_alert(
    ledger: Ledger,
    alert: Alert,
    *,
    raw: bytes = b"{}",
    uuid: str | None = None,
    decision: AlertDecision = AlertDecision.ACCEPTED,
    reason: str = "test",
) -> RecordedOutcome:
    """Store a message and its parsed alert through the listener's path (followup.ingest).

    ``record_messages`` then ``record_outcomes``, one message each: the alert is a duplicate when
    its key (event id, alert type, issue time) is stored already.
    """
    [stored] = ledger.alerts.record_messages([incoming(uuid, raw)])
    [result] = ledger.alerts.record_outcomes(
        [MessageOutcome(stored.message_id, alert, decision, reason)]
    )
    return result
