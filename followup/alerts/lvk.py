"""LVK ``igwn.gwalert`` alerts: the JSON form (GCN Kafka, base64 sky map) and the Avro form (SCiMMA).

Both forms carry the same record (``igwn.alerts.Alert``): ``superevent_id``, ``alert_type``,
``time_created``, ``urls``, ``event`` (null in a RETRACTION) and ``external_coinc``. The record is
validated structurally by the pydantic models below, which follow the igwn-gwalert-schema 1.3 JSON
schema (that package is GPL and is used only by the tests to cross-check these models).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from followup.alerts.fields import (
    as_probabilities,
    decode_skymap,
    parse_time,
    skymap_summary,
)
from followup.alerts.registry import MessageContext, Parser, register_parser
from followup.exceptions import AlertParseError
from followup.models import Alert, AlertKind, AlertType, ExternalCoincidence

__all__ = [
    "LVK_AVRO",
    "LVK_JSON",
    "LvkAlertRecord",
    "LvkEventInfo",
    "LvkExternalCoincInfo",
    "alert_from_record",
    "is_test_superevent",
]

_TEST_TOPIC_SUFFIXES = ("-playground", "-test")


class _Record(BaseModel):
    # Strict types as in the schema (a boolean is never 0/1); unknown fields of a newer schema
    # version are kept, not refused.
    model_config = ConfigDict(strict=True, extra="allow")


class LvkEventInfo(_Record):
    """``event`` of an LVK alert (igwn.alerts.EventInfo)."""

    time: str
    far: float = Field(ge=0)
    significant: bool
    instruments: list[str]
    group: str
    pipeline: str
    search: str
    classification: dict[str, float]
    properties: dict[str, float]
    mchirp_source: dict[str, Any] | None = None
    duration: float | None = None
    central_frequency: float | None = None
    skymap: str | bytes | None


class LvkExternalCoincInfo(_Record):
    """``external_coinc`` of an LVK alert (igwn.alerts.ExternalCoincInfo)."""

    gcn_notice_id: int | str
    ivorn: str
    observatory: str
    search: str
    time_difference: float
    time_coincidence_far: float | None
    time_sky_position_coincidence_far: float | None
    combined_skymap: str | bytes | None


class LvkAlertRecord(_Record):
    """One ``igwn.gwalert`` record."""

    alert_type: Literal["EARLYWARNING", "PRELIMINARY", "INITIAL", "UPDATE", "RETRACTION"]
    time_created: str
    superevent_id: str = Field(min_length=1, max_length=64, pattern=r"^\S+$")
    urls: dict[str, str]
    event: LvkEventInfo | None
    external_coinc: LvkExternalCoincInfo | None


def is_test_superevent(superevent_id: str, search: str | None = None) -> bool:
    """True for mock (``MS...``) and test (``TS...``) superevents and the MDC search."""
    return superevent_id[:1] in {"M", "T"} or (search or "").upper() == "MDC"


def alert_from_record(
    record: dict[str, Any], *, form: Literal["json", "avro"], ctx: MessageContext | None = None
) -> Alert:
    """Normalise one ``igwn.gwalert`` record.

    Args:
        record: The decoded record (sky maps as base64 text in the JSON form, bytes in Avro).
        form: Which form it came in; recorded as ``Alert.format`` ``lvk-json`` / ``lvk-avro``.
        ctx: Headers and topic (a ``-playground``/``-test`` topic marks the alert as a test).

    Returns:
        The alert. A sky map that cannot be decoded is not fatal: the alert is kept without it and
        ``extra["skymap_error"]`` says why (the trigger rules then see no localisation).

    Raises:
        AlertParseError: ``invalid-lvk-json``/``invalid-lvk-avro`` for a record that breaks the
            schema, ``invalid-time`` for unreadable times.
        pydantic.ValidationError: Caught by the registry and reported as ``invalid-lvk-<form>``.
    """
    parsed = LvkAlertRecord.model_validate(record)
    alert_type = AlertType(parsed.alert_type)
    superevent_id = parsed.superevent_id
    extra: dict[str, Any] = {"notice_type": "igwn.gwalert"}
    if parsed.model_extra:
        extra["unknown_fields"] = sorted(parsed.model_extra)

    event = parsed.event
    if event is None and alert_type is not AlertType.RETRACTION:
        extra["warning"] = f"{alert_type.value} alert without event information"

    reasons: list[str] = []
    if is_test_superevent(superevent_id, event.search if event else None):
        reasons.append("mock or test superevent")
    topic = ctx.topic if ctx else None
    if topic and topic.endswith(_TEST_TOPIC_SUFFIXES):
        reasons.append(f"test topic {topic}")
    if reasons:
        extra["test_reason"] = "; ".join(reasons)

    fields: dict[str, Any] = {}
    if event is not None:
        skymap: bytes | None = None
        if event.skymap is not None:
            try:
                skymap = decode_skymap(event.skymap, field="event.skymap")
            except AlertParseError as exc:
                extra["skymap_error"] = str(exc)
        distance_mpc = distance_err_mpc = None
        if skymap is not None:
            summary = skymap_summary(skymap)
            extra["skymap"] = summary
            distance_mpc = _positive(summary["header"].get("DISTMEAN"))
            distance_err_mpc = _positive(summary["header"].get("DISTSTD"))
        for key in ("duration", "central_frequency", "mchirp_source"):
            value = getattr(event, key)
            if value is not None:
                extra[key] = value
        if event.model_extra:
            extra["unknown_event_fields"] = sorted(event.model_extra)
        fields.update(
            event_time=parse_time(event.time, field="event.time"),
            far_hz=event.far,
            significant=event.significant,
            classification=as_probabilities(event.classification, field="classification"),
            properties=as_probabilities(event.properties, field="properties"),
            skymap=skymap,
            distance_mpc=distance_mpc,
            distance_err_mpc=distance_err_mpc,
            instruments=list(event.instruments),
            group=event.group,
            pipeline=event.pipeline,
            search=event.search,
        )

    coinc = parsed.external_coinc
    if coinc is not None:
        combined: bytes | None = None
        if coinc.combined_skymap is not None:
            try:
                combined = decode_skymap(coinc.combined_skymap, field="external_coinc.skymap")
                extra["combined_skymap"] = skymap_summary(combined)
            except AlertParseError as exc:
                extra["combined_skymap_error"] = str(exc)
        fields["external_coinc"] = ExternalCoincidence(
            observatory=coinc.observatory,
            search=coinc.search,
            gcn_notice_id=coinc.gcn_notice_id,
            ivorn=coinc.ivorn,
            time_difference_s=coinc.time_difference,
            time_coincidence_far=coinc.time_coincidence_far,
            time_sky_position_coincidence_far=coinc.time_sky_position_coincidence_far,
            combined_skymap=combined,
        )

    return Alert(
        source="LVK",
        kind=AlertKind.GW,
        format=f"lvk-{form}",
        event_id=superevent_id,
        alert_type=alert_type,
        issued_at=parse_time(parsed.time_created, field="time_created"),
        is_test=bool(reasons),
        urls=dict(parsed.urls),
        title=f"LVK {alert_type.value} alert for {superevent_id}",
        extra=extra,
        **fields,
    )


def _positive(value: Any) -> float | None:
    return float(value) if isinstance(value, float) and value > 0 else None


def _looks_like_lvk(document: Any, ctx: MessageContext) -> bool:
    return isinstance(document, dict) and "superevent_id" in document and "alert_type" in document


LVK_JSON = register_parser(
    Parser(
        name="lvk-json",
        container="json",
        accepts=_looks_like_lvk,
        parse=lambda doc, ctx: alert_from_record(doc, form="json", ctx=ctx),
        description="LVK igwn.gwalert, JSON form with a base64 sky map (GCN Kafka)",
    )
)

LVK_AVRO = register_parser(
    Parser(
        name="lvk-avro",
        container="avro",
        accepts=_looks_like_lvk,
        parse=lambda doc, ctx: alert_from_record(doc, form="avro", ctx=ctx),
        description="LVK igwn.gwalert, Avro container with raw sky-map bytes (SCiMMA Hopskotch)",
    )
)
