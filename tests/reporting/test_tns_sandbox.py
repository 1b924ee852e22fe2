"""The TNS stand-in: its rules and quirks, and exactly-once reporting by the real client against it."""

from __future__ import annotations

import json

import httpx
import pytest

from followup.exceptions import AuthenticationError, RequestRejected, ServiceUnavailable
from followup.reporting.tns import (
    TnsClient,
    TnsOutcome,
    TnsOutcomeStatus,
    tns_marker,
)
from sandbox.fault_queue import Fault
from sandbox.tns import DEFAULT_BOT, TnsSandboxState, create_app
from tests.reporting.conftest import (
    AppTransport,
    FakeClock,
    make_at_report,
    make_measurement,
    make_target,
)

MARKER = tns_marker(DEFAULT_BOT.bot_id, DEFAULT_BOT.name)


@pytest.fixture
def state(clock: FakeClock) -> TnsSandboxState:
    return TnsSandboxState(processing_delay_s=3.0, clock=clock, rate_limit=50, cone_rate_limit=20)


@pytest.fixture
def http(state) -> httpx.Client:
    with httpx.Client(
        base_url="http://testserver/",
        transport=AppTransport(create_app(state)),
        headers={"User-Agent": MARKER},
    ) as client:
        yield client


@pytest.fixture
def tns(state, clock) -> TnsClient:
    transport = AppTransport(create_app(state))
    with TnsClient(
        DEFAULT_BOT.api_key,
        bot_id=DEFAULT_BOT.bot_id,
        bot_name=DEFAULT_BOT.name,
        base_url="http://testserver/api/",
        transport=transport,
        sleep=clock.sleep,
        clock=clock,
    ) as client:
        yield client


def make_report(target=None, dialect="new", points=None) -> dict:
    target = target or make_target()
    points = points or [
        make_measurement(target=target.name, hours=1.0, limit=21.5),
        make_measurement(target=target.name, hours=5.0, mag=19.6),
    ]
    return make_at_report(target, points, dialect=dialect)


def post(http: httpx.Client, path: str, **fields) -> httpx.Response:
    data = {"api_key": DEFAULT_BOT.api_key}
    data.update({k: json.dumps(v) if isinstance(v, dict) else v for k, v in fields.items()})
    return http.post(path, data=data)


# ----------------------------------------------------------------------------- the stand-in itself
def test_auth_needs_marker_and_key(http):
    assert post(http, "api/get/search", data={"objname": "x"}).status_code == 200
    bad_key = http.post("api/get/search", data={"api_key": "nope", "data": "{}"})
    assert bad_key.status_code == 401 and bad_key.json()["id_code"] == 401
    wrong_agent = http.post(
        "api/get/search",
        data={"api_key": DEFAULT_BOT.api_key, "data": "{}"},
        headers={"User-Agent": "python-requests"},
    )
    assert wrong_agent.status_code == 401
    other_bot = tns_marker(99, DEFAULT_BOT.name)
    assert (
        http.post(
            "api/get/search",
            data={"api_key": DEFAULT_BOT.api_key},
            headers={"User-Agent": other_bot},
        ).status_code
        == 401
    )


def test_rate_limit_headers_on_every_reply_and_429(clock):
    state = TnsSandboxState(clock=clock, rate_limit=3, rate_window_s=60)
    with httpx.Client(
        base_url="http://testserver/", transport=AppTransport(create_app(state))
    ) as http:
        answers = [
            http.post(
                "api/get/search",
                data={"api_key": "x", "data": "{}"},
                headers={"User-Agent": MARKER},
            )
            for _ in range(4)
        ]
        assert [a.status_code for a in answers] == [401, 401, 401, 429]
        assert [a.headers["x-rate-limit-remaining"] for a in answers] == ["2", "1", "0", "0"]
        assert all(a.headers["x-rate-limit-limit"] == "3" for a in answers)
        assert answers[-1].headers["x-rate-limit-reset"] == "60"
        clock.now += 61
        again = http.post("api/get/search", data={"api_key": "x"}, headers={"User-Agent": MARKER})
        assert again.status_code == 401 and again.headers["x-rate-limit-remaining"] == "2"


