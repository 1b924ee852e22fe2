"""Every real message parses (issue 18, item 3): any issuer's VOEvent with a position, notices
without ``$schema``, IceCube's event name with signalness and energy, placeholder positions.

The real messages are read from the shared samples folder (never copied here); the tests skip when
it is absent. VOEvents of issuers the samples lack are made from a real one with another IVORN.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from followup.alerts import parse_message
from followup.exceptions import AlertParseError
from followup.models import AlertKind, AlertType
from followup.rules import TriggerRules, evaluate

NOTICES = "gcn_schema/notices__"


def other_issuer(
    raw: bytes, ivorn: str, *, author: str | None = "Example Transient Survey"
) -> bytes:
    """A real VOEvent re-issued under another IVORN (and author), its params kept."""
    text = re.sub(r'ivorn="[^"]+"', f'ivorn="{ivorn}"', raw.decode(), count=1)
    if author is not None:
        text = re.sub(r"<shortName>[^<]*</shortName>", f"<shortName>{author}</shortName>", text)
    return text.encode()


def test_a_voevent_of_an_unknown_issuer_with_a_position_parses(samples: Path) -> None:
    swift = (samples / "skyportal/SWIFT_1125809-092.xml").read_bytes()
    raw = other_issuer(swift, "ivo://transients.example.org/alerts#TRX-2025abc")
    alert = parse_message(raw)  # was: unknown-voevent: issuer ... is not supported
    assert alert.format == "voevent" and alert.source == "Example Transient Survey"
    assert alert.position is not None
    assert (alert.position.ra, alert.position.dec) == (64.7373, 13.3517)
    assert alert.position.error is not None and alert.position.error.radius_deg == 0.05
    assert alert.kind is AlertKind.GAMMA_RAY  # from Why/Concept
    assert alert.alert_type is AlertType.INITIAL
    assert alert.issued_at.isoformat() == "2022-09-30T11:12:15+00:00"  # Who/Date
    assert alert.extra["notice_type"] == "voevent.transients.example.org"
    assert alert.event_id == alert.extra["names"][0] == "GRB 220930"  # Why/Inference/Name
    # The rules can judge it like any other alert.
    assert evaluate(alert, TriggerRules(max_error_radius_deg=1)).accepted


def test_an_unknown_issuer_names_its_event_by_name_else_meta_id_else_ivorn(samples: Path) -> None:
    swift = (samples / "voevent_parse/SWIFT_bat_position_v2.0_example.xml").read_bytes()
    text = other_issuer(swift, "ivo://gaia.example/alerts#Gaia25abc", author="Gaia").decode()
    text = re.sub(r"<Name>[^<]*</Name>", "", text)
    assert parse_message(text.encode()).event_id == "Gaia-532871"  # the meta.id param (TrigID)
    text = re.sub(r'ucd="meta\.id[^"]*"', 'ucd="meta.code"', text)
    assert parse_message(text.encode()).event_id == "Gaia-Gaia25abc"  # the IVORN's fragment


def test_an_unknown_issuer_without_a_position_is_still_refused(samples: Path) -> None:
    lvk = (samples / "lvk_userguide/MS181101ab-2-Preliminary.xml").read_bytes()
    with pytest.raises(AlertParseError) as info:
        parse_message(other_issuer(lvk, "ivo://elsewhere.example/x#1"))
    assert info.value.reason == "unknown-voevent" and "no position" in info.value.detail


def _notice_samples(samples: Path) -> list[Path]:
    files = sorted(samples.glob(f"{NOTICES}*.json"))
    return [f for f in files if "__core__" not in f.name] + [samples / "skyportal/EP240508.json"]


def test_gcn_notices_without_schema_are_recognised_by_their_fields(samples: Path) -> None:
    for path in _notice_samples(samples):
        notice = json.loads(path.read_bytes())
        expected = parse_message(path.read_bytes())
        schema = notice.pop("$schema")
        bare = json.dumps(notice).encode()
        alert = parse_message(bare)  # was: unknown-format
        got = (alert.event_id, alert.source, alert.kind, alert.alert_type)
        want = (expected.event_id, expected.source, expected.kind, expected.alert_type)
        assert got == want, path.name
        assert alert.extra["notice_type_from"] == "fields", path.name
        # With its topic (as on GCN Kafka) the notice type is exactly the schema's; only the
        # type tells BurstCube's test notices from its alerts.
        topic = "gcn.notices." + schema.split("/gcn/notices/")[1].removesuffix(".schema.json")
        topic = topic.replace("/", ".").lower()
        by_topic = parse_message(bare, topic=topic)
        assert by_topic.extra["notice_type"] == expected.extra["notice_type"], path.name
        assert (by_topic.event_id, by_topic.is_test) == (expected.event_id, expected.is_test)


def test_json_that_is_no_notice_is_still_refused() -> None:
    for document in ({"a": 1}, {"mission": "HST", "instrument": "ACS"}, {"trigger_time": "x"}):
        with pytest.raises(AlertParseError) as info:
            parse_message(json.dumps(document).encode())
        assert info.value.reason == "unknown-format"


def test_icecube_events_are_named_by_the_notice_with_signalness_and_energy(samples: Path) -> None:
    path = f"{NOTICES}icecube__single_neutrino_alerts.gold_bronze_track_alerts.example.json"
    alert = parse_message((samples / path).read_bytes())
    assert alert.event_id == "IceCube-230416A"  # was IceCube-137840_57034692
    assert alert.extra["signalness"] == pytest.approx(0.34064)
    assert alert.extra["energy_tev"] == pytest.approx(127.29)
    assert "signalness 0.34" in alert.title and "energy 127 TeV" in alert.title
    assert alert.extra["notice"]["id"] == ["137840_57034692"]
    amon = parse_message((samples / "skyportal/AMON.xml").read_bytes())
    assert amon.extra["signalness"] == pytest.approx(0.3834)
    assert amon.extra["energy_tev"] == pytest.approx(114.9212)
    assert "signalness 0.38" in amon.title and "energy 115 TeV" in amon.title


def test_placeholder_positions_are_flagged_not_trusted(samples: Path) -> None:
    agile = parse_message((samples / "gwcelery/agile_grb_gcn.xml").read_bytes())
    assert agile.position is None  # RA 0 with an error of 0: was taken as a position
    flagged = agile.extra["position_placeholder"]
    assert flagged["ra"] == 0 and flagged["error_deg"] == 0 and "placeholder" in flagged["why"]
    refused = evaluate(agile, TriggerRules())
    assert not refused.accepted and "placeholder" in refused.reason
    snews = parse_message((samples / "gwcelery/snews_gcn.xml").read_bytes())
    assert snews.position is None and "position_placeholder" in snews.extra
    notice = json.loads(
        (samples / f"{NOTICES}swift__bat__guano.loc_arc_min.example.json").read_bytes()
    )
    notice.update(ra=0.0, dec=0.0, ra_dec_error=0.0)
    zeroed = parse_message(json.dumps(notice).encode())
    assert zeroed.position is None and zeroed.extra["position_placeholder"]["why"].startswith(
        "RA 0"
    )
    # A real position whose error is written as 0 keeps the position, without an error.
    notice.update(ra=336.26, dec=25.139, ra_dec_error=0.0)
    kept = parse_message(json.dumps(notice).encode())
    assert kept.position is not None and kept.position.error is None
    assert "error radius 0" in kept.extra["position_note"]
