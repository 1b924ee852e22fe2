"""What happened to one event, read from the ledger: targets, requests, frames, photometry, reports."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select

from followup.ledger import FrameRow, Ledger, RequestRow
from followup.models import Measurement

__all__ = ["EventSummary", "event_summary", "summary_markdown"]


class EventSummary(BaseModel):
    """The follow-up of one event so far.

    Attributes:
        event_id: The event.
        alerts: ``[{alert_id, alert_type, decision, issued_at}]`` in arrival order.
        retracted: Whether the event was retracted.
        targets: ``[{name, kind, ra, dec, rank, probability}]``.
        requests: ``[{group_name, target, epoch, local_status, state, request_id, portal_url}]``.
        frames: ``[{basename, filter, observation_date, reduction_level, local_path, error}]``;
            ``error`` says why a frame could not be used (None when it was).
        measurements: The photometry, oldest first.
        reports: ``[{destination, target, status, remote_id, url, subject, text}]``: the text as
            drafted (HERMES message text, Circular body, TNS remarks).
    """

    event_id: str
    alerts: list[dict[str, Any]] = Field(default_factory=list)
    retracted: bool = False
    targets: list[dict[str, Any]] = Field(default_factory=list)
    requests: list[dict[str, Any]] = Field(default_factory=list)
    frames: list[dict[str, Any]] = Field(default_factory=list)
    measurements: list[Measurement] = Field(default_factory=list)
    reports: list[dict[str, Any]] = Field(default_factory=list)


def event_summary(ledger: Ledger, event_id: str) -> EventSummary:
    """Collect everything the ledger knows about an event."""
    event = ledger.events.get(event_id)
    targets = ledger.events.targets(event_id)
    names = {t.id: t.name for t in targets}
    requests: list[RequestRow] = ledger.requests.for_event(event_id)
    with ledger.session() as session:
        frames = list(
            session.scalars(
                select(FrameRow)
                .where(FrameRow.request_row_id.in_([r.id for r in requests]))
                .order_by(FrameRow.observation_date, FrameRow.id)
            )
        )
    return EventSummary(
        event_id=event_id,
        alerts=[
            {
                "alert_id": a.id,
                "alert_type": a.alert_type,
                "decision": a.decision,
                "issued_at": a.issued_at.isoformat(),
            }
            for a in ledger.alerts.for_event(event_id)
        ],
        retracted=bool(event and event.retracted),
        targets=[
            {
                "name": t.name,
                "kind": t.kind,
                "ra": t.ra,
                "dec": t.dec,
                "rank": t.rank,
                "probability": t.probability,
            }
            for t in targets
        ],
        requests=[
            {
                "group_name": r.group_name,
                "target": names.get(r.target_id, "?"),
                "epoch": r.epoch,
                "local_status": r.local_status,
                "state": r.state,
                "request_id": r.request_id,
                "portal_url": r.portal_url,
            }
            for r in requests
        ],
        frames=[
            {
                "basename": f.basename,
                "filter": f.filter,
                "observation_date": f.observation_date.isoformat() if f.observation_date else None,
                "reduction_level": f.reduction_level,
                "local_path": f.local_path,
                "error": f.error,
            }
            for f in frames
        ],
        measurements=ledger.frames.measurements(event_id),
        reports=[
            {
                "destination": r.destination,
                "target": r.target_name,
                "status": r.status,
                "remote_id": r.remote_id,
                "url": r.url,
                "subject": next(
                    (
                        (r.payload or {})[k]
                        for k in ("subject", "title", "internal_name")
                        if (r.payload or {}).get(k)
                    ),
                    None,
                ),
                "text": (r.payload or {}).get("text"),
            }
            for r in ledger.reports.for_event(event_id)
        ],
    )


def _measurement_text(m: Measurement) -> str:
    if m.mag is not None:
        return f"{m.mag:.2f} ± {m.mag_err:.2f}"
    return f"> {m.limit_mag_5sigma:.2f} (5σ)"


def summary_markdown(summary: EventSummary) -> str:
    """The summary as markdown (for an artifact)."""
    lines = [f"## Follow-up of {summary.event_id}" + (" (retracted)" if summary.retracted else "")]
    lines += [
        "",
        f"**Targets:** {len(summary.targets)}, **requests:** {len(summary.requests)}, "
        f"**frames:** {len(summary.frames)}, **measurements:** {len(summary.measurements)}",
        "",
    ]
    if summary.requests:
        lines += ["| request group | target | state | request |", "|---|---|---|---|"]
        for r in summary.requests:
            link = (
                f"[{r['request_id']}]({r['portal_url']})"
                if r["portal_url"]
                else str(r["request_id"])
            )
            lines.append(
                f"| {r['group_name']} | {r['target']} | {r['local_status']} / {r['state']} | {link} |"
            )
        lines.append("")
    if summary.measurements:
        lines += [
            "| target | band | MJD | AB mag | flux (µJy) | frame |",
            "|---|---|---|---|---|---|",
        ]
        for m in summary.measurements:
            lines.append(
                f"| {m.target_name} | {m.band} | {m.mjd:.4f} | {_measurement_text(m)} | "
                f"{m.flux_ujy:.2f} ± {m.flux_err_ujy:.2f} | {m.frame_basename} |"
            )
        lines.append("")
    if summary.reports:
        lines += ["| report | target | status | id |", "|---|---|---|---|"]
        for r in summary.reports:
            ident = f"[{r['remote_id']}]({r['url']})" if r["url"] else (r["remote_id"] or "")
            lines.append(f"| {r['destination']} | {r['target'] or '-'} | {r['status']} | {ident} |")
    return "\n".join(lines)