def test_cone_search_has_its_own_headers(http, state):
    state.add_object(150.0, -20.0, internal_names=["ZTF26aaa"])
    cone = post(
        http,
        "api/get/search",
        data={"ra": "10:00:00", "dec": "-20:00:00.5", "radius": "2", "units": "arcsec"},
    )
    assert cone.status_code == 200 and [o["objname"] for o in cone.json()["data"]] == [
        next(iter(state.objects))
    ]
    assert "x-cone-rate-limit-remaining" in cone.headers
    by_name = post(
        http, "api/get/search", data={"internal_name": "ZTF26aaa", "internal_name_exact_match": 1}
    )
    assert len(by_name.json()["data"]) == 1 and "x-cone-rate-limit-remaining" not in by_name.headers
    miss = post(
        http,
        "api/get/search",
        data={"ra": "150.01", "dec": "-20", "radius": "2", "units": "arcsec"},
    )
    assert miss.json()["data"] == []


def test_processing_delay_then_created_with_year_names(http, clock, state):
    sent = post(http, "api/set/bulk-report", data=make_report())
    assert sent.status_code == 200 and sent.json()["id_code"] == 200
    report_id = sent.json()["data"]["report_id"]
    assert post(http, "api/get/bulk-report-reply", report_id=str(report_id)).status_code == 404
    clock.now += 3.0
    reply = post(http, "api/get/bulk-report-reply", report_id=str(report_id))
    assert reply.status_code == 200
    entry = reply.json()["data"]["feedback"]["at_report"][0]
    assert entry["100"]["objname"] == "2026aaa" and entry["100"]["message_id"] == 100
    second = post(
        http, "api/set/bulk-report", data=make_report(make_target("other", ra=10.0, dec=10.0))
    )
    clock.now += 3.0
    entry = post(
        http, "api/get/bulk-report-reply", report_id=str(second.json()["data"]["report_id"])
    ).json()
    assert entry["data"]["feedback"]["at_report"][0]["100"]["objname"] == "2026aab"
    obj = post(http, "api/get/object", data={"objname": "2026aaa"}).json()["data"]
    assert obj["internal_names"] == "S260314ab-C1" and obj["radeg"] == pytest.approx(150.123456)
    assert post(http, "api/get/object", data={"objname": "2026zzz"}).status_code == 404


def test_existing_object_gets_101_and_legacy_dialect_is_accepted(http, clock, state):
    state.add_object(150.1234565, -20.654321, objname="2025xyz")
    sent = post(http, "api/set/bulk-report", data=make_report(dialect="legacy"))
    clock.now += 3.0
    reply = post(
        http, "api/get/bulk-report-reply", report_id=str(sent.json()["data"]["report_id"])
    ).json()
    assert reply["data"]["feedback"]["at_report"][0]["101"]["objname"] == "2025xyz"
    assert state.objects["2025xyz"].internal_names == ["S260314ab-C1"]


def test_identical_report_is_rejected(http, clock):
    first = post(http, "api/set/bulk-report", data=make_report())
    clock.now += 3.0
    assert (
        post(
            http, "api/get/bulk-report-reply", report_id=str(first.json()["data"]["report_id"])
        ).status_code
        == 200
    )
    again = post(http, "api/set/bulk-report", data=make_report())
    clock.now += 3.0
    reply = post(
        http, "api/get/bulk-report-reply", report_id=str(again.json()["data"]["report_id"])
    )
    assert reply.status_code == 400 and "An identical AT report" in reply.text


@pytest.mark.parametrize(
    ("mutate", "field", "code"),
    [
        pytest.param(lambda e: e.pop("non_detection"), "non_detection", 6, id="no non-detection"),
        pytest.param(
            lambda e: e["photometry"]["photometry_group"].clear(),
            "photometry",
            2,
            id="no discovery point",
        ),
        pytest.param(
            lambda e: e["non_detection"].update(obsdate="2026-03-15 00:00:00"),
            "non_detection",
            1,
            id="limit after discovery",
        ),
        pytest.param(
            lambda e: e.pop("reporting_group_id"), "reporting_groupid", 3, id="no reporting group"
        ),
        pytest.param(lambda e: e.update(reporter=""), "reporter", 3, id="no reporter"),
    ],
)
def test_rejections_carry_feedback(http, clock, mutate, field, code):
    report = make_report()
    mutate(report["at_report"]["0"])
    sent = post(http, "api/set/bulk-report", data=report)
    clock.now += 3.0
    reply = post(http, "api/get/bulk-report-reply", report_id=str(sent.json()["data"]["report_id"]))
    assert reply.status_code == 400
    entry = reply.json()["data"]["feedback"]["at_report"][0]
    assert entry[field][0]["message_id"] == code


def test_obsdate_formats(http, clock):
    report = make_report()
    report["at_report"]["0"]["non_detection"]["obsdate"] = "2461113.70"  # JD, before the discovery
    report["at_report"]["0"]["photometry"]["photometry_group"]["0"]["obsdate"] = "2026-03-14.4583"
    sent = post(http, "api/set/bulk-report", data=report)
    clock.now += 3.0
    assert (
        post(
            http, "api/get/bulk-report-reply", report_id=str(sent.json()["data"]["report_id"])
        ).status_code
        == 200
    )


