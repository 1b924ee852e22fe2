"""The project's own alert fixtures (tests/data/alerts) cover every format family; mock builders."""

from __future__ import annotations

import base64
import io
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from followup.alerts import PARSERS, detect_format, parse_message, parse_object
from followup.alerts.circulars import event_id_from_subject
from followup.alerts.fields import decode_skymap, error_region, fits_header_values, parse_time
from followup.alerts.mock import make_gcn_notice, make_lvk_alert, make_lvk_record
from followup.exceptions import AlertParseError
from followup.models import AlertKind, AlertType
from tests.alert_helpers import DATA, make_multiorder_skymap

# file, format, source, kind, event id, alert type, is_test
FIXTURES = [
    ("lvk-S250101ab-preliminary.json", "lvk-json", "LVK", "gw", "S250101ab", "PRELIMINARY", False),
    ("lvk-MS250101cd-update-extcoinc.json", "lvk-json", "LVK", "gw", "MS250101cd", "UPDATE", True),
    ("lvk-S250101ab-retraction.json", "lvk-json", "LVK", "gw", "S250101ab", "RETRACTION", False),
    ("gcn-swift-guano-initial.json", "gcn-json", "Swift", "gamma-ray", "Swift-760000123", "INITIAL", False),
    ("gcn-swift-guano-update-position.json", "gcn-json", "Swift", "gamma-ray", "Swift-760000123", "UPDATE", False),
    ("gcn-swift-guano-retraction.json", "gcn-json", "Swift", "gamma-ray", "Swift-760000123", "RETRACTION", False),
    ("gcn-icecube-gold-track.json", "gcn-json", "IceCube", "neutrino", "IceCube-250203A", "INITIAL", False),
    ("gcn-icecube-lvk-nu-track-search.json", "gcn-json", "IceCube", "neutrino", "IceCube-LVK-S250101ab", "INITIAL", False),
    ("gcn-fermi-gbm-ground.json", "gcn-json", "Fermi", "gamma-ray", "Fermi-GBM-762741234", "UPDATE", False),
    ("gcn-einstein-probe-wxt.json", "gcn-json", "Einstein Probe", "x-ray", "EP-01712345678", "INITIAL", False),
    ("gcn-svom-eclairs-test.json", "gcn-json", "SVOM", "gamma-ray", "sb25050601", "INITIAL", True),
    ("gcn-maxi-unknown-rectangle.json", "gcn-json", "MAXI", "x-ray", "MAXI-9990001111", "UPDATE", False),
    ("gcn-km3net-alert.json", "gcn-json", "KM3NeT", "neutrino", "KM3-250708A", "INITIAL", False),
    ("gcn-chime-frb-subsequent.json", "gcn-json", "CHIME", "radio", "CHIME-500000001", "UPDATE", False),
    ("gcn-dsa110-frb-retraction.json", "gcn-json", "DSA-110", "radio", "DSA110-250809abcd", "RETRACTION", False),
    ("gcn-superk-sn-alert.json", "gcn-json", "Super-Kamiokande", "neutrino", "SuperK-SN.100001.000002", "INITIAL", False),
    ("gcn-future-mission.json", "gcn-json", "FutureSat", "other", "FutureSat-FS-0001", "INITIAL", False),
    ("voevent-swift-bat-pos.xml", "voevent", "Swift", "gamma-ray", "Swift-1234567", "INITIAL", False),
    ("voevent-swift-xrt-pos.xml", "voevent", "Swift", "gamma-ray", "Swift-1234567", "UPDATE", False),
    ("voevent-fermi-gbm-gnd-pos.xml", "voevent", "Fermi", "gamma-ray", "Fermi-GBM-762741234", "UPDATE", False),
    ("voevent-amon-icecube-gold.xml", "voevent", "IceCube", "neutrino", "IceCube-141234_5678901", "INITIAL", False),
    ("voevent-lvk-preliminary.xml", "voevent", "LVK", "gw", "S250101ab", "PRELIMINARY", False),
    ("voevent-lvk-retraction.xml", "voevent", "LVK", "gw", "MS250101cd", "RETRACTION", True),
    ("voevent-integral-wakeup.xml", "voevent", "INTEGRAL", "gamma-ray", "INTEGRAL-9876", "INITIAL", False),
    ("voevent-agile-mcal.xml", "voevent", "AGILE", "gamma-ray", "AGILE-4321", "INITIAL", False),
    ("voevent-snews-test.xml", "voevent", "SNEWS", "neutrino", "SNEWS-1000300", "INITIAL", True),
    ("circular-41234.json", "circular-json", "GCN", "circular", "EP250405a", "INITIAL", False),
    ("circular-41235.gcn3", "circular-text", "GCN", "circular", "S250101ab", "INITIAL", False),
]  # fmt: skip

