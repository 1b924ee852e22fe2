"""Reports ready to leave (followup.reporting.outbox): built, edited within limits, sent once."""

from __future__ import annotations

import json

import pytest
import respx

from followup.alerts import parse_message
from followup.alerts.mock import make_lvk_alert
from followup.ledger import Ledger
from followup.models import ReportDestination, ReportStatus
from followup.reporting.gcn import GcnCircularsClient
from followup.reporting.hermes import HermesClient
from followup.reporting.outbox import (
    TEXT_LIMITS,
    Outgoing,
    decline,
    deliver,
    gcn_outgoing,
    hermes_outgoing,
    tns_outgoing,
)
from followup.reporting.tns import TnsClient
from tests.reporting.conftest import REPORTER, make_measurement, make_target
from tests.reporting.test_tns import FakeTns, created, form

ALERT = parse_message(make_lvk_alert("S260314ab", "PRELIMINARY"))
TARGET = make_target()
POINTS = [
    make_measurement(hours=1.0, band="rp", limit=21.5),
    make_measurement(hours=5.0, band="rp", mag=19.61),
    make_measurement(hours=5.2, band="gp", mag=19.95),
]
HERMES = "https://hermes.example.org/"
TNS = "https://tns.example.org/api/"


def hermes_report(topic: str = "hermes.photometry") -> Outgoing:
    return hermes_outgoing(
        ALERT, [TARGET], POINTS, authors=["A. Author (LCO)"], team="the team", topic=topic
    )


def gcn_report() -> Outgoing:
    return gcn_outgoing(ALERT, [TARGET], POINTS, authors=["A. Author (LCO)"], team="the team")


def test_each_report_knows_its_destination_subject_and_publicity() -> None:
    public, test = hermes_report(), hermes_report("hermes.test")
    assert public.public and not test.public
    assert public.approval_subject == f"report:hermes:S260314ab:{public.report.content_hash[:12]}"
    at_report = tns_outgoing(ALERT, TARGET, POINTS, reporter=REPORTER)
    assert at_report is not None and at_report.public
    assert at_report.approval_subject.startswith("report:tns:S260314ab:S260314ab-C1:")
    assert at_report.text.startswith("Optical candidate counterpart of S260314ab")
    never_seen = make_measurement(target="other", hours=1.0, limit=21.5)
    assert tns_outgoing(ALERT, make_target("other"), [never_seen], reporter=REPORTER) is None
    circular = gcn_report()
    assert circular.public and circular.destination is ReportDestination.GCN


@pytest.mark.parametrize("build", [hermes_report, gcn_report], ids=["hermes", "gcn"])
def test_an_edit_changes_what_is_sent_not_the_ledger_key(build) -> None:
    original = build()
    edited = original.with_text("Edited by the on-call astronomer.")
    assert edited.report == original.report
    assert edited.approval_subject == original.approval_subject
    assert edited.text == "Edited by the on-call astronomer."
    sent = edited.content.model_dump()
    assert "Edited by the on-call astronomer." in (sent.get("message_text"), sent.get("body"))
    assert original.text != edited.text  # the original is not changed


def test_a_tns_edit_replaces_the_remarks_of_a_copy() -> None:
    original = tns_outgoing(ALERT, TARGET, POINTS, reporter=REPORTER)
    assert original is not None
    edited = original.with_text("New remarks.")
    assert edited.content["at_report"]["0"]["remarks"] == "New remarks."
    assert original.content["at_report"]["0"]["remarks"] == original.text != "New remarks."


@pytest.mark.parametrize(
    ("build", "text", "problem"),
    [
        (hermes_report, "x" * (TEXT_LIMITS[ReportDestination.HERMES] + 1), "at most 10000"),
        (gcn_report, "x" * (TEXT_LIMITS[ReportDestination.GCN] + 1), "at most 10000"),
        (hermes_report, "bell\x07 and NUL\x00", "control characters"),
        (gcn_report, "  \n ", "needs a body"),
    ],
    ids=["hermes-too-long", "gcn-too-long", "control-characters", "empty-circular"],
)
def test_bad_text_edits_are_named(build, text: str, problem: str) -> None:
    problems = build().text_problems(text)
    assert problems and any(problem in p for p in problems), problems


def test_good_text_edits_pass() -> None:
    assert hermes_report().text_problems("Line one.\n\tLine two.\r\n") == []
    assert hermes_report().text_problems("") == []  # HERMES text may be empty
    at_report = tns_outgoing(ALERT, TARGET, POINTS, reporter=REPORTER)
    assert at_report is not None and at_report.text_problems("y" * 2000) == []
    assert at_report.text_problems("y" * 2001)


@respx.mock(base_url=HERMES)
def test_a_report_is_delivered_once(respx_mock, sqlite_ledger: Ledger) -> None:
    uuid = "0f6b0e4c-5c1f-4b8e-9a43-2f1e0f1d2a3b"
    outgoing = hermes_report().with_text("Edited.")
    route = respx_mock.post("api/v0/submit_message/").respond(
        200, json={**outgoing.content.to_payload(), "uuid": uuid}
    )
    with HermesClient("token", base_url=HERMES) as client:
        row = deliver(sqlite_ledger, outgoing, client)
        again = deliver(sqlite_ledger, hermes_report(), client)
    assert (row.status, row.remote_id) == (ReportStatus.CONFIRMED, uuid)
    assert again.id == row.id and again.status == ReportStatus.CONFIRMED
    assert route.call_count == 1
    assert json.loads(route.calls.last.request.content)["message_text"] == "Edited."


def test_a_report_needs_its_destinations_client(sqlite_ledger: Ledger) -> None:
    with (
        GcnCircularsClient("token", base_url="https://gcn.example.org") as client,
        pytest.raises(TypeError, match="HermesClient"),
    ):
        deliver(sqlite_ledger, hermes_report(), client)
    assert sqlite_ledger.reports.for_event("S260314ab") == []


@respx.mock(base_url=TNS, assert_all_called=False)
def test_an_edited_tns_report_goes_out_with_its_remarks(respx_mock, sqlite_ledger) -> None:
    fake = FakeTns(respx_mock)
    fake.reply_answers = [created()]
    original = tns_outgoing(ALERT, TARGET, POINTS, reporter=REPORTER)
    assert original is not None
    with TnsClient("key", bot_id=1, bot_name="bot", base_url=TNS, sleep=lambda s: None) as client:
        row = deliver(sqlite_ledger, original.with_text("Edited remarks."), client)
    assert (row.status, row.remote_id) == (ReportStatus.CONFIRMED, "2026abc")
    [send] = [c.request for c in respx_mock.calls if c.request.url.path.endswith("bulk-report")]
    assert json.loads(form(send)["data"])["at_report"]["0"]["remarks"] == "Edited remarks."


def test_a_decline_is_recorded_unless_the_report_went_out(sqlite_ledger: Ledger) -> None:
    outgoing = hermes_report()
    assert decline(sqlite_ledger, outgoing.report).status == ReportStatus.DECLINED
    sent = gcn_report()
    row, _ = sqlite_ledger.reports.claim(sent.report)
    sqlite_ledger.reports.update(row.id, status=ReportStatus.CONFIRMED)
    assert decline(sqlite_ledger, sent.report).status == ReportStatus.CONFIRMED
