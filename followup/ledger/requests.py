"""The requests aggregate: LCO request groups, claimed before anything is sent.

The unique key (event, target, filter set, epoch) and the unique group name make a second row
impossible whatever the caller does, and the row's claim (:mod:`followup.ledger.claims`) makes
one caller at a time the one who may send it; :mod:`followup.observing` builds the exactly-once
exchange with the portal on :meth:`RequestStore.claim` and :meth:`RequestStore.acquire`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from followup.exceptions import LedgerError
from followup.ledger.claims import DEFAULT_LEASE, RELEASED, compare_and_set
from followup.ledger.database import Database, set_columns
from followup.ledger.events import EventStore
from followup.ledger.schema import RequestRow
from followup.models import LcoState, ObservationRequest, RequestStatus, utcnow

__all__ = ["RequestStore", "attempt_of", "base_filters", "request_filters_key"]


class RequestStore:
    """Telescope requests (``ledger.requests``).

    Args:
        db: The ledger's database.
        events: The events store (a request needs its target stored).
    """

    def __init__(self, db: Database, events: EventStore) -> None:
        self._db = db
        self._events = events

    def claim(
        self,
        request: ObservationRequest,
        *,
        owner: str | None = None,
        lease: timedelta = DEFAULT_LEASE,
    ) -> tuple[RequestRow, bool]:
        """Write the request row before anything is sent, under its unique key.

        Args:
            request: The request.
            owner: When given, a new row is written already held by ``owner`` for ``lease``
                (see :meth:`acquire`), so that nobody can take it between the insert and the
                claim.
            lease: How long that first claim holds.

        Returns:
            The row and True when this call wrote it; the existing row and False when the same
            (event, target, filters, epoch) or the same group name was claimed before. A caller
            that gets False must :meth:`acquire` it before sending, and must not POST blindly:
            if the row is still ``claimed`` it looks the group name up at the portal first.

        Raises:
            LedgerError: The target is not stored for this event.
        """
        target = self._events.get_target(request.event_id, request.target_name)
        if target is None:
            raise LedgerError(f"target {request.target_name!r} of {request.event_id} is not stored")
        filters_key = request_filters_key(request)
        existing = self._find(request.event_id, target.id, filters_key, request.epoch)
        if existing is None:
            existing = self.find(request.group_name)
        if existing is not None:
            return existing, False
        row = RequestRow(
            event_id=request.event_id,
            target_id=target.id,
            epoch=request.epoch,
            filters_key=filters_key,
            group_name=request.group_name,
            observation_type=request.observation_type.value,
            state=request.state,
            window_start=request.window_start,
            window_end=request.window_end,
            claimed_by=owner,
            claim_expires_at=utcnow() + lease if owner is not None else None,
        )
        try:
            with self._db.session() as s:
                s.add(row)
        except IntegrityError:
            existing = self._find(request.event_id, target.id, filters_key, request.epoch)
            existing = existing or self.find(request.group_name)
            if existing is None:
                raise
            return existing, False
        return row, True

    def _find(
        self, event_id: str, target_id: int, filters_key: str, epoch: int
    ) -> RequestRow | None:
        with self._db.session() as s:
            return s.scalar(
                select(RequestRow).where(
                    RequestRow.event_id == event_id,
                    RequestRow.target_id == target_id,
                    RequestRow.filters_key == filters_key,
                    RequestRow.epoch == epoch,
                )
            )

    def find(self, group_name: str) -> RequestRow | None:
        """Return the request row with this group name, if any."""
        with self._db.session() as s:
            return s.scalar(select(RequestRow).where(RequestRow.group_name == group_name))

    def acquire(
        self,
        group_name: str,
        owner: str,
        *,
        lease: timedelta = DEFAULT_LEASE,
        take_from: str | None = None,
    ) -> RequestRow | None:
        """Take the claim on a ``claimed`` request that nobody else holds (compare-and-set).

        Args:
            group_name: The request.
            owner: Who takes it.
            lease: How long the claim holds.
            take_from: A holder known dead (see :func:`~followup.ledger.claims.holder_is_dead`)
                whose claim may be taken over before its lease runs out.

        Returns:
            The row, held by ``owner`` until the lease runs out; None when the request is no
            longer ``claimed`` or someone else holds a live claim on it.
        """
        taken = compare_and_set(
            self._db,
            RequestRow,
            RequestRow.group_name == group_name,
            owner,
            states=(RequestRow.local_status, [RequestStatus.CLAIMED]),
            lease=lease,
            take_from=take_from,
        )
        return self.find(group_name) if taken else None

    def release(self, group_name: str, owner: str) -> None:
        """Give up ``owner``'s claim on a request (nothing happens when it holds none)."""
        compare_and_set(
            self._db,
            RequestRow,
            (RequestRow.group_name == group_name) & (RequestRow.claimed_by == owner),
            owner,
            states=(RequestRow.local_status, list(RequestStatus)),
            lease=None,
        )

    def finish(self, group_name: str, **fields: Any) -> RequestRow:
        """Record an outcome and give up the claim in one update (see :meth:`update`)."""
        return self.update(group_name, **fields, **RELEASED)

    def update(self, group_name: str, **fields: Any) -> RequestRow:
        """Update a request row (remote ids, state, local status...).

        Raises:
            LedgerError: No such request, an unknown column, or a status not of its enum.
        """
        with self._db.session() as s:
            row = s.scalar(select(RequestRow).where(RequestRow.group_name == group_name))
            if row is None:
                raise LedgerError(f"no request named {group_name!r}")
            set_columns(row, fields)
        return row

    def for_event(self, event_id: str) -> list[RequestRow]:
        """Every request row of an event."""
        with self._db.session() as s:
            return list(
                s.scalars(
                    select(RequestRow)
                    .where(RequestRow.event_id == event_id)
                    .order_by(RequestRow.id)
                )
            )

    def pending(self, event_id: str | None = None) -> list[RequestRow]:
        """Submitted requests whose last known state is PENDING (optionally of one event)."""
        query = select(RequestRow).where(
            RequestRow.local_status == RequestStatus.SUBMITTED,
            RequestRow.state == LcoState.PENDING,
        )
        if event_id is not None:
            query = query.where(RequestRow.event_id == event_id)
        with self._db.session() as s:
            return list(s.scalars(query.order_by(RequestRow.id)))


# --- Requests of an epoch again (followup.observing.plan_rerequests) ---------------------------
# A request again for an epoch whose window closed unobserved is a new row of the same event,
# target, filters and epoch: its attempt number goes into the filters key (``gp,rp;a1``), so the
# unique key still holds one row per attempt and first requests keep the key they always had.

_ATTEMPT = ";a"


def request_filters_key(request: ObservationRequest) -> str:
    """The ``filters_key`` column of a request: its filters, and its attempt when not the first."""
    key = ",".join(request.filters)
    return f"{key}{_ATTEMPT}{request.attempt}" if request.attempt else key


def attempt_of(row: RequestRow) -> int:
    """The attempt number of a stored request (0 for the epoch's first request)."""
    _, _, attempt = row.filters_key.partition(_ATTEMPT)
    return int(attempt) if attempt else 0


def base_filters(row: RequestRow) -> list[str]:
    """The filters of a stored request, without its attempt number."""
    key = row.filters_key.partition(_ATTEMPT)[0]
    return key.split(",") if key else []
