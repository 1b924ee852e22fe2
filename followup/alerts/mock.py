"""Builders of realistic alerts for drills, the demo and tests: LVK ``igwn.gwalert`` and GCN notices.

:func:`make_mock_bns_alert` is the drill's and the demo's alert: a mock (``MS...``) BNS with a
small sky map around a position LCO can observe within the day. :func:`make_lvk_alert` writes the record exactly as gwcelery does: the JSON form with a base64 sky
map (what GCN Kafka carries) or the Avro container with raw bytes (what SCiMMA carries). The Avro
form needs the Avro schema from the ``igwn-gwalert-schema`` package, which is GPL-licensed and
therefore only a development dependency: it is imported when the Avro form is asked for, never at
import time.
"""

from __future__ import annotations

import base64
import io
import json
import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from followup.models import AlertType, utcnow

__all__ = [
    "MockAlert",
    "load_lvk_avro_schema",
    "make_gcn_notice",
    "make_lvk_alert",
    "make_lvk_record",
    "make_mock_bns_alert",
    "observable_position",
]

_DEFAULT_CLASSIFICATION = {"BNS": 0.95, "NSBH": 0.03, "BBH": 0.0, "Terrestrial": 0.02}
_DEFAULT_PROPERTIES = {"HasNS": 0.99, "HasRemnant": 0.95, "HasMassGap": 0.01}
_GCN_SCHEMA_BASE = "https://gcn.nasa.gov/schema/main/gcn/notices"


def _iso(value: datetime) -> str:
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond // 1000:03d}"
    return text + "Z"


