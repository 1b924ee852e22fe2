"""GCN unified-schema JSON notices (``gcn.notices.*`` topics), by ``$schema``, topic or fields.

The unified schema composes every notice from a few core objects (Alert, Reporter, DateTime,
Localization, Event, Statistics...). This module reads those core fields the same way for every
mission and adds what is specific to each notice type through the :data:`NOTICE_TYPES` table:
who issued it, which messenger it is, how its event id is built and where its position is.
The notice type comes from the ``$schema`` URL; a notice without one is recognised by its Kafka
topic (``gcn.notices.swift.bat.guano``), else by its fields (``mission``, ``instrument``, the
fields only one notice type has). Notice types not in the table are read generically when they
carry an id and a time; the core component examples (``core/*.schema.json``) are not notices and
are refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from followup.alerts.fields import (
    angular_distance_deg,
    as_float,
    as_probabilities,
    decode_skymap,
    error_region,
    neutrino_summary,
    parse_time,
    position,
    skymap_summary,
    trusted_position,
)
from followup.alerts.registry import MessageContext, Parser, register_parser
from followup.exceptions import AlertParseError
from followup.models import Alert, AlertKind, AlertType, ErrorRegion, SkyPosition

__all__ = ["GCN_JSON", "NOTICE_TYPES", "NoticeType", "alert_from_notice", "notice_path"]

_SCHEMA_DIR = "/gcn/notices/"
_SCHEMA_SUFFIX = ".schema.json"
_PATH_RE = re.compile(r"[A-Za-z0-9_./-]+")
MAX_SCHEMA_LENGTH = 1024
"""Longest ``$schema`` read (real ones are under 100 characters); longer ones name no notice."""

_GCN_ALERT_TYPES = {
    "initial": AlertType.INITIAL,
    "subsequent": AlertType.UPDATE,
    "update": AlertType.UPDATE,
    "retraction": AlertType.RETRACTION,
}
_TEST_TENSES = {"test", "injection"}
_MESSENGER_KINDS = {"gw": AlertKind.GW, "neutrino": AlertKind.NEUTRINO}
# Fields read into Alert attributes; everything else goes to extra["notice"].
_CONSUMED = {
    "$schema",
    "alert_datetime",
    "alert_type",
    "alert_tense",
    "trigger_time",
    "ra",
    "dec",
    "ra_dec_error",
    "containment_probability",
    "far",
    "classification",
    "properties",
    "healpix_file",
    "healpix_url",
    "data_archive_page",
    "luminosity_distance",
    "luminosity_distance_error",
}

EventIdFn = Callable[[dict[str, Any]], str | None]
PositionFn = Callable[[dict[str, Any]], SkyPosition | None]


@dataclass(frozen=True)
class NoticeType:
    """How to read one family of unified-schema notices.

    Attributes:
        source: Issuer written to ``Alert.source``.
        kind: Messenger family.
        event_id: Builds the event id from the notice (None when it carries none).
        position: Reads the best position (default: top-level ra/dec/ra_dec_error).
        title: Human name of the notice type.
    """

    source: str
    kind: AlertKind
    event_id: EventIdFn
    title: str
    position: PositionFn | None = None


def _ids(notice: Mapping[str, Any], key: str = "id") -> list[str]:
    value = notice.get(key)
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in values if str(v).strip()]


def _prefixed(prefix: str, key: str = "id") -> EventIdFn:
    def build(notice: dict[str, Any]) -> str | None:
        ids = _ids(notice, key)
        return f"{prefix}-{ids[0]}" if ids else None

    return build


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "", text.replace(" ", ""))


def _compact_time(value: Any) -> str:
    when = parse_time(value, field="trigger_time")
    return when.strftime("%Y%m%dT%H%M%S") + f".{when.microsecond // 1000:03d}"


def _fermi_gbm_id(notice: dict[str, Any]) -> str | None:
    # The numeric trigger id is what the Classic VOEvents carry too, so both forms share an event.
    numeric = [i for i in _ids(notice) if i.isdigit()]
    if numeric:
        return f"Fermi-GBM-{numeric[0]}"
    names = [i for i in _ids(notice) if i.startswith("bn")]
    return f"Fermi-GBM-{names[0]}" if names else None


def _fermi_lat_id(notice: dict[str, Any]) -> str | None:
    ids = _ids(notice)
    if ids:
        return f"Fermi-LAT-{ids[0]}"
    name = notice.get("event_name")
    start = notice.get("observation_start") or notice.get("trigger_time")
    if isinstance(name, str) and name.strip() and start is not None:
        return f"Fermi-LAT-{_slug(name)}-{parse_time(start, field='observation_start'):%Y%m%d}"
    return None


def _icecube_track_id(notice: dict[str, Any]) -> str | None:
    # The event's name ("IceCube-230416A") is what IceCube, GCN Circulars and TNS call it; the
    # run_event id ("137840_57034692", also in the AMON VOEvents) stays in extra["notice"].
    names = _ids(notice, "event_name")
    if names:
        return names[0]
    ids = _ids(notice)
    return f"IceCube-{ids[0]}" if ids else None


def _icecube_lvk_id(notice: dict[str, Any]) -> str | None:
    ref = notice.get("ref_ID")
    return f"IceCube-LVK-{str(ref).strip()}" if isinstance(ref, str) and ref.strip() else None


def _km3net_id(notice: dict[str, Any]) -> str | None:
    names = _ids(notice, "event_name")
    if names:
        return names[0]
    return _prefixed("KM3NeT")(notice)


def _svom_id(notice: dict[str, Any]) -> str | None:
    ids = _ids(notice)
    if not ids:
        return None
    return ids[0] if ids[0].startswith("sb") else f"SVOM-{ids[0]}"


def _einstein_probe_id(notice: dict[str, Any]) -> str | None:
    ids = _ids(notice)
    if ids:
        return f"EP-{ids[0]}"
    # Early WXT notices (e.g. EP240508a) carry no id: the trigger time names the trigger.
    if notice.get("trigger_time") is not None:
        return f"EP-WXT-{_compact_time(notice['trigger_time'])}"
    return None


def _glowbug_id(notice: dict[str, Any]) -> str | None:
    ids = _ids(notice)
    return (ids[0] if ids[0].upper().startswith("BUG") else f"GLOWBUG-{ids[0]}") if ids else None


def _boom_id(notice: dict[str, Any]) -> str | None:
    targets = _boom_targets(notice)
    if targets and isinstance(targets[0].get("event_name"), str):
        return targets[0]["event_name"].strip() or None
    return None


def _heasarc_id(notice: dict[str, Any]) -> str | None:
    obs = notice.get("obs_id")
    facility = notice.get("facility_name") or "HEASARC"
    return f"{_slug(str(facility))}-{obs}" if obs else None


def _boom_targets(notice: dict[str, Any]) -> list[dict[str, Any]]:
    data = notice.get("data")
    targets = data.get("targets") if isinstance(data, dict) else None
    return [t for t in targets if isinstance(t, dict)] if isinstance(targets, list) else []


def _boom_position(notice: dict[str, Any]) -> SkyPosition | None:
    targets = _boom_targets(notice)
    if not targets or targets[0].get("ra") is None:
        return None
    return position(targets[0].get("ra"), targets[0].get("dec"), None, field="data.targets[0]")


def _icecube_lvk_position(notice: dict[str, Any]) -> SkyPosition | None:
    direction = notice.get("most_probable_direction")
    if not isinstance(direction, dict) or direction.get("ra") is None:
        return None
    events = [e for e in notice.get("coincident_events") or [] if isinstance(e, dict)]
    best = min(
        events,
        key=lambda e: (
            e.get("event_pval_generic")
            if isinstance(e.get("event_pval_generic"), int | float)
            else 2.0
        ),
        default=None,
    )
    region = None
    if best is not None and isinstance(best.get("localization"), dict):
        loc = best["localization"]
        region = error_region(
            loc.get("ra_dec_error"),
            containment=loc.get("containment_probability"),
            field="coincident_events.localization.ra_dec_error",
        )
    return position(
        direction.get("ra"), direction.get("dec"), region, field="most_probable_direction"
    )


NOTICE_TYPES: dict[str, NoticeType] = {
    "swift/bat/guano": NoticeType(
        "Swift", AlertKind.GAMMA_RAY, _prefixed("Swift"), "Swift BAT-GUANO notice"
    ),
    "fermi/gbm/trigger": NoticeType(
        "Fermi", AlertKind.GAMMA_RAY, _fermi_gbm_id, "Fermi GBM trigger notice"
    ),
    "fermi/lat/flare": NoticeType(
        "Fermi", AlertKind.GAMMA_RAY, _fermi_lat_id, "Fermi LAT flare notice"
    ),
    "einstein_probe/wxt/alert": NoticeType(
        "Einstein Probe", AlertKind.X_RAY, _einstein_probe_id, "Einstein Probe WXT alert"
    ),
    "svom/trigger": NoticeType("SVOM", AlertKind.GAMMA_RAY, _svom_id, "SVOM trigger notice"),
    "maxi/gsc.known": NoticeType(
        "MAXI", AlertKind.X_RAY, _prefixed("MAXI"), "MAXI GSC known-source notice"
    ),
    "maxi/gsc.unknown": NoticeType(
        "MAXI", AlertKind.X_RAY, _prefixed("MAXI"), "MAXI GSC unknown-source notice"
    ),
    "icecube/lvk_nu_track_search": NoticeType(
        "IceCube",
        AlertKind.NEUTRINO,
        _icecube_lvk_id,
        "IceCube LVK neutrino track search",
        _icecube_lvk_position,
    ),
    "icecube/single_neutrino_alerts": NoticeType(
        "IceCube", AlertKind.NEUTRINO, _icecube_track_id, "IceCube track alert"
    ),
    "km3net/alert": NoticeType("KM3NeT", AlertKind.NEUTRINO, _km3net_id, "KM3NeT alert"),
    "superk/sn_alert": NoticeType(
        "Super-Kamiokande",
        AlertKind.NEUTRINO,
        _prefixed("SuperK"),
        "Super-Kamiokande supernova alert",
    ),
    "chime/frb": NoticeType("CHIME", AlertKind.RADIO, _prefixed("CHIME"), "CHIME/FRB notice"),
    "dsa110/frb": NoticeType("DSA-110", AlertKind.RADIO, _prefixed("DSA110"), "DSA-110 FRB notice"),
    "burstcube/alert": NoticeType(
        "BurstCube", AlertKind.GAMMA_RAY, _prefixed("BurstCube"), "BurstCube alert"
    ),
    "burstcube/test": NoticeType(
        "BurstCube", AlertKind.GAMMA_RAY, _prefixed("BurstCube"), "BurstCube test alert"
    ),
    "glowbug/alert": NoticeType("GLOWBUG", AlertKind.GAMMA_RAY, _glowbug_id, "GLOWBUG alert"),
    "boom/alert": NoticeType(
        "BOOM", AlertKind.OPTICAL, _boom_id, "BOOM optical alert", _boom_position
    ),
    "heasarc/archive_alert": NoticeType(
        "HEASARC", AlertKind.OTHER, _heasarc_id, "HEASARC archive alert"
    ),
}
"""Known notice types by lower-case schema path (``swift/bat/guano`` for ``swift/bat/Guano``)."""

_TEST_NOTICE_TYPES = {"burstcube/test"}
_SVOM_INSTRUMENT_KINDS = {"MXT": AlertKind.X_RAY, "VT": AlertKind.OPTICAL}


def notice_path(schema: str) -> str | None:
    """The notice type path of a ``$schema`` URL (``swift/bat/guano``), or None.

    Linear in the length of ``schema`` whatever it holds (a regular expression searching for
    the path took minutes on a few hundred KB of repeated ``/gcn/notices/``).
    """
    text = schema.strip()
    if len(text) > MAX_SCHEMA_LENGTH or not text.endswith(_SCHEMA_SUFFIX):
        return None
    start = text.find(_SCHEMA_DIR)
    if start < 0:
        return None
    path = text[start + len(_SCHEMA_DIR) : -len(_SCHEMA_SUFFIX)]
    return path.lower() if _PATH_RE.fullmatch(path) else None


def alert_from_notice(notice: dict[str, Any], ctx: MessageContext | None = None) -> Alert:
    """Normalise one unified-schema notice.

    Args:
        notice: The decoded JSON notice (with ``$schema``).
        ctx: Headers and topic.

    Returns:
        The alert (``format="gcn-json"``). ``extra["notice_type"]`` is
        ``gcn.notices.<path>`` (``gcn.notices.swift.bat.guano``) and ``extra["notice"]`` keeps the
        notice's other fields.

    Raises:
        AlertParseError: ``not-a-notice`` for a core component schema, ``unknown-notice-type`` for
            an unknown type without an id and a time, ``missing-event-id``, ``missing-time``,
            ``invalid-time``, ``invalid-position``... for invalid values.
    """
    schema = notice.get("$schema")
    if isinstance(schema, str):
        path = notice_path(schema)
        if path is None:
            raise AlertParseError("unknown-notice-type", detail=f"$schema {schema[:200]!r}")
        found_by = None
    else:
        path, found_by = _path_without_schema(notice, ctx)
    if path.startswith("core/"):
        raise AlertParseError(
            "not-a-notice",
            detail=f"{path} is a component of the unified schema, not a notice type",
        )
    spec = NOTICE_TYPES.get(path) or _generic_type(path, notice)

    gcn_type = notice.get("alert_type")
    if gcn_type is None:
        alert_type = AlertType.INITIAL
    elif isinstance(gcn_type, str) and gcn_type.strip().lower() in _GCN_ALERT_TYPES:
        alert_type = _GCN_ALERT_TYPES[gcn_type.strip().lower()]
    else:
        raise AlertParseError("invalid-alert-type", detail=f"alert_type {str(gcn_type)[:40]!r}")

    event_id = spec.event_id(notice)
    if not event_id:
        raise AlertParseError("missing-event-id", detail=f"{path} notice without an id")
    if len(event_id) > 64:
        raise AlertParseError("invalid-event-id", detail=f"{event_id[:80]!r} is too long")

    extra: dict[str, Any] = {"notice_type": "gcn.notices." + path.replace("/", ".")}
    if found_by is None:
        extra["schema"] = schema
    else:
        extra["notice_type_from"] = found_by
    event_time = (
        parse_time(notice["trigger_time"], field="trigger_time")
        if notice.get("trigger_time") is not None
        else None
    )
    issued_at: datetime
    if notice.get("alert_datetime") is not None:
        issued_at = parse_time(notice["alert_datetime"], field="alert_datetime")
    elif event_time is not None:
        issued_at = event_time
        extra["issued_at_from"] = "trigger_time (the notice has no alert_datetime)"
    elif notice.get("observation_start") is not None:
        issued_at = parse_time(notice["observation_start"], field="observation_start")
        extra["issued_at_from"] = "observation_start (the notice has no alert_datetime)"
    else:
        raise AlertParseError("missing-time", detail=f"{path} notice without alert_datetime")

    tense = notice.get("alert_tense")
    test_reasons = []
    if isinstance(tense, str) and tense.lower() in _TEST_TENSES:
        test_reasons.append(f"alert_tense {tense}")
    if path in _TEST_NOTICE_TYPES:
        test_reasons.append("test notice type")
    if test_reasons:
        extra["test_reason"] = "; ".join(test_reasons)
    if isinstance(gcn_type, str):
        extra["gcn_alert_type"] = gcn_type
    if isinstance(tense, str):
        extra["alert_tense"] = tense

    kind = spec.kind
    instrument = notice.get("instrument")
    if spec.source == "SVOM" and isinstance(instrument, str):
        kind = _SVOM_INSTRUMENT_KINDS.get(instrument.upper(), kind)

    sky = _position(notice, spec, extra) if alert_type is not AlertType.RETRACTION else None

    skymap = None
    if isinstance(notice.get("healpix_file"), str):
        try:
            skymap = decode_skymap(notice["healpix_file"], field="healpix_file")
            extra["skymap"] = skymap_summary(skymap)
        except AlertParseError as exc:
            extra["skymap_error"] = str(exc)

    urls = {
        key: value.strip()
        for key in ("data_archive_page", "healpix_url", "light_curve_url", "mission_page")
        if isinstance((value := notice.get(key)), str) and value.strip()
    }
    distance = as_float(notice.get("luminosity_distance"), field="luminosity_distance")
    distance_err = as_float(
        notice.get("luminosity_distance_error"), field="luminosity_distance_error"
    )
    names = _ids(notice, "event_name")
    if names:
        extra["event_name"] = names[0] if len(names) == 1 else names
    if spec.event_id is _icecube_track_id and _ids(notice):
        # The run_event id names the same alert in AMON's VOEvents, which carry no name.
        extra["aliases"] = [f"IceCube-{i}" for i in _ids(notice) if f"IceCube-{i}" != event_id]
    extra["notice"] = {
        k: v for k, v in notice.items() if k not in _CONSUMED and k not in {"event_name"}
    }
    instruments = [instrument] if isinstance(instrument, str) and instrument else []
    title = spec.title
    if gcn_type:
        title = f"{title} ({gcn_type})"
    if kind is AlertKind.NEUTRINO:
        signalness = as_float(notice.get("p_astro", notice.get("signalness")), field="p_astro")
        energy = as_float(notice.get("nu_energy"), field="nu_energy")
        if signalness is not None:
            extra["signalness"] = signalness
        if energy is not None:
            extra["energy_tev"] = energy
        if signalness is not None or energy is not None:
            title = f"{title} {event_id}: {neutrino_summary(extra)}"

    return Alert(
        source=spec.source,
        kind=kind,
        format="gcn-json",
        event_id=event_id,
        alert_type=alert_type,
        issued_at=issued_at,
        event_time=event_time,
        far_hz=_far(notice),
        classification=_numeric_probabilities(notice.get("classification"), "classification"),
        properties=_numeric_probabilities(notice.get("properties"), "properties"),
        position=sky,
        skymap=skymap,
        skymap_url=urls.get("healpix_url"),
        distance_mpc=distance,
        distance_err_mpc=distance_err,
        is_test=bool(test_reasons),
        instruments=instruments,
        pipeline=notice.get("pipeline") if isinstance(notice.get("pipeline"), str) else None,
        urls=urls,
        title=title,
        extra=extra,
    )


def _far(notice: Mapping[str, Any]) -> float | None:
    far = as_float(notice.get("far"), field="far")
    if far is not None and far < 0:
        raise AlertParseError("invalid-number", detail="far: negative false-alarm rate")
    return far


def _numeric_probabilities(value: Any, field: str) -> dict[str, float]:
    # GCN classifications are probabilities; Fermi GBM writes flags such as {"BELOW_HORIZON": 1}.
    return as_probabilities(value, field=field)


def _position(
    notice: dict[str, Any], spec: NoticeType, extra: dict[str, Any]
) -> SkyPosition | None:
    if spec.position is not None:
        sky = spec.position(notice)
        if sky is None:
            return None
        return trusted_position(sky.ra, sky.dec, sky.error, field="position", extra=extra)
    if notice.get("ra") is None or notice.get("dec") is None:
        return None
    region: ErrorRegion | None = error_region(
        notice.get("ra_dec_error"),
        containment=notice.get("containment_probability"),
        field="ra_dec_error",
    )
    corners = notice.get("rectangular_error_corners")
    if region is None and isinstance(corners, list) and corners:
        ra0 = as_float(notice["ra"], field="ra", required=True)
        dec0 = as_float(notice["dec"], field="dec", required=True)
        assert ra0 is not None and dec0 is not None
        radius = 0.0
        for corner in corners:
            if not isinstance(corner, list | tuple) or len(corner) != 2:
                raise AlertParseError(
                    "invalid-position", detail="rectangular_error_corners: expected [ra, dec] pairs"
                )
            ra_c = as_float(corner[0], field="rectangular_error_corners", required=True)
            dec_c = as_float(corner[1], field="rectangular_error_corners", required=True)
            assert ra_c is not None and dec_c is not None
            radius = max(radius, angular_distance_deg(ra0, dec0, ra_c, dec_c))
        level = as_float(notice.get("containment_probability"), field="containment_probability")
        region = ErrorRegion(radius_deg=radius, containment=level if level and level <= 1 else 0.9)
        extra["error_region_from"] = "circle enclosing rectangular_error_corners"
    return trusted_position(notice["ra"], notice["dec"], region, field="position", extra=extra)


def _generic_type(path: str, notice: dict[str, Any]) -> NoticeType:
    """A notice type the table does not know: read it from its core fields if it has an id."""
    if not _ids(notice) or (
        notice.get("alert_datetime") is None and notice.get("trigger_time") is None
    ):
        raise AlertParseError(
            "unknown-notice-type", detail=f"{path} is not a known notice type and has no id/time"
        )
    mission = notice.get("mission") if isinstance(notice.get("mission"), str) else None
    source = mission or path.split("/", 1)[0]
    messenger = str(notice.get("messenger") or "").lower()
    kind = _MESSENGER_KINDS.get(messenger, AlertKind.OTHER)
    return NoticeType(source, kind, _prefixed(_slug(source)), f"{source} notice ({path})")


# A notice without $schema, recognised by its fields: the first rule that matches names its type.
_MISSION_PATHS: dict[str, str] = {
    "swift": "swift/bat/guano",
    "icecube": "icecube/single_neutrino_alerts",
    "km3net": "km3net/alert",
    "super-kamiokande": "superk/sn_alert",
    "burstcube": "burstcube/alert",
    "glowbug": "glowbug/alert",
    "boom": "boom/alert",
    "heasarc": "heasarc/archive_alert",
    "svom": "svom/trigger",
    "einstein probe": "einstein_probe/wxt/alert",
    "chime": "chime/frb",
    "dsa-110": "dsa110/frb",
    "dsa110": "dsa110/frb",
}
_INSTRUMENT_PATHS = {
    "wxt": "einstein_probe/wxt/alert",
    "eclairs": "svom/trigger",
    "grm": "svom/trigger",
    "mxt": "svom/trigger",
    "vt": "svom/trigger",
}
_CHIME_FIELDS = frozenset({"dm_gal_ne_2001_max", "tsys", "npol", "sampling_time", "update_message"})
_DSA110_ID = re.compile(r"\d{6}[a-z]{1,6}")
_TIME_FIELDS = ("trigger_time", "alert_datetime", "observation_start")
_ID_FIELDS = ("id", "event_name", "ref_ID", "mission", "instrument")


def _path_from_fields(notice: Mapping[str, Any]) -> str | None:
    """The notice type of a notice without ``$schema``, from the fields that give it away."""
    if "ref_ID" in notice and (
        "coincident_events" in notice or "most_probable_direction" in notice
    ):
        return "icecube/lvk_nu_track_search"
    mission = str(notice.get("mission") or "").strip().lower()
    instrument = str(notice.get("instrument") or "").strip().lower()
    if mission == "fermi":
        return "fermi/lat/flare" if instrument == "lat" else "fermi/gbm/trigger"
    if mission == "maxi":
        return "maxi/gsc.known" if "band_flux_low" in notice else "maxi/gsc.unknown"
    if mission in _MISSION_PATHS:
        return _MISSION_PATHS[mission]
    if instrument in _INSTRUMENT_PATHS:
        return _INSTRUMENT_PATHS[instrument]
    if _CHIME_FIELDS & notice.keys():
        return "chime/frb"
    ids = _ids(notice)
    if "event_duration" in notice or (ids and _DSA110_ID.fullmatch(ids[0])):
        return "dsa110/frb"
    return None


def _path_from_topic(topic: str | None) -> str | None:
    """``swift/bat/guano`` for the topic ``gcn.notices.swift.bat.guano`` (known types only)."""
    if not topic or not topic.startswith("gcn.notices."):
        return None
    wanted = topic.removeprefix("gcn.notices.").lower()
    return next((p for p in NOTICE_TYPES if p.replace("/", ".") == wanted), None)


def _path_without_schema(notice: dict[str, Any], ctx: MessageContext | None) -> tuple[str, str]:
    """The notice type of a notice without ``$schema``, and how it was found.

    Raises:
        AlertParseError: ``unknown-notice-type`` when neither topic nor fields name one and the
            notice has no id or no time to be read generically.
    """
    path = _path_from_topic(ctx.topic if ctx else None)
    if path is not None:
        return path, "topic"
    path = _path_from_fields(notice)
    if path is not None:
        return path, "fields"
    mission = notice.get("mission") if isinstance(notice.get("mission"), str) else None
    return (mission or "unknown").strip().lower(), "fields (generic)"


def _looks_like_notice(document: Any, ctx: MessageContext) -> bool:
    if not isinstance(document, dict):
        return False
    schema = document.get("$schema")
    if isinstance(schema, str):
        return "/notices/" in schema
    # Without $schema: a notice's core fields, and none of an LVK alert's.
    return (
        "superevent_id" not in document
        and any(document.get(key) is not None for key in _TIME_FIELDS)
        and any(document.get(key) is not None for key in _ID_FIELDS)
    )


GCN_JSON = register_parser(
    Parser(
        name="gcn-json",
        container="json",
        accepts=_looks_like_notice,
        parse=lambda doc, ctx: alert_from_notice(doc, ctx),
        description="GCN unified-schema JSON notices (gcn.notices.* topics), with or without "
        "$schema",
    )
)