def test_quirk_faults(http, clock, state):
    report = make_report()
    state.faults.add(Fault(kind="stored_nothing", endpoint="bulk-report", variant="empty"))
    nothing = post(http, "api/set/bulk-report", data=report)
    assert (
        nothing.status_code == 200
        and nothing.json()["data"] == {"report_id": ""}
        and state.reports == {}
    )
    state.faults.add(Fault(kind="gateway_timeout", endpoint="bulk-report"))
    timeout = post(http, "api/set/bulk-report", data=report)
    assert (
        timeout.status_code == 504
        and "Gateway Time-out" in timeout.text
        and len(state.reports) == 1
    )
    report_id = next(iter(state.reports))
    clock.now += 3.0
    state.faults.add(Fault(kind="reply_404", endpoint="bulk-report-reply", count=2))
    codes = [
        post(http, "api/get/bulk-report-reply", report_id=report_id).status_code for _ in range(3)
    ]
    assert codes == [404, 404, 200]
    state.faults.add(Fault(kind="rate_limit", endpoint="search", reset_s=17))
    limited = post(http, "api/get/search", data={"objname": "x"})
    assert limited.status_code == 429 and limited.headers["x-rate-limit-reset"] == "17"
    assert limited.json() == {"id_code": 429, "id_message": "Too Many Requests", "data": {}}


def test_rename_fault_gives_121(http, clock, state):
    state.faults.add(Fault(kind="rename", endpoint="process"))
    sent = post(http, "api/set/bulk-report", data=make_report())
    clock.now += 3.0
    entry = post(
        http, "api/get/bulk-report-reply", report_id=str(sent.json()["data"]["report_id"])
    ).json()
    feedback = entry["data"]["feedback"]["at_report"][0]
    assert (
        feedback["100"]["objname"] == "2026aaa" and feedback["121"]["new_object_name"] == "2026aab"
    )
    assert list(state.objects) == ["2026aab"]


def test_control_api(http, clock):
    assert (
        http.post(
            "sandbox/objects", json={"ra": 1.0, "dec": 2.0, "internal_names": ["X"]}
        ).status_code
        == 201
    )
    post(http, "api/set/bulk-report", data=make_report())
    assert http.get("sandbox/reports").json()[0]["state"] == "pending"
    assert http.post("sandbox/process").json() == {"processed": 1}
    reports = http.get("sandbox/reports").json()
    assert reports[0]["state"] == "processed" and reports[0]["objnames"]
    assert DEFAULT_BOT.api_key not in json.dumps(reports)
    assert len(http.get("sandbox/objects").json()) == 2
    assert [c["endpoint"] for c in http.get("sandbox/calls").json()] == ["bulk-report"]
    assert (
        http.post(
            "sandbox/faults", json={"kind": "stored_nothing", "endpoint": "nowhere"}
        ).status_code
        == 400
    )
    assert http.post("sandbox/reset").status_code == 204
    assert http.get("sandbox/reports").json() == [] and http.get("sandbox/objects").json() == []


# ----------------------------------------------------------------------------- exactly once, real client
def reports_of(state: TnsSandboxState, internal_name: str) -> list:
    return [
        r
        for r in state.reports.values()
        if any(e.get("internal_name") == internal_name for e in r.data["at_report"].values())
    ]


def accepted_reports(state: TnsSandboxState) -> list:
    return [r for r in state.reports.values() if r.state == "processed"]


