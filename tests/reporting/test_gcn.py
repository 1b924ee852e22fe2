"""GCN Circulars: the subject rule, drafts in GCN's style, email text, client (respx) and stand-in."""

from __future__ import annotations

import email
import json
from datetime import UTC, datetime

import httpx
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from followup.exceptions import (
    AuthenticationError,
    RequestRejected,
    ServiceUnavailable,
    UncertainOutcome,
)
from followup.reporting.gcn import (
    Circular,
    GcnCircularsClient,
    circular_email,
    draft_circular,
    event_label,
    parse_event_from_subject,
    subject_is_valid,
)
from sandbox import gcn as gcn_sandbox
from sandbox.fault_queue import Fault
from sandbox.gcn import DEFAULT_TOKEN, GcnSandboxState, GcnUser, create_app
from tests.reporting.conftest import T0, AppTransport, make_measurement, make_target

BASE = "https://gcn.example.org/"
TOKEN = "eyJhbGciOi.secret-access-token"


# ----------------------------------------------------------------------------- the subject rule
@pytest.mark.parametrize(
    "subject",
    [
        "LIGO/Virgo/KAGRA S250101ab: LCO optical upper limits",
        "LIGO/Virgo/KAGRA MS250101ab: LCO optical candidate counterpart",
        "GRB 250101A: LCO optical afterglow",
        "EP250101a: LCO optical counterpart detection",
        "IceCube-250101A: LCO optical follow-up",
        "AT2026abc: LCO photometry",  # no keyword, but GCN parses the event name
        "An optical transient in the field",
    ],
)
def test_valid_subjects(subject):
    assert subject_is_valid(subject)
    assert gcn_sandbox.subject_is_valid(subject)


@pytest.mark.parametrize(
    "subject",
    [
        "",
        "LCO optical upper limits",
        "Re: LIGO/Virgo/KAGRA S250101ab: LCO optical upper limits",
        "Fwd: GRB 250101A",
        "LIGO/Virgo/KAGRA S250101ab: draft of LCO upper limits",
        "Out of office: GRB 250101A",
        "Subject: GRB 250101A",
    ],
)
def test_invalid_subjects(subject):
    assert not subject_is_valid(subject)
    assert not gcn_sandbox.subject_is_valid(subject)


@pytest.mark.parametrize(
    ("subject", "event"),
    [
        ("LIGO/Virgo/KAGRA S250101ab: LCO upper limits", "LIGO/Virgo/KAGRA S250101ab"),
        ("GRB 250101a: LCO", "GRB 250101A"),
        ("EP250101a: LCO", "EP250101a"),
        ("IceCube-250101A: LCO", "IceCube-250101A"),
        ("LCO observations of AT 2026abc", "AT2026abc"),
        ("LCO observations", None),
    ],
)
def test_event_from_subject(subject, event):
    assert parse_event_from_subject(subject) == event


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("abcdefgilnorstuvwxyzGKLRSTVW/:-_ .0123456789"), max_size=40)
)
def test_subject_rule_matches_the_independent_stand_in(subject):
    assert subject_is_valid(subject) == gcn_sandbox.subject_is_valid(subject)


def test_event_labels():
    assert event_label("S250101ab") == "LIGO/Virgo/KAGRA S250101ab"
    assert event_label("MS250101ab") == "LIGO/Virgo/KAGRA MS250101ab"
    assert event_label("GW250101") == "LIGO/Virgo/KAGRA GW250101"
    assert event_label("GRB 250101A") == "GRB 250101A"
    assert event_label("EP250101a") == "EP250101a"


# ----------------------------------------------------------------------------- drafts
def test_upper_limits_draft():
    targets = [make_target("S260314ab-G1", 150.1, -20.6), make_target("S260314ab-G2", 151.0, -21.0)]
    points = [
        make_measurement("S260314ab-G1", 1.0, "rp", limit=21.45),
        make_measurement("S260314ab-G2", 1.5, "gp", limit=21.1, exposure=None),
    ]
    c = draft_circular(
        "S260314ab",
        points,
        observers=["A. Author (LCO)", "B. Author (UCSB)"],
        team="LCO follow-up team",
        targets=targets,
        event_time=T0,
        catalog="ATLAS-REFCAT2",
        references=["LIGO/Virgo/KAGRA Collaboration, GCN Circ. 40001"],
    )
    assert c.subject == "LIGO/Virgo/KAGRA S260314ab: LCO optical upper limits"
    assert subject_is_valid(c.subject) and c.event_id == "S260314ab" and c.format == "text/plain"
    lines = c.body.splitlines()
    assert (
        lines[0] == "A. Author (LCO), B. Author (UCSB) report on behalf of the LCO follow-up team:"
    )
    assert c.line_count < 60 and all(len(line) <= 100 for line in lines)
    assert c.body.isascii()
    header = next(line for line in lines if line.startswith("Target"))
    assert header.split() == [
        "Target",
        "Date",
        "(UT)",
        "T-T0",
        "(h)",
        "Telescope",
        "Filter",
        "Exp",
        "(s)",
        "AB",
        "mag",
    ]
    rows = [line for line in lines if line.startswith("S260314ab-G")]
    assert rows[0].split() == [
        "S260314ab-G1",
        "2026-03-14",
        "07:00:00",
        "1.00",
        "LCO",
        "1-m",
        "Sinistro",
        "r",
        "300",
        ">",
        "21.45",
    ]
    assert rows[1].split()[-4:] == ["g", "-", ">", "21.10"]
    # the table columns line up (fixed width)
    assert len({line.index("Filter") for line in [header]} | {rows[0].index(" r ") + 1}) == 1
    text = " ".join(c.body.split())
    assert "GCN Circ. 40001" in text and "calibrated against ATLAS-REFCAT2" in text
    assert (
        "not corrected for Galactic extinction" in text
        and "Further observations are planned." in text
    )
    assert "starting 1.00 h after the event" in text and "in the g, r filters" in text


