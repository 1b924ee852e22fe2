"""What the tiling observed, field by field: the input of the no-counterpart reports and pointings.

:func:`observed_fields` reads the ledger: every field target, its requests (and their states) and
the frames downloaded for them. A field's depth in a band is the deepest of its frames' 5-sigma
limits. That limit comes from a ``depths`` mapping when the caller has measured it (empty
apertures on the frame, the coverage table's job); otherwise it is estimated from the BANZAI
header alone (:func:`header_depth`: zero point, sky noise and seeing), which is what the
reports say it is until measured depths are recorded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from followup.ledger import Ledger
from followup.models import LcoState, RequestStatus, TargetKind
from followup.reporting.findings import Coverage, ObservedField

__all__ = [
    "FieldRequest",
    "event_fields",
    "field_frame_headers",
    "header_depth",
    "observed_fields",
]

ENCIRCLED_FRACTION = 0.74
"""Flux of a real LCO star inside a radius of one FWHM (Sinistro; reference notes)."""

_CANCELLED = {LcoState.CANCELED, LcoState.WINDOW_EXPIRED, LcoState.FAILURE_LIMIT_REACHED}


def header_depth(header: Mapping[str, Any]) -> float | None:
    """A 5-sigma point-source limit (AB) from a BANZAI header: L1ZP, L1SIGMA, L1FWHM, EXPTIME.

    Background-limited: noise ``L1SIGMA * sqrt(N)`` in an aperture of radius one FWHM (``N``
    pixels) holding :data:`ENCIRCLED_FRACTION` of a star's flux; ``mag = L1ZP - 2.5 log10(flux /
    EXPTIME)`` as BANZAI's zero point is defined. None when a keyword is missing.
    """
    try:
        zp = float(header["L1ZP"])
        sigma = float(header["L1SIGMA"])
        fwhm_arcsec = float(header["L1FWHM"])
        scale = float(header.get("PIXSCALE", 0.389))
        exptime = float(header["EXPTIME"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (sigma > 0 and fwhm_arcsec > 0 and scale > 0 and exptime > 0):
        return None
    radius_px = fwhm_arcsec / scale
    noise = sigma * math.sqrt(math.pi * radius_px**2)
    flux = 5.0 * noise / ENCIRCLED_FRACTION
    return zp - 2.5 * math.log10(flux / exptime)


_KEYWORDS = ("FILTER", "L1ZP", "L1SIGMA", "L1FWHM", "PIXSCALE", "EXPTIME", "INSTRUME", "TELID")


def field_frame_headers(ledger: Ledger, event_id: str) -> dict[str, dict[str, Any]]:
    """The keywords :func:`observed_fields` reads, from each downloaded frame of a field target.

    Frames whose file is missing or unreadable are left out (the frames stage records why).
    """
    from astropy.io import fits
    from sqlalchemy import select

    from followup.ledger import FrameRow, RequestRow, TargetRow

    with ledger.session() as s:
        frames = s.scalars(
            select(FrameRow)
            .join(RequestRow, FrameRow.request_row_id == RequestRow.id)
            .join(TargetRow, RequestRow.target_id == TargetRow.id)
            .where(RequestRow.event_id == event_id, TargetRow.kind == TargetKind.FIELD.value)
        ).all()
    headers: dict[str, dict[str, Any]] = {}
    for frame in frames:
        if not frame.local_path or frame.error:
            continue
        try:
            with fits.open(frame.local_path, memmap=False, lazy_load_hdus=True) as hdul:
                hdu = hdul["SCI"] if "SCI" in hdul else hdul[1 if len(hdul) > 1 else 0]
                header = hdu.header
                headers[frame.basename] = {k: header[k] for k in _KEYWORDS if k in header}
        except (OSError, KeyError, ValueError):
            continue
    return headers


class FieldRequest(BaseModel):
    """A field target and one of its requests, with what became of it.

    Attributes:
        target_name: The field.
        ra: Centre, ICRS degrees.
        dec: Centre, ICRS degrees.
        probability: Sky-map probability inside the field.
        bands: The request's filters.
        camera: The camera the field was tiled for (``Sinistro``...).
        window_start: Start of the request's window.
        cancelled: The request was declined, refused, cancelled, expired or failed.
        completed: LCO completed it.
    """

    target_name: str
    ra: float
    dec: float
    probability: float
    bands: list[str]
    camera: str = "Sinistro"
    window_start: datetime | None = None
    cancelled: bool = False
    completed: bool = False


def event_fields(ledger: Ledger, event_id: str) -> list[FieldRequest]:
    """Every field target of the event with each of its requests (first epoch only)."""
    targets = {t.id: t for t in ledger.events.targets(event_id) if t.kind == TargetKind.FIELD}
    fields = []
    for r in ledger.requests.for_event(event_id):
        target = targets.get(r.target_id)
        if target is None or r.epoch != 0:
            continue
        state = LcoState(r.state) if r.state else None
        fields.append(
            FieldRequest(
                target_name=target.name,
                ra=target.ra,
                dec=target.dec,
                probability=target.probability,
                bands=[b for b in r.filters_key.split(",") if b],
                camera=_camera(target.data.get("instrument_type")),
                window_start=r.window_start,
                cancelled=r.local_status in (RequestStatus.DECLINED, RequestStatus.REJECTED)
                or state in _CANCELLED,
                completed=state is LcoState.COMPLETED,
            )
        )
    return fields


def observed_fields(
    ledger: Ledger,
    event_id: str,
    *,
    headers: Mapping[str, Mapping[str, Any]],
    depths: Mapping[str, float] | None = None,
    credible_level: float = 0.9,
    skymap: str | None = None,
) -> Coverage | None:
    """The event's observed fields and their depths, or None when no field frame is usable.

    Args:
        ledger: The ledger.
        event_id: The event.
        headers: The science header of each downloaded frame by basename (frames without one
            are left out).
        depths: Measured 5-sigma depths by frame basename, preferred to the header estimate.
        credible_level: The credible region the fields tile.
        skymap: The sky map's name for the text.
    """
    from sqlalchemy import select

    from followup.ledger import FrameRow, RequestRow, TargetRow

    depths = depths or {}
    with ledger.session() as s:
        rows = s.execute(
            select(FrameRow, TargetRow)
            .join(RequestRow, FrameRow.request_row_id == RequestRow.id)
            .join(TargetRow, RequestRow.target_id == TargetRow.id)
            .where(RequestRow.event_id == event_id, TargetRow.kind == TargetKind.FIELD.value)
            .order_by(FrameRow.observation_date, FrameRow.id)
        ).all()
    best: dict[tuple[str, str], ObservedField] = {}
    for frame, target in rows:
        header = headers.get(frame.basename)
        if frame.error or header is None or frame.observation_date is None:
            continue
        depth = depths.get(frame.basename, header_depth(header))
        band = str(header.get("FILTER") or frame.filter or "")
        if depth is None or not band:
            continue
        telescope, camera = _equipment(header)
        key = (target.name, band)
        seen = best.get(key)
        if seen is None or depth > seen.depth:
            best[key] = ObservedField(
                name=target.name,
                ra=target.ra,
                dec=target.dec,
                band=band,
                depth=round(depth, 2),
                probability=min(max(target.probability, 0.0), 1.0),
                date_obs=min(frame.observation_date, seen.date_obs)
                if seen
                else frame.observation_date,
                telescope=telescope,
                camera=camera,
                exposure_time_s=_float(header.get("EXPTIME")),
            )
    if not best:
        return None
    return Coverage(fields=list(best.values()), credible_level=credible_level, skymap=skymap)


def _camera(instrument_type: str | None) -> str:
    from followup.reporting.equipment import CAMERAS

    code = (instrument_type or "1M0-SCICAM-SINISTRO").upper()
    return next((c.name for c in CAMERAS.values() if c.instrument_type == code), "Sinistro")


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _equipment(header: Mapping[str, Any]) -> tuple[str, str]:
    from followup.models import Measurement
    from followup.reporting.equipment import equipment_of

    probe = Measurement.model_construct(
        instrument=str(header.get("INSTRUME", "")), telescope=str(header.get("TELID", ""))
    )
    equipment = equipment_of(probe, instrument_type="1M0-SCICAM-SINISTRO")
    return equipment.telescope, equipment.camera