def confirm_as_the_task_does(tns: TnsClient, report: dict, clock: FakeClock) -> TnsOutcome:
    """report_and_confirm, retried after ``retry_after`` on ServiceUnavailable as the task does."""
    for _ in range(3):
        try:
            return tns.report_and_confirm(report, poll_interval_s=1.0, max_wait_s=60)
        except ServiceUnavailable as exc:
            assert exc.retry_after is not None
            clock.sleep(exc.retry_after)
    raise AssertionError("still unavailable after three attempts")


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(None, id="no quirk"),
        pytest.param(Fault(kind="stored_nothing", endpoint="bulk-report"), id="200 nothing stored"),
        pytest.param(
            Fault(kind="stored_nothing", endpoint="bulk-report", variant="null"), id="200 null id"
        ),
        pytest.param(
            Fault(kind="reply_404", endpoint="bulk-report-reply", count=-1), id="404 for a known id"
        ),
        pytest.param(Fault(kind="gateway_timeout", endpoint="bulk-report"), id="504 after storing"),
        pytest.param(Fault(kind="rate_limit", endpoint="bulk-report", reset_s=5), id="429 on send"),
        pytest.param(
            Fault(kind="rate_limit", endpoint="bulk-report-reply", reset_s=5), id="429 on reply"
        ),
        pytest.param(
            Fault(kind="status", endpoint="bulk-report-reply", status=502, count=2),
            id="502 on reply",
        ),
        pytest.param(Fault(kind="rename", endpoint="process"), id="121 rename"),
    ],
)
def test_exactly_one_report_under_each_quirk(tns, state, fault, clock):
    if fault is not None:
        state.faults.add(fault)
    report = make_report()
    outcome = confirm_as_the_task_does(tns, report, clock)
    assert outcome.confirmed, outcome.notes
    state.process_due(force=True)
    assert len(reports_of(state, "S260314ab-C1")) == 1
    assert len(accepted_reports(state)) == 1 and len(state.objects) == 1
    assert outcome.objname == next(iter(state.objects))
    # a rerun sends nothing new, whatever the quirk
    again = tns.report_and_confirm(report, poll_interval_s=1.0, max_wait_s=60)
    assert again.status is TnsOutcomeStatus.ALREADY_KNOWN and again.sends == 0
    assert again.objname == outcome.objname and len(state.reports) == 1


def test_lasting_404_confirmed_by_search_not_resend(tns, state):
    state.faults.add(Fault(kind="reply_404", endpoint="bulk-report-reply", count=-1))
    outcome = tns.report_and_confirm(make_report(), poll_interval_s=1.0, max_wait_s=10)
    assert (
        outcome.status is TnsOutcomeStatus.FOUND
        and outcome.report_id is not None
        and outcome.sends == 1
    )


def test_504_that_stored_nothing_is_unconfirmed_then_a_later_run_sends(tns, state):
    state.faults.add(
        Fault(kind="status", endpoint="bulk-report", status=504, body="<html>504</html>")
    )
    outcome = tns.report_and_confirm(make_report(), poll_interval_s=2.0, max_wait_s=10)
    assert (
        outcome.status is TnsOutcomeStatus.UNCONFIRMED
        and outcome.sends == 1
        and state.reports == {}
    )
    later = tns.report_and_confirm(make_report(), poll_interval_s=1.0, max_wait_s=30)
    assert later.status is TnsOutcomeStatus.CREATED and len(state.reports) == 1


def test_nothing_stored_twice_leaves_nothing(tns, state):
    state.faults.add(Fault(kind="stored_nothing", endpoint="bulk-report", count=2))
    outcome = tns.report_and_confirm(make_report(), poll_interval_s=1.0, max_wait_s=30)
    assert outcome.status is TnsOutcomeStatus.NOT_STORED and state.reports == {}


def test_object_known_to_tns_is_not_reported(tns, state):
    state.add_object(150.123457, -20.654322, objname="2025abc", internal_names=["ZTF25xyz"])
    outcome = tns.report_and_confirm(make_report(), poll_interval_s=1.0, max_wait_s=30)
    assert (
        outcome.status is TnsOutcomeStatus.ALREADY_KNOWN
        and outcome.objname == "2025abc"
        and state.reports == {}
    )


def test_rejection_through_the_client(tns, state):
    report = make_report()
    del report["at_report"]["0"]["non_detection"]
    with pytest.raises(RequestRejected, match="non-detection or archival"):
        tns.report_and_confirm(report, poll_interval_s=1.0, max_wait_s=30)
    assert len(state.reports) == 1 and state.objects == {}


def test_wrong_key_through_the_client(state, clock):
    with (
        TnsClient(
            "wrong",
            bot_id=DEFAULT_BOT.bot_id,
            bot_name=DEFAULT_BOT.name,
            base_url="http://testserver/api/",
            transport=AppTransport(create_app(state)),
        ) as tns,
        pytest.raises(AuthenticationError),
    ):
        tns.search(internal_name="x")


def test_builder_output_is_accepted_by_the_stand_in_in_both_dialects(tns, state):
    for i, dialect in enumerate(("new", "legacy")):
        target = make_target(f"T{i}", ra=10.0 + i, dec=5.0)
        points = [
            make_measurement(target=target.name, hours=1.0, band="gp", limit=21.0),
            make_measurement(target=target.name, hours=4.0, band="ip", mag=18.2),
        ]
        outcome = tns.report_and_confirm(
            make_report(target, dialect, points), poll_interval_s=1.0, max_wait_s=30
        )
        assert outcome.status is TnsOutcomeStatus.CREATED
    assert sorted(state.objects) == ["2026aaa", "2026aab"]
