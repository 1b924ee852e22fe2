"""Every alert, notice, VOEvent and circular in ../shared/samples parses to the right event.

The samples are real messages written by others (LVK, NASA GCN, gwcelery, SkyPortal, hop-client...);
they are read from the shared folder and never copied into the repository. The tests skip when the
folder is absent.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from followup.alerts import parse_message, parse_object
from followup.exceptions import AlertParseError
from followup.models import AlertKind, AlertType

ALERT_SUFFIXES = {".json", ".xml", ".avro", ".gcn3", ".txt"}

# path, format, source, kind, event id, alert type, is_test ("error" rows: reason instead).
EXPECTED = [
    (
        "gcn_schema/circulars.example.json",
        "circular-json",
        "GCN",
        "circular",
        "GRB 230410A",
        "INITIAL",
        False,
    ),
    (
        "gcn_schema/notices__boom__alert.example.json",
        "gcn-json",
        "BOOM",
        "optical",
        "ZTF25acffkdr",
        "INITIAL",
        False,
    ),
    (
        "gcn_schema/notices__burstcube__alert.example.json",
        "gcn-json",
        "BurstCube",
        "gamma-ray",
        "BurstCube-240601000",
        "INITIAL",
        False,
    ),
    (
        "gcn_schema/notices__burstcube__test.example.json",
        "gcn-json",
        "BurstCube",
        "gamma-ray",
        "BurstCube-240601000",
        "INITIAL",
        True,
    ),
    (
        "gcn_schema/notices__chime__frb.detection.example.json",
        "gcn-json",
        "CHIME",
        "radio",
        "CHIME-427325191",
        "INITIAL",
        False,
    ),
    (
        "gcn_schema/notices__chime__frb.retraction.example.json",
        "gcn-json",
        "CHIME",
        "radio",
        "CHIME-427325191",
        "RETRACTION",
        False,
    ),
    (
        "gcn_schema/notices__chime__frb.subsequent.example.json",
        "gcn-json",
        "CHIME",
        "radio",
        "CHIME-427325192",
        "UPDATE",
        False,
    ),
    (
        "gcn_schema/notices__chime__frb.update.example.json",
        "gcn-json",
        "CHIME",
        "radio",
        "CHIME-427325191",
        "UPDATE",
        False,
    ),
    (
        "gcn_schema/notices__core__Localization.example.json",
        "error",
        "not-a-notice",
        None,
        None,
        None,
        None,
    ),
    (
        "gcn_schema/notices__core__Pointing.example.json",
        "error",
        "not-a-notice",
        None,
        None,
        None,
        None,
    ),
    (
        "gcn_schema/notices__core__Reporter.example.json",
        "error",
        "not-a-notice",
        None,
        None,
        None,
        None,
    ),
    (
        "gcn_schema/notices__core__Spectral.example.json",
        "error",
        "not-a-notice",
        None,
        None,
        None,
        None,
    ),
    (
        "gcn_schema/notices__core__Statistics.example.json",
        "error",
        "not-a-notice",
        None,
        None,
        None,
        None,
    ),
    (
        "gcn_schema/notices__dsa110__frb.detection.example.json",
        "gcn-json",
        "DSA-110",
        "radio",
        "DSA110-240918aaaa",
        "INITIAL",
        False,
    ),
    (
        "gcn_schema/notices__dsa110__frb.retraction.example.json",
        "gcn-json",
        "DSA-110",
        "radio",
        "DSA110-240918aaaa",
        "RETRACTION",
        False,
    ),
    (
        "gcn_schema/notices__dsa110__frb.subsequent.example.json",
        "gcn-json",
        "DSA-110",
        "radio",
        "DSA110-240918aaaa",
        "UPDATE",
        False,
    ),
    (
        "gcn_schema/notices__dsa110__frb.update.example.json",
        "gcn-json",
        "DSA-110",
        "radio",
        "DSA110-240918aaaa",
        "UPDATE",
        False,
    ),
    (
        "gcn_schema/notices__einstein_probe__wxt__alert.example.json",
        "gcn-json",
        "Einstein Probe",
        "x-ray",
        "EP-01708973486",
        "INITIAL",
        False,
    ),
    (
        "gcn_schema/notices__fermi__gbm__trigger.alert.example.json",
        "gcn-json",
        "Fermi",
        "gamma-ray",
        "Fermi-GBM-745121685",
        "INITIAL",
        False,
    ),
    (
        "gcn_schema/notices__fermi__gbm__trigger.final.example.json",
        "gcn-json",
        "Fermi",
        "gamma-ray",
        "Fermi-GBM-745121685",
        "UPDATE",
        False,
    ),
    (
        "gcn_schema/notices__fermi__gbm__trigger.flight1.example.json",
        "gcn-json",
        "Fermi",
        "gamma-ray",
        "Fermi-GBM-745121685",
        "UPDATE",
        False,
    ),
    (
        "gcn_schema/notices__fermi__gbm__trigger.flight2.example.json",
        "gcn-json",
        "Fermi",
        "gamma-ray",
        "Fermi-GBM-745121685",
        "UPDATE",
        False,
    ),
    (
        "gcn_schema/notices__fermi__gbm__trigger.flight3.example.json",
        "gcn-json",
        "Fermi",
        "gamma-ray",
        "Fermi-GBM-745121685",
        "UPDATE",
        False,
    ),
    (
        "gcn_schema/notices__fermi__gbm__trigger.ground1.example.json",
        "gcn-json",
        "Fermi",
        "gamma-ray",
        "Fermi-GBM-745121685",
        "UPDATE",
        False,
    ),
    (
        "gcn_schema/notices__fermi__gbm__trigger.ground2.example.json",
        "gcn-json",
        "Fermi",
        "gamma-ray",
        "Fermi-GBM-745121685",
        "UPDATE",
        False,
    ),
    (
        "gcn_schema/notices__fermi__lat__flare.example.json",
        "gcn-json",
        "Fermi",
        "gamma-ray",
        "Fermi-LAT-OQ334-20251120",
        "INITIAL",
        False,
    ),
    (
        "gcn_schema/notices__glowbug__Alert.example.json",
        "gcn-json",
        "GLOWBUG",
        "gamma-ray",
        "BUG230423.789",
        "INITIAL",
        False,
    ),
    (
        "gcn_schema/notices__heasarc__archive_alert.example.json",
        "gcn-json",
        "HEASARC",
        "other",
        "IXPE-01001099",
        "INITIAL",
        False,
    ),
    (
        "gcn_schema/notices__icecube__lvk_nu_track_search.example.json",
        "gcn-json",
        "IceCube",
        "neutrino",
        "IceCube-LVK-S230914ak",
        "INITIAL",
        False,
    ),
    (
        "gcn_schema/notices__icecube__single_neutrino_alerts.gold_bronze_track_alerts.example.json",
        "gcn-json",
        "IceCube",
        "neutrino",
        "IceCube-230416A",
        "INITIAL",
        False,
    ),
    (
        "gcn_schema/notices__km3net__alert.example.json",
        "gcn-json",
        "KM3NeT",
        "neutrino",
        "KM3-240901A",
        "INITIAL",
        False,
    ),
    (
        "gcn_schema/notices__km3net__alert.multiplet.example.json",
        "gcn-json",
        "KM3NeT",
        "neutrino",
        "KM3-240901B",
        "INITIAL",
        False,
    ),
    (
        "gcn_schema/notices__maxi__gsc.known.example.json",
        "gcn-json",
        "MAXI",
        "x-ray",
        "MAXI-0858800020",
        "INITIAL",
        False,
    ),
    (
        "gcn_schema/notices__maxi__gsc.known.retraction.example.json",
        "gcn-json",
        "MAXI",
        "x-ray",
        "MAXI-0858800020",
        "RETRACTION",
        False,
    ),
    (
        "gcn_schema/notices__maxi__gsc.unknown.circle.example.json",
        "gcn-json",
        "MAXI",
        "x-ray",
        "MAXI-9995289617",
        "UPDATE",
        False,
    ),
    (
        "gcn_schema/notices__maxi__gsc.unknown.ellipse.example.json",
        "gcn-json",
        "MAXI",
        "x-ray",
        "MAXI-9995289617",
        "UPDATE",
        False,
    ),
    (
        "gcn_schema/notices__maxi__gsc.unknown.noerror.example.json",
        "gcn-json",
        "MAXI",
        "x-ray",
        "MAXI-9995289617",
        "INITIAL",
        False,
    ),
    (
        "gcn_schema/notices__maxi__gsc.unknown.rectangle.example.json",
        "gcn-json",
        "MAXI",
        "x-ray",
        "MAXI-9995289617",
        "UPDATE",
        False,
    ),
    (
        "gcn_schema/notices__maxi__gsc.unknown.retraction.example.json",
        "gcn-json",
        "MAXI",
        "x-ray",
        "MAXI-9995289617",
        "RETRACTION",
        False,
    ),
    (
        "gcn_schema/notices__superk__sn_alert.real.example.json",
        "gcn-json",
        "Super-Kamiokande",
        "neutrino",
        "SuperK-SN.095001.000001",
        "INITIAL",
        False,
    ),
    (
        "gcn_schema/notices__superk__sn_alert.test.example.json",
        "gcn-json",
        "Super-Kamiokande",
        "neutrino",
        "SuperK-SN.095001.000001",
        "INITIAL",
        True,
    ),
    (
        "gcn_schema/notices__svom__eclairs__trigger.catalog.example.json",
        "gcn-json",
        "SVOM",
        "gamma-ray",
        "sb24022203",
        "INITIAL",
        True,
    ),
    (
        "gcn_schema/notices__svom__eclairs__trigger.not-slewing.example.json",
        "gcn-json",
        "SVOM",
        "gamma-ray",
        "sb24022203",
        "UPDATE",
        True,
    ),
    (
        "gcn_schema/notices__svom__eclairs__trigger.slewing.example.json",
        "gcn-json",
        "SVOM",
        "gamma-ray",
        "sb24022203",
        "UPDATE",
        True,
    ),
    (
        "gcn_schema/notices__svom__eclairs__trigger.wakeup.example.json",
        "gcn-json",
        "SVOM",
        "gamma-ray",
        "sb24022203",
        "INITIAL",
        True,
    ),
    (
        "gcn_schema/notices__svom__grm__trigger.example.json",
        "gcn-json",
        "SVOM",
        "gamma-ray",
        "sb24022203",
        "INITIAL",
        True,
    ),
    (
        "gcn_schema/notices__swift__bat__Guano.Retraction.example.json",
        "gcn-json",
        "Swift",
        "gamma-ray",
        "Swift-694215995",
        "RETRACTION",
        False,
    ),
    (
        "gcn_schema/notices__swift__bat__Guano.example.json",
        "gcn-json",
        "Swift",
        "gamma-ray",
        "Swift-694215995",
        "INITIAL",
        False,
    ),
    (
        "gcn_schema/notices__swift__bat__guano.loc_arc_min.example.json",
        "gcn-json",
        "Swift",
        "gamma-ray",
        "Swift-694215995",
        "UPDATE",
        False,
    ),
    (
        "gcn_schema/notices__swift__bat__guano.loc_map.example.json",
        "gcn-json",
        "Swift",
        "gamma-ray",
        "Swift-694215995",
        "UPDATE",
        False,
    ),
    ("gwcelery/G298048-1-Initial.xml", "voevent", "LVK", "gw", "G298048", "INITIAL", False),
    ("gwcelery/MS220722v.superevent.json", "error", "unknown-format", None, None, None, None),
    ("gwcelery/agile_grb_gcn.xml", "voevent", "AGILE", "gamma-ray", "AGILE-0", "INITIAL", False),
    (
        "gwcelery/fermi_grb_gcn.xml",
        "voevent",
        "Fermi",
        "gamma-ray",
        "Fermi-GBM-548848711",
        "UPDATE",
        False,
    ),
    (
        "gwcelery/fermi_initial_grb_gcn.xml",
        "voevent",
        "Fermi",
        "gamma-ray",
        "Fermi-GBM-548841234",
        "INITIAL",
        False,
    ),
    (
        "gwcelery/integral_grb_gcn.xml",
        "voevent",
        "INTEGRAL",
        "gamma-ray",
        "INTEGRAL-0",
        "INITIAL",
        False,
    ),
    ("gwcelery/snews_gcn.xml", "voevent", "SNEWS", "neutrino", "SNEWS-1000194", "INITIAL", False),
    (
        "gwcelery/swift_grb_gcn.xml",
        "voevent",
        "Swift",
        "gamma-ray",
        "Swift-1123129",
        "INITIAL",
        False,
    ),
    (
        "hop_client/S200302c-1-Preliminary.xml",
        "voevent",
        "LVK",
        "gw",
        "S200302c",
        "PRELIMINARY",
        False,
    ),
    (
        "hop_client/circular_26936_S200129m.gcn3",
        "circular-text",
        "GCN",
        "circular",
        "S200129m",
        "INITIAL",
        False,
    ),
    (
        "hop_client/circular_40_GRB980329.expected_hop_json.txt",
        "circular-hop",
        "GCN",
        "circular",
        "GRB 980329",
        "INITIAL",
        False,
    ),
    (
        "hop_client/circular_40_GRB980329.gcn3",
        "circular-text",
        "GCN",
        "circular",
        "GRB 980329",
        "INITIAL",
        False,
    ),
    (
        "lvk_userguide/MS181101ab-1-EarlyWarning.xml",
        "voevent",
        "LVK",
        "gw",
        "MS181101ab",
        "EARLYWARNING",
        True,
    ),
    (
        "lvk_userguide/MS181101ab-2-Preliminary.xml",
        "voevent",
        "LVK",
        "gw",
        "MS181101ab",
        "PRELIMINARY",
        True,
    ),
    (
        "lvk_userguide/MS181101ab-3-Initial.xml",
        "voevent",
        "LVK",
        "gw",
        "MS181101ab",
        "INITIAL",
        True,
    ),
    (
        "lvk_userguide/MS181101ab-5-Retraction.xml",
        "voevent",
        "LVK",
        "gw",
        "MS181101ab",
        "RETRACTION",
        True,
    ),
    ("lvk_userguide/MS181101ab-6-Update.xml", "voevent", "LVK", "gw", "MS181101ab", "UPDATE", True),
    (
        "lvk_userguide/MS181101ab-earlywarning.json",
        "lvk-json",
        "LVK",
        "gw",
        "MS181101ab",
        "EARLYWARNING",
        True,
    ),
    (
        "lvk_userguide/MS181101ab-ext-update.json",
        "lvk-json",
        "LVK",
        "gw",
        "MS181101ab",
        "UPDATE",
        True,
    ),
    (
        "lvk_userguide/MS181101ab-ext-update_displayexample.json",
        "lvk-json",
        "LVK",
        "gw",
        "MS181101ab",
        "UPDATE",
        True,
    ),
    (
        "lvk_userguide/MS181101ab-preliminary.avro",
        "lvk-avro",
        "LVK",
        "gw",
        "MS181101ab",
        "PRELIMINARY",
        True,
    ),
    (
        "lvk_userguide/MS181101ab-preliminary.json",
        "lvk-json",
        "LVK",
        "gw",
        "MS181101ab",
        "PRELIMINARY",
        True,
    ),
    (
        "lvk_userguide/MS181101ab-preliminary_displayexample.json",
        "lvk-json",
        "LVK",
        "gw",
        "MS181101ab",
        "PRELIMINARY",
        True,
    ),
    (
        "lvk_userguide/MS181101ab-retraction.avro",
        "lvk-avro",
        "LVK",
        "gw",
        "MS181101ab",
        "RETRACTION",
        True,
    ),
    (
        "lvk_userguide/MS181101ab-retraction.json",
        "lvk-json",
        "LVK",
        "gw",
        "MS181101ab",
        "RETRACTION",
        True,
    ),
    (
        "pygcn/gbm_flt_pos.xml",
        "voevent",
        "Fermi",
        "gamma-ray",
        "Fermi-GBM-336801278",
        "UPDATE",
        False,
    ),
    (
        "skyportal/AMON.xml",
        "voevent",
        "IceCube",
        "neutrino",
        "IceCube-136973_28816141",
        "INITIAL",
        False,
    ),
    (
        "skyportal/EP240508.json",
        "gcn-json",
        "Einstein Probe",
        "x-ray",
        "EP-WXT-20240508T073801.151",
        "INITIAL",
        False,
    ),
    (
        "skyportal/GRB180116A_Fermi_GBM_Gnd_Pos.xml",
        "voevent",
        "Fermi",
        "gamma-ray",
        "Fermi-GBM-537755817",
        "UPDATE",
        False,
    ),
    ("skyportal/GW190425_initial.xml", "voevent", "LVK", "gw", "S190425z", "INITIAL", False),
    ("skyportal/GW190814.xml", "voevent", "LVK", "gw", "S190814bv", "UPDATE", False),
    (
        "skyportal/SWIFT_1125809-092.xml",
        "voevent",
        "Swift",
        "gamma-ray",
        "Swift-1125809",
        "INITIAL",
        False,
    ),
    (
        "skyportal/SWIFT_1125809-104.xml",
        "voevent",
        "Swift",
        "gamma-ray",
        "Swift-1125809",
        "UPDATE",
        False,
    ),
    (
        "skyportal/igwn_gwalert_preliminary.json",
        "lvk-json",
        "LVK",
        "gw",
        "MS260605l",
        "PRELIMINARY",
        True,
    ),
    (
        "skyportal/igwn_gwalert_retraction.json",
        "lvk-json",
        "LVK",
        "gw",
        "MS260605l",
        "RETRACTION",
        True,
    ),
    (
        "voevent_parse/SWIFT_bat_position_v2.0_example.xml",
        "voevent",
        "Swift",
        "gamma-ray",
        "Swift-532871",
        "INITIAL",
        False,
    ),
    (
        "voevent_parse/SWIFT_xrt_position_v1.1_example.xml",
        "voevent",
        "Swift",
        "gamma-ray",
        "Swift-644259",
        "UPDATE",
        False,
    ),
]
BY_PATH = {row[0]: row for row in EXPECTED}


@pytest.mark.parametrize("row", EXPECTED, ids=[row[0] for row in EXPECTED])
def test_sample_parses_to_the_right_event(samples: Path, row: tuple) -> None:
    path, fmt, source, kind, event_id, alert_type, is_test = row
    raw = (samples / path).read_bytes()
    if fmt == "error":
        with pytest.raises(AlertParseError) as info:
            parse_message(raw)
        assert info.value.reason == source
        return
    alert = parse_message(raw)
    assert (alert.format, alert.source, alert.kind, alert.event_id, alert.alert_type) == (
        fmt,
        source,
        AlertKind(kind),
        event_id,
        AlertType(alert_type),
    )
    assert alert.is_test is is_test
    assert alert.issued_at.tzinfo is not None
    # The sky map bytes never leak into the JSON form of the alert.
    dumped = alert.model_dump(mode="json")
    assert "skymap" not in dumped and len(json.dumps(dumped)) < 100_000


def test_every_sample_file_is_in_the_table(samples: Path) -> None:
    found = {
        str(p.relative_to(samples))
        for p in samples.rglob("*")
        if p.suffix in ALERT_SUFFIXES and "igwn_gwalert_schema" not in str(p)
    }
    assert found == set(BY_PATH)


def test_lvk_json_and_avro_carry_the_userguide_skymaps(samples: Path) -> None:
    guide = samples / "lvk_userguide"
    bayestar = (guide / "bayestar.multiorder.fits").read_bytes()
    combined = (guide / "combined-ext.multiorder.fits").read_bytes()
    as_json = parse_message((guide / "MS181101ab-preliminary.json").read_bytes())
    as_avro = parse_message((guide / "MS181101ab-preliminary.avro").read_bytes())
    assert as_json.skymap == bayestar == as_avro.skymap
    assert as_json.model_dump() == {**as_avro.model_dump(), "format": "lvk-json"}
    ext = parse_message((guide / "MS181101ab-ext-update.json").read_bytes())
    assert ext.external_coinc is not None
    assert ext.external_coinc.combined_skymap == combined
    assert ext.external_coinc.observatory == "Fermi"
    assert ext.external_coinc.time_difference_s == pytest.approx(2.02)
    assert ext.external_coinc.time_sky_position_coincidence_far == pytest.approx(6.41e-16, rel=1e-3)
    # Values LVK put in the alert and in the map header.
    assert as_json.far_hz == pytest.approx(9.11069936486e-14)
    assert as_json.significant is True
    assert as_json.classification["BNS"] == pytest.approx(0.95)
    assert as_json.properties == {"HasNS": 0.95, "HasRemnant": 0.91, "HasMassGap": 0.01}
    assert as_json.instruments == ["H1", "L1", "V1"]
    assert (as_json.group, as_json.pipeline, as_json.search) == ("CBC", "gstlal", "MDC")
    assert as_json.distance_mpc == pytest.approx(39.77, abs=0.01)
    assert as_json.event_time.isoformat() == "2018-11-01T22:22:46.654000+00:00"
    assert as_json.extra["skymap"]["header"]["ORDERING"] == "NUNIQ"


def test_display_examples_keep_the_alert_and_say_why_the_map_is_missing(samples: Path) -> None:
    alert = parse_message(
        (samples / "lvk_userguide/MS181101ab-ext-update_displayexample.json").read_bytes()
    )
    assert alert.skymap is None
    assert "invalid-skymap" in alert.extra["skymap_error"]
    assert "invalid-skymap" in alert.extra["combined_skymap_error"]


def test_lvk_samples_are_valid_under_the_official_json_schema(samples: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(
        (samples / "igwn_gwalert_schema_pypi/igwn.alerts.Alert.schema.json").read_text()
    )
    for path in ("lvk_userguide", "skyportal"):
        for file in sorted((samples / path).glob("*.json")):
            document = json.loads(file.read_bytes())
            if "superevent_id" not in document:
                continue
            jsonschema.validate(document, schema)
            parse_message(file.read_bytes())  # and our own models accept it too


def test_hop_content_shapes_parse_alike(samples: Path) -> None:
    hop_models = pytest.importorskip("hop.models")
    raw = (samples / "lvk_userguide/MS181101ab-preliminary.avro").read_bytes()
    blob = hop_models.AvroBlob.deserialize(raw)
    record = blob.content if isinstance(blob.content, dict) else blob.content[0]
    from_record = parse_object(record)
    from_list = parse_object([record])
    from_blob = parse_object(blob)
    assert from_record.model_dump() == from_list.model_dump() == from_blob.model_dump()
    assert from_record.format == "lvk-avro" and from_record.skymap is not None
    voevent = hop_models.VOEvent.load((samples / "skyportal/SWIFT_1125809-092.xml").read_bytes())
    assert parse_object(voevent).event_id == "Swift-1125809"
    circular = hop_models.GCNCircular(
        header={
            "title": "GCN CIRCULAR",
            "number": "40",
            "subject": "GRB980329 VLA observations",
            "date": "98/04/03 07:10:15 GMT",
            "from": "Greg Taylor at NRAO",
        },
        body="text",
    )
    assert parse_object(circular).event_id == "GRB 980329"
    json_blob = hop_models.JSONBlob(
        content=json.loads((samples / "skyportal/igwn_gwalert_preliminary.json").read_bytes())
    )
    assert parse_object(json_blob).event_id == "MS260605l"


def test_base64_map_of_the_2026_mock_alert_decodes_to_fits(samples: Path) -> None:
    document = json.loads((samples / "skyportal/igwn_gwalert_preliminary.json").read_bytes())
    alert = parse_message(json.dumps(document).encode())
    assert alert.skymap == base64.b64decode(document["event"]["skymap"])
    assert alert.skymap.startswith(b"SIMPLE  =")


def test_voevent_values(samples: Path) -> None:
    xrt = parse_message((samples / "skyportal/SWIFT_1125809-104.xml").read_bytes())
    assert xrt.position is not None and xrt.position.error is not None
    assert (xrt.position.ra, xrt.position.dec) == (64.7149, 13.35)
    assert xrt.position.error.radius_deg == pytest.approx(0.0013)
    assert xrt.extra["notice_type"] == "gcn.classic.voevent.SWIFT_XRT_POSITION"
    amon = parse_message((samples / "skyportal/AMON.xml").read_bytes())
    assert amon.far_hz == pytest.approx(2.0054 / (365.25 * 86400))
    assert amon.position is not None and amon.position.error.radius_deg == pytest.approx(1.2755)
    lvk = parse_message((samples / "lvk_userguide/MS181101ab-6-Update.xml").read_bytes())
    assert lvk.external_coinc is not None and lvk.external_coinc.observatory == "Fermi"
    assert lvk.skymap_url.endswith("bayestar.multiorder.fits,0")
    assert lvk.classification["BNS"] == 0.95 and lvk.properties["HasRemnant"] == 0.91
    old = parse_message((samples / "gwcelery/G298048-1-Initial.xml").read_bytes())
    assert old.properties == {"HasNS": 1.0, "HasRemnant": 1.0}
    snews = parse_message((samples / "gwcelery/snews_gcn.xml").read_bytes())
    assert snews.position is None  # 0, 0 with a 360 degree error is no position


def test_circular_values(samples: Path) -> None:
    record = parse_message((samples / "gcn_schema/circulars.example.json").read_bytes())
    assert record.extra["circular_id"] == 33603
    assert record.issued_at.isoformat() == "2024-06-12T17:16:29.034000+00:00"
    assert record.urls["circular"] == "https://gcn.nasa.gov/circulars/33603"
    text = parse_message((samples / "hop_client/circular_26936_S200129m.gcn3").read_bytes())
    assert text.issued_at.isoformat() == "2020-01-29T17:07:21+00:00"
    assert text.extra["subject"] == "LIGO/Virgo S200129m: Not observable by Fermi-GBM"
    assert text.extra["body"].startswith("A. Goldstein (USRA)")
