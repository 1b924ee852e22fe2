"""The simulated time the LCO stand-ins run on: a manual clock for tests, a scaled one for drills."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sandbox.times import utcnow

__all__ = ["Clock", "ManualClock", "ScaledClock"]


class Clock(Protocol):
    """The simulated time the sandbox runs on."""

    def now(self) -> datetime:
        """The current simulated time (aware UTC)."""
        ...

    def advance(self, seconds: float) -> datetime:
        """Jump forward by ``seconds`` and return the new time."""
        ...


class ManualClock:
    """A clock that only moves when told to (tests).

    Args:
        start: The initial time (aware UTC); now by default.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or utcnow()).astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The current simulated time."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        """Move forward by ``seconds`` (must be >= 0)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


class ScaledClock:
    """Real time, optionally sped up, plus any manual jumps (drills and demos).

    Args:
        scale: Simulated seconds per real second (60 makes a 10-minute completion delay last
            10 real seconds).
        start: Simulated time at creation; now by default.
    """

    def __init__(self, scale: float = 1.0, start: datetime | None = None) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = scale
        self._origin = (start or utcnow()).astimezone(UTC)
        self._real_origin = time.monotonic()
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The current simulated time."""
        with self._lock:
            elapsed = (time.monotonic() - self._real_origin) * self.scale + self._offset
        return self._origin + timedelta(seconds=elapsed)

    def advance(self, seconds: float) -> datetime:
        """Jump forward by ``seconds`` (must be >= 0)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        with self._lock:
            self._offset += seconds
        return self.now()
