"""The reports aggregate: HERMES, TNS and GCN reports, claimed under their exactly-once key.

The unique key makes a second row for the same content impossible; the row's claim
(:mod:`followup.ledger.claims`) makes one caller at a time the one who sends it
(:meth:`ReportStore.transition` to ``sending``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from followup.exceptions import LedgerError
from followup.ledger.claims import RELEASED, compare_and_set
from followup.ledger.database import Database, set_columns
from followup.ledger.schema import ReportRow
from followup.models import Report, ReportStatus

__all__ = ["ReportStore"]


class ReportStore:
    """Reports (``ledger.reports``); :mod:`followup.reporting.delivery` sends through it.

    Args:
        db: The ledger's database.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def claim(self, report: Report) -> tuple[ReportRow, bool]:
        """Write a report row under its exactly-once key before sending anything.

        Returns:
            The row and True when new; the existing row and False when the same content was already
            claimed for this destination, event and target (a rerun: send nothing).
        """
        target = report.target_name or ""
        with self._db.session() as s:
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
            with self._db.session() as s:
                s.add(row)
        except IntegrityError:
            return self.claim(report)
        return row, True

    def get(self, report_id: int) -> ReportRow | None:
        """The report row with this id, if any."""
        with self._db.session() as s:
            return s.get(ReportRow, report_id)

    def transition(
        self,
        report_id: int,
        owner: str,
        *,
        from_statuses: Iterable[ReportStatus],
        to_status: ReportStatus,
        lease: timedelta | None,
        take_from: str | None = None,
    ) -> ReportRow | None:
        """Move a report to another status with one compare-and-set.

        The change is made only if the report is in one of ``from_statuses`` and nobody else
        holds a live claim on it.

        Args:
            report_id: The report.
            owner: Who makes the change.
            from_statuses: The statuses it may have now.
            to_status: Its new status.
            lease: ``owner`` holds the claim for this long (``sending``); None leaves the row
                unclaimed.
            take_from: A holder known dead whose claim may be taken over.

        Returns:
            The row after the change, or None when it was not in one of ``from_statuses`` or
            someone else holds it.
        """
        changed = compare_and_set(
            self._db,
            ReportRow,
            ReportRow.id == report_id,
            owner,
            states=(ReportRow.status, list(from_statuses)),
            lease=lease,
            values={"status": to_status},
            take_from=take_from,
        )
        return self.get(report_id) if changed else None

    def finish(self, report_id: int, **fields: Any) -> ReportRow:
        """Record an outcome and give up the claim in one update (see :meth:`update`)."""
        return self.update(report_id, **fields, **RELEASED)

    def update(self, report_id: int, **fields: Any) -> ReportRow:
        """Update a report row (status, remote id, url, payload).

        Raises:
            LedgerError: No such report, an unknown column, or a status not of its enum.
        """
        with self._db.session() as s:
            row = s.get(ReportRow, report_id)
            if row is None:
                raise LedgerError(f"no report with id {report_id}")
            set_columns(row, fields)
        return row

    def for_event(self, event_id: str) -> list[ReportRow]:
        """Every report row of an event."""
        with self._db.session() as s:
            return list(
                s.scalars(
                    select(ReportRow).where(ReportRow.event_id == event_id).order_by(ReportRow.id)
                )
            )
