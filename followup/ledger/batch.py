"""The listener's batched writes: many messages, then their outcomes, each in one transaction.

SQLAlchemy's ORM costs more per row than SQLite spends storing it, so these two writes use Core
statements and :func:`~followup.ledger.database.executemany`; they are the hot path of the
listener (see ``benchmarks/ingest.py``). :class:`~followup.ledger.alerts.AlertStore` runs them in
a transaction; the functions here take its connection.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Connection

from followup.ledger.database import JsonText, chunks, executemany
from followup.ledger.schema import AlertRow, EventRow, MessageRow, QuarantineRow
from followup.models import Alert, AlertDecision, MessageStatus, utcnow

__all__ = [
    "IncomingMessage",
    "MessageOutcome",
    "RecordedOutcome",
    "StoredMessage",
    "decode_headers",
    "encode_headers",
    "store_messages",
    "store_outcomes",
]


def encode_headers(headers: Sequence[tuple[str, bytes]] | None) -> list[list[str]] | None:
    """Kafka headers as JSON: ``[[name, base64 value], ...]`` (None when there are none)."""
    if not headers:
        return None
    return [[name, base64.b64encode(value or b"").decode("ascii")] for name, value in headers]


def decode_headers(stored: Any) -> list[tuple[str, bytes]]:
    """The ``(name, value)`` pairs stored by :func:`encode_headers` (malformed entries dropped)."""
    pairs: list[tuple[str, bytes]] = []
    for item in stored or ():
        try:
            name, value = item
            pairs.append((str(name), base64.b64decode(value)))
        except (TypeError, ValueError):
            continue
    return pairs


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A Kafka message to store (see :meth:`~followup.ledger.alerts.AlertStore.record_messages`).

    Attributes:
        topic: Topic it was read from (or ``file`` for ``followup parse``).
        raw: The bytes exactly as received.
        message_uuid: hop's ``_id`` as a UUID string; None when the message has none.
        partition: Kafka partition.
        offset: Kafka offset.
        kafka_timestamp_ms: Kafka timestamp in milliseconds since 1970.
        sha256: Hex SHA-256 of ``raw`` when the caller has it already (computed otherwise).
        headers: Kafka headers as ``(name, value)`` pairs.
    """

    topic: str
    raw: bytes
    message_uuid: str | None
    partition: int | None = None
    offset: int | None = None
    kafka_timestamp_ms: int | None = None
    sha256: str | None = None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """What :meth:`~followup.ledger.alerts.AlertStore.record_messages` did with one message.

    Attributes:
        message_id: The ledger id of the message row.
        created: True when this call stored it; False when a message with the same ``_id`` was
            stored before (or earlier in the same batch).
        status: The row's status; ``received`` means nobody finished processing it yet (a new
            row, or an earlier attempt that stopped between storing and deciding).
        reason: The row's status reason.
        alert_id: The alert stored from this message, if any.
        event_id: That alert's event.
        alert_type: That alert's type.
    """

    message_id: int
    created: bool
    status: MessageStatus
    reason: str | None = None
    alert_id: int | None = None
    event_id: str | None = None
    alert_type: str | None = None

    @property
    def finished(self) -> bool:
        """True when the message was fully processed before."""
        return self.status.is_final


@dataclass(frozen=True, slots=True)
class MessageOutcome:
    """The result of parsing and judging one stored message (see :func:`store_outcomes`).

    Attributes:
        message_id: The message row.
        alert: The parsed alert, or None when the message is quarantined.
        decision: The trigger rules' decision on the alert.
        reason: The decision's reason, or the quarantine reason.
        detail: The quarantine detail.
        summary: The alert as JSON, when the caller serialised it already (else it is here).
    """

    message_id: int
    alert: Alert | None
    decision: AlertDecision | None = None
    reason: str | None = None
    detail: str = ""
    summary: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedOutcome:
    """What :meth:`~followup.ledger.alerts.AlertStore.record_outcomes` stored for one message.

    Attributes:
        message_id: The message row.
        status: The message's final status (``received`` only for an alert without a decision).
        alert_id: The alert row (for a duplicate, the first copy's).
        created: True when a new alert row was written.
        reason: The status reason written to the message row.
    """

    message_id: int
    status: MessageStatus
    alert_id: int | None
    created: bool
    reason: str | None


AlertKey = tuple[str, str, datetime]
"""An alert's dedupe key: event id, alert type, issue time."""


# ------------------------------------------------------------------------------ messages


