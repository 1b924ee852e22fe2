"""The concurrency suite prints what it tried and what it saw at the end of the run."""

from __future__ import annotations

import pytest

FIGURES: list[str] = []


@pytest.fixture
def figures() -> list[str]:
    """Lines for the closing summary (one per contest: contenders, database, sends seen)."""
    return FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("concurrency: what was tried")
        for line in FIGURES:
            terminalreporter.write_line(line)
