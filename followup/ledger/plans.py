"""The plans aggregate: numbered versions of each event's plan, with their differences."""

from __future__ import annotations

from sqlalchemy import func, select

from followup.ledger.database import Database
from followup.ledger.schema import PlanVersionRow
from followup.planversions import PlanDiff, PlanField

__all__ = ["PlanStore"]


class PlanStore:
    """Plan versions (``ledger.plans``): one per alert of an event, numbered from 1.

    Args:
        db: The ledger's database.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def latest(self, event_id: str) -> PlanVersionRow | None:
        """The event's latest version, if any."""
        with self._db.session() as s:
            return s.scalar(
                select(PlanVersionRow)
                .where(PlanVersionRow.event_id == event_id)
                .order_by(PlanVersionRow.version.desc())
                .limit(1)
            )

    def latest_fields(self, event_id: str) -> list[PlanField]:
        """The fields of the event's latest version (none before the first)."""
        row = self.latest(event_id)
        return [PlanField(**f) for f in row.fields] if row is not None else []

    def for_alert(self, event_id: str, alert_id: int) -> PlanVersionRow | None:
        """The version an alert made, if it made one (a rerun reuses it)."""
        with self._db.session() as s:
            return s.scalar(
                select(PlanVersionRow)
                .where(PlanVersionRow.event_id == event_id, PlanVersionRow.alert_id == alert_id)
                .order_by(PlanVersionRow.version)
                .limit(1)
            )

    def versions(self, event_id: str) -> list[PlanVersionRow]:
        """All versions of an event, oldest first."""
        with self._db.session() as s:
            return list(
                s.scalars(
                    select(PlanVersionRow)
                    .where(PlanVersionRow.event_id == event_id)
                    .order_by(PlanVersionRow.version)
                )
            )

    def add(
        self,
        event_id: str,
        diff: PlanDiff,
        *,
        alert_id: int | None = None,
        alert_type: str = "",
        hours: float = 0.0,
        observable_probability: float | None = None,
    ) -> PlanVersionRow:
        """Store the next version of the event's plan (its fields are ``diff.fields``).

        Raises:
            IntegrityError: Another caller stored the same version number first (the caller
                reads :meth:`for_alert` again, or diffs against the new latest version).
        """
        with self._db.session() as s:
            last = s.scalar(
                select(func.max(PlanVersionRow.version)).where(PlanVersionRow.event_id == event_id)
            )
            row = PlanVersionRow(
                event_id=event_id,
                version=(last or 0) + 1,
                alert_id=alert_id,
                alert_type=alert_type,
                fields=[f.model_dump() for f in diff.fields],
                diff=diff.model_dump(),
                probability_gained=diff.probability_gained,
                covered_probability=diff.probability_gained + diff.probability_kept,
                observable_probability=observable_probability,
                hours=hours,
            )
            s.add(row)
        return row
