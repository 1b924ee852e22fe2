"""Time as the stand-ins read and write it: aware UTC, ISO 8601 with ``Z`` on the wire.

The sandbox keeps its own datetime handling instead of borrowing the clients': a client that
wrote times wrongly must be refused, not understood by a stand-in sharing its mistake.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator

__all__ = ["UtcDatetime", "drf_time", "parse_datetime", "utcnow"]


def utcnow() -> datetime:
    """The current wall-clock time, aware UTC."""
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
"""A datetime field that is always aware UTC (naive input is read as UTC, as LCO's APIs do)."""


def parse_datetime(value: Any) -> datetime:
    """Read an ISO 8601 time the way Django REST framework does: naive times are UTC.

    Raises:
        ValueError: Not a readable time.
    """
    if isinstance(value, datetime):
        return _as_utc(value)
    if not isinstance(value, str):
        raise ValueError(f"not a time: {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return _as_utc(datetime.fromisoformat(text))


def drf_time(value: datetime) -> str:
    """Django REST framework's datetime format: ISO 8601 in UTC with ``Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
