"""Stage flow ``share-pointings``: the event's fields on the Gravitational Wave Treasure Map.

Every requested field is shared as planned, completed with the depth it reached once observed,
and cancelled when its request is cancelled, declined or expires. The ledger keeps the Treasure
Map's id of each pointing, so the flow can run after every stage (observe, frames, retract) and
posts only what changed. Only GW events are on the Treasure Map; a test or mock alert reaches it
only when it is a sandbox (:mod:`followup.drills`).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.runtime import load_runtime
from followup.drills import check_drill_fence
from followup.ledger import Ledger, PointingRow
from followup.models import Alert, AlertKind
from followup.reporting.field_coverage import event_fields, field_frame_headers, observed_fields
from followup.reporting.findings import Coverage
from followup.treasuremap import FieldPointing, PointingStatus
from tasks.artifacts import publish_table
from tasks.treasuremap import update_pointings

__all__ = ["event_coverage", "pointing_rows", "share_pointings", "update_treasure_map"]


def event_coverage(ledger: Ledger, event_id: str) -> Coverage | None:
    """The fields observed so far, their depths and probability (None before any field frame).

    A frame's depth is the one measured on it from empty apertures when the ledger records
    frame depths (``ledger.frames.depths``, the coverage stage of the frames flow), else the
    estimate from its header.
    """
    recorded = getattr(ledger.frames, "depths", None)
    depths = {d.depth.frame: d.depth.depth_5sigma for d in recorded(event_id)} if recorded else {}
    headers = field_frame_headers(ledger, event_id)
    return observed_fields(ledger, event_id, headers=headers, depths=depths)


def _fields(ledger: Ledger, event_id: str, coverage: Coverage | None) -> list[FieldPointing]:
    observed = {(f.name, f.band): f for f in (coverage.fields if coverage else [])}
    fields = []
    for request in event_fields(ledger, event_id):
        for band in request.bands:
            seen = observed.get((request.target_name, band))
            status = PointingStatus.PLANNED
            if seen is not None:
                status = PointingStatus.COMPLETED
            elif request.cancelled:
                status = PointingStatus.CANCELLED
            fields.append(
                FieldPointing(
                    target_name=request.target_name,
                    ra=request.ra,
                    dec=request.dec,
                    band=band,
                    camera=seen.camera if seen else request.camera,
                    status=status,
                    planned_time=request.window_start,
                    observed_time=seen.date_obs if seen else None,
                    depth=seen.depth if seen else None,
                )
            )
    return fields


def pointing_rows(rows: list[PointingRow]) -> list[dict[str, Any]]:
    """The pointings as a table (the artifact, the demo's summary)."""
    return [
        {
            "field": r.target_name,
            "band": r.band,
            "status": "refused" if r.error else r.status,
            "treasure map id": r.remote_id,
            "depth (AB, 5 sigma)": r.depth,
            "error": r.error or "",
        }
        for r in rows
    ]


@flow(name="share-pointings", flow_run_name="share-pointings-{event_id}")
def share_pointings(event_id: str, settings: str = "default") -> list[dict[str, Any]]:
    """Bring the event's pointings on the Treasure Map up to date with its requests and frames.

    Returns:
        One row per field and band: status, Treasure Map id, depth, the refusal if any.
    """
    logger = get_run_logger()
    runtime = load_runtime(settings)
    credentials = runtime.settings.treasuremap
    if credentials is None:
        logger.info("no Treasure Map credentials: %s's pointings are not shared", event_id)
        return []
    ledger = runtime.ledger
    event = ledger.events.get(event_id)
    if event is None or event.latest_alert_id is None:
        logger.warning("%s is not in the ledger", event_id)
        return []
    row, _ = ledger.alerts.get(event.latest_alert_id)
    alert = Alert.model_validate(row.summary)
    if alert.kind is not AlertKind.GW:
        logger.info("%s is not a GW event: the Treasure Map holds GW events only", event_id)
        return []
    check_drill_fence(
        alert,
        service="TREASUREMAP",
        url=credentials.base_url,
        sandbox_endpoints=runtime.settings.sandbox_endpoints,
    )
    fields = _fields(ledger, event_id, event_coverage(ledger, event_id))
    rows = update_pointings(
        credentials.get_client(), ledger, event_id, fields, credentials.instrument_ids
    )
    table = pointing_rows(rows)
    publish_table("treasure-map", event_id, table, f"Treasure Map pointings of {event_id}")
    return table


def update_treasure_map(event_id: str, settings: str) -> None:
    """Share the pointings now (a subflow run); its failure is logged, not the caller's."""
    state = share_pointings(event_id, settings, return_state=True)
    if not state.is_completed():
        get_run_logger().warning(
            "%s: the Treasure Map pointings were not updated (%s)", event_id, state.message
        )
