"""The ledger: followup's own record of what arrived and what was promised to others.

Prefect records runs; the ledger records the science and the commitments: every Kafka message as
received (raw bytes kept), its parse result or quarantine reason, events and their alert sequence,
targets, telescope requests with their remote ids and states, frames, measurements, reports and
human approvals. Unique keys make a second submission of the same thing impossible, whatever the
caller does: one message per hop ``_id``, one alert per (event, type, issue time), one request per
(event, target, filter set, epoch), one report per (destination, event, target, content hash).

SQLite is the embedded default (WAL mode, a busy timeout); the same code runs on PostgreSQL. The
schema is managed by alembic (``followup/migrations``); :meth:`Ledger.migrate` brings a database
to the current revision. Statuses are the ``StrEnum``s of :mod:`followup.models`, stored as their
string values.

:class:`Ledger` is a small facade: the database plus one store per aggregate, each in its module.

=====================  ======================================================================
``ledger.alerts``      :mod:`~followup.ledger.alerts`: messages, quarantine, alerts; the
                       listener's batched writes (:mod:`~followup.ledger.batch`)
``ledger.events``      :mod:`~followup.ledger.events`: events, retractions, targets
``ledger.requests``    :mod:`~followup.ledger.requests`: LCO requests, claimed before sending
``ledger.frames``      :mod:`~followup.ledger.frames`: archive frames and measurements
``ledger.reports``     :mod:`~followup.ledger.reports`: reports, claimed before sending
``ledger.approvals``   :mod:`~followup.ledger.approvals`: human decisions
=====================  ======================================================================

Example:
    >>> ledger = Ledger("sqlite:///:memory:")
    >>> ledger.migrate()
    >>> [stored] = ledger.alerts.record_messages(
    ...     [IncomingMessage(topic="igwn.gwalert", raw=b"{}", message_uuid=None)]
    ... )
    >>> stored.created, stored.status
    (True, <MessageStatus.RECEIVED: 'received'>)
"""

from followup.ledger.alerts import AlertStore, StoredAlert
from followup.ledger.approvals import ApprovalStore
from followup.ledger.batch import (
    IncomingMessage,
    MessageOutcome,
    RecordedOutcome,
    StoredMessage,
)
from followup.ledger.events import EventStore
from followup.ledger.facade import Ledger
from followup.ledger.frames import FrameStore
from followup.ledger.pointings import PointingStore
from followup.ledger.reports import ReportStore
from followup.ledger.requests import RequestStore
from followup.ledger.schema import (
    AlertRow,
    ApprovalRow,
    Base,
    EventRow,
    FrameRow,
    MeasurementRow,
    MessageRow,
    PointingRow,
    QuarantineRow,
    ReportRow,
    RequestRow,
    TargetRow,
)

__all__ = [
    "AlertRow",
    "AlertStore",
    "ApprovalRow",
    "ApprovalStore",
    "Base",
    "EventRow",
    "EventStore",
    "FrameRow",
    "FrameStore",
    "IncomingMessage",
    "Ledger",
    "MeasurementRow",
    "MessageOutcome",
    "MessageRow",
    "PointingRow",
    "PointingStore",
    "QuarantineRow",
    "RecordedOutcome",
    "ReportRow",
    "ReportStore",
    "RequestRow",
    "RequestStore",
    "StoredAlert",
    "StoredMessage",
    "TargetRow",
]
