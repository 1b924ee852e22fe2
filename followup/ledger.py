"""The ledger: followup's own record of what arrived and what was promised to others.

Prefect records runs; the ledger records the science and the commitments: every Kafka message as
received (raw bytes kept), its parse result or quarantine reason, events and their alert sequence,
targets, telescope requests with their remote ids and states, frames, measurements, reports and
human approvals. Unique keys make a second submission of the same thing impossible, whatever the
caller does: one message per hop ``_id``, one alert per (event, type, issue time), one request per
(event, target, filter set, epoch), one report per (destination, event, target, content hash).

SQLite is the embedded default (WAL mode, a busy timeout); the same code runs on PostgreSQL. The
schema is managed by alembic (``followup/migrations``); :meth:`Ledger.migrate` brings a database
to the current revision.

Example:
    >>> ledger = Ledger("sqlite:///:memory:")
    >>> ledger.migrate()
    >>> row, created = ledger.record_message(topic="igwn.gwalert", raw=b"{}", message_uuid=None)
"""

from __future__ import annotations

import base64
import hashlib
import json
import operator
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.sql.dml import Insert

from followup.exceptions import LedgerError
from followup.models import (
    Alert,
    Approval,
    Frame,
    LcoState,
    Measurement,
    ObservationRequest,
    Report,
    Target,
    utcnow,
)

__all__ = [
    "FINAL_MESSAGE_STATUSES",
    "AlertRow",
    "ApprovalRow",
    "Base",
    "EventRow",
    "FrameRow",
    "IncomingMessage",
    "Ledger",
    "MeasurementRow",
    "MessageOutcome",
    "MessageRow",
    "QuarantineRow",
    "RecordedOutcome",
    "ReportRow",
    "RequestRow",
    "StoredAlert",
    "StoredMessage",
    "TargetRow",
    "decode_headers",
    "default_ledger_url",
    "encode_headers",
]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def default_ledger_url(home: str | Path = ".followup") -> str:
    """Return the embedded default: an SQLite file under the project-local state directory."""
    path = Path(home).resolve() / "ledger.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the ledger tables."""