INVALID = [
    ("invalid-lvk-truncated.json", "invalid-json"),
    ("invalid-lvk-bad-alert-type.json", "invalid-lvk-json"),
    ("invalid-gcn-core-component.json", "not-a-notice"),
    ("invalid-gcn-bad-position.json", "invalid-position"),
    ("invalid-voevent-no-ivorn.xml", "invalid-voevent"),
    ("invalid-xml-entities.xml", "invalid-xml"),
    ("invalid-circular-no-number.gcn3", "invalid-circular"),
]


@pytest.mark.parametrize("row", FIXTURES, ids=[row[0] for row in FIXTURES])
def test_own_fixture_parses(row: tuple) -> None:
    name, fmt, source, kind, event_id, alert_type, is_test = row
    raw = (DATA / name).read_bytes()
    alert = parse_message(raw)
    assert (alert.format, alert.source, alert.kind, alert.event_id, alert.alert_type) == (
        fmt,
        source,
        AlertKind(kind),
        event_id,
        AlertType(alert_type),
    )
    assert alert.is_test is is_test
    assert detect_format(raw) == fmt


@pytest.mark.parametrize(("name", "reason"), INVALID, ids=[n for n, _ in INVALID])
def test_invalid_fixture_is_refused_with_its_reason(name: str, reason: str) -> None:
    with pytest.raises(AlertParseError) as info:
        parse_message((DATA / name).read_bytes())
    assert info.value.reason == reason
    assert str(info.value)


def test_fixtures_cover_every_format_family_and_the_table_is_complete() -> None:
    files = {p.name for p in DATA.iterdir() if p.suffix in {".json", ".xml", ".gcn3"}}
    assert files == {row[0] for row in FIXTURES} | {name for name, _ in INVALID}
    assert {row[1] for row in FIXTURES} | {"lvk-avro", "circular-hop"} == set(PARSERS)


def test_the_same_event_keeps_its_id_across_json_and_voevent() -> None:
    def event(name: str) -> str:
        return parse_message((DATA / name).read_bytes()).event_id

    # IceCube's JSON notice is named by its event name; AMON's VOEvent carries only the
    # run_event id, which the JSON notice keeps as an alias.
    track = parse_message((DATA / "gcn-icecube-gold-track.json").read_bytes())
    assert track.event_id == "IceCube-250203A"
    assert track.extra["aliases"] == [event("voevent-amon-icecube-gold.xml")]
    assert event("gcn-fermi-gbm-ground.json") == event("voevent-fermi-gbm-gnd-pos.xml")
    assert event("lvk-S250101ab-preliminary.json") == event("voevent-lvk-preliminary.xml")
    assert event("circular-41235.gcn3") == "S250101ab"


