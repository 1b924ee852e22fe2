"""The alerts aggregate: Kafka messages as received, quarantined messages, alerts and decisions.

Messages are written by the listener in batches, in two steps that make it exactly-once (see
:mod:`followup.ingest`): :meth:`AlertStore.record_messages` stores the raw bytes once per hop
``_id``, then :meth:`AlertStore.record_outcomes` stores what parsing and the trigger rules made of
them. Everything else here reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from followup.exceptions import LedgerError
from followup.ledger.batch import (
    IncomingMessage,
    MessageOutcome,
    RecordedOutcome,
    StoredMessage,
    decode_headers,
    store_messages,
    store_outcomes,
)
from followup.ledger.database import Database
from followup.ledger.schema import AlertRow, MessageRow, QuarantineRow
from followup.models import AlertDecision

__all__ = ["AlertStore", "StoredAlert"]


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """An alert and its message, as :meth:`AlertStore.get_stored` returns them.

    Attributes:
        alert_id: The alert row.
        message_id: The message row it came from.
        event_id: The event.
        alert_type: The alert type.
        decision: The trigger rules' decision (None if undecided).
        decision_reason: The trigger rules' reason.
        raw: The message bytes as received.
        headers: Its Kafka headers.
        topic: Its topic.
        partition: Its partition.
        offset: Its offset.
        message_uuid: Its hop ``_id``.
        summary: The parsed alert as JSON (sky maps excluded).
    """

    alert_id: int
    message_id: int
    event_id: str
    alert_type: str
    decision: AlertDecision | None
    decision_reason: str | None
    raw: bytes
    headers: list[tuple[str, bytes]]
    topic: str
    partition: int | None
    offset: int | None
    message_uuid: str | None
    summary: dict[str, Any]


class AlertStore:
    """Messages, quarantine and alerts (``ledger.alerts``).

    Args:
        db: The ledger's database.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    # ---------------------------------------------------------------- batched writes (listener)

    def record_messages(self, messages: Sequence[IncomingMessage]) -> list[StoredMessage]:
        """Store many messages in one transaction, exactly once per hop ``_id``.

        One look-up of the ``_id``s already stored, one multi-row insert. A message repeated
        within the batch is stored once (its later copies come back with ``created=False``).
        Messages without an ``_id`` are always stored.

        Args:
            messages: The messages, in the order they were read.

        Returns:
            One :class:`StoredMessage` per input, in order.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: The database failed; nothing of the batch is stored.
        """
        if not messages:
            return []
        return self._twice(store_messages, messages)

    def record_outcomes(self, outcomes: Sequence[MessageOutcome]) -> list[RecordedOutcome]:
        """Store the parse results and decisions of many messages in one transaction.

        For each message: a quarantine row (no alert), or the alert under its dedupe key (event
        id, alert type, issue time) with its event upserted, its decision, and for a retraction
        the event marked retracted. An alert whose key is already stored (or appears earlier in
        the batch) is not stored again: its message gets the status ``duplicate``. Each message
        row gets its final status and reason.

        Args:
            outcomes: One per message already stored by :meth:`record_messages`.

        Returns:
            One :class:`RecordedOutcome` per input, in order.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: The database failed; nothing of the batch is stored.
        """
        if not outcomes:
            return []
        return self._twice(store_outcomes, outcomes)

    def _twice(self, write: Callable[[Connection, Any], list[Any]], items: Any) -> list[Any]:
        """Run a batched write in one transaction, and once more after an IntegrityError.

        Another writer stored one of the keys between our look-up and insert; the second attempt
        finds it.
        """
        try:
            with self._db.engine.begin() as conn:
                return write(conn, items)
        except IntegrityError:
            with self._db.engine.begin() as conn:
                return write(conn, items)

    def start_attempt(self, message_id: int) -> int:
        """Count one more start of the handling of a stored message, committed at once.

        Returns:
            How many times its handling has started, this one included.

        Raises:
            LedgerError: No such message.
        """
        with self._db.engine.begin() as conn:
            conn.execute(
                update(MessageRow)
                .where(MessageRow.id == message_id)
                .values(attempts=MessageRow.attempts + 1)
            )
            attempts = conn.scalar(select(MessageRow.attempts).where(MessageRow.id == message_id))
        if attempts is None:
            raise LedgerError(f"no message with id {message_id}")
        return int(attempts)

    # ---------------------------------------------------------------- messages

    def find_message(self, message_uuid: str) -> MessageRow | None:
        """Return the message with this hop ``_id`` (or derived key), if stored."""
        with self._db.session() as s:
            return s.scalar(select(MessageRow).where(MessageRow.message_uuid == message_uuid))

    def get_message(self, message_id: int) -> MessageRow:
        """Return a message by ledger id.

        Raises:
            LedgerError: No such message.
        """
        with self._db.session() as s:
            row = s.get(MessageRow, message_id)
        if row is None:
            raise LedgerError(f"no message with id {message_id}")
        return row

    def quarantined(self, limit: int = 100) -> list[QuarantineRow]:
        """The most recent quarantined messages."""
        with self._db.session() as s:
            return list(
                s.scalars(select(QuarantineRow).order_by(QuarantineRow.id.desc()).limit(limit))
            )

    # ---------------------------------------------------------------- alerts

    def get(self, alert_id: int) -> tuple[AlertRow, bytes]:
        """Return an alert row and the raw bytes of its message.

        Raises:
            LedgerError: No such alert.
        """
        with self._db.session() as s:
            row, message = _alert_and_message(s, alert_id)
            return row, message.raw

    def get_stored(self, alert_id: int) -> StoredAlert:
        """Return an alert with everything needed to parse it again exactly as it arrived.

        Raises:
            LedgerError: No such alert.
        """
        with self._db.session() as s:
            row, message = _alert_and_message(s, alert_id)
            return StoredAlert(
                alert_id=row.id,
                message_id=message.id,
                event_id=row.event_id,
                alert_type=row.alert_type,
                decision=row.decision,
                decision_reason=row.decision_reason,
                raw=message.raw,
                headers=decode_headers(message.headers),
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                message_uuid=message.message_uuid,
                summary=dict(row.summary or {}),
            )

    def set_flow_run(self, alert_id: int, flow_run_id: str) -> None:
        """Record the follow-up run started for an alert.

        Raises:
            LedgerError: No such alert.
        """
        with self._db.session() as s:
            _alert_and_message(s, alert_id)[0].flow_run_id = flow_run_id

    def without_run(self, *, since: datetime) -> list[AlertRow]:
        """Accepted alerts stored since ``since`` whose follow-up run was never started.

        After a crash between storing an alert and starting its run, these are the alerts that
        would otherwise be lost.
        """
        with self._db.session() as s:
            return list(
                s.scalars(
                    select(AlertRow)
                    .where(
                        AlertRow.decision == AlertDecision.ACCEPTED,
                        AlertRow.flow_run_id.is_(None),
                        AlertRow.created_at >= since,
                    )
                    .order_by(AlertRow.id)
                )
            )

    def for_event(self, event_id: str) -> list[AlertRow]:
        """Every stored alert of an event, oldest first."""
        with self._db.session() as s:
            return list(
                s.scalars(
                    select(AlertRow).where(AlertRow.event_id == event_id).order_by(AlertRow.id)
                )
            )


def _alert_and_message(s: Session, alert_id: int) -> tuple[AlertRow, MessageRow]:
    """An alert row and its message row.

    Raises:
        LedgerError: No such alert.
    """
    row = s.get(AlertRow, alert_id)
    if row is None:
        raise LedgerError(f"no alert with id {alert_id}")
    message = s.get(MessageRow, row.message_id)
    assert message is not None  # foreign key
    return row, message
