"""The fuzz suite prints what it tried: per target, messages, worst time and worst memory."""

from __future__ import annotations

import pytest

from tests.fuzz.support import TALLIES
from tests.summary import add


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not TALLIES:
        return
    add(
        "fuzz: what was tried (FUZZ_EXAMPLES raises the counts)",
        f"{'target':34s} {'messages':>8s} {'worst ms':>9s} {'worst MB':>9s}  outcomes",
        *(tally.line() for tally in TALLIES.values()),
    )