def test_gcn_values() -> None:
    track = parse_message((DATA / "gcn-icecube-gold-track.json").read_bytes())
    assert track.position is not None and track.position.error is not None
    assert track.position.error.radius_deg == 0.8
    assert track.position.error.semi_minor_deg == 0.6
    assert track.position.error.position_angle_deg == 35.0
    assert track.far_hz == 3.1e-8
    assert track.skymap_url.endswith(".fits.gz")
    assert track.extra["event_name"] == "IceCube-250203A"
    assert track.extra["notice_type"] == "gcn.notices.icecube.single_neutrino_alerts"
    rectangle = parse_message((DATA / "gcn-maxi-unknown-rectangle.json").read_bytes())
    # The circle enclosing the rectangle (corners at +-1 deg RA, +-0.5 deg Dec around Dec 10).
    assert rectangle.position.error.radius_deg == pytest.approx(1.105, abs=0.002)
    superk = parse_message((DATA / "gcn-superk-sn-alert.json").read_bytes())
    assert superk.distance_mpc == 0.0085 and superk.position.error.containment == 0.68
    ep = parse_message((DATA / "gcn-einstein-probe-wxt.json").read_bytes())
    assert ep.issued_at == ep.event_time  # no alert_datetime: the trigger time stands in
    assert "issued_at_from" in ep.extra
    nu = parse_message((DATA / "gcn-icecube-lvk-nu-track-search.json").read_bytes())
    assert (nu.position.ra, nu.position.dec, nu.position.error.radius_deg) == (151.0, -29.5, 1.2)
    assert nu.extra["notice"]["ref_ID"] == "S250101ab"
    guano = parse_message((DATA / "gcn-swift-guano-initial.json").read_bytes())
    assert guano.classification == {"GRB": 0.98, "SGR": 0.02}
    assert guano.urls["data_archive_page"].startswith("https://guano.swift.psu.edu/")
    chime = parse_message((DATA / "gcn-chime-frb-subsequent.json").read_bytes())
    assert chime.extra["gcn_alert_type"] == "subsequent"


def test_lvk_fixture_values() -> None:
    alert = parse_message((DATA / "lvk-MS250101cd-update-extcoinc.json").read_bytes())
    assert alert.external_coinc is not None
    assert alert.external_coinc.observatory == "Swift"
    combined = alert.external_coinc.combined_skymap
    assert combined is not None and fits_header_values(combined, ["DISTMEAN"]) == {
        "DISTMEAN": 100.0
    }
    assert (alert.distance_mpc, alert.distance_err_mpc) == (120.0, 30.0)
    assert alert.extra["test_reason"] == "mock or test superevent"


# ------------------------------------------------------------------ mock builders


def test_make_lvk_alert_json_is_valid_under_the_official_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import importlib.resources

    schema = json.loads(
        importlib.resources.files("igwn_gwalert_schema")
        .joinpath("igwn.alerts.Alert.schema.json")
        .read_text()
    )
    skymap = make_multiorder_skymap()
    for alert_type in AlertType:
        raw = make_lvk_alert(
            "S250102x",
            alert_type,
            skymap=skymap,
            external_coinc={"combined_skymap": skymap} if alert_type is AlertType.UPDATE else None,
        )
        jsonschema.validate(json.loads(raw), schema)
        alert = parse_message(raw)
        assert alert.alert_type is alert_type
    burst = json.loads(make_lvk_alert("S250102y", group="Burst", pipeline="CWB", duration=0.1))
    jsonschema.validate(burst, schema)
    assert burst["event"]["classification"] == {} and burst["event"]["duration"] == 0.1


def test_make_lvk_alert_avro_round_trip_through_hop() -> None:
    pytest.importorskip("igwn_gwalert_schema")
    hop_models = pytest.importorskip("hop.models")
    skymap = make_multiorder_skymap()
    issued = datetime(2025, 3, 1, 10, 0, 0, 250000, tzinfo=UTC)
    raw = make_lvk_alert(
        "MS250301a",
        "INITIAL",
        skymap=skymap,
        issued_at=issued,
        far=1e-12,
        significant=False,
        form="avro",
    )
    assert raw.startswith(b"Obj\x01")
    alert = parse_message(raw)
    assert alert.format == "lvk-avro" and alert.skymap == skymap
    assert (alert.issued_at, alert.far_hz, alert.significant) == (issued, 1e-12, False)
    record = hop_models.AvroBlob.deserialize(raw).content
    assert parse_object(record).model_dump() == alert.model_dump()
    as_json = parse_message(
        make_lvk_alert(
            "MS250301a", "INITIAL", skymap=skymap, issued_at=issued, far=1e-12, significant=False
        )
    )
    assert as_json.model_dump() == {**alert.model_dump(), "format": "lvk-json"}


