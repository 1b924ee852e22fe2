"""Markdown renderings of outgoing HERMES messages, TNS AT reports and GCN Circulars, for approval forms."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from followup.reporting.gcn import Circular, subject_is_valid
from followup.reporting.hermes import HermesMessage, is_public_topic
from followup.reporting.tns import AT_TYPES

__all__ = [
    "render_circular_markdown",
    "render_hermes_markdown",
    "render_markdown",
    "render_tns_markdown",
]

_UNIT_NAMES = {"1": "AB mag", "3": "Vega mag", "6": "erg/cm²/s/Å", "9": "mJy"}


def _cell(value: Any) -> str:
    """A value safe inside a markdown table cell."""
    if value is None or value == "":
        return "–"
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.split())


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return out


def _fence(text: str, info: str = "") -> list[str]:
    """A code fence longer than any backtick run inside ``text``."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + info, text.rstrip("\n"), fence]


def render_hermes_markdown(message: HermesMessage | Mapping[str, Any]) -> str:
    """The HERMES message as markdown: topic (public or test), title, authors, text, targets, photometry."""
    msg = message if isinstance(message, HermesMessage) else HermesMessage.model_validate(message)
    public = is_public_topic(msg.topic)
    audience = (
        f"**public topic `{msg.topic}`: sending needs approval**"
        if public
        else f"test topic `{msg.topic}` (drill: no approval needed)"
    )
    lines = [f"### HERMES message, {audience}", ""]
    lines += [f"**Title:** {_cell(msg.title)}  ", f"**Event:** {_cell(msg.data.event_id)}  "]
    lines += [f"**Submitter:** {_cell(msg.submitter)}  ", f"**Authors:** {_cell(msg.authors)}", ""]
    if msg.message_text.strip():
        lines += ["> " + line if line else ">" for line in msg.message_text.strip().splitlines()]
        lines.append("")
    if msg.data.references:
        lines.append(
            "**References:** " + "; ".join(_cell(r.citation or r.url) for r in msg.data.references)
        )
        lines.append("")
    lines += [f"#### Targets ({len(msg.data.targets)})", ""]
    lines += _table(
        ["Name", "RA (deg)", "Dec (deg)"], [[t.name, t.ra, t.dec] for t in msg.data.targets]
    )
    lines += ["", f"#### Photometry ({len(msg.data.photometry)})", ""]
    rows = [
        [
            p.target_name,
            p.date_obs,
            p.telescope,
            p.instrument,
            p.bandpass,
            (
                f"{p.brightness:.3f}"
                + (f" ± {p.brightness_error:.3f}" if p.brightness_error is not None else "")
            )
            if p.brightness is not None
            else None,
            f"> {p.limiting_brightness:.3f}"
            if p.limiting_brightness is not None and p.brightness is None
            else None,
            p.brightness_unit if p.brightness is not None else p.limiting_brightness_unit,
        ]
        for p in msg.data.photometry
    ]
    lines += _table(
        ["Target", "Date (UT)", "Telescope", "Instrument", "Band", "Brightness", "Limit", "Unit"],
        rows,
    )
    return "\n".join(lines) + "\n"


