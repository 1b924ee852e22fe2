"""The plain-text pieces every Circular this package drafts is made of.

A follow-up Circular (:func:`~followup.reporting.gcn.draft_circular`), a no-counterpart Circular
and a candidates Circular (:mod:`followup.reporting.findings`) share their opening ("... report on
behalf of the ..."), the sentence saying when and with what the fields were observed, fixed-width
tables wrapped at 78 columns, the calibration sentence and the closing remarks; they are written
here once, in GCN's style (``docs.circulars.styleguide.mdx``: plain ASCII, times in UT, AB
magnitudes).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from datetime import datetime

from followup.models import Measurement

__all__ = [
    "calibration_sentence",
    "cited",
    "finish",
    "listed",
    "mag_text",
    "observed_when",
    "opening",
    "relative_time",
    "table",
    "team_phrase",
    "wrap",
]

WIDTH = 78
"""Columns of a wrapped line."""


def wrap(text: str) -> list[str]:
    """A paragraph as lines of at most :data:`WIDTH` columns (words and hyphens kept whole)."""
    return textwrap.wrap(text, width=WIDTH, break_long_words=False, break_on_hyphens=False)


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> list[str]:
    """A fixed-width table: the header, a rule of dashes, then the rows, columns two spaces apart."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def team_phrase(team: str) -> str:
    """``the <team>`` once, whether or not the setting already starts with "the"."""
    team = " ".join(team.split())
    return team if team.lower().startswith("the ") else f"the {team}"


def relative_time(delta_s: float) -> str:
    """``1.50 h after the event`` or ``0.13 h before the event`` (never a negative "after")."""
    hours = abs(delta_s) / 3600.0
    return f"{hours:.2f} h {'after' if delta_s >= 0 else 'before'} the event"


def opening(observers: Sequence[str], team: str) -> list[str]:
    """The first paragraph, "<authors> report on behalf of the <team>:", and a blank line.

    Raises:
        ValueError: No authors, a blank author, or no team.
    """
    if not observers or not all(o.strip() for o in observers):
        raise ValueError("observers must list the authors")
    if not team.strip():
        raise ValueError("team must name the team the authors report for")
    return [*wrap(f"{', '.join(observers)} report on behalf of {team_phrase(team)}:"), ""]


def listed(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(items)
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


def observed_when(first: datetime, last: datetime, event_time: datetime | None) -> str:
    """``at <t> UT`` or ``between <t1> and <t2> UT``, with the start relative to T0 when known."""
    when = (
        f"at {first:%Y-%m-%d %H:%M:%S} UT"
        if first == last
        else f"between {first:%Y-%m-%d %H:%M:%S} and {last:%Y-%m-%d %H:%M:%S} UT"
    )
    if event_time is not None:
        when += f" (starting {relative_time((first - event_time).total_seconds())})"
    return when


def cited(references: Sequence[str]) -> str:
    """`` (ref1; ref2)`` after an event's name, or nothing."""
    return f" ({'; '.join(references)})" if references else ""


def mag_text(m: Measurement) -> str:
    """A table cell: ``19.24 +/- 0.07`` for a detection, ``> 21.30`` (5-sigma) otherwise."""
    if m.is_detection:
        err = f" +/- {m.mag_err:.2f}" if m.mag_err is not None else ""
        return f"{m.mag:.2f}{err}"
    return f"> {m.limit_mag_5sigma:.2f}"


def calibration_sentence(catalog: str | None, qualifier: str = "") -> str:
    """The calibration sentence: AB magnitudes, the catalog, no Galactic extinction correction.

    Args:
        catalog: The reference catalog of the zero points, when known.
        qualifier: What follows "not corrected for Galactic extinction", without the closing
            full stop (a parenthesis giving the reddening, or "; limits are 5-sigma").
    """
    sentence = "Magnitudes are in the AB system"
    sentence += f", calibrated against {catalog}," if catalog else ""
    return sentence + f" and are not corrected for Galactic extinction{qualifier}."


def finish(lines: list[str], closing: str | None, acknowledgement: str | None) -> str:
    """The body: the lines, the closing and acknowledgement paragraphs, one final newline."""
    for sentence in (closing, acknowledgement):
        if sentence:
            lines += ["", *wrap(sentence)]
    return "\n".join(lines).rstrip() + "\n"
