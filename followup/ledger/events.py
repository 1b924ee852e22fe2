"""The events aggregate: astrophysical events (retractions included) and their planned targets."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from followup.ledger.database import Database
from followup.ledger.schema import EventRow, TargetRow
from followup.models import Target, utcnow

__all__ = ["EventStore"]


class EventStore:
    """Events and their targets (``ledger.events``).

    Events are created by the listener's batched writes (:mod:`followup.ledger.batch`); a
    retraction for an event never seen creates it here.

    Args:
        db: The ledger's database.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, event_id: str) -> EventRow | None:
        """Return an event, if known."""
        with self._db.session() as s:
            return s.get(EventRow, event_id)

    def mark_retracted(self, event_id: str) -> EventRow:
        """Mark an event retracted (creating the row if a retraction arrives first)."""
        with self._db.session() as s:
            row = s.get(EventRow, event_id)
            if row is None:
                row = EventRow(event_id=event_id, source="unknown", kind="other")
                s.add(row)
            if not row.retracted:
                row.retracted = True
                row.retracted_at = utcnow()
        return row

    def save_targets(self, event_id: str, targets: Sequence[Target]) -> list[TargetRow]:
        """Store targets of an event; a target already stored under its name is kept as it was."""
        rows: list[TargetRow] = []
        with self._db.session() as s:
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
        with self._db.session() as s:
            return s.scalar(
                select(TargetRow).where(TargetRow.event_id == event_id, TargetRow.name == name)
            )

    def targets(self, event_id: str) -> list[TargetRow]:
        """The targets of an event in rank order."""
        with self._db.session() as s:
            return list(
                s.scalars(
                    select(TargetRow).where(TargetRow.event_id == event_id).order_by(TargetRow.rank)
                )
            )
