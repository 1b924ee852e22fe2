"""Sections of the closing summary that survive pytest-xdist.

A test module adds lines with :func:`add`; ``tests/conftest.py`` prints them at the end of the run.
Under ``make test``'s xdist workers each worker sends its lines to the controller, which prints
them: a worker's own terminal summary is never shown.
"""

from __future__ import annotations

SECTIONS: dict[str, list[str]] = {}
"""Lines by section title, in the order they were added."""


def add(title: str, *lines: str) -> None:
    """Add ``lines`` to the section ``title`` of the closing summary."""
    SECTIONS.setdefault(title, []).extend(lines)


def merge(sections: dict[str, list[str]]) -> None:
    """Add the sections a worker sent."""
    for title, lines in sections.items():
        add(title, *lines)
