"""The fuzz suite prints what it tried: per target, messages, worst time and worst memory."""

from __future__ import annotations

import pytest

from tests.fuzz.support import TALLIES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLIES:
        return
    terminalreporter.section("fuzz: what was tried (FUZZ_EXAMPLES raises the counts)")
    terminalreporter.write_line(
        f"{'target':34s} {'messages':>8s} {'worst ms':>9s} {'worst MB':>9s}  outcomes"
    )
    for tally in TALLIES.values():
        terminalreporter.write_line(tally.line())
