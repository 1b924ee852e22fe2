"""The listener's per-message work: store, parse, dedupe, judge, record (no Kafka, no Prefect).

:class:`Ingestor` turns one Kafka message (or a batch of them) into an :class:`IngestOutcome`, in
this order, which is what makes the listener exactly-once:

1. store the raw bytes and metadata in the ledger, once per hop ``_id``
   (:meth:`~followup.ledger.alerts.AlertStore.record_messages`); a message stored and finished before is a
   ``duplicate`` and nothing else happens;
2. parse it (:func:`followup.alerts.parse_message`); anything unparseable is ``quarantined`` with
   its reason, the raw bytes stay in the ledger;
3. apply the trigger rules (:func:`followup.rules.evaluate`), computing the 90% area only when a
   rule needs it;
4. record the alert under its dedupe key (event id, alert type, issue time) with its decision
   (:meth:`~followup.ledger.alerts.AlertStore.record_outcomes`): ``accepted``, ``rejected``, ``retracted``
   (the event is marked retracted), or ``duplicate`` when the same alert came before under another
   ``_id``.

Bad input never raises. Only a database failure raises, and then nothing of the message (or
batch) is recorded as finished, so the caller must not commit its Kafka offset: the message comes
again and processing resumes where it stopped.

No single message stops the listener. A message that cannot be stored with the rest of its batch
(the ledger refuses one of its values) is stored alone, and quarantined (``store-failed``) if it
still cannot be. A message stored before and never finished (its handling raised, or the process
died in it: a memory bomb, a crash) is handled alone and counted; after :data:`MAX_ATTEMPTS`
starts it is quarantined (``too-many-attempts``) without being parsed again.
"""

from __future__ import annotations

import hashlib
import logging
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import exc as sa_exc

from followup.alerts import header_uuid, normalise_headers, parse_message
from followup.exceptions import AlertParseError
from followup.ledger import IncomingMessage, Ledger, MessageOutcome, StoredMessage
from followup.models import Alert, AlertDecision, AlertType, MessageStatus, utcnow
from followup.rules import Decision, TriggerRules, evaluate

__all__ = [
    "MAX_ATTEMPTS",
    "AreaFunction",
    "IngestOutcome",
    "IngestStatus",
    "Ingestor",
    "MessageMeta",
    "MetadataLike",
    "message_key",
]

logger = logging.getLogger(__name__)

AreaFunction = Callable[[bytes], float]
"""Takes sky-map FITS bytes, returns the 90% credible area in deg2 (e.g. via followup.skymap)."""

_KEY_NAMESPACE = uuid.UUID("5c1e6a55-08b5-4f4e-9d52-6d3a5b1f0a11")

MAX_ATTEMPTS = 3
"""Starts of a message's handling before it is quarantined (``too-many-attempts``)."""

_LEDGER_DOWN = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
    ConnectionError,
)
"""Failures of the ledger itself, not of one message: raised, so that no offset is committed."""


class IngestStatus(StrEnum):
    """What became of one message.

    The ledger's :class:`~followup.models.MessageStatus`, except that a retraction reads
    ``retracted`` (and ``received`` is never an outcome).
    """

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"
    RETRACTED = "retracted"


_STATUS = {
    MessageStatus.ACCEPTED: IngestStatus.ACCEPTED,
    MessageStatus.REJECTED: IngestStatus.REJECTED,
    MessageStatus.RETRACTION: IngestStatus.RETRACTED,
    MessageStatus.DUPLICATE: IngestStatus.DUPLICATE,
    MessageStatus.QUARANTINED: IngestStatus.QUARANTINED,
}