def test_make_lvk_alert_avro_without_the_schema_package_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec

    def no_schema(name: str, *args: object) -> object:
        return None if name == "igwn_gwalert_schema" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_schema)
    with pytest.raises(ImportError, match="igwn-gwalert-schema"):
        make_lvk_alert("S250101ab", form="avro")


def test_make_lvk_record_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="superevent_id"):
        make_lvk_record("  ")
    with pytest.raises(ValueError):
        make_lvk_record("S1", "PRELIMINARY_V3")
    with pytest.raises(ValueError, match="form"):
        make_lvk_alert("S1", form="xml")  # type: ignore[arg-type]
    assert make_lvk_record("MS1")["event"]["search"] == "MDC"
    assert make_lvk_record("S1", "RETRACTION")["event"] is None


def test_make_gcn_notice_parses_to_what_was_asked() -> None:
    raw = make_gcn_notice(
        "fermi/gbm/trigger",
        event_id=["700000001", "bn250101001"],
        alert_type="update",
        ra=10.0,
        dec=-5.0,
        ra_dec_error=[1.0, 0.5, 30.0],
        alert_tense="test",
        far=1e-5,
    )
    alert = parse_message(raw)
    assert (alert.source, alert.event_id, alert.alert_type) == (
        "Fermi",
        "Fermi-GBM-700000001",
        AlertType.UPDATE,
    )
    assert alert.is_test and alert.far_hz == 1e-5
    assert alert.position.error.semi_minor_deg == 0.5


# ------------------------------------------------------------------ headers, containers, fields


def test_hop_test_header_marks_any_alert_as_a_test() -> None:
    raw = (DATA / "gcn-swift-guano-initial.json").read_bytes()
    assert parse_message(raw).is_test is False
    alert = parse_message(raw, headers=[("_id", uuid.uuid4().bytes), ("_test", b"true")])
    assert alert.is_test is True and alert.extra["test_reason"] == "hop _test header"


def test_playground_topic_marks_lvk_alerts_as_tests() -> None:
    raw = (DATA / "lvk-S250101ab-preliminary.json").read_bytes()
    assert parse_message(raw, topic="igwn.gwalert").is_test is False
    assert parse_message(raw, topic="igwn.gwalert-playground").is_test is True


def test_hop_format_header_chooses_the_container() -> None:
    raw = (DATA / "voevent-swift-bat-pos.xml").read_bytes()
    assert parse_message(raw, headers={"_format": "voevent"}).event_id == "Swift-1234567"
    with pytest.raises(AlertParseError) as info:
        parse_message(raw, headers={"_format": "json"})
    assert info.value.reason == "invalid-json"
    with pytest.raises(AlertParseError) as info:
        parse_message(raw, headers={"_format": "gcntextnotice"})
    assert info.value.reason == "unsupported-format"


def test_hop_legacy_envelope_is_unwrapped() -> None:
    notice = json.loads((DATA / "gcn-km3net-alert.json").read_bytes())
    envelope = json.dumps({"format": "json", "content": notice}).encode()
    assert parse_message(envelope).event_id == "KM3-250708A"
    import xmltodict

    voevent = xmltodict.parse((DATA / "voevent-swift-bat-pos.xml").read_bytes(), attr_prefix="")
    content = {k: v for k, v in voevent["voe:VOEvent"].items() if ":" not in k}
    legacy = json.dumps({"format": "voevent", "content": content}).encode()
    assert parse_message(legacy).event_id == "Swift-1234567"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"\x00\x01\x02\xff\xfe", "unknown-format"),
        (b"{not json", "invalid-json"),
        (b"[1, 2]", "unknown-format"),
        (b'"just a string"', "unknown-format"),
        (b'{"hello": "world"}', "unknown-format"),
        (b"Obj\x01 not really avro", "invalid-avro"),
        (b"<notvoevent/>", "unknown-format"),
        (b"<VOEvent", "invalid-xml"),
        (b"plain text that is not a circular", "unknown-format"),
        (b'{"$schema": "https://gcn.nasa.gov/schema/main/gcn/notices/x/y.schema.json"}', "unknown-notice-type"),
        (b'{"$schema": "https://example.org/other.json", "a": 1}', "unknown-format"),
        (b"\xff\xfe" + "TITLE: GCN".encode("utf-16-le"), "unknown-format"),
    ],
)  # fmt: skip
def test_bad_messages_get_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(AlertParseError) as info:
        parse_message(raw)
    assert info.value.reason == reason