def make_lvk_record(
    superevent_id: str,
    alert_type: AlertType | str = AlertType.PRELIMINARY,
    *,
    skymap: bytes | None = None,
    issued_at: datetime | None = None,
    event_time: datetime | None = None,
    far: float = 1e-10,
    significant: bool = True,
    classification: Mapping[str, float] | None = None,
    properties: Mapping[str, float] | None = None,
    group: str = "CBC",
    pipeline: str = "gstlal",
    search: str | None = None,
    instruments: Sequence[str] = ("H1", "L1", "V1"),
    duration: float | None = None,
    central_frequency: float | None = None,
    external_coinc: Mapping[str, Any] | None = None,
    urls: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Build an ``igwn.gwalert`` record as a dict, sky maps as raw bytes.

    Args:
        superevent_id: ``S250101ab``; mock events start with ``M`` (``MS250101ab``).
        alert_type: EARLYWARNING, PRELIMINARY, INITIAL, UPDATE or RETRACTION (``event`` is null).
        skymap: Multi-order FITS bytes of the sky map, or None.
        issued_at: ``time_created``; now when None.
        event_time: ``event.time``; a minute before ``issued_at`` when None.
        far: False-alarm rate in Hz.
        significant: LVK's significance flag.
        classification: BNS/NSBH/BBH/Terrestrial probabilities (CBC); defaults to a likely BNS,
            empty for the Burst group.
        properties: HasNS/HasRemnant/HasMassGap; defaults to a BNS-like set, empty for Burst.
        group: ``CBC`` or ``Burst``.
        pipeline: gstlal, MBTA, pycbc, spiir, CWB, oLIB...
        search: AllSky, BBH, EarlyWarning, MDC...; ``MDC`` for mock ids, else ``AllSky``.
        instruments: Detectors.
        duration: Burst duration in seconds (Burst only).
        central_frequency: Burst central frequency in Hz (Burst only).
        external_coinc: ``observatory``, ``search``, ``gcn_notice_id``, ``ivorn``,
            ``time_difference``, ``time_coincidence_far``, ``time_sky_position_coincidence_far``,
            ``combined_skymap`` (bytes); missing keys get plausible values.
        urls: Defaults to the GraceDB page of the superevent.

    Returns:
        The record.

    Raises:
        ValueError: An unknown alert type or an empty superevent id.
    """
    if not superevent_id or not superevent_id.strip():
        raise ValueError("superevent_id must be a non-empty string such as 'S250101ab'")
    kind = AlertType(alert_type.upper() if isinstance(alert_type, str) else alert_type)
    issued = issued_at or datetime.now(UTC)
    record: dict[str, Any] = {
        "alert_type": kind.value,
        "time_created": _iso(issued),
        "superevent_id": superevent_id,
        "urls": dict(
            urls or {"gracedb": f"https://gracedb.ligo.org/superevents/{superevent_id}/view/"}
        ),
        "event": None,
        "external_coinc": None,
    }
    if kind is AlertType.RETRACTION:
        return record
    burst = group.lower() == "burst"
    record["event"] = {
        "time": _iso(event_time or issued - timedelta(minutes=1)),
        "far": float(far),
        "significant": bool(significant),
        "instruments": list(instruments),
        "group": group,
        "pipeline": pipeline,
        "search": search or ("MDC" if superevent_id.startswith("M") else "AllSky"),
        "classification": dict(
            classification
            if classification is not None
            else ({} if burst else _DEFAULT_CLASSIFICATION)
        ),
        "properties": dict(
            properties if properties is not None else ({} if burst else _DEFAULT_PROPERTIES)
        ),
        "duration": duration,
        "central_frequency": central_frequency,
        "skymap": skymap,
    }
    if external_coinc is not None:
        coinc = dict(external_coinc)
        record["external_coinc"] = {
            "gcn_notice_id": coinc.get("gcn_notice_id", 524666471),
            "ivorn": coinc.get("ivorn", "ivo://nasa.gsfc.gcn/Fermi#GBM_Fin_Pos_524666471"),
            "observatory": coinc.get("observatory", "Fermi"),
            "search": coinc.get("search", "GRB"),
            "time_difference": float(coinc.get("time_difference", 2.0)),
            "time_coincidence_far": coinc.get("time_coincidence_far"),
            "time_sky_position_coincidence_far": coinc.get("time_sky_position_coincidence_far"),
            "combined_skymap": coinc.get("combined_skymap"),
        }
    return record


def make_lvk_alert(
    superevent_id: str,
    alert_type: AlertType | str = AlertType.PRELIMINARY,
    *,
    form: Literal["json", "avro"] = "json",
    **fields: Any,
) -> bytes:
    """Build an LVK alert message, byte for byte as it travels on Kafka.

    Args:
        superevent_id: The superevent id (``MS...`` for a mock event).
        alert_type: The alert type.
        form: ``json`` (GCN: base64 sky maps, UTF-8 JSON) or ``avro`` (SCiMMA: an Avro container
            file with the schema embedded and raw sky-map bytes).
        **fields: Everything :func:`make_lvk_record` takes (``skymap``, ``issued_at``,
            ``event_time``, ``far``, ``significant``, ``classification``, ``properties``,
            ``external_coinc``...).

    Returns:
        The message bytes.

    Raises:
        ImportError: ``form="avro"`` without the igwn-gwalert-schema package installed.
        ValueError: A bad argument (see :func:`make_lvk_record`) or an unknown form.

    Example:
        >>> raw = make_lvk_alert("MS250101ab", "PRELIMINARY", skymap=fits_bytes)  # doctest: +SKIP
    """
    record = make_lvk_record(superevent_id, alert_type, **fields)
    if form == "json":
        return json.dumps(_base64_maps(record)).encode("utf-8")
    if form == "avro":
        import fastavro

        schema = load_lvk_avro_schema()
        buffer = io.BytesIO()
        fastavro.writer(buffer, schema, [record])
        return buffer.getvalue()
    raise ValueError(f"form must be 'json' or 'avro', not {form!r}")


def _base64_maps(record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    if isinstance(out.get("event"), dict):
        event = dict(out["event"])
        if isinstance(event.get("skymap"), bytes | bytearray):
            event["skymap"] = base64.b64encode(event["skymap"]).decode("ascii")
        out["event"] = event
    if isinstance(out.get("external_coinc"), dict):
        coinc = dict(out["external_coinc"])
        if isinstance(coinc.get("combined_skymap"), bytes | bytearray):
            coinc["combined_skymap"] = base64.b64encode(coinc["combined_skymap"]).decode("ascii")
        out["external_coinc"] = coinc
    return out


def load_lvk_avro_schema() -> dict[str, Any]:
    """The parsed ``igwn.alerts.Alert`` Avro schema from the igwn-gwalert-schema package.

    Raises:
        ImportError: The package (GPL-3.0+, a development dependency) is not installed.
    """
    import importlib.resources
    import importlib.util

    import fastavro

    if importlib.util.find_spec("igwn_gwalert_schema") is None:
        raise ImportError(
            "the Avro form of LVK alerts needs the igwn-gwalert-schema package (GPL-3.0+, a "
            "development dependency of followup): pip install igwn-gwalert-schema"
        )
    text = (
        importlib.resources.files("igwn_gwalert_schema")
        .joinpath("igwn.alerts.Alert.avsc")
        .read_text(encoding="utf-8")
    )
    return fastavro.parse_schema(json.loads(text))


def make_gcn_notice(
    path: str = "swift/bat/Guano",
    *,
    event_id: str | list[str] = "1234567890",
    alert_type: Literal["initial", "subsequent", "update", "retraction"] = "initial",
    alert_tense: str = "current",
    alert_datetime: datetime | None = None,
    trigger_time: datetime | None = None,
    ra: float | None = 123.456,
    dec: float | None = -12.345,
    ra_dec_error: float | list[float] | None = 0.05,
    record_number: int = 1,
    **fields: Any,
) -> bytes:
    """Build a small GCN unified-schema JSON notice.

    Args:
        path: Notice type path under ``gcn/notices`` (``swift/bat/Guano``, ``fermi/gbm/trigger``,
            ``icecube/single_neutrino_alerts``, ``einstein_probe/wxt/alert``...).
        event_id: The notice's ``id``.
        alert_type: GCN alert type.
        alert_tense: ``current``, ``test``, ``injection``...
        alert_datetime: When issued; now when None.
        trigger_time: When triggered; a minute before issue when None.
        ra: Right ascension in degrees (None for no position).
        dec: Declination in degrees.
        ra_dec_error: Error radius in degrees, or ``[a, b, pa]``.
        record_number: Notice sequence number.
        **fields: More notice fields (``far``, ``classification``, ``mission``...).

    Returns:
        UTF-8 JSON bytes.
    """
    issued = alert_datetime or datetime.now(UTC)
    notice: dict[str, Any] = {
        "$schema": f"{_GCN_SCHEMA_BASE}/{path}.schema.json",
        "alert_datetime": _iso(issued),
        "alert_tense": alert_tense,
        "alert_type": alert_type,
        "record_number": record_number,
        "trigger_time": _iso(trigger_time or issued - timedelta(minutes=1)),
        "id": event_id if isinstance(event_id, list) else [event_id],
    }
    if alert_type != "retraction" and ra is not None and dec is not None:
        notice.update(ra=ra, dec=dec)
        if ra_dec_error is not None:
            notice["ra_dec_error"] = ra_dec_error
    notice.update(fields)
    return json.dumps(notice).encode("utf-8")


@dataclass(frozen=True)
class MockAlert:
    """A mock LVK alert as it travels on Kafka, and where its sky map peaks.

    Attributes:
        raw: The message bytes (JSON form, base64 multi-order sky map).
        event_id: The mock superevent id (``MS...``).
        ra: Right ascension of the sky map's peak, degrees.
        dec: Declination of the sky map's peak, degrees.
        event_time: The merger time (UTC).
    """

    raw: bytes
    event_id: str
    ra: float
    dec: float
    event_time: datetime


def observable_position(now: datetime) -> tuple[float, float]:
    """A position opposite the Sun that some LCO site sees at night within the next day.

    The Sun is taken at the start of the UTC day, so every alert of one day points at the same
    field: with the same sandbox seed, a replay sees the same stars and noise.

    Returns:
        Right ascension and declination in degrees.
    """
    from astropy.coordinates import get_sun
    from astropy.time import Time

    from followup.sites import configure_offline_iers
    from followup.visibility import VisibilityCalculator

    configure_offline_iers()
    sun = get_sun(Time(now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)))
    ra = (float(sun.ra.deg) + 180.0) % 360.0
    calc = VisibilityCalculator(now, span_hours=24, max_airmass=1.6)
    for dec in (-30.0, -15.0, 0.0, 15.0, 30.0, -45.0):
        if calc.windows(ra, dec, min_window_minutes=60).windows[0]:
            return ra, dec
    return ra, -30.0


def make_mock_bns_alert(
    now: datetime | None = None,
    *,
    event_id: str | None = None,
    position: tuple[float, float] | None = None,
) -> MockAlert:
    """A mock LVK PRELIMINARY BNS alert (JSON form, embedded multi-order sky map).

    The sky map is a Gaussian blob (sigma 0.25 deg, 90% area about 1.2 deg2) around a position
    LCO can observe within the day (:func:`observable_position`), or around ``position``.

    Args:
        now: Issue time (UTC); now when None.
        event_id: The superevent id; ``MS<yymmdd><3 random letters>`` when None.
        position: RA and Dec of the map's peak in degrees; observable tonight when None.

    Returns:
        The alert and its peak.
    """
    from followup.skymap import make_gaussian_skymap

    now = now or utcnow()
    letters = "".join(random.choice(string.ascii_lowercase) for _ in range(3))
    event_id = event_id or f"MS{now:%y%m%d}{letters}"
    ra, dec = position if position is not None else observable_position(now)
    skymap = make_gaussian_skymap(
        ra, dec, 0.25, distance_mpc=120.0, distance_sigma_mpc=25.0, object_name=event_id
    )
    event_time = now - timedelta(minutes=2)
    raw = make_lvk_alert(
        event_id,
        "PRELIMINARY",
        skymap=skymap,
        issued_at=now,
        event_time=event_time,
        far=3.2e-10,
        significant=True,
        search="MDC",
        classification={"BNS": 0.93, "NSBH": 0.04, "BBH": 0.0, "Terrestrial": 0.03},
        properties={"HasNS": 0.99, "HasRemnant": 0.95, "HasMassGap": 0.01},
    )
    return MockAlert(raw=raw, event_id=event_id, ra=ra, dec=dec, event_time=event_time)