def test_candidate_draft_lists_the_position():
    target = make_target()
    points = [make_measurement(hours=1.0), make_measurement(hours=5.0, mag=19.61)]
    c = draft_circular(
        "S260314ab", points, observers=["A. Author (LCO)"], team="LCO team", targets=[target]
    )
    assert c.subject == "LIGO/Virgo/KAGRA S260314ab: LCO optical candidate counterpart"
    assert "150.12346" in c.body and "-20.65432" in c.body
    assert "19.61 +/- 0.08" in c.body and "> 21.40" in c.body


def test_long_tables_are_summarised_not_dropped():
    points = [make_measurement(hours=h / 10) for h in range(45)]
    c = draft_circular("GRB 260314A", points, observers=["A"], team="T", max_rows=20)
    assert c.subject == "GRB 260314A: LCO optical upper limits"
    assert "(25 further measurements are not listed here.)" in c.body
    assert c.line_count < 60


def test_draft_refuses_bad_input():
    points = [make_measurement()]
    with pytest.raises(ValueError, match="measurement"):
        draft_circular("S1", [], observers=["A"], team="T")
    with pytest.raises(ValueError, match="observers"):
        draft_circular("S1", points, observers=[], team="T")
    with pytest.raises(ValueError, match="not given"):
        draft_circular("S1", points, observers=["A"], team="T", targets=[make_target("other")])
    with pytest.raises(ValueError, match="refuse the subject"):
        draft_circular("S1", points, observers=["A"], team="T", label="Our draft", facility="LCO")


def test_circular_email():
    c = draft_circular(
        "S260314ab", [make_measurement()], observers=["A. Author (LCO)"], team="LCO team"
    )
    text = circular_email(
        c, from_addr="a.author@lco.example", date=datetime(2026, 3, 14, 12, tzinfo=UTC)
    )
    parsed = email.message_from_string(text)
    assert parsed["To"] == "circulars@gcn.nasa.gov" and parsed["From"] == "a.author@lco.example"
    assert parsed["Subject"] == c.subject and parsed.get_content_type() == "text/plain"
    assert parsed["Date"] == "Sat, 14 Mar 2026 12:00:00 +0000"
    assert parsed.get_payload(decode=True).decode() == c.body
    with pytest.raises(ValueError):
        circular_email(c, from_addr="nobody")
    with pytest.raises(ValueError):
        circular_email(Circular(subject="Re: hello", body="x"), from_addr="a@b.c")


# ----------------------------------------------------------------------------- client (respx)
@pytest.fixture
def circular() -> Circular:
    return Circular(
        subject="GRB 260314A: LCO optical upper limits",
        body="A. Author report:\n...\n",
        event_id="GRB 260314A",
    )


@pytest.fixture
def gcn() -> GcnCircularsClient:
    with GcnCircularsClient(TOKEN, base_url=BASE) as client:
        yield client


@respx.mock(base_url=BASE)
def test_submit_circular(respx_mock, gcn, circular):
    record = {
        "circularId": 40123,
        "createdOn": 1773489600000,
        "subject": circular.subject,
        "body": circular.body,
        "submitter": "A. Author at LCO <a@lco>",
        "submittedHow": "api",
        "eventId": "GRB 260314A",
        "format": "text/plain",
    }
    route = respx_mock.post("api/circulars").respond(200, json=record)
    stored = gcn.submit_circular(circular)
    assert stored.circular_id == 40123 and stored.event_id == "GRB 260314A"
    assert stored.created_on == datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
    assert stored.url == f"{BASE}circulars/40123"
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == {
        "subject": circular.subject,
        "body": circular.body,
        "format": "text/plain",
        "eventId": "GRB 260314A",
    }


@pytest.mark.parametrize(
    ("status", "text", "error"),
    [
        (403, "Bearer missing", AuthenticationError),
        (403, "Invalid scope", AuthenticationError),
        (400, "subject is invalid", RequestRejected),
        (400, "body is invalid", RequestRejected),
        (500, "Unexpected Server Error", UncertainOutcome),
        (503, "Service Unavailable", ServiceUnavailable),
    ],
)
@respx.mock(base_url=BASE)
def test_submit_errors(respx_mock, gcn, circular, status, text, error):
    respx_mock.post("api/circulars").respond(status, text=text)
    with pytest.raises(error, match=text) as info:
        gcn.submit_circular(circular)
    assert info.value.status_code == status and TOKEN not in str(info.value)