def store_messages(conn: Connection, messages: Sequence[IncomingMessage]) -> list[StoredMessage]:
    """Store messages exactly once per hop ``_id`` (see ``AlertStore.record_messages``)."""
    existing = _stored_messages(conn, sorted({m.message_uuid for m in messages if m.message_uuid}))
    results: list[StoredMessage | None] = [None] * len(messages)
    to_insert: list[tuple[int, IncomingMessage]] = []
    first_in_batch: dict[str, int] = {}
    for i, message in enumerate(messages):
        key = message.message_uuid
        if key is not None and key in existing:
            results[i] = existing[key]
        elif key is not None and key in first_in_batch:
            continue  # filled in after the insert
        else:
            if key is not None:
                first_in_batch[key] = i
            to_insert.append((i, message))
    for i, message_id in _insert_messages(conn, to_insert):
        results[i] = StoredMessage(message_id, True, MessageStatus.RECEIVED)
    for i, message in enumerate(messages):
        if results[i] is None:
            first = results[first_in_batch[message.message_uuid]]  # type: ignore[index]
            assert first is not None
            results[i] = StoredMessage(first.message_id, False, first.status, first.reason)
    return [r for r in results if r is not None]


def _stored_messages(conn: Connection, uuids: list[str]) -> dict[str, StoredMessage]:
    """The messages already stored under these ``_id``s, with their alert if any."""
    existing: dict[str, StoredMessage] = {}
    for chunk in chunks(uuids):
        rows = conn.execute(
            select(
                MessageRow.id,
                MessageRow.message_uuid,
                MessageRow.status,
                MessageRow.reason,
                AlertRow.id,
                AlertRow.event_id,
                AlertRow.alert_type,
            )
            .outerjoin(AlertRow, AlertRow.message_id == MessageRow.id)
            .where(MessageRow.message_uuid.in_(chunk))
        )
        for mid, muuid, status, reason, aid, event_id, alert_type in rows:
            existing[muuid] = StoredMessage(mid, False, status, reason, aid, event_id, alert_type)
    return existing


def _insert_messages(
    conn: Connection, to_insert: list[tuple[int, IncomingMessage]]
) -> list[tuple[int, int]]:
    """Insert messages; return ``(batch index, message id)`` of each."""
    if not to_insert:
        return []
    now = utcnow()
    params = [
        {
            "message_uuid": m.message_uuid,
            "topic": m.topic,
            "partition": m.partition,
            "offset": m.offset,
            "kafka_timestamp_ms": m.kafka_timestamp_ms,
            "received_at": now,
            "raw": m.raw,
            "sha256": m.sha256 or hashlib.sha256(m.raw).hexdigest(),
            "status": MessageStatus.RECEIVED,
            "reason": None,
            "headers": encode_headers(m.headers),
            "attempts": 1,
        }
        for _, m in to_insert
    ]
    table = MessageRow.__table__
    ids: list[tuple[int, int]] = []
    # A plain executemany (no RETURNING) is many times faster on SQLite; the ids are read back
    # by _id, which is unique. Rows without an _id are inserted one by one.
    keyed = [(i, p) for (i, _), p in zip(to_insert, params, strict=True) if p["message_uuid"]]
    if keyed:
        executemany(conn, "insert messages", insert(table), [p for _, p in keyed])
        ids_by_uuid: dict[str, int] = {}
        for chunk in chunks([p["message_uuid"] for _, p in keyed]):
            ids_by_uuid.update(
                (u, mid)
                for mid, u in conn.execute(
                    select(MessageRow.id, MessageRow.message_uuid).where(
                        MessageRow.message_uuid.in_(chunk)
                    )
                )
            )
        ids += [(i, ids_by_uuid[p["message_uuid"]]) for i, p in keyed]
    for (i, _), p in zip(to_insert, params, strict=True):
        if not p["message_uuid"]:
            ids.append((i, conn.execute(insert(table).returning(table.c.id), p).scalar_one()))
    return ids


# ------------------------------------------------------------------------------ outcomes


@dataclass
class _AlertBatch:
    """The alerts of one batch of outcomes, sorted out against the stored ones.

    Attributes:
        results: What each outcome with an alert became, by batch index (a duplicate of an alert
            new in this batch gets its alert id once that is inserted).
        first_of_key: The batch index that stores (or resumes) each dedupe key.
        duplicates: Batch index of each duplicate -> the stored alert id, or None when the first
            copy is new in this batch.
        new_events: Event rows to insert, by event id.
        new_alerts: ``(batch index, alert row parameters)`` to insert.
        resumed: Decisions to write to alert rows already stored from the same message (by
            another consumer, or by an attempt that stopped half-way).
    """

    results: dict[int, RecordedOutcome] = field(default_factory=dict)
    first_of_key: dict[AlertKey, int] = field(default_factory=dict)
    duplicates: dict[int, int | None] = field(default_factory=dict)
    new_events: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_alerts: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    resumed: list[dict[str, Any]] = field(default_factory=list)