def test_lvk_structural_validation() -> None:
    record = json.loads((DATA / "lvk-S250101ab-preliminary.json").read_bytes())
    for mutate, reason in [
        (lambda r: r.pop("urls"), "invalid-lvk-json"),
        (lambda r: r["event"].update(significant=1), "invalid-lvk-json"),
        (lambda r: r["event"].update(far=-1.0), "invalid-lvk-json"),
        (lambda r: r["event"].update(far="1e-9"), "invalid-lvk-json"),
        (lambda r: r["event"].pop("instruments"), "invalid-lvk-json"),
        (lambda r: r.update(superevent_id="S 1"), "invalid-lvk-json"),
        (lambda r: r.update(time_created="yesterday"), "invalid-time"),
        (lambda r: r["event"].update(classification={"BNS": 1.5}), "invalid-probability"),
    ]:
        broken = json.loads(json.dumps(record))
        mutate(broken)
        with pytest.raises(AlertParseError) as info:
            parse_message(json.dumps(broken).encode())
        assert info.value.reason == reason, mutate


def test_damaged_skymap_keeps_the_alert() -> None:
    record = json.loads((DATA / "lvk-S250101ab-preliminary.json").read_bytes())
    record["event"]["skymap"] = record["event"]["skymap"][:-100]
    alert = parse_message(json.dumps(record).encode())
    assert alert.skymap is None and "invalid-skymap" in alert.extra["skymap_error"]


def test_decode_skymap() -> None:
    fits_bytes = make_multiorder_skymap()
    assert decode_skymap(fits_bytes, field="x") == fits_bytes
    assert decode_skymap(base64.b64encode(fits_bytes).decode(), field="x") == fits_bytes
    import gzip

    gz = gzip.compress(fits_bytes)
    assert decode_skymap(base64.b64encode(gz).decode(), field="x") == gz
    for bad in ["aGVsbG8=", base64.b64encode(fits_bytes[:-10]).decode(), 42, "U0lNUExFICA9!!"]:
        with pytest.raises(AlertParseError):
            decode_skymap(bad, field="x")


def test_fits_header_values_reads_the_table_header_only() -> None:
    data = make_multiorder_skymap(distmean=250.0, diststd=40.0)
    values = fits_header_values(data, ["DISTMEAN", "DISTSTD", "ORDERING", "MOC", "MISSING"])
    assert values == {"DISTMEAN": 250.0, "DISTSTD": 40.0, "ORDERING": "NUNIQ", "MOC": True}
    assert fits_header_values(b"not fits", ["X"]) == {}
    from astropy.io import fits

    with fits.open(io.BytesIO(data)) as hdul:
        assert hdul[1].header["DISTMEAN"] == 250.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-06-01T00:05:00.00Z", "2024-06-01T00:05:00+00:00"),
        ("2024-09-18 07:19:03.518831+00:00", "2024-09-18T07:19:03.518831+00:00"),
        ("2024-08-24T02:14:40.43", "2024-08-24T02:14:40.430000+00:00"),
        ("2024-01-01T00:00:00.123456789Z", "2024-01-01T00:00:00.123456+00:00"),
        ("2024-01-01T02:00:00+02:00", "2024-01-01T00:00:00+00:00"),
    ],
)
def test_parse_time(value: str, expected: str) -> None:
    assert parse_time(value, field="t").isoformat() == expected