class MessageRow(Base):
    """Every message read from Kafka (or given to ``followup parse``), exactly once."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_uuid: Mapped[str | None] = mapped_column(String(36), unique=True)
    topic: Mapped[str] = mapped_column(String(255))
    partition: Mapped[int | None] = mapped_column(Integer)
    offset: Mapped[int | None] = mapped_column(BigInteger)
    kafka_timestamp_ms: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(20), default="received", index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    # Kafka headers as [[name, base64 value], ...]: hop's _test and _format change how the bytes
    # are read, so a re-parse from the ledger needs them (migration 0002).
    headers: Mapped[list[list[str]] | None] = mapped_column(JSON, nullable=True)


class QuarantineRow(Base):
    """A message that could not be parsed or validated, with the reason, kept for inspection."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), unique=True)
    reason: Mapped[str] = mapped_column(String(255))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class EventRow(Base):
    """An astrophysical event (LVK superevent, GRB trigger...) and its alert sequence."""

    __tablename__ = "events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)
    first_alert_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    latest_alert_id: Mapped[int | None] = mapped_column(Integer)
    retracted: Mapped[bool] = mapped_column(Boolean, default=False)
    retracted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AlertRow(Base):
    """A parsed alert. Its raw bytes (sky map included) stay in its message row."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("event_id", "alert_type", "issued_at", name="uq_alert_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), unique=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.event_id"), index=True)
    alert_type: Mapped[str] = mapped_column(String(20))
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    source: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    format: Mapped[str] = mapped_column(String(32))
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)
    decision: Mapped[str | None] = mapped_column(String(20))  # accepted / rejected / retraction
    decision_reason: Mapped[str | None] = mapped_column(Text)
    # The follow-up run started for an accepted alert; NULL means none was started yet.
    flow_run_id: Mapped[str | None] = mapped_column(String(36), index=True)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class TargetRow(Base):
    """A planned target of an event."""

    __tablename__ = "targets"
    __table_args__ = (UniqueConstraint("event_id", "name", name="uq_target_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.event_id"), index=True)
    name: Mapped[str] = mapped_column(String(30))
    ra: Mapped[float] = mapped_column(Float)
    dec: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(10))
    rank: Mapped[int] = mapped_column(Integer)
    probability: Mapped[float] = mapped_column(Float)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class RequestRow(Base):
    """One LCO request group for one target, filter set and epoch.

    ``local_status`` follows the client's side of the exchange: ``claimed`` (row written, nothing
    sent yet), ``submitted`` (the portal answered with ids), ``declined`` (a person said no),
    ``rejected`` (the portal refused it), ``failed``. A row left ``claimed`` after a crash means the
    POST may or may not have reached the portal: look the group name up before sending again.
    """

    __tablename__ = "requests"
    __table_args__ = (
        UniqueConstraint("event_id", "target_id", "filters_key", "epoch", name="uq_request_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.event_id"), index=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id"))
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    filters_key: Mapped[str] = mapped_column(String(100))
    group_name: Mapped[str] = mapped_column(String(50), unique=True)
    observation_type: Mapped[str] = mapped_column(String(20))
    local_status: Mapped[str] = mapped_column(String(20), default="claimed", index=True)
    state: Mapped[str] = mapped_column(String(30), default=LcoState.PENDING.value, index=True)
    group_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    request_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    window_start: Mapped[datetime | None] = mapped_column(UtcDateTime)
    window_end: Mapped[datetime | None] = mapped_column(UtcDateTime)
    portal_url: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class FrameRow(Base):
    """An archive frame, once per archive frame id."""

    __tablename__ = "frames"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    archive_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    request_row_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id"), index=True)
    basename: Mapped[str] = mapped_column(String(100))
    version_id: Mapped[int | None] = mapped_column(BigInteger)
    reduction_level: Mapped[int] = mapped_column(Integer)
    filter: Mapped[str | None] = mapped_column(String(20))
    observation_date: Mapped[datetime | None] = mapped_column(UtcDateTime)
    local_path: Mapped[str | None] = mapped_column(Text)
    md5: Mapped[str | None] = mapped_column(String(32))
    # Why the frame could not be searched or measured (truncated, no WCS...); NULL when usable
    # (migration 0004). The frame stays in the ledger either way.
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class MeasurementRow(Base):
    """Forced photometry of one target on one frame by one method."""

    __tablename__ = "measurements"
    __table_args__ = (
        UniqueConstraint("frame_id", "target_id", "method", name="uq_measurement_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id"))
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id"), index=True)
    method: Mapped[str] = mapped_column(String(10))
    band: Mapped[str] = mapped_column(String(10))
    mjd: Mapped[float] = mapped_column(Float)
    flux_ujy: Mapped[float] = mapped_column(Float)
    flux_err_ujy: Mapped[float] = mapped_column(Float)
    mag: Mapped[float | None] = mapped_column(Float)
    mag_err: Mapped[float | None] = mapped_column(Float)
    limit_mag_5sigma: Mapped[float] = mapped_column(Float)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ReportRow(Base):
    """A report to HERMES, TNS or GCN; the unique key makes a second send impossible."""

    __tablename__ = "reports"
    __table_args__ = (
        UniqueConstraint(
            "destination", "event_id", "target_name", "content_hash", name="uq_report_key"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    destination: Mapped[str] = mapped_column(String(10))
    event_id: Mapped[str] = mapped_column(String(64), index=True)
    # '' rather than NULL when a report is not about one target: NULLs never collide in a key.
    target_name: Mapped[str] = mapped_column(String(30), default="")
    content_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    remote_id: Mapped[str | None] = mapped_column(String(100))
    url: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class ApprovalRow(Base):
    """A human decision (or a timeout counted as a decline)."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(120), index=True)
    approved: Mapped[bool] = mapped_column(Boolean)
    decided_by: Mapped[str] = mapped_column(String(100), default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


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
class StoredAlert:
    """An alert and its message, as :meth:`Ledger.get_stored_alert` returns them.

    Attributes:
        alert_id: The alert row.
        message_id: The message row it came from.
        event_id: The event.
        alert_type: The alert type.
        decision: ``accepted``, ``rejected`` or ``retraction`` (None if undecided).
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
    decision: str | None
    decision_reason: str | None
    raw: bytes
    headers: list[tuple[str, bytes]]
    topic: str
    partition: int | None
    offset: int | None
    message_uuid: str | None
    summary: dict[str, Any]


FINAL_MESSAGE_STATUSES = frozenset(
    {"accepted", "rejected", "retraction", "duplicate", "quarantined"}
)
"""Message statuses that end its processing; ``received`` means processing has not finished."""


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A Kafka message to store (see :meth:`Ledger.record_messages`).

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
    """What :meth:`Ledger.record_messages` did with one message.

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
    status: str
    reason: str | None = None
    alert_id: int | None = None
    event_id: str | None = None
    alert_type: str | None = None

    @property
    def finished(self) -> bool:
        """True when the message was fully processed before."""
        return self.status in FINAL_MESSAGE_STATUSES


@dataclass(frozen=True, slots=True)
class MessageOutcome:
    """The result of parsing and judging one stored message (see :meth:`Ledger.record_outcomes`).

    Attributes:
        message_id: The message row.
        alert: The parsed alert, or None when the message is quarantined.
        decision: ``accepted``, ``rejected`` or ``retraction`` for an alert.
        reason: The decision's reason, or the quarantine reason.
        detail: The quarantine detail.
    """

    message_id: int
    alert: Alert | None
    decision: Literal["accepted", "rejected", "retraction"] | None = None
    reason: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RecordedOutcome:
    """What :meth:`Ledger.record_outcomes` stored for one message.

    Attributes:
        message_id: The message row.
        status: ``accepted``, ``rejected``, ``retraction``, ``duplicate`` or ``quarantined``.
        alert_id: The alert row (for a duplicate, the first copy's).
        created: True when a new alert row was written.
        reason: The status reason written to the message row.
    """

    message_id: int
    status: str
    alert_id: int | None
    created: bool
    reason: str | None


class JsonText(str):
    """A JSON document already serialised: JSON columns store it as it is."""


def _json_serializer(value: Any) -> str:
    if isinstance(value, JsonText):
        return str(value)
    return json.dumps(value)


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Ledger:
    """Access to the ledger database.

    Args:
        url: SQLAlchemy URL, ``sqlite:///path.db`` (default embedded) or
            ``postgresql+psycopg2://user@host/db``.
        echo: Log SQL statements.

    Every method opens and closes its own transaction, so a Ledger can be shared by threads.
    """

    _migrate_lock = threading.Lock()

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        kwargs: dict[str, Any] = {
            "echo": echo,
            "future": True,
            "json_serializer": _json_serializer,
        }
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
            if url.startswith(("postgresql://", "postgresql+psycopg2://")):
                # Batched UPDATEs too (psycopg2 otherwise sends one statement per row).
                kwargs["executemany_mode"] = "values_plus_batch"
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Ledger({self.engine.url.render_as_string(hide_password=True)!r})"

    # ---------------------------------------------------------------- schema

    def migrate(self, revision: str = "head") -> None:
        """Bring the database schema to ``revision`` with alembic (idempotent)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self._migrate_lock, self.engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    # ---------------------------------------------------------------- messages and alerts

    def record_message(
        self,
        *,
        topic: str,
        raw: bytes,
        message_uuid: str | None,
        partition: int | None = None,
        offset: int | None = None,
        kafka_timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> tuple[MessageRow, bool]:
        """Store a message exactly once (with its Kafka headers).

        Returns:
            The stored row and True when it was new, or the earlier row and False when a message
            with the same hop ``_id`` was already stored.
        """
        if message_uuid is not None:
            existing = self.find_message(message_uuid)
            if existing is not None:
                return existing, False
        row = MessageRow(
            message_uuid=message_uuid,
            topic=topic,
            partition=partition,
            offset=offset,
            kafka_timestamp_ms=kafka_timestamp_ms,
            raw=raw,
            sha256=hashlib.sha256(raw).hexdigest(),
            headers=encode_headers(headers),
        )
        try:
            with self.session() as s:
                s.add(row)
        except IntegrityError:
            # Another consumer stored it between our look-up and insert.
            existing = self.find_message(message_uuid) if message_uuid else None
            if existing is None:
                raise
            return existing, False
        return row, True

    def find_message(self, message_uuid: str) -> MessageRow | None:
        """Return the message with this hop ``_id``, if stored."""
        with self.session() as s:
            return s.scalar(select(MessageRow).where(MessageRow.message_uuid == message_uuid))

    def get_message(self, message_id: int) -> MessageRow:
        """Return a message by ledger id.

        Raises:
            LedgerError: No such message.
        """
        with self.session() as s:
            row = s.get(MessageRow, message_id)
        if row is None:
            raise LedgerError(f"no message with id {message_id}")
        return row

    def set_message_status(self, message_id: int, status: str, reason: str | None = None) -> None:
        """Record what became of a message (accepted, rejected, duplicate, quarantined...)."""
        with self.session() as s:
            row = s.get(MessageRow, message_id)
            if row is None:
                raise LedgerError(f"no message with id {message_id}")
            row.status = status
            row.reason = reason

    def quarantine(self, message_id: int, reason: str, detail: str = "") -> QuarantineRow:
        """Keep an unparseable message for inspection, with the reason (idempotent)."""
        with self.session() as s:
            existing = s.scalar(select(QuarantineRow).where(QuarantineRow.message_id == message_id))
            if existing is not None:
                return existing
            row = QuarantineRow(message_id=message_id, reason=reason[:255], detail=detail)
            s.add(row)
            message = s.get(MessageRow, message_id)
            if message is not None:
                message.status = "quarantined"
                message.reason = reason
        return row

    def quarantined(self, limit: int = 100) -> list[QuarantineRow]:
        """The most recent quarantined messages."""
        with self.session() as s:
            return list(
                s.scalars(select(QuarantineRow).order_by(QuarantineRow.id.desc()).limit(limit))
            )

    def record_alert(self, message_id: int, alert: Alert) -> tuple[AlertRow, bool]:
        """Store a parsed alert and upsert its event.

        Returns:
            The row and True when it is new, or the first copy and False when an alert with the same
            event id, alert type and issue time was stored before (a duplicate).
        """
        existing = self.find_alert(*alert.dedupe_key)
        if existing is not None:
            return existing, False
        summary = alert.model_dump(mode="json")
        row = AlertRow(
            message_id=message_id,
            event_id=alert.event_id,
            alert_type=alert.alert_type.value,
            issued_at=alert.issued_at,
            source=alert.source,
            kind=alert.kind.value,
            format=alert.format,
            is_test=alert.is_test,
            summary=summary,
        )
        try:
            with self.session() as s:
                event_row = s.get(EventRow, alert.event_id)
                if event_row is None:
                    event_row = EventRow(
                        event_id=alert.event_id,
                        source=alert.source,
                        kind=alert.kind.value,
                        is_test=alert.is_test,
                        first_alert_at=alert.issued_at,
                    )
                    s.add(event_row)
                    s.flush()
                s.add(row)
                s.flush()
                event_row.latest_alert_id = row.id
        except IntegrityError:
            existing = self.find_alert(*alert.dedupe_key)
            if existing is None:
                raise
            return existing, False
        return row, True

    def find_alert(
        self, event_id: str, alert_type: str, issued_at: str | datetime
    ) -> AlertRow | None:
        """Return the alert with this dedupe key, if stored."""
        if isinstance(issued_at, str):
            issued_at = datetime.fromisoformat(issued_at)
        if issued_at.tzinfo is None:
            issued_at = issued_at.replace(tzinfo=UTC)
        with self.session() as s:
            return s.scalar(
                select(AlertRow).where(
                    AlertRow.event_id == event_id,
                    AlertRow.alert_type == alert_type,
                    AlertRow.issued_at == issued_at.astimezone(UTC),
                )
            )

    def get_alert(self, alert_id: int) -> tuple[AlertRow, bytes]:
        """Return an alert row and the raw bytes of its message.

        Raises:
            LedgerError: No such alert.
        """
        with self.session() as s:
            row = s.get(AlertRow, alert_id)
            if row is None:
                raise LedgerError(f"no alert with id {alert_id}")
            message = s.get(MessageRow, row.message_id)
            assert message is not None  # foreign key
            return row, message.raw

    def get_stored_alert(self, alert_id: int) -> StoredAlert:
        """Return an alert with everything needed to parse it again exactly as it arrived.

        Raises:
            LedgerError: No such alert.
        """
        with self.session() as s:
            row = s.get(AlertRow, alert_id)
            if row is None:
                raise LedgerError(f"no alert with id {alert_id}")
            message = s.get(MessageRow, row.message_id)
            assert message is not None  # foreign key
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

    def set_alert_decision(self, alert_id: int, decision: str, reason: str | None = None) -> None:
        """Record the trigger rules' decision on an alert (accepted, rejected, retraction)."""
        with self.session() as s:
            row = s.get(AlertRow, alert_id)
            if row is None:
                raise LedgerError(f"no alert with id {alert_id}")
            row.decision = decision
            row.decision_reason = reason
            message = s.get(MessageRow, row.message_id)
            if message is not None:
                message.status = decision
                message.reason = reason

    def set_alert_flow_run(self, alert_id: int, flow_run_id: str) -> None:
        """Record the follow-up run started for an alert."""
        with self.session() as s:
            row = s.get(AlertRow, alert_id)
            if row is None:
                raise LedgerError(f"no alert with id {alert_id}")
            row.flow_run_id = flow_run_id

    def alerts_without_run(self, *, since: datetime) -> list[AlertRow]:
        """Accepted alerts stored since ``since`` whose follow-up run was never started.

        After a crash between storing an alert and starting its run, these are the alerts that
        would otherwise be lost.
        """
        with self.session() as s:
            return list(
                s.scalars(
                    select(AlertRow)
                    .where(
                        AlertRow.decision == "accepted",
                        AlertRow.flow_run_id.is_(None),
                        AlertRow.created_at >= since,
                    )
                    .order_by(AlertRow.id)
                )
            )

    def alerts_for_event(self, event_id: str) -> list[AlertRow]:
        """Every stored alert of an event, oldest first."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(AlertRow).where(AlertRow.event_id == event_id).order_by(AlertRow.id)
                )
            )

    # ---------------------------------------------------------------- batched ingest

    def record_messages(self, messages: Sequence[IncomingMessage]) -> list[StoredMessage]:
        """Store many messages in one transaction, exactly once per hop ``_id``.

        The batched form of :meth:`record_message` for the listener's hot path: one look-up of
        the ``_id``s already stored, one multi-row insert. A message repeated within the batch is
        stored once (its later copies come back with ``created=False``). Messages without an
        ``_id`` are always stored.

        Args:
            messages: The messages, in the order they were read.

        Returns:
            One :class:`StoredMessage` per input, in order.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: The database failed; nothing of the batch is stored.
        """
        if not messages:
            return []
        for attempt in range(2):
            try:
                return self._record_messages(messages)
            except IntegrityError:
                # Another writer stored one of these _ids between our look-up and insert; the
                # second attempt finds it.
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _record_messages(self, messages: Sequence[IncomingMessage]) -> list[StoredMessage]:
        messages_table = MessageRow.__table__
        uuids = sorted({m.message_uuid for m in messages if m.message_uuid is not None})
        results: list[StoredMessage | None] = [None] * len(messages)
        with self.engine.begin() as conn:
            existing: dict[str, StoredMessage] = {}
            for chunk in _chunks(uuids, 500):
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
                    existing[muuid] = StoredMessage(
                        mid, False, status, reason, aid, event_id, alert_type
                    )
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
            if to_insert:
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
                        "status": "received",
                        "reason": None,
                        "headers": encode_headers(m.headers),
                    }
                    for _, m in to_insert
                ]
                # A plain executemany (no RETURNING) is many times faster on SQLite; the ids are
                # read back by _id, which is unique. Rows without an _id are inserted one by one.
                keyed = [
                    (i, p) for (i, _), p in zip(to_insert, params, strict=True) if p["message_uuid"]
                ]
                if keyed:
                    _executemany(
                        conn, "insert messages", insert(messages_table), [p for _, p in keyed]
                    )
                    ids_by_uuid: dict[str, int] = {}
                    for chunk in _chunks([p["message_uuid"] for _, p in keyed], 500):
                        ids_by_uuid.update(
                            (u, mid)
                            for mid, u in conn.execute(
                                select(MessageRow.id, MessageRow.message_uuid).where(
                                    MessageRow.message_uuid.in_(chunk)
                                )
                            )
                        )
                    for i, p in keyed:
                        results[i] = StoredMessage(ids_by_uuid[p["message_uuid"]], True, "received")
                for (i, _), p in zip(to_insert, params, strict=True):
                    if not p["message_uuid"]:
                        new_id = conn.execute(
                            insert(messages_table).returning(messages_table.c.id), p
                        ).scalar_one()
                        results[i] = StoredMessage(new_id, True, "received")
            for i, message in enumerate(messages):
                if results[i] is None:
                    first = results[first_in_batch[message.message_uuid]]  # type: ignore[index]
                    assert first is not None
                    results[i] = StoredMessage(first.message_id, False, first.status, first.reason)
        return [r for r in results if r is not None]

    def record_outcomes(self, outcomes: Sequence[MessageOutcome]) -> list[RecordedOutcome]:
        """Store the parse results and decisions of many messages in one transaction.

        For each message: a quarantine row (no alert), or the alert under its dedupe key (event
        id, alert type, issue time) with its event upserted, its decision, and for a retraction
        the event marked retracted. An alert whose key is already stored (or appears earlier in
        the batch) is not stored again: its message gets the status ``duplicate``. Each message
        row gets its final status and reason. Same effects as :meth:`quarantine`,
        :meth:`record_alert`, :meth:`set_alert_decision` and :meth:`mark_retracted`, batched.

        Args:
            outcomes: One per message already stored by :meth:`record_messages`.

        Returns:
            One :class:`RecordedOutcome` per input, in order.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: The database failed; nothing of the batch is stored.
        """
        if not outcomes:
            return []
        for attempt in range(2):
            try:
                return self._record_outcomes(outcomes)
            except IntegrityError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _record_outcomes(self, outcomes: Sequence[MessageOutcome]) -> list[RecordedOutcome]:
        alerts_table = AlertRow.__table__
        events_table = EventRow.__table__
        now = utcnow()
        results: list[RecordedOutcome | None] = [None] * len(outcomes)
        status_updates: list[dict[str, Any]] = []
        with self.engine.begin() as conn:
            # Quarantines.
            quarantined = [o for o in outcomes if o.alert is None]
            if quarantined:
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
            # Alerts: look the dedupe keys up in one query per chunk of events.
            with_alerts = [(i, o) for i, o in enumerate(outcomes) if o.alert is not None]
            event_ids = sorted({o.alert.event_id for _, o in with_alerts})  # type: ignore[union-attr]
            stored_keys: dict[tuple[str, str, datetime], tuple[int, int]] = {}
            known_events: set[str] = set()
            for chunk in _chunks(event_ids, 500):
                for aid, mid, event_id, alert_type, issued_at in conn.execute(
                    select(
                        AlertRow.id,
                        AlertRow.message_id,
                        AlertRow.event_id,
                        AlertRow.alert_type,
                        AlertRow.issued_at,
                    ).where(AlertRow.event_id.in_(chunk))
                ):
                    stored_keys[(event_id, alert_type, issued_at)] = (aid, mid)
                known_events.update(
                    conn.execute(
                        select(EventRow.event_id).where(EventRow.event_id.in_(chunk))
                    ).scalars()
                )
            new_events: dict[str, dict[str, Any]] = {}
            new_alerts: list[tuple[int, MessageOutcome, dict[str, Any]]] = []
            batch_keys: dict[tuple[str, str, datetime], int] = {}
            resumed: list[dict[str, Any]] = []
            for i, o in with_alerts:
                alert = o.alert
                assert alert is not None
                key = (alert.event_id, alert.alert_type.value, alert.issued_at)
                stored = stored_keys.get(key)
                if stored is not None and stored[1] == o.message_id:
                    # This very message was recorded by an attempt that did not finish (the
                    # older per-step methods): finish it rather than call it a duplicate.
                    resumed.append(
                        {"b_aid": stored[0], "b_decision": o.decision, "b_reason": o.reason}
                    )
                    status = o.decision or "received"
                    results[i] = RecordedOutcome(o.message_id, status, stored[0], False, o.reason)
                    batch_keys[key] = i
                    continue
                if stored is not None or key in batch_keys:
                    # Stored before (alert id known), or earlier in this batch (filled in below).
                    first = stored[0] if stored is not None else None
                    results[i] = RecordedOutcome(o.message_id, "duplicate", first, False, None)
                    continue
                batch_keys[key] = i
                if alert.event_id not in known_events and alert.event_id not in new_events:
                    new_events[alert.event_id] = {
                        "event_id": alert.event_id,
                        "source": alert.source,
                        "kind": alert.kind.value,
                        "is_test": alert.is_test,
                        "first_alert_at": alert.issued_at,
                        "latest_alert_id": None,
                        "retracted": False,
                        "retracted_at": None,
                    }
                new_alerts.append(
                    (
                        i,
                        o,
                        {
                            "message_id": o.message_id,
                            "event_id": alert.event_id,
                            "alert_type": alert.alert_type.value,
                            "issued_at": alert.issued_at,
                            "source": alert.source,
                            "kind": alert.kind.value,
                            "format": alert.format,
                            "is_test": alert.is_test,
                            "decision": o.decision,
                            "decision_reason": o.reason,
                            # Serialised once by pydantic (several times faster than dumping
                            # a dict and json.dumps-ing it), stored as is.
                            "summary": JsonText(alert.model_dump_json()),
                            "created_at": now,
                        },
                    )
                )
            if new_events:
                _executemany(conn, "insert events", insert(events_table), list(new_events.values()))
            latest: dict[str, int] = {}
            retracted: set[str] = set()
            if new_alerts:
                _executemany(
                    conn, "insert alerts", insert(alerts_table), [p for _, _, p in new_alerts]
                )
                alert_ids: dict[int, int] = {}
                for chunk in _chunks([params["message_id"] for _, _, params in new_alerts], 500):
                    alert_ids.update(
                        (mid, aid)
                        for aid, mid in conn.execute(
                            select(AlertRow.id, AlertRow.message_id).where(
                                AlertRow.message_id.in_(chunk)
                            )
                        )
                    )
                for i, o, params in new_alerts:
                    alert_id = alert_ids[params["message_id"]]
                    status = o.decision or "received"
                    results[i] = RecordedOutcome(o.message_id, status, alert_id, True, o.reason)
                    latest[params["event_id"]] = alert_id
            # Duplicates inside the batch point at the first copy's alert row.
            for i, o in with_alerts:
                result = results[i]
                if result is not None and result.status == "duplicate" and result.alert_id is None:
                    alert = o.alert
                    assert alert is not None
                    first_index = batch_keys[
                        (alert.event_id, alert.alert_type.value, alert.issued_at)
                    ]
                    first_result = results[first_index]
                    results[i] = RecordedOutcome(
                        o.message_id,
                        "duplicate",
                        first_result.alert_id if first_result else None,
                        False,
                        None,
                    )
            for i, o in enumerate(outcomes):
                result = results[i]
                if o.alert is None:
                    results[i] = RecordedOutcome(o.message_id, "quarantined", None, False, o.reason)
                    status_updates.append(
                        {"b_id": o.message_id, "b_status": "quarantined", "b_reason": o.reason}
                    )
                    continue
                assert result is not None
                if result.status == "duplicate":
                    reason = (
                        f"same alert as alert #{result.alert_id} (event id, alert type, issue time)"
                    )
                    results[i] = RecordedOutcome(
                        o.message_id, "duplicate", result.alert_id, False, reason
                    )
                    status_updates.append(
                        {"b_id": o.message_id, "b_status": "duplicate", "b_reason": reason}
                    )
                else:
                    status_updates.append(
                        {"b_id": o.message_id, "b_status": result.status, "b_reason": o.reason}
                    )
            if resumed:
                conn.execute(
                    update(alerts_table)
                    .where(alerts_table.c.id == bindparam("b_aid"))
                    .values(
                        decision=bindparam("b_decision"), decision_reason=bindparam("b_reason")
                    ),
                    resumed,
                )
            for i, o in with_alerts:
                result = results[i]
                if (
                    o.decision == "retraction"
                    and result is not None
                    and result.status == "retraction"
                ):
                    retracted.add(o.alert.event_id)  # type: ignore[union-attr]
            if latest:
                # One statement: the newest alert row of each event touched by this batch.
                newest = (
                    select(func.max(alerts_table.c.id))
                    .where(alerts_table.c.event_id == events_table.c.event_id)
                    .scalar_subquery()
                )
                for chunk in _chunks(sorted(latest), 500):
                    conn.execute(
                        update(events_table)
                        .where(events_table.c.event_id.in_(chunk))
                        .values(latest_alert_id=newest)
                    )
            if retracted:
                conn.execute(
                    update(events_table)
                    .where(
                        events_table.c.event_id.in_(sorted(retracted)),
                        events_table.c.retracted.is_(False),
                    )
                    .values(retracted=True, retracted_at=now)
                )
            if status_updates:
                messages_table = MessageRow.__table__
                _executemany(
                    conn,
                    "update message status",
                    update(messages_table)
                    .where(messages_table.c.id == bindparam("b_id"))
                    .values(status=bindparam("b_status"), reason=bindparam("b_reason")),
                    status_updates,
                )
        return [r for r in results if r is not None]

    # ---------------------------------------------------------------- events

    def get_event(self, event_id: str) -> EventRow | None:
        """Return an event, if known."""
        with self.session() as s:
            return s.get(EventRow, event_id)

    def mark_retracted(self, event_id: str) -> EventRow:
        """Mark an event retracted (creating the row if a retraction arrives first)."""
        with self.session() as s:
            row = s.get(EventRow, event_id)
            if row is None:
                row = EventRow(event_id=event_id, source="unknown", kind="other")
                s.add(row)
            if not row.retracted:
                row.retracted = True
                row.retracted_at = utcnow()
        return row

    # ---------------------------------------------------------------- targets

    def save_targets(self, event_id: str, targets: Sequence[Target]) -> list[TargetRow]:
        """Store targets of an event; a target already stored under its name is kept as it was."""
        rows: list[TargetRow] = []
        with self.session() as s:
            for target in targets:
                row = s.scalar(
                    select(TargetRow).where(
                        TargetRow.event_id == event_id, TargetRow.name == target.name
                    )
                )
                if row is None:
                    row = TargetRow(
                        event_id=event_id,
                        name=target.name,
                        ra=target.ra,
                        dec=target.dec,
                        kind=target.kind.value,
                        rank=target.rank,
                        probability=target.probability,
                        data=target.model_dump(mode="json"),
                    )
                    s.add(row)
                    s.flush()
                rows.append(row)
        return rows

    def get_target(self, event_id: str, name: str) -> TargetRow | None:
        """Return a target of an event by name."""
        with self.session() as s:
            return s.scalar(
                select(TargetRow).where(TargetRow.event_id == event_id, TargetRow.name == name)
            )

    def targets_for_event(self, event_id: str) -> list[TargetRow]:
        """The targets of an event in rank order."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(TargetRow).where(TargetRow.event_id == event_id).order_by(TargetRow.rank)
                )
            )

    # ---------------------------------------------------------------- requests

    def claim_request(self, request: ObservationRequest) -> tuple[RequestRow, bool]:
        """Write the request row before anything is sent, under its unique key.

        Returns:
            The row and True when this call claimed it; the existing row and False when the same
            (event, target, filters, epoch) or the same group name was claimed before. A caller
            that gets False must not POST blindly: if the row is still ``claimed`` it looks the
            group name up at the portal first.

        Raises:
            LedgerError: The target is not stored for this event.
        """
        target = self.get_target(request.event_id, request.target_name)
        if target is None:
            raise LedgerError(f"target {request.target_name!r} of {request.event_id} is not stored")
        filters_key = ",".join(request.filters)
        existing = self._find_request(request.event_id, target.id, filters_key, request.epoch)
        if existing is None:
            existing = self.find_request_by_name(request.group_name)
        if existing is not None:
            return existing, False
        row = RequestRow(
            event_id=request.event_id,
            target_id=target.id,
            epoch=request.epoch,
            filters_key=filters_key,
            group_name=request.group_name,
            observation_type=request.observation_type.value,
            state=request.state.value,
            window_start=request.window_start,
            window_end=request.window_end,
        )
        try:
            with self.session() as s:
                s.add(row)
        except IntegrityError:
            existing = self._find_request(request.event_id, target.id, filters_key, request.epoch)
            existing = existing or self.find_request_by_name(request.group_name)
            if existing is None:
                raise
            return existing, False
        return row, True

    def _find_request(
        self, event_id: str, target_id: int, filters_key: str, epoch: int
    ) -> RequestRow | None:
        with self.session() as s:
            return s.scalar(
                select(RequestRow).where(
                    RequestRow.event_id == event_id,
                    RequestRow.target_id == target_id,
                    RequestRow.filters_key == filters_key,
                    RequestRow.epoch == epoch,
                )
            )

    def find_request_by_name(self, group_name: str) -> RequestRow | None:
        """Return the request row with this group name, if any."""
        with self.session() as s:
            return s.scalar(select(RequestRow).where(RequestRow.group_name == group_name))

    def update_request(self, group_name: str, **fields: Any) -> RequestRow:
        """Update a request row (remote ids, state, local status...).

        Raises:
            LedgerError: No such request, or an unknown column.
        """
        with self.session() as s:
            row = s.scalar(select(RequestRow).where(RequestRow.group_name == group_name))
            if row is None:
                raise LedgerError(f"no request named {group_name!r}")
            for key, value in fields.items():
                if not hasattr(RequestRow, key):
                    raise LedgerError(f"requests has no column {key!r}")
                if isinstance(value, LcoState):
                    value = value.value
                setattr(row, key, value)
        return row

    def requests_for_event(self, event_id: str) -> list[RequestRow]:
        """Every request row of an event."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(RequestRow)
                    .where(RequestRow.event_id == event_id)
                    .order_by(RequestRow.id)
                )
            )

    def pending_requests(self, event_id: str | None = None) -> list[RequestRow]:
        """Submitted requests whose last known state is PENDING (optionally of one event)."""
        query = select(RequestRow).where(
            RequestRow.local_status == "submitted", RequestRow.state == LcoState.PENDING.value
        )
        if event_id is not None:
            query = query.where(RequestRow.event_id == event_id)
        with self.session() as s:
            return list(s.scalars(query.order_by(RequestRow.id)))

    # ---------------------------------------------------------------- frames and measurements

    def record_frame(
        self, frame: Frame, request_row_id: int | None = None
    ) -> tuple[FrameRow, bool]:
        """Store a frame once per archive id; updates the local path of a known frame."""
        with self.session() as s:
            row = s.scalar(select(FrameRow).where(FrameRow.archive_id == frame.frame_id))
            if row is not None:
                if frame.local_path and row.local_path != frame.local_path:
                    row.local_path = frame.local_path
                return row, False
            row = FrameRow(
                archive_id=frame.frame_id,
                request_row_id=request_row_id,
                basename=frame.basename,
                version_id=frame.version_id,
                reduction_level=frame.reduction_level,
                filter=frame.filter,
                observation_date=frame.observation_date,
                local_path=frame.local_path,
                md5=frame.md5,
            )
            s.add(row)
        return row, True

    def record_frame_error(self, frame_row_id: int, error: str | None) -> FrameRow:
        """Record why a frame cannot be used (None clears it, when a rerun could use it)."""
        with self.session() as s:
            row = s.get(FrameRow, frame_row_id)
            if row is None:
                raise KeyError(f"no frame row {frame_row_id}")
            row.error = error[:4000] if error else None
            return row

    def record_measurement(
        self, frame_row_id: int, target_row_id: int, measurement: Measurement
    ) -> tuple[MeasurementRow, bool]:
        """Store a measurement once per (frame, target, method); a rerun keeps the first."""
        with self.session() as s:
            row = s.scalar(
                select(MeasurementRow).where(
                    MeasurementRow.frame_id == frame_row_id,
                    MeasurementRow.target_id == target_row_id,
                    MeasurementRow.method == measurement.method,
                )
            )
            if row is not None:
                return row, False
            row = MeasurementRow(
                frame_id=frame_row_id,
                target_id=target_row_id,
                method=measurement.method,
                band=measurement.band,
                mjd=measurement.mjd,
                flux_ujy=measurement.flux_ujy,
                flux_err_ujy=measurement.flux_err_ujy,
                mag=measurement.mag,
                mag_err=measurement.mag_err,
                limit_mag_5sigma=measurement.limit_mag_5sigma,
                data=measurement.model_dump(mode="json"),
            )
            s.add(row)
        return row, True

    def measurements_for_event(self, event_id: str) -> list[Measurement]:
        """Every measurement of an event's targets, in time order."""
        with self.session() as s:
            rows = s.scalars(
                select(MeasurementRow)
                .join(TargetRow, MeasurementRow.target_id == TargetRow.id)
                .where(TargetRow.event_id == event_id)
                .order_by(MeasurementRow.mjd)
            )
            return [Measurement.model_validate(row.data) for row in rows]

    # ---------------------------------------------------------------- reports

    def claim_report(self, report: Report) -> tuple[ReportRow, bool]:
        """Write a report row under its exactly-once key before sending anything.

        Returns:
            The row and True when new; the existing row and False when the same content was already
            claimed for this destination, event and target (a rerun: send nothing).
        """
        target = report.target_name or ""
        with self.session() as s:
            existing = s.scalar(
                select(ReportRow).where(
                    ReportRow.destination == report.destination.value,
                    ReportRow.event_id == report.event_id,
                    ReportRow.target_name == target,
                    ReportRow.content_hash == report.content_hash,
                )
            )
            if existing is not None:
                return existing, False
        row = ReportRow(
            destination=report.destination.value,
            event_id=report.event_id,
            target_name=target,
            content_hash=report.content_hash,
            status=report.status,
            remote_id=report.remote_id,
            url=report.url,
            payload=report.payload,
        )
        try:
            with self.session() as s:
                s.add(row)
        except IntegrityError:
            return self.claim_report(report)
        return row, True

    def update_report(self, report_id: int, **fields: Any) -> ReportRow:
        """Update a report row (status, remote id, url).

        Raises:
            LedgerError: No such report.
        """
        with self.session() as s:
            row = s.get(ReportRow, report_id)
            if row is None:
                raise LedgerError(f"no report with id {report_id}")
            for key, value in fields.items():
                if not hasattr(ReportRow, key):
                    raise LedgerError(f"reports has no column {key!r}")
                setattr(row, key, value)
        return row

    def reports_for_event(self, event_id: str) -> list[ReportRow]:
        """Every report row of an event."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(ReportRow).where(ReportRow.event_id == event_id).order_by(ReportRow.id)
                )
            )

    def sent_reports(self, destination: str, event_id: str) -> list[ReportRow]:
        """Reports of an event already sent or confirmed at one destination."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(ReportRow).where(
                        ReportRow.destination == destination,
                        ReportRow.event_id == event_id,
                        ReportRow.status.in_(("sent", "confirmed")),
                    )
                )
            )

    # ---------------------------------------------------------------- approvals

    def record_approval(self, approval: Approval, **data: Any) -> ApprovalRow:
        """Record a human decision (or a timeout counted as a decline)."""
        row = ApprovalRow(
            subject=approval.subject,
            approved=approval.approved,
            decided_by=approval.decided_by,
            comment=approval.comment,
            decided_at=approval.decided_at,
            data=data,
        )
        with self.session() as s:
            s.add(row)
        return row

    def approvals_for(self, subject: str) -> list[ApprovalRow]:
        """Every decision recorded on a subject, oldest first."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(ApprovalRow)
                    .where(ApprovalRow.subject == subject)
                    .order_by(ApprovalRow.id)
                )
            )


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _executemany(conn: Any, name: str, statement: Any, rows: list[dict[str, Any]]) -> None:
    """Execute one statement for many rows, without SQLAlchemy's per-row overhead on SQLite.

    SQLAlchemy spends several microseconds per row and statement building parameters, more than
    SQLite spends storing the row: on the listener's hot path that halves throughput. On SQLite the
    statement is compiled once, each value goes through the same bind processor SQLAlchemy would
    use (so stored values are identical), and the rows go to the driver's ``executemany``. Other
    databases use SQLAlchemy's own executemany (psycopg2 batches inserts itself).
    """
    if not rows:
        return
    dialect = conn.dialect
    if dialect.name != "sqlite" or dialect.paramstyle != "qmark":
        conn.execute(statement, rows)
        return
    keys = tuple(rows[0])
    cache_key = (name, keys)
    plan = _EXECUTEMANY_PLANS.get(cache_key)
    if plan is None:
        if isinstance(statement, Insert):
            statement = statement.values({k: bindparam(k) for k in keys})
        compiled = statement.compile(dialect=dialect)
        order = tuple(compiled.positiontup or ())
        processors = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in order
        )
        plan = (
            compiled.string,
            operator.itemgetter(*order) if len(order) > 1 else (lambda row: (row[order[0]],)),
            tuple((i, proc) for i, proc in enumerate(processors) if proc is not None),
        )
        _EXECUTEMANY_PLANS[cache_key] = plan
    sql, getter, converters = plan
    params = []
    for row in rows:
        values = list(getter(row))
        for i, convert in converters:
            values[i] = convert(values[i])
        params.append(tuple(values))
    conn.exec_driver_sql(sql, params)


# Compiled statements by (statement name, columns): a handful, built once per process.
_EXECUTEMANY_PLANS: dict[tuple[str, tuple[str, ...]], tuple[str, Any, tuple[Any, ...]]] = {}
