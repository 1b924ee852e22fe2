"""The pointings aggregate: fields shared on the Treasure Map, one per event, target and band."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from followup.ledger.database import Database, set_columns
from followup.ledger.schema import PointingRow

__all__ = ["PointingStore"]


class PointingStore:
    """Pointings (``ledger.pointings``).

    Args:
        db: The ledger's database.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(
        self,
        event_id: str,
        target_name: str,
        band: str,
        *,
        camera: str,
        ra: float,
        dec: float,
        planned_time: datetime | None,
    ) -> tuple[PointingRow, bool]:
        """The pointing of a field and band, recorded as planned the first time.

        Returns:
            The row and whether this call created it.
        """
        key = (
            PointingRow.event_id == event_id,
            PointingRow.target_name == target_name,
            PointingRow.band == band,
        )
        with self._db.session() as s:
            found = s.scalars(select(PointingRow).where(*key)).first()
            if found is not None:
                return found, False
        row = PointingRow(
            event_id=event_id,
            target_name=target_name,
            band=band,
            camera=camera,
            ra=ra,
            dec=dec,
            status="planned",
            planned_time=planned_time,
        )
        try:
            with self._db.session() as s:
                s.add(row)
        except IntegrityError:  # another run recorded it first
            with self._db.session() as s:
                return s.scalars(select(PointingRow).where(*key)).one(), False
        return row, True

    def update(self, row_id: int, **fields: Any) -> PointingRow:
        """Set columns of one pointing (``status``, ``remote_id``, ``depth``, ``error``...)."""
        with self._db.session() as s:
            row = s.get_one(PointingRow, row_id)
            set_columns(row, fields)
            return row

    def for_event(self, event_id: str) -> list[PointingRow]:
        """The event's pointings, in the order they were recorded."""
        with self._db.session() as s:
            return list(
                s.scalars(
                    select(PointingRow)
                    .where(PointingRow.event_id == event_id)
                    .order_by(PointingRow.id)
                )
            )