@pytest.mark.parametrize("value", ["", "soon", "1850-01-01T00:00:00", 12345, None])
def test_parse_time_refuses(value: object) -> None:
    with pytest.raises(AlertParseError) as info:
        parse_time(value, field="t")
    assert info.value.reason == "invalid-time"


def test_error_region_forms() -> None:
    assert error_region(0.5, field="e").radius_deg == 0.5
    ellipse = error_region([0.2, 0.4, 30], containment=0.5, field="e")
    assert (ellipse.radius_deg, ellipse.semi_minor_deg, ellipse.containment) == (0.4, 0.2, 0.5)
    assert error_region([0.016, 0.02], field="e").radius_deg == 0.02
    assert error_region(1.0, containment=90, field="e").containment == 0.9
    for bad in (-1, [1, 2, 3, 4], [], "x"):
        with pytest.raises(AlertParseError):
            error_region(bad, field="e")


@pytest.mark.parametrize(
    ("subject", "event"),
    [
        ("LIGO/Virgo/KAGRA S230518h: LCO optical upper limits", "S230518h"),
        ("LIGO/Virgo/KAGRA MS250101ab: drill", "MS250101ab"),
        ("GRB 230410A: Fermi GBM Final Real-time Localization", "GRB 230410A"),
        ("GRB980329 VLA observations", "GRB 980329"),
        ("EP240315a: LCO optical counterpart detection", "EP240315a"),
        ("IceCube-230416A - IceCube observation of a high-energy neutrino", "IceCube-230416A"),
        ("AT 2017gfo: spectroscopy", "AT 2017gfo"),
        ("FRB 20200120E: CHIME repeater", "FRB 20200120E"),
        ("Nothing to see", None),
    ],
)
def test_event_id_from_subject(subject: str, event: str | None) -> None:
    assert event_id_from_subject(subject) == event


def test_circular_without_event_gets_a_circular_id() -> None:
    record = json.loads((DATA / "circular-41234.json").read_bytes())
    record.pop("eventId")
    record["subject"] = "Announcement: new follow-up facility"
    alert = parse_message(json.dumps(record).encode())
    assert alert.event_id == "GCN-Circular-41234"
    record["version"], record["editedOn"] = 2, 1743850000000
    edited = parse_message(json.dumps(record).encode())
    assert edited.alert_type is AlertType.UPDATE and edited.issued_at > alert.issued_at


def test_parse_object_refuses_what_it_cannot_read() -> None:
    with pytest.raises(AlertParseError):
        parse_object(3.14)
    with pytest.raises(AlertParseError):
        parse_object([{}, {}])
    assert parse_object(make_lvk_record("S9", "RETRACTION")).format == "lvk-json"


def test_registry_refuses_a_second_parser_of_the_same_name() -> None:
    from followup.alerts import register_parser

    with pytest.raises(ValueError, match="already registered"):
        register_parser(PARSERS["gcn-json"])


def test_parser_bug_becomes_a_parse_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(notice: dict, ctx: object = None) -> None:
        raise KeyError("surprise")

    parser = PARSERS["gcn-json"]
    monkeypatch.setitem(
        PARSERS, "gcn-json", type(parser)(parser.name, parser.container, parser.accepts, broken)
    )
    with pytest.raises(AlertParseError) as info:
        parse_message((DATA / "gcn-km3net-alert.json").read_bytes())
    assert info.value.reason == "malformed-gcn-json"


def test_fixture_files_are_not_sample_copies() -> None:
    samples = Path(__file__).resolve().parents[2] / "shared" / "samples"
    if not samples.is_dir():
        pytest.skip("samples folder absent")
    import hashlib

    ours = {hashlib.sha256(p.read_bytes()).hexdigest() for p in DATA.iterdir()}
    theirs = {hashlib.sha256(p.read_bytes()).hexdigest() for p in samples.rglob("*") if p.is_file()}
    assert not ours & theirs