def _pick(entry: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in entry:
            return entry[name]
    return None


def _photometry_row(point: Mapping[str, Any]) -> list[Any]:
    units = _pick(point, "flux_units", "flux_unitid")
    return [
        point.get("obsdate"),
        point.get("flux"),
        point.get("flux_error"),
        point.get("limiting_flux"),
        f"{units} ({_UNIT_NAMES[str(units)]})" if str(units) in _UNIT_NAMES else units,
        _pick(point, "filter_value", "filterid"),
        _pick(point, "instrument_value", "instrumentid"),
        point.get("exptime"),
    ]


def render_tns_markdown(report: Mapping[str, Any]) -> str:
    """The AT report (either field dialect) as markdown: identity, discovery point, non-detection."""
    entries = report.get("at_report")
    if not isinstance(entries, Mapping) or not entries:
        raise ValueError('expected {"at_report": {"0": {...}}}')
    legacy = any("reporting_groupid" in e for e in entries.values() if isinstance(e, Mapping))
    lines = [
        f"### TNS AT report{'s' if len(entries) > 1 else ''} (public; {'legacy' if legacy else 'new'} field names)",
        "",
    ]
    for key, entry in entries.items():
        if len(entries) > 1:
            lines += [f"#### Report {key}", ""]
        ra, dec = entry.get("ra", {}), entry.get("dec", {})
        err = ra.get("error") if isinstance(ra, Mapping) else None
        at_type = str(entry.get("at_type", ""))
        period = entry.get("proprietary_period") or {}
        rows = [
            ["Internal name", entry.get("internal_name")],
            [
                "RA, Dec (deg)",
                f"{ra.get('value') if isinstance(ra, Mapping) else ra}, "
                f"{dec.get('value') if isinstance(dec, Mapping) else dec}"
                + (f" (± {err} {ra.get('units', '')})" if err else ""),
            ],
            ["Discovery (UT)", entry.get("discovery_datetime")],
            ["AT type", f"{at_type} ({AT_TYPES.get(at_type, 'unknown')})"],
            ["Reporter", entry.get("reporter")],
            [
                "Reporting group id",
                _pick(entry, "reporting_group_id", "reporting_groupid", "groupid"),
            ],
            ["Data source id", _pick(entry, "discovery_data_source_id", "data_source_groupid")],
            ["Host", entry.get("host_name")],
            [
                "Proprietary period",
                f"{period.get('proprietary_period_value', '0')} {period.get('proprietary_period_units', 'days')}",
            ],
            ["Remarks", entry.get("remarks")],
        ]
        lines += _table(["Field", "Value"], rows)
        header = [
            "Date (UT)",
            "Mag",
            "Error",
            "Limit",
            "Units",
            "Filter id",
            "Instrument id",
            "Exp (s)",
        ]
        group = (entry.get("photometry") or {}).get("photometry_group") or {}
        lines += ["", "**Photometry**", ""]
        lines += _table(header, [_photometry_row(p) for p in group.values()])
        nd = entry.get("non_detection") or {}
        lines += ["", "**Last non-detection**", ""]
        if "archiveid" in nd and not nd.get("obsdate"):
            lines.append(
                f"Archival: archive id {_cell(nd.get('archiveid'))}, {_cell(nd.get('archival_remarks'))}"
            )
        else:
            lines += _table(header, [_photometry_row(nd)])
        lines.append("")
    lines += ["<details><summary>JSON sent as the <code>data</code> field</summary>", ""]
    lines += _fence(json.dumps(report, indent=2), "json")
    lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def render_circular_markdown(circular: Circular | Mapping[str, Any]) -> str:
    """The Circular as markdown: subject (with GCN's verdict on it) and the fixed-width body."""
    c = circular if isinstance(circular, Circular) else Circular.model_validate(circular)
    verdict = (
        "passes GCN's subject rule"
        if subject_is_valid(c.subject)
        else "**GCN would refuse this subject**"
    )
    size = f"{c.line_count} lines" + (
        "" if c.line_count <= 60 else " (**over GCN's ~60-line guide**)"
    )
    lines = [
        "### GCN Circular (public)",
        "",
        f"**Subject:** {_cell(c.subject)}  ",
        f"_{verdict}; {size}_",
        "",
    ]
    lines += _fence(c.body, "text")
    return "\n".join(lines) + "\n"


def render_markdown(message: HermesMessage | Circular | Mapping[str, Any]) -> str:
    """Render any outgoing message for the approval form the Prefect UI shows.

    Args:
        message: A :class:`HermesMessage`, a :class:`Circular`, an AT report payload
            (``{"at_report": ...}``), or the JSON dict of a HERMES message or Circular.

    Returns:
        Markdown text.

    Raises:
        TypeError: The message is of no known kind.
    """
    if isinstance(message, HermesMessage):
        return render_hermes_markdown(message)
    if isinstance(message, Circular):
        return render_circular_markdown(message)
    if isinstance(message, Mapping):
        if "at_report" in message:
            return render_tns_markdown(message)
        if "topic" in message and "title" in message:
            return render_hermes_markdown(message)
        if "subject" in message and "body" in message:
            return render_circular_markdown(message)
    raise TypeError(
        f"cannot render {type(message).__name__}: not a HERMES message, AT report or Circular"
    )
