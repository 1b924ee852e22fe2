"""The concurrency suite prints what it tried and what it saw at the end of the run."""

from __future__ import annotations

import pytest

from tests.summary import add

FIGURES: list[str] = []


@pytest.fixture
def figures() -> list[str]:
    """Lines for the closing summary (one per contest: contenders, database, sends seen)."""
    return FIGURES


def pytest_sessionfinish(session: pytest.Session) -> None:
    if FIGURES:
        add("concurrency: what was tried", *FIGURES)
