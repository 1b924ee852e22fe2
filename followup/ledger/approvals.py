"""The approvals aggregate: human decisions, and timeouts counted as declines."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from followup.ledger.database import Database
from followup.ledger.schema import ApprovalRow
from followup.models import Approval

__all__ = ["ApprovalStore"]


class ApprovalStore:
    """Approvals (``ledger.approvals``).

    Args:
        db: The ledger's database.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, approval: Approval, **data: Any) -> ApprovalRow:
        """Record a human decision (or a timeout counted as a decline), with the form's data."""
        row = ApprovalRow(
            subject=approval.subject,
            approved=approval.approved,
            decided_by=approval.decided_by,
            comment=approval.comment,
            decided_at=approval.decided_at,
            data=data,
        )
        with self._db.session() as s:
            s.add(row)
        return row

    def for_subject(self, subject: str) -> list[ApprovalRow]:
        """Every decision recorded on a subject, oldest first."""
        with self._db.session() as s:
            return list(
                s.scalars(
                    select(ApprovalRow)
                    .where(ApprovalRow.subject == subject)
                    .order_by(ApprovalRow.id)
                )
            )