def store_outcomes(conn: Connection, outcomes: Sequence[MessageOutcome]) -> list[RecordedOutcome]:
    """Store quarantines, alerts, decisions and statuses (see ``AlertStore.record_outcomes``)."""
    now = utcnow()
    _store_quarantines(conn, [o for o in outcomes if o.alert is None], now)
    with_alerts = [(i, o) for i, o in enumerate(outcomes) if o.alert is not None]
    plan = _sort_alerts(conn, with_alerts, now)
    executemany(conn, "insert events", insert(EventRow.__table__), list(plan.new_events.values()))
    _insert_alerts(conn, outcomes, plan)
    for i, first in plan.duplicates.items():
        if first is None:
            first_result = plan.results.get(plan.first_of_key[_key(outcomes[i].alert)])
            first = first_result.alert_id if first_result else None
        reason = f"same alert as alert #{first} (event id, alert type, issue time)"
        plan.results[i] = RecordedOutcome(
            outcomes[i].message_id, MessageStatus.DUPLICATE, first, False, reason
        )
    results = [
        plan.results.get(i)
        or RecordedOutcome(o.message_id, MessageStatus.QUARANTINED, None, False, o.reason)
        for i, o in enumerate(outcomes)
    ]
    if plan.resumed:
        alerts = AlertRow.__table__
        conn.execute(
            update(alerts)
            .where(alerts.c.id == bindparam("b_aid"))
            .values(decision=bindparam("b_decision"), decision_reason=bindparam("b_reason")),
            plan.resumed,
        )
    retracted = {
        o.alert.event_id  # type: ignore[union-attr]
        for o, r in zip(outcomes, results, strict=True)
        if r.status is MessageStatus.RETRACTION
    }
    _update_events(conn, {p["event_id"] for _, p in plan.new_alerts}, retracted, now)
    _update_message_statuses(conn, results)
    return results


def _key(alert: Alert | None) -> AlertKey:
    assert alert is not None
    return (alert.event_id, alert.alert_type.value, alert.issued_at)


def _status(decision: AlertDecision | str | None) -> MessageStatus:
    """The message status of an alert with this decision (``received`` while undecided)."""
    return MessageStatus(decision) if decision else MessageStatus.RECEIVED


def _store_quarantines(conn: Connection, quarantined: list[MessageOutcome], now: datetime) -> None:
    """Insert a quarantine row per message, once (a message quarantined before keeps its row)."""
    if not quarantined:
        return
    ids = [o.message_id for o in quarantined]
    already = set(
        conn.execute(
            select(QuarantineRow.message_id).where(QuarantineRow.message_id.in_(ids))
        ).scalars()
    )
    rows = [
        {
            "message_id": o.message_id,
            "reason": (o.reason or "unknown")[:255],
            "detail": o.detail,
            "created_at": now,
        }
        for o in {o.message_id: o for o in quarantined}.values()
        if o.message_id not in already
    ]
    if rows:
        conn.execute(insert(QuarantineRow.__table__), rows)


def _stored_alert_keys(
    conn: Connection, event_ids: list[str]
) -> tuple[dict[AlertKey, tuple[int, int]], set[str]]:
    """Look up the alerts and events already stored, one query per chunk of events.

    Returns:
        The stored alerts of these events by dedupe key (-> alert id, message id), and the ids
        of the events that are stored.
    """
    stored: dict[AlertKey, tuple[int, int]] = {}
    known_events: set[str] = set()
    for chunk in chunks(event_ids):
        for aid, mid, event_id, alert_type, issued_at in conn.execute(
            select(
                AlertRow.id,
                AlertRow.message_id,
                AlertRow.event_id,
                AlertRow.alert_type,
                AlertRow.issued_at,
            ).where(AlertRow.event_id.in_(chunk))
        ):
            stored[(event_id, alert_type, issued_at)] = (aid, mid)
        known_events.update(
            conn.execute(select(EventRow.event_id).where(EventRow.event_id.in_(chunk))).scalars()
        )
    return stored, known_events