class MetadataLike(Protocol):
    """What the Ingestor reads from hop's ``Metadata`` (any object with these attributes)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    headers: Any


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """Metadata for a message that did not come from hop (a file, a test).

    Attributes:
        topic: Topic name (``file`` for files).
        partition: Kafka partition, if any.
        offset: Kafka offset, if any.
        timestamp: Kafka timestamp in ms, if any.
        headers: Kafka headers as ``(name, value)`` pairs.
    """

    topic: str = "file"
    partition: int | None = None
    offset: int | None = None
    timestamp: int | None = None
    headers: Sequence[tuple[str, bytes]] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    """The result of ingesting one message.

    Attributes:
        status: accepted, rejected, duplicate, quarantined or retracted.
        reason: Why: the rules' reason, the quarantine reason with its detail, or what it
            duplicates.
        message_id: Ledger id of the stored message.
        message_uuid: hop ``_id`` (or the derived key of a message without one).
        alert_id: Ledger id of the alert (for a duplicate, the first copy's), if any.
        event_id: The event, when known.
        alert_type: The alert type, when known.
        alert: The parsed alert (None for a quarantined message and for a redelivered one).
        area90_deg2: The 90% area the rules used, when computed.
        topic: Kafka topic.
        partition: Kafka partition.
        offset: Kafka offset.
    """

    status: IngestStatus
    reason: str
    message_id: int
    message_uuid: str | None = None
    alert_id: int | None = None
    event_id: str | None = None
    alert_type: AlertType | None = None
    alert: Alert | None = field(default=None, repr=False)
    area90_deg2: float | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None

    @property
    def accepted(self) -> bool:
        """True when this message should start a follow-up run."""
        return self.status is IngestStatus.ACCEPTED

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (for event payloads and logs; no sky map)."""
        return {
            "status": self.status.value,
            "reason": self.reason,
            "message_id": self.message_id,
            "message_uuid": self.message_uuid,
            "alert_id": self.alert_id,
            "event_id": self.event_id,
            "alert_type": self.alert_type.value if self.alert_type else None,
            "source": self.alert.source if self.alert else None,
            "is_test": self.alert.is_test if self.alert else None,
            "area90_deg2": self.area90_deg2,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
        }


def message_key(
    headers: Any, topic: str | None, partition: int | None, offset: int | None, sha256: str
) -> str | None:
    """The exactly-once key of a message: hop's ``_id``, else one derived from its position.

    GCN Kafka messages carry no hop ``_id``. For them the key is a UUID5 of topic, partition,
    offset and content digest, so a message delivered again at the same position (a consumer
    restart) is still stored once. Without a position (a file) there is no key.
    """
    hop_id = header_uuid(normalise_headers(headers).get("_id"))
    if hop_id is not None:
        return hop_id
    if topic is None or partition is None or offset is None or offset < 0:
        return None
    return str(uuid.uuid5(_KEY_NAMESPACE, f"{topic}\x00{partition}\x00{offset}\x00{sha256}"))


@dataclass
class _Work:
    raw: bytes
    topic: str | None
    partition: int | None
    offset: int | None
    timestamp: int | None
    headers: dict[str, bytes]
    key: str | None
    sha256: str
    stored: StoredMessage | None = None
    alert: Alert | None = None
    summary: str | None = None
    decision: Decision | None = None
    area: float | None = None
    quarantine: tuple[str, str] | None = None
    outcome: IngestOutcome | None = None


class Ingestor:
    """Store, parse, dedupe and judge Kafka messages against the ledger.

    Args:
        ledger: The ledger (migrated).
        rules: The trigger rules.
        area_fn: Computes the 90% credible area (deg2) of sky-map bytes, for ``max_area90_deg2``;
            without it the area rule uses error regions only and passes sky maps unchecked.
        now_fn: Clock for the age rules (default: UTC now).

    Example:
        >>> ingestor = Ingestor(ledger, TriggerRules(max_far_hz=1e-7))  # doctest: +SKIP
        >>> outcome = ingestor.handle(raw, metadata)  # doctest: +SKIP
        >>> outcome.status, outcome.reason  # doctest: +SKIP
        (<IngestStatus.ACCEPTED: 'accepted'>, 'significant; FAR 9.1e-14 Hz <= 1e-07 Hz')
    """

    def __init__(
        self,
        ledger: Ledger,
        rules: TriggerRules,
        *,
        area_fn: AreaFunction | None = None,
        now_fn: Callable[[], datetime] = utcnow,
    ) -> None:
        self.ledger = ledger
        self.rules = rules
        self.area_fn = area_fn
        self.now_fn = now_fn

    def handle(self, raw: bytes, meta: MetadataLike | MessageMeta | None = None) -> IngestOutcome:
        """Ingest one message.

        Args:
            raw: The message bytes as received.
            meta: hop's ``Metadata`` (topic, partition, offset, timestamp, headers) or a
                :class:`MessageMeta`; None for a message of unknown origin.

        Returns:
            The outcome.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: The ledger failed (do not commit the offset).
        """
        return self.handle_batch([(raw, meta)])[0]

    def handle_batch(
        self, items: Sequence[tuple[bytes, MetadataLike | MessageMeta | None]]
    ) -> list[IngestOutcome]:
        """Ingest several messages with two ledger transactions in all (same semantics as one).

        Returns:
            One outcome per message, in order.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: The ledger failed (commit no offset of the batch).
        """
        works = [self._prepare(raw, meta) for raw, meta in items]
        stored = self.ledger.alerts.record_messages(
            [
                IncomingMessage(
                    topic=w.topic or "unknown",
                    raw=w.raw,
                    message_uuid=w.key,
                    partition=w.partition,
                    offset=w.offset,
                    kafka_timestamp_ms=w.timestamp,
                    sha256=w.sha256,
                    headers=tuple(w.headers.items()),
                )
                for w in works
            ]
        )
        seen: set[int] = set()
        fresh: list[_Work] = []
        suspects: list[_Work] = []
        for work, row in zip(works, stored, strict=True):
            work.stored = row
            if row.message_id in seen or (not row.created and row.finished):
                work.outcome = self._duplicate_message(work, row)
            else:
                seen.add(row.message_id)
                (fresh if row.created else suspects).append(work)
        for work in fresh:
            self._parse_and_judge(work)
        self._record(fresh)
        for work in suspects:
            # Stored before and never finished: its handling may be what killed the last
            # attempt, so it goes alone, and not forever.
            attempts = self.ledger.alerts.start_attempt(work.stored.message_id)  # type: ignore[union-attr]
            if attempts > MAX_ATTEMPTS:
                work.quarantine = (
                    "too-many-attempts",
                    f"handling started {attempts - 1} times and never finished (the process "
                    "died in it, or the ledger refused it); not parsed again",
                )
            else:
                self._parse_and_judge(work)
            self._record([work])
        outcomes = [w.outcome for w in works]
        for outcome in outcomes:
            assert outcome is not None
            _log(outcome)
        return outcomes  # type: ignore[return-value]

    def _record(self, works: list[_Work]) -> None:
        """Store the outcomes of ``works`` in one transaction; alone each when that fails.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: The ledger itself failed (not one message's values),
                or even the quarantine of a message could not be stored.
        """
        if not works:
            return
        try:
            recorded = self.ledger.alerts.record_outcomes([_message_outcome(w) for w in works])
        except _LEDGER_DOWN:
            raise
        except Exception as exc:
            if len(works) > 1:
                for work in works:
                    self._record([work])
                return
            work = works[0]
            if work.quarantine is not None:
                raise
            logger.exception("message %s could not be stored; quarantined", work.key)
            work.alert, work.summary, work.decision = None, None, None
            work.quarantine = ("store-failed", _clean(f"{type(exc).__name__}: {exc}")[:4000])
            self._record([work])
            return
        for work, result in zip(works, recorded, strict=True):
            work.outcome = self._outcome(work, result.status, result.alert_id, result.reason)

    # ------------------------------------------------------------------ steps

    def _prepare(self, raw: Any, meta: Any) -> _Work:
        if not isinstance(raw, bytes):
            raw = bytes(raw) if isinstance(raw, bytearray | memoryview) else b""
        topic = _attr(meta, "topic", str)
        partition = _attr(meta, "partition", int)
        offset = _attr(meta, "offset", int)
        timestamp = _attr(meta, "timestamp", int)
        digest = hashlib.sha256(raw).hexdigest()
        try:  # malformed headers must not stop the listener: they count as absent
            headers = normalise_headers(
                getattr(meta, "headers", None) if meta is not None else None
            )
        except Exception:
            headers = {}
        key = message_key(headers, topic, partition, offset, digest)
        return _Work(raw, topic, partition, offset, timestamp, headers, key, digest)

    def _parse_and_judge(self, work: _Work) -> None:
        try:
            work.alert = parse_message(work.raw, headers=work.headers, topic=work.topic)
            # Serialised here, inside the guard: an alert that cannot be is this message's
            # problem, not the batch's.
            work.summary = work.alert.model_dump_json()
        except AlertParseError as exc:
            work.alert = None
            work.quarantine = (_clean(exc.reason), _clean(exc.detail))
            return
        except Exception as exc:  # a parser bug: keep the message, say what happened
            logger.exception("parser failed on message %s", work.key)
            tail = "".join(traceback.format_exception(exc)[-3:])
            work.alert = None
            work.quarantine = (
                "parser-crash",
                _clean(f"{type(exc).__name__}: {exc}\n{tail}")[:4000],
            )
            return
        try:
            now = self.now_fn()
            alert = work.alert
            if self.rules.needs_area(alert):
                # The area rule fails closed without an area, so the cheap rules go first and
                # the map is read only for an alert they pass.
                cheap = self.rules.model_copy(update={"max_area90_deg2": None})
                decision = evaluate(alert, cheap, now=now)
                if decision.accepted:
                    work.area, note = self._area(alert)
                    decision = evaluate(alert, self.rules, area90_deg2=work.area, now=now)
                    if note:
                        decision = Decision(decision.accepted, f"{decision.reason}; {note}")
            else:
                decision = evaluate(alert, self.rules, now=now)
            work.decision = Decision(decision.accepted, _clean(decision.reason))
        except Exception as exc:  # the rules must never lose a parsed alert
            logger.exception("trigger rules failed on %s", work.alert.event_id)
            work.decision = Decision(False, _clean(f"rules failed: {type(exc).__name__}: {exc}"))

    def _area(self, alert: Alert) -> tuple[float | None, str | None]:
        if alert.skymap is None:
            return None, None
        if self.area_fn is None:
            return None, "no area function is configured"
        try:
            area = float(self.area_fn(alert.skymap))
        except Exception as exc:  # a map too large, corrupt or not HEALPix: unknown area
            logger.warning("90%% area of %s not computed: %s", alert.event_id, exc)
            return None, f"area not computed ({type(exc).__name__}: {str(exc)[:300]})"
        if area != area or area < 0:  # NaN or negative
            return None, f"area not computed (got {area})"
        return area, None

    def _duplicate_message(self, work: _Work, row: StoredMessage) -> IngestOutcome:
        where = f"#{row.message_id} ({row.status})" if row.finished else f"#{row.message_id}"
        return IngestOutcome(
            status=IngestStatus.DUPLICATE,
            reason=f"message {work.key} already stored as {where}",
            message_id=row.message_id,
            message_uuid=work.key,
            alert_id=row.alert_id,
            event_id=row.event_id,
            alert_type=AlertType(row.alert_type) if row.alert_type else None,
            topic=work.topic,
            partition=work.partition,
            offset=work.offset,
        )

    def _outcome(
        self, work: _Work, status: MessageStatus, alert_id: int | None, reason: str | None
    ) -> IngestOutcome:
        alert = work.alert
        if work.quarantine is not None:
            text = f"{work.quarantine[0]}: {work.quarantine[1]}" if work.quarantine[1] else None
            reason = text or work.quarantine[0]
        return IngestOutcome(
            status=_STATUS[status],
            reason=reason or "",
            message_id=work.stored.message_id,  # type: ignore[union-attr]
            message_uuid=work.key,
            alert_id=alert_id,
            event_id=alert.event_id if alert else None,
            alert_type=alert.alert_type if alert else None,
            alert=alert,
            area90_deg2=work.area,
            topic=work.topic,
            partition=work.partition,
            offset=work.offset,
        )


def _message_outcome(work: _Work) -> MessageOutcome:
    return MessageOutcome(
        message_id=work.stored.message_id,  # type: ignore[union-attr]
        alert=work.alert,
        decision=_decision_name(work),
        reason=work.quarantine[0] if work.quarantine else _reason(work),
        detail=work.quarantine[1] if work.quarantine else "",
        summary=work.summary,
    )


def _clean(text: str) -> str:
    """Text fit for any text column: NUL (which PostgreSQL refuses) written out escaped."""
    return text.replace("\x00", "\\x00")


def _decision_name(work: _Work) -> AlertDecision | None:
    if work.alert is None or work.decision is None:
        return None
    if work.alert.is_retraction:
        return AlertDecision.RETRACTION
    return AlertDecision.ACCEPTED if work.decision.accepted else AlertDecision.REJECTED


def _reason(work: _Work) -> str | None:
    return work.decision.reason if work.decision else None


def _attr(meta: Any, name: str, kind: type) -> Any:
    if meta is None:
        return None
    value = getattr(meta, name, None)
    if kind is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return value if isinstance(value, kind) else None


def _log(outcome: IngestOutcome) -> None:
    if outcome.status is IngestStatus.QUARANTINED:
        logger.warning("message %s quarantined: %s", outcome.message_id, outcome.reason[:300])
    elif outcome.status in (IngestStatus.ACCEPTED, IngestStatus.RETRACTED):
        logger.info(
            "%s %s %s: %s",
            outcome.event_id,
            outcome.alert_type.value if outcome.alert_type else "",
            outcome.status.value,
            outcome.reason,
        )
    else:
        logger.debug(
            "message %s %s: %s", outcome.message_id, outcome.status.value, outcome.reason[:200]
        )
