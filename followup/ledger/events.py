"""The events aggregate: astrophysical events (retractions included) and their planned targets."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from followup.evidence import CandidateVetting
from followup.ledger.claims import DEFAULT_LEASE, compare_and_set
from followup.ledger.database import Database
from followup.ledger.schema import EventRow, TargetRow
from followup.models import Target, TargetKind, utcnow

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

    # ------------------------------------------------------------------ candidates

    def record_vetting(self, event_id: str, name: str, vetting: CandidateVetting) -> None:
        """Keep a candidate's vetting (the latest replaces the one before: it saw every frame).

        Raises:
            LookupError: The event has no such target.
        """
        with self._db.session() as s:
            changed = s.execute(
                update(TargetRow)
                .where(TargetRow.event_id == event_id, TargetRow.name == name)
                .values(vetting=vetting.model_dump(mode="json"), updated_at=utcnow())
                .execution_options(synchronize_session=False)
            ).rowcount
        if changed != 1:
            raise LookupError(f"{event_id} has no target {name!r}")

    def to_follow(self, event_id: str) -> list[TargetRow]:
        """Candidates that passed vetting and have no follow-candidate run yet, in rank order."""
        return [
            row
            for row in self.targets(event_id)
            if row.kind == TargetKind.CANDIDATE.value
            and row.follow_run_id is None
            and (row.vetting or {}).get("passed") is True
        ]

    def claim_follow(
        self,
        event_id: str,
        name: str,
        owner: str,
        *,
        lease: timedelta = DEFAULT_LEASE,
        take_from: str | None = None,
    ) -> bool:
        """Take the claim on starting a candidate's follow-candidate run (one compare-and-set).

        Args:
            event_id: The event.
            name: The candidate.
            owner: Who takes it (:func:`~followup.ledger.claims.new_owner`).
            lease: How long the claim holds without its owner.
            take_from: A holder known dead whose claim may be taken over at once.

        Returns:
            True when ``owner`` holds it; False when the run was started already or someone
            else, alive, is starting it.
        """
        return compare_and_set(
            self._db,
            TargetRow,
            (TargetRow.event_id == event_id)
            & (TargetRow.name == name)
            & TargetRow.follow_run_id.is_(None),
            owner,
            states=(TargetRow.kind, [TargetKind.CANDIDATE.value]),
            lease=lease,
            take_from=take_from,
        )

    def set_follow_run(self, event_id: str, name: str, run_id: str, owner: str) -> bool:
        """Record the run started for a candidate and give up ``owner``'s claim in one update.

        Returns:
            False when ``owner`` no longer held the claim (its lease ran out and another took it):
            the run it started is then the same one (the start is idempotent), not recorded twice.
        """
        return self._give_up_follow(event_id, name, owner, {"follow_run_id": run_id})

    def release_follow(self, event_id: str, name: str, owner: str) -> None:
        """Give up ``owner``'s claim on a candidate without a run (its start failed)."""
        self._give_up_follow(event_id, name, owner, None)

    def _give_up_follow(
        self, event_id: str, name: str, owner: str, values: dict[str, Any] | None
    ) -> bool:
        """Clear ``owner``'s claim on a candidate, setting ``values`` in the same statement.

        Returns:
            False when ``owner`` no longer held the claim.
        """
        return compare_and_set(
            self._db,
            TargetRow,
            (TargetRow.event_id == event_id)
            & (TargetRow.name == name)
            & (TargetRow.claimed_by == owner),
            owner,
            states=(TargetRow.kind, [TargetKind.CANDIDATE.value]),
            lease=None,
            values=values,
        )
