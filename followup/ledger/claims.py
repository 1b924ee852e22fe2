"""Exclusive claims on ledger rows: who may send a request or a report now, and until when.

A row that is about to be sent (an LCO request group, a report) carries ``claimed_by`` (an owner:
host, process, thread and a random part) and ``claim_expires_at`` (the lease). Taking the claim is
one compare-and-set ``UPDATE ... WHERE`` the row is in a sendable state and nobody else holds a
live lease: the database serialises two of them (SQLite takes its write lock, PostgreSQL locks
the row and re-checks the condition), so exactly one caller sees one updated row. The loser waits
until the holder lets go or its lease runs out, then reads the row and reports what the holder
did; it never sends. A lease outlives every call the holder makes, so it only runs out when the
holder died, and then the next caller takes over (looking the effect up before sending). A holder
that was a process of this host and no longer runs (killed mid-POST) is known dead at once: its
claim is taken over without waiting for the lease, again with one compare-and-set on its owner.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import or_, update
from sqlalchemy.orm import InstrumentedAttribute

from followup.exceptions import ClaimHeld
from followup.ledger.database import Database
from followup.models import utcnow

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_WAIT_S",
    "RELEASED",
    "Claimable",
    "compare_and_set",
    "held_by_other",
    "holder_is_dead",
    "new_owner",
    "wait_for_release",
]

DEFAULT_LEASE = timedelta(minutes=10)
"""How long a claim holds without its owner: longer than every call the owner makes while it holds
(an HTTP timeout of 30 s, look-ups after 5 and 30 s), so that it runs out only when the owner died."""

DEFAULT_WAIT_S = 600.0
"""How long a loser waits for the holder before it gives up with :class:`ClaimHeld`."""

RELEASED: dict[str, Any] = {"claimed_by": None, "claim_expires_at": None}
"""Column values of a row nobody holds (merge them into the update that records the outcome)."""


class Claimable(Protocol):
    """A mapped row with a claim (``RequestRow``, ``ReportRow``)."""

    claimed_by: str | None
    claim_expires_at: datetime | None


Row = TypeVar("Row", bound=Claimable)


def new_owner() -> str:
    """A claim owner unique to this call: host, process, thread and a random part."""
    host = socket.gethostname()[:40]
    return f"{host}:{os.getpid()}:{threading.get_ident() % 100_000}:{uuid.uuid4().hex[:12]}"


def holder_is_dead(claimed_by: str | None) -> bool:
    """True when ``claimed_by`` was a process of this host that no longer runs.

    Only a process of this host can be checked (by its pid; a zombie counts as dead); any other
    holder is alive until its lease runs out. A pid reused by a new process reads as alive,
    which errs on the safe side (the claim is waited for).
    """
    parts = (claimed_by or "").split(":")
    if len(parts) != 4 or parts[0] != socket.gethostname()[:40] or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def held_by_other(row: Claimable, owner: str, *, now: datetime | None = None) -> bool:
    """True when someone other than ``owner`` holds a live claim on ``row`` (and is not dead)."""
    if row.claimed_by is None or row.claimed_by == owner:
        return False
    expires = row.claim_expires_at
    live = expires is not None and expires > (now or utcnow())
    return live and not holder_is_dead(row.claimed_by)


def compare_and_set(
    db: Database,
    model: type[Any],
    key: Any,
    owner: str,
    *,
    states: tuple[InstrumentedAttribute[Any], Iterable[Any]],
    lease: timedelta | None,
    values: dict[str, Any] | None = None,
    take_from: str | None = None,
) -> bool:
    """Take (or give up) the claim on one row in one atomic statement.

    The row matches when ``key`` holds, its ``states[0]`` column is one of ``states[1]``, and no
    one else holds a live claim on it (or the one holding it is ``take_from``, a holder known
    dead). The update sets ``values``, and the claim to ``owner`` for ``lease`` (or clears it
    when ``lease`` is None).

    Args:
        db: The ledger's database.
        model: The mapped class (``RequestRow``, ``ReportRow``).
        key: A SQL condition picking the row (``RequestRow.group_name == name``).
        owner: Who takes the claim.
        states: The status column and the values it may have for the claim to be taken.
        lease: How long the claim holds; None to leave the row unclaimed.
        values: Other columns to set in the same statement (a new status...).
        take_from: A dead holder whose live claim may be taken over.

    Returns:
        True when this call changed the row (it holds the claim, or made the change).
    """
    now = utcnow()
    column, allowed = states
    claim = (
        {"claimed_by": owner, "claim_expires_at": now + lease} if lease is not None else RELEASED
    )
    statement = (
        update(model)
        .where(
            key,
            column.in_(list(allowed)),
            or_(
                model.claimed_by.is_(None),
                model.claimed_by == owner,
                model.claimed_by == (take_from or owner),
                model.claim_expires_at.is_(None),
                model.claim_expires_at <= now,
            ),
        )
        .values(**claim, **(values or {}), updated_at=now)
        .execution_options(synchronize_session=False)
    )
    with db.session() as session:
        return session.execute(statement).rowcount == 1


def wait_for_release(
    read: Callable[[], Row | None],
    owner: str,
    *,
    what: str,
    wait_s: float = DEFAULT_WAIT_S,
    poll_s: float = 0.1,
    sleep: Callable[[float], None] = time.sleep,
) -> Row:
    """Wait until nobody else holds a live claim on a row, and return the row as it is then.

    Args:
        read: Reads the row afresh.
        owner: The waiting caller (its own claim does not count).
        what: The row, for the error message (``request group S250101ab-F001``).
        wait_s: Longest wait in seconds.
        poll_s: Seconds between reads.
        sleep: Injectable sleep, for tests.

    Returns:
        The row, released by its holder (or with an expired lease, or a holder known dead).

    Raises:
        ClaimHeld: Still held after ``wait_s`` seconds (retry later).
        LookupError: The row vanished.
    """
    deadline = time.monotonic() + wait_s
    while True:
        row = read()
        if row is None:
            raise LookupError(f"{what} is no longer in the ledger")
        if not held_by_other(row, owner):
            return row
        if time.monotonic() >= deadline:
            raise ClaimHeld(
                f"{what} is claimed by {row.claimed_by} until {row.claim_expires_at}: "
                f"waited {wait_s:g} s; try again later",
                operation="claim",
            )
        sleep(poll_s)