def _sort_alerts(
    conn: Connection, with_alerts: list[tuple[int, MessageOutcome]], now: datetime
) -> _AlertBatch:
    """Sort the batch's alerts into new, duplicate and resumed ones.

    A duplicate's first copy is stored already or earlier in the batch; a resumed alert is stored
    already from this very message. New alerts come with the event and alert rows to insert.
    """
    event_ids = sorted({o.alert.event_id for _, o in with_alerts})  # type: ignore[union-attr]
    stored_keys, known_events = _stored_alert_keys(conn, event_ids)
    plan = _AlertBatch()
    for i, o in with_alerts:
        alert = o.alert
        assert alert is not None
        key = _key(alert)
        stored = stored_keys.get(key)
        if stored is not None and stored[1] == o.message_id:
            # This very message's alert is stored already: another consumer finished it first,
            # or an earlier attempt stopped half-way. Finish it rather than call it a duplicate.
            plan.resumed.append(
                {"b_aid": stored[0], "b_decision": o.decision, "b_reason": o.reason}
            )
            plan.results[i] = RecordedOutcome(
                o.message_id, _status(o.decision), stored[0], False, o.reason
            )
            plan.first_of_key[key] = i
        elif stored is not None or key in plan.first_of_key:
            plan.duplicates[i] = stored[0] if stored is not None else None
        else:
            plan.first_of_key[key] = i
            if alert.event_id not in known_events and alert.event_id not in plan.new_events:
                plan.new_events[alert.event_id] = _event_params(alert)
            plan.new_alerts.append((i, _alert_params(o, alert, now)))
    return plan


def _event_params(alert: Alert) -> dict[str, Any]:
    return {
        "event_id": alert.event_id,
        "source": alert.source,
        "kind": alert.kind.value,
        "is_test": alert.is_test,
        "first_alert_at": alert.issued_at,
        "latest_alert_id": None,
        "retracted": False,
        "retracted_at": None,
    }


def _alert_params(outcome: MessageOutcome, alert: Alert, now: datetime) -> dict[str, Any]:
    return {
        "message_id": outcome.message_id,
        "event_id": alert.event_id,
        "alert_type": alert.alert_type.value,
        "issued_at": alert.issued_at,
        "source": alert.source,
        "kind": alert.kind.value,
        "format": alert.format,
        "is_test": alert.is_test,
        "decision": outcome.decision,
        "decision_reason": outcome.reason,
        # Serialised once by pydantic (several times faster than dumping a dict and
        # json.dumps-ing it), stored as is.
        "summary": JsonText(outcome.summary or alert.model_dump_json()),
        "created_at": now,
    }


def _insert_alerts(conn: Connection, outcomes: Sequence[MessageOutcome], plan: _AlertBatch) -> None:
    """Insert the new alerts and record each one's result (its id read back by message id)."""
    if not plan.new_alerts:
        return
    executemany(conn, "insert alerts", insert(AlertRow.__table__), [p for _, p in plan.new_alerts])
    alert_ids: dict[int, int] = {}
    for chunk in chunks([p["message_id"] for _, p in plan.new_alerts]):
        alert_ids.update(
            (mid, aid)
            for aid, mid in conn.execute(
                select(AlertRow.id, AlertRow.message_id).where(AlertRow.message_id.in_(chunk))
            )
        )
    for i, params in plan.new_alerts:
        o = outcomes[i]
        plan.results[i] = RecordedOutcome(
            o.message_id, _status(o.decision), alert_ids[params["message_id"]], True, o.reason
        )


def _update_events(
    conn: Connection, with_new_alerts: set[str], retracted: set[str], now: datetime
) -> None:
    """Point each event that got new alerts at its newest; mark retracted events."""
    events = EventRow.__table__
    alerts = AlertRow.__table__
    if with_new_alerts:
        # One statement: the newest alert row of each event touched by this batch.
        newest = (
            select(func.max(alerts.c.id))
            .where(alerts.c.event_id == events.c.event_id)
            .scalar_subquery()
        )
        for chunk in chunks(sorted(with_new_alerts)):
            conn.execute(
                update(events).where(events.c.event_id.in_(chunk)).values(latest_alert_id=newest)
            )
    if retracted:
        conn.execute(
            update(events)
            .where(events.c.event_id.in_(sorted(retracted)), events.c.retracted.is_(False))
            .values(retracted=True, retracted_at=now)
        )


def _update_message_statuses(conn: Connection, results: list[RecordedOutcome]) -> None:
    """Write each message's final status and reason."""
    messages = MessageRow.__table__
    executemany(
        conn,
        "update message status",
        update(messages)
        .where(messages.c.id == bindparam("b_id"))
        .values(status=bindparam("b_status"), reason=bindparam("b_reason")),
        [{"b_id": r.message_id, "b_status": r.status, "b_reason": r.reason} for r in results],
    )