def test_invalid_subject_is_refused_before_sending(gcn):
    with pytest.raises(ValueError, match="auto-reply"):
        gcn.submit_circular(Circular(subject="Re: GRB 260314A", body="x"))
    with pytest.raises(ValueError, match="keyword"):
        gcn.submit_circular({"subject": "LCO photometry", "body": "x"})
    assert TOKEN not in repr(gcn) and TOKEN not in repr(gcn.__dict__)


# ----------------------------------------------------------------------------- stand-in
@pytest.fixture
def gcn_state() -> GcnSandboxState:
    return GcnSandboxState(
        {
            DEFAULT_TOKEN: GcnUser(),
            "no-scope": GcnUser(scope="openid profile"),
            "not-endorsed": GcnUser(groups=[]),
        },
        clock=lambda: 1773489600.0,
    )


@pytest.fixture
def http(gcn_state) -> httpx.Client:
    with httpx.Client(
        base_url="http://testserver/", transport=AppTransport(create_app(gcn_state))
    ) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("headers", "payload", "status", "text"),
    [
        ({}, {"subject": "GRB 1", "body": "x"}, 403, "Bearer missing"),
        (bearer("forged"), {"subject": "GRB 1", "body": "x"}, 500, "Unexpected Server Error"),
        (bearer("no-scope"), {"subject": "GRB 1", "body": "x"}, 403, "Invalid scope"),
        (
            bearer("not-endorsed"),
            {"subject": "GRB 1", "body": "x"},
            403,
            "User is not in the submitters group",
        ),
        (bearer(DEFAULT_TOKEN), {"subject": "GRB 1"}, 400, "missing required parameter"),
        (
            bearer(DEFAULT_TOKEN),
            {"subject": "LCO photometry", "body": "x"},
            400,
            "subject is invalid",
        ),
        (
            bearer(DEFAULT_TOKEN),
            {"subject": "Re: GRB 250101A", "body": "x"},
            400,
            "subject is invalid",
        ),
        (bearer(DEFAULT_TOKEN), {"subject": "GRB 250101A", "body": ""}, 400, "body is invalid"),
        (
            bearer(DEFAULT_TOKEN),
            {"subject": "GRB 250101A", "body": "x", "format": "text/html"},
            400,
            "format is invalid",
        ),
    ],
)
def test_stand_in_errors(http, gcn_state, headers, payload, status, text):
    response = http.post("api/circulars", json=payload, headers=headers)
    assert response.status_code == status and response.text == text
    assert gcn_state.circulars == []


def test_stand_in_stores_and_archives(http):
    payload = {
        "subject": "LIGO/Virgo/KAGRA S250101ab: LCO optical upper limits",
        "body": "text",
        "format": "text/plain",
    }
    response = http.post("api/circulars", json=payload, headers=bearer(DEFAULT_TOKEN))
    assert response.status_code == 200
    record = response.json()
    assert record["circularId"] == 40000 and record["createdOn"] == 1773489600000
    assert record["submittedHow"] == "api" and record["eventId"] == "LIGO/Virgo/KAGRA S250101ab"
    assert record["submitter"] == "Sandbox Submitter at followup sandbox <submitter@example.org>"
    assert http.get("circulars/40000.json").json() == record
    assert http.get("sandbox/circulars").json() == [record]
    assert (
        http.post(
            "api/circulars", json=payload, headers={**bearer(DEFAULT_TOKEN), "Accept": "text/html"}
        ).status_code
        == 404
    )
    assert http.get("api/circulars").status_code == 405


def test_client_draft_accepted_by_stand_in(gcn_state):
    c = draft_circular(
        "S260314ab",
        [make_measurement(), make_measurement(hours=3, mag=19.0)],
        observers=["A. Author (LCO)"],
        team="T",
    )
    with GcnCircularsClient(
        DEFAULT_TOKEN, base_url="http://testserver/", transport=AppTransport(create_app(gcn_state))
    ) as gcn:
        record = gcn.submit_circular(c)
        assert (
            record.circular_id == 40000
            and record.body == c.body
            and record.event_id == "LIGO/Virgo/KAGRA S260314ab"
        )
        gcn_state.faults.add(
            Fault(kind="status", endpoint="circulars", status=502, variant="after_store")
        )
        with pytest.raises(UncertainOutcome):
            gcn.submit_circular(c)
        gcn_state.faults.add(Fault(kind="status", endpoint="circulars", status=503))
        with pytest.raises(ServiceUnavailable):
            gcn.submit_circular(c)
    assert len(gcn_state.circulars) == 2  # the 502 came after storing; the 503 before
    forged = GcnCircularsClient(
        "forged", base_url="http://testserver/", transport=AppTransport(create_app(gcn_state))
    )
    with forged, pytest.raises(UncertainOutcome):
        forged.submit_circular(c)
