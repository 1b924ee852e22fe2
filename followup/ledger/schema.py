"""The ledger's tables: one mapped class per table, and the column types they share.

The schema itself is managed by alembic (``followup/migrations``); these classes must match the
latest revision. Status columns are plain strings in the database (no schema change when a status
is added) and :class:`StatusText` turns them into the ``StrEnum``s of :mod:`followup.models` on the
way in and out, so a status that is not one of the enum's values can never be written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

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
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from followup.models import (
    AlertDecision,
    LcoState,
    MessageStatus,
    ReportStatus,
    RequestStatus,
    utcnow,
)

__all__ = [
    "AlertRow",
    "ApprovalRow",
    "Base",
    "EventRow",
    "FrameRow",
    "MeasurementRow",
    "MessageRow",
    "PlanVersionRow",
    "PointingRow",
    "QuarantineRow",
    "ReportRow",
    "RequestRow",
    "StatusText",
    "TargetRow",
    "UtcDateTime",
]


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Naive times are read as UTC; aware times are converted to UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Always an aware UTC time."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class StatusText(TypeDecorator[StrEnum]):
    """A ``StrEnum`` stored as its string value in a ``VARCHAR(length)`` column.

    Args:
        enum_class: The enum; writing anything that is not one of its values raises ValueError.
        length: The column's length.
    """

    impl = String
    cache_ok = True

    def __init__(self, enum_class: type[StrEnum], length: int) -> None:
        super().__init__(length)
        self.enum_class = enum_class

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        """The enum's string value (ValueError for anything that is not one of its values)."""
        if value is None:
            return None
        # The listener's hot path binds members: skip the enum's (10x slower) value look-up.
        member = value if value.__class__ is self.enum_class else self.enum_class(value)
        return member._value_

    def process_result_value(self, value: str | None, dialect: Any) -> StrEnum | None:
        """The enum member."""
        return None if value is None else self.enum_class(value)


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
    status: Mapped[MessageStatus] = mapped_column(
        StatusText(MessageStatus, 20), default=MessageStatus.RECEIVED, index=True
    )
    reason: Mapped[str | None] = mapped_column(Text)
    # Kafka headers as [[name, base64 value], ...]: hop's _test and _format change how the bytes
    # are read, so a re-parse from the ledger needs them (migration 0002).
    headers: Mapped[list[list[str]] | None] = mapped_column(JSON, nullable=True)
    # How many times handling this message started (migration 0005): a message that keeps
    # failing, or keeps killing the process, is quarantined after a bounded number of tries.
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="0")


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
    decision: Mapped[AlertDecision | None] = mapped_column(StatusText(AlertDecision, 20))
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
    # A candidate's vetting (followup.evidence.CandidateVetting; NULL: never vetted), the
    # follow-candidate run started for it (NULL: none yet) and who is starting it now, until
    # when (migration 0010; see followup.ledger.claims).
    vetting: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    follow_run_id: Mapped[str | None] = mapped_column(String(36))
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claim_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(
        UtcDateTime, default=utcnow, onupdate=utcnow
    )


class PlanVersionRow(Base):
    """One version of an event's plan: its fields and what changed from the version before."""

    __tablename__ = "plan_versions"
    __table_args__ = (UniqueConstraint("event_id", "version", name="uq_plan_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    alert_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    alert_type: Mapped[str] = mapped_column(String(20), default="")
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    diff: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    probability_gained: Mapped[float] = mapped_column(Float, default=0.0)
    covered_probability: Mapped[float] = mapped_column(Float, default=0.0)
    observable_probability: Mapped[float | None] = mapped_column(Float, nullable=True)
    hours: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class RequestRow(Base):
    """One LCO request group for one target, filter set and epoch.

    ``local_status`` follows the client's side of the exchange (:class:`RequestStatus`); ``state``
    is the portal's (:class:`LcoState`). A row left ``claimed`` after a crash means the POST may or
    may not have reached the portal: look the group name up before sending again.
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
    local_status: Mapped[RequestStatus] = mapped_column(
        StatusText(RequestStatus, 20), default=RequestStatus.CLAIMED, index=True
    )
    state: Mapped[LcoState] = mapped_column(
        StatusText(LcoState, 30), default=LcoState.PENDING, index=True
    )
    group_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    request_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    window_start: Mapped[datetime | None] = mapped_column(UtcDateTime)
    window_end: Mapped[datetime | None] = mapped_column(UtcDateTime)
    portal_url: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[str | None] = mapped_column(Text)
    # Who may send it now, and until when (migration 0005; see followup.ledger.claims).
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claim_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
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
    # The frame's 5-sigma depth (a followup.coverage.FrameDepth as JSON), NULL until measured
    # (migration 0007).
    depth: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
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
    status: Mapped[ReportStatus] = mapped_column(StatusText(ReportStatus, 20))
    remote_id: Mapped[str | None] = mapped_column(String(100))
    url: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Who is sending it now, and until when (migration 0005; see followup.ledger.claims).
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claim_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
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


class PointingRow(Base):
    """A field shared on the Treasure Map: one per event, target and band (migration 0008).

    ``status`` is the Treasure Map's (planned, completed, cancelled); ``remote_id`` is its
    pointing id, None until it is stored there; ``error`` says why it refused one.
    """

    __tablename__ = "pointings"
    __table_args__ = (UniqueConstraint("event_id", "target_name", "band", name="uq_pointing_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), index=True)
    target_name: Mapped[str] = mapped_column(String(30))
    band: Mapped[str] = mapped_column(String(10))
    camera: Mapped[str] = mapped_column(String(30))
    ra: Mapped[float] = mapped_column(Float)
    dec: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20))
    remote_id: Mapped[int | None] = mapped_column(BigInteger)
    planned_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    observed_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    depth: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
