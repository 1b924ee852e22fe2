"""VOEvents of any issuer: GCN Classic (``gcn.classic.voevent.*``), legacy LVK, and the rest.

The XML is read with the standard library (namespaces stripped, DTDs refused). The IVORN names
the issuer: ``ivo://gwnet/...`` is LVK; ``ivo://nasa.gsfc.gcn/<MISSION>#<notice>_...`` is a GCN
Classic notice whose ``Packet_Type`` names the notice type (61 SWIFT_BAT_GRB_POS_ACK, 112
FERMI_GBM_GND_POS, 174 ICECUBE_ASTROTRACK_BRONZE...). The event id is built the same way as for the
JSON notices of the same mission, so a Swift event keeps one id across formats. Any other issuer's
VOEvent is read from the parts every VOEvent has (``Who``, ``WhereWhen``, ``Why``, ``meta.id``
params) when it carries a position; known issuers add their own fields on top. A position that is
a placeholder (RA 0 with an error of 0, and the like) is flagged, never trusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from xml.etree import ElementTree

from followup.alerts.fields import (
    as_bool,
    as_float,
    neutrino_summary,
    parse_time,
    trusted_position,
)
from followup.alerts.lvk import is_test_superevent
from followup.alerts.registry import MessageContext, Parser, register_parser
from followup.exceptions import AlertParseError
from followup.models import (
    Alert,
    AlertKind,
    AlertType,
    ErrorRegion,
    ExternalCoincidence,
    SkyPosition,
)

__all__ = ["PACKET_TYPES", "VOEVENT", "VOEventDocument", "alert_from_voevent", "read_voevent"]

SECONDS_PER_YEAR = 365.25 * 86400.0

PACKET_TYPES: dict[int, tuple[str, AlertType]] = {
    53: ("INTEGRAL_WAKEUP", AlertType.INITIAL),
    54: ("INTEGRAL_REFINED", AlertType.UPDATE),
    55: ("INTEGRAL_OFFLINE", AlertType.UPDATE),
    60: ("SWIFT_BAT_GRB_ALERT", AlertType.INITIAL),
    61: ("SWIFT_BAT_GRB_POS_ACK", AlertType.INITIAL),
    62: ("SWIFT_BAT_GRB_POS_NACK", AlertType.INITIAL),
    67: ("SWIFT_XRT_POSITION", AlertType.UPDATE),
    81: ("SWIFT_UVOT_POS", AlertType.UPDATE),
    97: ("SWIFT_BAT_QL_POS", AlertType.INITIAL),
    105: ("AGILE_MCAL_ALERT", AlertType.INITIAL),
    110: ("FERMI_GBM_ALERT", AlertType.INITIAL),
    111: ("FERMI_GBM_FLT_POS", AlertType.UPDATE),
    112: ("FERMI_GBM_GND_POS", AlertType.UPDATE),
    115: ("FERMI_GBM_FIN_POS", AlertType.UPDATE),
    131: ("FERMI_GBM_SUBTHRESH", AlertType.INITIAL),
    149: ("SNEWS", AlertType.INITIAL),
    150: ("LVC_PRELIMINARY", AlertType.PRELIMINARY),
    151: ("LVC_INITIAL", AlertType.INITIAL),
    152: ("LVC_UPDATE", AlertType.UPDATE),
    163: ("LVC_EARLY_WARNING", AlertType.EARLYWARNING),
    164: ("LVC_RETRACTION", AlertType.RETRACTION),
    173: ("ICECUBE_ASTROTRACK_GOLD", AlertType.INITIAL),
    174: ("ICECUBE_ASTROTRACK_BRONZE", AlertType.INITIAL),
    176: ("ICECUBE_CASCADE", AlertType.INITIAL),
}
"""GCN Classic packet types this parser names: number -> (notice type, alert type)."""

# GCN Classic missions (the IVORN fragment authority) -> (source, kind, event-id prefix).
_MISSIONS: dict[str, tuple[str, AlertKind, str]] = {
    "SWIFT": ("Swift", AlertKind.GAMMA_RAY, "Swift"),
    "FERMI": ("Fermi", AlertKind.GAMMA_RAY, "Fermi-GBM"),
    "INTEGRAL": ("INTEGRAL", AlertKind.GAMMA_RAY, "INTEGRAL"),
    "AGILE": ("AGILE", AlertKind.GAMMA_RAY, "AGILE"),
    "SNEWS": ("SNEWS", AlertKind.NEUTRINO, "SNEWS"),
    "AMON": ("IceCube", AlertKind.NEUTRINO, "IceCube"),
    "MAXI": ("MAXI", AlertKind.X_RAY, "MAXI"),
    "KONUS": ("Konus-Wind", AlertKind.GAMMA_RAY, "Konus"),
    "IPN": ("IPN", AlertKind.GAMMA_RAY, "IPN"),
}
_LVK_ALERT_TYPES = {
    "earlywarning": AlertType.EARLYWARNING,
    "preliminary": AlertType.PRELIMINARY,
    "initial": AlertType.INITIAL,
    "update": AlertType.UPDATE,
    "retraction": AlertType.RETRACTION,
}
_CONCEPT_KINDS = (
    ("neutrino", AlertKind.NEUTRINO),
    ("em.gamma", AlertKind.GAMMA_RAY),
    ("em.x-ray", AlertKind.X_RAY),
    ("em.opt", AlertKind.OPTICAL),
    ("em.radio", AlertKind.RADIO),
)
_TEST_FLAGS = ("Test", "Test_Submission", "InternalTest")


@dataclass
class VOEventDocument:
    """The parts of a VOEvent that alerts need, namespaces stripped.

    Attributes:
        ivorn: The event's IVORN.
        role: ``observation``, ``test`` or ``utility``.
        date: ``Who/Date`` (when the packet was made), UTC.
        params: Top-level ``What/Param`` values by name.
        groups: ``What/Group`` params by group name, then param name.
        units: Units of params by name (top level and groups).
        ucds: UCDs of params by name (``meta.id`` marks identifiers).
        author: ``Who/Author/shortName``, when given.
        event_time: ``WhereWhen`` ISOTime, UTC.
        ra, dec, error_radius: ``WhereWhen`` Position2D in degrees, when given.
        names: ``Why/Inference/Name`` values.
        concepts: ``Why/Inference/Concept`` values.
        description: ``What/Description`` (or the root description).
        citations: ``(cite, ivorn)`` pairs of ``Citations/EventIVORN``.
    """

    ivorn: str
    role: str
    date: datetime | None
    params: dict[str, str] = field(default_factory=dict)
    groups: dict[str, dict[str, str]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    ucds: dict[str, str] = field(default_factory=dict)
    author: str | None = None
    event_time: datetime | None = None
    ra: float | None = None
    dec: float | None = None
    error_radius: float | None = None
    names: list[str] = field(default_factory=list)
    concepts: list[str] = field(default_factory=list)
    description: str | None = None
    citations: list[tuple[str, str]] = field(default_factory=list)

    def param(self, name: str) -> str | None:
        """A param by name, looked up at the top level first, then in every group."""
        if name in self.params:
            return self.params[name]
        for group in self.groups.values():
            if name in group:
                return group[name]
        return None

    @property
    def authority(self) -> str:
        """``nasa.gsfc.gcn/SWIFT`` of ``ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_...``."""
        return self.ivorn.removeprefix("ivo://").split("#", 1)[0]

    @property
    def fragment(self) -> str:
        """``BAT_GRB_Pos_1125809-092`` of ``ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_1125809-092``."""
        return self.ivorn.split("#", 1)[1] if "#" in self.ivorn else ""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].split(":")[-1]


def _child(element: ElementTree.Element, name: str) -> ElementTree.Element | None:
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _descendants(element: ElementTree.Element, name: str) -> list[ElementTree.Element]:
    return [e for e in element.iter() if _local(e.tag) == name]


def _text(element: ElementTree.Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    text = element.text.strip()
    return text or None


def read_voevent(root: ElementTree.Element) -> VOEventDocument:
    """Extract the alert-relevant parts of a VOEvent.

    Raises:
        AlertParseError: ``not-a-voevent`` when the root is something else, ``invalid-voevent``
            when the IVORN is missing or a coordinate is not a number.
    """
    if _local(root.tag) != "VOEvent":
        raise AlertParseError("not-a-voevent", detail=f"root element {root.tag[:80]!r}")
    ivorn = (root.get("ivorn") or "").strip()
    if not ivorn.startswith("ivo://"):
        raise AlertParseError("invalid-voevent", detail="missing or malformed ivorn")
    who = _child(root, "Who")
    date_text = _text(_child(who, "Date")) if who is not None else None
    author = _child(who, "Author") if who is not None else None
    doc = VOEventDocument(
        ivorn=ivorn,
        role=(root.get("role") or "observation").strip().lower(),
        date=parse_time(date_text, field="Who/Date") if date_text else None,
        author=_text(_child(author, "shortName")) if author is not None else None,
    )
    what = _child(root, "What")
    if what is not None:
        for element in what:
            tag = _local(element.tag)
            if tag == "Param":
                _read_param(element, doc.params, doc)
            elif tag == "Group":
                name = element.get("name") or element.get("type") or "group"
                group = doc.groups.setdefault(name, {})
                for param in element:
                    if _local(param.tag) == "Param":
                        _read_param(param, group, doc)
            elif tag == "Description" and doc.description is None:
                doc.description = _text(element)
    where_when = _child(root, "WhereWhen")
    if where_when is not None:
        iso = next((t for t in _descendants(where_when, "ISOTime") if _text(t)), None)
        if iso is not None:
            doc.event_time = parse_time(_text(iso), field="WhereWhen/ISOTime")
        position2d = next(iter(_descendants(where_when, "Position2D")), None)
        if position2d is not None:
            c1 = next(iter(_descendants(position2d, "C1")), None)
            c2 = next(iter(_descendants(position2d, "C2")), None)
            err = next(iter(_descendants(position2d, "Error2Radius")), None)
            doc.ra = as_float(_text(c1), field="Position2D/C1")
            doc.dec = as_float(_text(c2), field="Position2D/C2")
            doc.error_radius = as_float(_text(err), field="Position2D/Error2Radius")
    why = _child(root, "Why")
    if why is not None:
        doc.names = [t for e in _descendants(why, "Name") if (t := _text(e))]
        doc.concepts = [t for e in _descendants(why, "Concept") if (t := _text(e))]
    citations = _child(root, "Citations")
    if citations is not None:
        doc.citations = [
            ((e.get("cite") or "").strip(), t)
            for e in _descendants(citations, "EventIVORN")
            if (t := _text(e))
        ]
    if doc.description is None:
        doc.description = _text(_child(root, "Description"))
    return doc


def _read_param(element: ElementTree.Element, into: dict[str, str], doc: VOEventDocument) -> None:
    name = element.get("name")
    if not name:
        return
    value = element.get("value")
    if value is None:
        value = _text(_child(element, "Value")) or ""
    into[name] = value.strip()
    if element.get("unit"):
        doc.units[name] = element.get("unit", "")
    if element.get("ucd"):
        doc.ucds[name] = element.get("ucd", "")


def alert_from_voevent(root: ElementTree.Element, ctx: MessageContext | None = None) -> Alert:
    """Normalise a GCN Classic or legacy LVK VOEvent.

    Returns:
        The alert (``format="voevent"``); ``extra`` keeps the IVORN, role, packet type, notice
        type (``gcn.classic.voevent.<TYPE>``, or ``voevent.<issuer>``), every param and the
        superseded IVORNs.

    Raises:
        AlertParseError: ``not-a-voevent``, ``invalid-voevent``, ``unknown-voevent`` (an issuer
            this parser does not know, and no position), ``missing-time``,
            ``missing-event-id``, ``invalid-position``...
    """
    doc = read_voevent(root)
    if doc.authority.startswith("gwnet/"):
        return _lvk_alert(doc)
    if doc.authority.startswith("nasa.gsfc.gcn/"):
        return _gcn_classic_alert(doc)
    return _any_issuer_alert(doc)


def _common_extra(doc: VOEventDocument, packet_type: int | None) -> dict[str, Any]:
    extra: dict[str, Any] = {"ivorn": doc.ivorn, "role": doc.role, "params": dict(doc.params)}
    if doc.groups:
        extra["groups"] = {k: dict(v) for k, v in doc.groups.items()}
    if packet_type is not None:
        extra["packet_type"] = packet_type
        name = PACKET_TYPES.get(packet_type, (f"PACKET_TYPE_{packet_type}", None))[0]
        extra["notice_type"] = f"gcn.classic.voevent.{name}"
    if doc.names:
        extra["names"] = doc.names
    supersedes = [ivorn for cite, ivorn in doc.citations if cite == "supersedes"]
    if supersedes:
        extra["supersedes"] = supersedes
    return extra


def _packet_type(doc: VOEventDocument) -> int | None:
    value = doc.param("Packet_Type")
    try:
        return int(value) if value is not None else None
    except ValueError:
        raise AlertParseError("invalid-voevent", detail=f"Packet_Type {value!r}") from None


def _issued_at(doc: VOEventDocument) -> datetime:
    if doc.date is not None:
        return doc.date
    raise AlertParseError("missing-time", detail="VOEvent without Who/Date")


def _lvk_alert(doc: VOEventDocument) -> Alert:
    packet_type = _packet_type(doc)
    extra = _common_extra(doc, packet_type)
    event_id = (doc.param("GraceID") or "").strip()
    if not event_id:
        raise AlertParseError("missing-event-id", detail="LVK VOEvent without GraceID")
    alert_type = _LVK_ALERT_TYPES.get((doc.param("AlertType") or "").strip().lower())
    if alert_type is None and packet_type in PACKET_TYPES:
        alert_type = PACKET_TYPES[packet_type][1]
    if as_bool(doc.param("Retraction"), field="Retraction"):
        alert_type = AlertType.RETRACTION
    if alert_type is None:
        raise AlertParseError("invalid-alert-type", detail=f"AlertType {doc.param('AlertType')!r}")
    search = doc.param("Search")
    reasons = []
    if doc.role == "test":
        reasons.append("VOEvent role test")
    if as_bool(doc.param("HardwareInj"), field="HardwareInj"):
        reasons.append("hardware injection")
    if is_test_superevent(event_id, search):
        reasons.append("mock or test superevent")
    if reasons:
        extra["test_reason"] = "; ".join(reasons)
    classification = _float_group(doc.groups.get("Classification", {}))
    properties = _float_group(doc.groups.get("Properties", {}))
    for old, new in (("ProbHasNS", "HasNS"), ("ProbHasRemnant", "HasRemnant")):
        value = as_float(doc.params.get(old), field=old)
        if value is not None:
            properties.setdefault(new, value)
    if alert_type is not AlertType.RETRACTION:
        # Old VOEvents have no Classification group but class params at the top level.
        for name in ("BNS", "NSBH", "BBH", "MassGap", "Terrestrial"):
            value = as_float(doc.params.get(name), field=name)
            if value is not None:
                classification.setdefault(name, value)
    skymap_url = doc.param("skymap_fits") or doc.param("skymap_fits_basic")
    significant = as_bool(doc.param("Significant"), field="Significant")
    instruments = [i.strip() for i in (doc.param("Instruments") or "").split(",") if i.strip()]
    urls = {}
    if doc.param("EventPage"):
        urls["gracedb"] = doc.param("EventPage") or ""
    coinc = None
    external = doc.groups.get("External Coincidence")
    if external:
        coinc = ExternalCoincidence(
            observatory=external.get("External_Observatory"),
            search=external.get("External_Search"),
            gcn_notice_id=external.get("External_GCN_Notice_Id"),
            ivorn=external.get("External_Ivorn"),
            time_difference_s=as_float(external.get("Time_Difference"), field="Time_Difference"),
            time_coincidence_far=as_float(
                external.get("Time_Coincidence_FAR"), field="Time_Coincidence_FAR"
            ),
            time_sky_position_coincidence_far=as_float(
                external.get("Time_Sky_Position_Coincidence_FAR"),
                field="Time_Sky_Position_Coincidence_FAR",
            ),
        )
        if external.get("joint_skymap_fits"):
            urls["joint_skymap_fits"] = external["joint_skymap_fits"]
    if skymap_url:
        urls["skymap_fits"] = skymap_url
    return Alert(
        source="LVK",
        kind=AlertKind.GW,
        format="voevent",
        event_id=event_id,
        alert_type=alert_type,
        issued_at=_issued_at(doc),
        event_time=doc.event_time,
        far_hz=_non_negative(as_float(doc.param("FAR"), field="FAR"), "FAR"),
        significant=significant,
        classification=classification,
        properties=properties,
        skymap_url=skymap_url,
        is_test=bool(reasons),
        instruments=instruments,
        group=doc.param("Group"),
        pipeline=doc.param("Pipeline"),
        search=search,
        external_coinc=coinc,
        urls=urls,
        title=f"LVK {alert_type.value} VOEvent for {event_id}",
        extra=extra,
    )


def _float_group(group: dict[str, str]) -> dict[str, float]:
    result = {}
    for name, value in group.items():
        number = as_float(value, field=name)
        if number is not None:
            result[name] = number
    return result


def _non_negative(value: float | None, field_name: str) -> float | None:
    if value is not None and value < 0:
        raise AlertParseError("invalid-number", detail=f"{field_name}: negative")
    return value


def _gcn_classic_alert(doc: VOEventDocument) -> Alert:
    packet_type = _packet_type(doc)
    extra = _common_extra(doc, packet_type)
    mission_key = doc.authority.split("/", 1)[1].upper() if "/" in doc.authority else ""
    source, kind, prefix = _MISSIONS.get(mission_key, (mission_key.title(), AlertKind.OTHER, ""))
    if kind is AlertKind.OTHER:
        for concept in doc.concepts:
            match = next((k for needle, k in _CONCEPT_KINDS if needle in concept.lower()), None)
            if match is not None:
                kind = match
                break
    if mission_key == "AMON":
        run_id, event_number = doc.param("run_id"), doc.param("event_id")
        trigger = f"{run_id}_{event_number}" if run_id and event_number else doc.param("AMON_ID")
    else:
        trigger = doc.param("TrigID") or doc.param("Trig_ID") or doc.param("Trigger_ID")
    if not trigger:
        raise AlertParseError("missing-event-id", detail=f"{doc.ivorn}: no TrigID")
    event_id = f"{prefix or source}-{trigger.strip()}"

    alert_type = PACKET_TYPES[packet_type][1] if packet_type in PACKET_TYPES else AlertType.INITIAL
    revision = doc.param("Rev")
    if mission_key == "AMON" and revision not in (None, "", "0"):
        alert_type = AlertType.UPDATE
    if as_bool(doc.param("Retraction"), field="Retraction"):
        alert_type = AlertType.RETRACTION

    reasons = []
    if doc.role == "test":
        reasons.append("VOEvent role test")
    for flag in _TEST_FLAGS:
        if as_bool(doc.param(flag), field=flag):
            reasons.append(f"{flag} flag")
    if reasons:
        extra["test_reason"] = "; ".join(reasons)
    not_grb = as_bool(doc.param("Def_NOT_a_GRB"), field="Def_NOT_a_GRB")
    if not_grb:
        extra["def_not_a_grb"] = True

    sky = None
    if alert_type is not AlertType.RETRACTION:
        sky = _classic_position(doc, extra)

    far_hz = None
    far = as_float(doc.param("FAR"), field="FAR")
    if far is not None:
        unit = doc.units.get("FAR", "").replace(" ", "").lower()
        far_hz = far / SECONDS_PER_YEAR if unit in {"yr^-1", "1/yr", "yr-1", "/yr"} else far
        far_hz = _non_negative(far_hz, "FAR")
    title = doc.description or f"{source} {extra.get('notice_type', 'VOEvent')}"
    signalness = as_float(doc.param("signalness"), field="signalness")
    energy = as_float(doc.param("energy"), field="energy")
    if signalness is not None or energy is not None:
        if signalness is not None:
            extra["signalness"] = signalness
        if energy is not None and doc.units.get("energy", "TeV").strip().lower() == "tev":
            extra["energy_tev"] = energy
        title = f"{source} {event_id}: {neutrino_summary(extra)}"
    urls = {}
    for name in ("LightCurve_URL", "LC_URL", "Loc_Map_URL", "LocationMap_URL"):
        value = doc.param(name)
        if value and value.startswith("http"):
            urls[name.lower()] = value
    return Alert(
        source=source,
        kind=kind,
        format="voevent",
        event_id=event_id,
        alert_type=alert_type,
        issued_at=_issued_at(doc),
        event_time=doc.event_time,
        far_hz=far_hz,
        position=sky,
        is_test=bool(reasons),
        instruments=_instruments(doc),
        urls=urls,
        title=title[:300],
        extra=extra,
    )


def _classic_position(doc: VOEventDocument, extra: dict[str, Any]) -> SkyPosition | None:
    if doc.ra is None or doc.dec is None:
        return None
    if as_bool(doc.param("RADec_valid"), field="RADec_valid") is False:
        # Real AMON IceCube track notices carry a good position with this flag false, so the
        # flag is recorded, not obeyed; a placeholder position is recognised by its values.
        extra["radec_valid_flag"] = False
    radius = doc.error_radius
    region = ErrorRegion(radius_deg=radius) if radius is not None and radius >= 0 else None
    return trusted_position(doc.ra, doc.dec, region, field="WhereWhen/Position2D", extra=extra)


_CITATION_TYPES = {
    "followup": AlertType.UPDATE,
    "supersedes": AlertType.UPDATE,
    "retraction": AlertType.RETRACTION,
}


def _any_issuer_alert(doc: VOEventDocument) -> Alert:
    """A VOEvent of an issuer this parser has no rules for, read from what every VOEvent has.

    Raises:
        AlertParseError: ``unknown-voevent`` without a position, ``missing-time``,
            ``missing-event-id``.
    """
    if doc.ra is None or doc.dec is None:
        raise AlertParseError(
            "unknown-voevent",
            detail=f"issuer {doc.authority[:100]!r} is not known and the VOEvent has no position",
        )
    extra = _common_extra(doc, None)
    issuer = doc.authority.split("/", 1)[0] or doc.authority
    extra["notice_type"] = f"voevent.{issuer}"
    source = " ".join((doc.author or issuer).split())[:64]
    kind = next(
        (
            k
            for concept in doc.concepts
            for needle, k in _CONCEPT_KINDS
            if needle in concept.lower()
        ),
        AlertKind.OTHER,
    )
    alert_type = next(
        (_CITATION_TYPES[c] for c, _ in doc.citations if c in _CITATION_TYPES), AlertType.INITIAL
    )
    reasons = [f"VOEvent role {doc.role}"] if doc.role in ("test", "utility") else []
    if reasons:
        extra["test_reason"] = "; ".join(reasons)
    sky = None if alert_type is AlertType.RETRACTION else _classic_position(doc, extra)
    issued_at = doc.date or doc.event_time
    if issued_at is None:
        raise AlertParseError("missing-time", detail="VOEvent without Who/Date or ISOTime")
    return Alert(
        source=source,
        kind=kind,
        format="voevent",
        event_id=_any_issuer_event_id(doc, source),
        alert_type=alert_type,
        issued_at=issued_at,
        event_time=doc.event_time,
        position=sky,
        is_test=bool(reasons),
        title=(doc.description or f"{source} VOEvent")[:300],
        extra=extra,
    )


def _any_issuer_event_id(doc: VOEventDocument, source: str) -> str:
    """The event's name (``Why/Inference/Name``), else its ``meta.id`` param, else the IVORN's.

    Raises:
        AlertParseError: ``missing-event-id`` when the VOEvent names nothing.
    """
    if doc.names:
        return doc.names[0].strip()
    for name, ucd in doc.ucds.items():
        value = doc.param(name)
        if "meta.id" in ucd and value:
            return f"{source}-{value.strip()}"
    tail = doc.fragment or doc.ivorn.rstrip("/").rsplit("/", 1)[-1]
    if not tail:
        raise AlertParseError("missing-event-id", detail=f"{doc.ivorn[:100]}: names no event")
    return f"{source}-{tail.strip()}"


def _instruments(doc: VOEventDocument) -> list[str]:
    fragment = doc.fragment.upper()
    for name in ("BAT", "XRT", "UVOT", "GBM", "LAT", "MCAL", "GSC"):
        if fragment.startswith(name) or f"_{name}_" in fragment or fragment.startswith(f"{name}_"):
            return [name]
    return []


def _looks_like_voevent(document: Any, ctx: MessageContext) -> bool:
    return isinstance(document, ElementTree.Element) and _local(document.tag) == "VOEvent"


VOEVENT = register_parser(
    Parser(
        name="voevent",
        container="xml",
        accepts=_looks_like_voevent,
        parse=lambda doc, ctx: alert_from_voevent(doc, ctx),
        description="VOEvents: GCN Classic (Swift, Fermi, AMON...), LVK, and any issuer's with a "
        "position",
    )
)
