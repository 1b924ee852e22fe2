"""The :class:`Ledger` facade: one database, one attribute per aggregate."""

from __future__ import annotations

from followup.ledger.alerts import AlertStore
from followup.ledger.approvals import ApprovalStore
from followup.ledger.database import Database
from followup.ledger.events import EventStore
from followup.ledger.frames import FrameStore
from followup.ledger.plans import PlanStore
from followup.ledger.pointings import PointingStore
from followup.ledger.reports import ReportStore
from followup.ledger.requests import RequestStore

__all__ = ["Ledger"]


class Ledger(Database):
    """The ledger: its database and one store per aggregate.

    The database part is ``url``, ``engine``, ``session()``, ``migrate()`` and ``dispose()``.

    Args:
        url: SQLAlchemy URL, ``sqlite:///path.db`` (default embedded) or
            ``postgresql+psycopg2://user@host/db``.
        echo: Log SQL statements.

    Attributes:
        alerts: Messages, quarantine, alerts and the listener's batched writes.
        events: Events (retractions) and their targets.
        requests: LCO requests.
        frames: Archive frames and measurements.
        reports: HERMES, TNS and GCN reports.
        approvals: Human decisions.
        plans: Versions of each event's plan and their differences.
        pointings: Fields shared on the Treasure Map.

    Every call opens and closes its own transaction, so a Ledger can be shared by threads.

    Example:
        >>> ledger = Ledger("sqlite:///:memory:")
        >>> ledger.migrate()
        >>> ledger.events.get("S250101ab") is None
        True
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        super().__init__(url, echo=echo)
        self.alerts = AlertStore(self)
        self.events = EventStore(self)
        self.requests = RequestStore(self, self.events)
        self.frames = FrameStore(self)
        self.reports = ReportStore(self)
        self.approvals = ApprovalStore(self)
        self.plans = PlanStore(self)
        self.pointings = PointingStore(self)
