"""The stand-ins of HERMES, TNS and GCN refuse what the services refuse, and take our payloads.

Each case names the rule's public source: LCOGT/hermes ``hermes/serializers.py``; TNS's value
lists as skyportal/skyportal ``skyportal/utils/tns.py`` and ``tools/populate_tns_ids`` keep them;
nasa-gcn/gcn.nasa.gov ``app/routes/circulars/circulars.lib.ts`` and ``app/routes/api.circulars.ts``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from followup.reporting.gcn import draft_circular, parse_event_from_subject
from followup.reporting.hermes import build_hermes_message
from sandbox.gcn import DEFAULT_TOKEN as GCN_TOKEN
from sandbox.gcn import GcnSandboxState
from sandbox.gcn import create_app as gcn_app
from sandbox.hermes_validation import HermesContext, validate_hermes_message
from sandbox.tns import TnsSandboxState
from tests.reporting.conftest import (
    TestClient,
    make_at_report,
    make_measurement,
    make_target,
)

Change = Callable[[dict[str, Any]], None]


def hermes_payload() -> dict[str, Any]:
    message = build_hermes_message(
        "S260314ab",
        [make_target()],
        [make_measurement(hours=1.0), make_measurement(hours=5.0, mag=19.61)],
        title="LIGO/Virgo/KAGRA S260314ab: LCO follow-up photometry",
        authors="A. Author (LCO)",
        message_text="We observed the candidate.",
        target_details={
            "S260314ab-C1": {
                "ra_error": 0.3,
                "dec_error": 0.3,
                "ra_error_units": "arcsec",
                "dec_error_units": "arcsec",
                "host_name": "NGC 1234",
                "host_redshift": 0.012,
            }
        },
    )
    return message.to_payload()


def target(p: dict[str, Any]) -> dict[str, Any]:
    return p["data"]["targets"][0]


def point(p: dict[str, Any]) -> dict[str, Any]:
    return p["data"]["photometry"][0]


def reference(**fields: Any) -> Change:
    return lambda p: p["data"].setdefault("references", []).append(fields)


HERMES_CASES = [
    pytest.param(reference(source="GCN"), {"data": {"references": [{"citation": ["Must set citation with source"]}]}}, id="source without citation"),
    pytest.param(reference(citation="GCN 1"), {"data": {"references": [{"source": ["Must set source with citation"]}]}}, id="citation without source"),
    pytest.param(reference(url="not a url"), {"data": {"references": [{"url": ["Enter a valid URL."]}]}}, id="reference url"),
    pytest.param(reference(source="hop_uuid", citation="0b9a"), {"data": {"references": [{"citation": ["hop_uuid 0b9a does not exist"]}]}}, id="hop_uuid unknown"),
    pytest.param(lambda p: point(p).update(date_obs="yesterday-ish"), {"data": {"photometry": [{"date_obs": ["yesterday-ish does not parse with dateutil.parser.parse. Please specify the date in a standard format or as a JD."]}, {}]}}, id="date_obs"),
    pytest.param(lambda p: point(p).update(date_obs=3000000), {"data": {"photometry": [{"date_obs": ["Date 3000000.0 in JD format must be within bounds of 2400000 to 2600000, and in MJD format within bounds of 15000 to 150000."]}, {}]}}, id="date_obs JD"),
    pytest.param(lambda p: target(p).update(epoch="J2000"), {"data": {"targets": [{"epoch": ["J2000 does not parse with dateutil.parser.parse. Please specify the date in a standard format or as a JD."]}]}}, id="target epoch"),
    pytest.param(lambda p: target(p).update(aliases="AT2026abc"), {"data": {"targets": [{"aliases": ['Expected a list of items but got type "str".']}]}}, id="aliases not a list"),
    pytest.param(lambda p: target(p).update(aliases=["ok", None]), {"data": {"targets": [{"aliases": {"1": ["This field may not be null."]}}]}}, id="alias null"),
    pytest.param(lambda p: target(p).update(distance=40, distance_units="parsec"), {"data": {"targets": [{"distance_units": ['"parsec" is not a valid choice.']}]}}, id="distance units"),
    pytest.param(lambda p: target(p).update(ra_error_units="deg"), {"data": {"targets": [{"ra_error_units": ['"deg" is not a valid choice.']}]}}, id="error units"),
    pytest.param(lambda p: target(p).update(new_discovery="maybe"), {"data": {"targets": [{"new_discovery": ["Must be a valid boolean."]}]}}, id="new_discovery"),
    pytest.param(lambda p: target(p).update(discovery_info={"transient_type": "SN"}), {"data": {"targets": [{"discovery_info": {"transient_type": ['"SN" is not a valid choice.']}}]}}, id="transient type"),
    pytest.param(lambda p: target(p).update(discovery_info={"date": "soon"}), {"data": {"targets": [{"discovery_info": {"date": ["soon does not parse with dateutil.parser.parse. Please specify the date in a standard format or as a JD."]}}]}}, id="discovery date"),
    pytest.param(lambda p: target(p).update(file_info=[{"description": "x"}]), {"data": {"targets": [{"file_info": [{"name": ["This field is required."]}]}]}}, id="file without name"),
    pytest.param(lambda p: target(p).update(dec=95), {"data": {"targets": [{"dec": ["Must be in a format astropy understands"]}]}}, id="dec beyond the pole"),
    pytest.param(lambda p: target(p).pop("dec"), {"data": {"targets": [{"dec": ["Must set dec if ra is set"]}]}}, id="ra without dec"),
    pytest.param(lambda p: point(p).update(brightness_unit="AB"), {"data": {"photometry": [{"brightness_unit": ['"AB" is not a valid choice.']}, {}]}}, id="brightness unit"),
    pytest.param(lambda p: [point(p).pop(k) for k in ("telescope", "instrument")], {"data": {"photometry": [{"telescope": ["Must have at least one of telescope or instrument set"], "instrument": ["Must have at least one of telescope or instrument set"]}, {}]}}, id="no telescope or instrument"),
    pytest.param(lambda p: point(p).update(target_name="other"), {"data": {"photometry": [{"target_name": ["The target_name must reference a name in your target table"]}, {}]}}, id="unknown target"),
    pytest.param(lambda p: p["data"].update(astrometry=[{"target_name": "S260314ab-C1", "date_obs": "2026-03-14", "telescope": "LCO 1-m", "ra": "10.0"}]), {"data": {"astrometry": [{"dec": ["This field is required."]}]}}, id="astrometry without dec"),
    pytest.param(lambda p: p.update(submit_to_gcn=True, title="LCO photometry"), {"non_field_errors": ["Must register a valid GCN account on your Profile page to submit to GCN", 'Title must contain one of allowed subject keywords from the <a href="https://gcn.nasa.gov/docs/circulars/styleguide#message-content" target="_blank">GCN Style Guide</a> to submit to GCN.']}, id="GCN title and account"),
    pytest.param(lambda p: p.update(submit_to_tns=True), {"data": {"targets": [{"discovery_info": {"reporting_group": ["Target must have discovery info reporting group for TNS submission"], "discovery_source": ["Target must have discovery info discovery source for TNS submission"], "transient_type": ["Target must have a discovery info transient_type for TNS submission"]}}]}}, id="TNS discovery info"),
]  # fmt: skip


def test_our_hermes_message_is_valid() -> None:
    assert validate_hermes_message(hermes_payload(), context=HermesContext(dev_server=True)) == {}


@pytest.mark.parametrize(("change", "expected"), HERMES_CASES)
def test_hermes_refuses_what_its_serializer_refuses(change: Change, expected: Any) -> None:
    payload = hermes_payload()
    change(payload)
    assert validate_hermes_message(payload, context=HermesContext()) == expected


def at_report(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    first = make_measurement(hours=1.0)
    report = make_at_report(make_target(), [first, make_measurement(hours=5.0, mag=19.61)])
    change(report["at_report"]["0"])
    return report


def detection(entry: dict[str, Any]) -> dict[str, Any]:
    return entry["photometry"]["photometry_group"]["0"]


TNS_CASES = [
    pytest.param(lambda e: e.update(reporting_group_id="999999"), "reporting_groupid", "Invalid group id '999999'", id="unknown group"),
    pytest.param(lambda e: detection(e).update(filter_value="999"), "photometry", "Invalid filter id 999 (not in TNS's filters)", id="unknown filter"),
    pytest.param(lambda e: detection(e).update(instrument_value="99999"), "photometry", "Invalid instrument id 99999 (not in TNS's instruments)", id="unknown instrument"),
    pytest.param(lambda e: detection(e).update(flux_units="77"), "photometry", "Invalid unit id 77 (not in TNS's units)", id="unknown unit"),
    pytest.param(lambda e: e.update(discovery_datetime="2099-01-01 00:00:00"), "discovery_datetime", "The discovery date cannot be in the future", id="future discovery"),
]  # fmt: skip


def tns_feedback(report: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    state = TnsSandboxState(processing_delay_s=0)
    stored = state.store("1", report)
    state.process_due(force=True)
    return stored.state, stored.feedback["at_report"][0]


def test_our_at_report_is_accepted() -> None:
    state, feedback = tns_feedback(at_report(lambda entry: None))
    assert state == "processed" and "100" in feedback


@pytest.mark.parametrize(("change", "field", "message"), TNS_CASES)
def test_tns_refuses_ids_outside_its_lists(change: Change, field: str, message: str) -> None:
    state, feedback = tns_feedback(at_report(change))
    assert state == "rejected"
    assert message in repr(feedback[field])


GCN_SUBJECTS = [
    ("GRB 250101A: LCO optical afterglow", "GRB 250101A"),
    ("SGR 1935+2154: LCO limits", "SGR 1935+2154"),
    ("SGR Swift J1555.2+5402: x", "SGR Swift J1555.2+5402"),
    ("IceCube-250101A: LCO follow-up", "IceCube-250101A"),
    ("IceCube-Cascade 250101a: LCO follow-up", "IceCube-Cascade 250101A"),
    ("ZTF25abcdef: LCO photometry", "ZTF25abcdef"),
    ("HAWC-250101A: LCO follow-up", "HAWC-250101A"),
    ("LIGO/Virgo/KAGRA S250101ab: LCO upper limits", "LIGO/Virgo/KAGRA S250101ab"),
    ("ANTARES 250101a: LCO follow-up", "ANTARES 250101A"),
    ("Baksan Neutrino Observatory Alert 250101.01: LCO", "Baksan Neutrino Observatory Alert 250101.01"),
    ("EP250101a: LCO optical counterpart", "EP250101a"),
    ("SN 2025abc: LCO photometry", "SN 2025abc"),
    ("GW250101: LCO follow-up", "GW250101"),
    ("FRB 20250101A: LCO limits", "FRB 20250101A"),
    ("sb20250101: LCO limits", "sb20250101"),
    ("XRF 250101A: LCO limits", "XRF 250101A"),
    ("AT2025abc: LCO classification", "AT2025abc"),
]  # fmt: skip


@pytest.fixture
def gcn() -> TestClient:
    return TestClient(gcn_app(GcnSandboxState()))


def post_circular(gcn: TestClient, payload: dict[str, Any]) -> Any:
    return gcn.post(
        "/api/circulars", json=payload, headers={"Authorization": f"Bearer {GCN_TOKEN}"}
    )


@pytest.mark.parametrize(("subject", "event_id"), GCN_SUBJECTS)
def test_gcn_derives_every_event_pattern(gcn: TestClient, subject: str, event_id: str) -> None:
    stored = post_circular(gcn, {"subject": subject, "body": "Observations."})
    assert stored.status_code == 200, stored.text
    assert stored.json()["eventId"] == event_id == parse_event_from_subject(subject)


def test_gcn_format_null_or_empty_as_gcn(gcn: TestClient) -> None:
    base = {"subject": "GRB 250101A: LCO limits", "body": "Observations."}
    refused = post_circular(gcn, {**base, "format": None})
    assert (refused.status_code, refused.text) == (400, "missing required parameter")
    empty = post_circular(gcn, {**base, "format": ""})
    assert empty.status_code == 200 and "format" not in empty.json()
    bad = post_circular(gcn, {**base, "format": "text/html"})
    assert (bad.status_code, bad.text) == (400, "format is invalid")


def test_our_circular_is_accepted(gcn: TestClient) -> None:
    circular = draft_circular(
        "S260314ab",
        [make_measurement(hours=1.0)],
        observers=["A. Author (LCO)"],
        team="LCO team",
        event_time=datetime(2026, 3, 14, 5, tzinfo=UTC),
    )
    stored = post_circular(gcn, circular.to_payload())
    assert stored.status_code == 200 and stored.json()["eventId"] == "LIGO/Virgo/KAGRA S260314ab"
