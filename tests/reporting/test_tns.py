"""TNS: AT report builder, client calls and quirks (respx), and report_and_confirm's exactly-once logic."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from followup.exceptions import (
    AuthenticationError,
    NotFound,
    RequestRejected,
    ServiceUnavailable,
    UncertainOutcome,
)
from followup.reporting.tns import (
    AtDiscovery,
    TnsClient,
    TnsIdenticalReport,
    TnsNotStored,
    TnsOutcomeStatus,
    TnsReporter,
    build_at_report,
    discovery_points,
    report_identity,
    tns_marker,
)
from tests.reporting.conftest import FakeClock, make_at_report, make_measurement, make_target

BASE = "https://tns.example.org/api/"
KEY = "tns-secret-api-key-0123456789"


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


@pytest.fixture
def tns(clock: FakeClock) -> TnsClient:
    with TnsClient(
        KEY, bot_id=4321, bot_name="followup_bot", base_url=BASE, sleep=clock.sleep, clock=clock
    ) as c:
        yield c


@pytest.fixture
def report(target, candidate_points) -> dict:
    return make_at_report(target, candidate_points)


# ----------------------------------------------------------------------------- builder
def test_marker():
    assert (
        tns_marker(4321, "followup_bot")
        == 'tns_marker{"tns_id": 4321, "type": "bot", "name": "followup_bot"}'
    )
    assert json.loads(tns_marker("77", "x", kind="user")[len("tns_marker") :]) == {
        "tns_id": 77,
        "type": "user",
        "name": "x",
    }
    with pytest.raises(ValueError):
        tns_marker("", "x")


def test_discovery_points(candidate_points):
    first, last = discovery_points(candidate_points)
    assert first.mag == 19.61 and last is not None and not last.is_detection
    assert discovery_points(candidate_points[1:])[1] is None
    with pytest.raises(ValueError, match="no detection"):
        discovery_points(candidate_points[:1])
    with pytest.raises(ValueError, match="several targets"):
        discovery_points([*candidate_points, make_measurement(target="other")])


def test_at_report_new_dialect(report):
    entry = report["at_report"]["0"]
    assert entry["ra"] == {"value": "150.123456", "error": "", "units": "arcsec"}
    assert entry["dec"]["value"] == "-20.654321"
    assert entry["reporting_group_id"] == "82" and entry["discovery_data_source_id"] == "48"
    assert entry["discovery_datetime"] == "2026-03-14 11:00:00"
    assert entry["internal_name"] == "S260314ab-C1" and entry["at_type"] == "1"
    point = entry["photometry"]["photometry_group"]["0"]
    assert (
        point["flux"] == "19.610" and point["flux_error"] == "0.080" and point["flux_units"] == "1"
    )
    assert point["filter_value"] == "22" and point["instrument_value"] == "208"
    nd = entry["non_detection"]
    assert nd["obsdate"] == "2026-03-14 07:00:00" and nd["limiting_flux"] == "21.500"
    assert "reporting_groupid" not in entry and "filterid" not in point


def test_at_report_legacy_dialect(target, candidate_points):
    first, last = discovery_points(candidate_points)
    legacy = build_at_report(
        AtDiscovery(
            target=target,
            first_detection=first,
            last_non_detection=last,
        ),
        TnsReporter(
            reporter="R",
            reporting_group_id=82,
            discovery_data_source_id=48,
            dialect="legacy",
        ),
    )["at_report"]["0"]
    assert legacy["reporting_groupid"] == "82" and legacy["data_source_groupid"] == "48"
    point = legacy["photometry"]["photometry_group"]["0"]
    assert (
        point["flux_unitid"] == "1" and point["filterid"] == "22" and point["instrumentid"] == "208"
    )
    assert legacy["non_detection"]["filterid"] == "22"
    assert "reporting_group_id" not in legacy and "filter_value" not in point


def test_at_report_more_detections_and_archival(target, candidate_points):
    first = candidate_points[1]
    report = build_at_report(
        AtDiscovery(
            target=target,
            first_detection=first,
            last_non_detection=None,
            more_detections=[candidate_points[2]],
            archive_id="1",
            archival_remarks="SDSS shows nothing",
        ),
        TnsReporter(
            reporter="R",
            reporting_group_id=1,
            discovery_data_source_id=1,
        ),
    )["at_report"]["0"]
    assert report["non_detection"] == {"archiveid": "1", "archival_remarks": "SDSS shows nothing"}
    assert [p["filter_value"] for p in report["photometry"]["photometry_group"].values()] == [
        "22",
        "21",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"last": "detection"}, "is a detection", id="detection as limit"),
        pytest.param({"first": "limit"}, "not a detection", id="limit as discovery"),
        pytest.param({"last": "late"}, "must precede", id="limit after discovery"),
        pytest.param({"last": None}, "archive_id", id="no limit, no archive"),
        pytest.param({"dialect": "old"}, "dialect", id="bad dialect"),
        pytest.param({"at_type": 9}, "at_type", id="bad at type"),
        pytest.param({"band": "V"}, "no TNS filter id", id="filter without id"),
        pytest.param({"other_target": True}, "given for target", id="wrong target"),
        pytest.param({"reporter": " "}, "reporting authors", id="no reporter"),
    ],
)
def test_at_report_refuses_bad_input(target, candidate_points, kwargs, message):
    first, last = candidate_points[1], candidate_points[0]
    if kwargs.get("last") == "detection":
        last = candidate_points[2].model_copy(update={"date_obs": candidate_points[0].date_obs})
    elif kwargs.get("last") == "late":
        last = make_measurement(hours=8.0)
    elif "last" in kwargs:
        last = kwargs["last"]
    if kwargs.get("first") == "limit":
        first = candidate_points[0]
    if kwargs.get("band"):
        first = make_measurement(hours=5.0, band=kwargs["band"], mag=19.0)
    if kwargs.get("other_target"):
        target = make_target(name="other")
    with pytest.raises(ValueError, match=message):
        build_at_report(
            AtDiscovery(
                target=target,
                first_detection=first,
                last_non_detection=last,
                **{k: v for k, v in kwargs.items() if k == "at_type"},
            ),
            TnsReporter(
                reporter=kwargs.get("reporter", "R"),
                reporting_group_id=1,
                discovery_data_source_id=1,
                **{k: v for k, v in kwargs.items() if k == "dialect"},
            ),
        )


def test_report_identity(report):
    ident = report_identity(report)
    assert ident.ra_deg == pytest.approx(150.123456) and ident.dec_deg == pytest.approx(-20.654321)
    assert ident.internal_name == "S260314ab-C1"
    sexagesimal = {"at_report": {"0": {"ra": {"value": "10:00:00"}, "dec": {"value": "-20:30:00"}}}}
    ident = report_identity(sexagesimal)
    assert ident.ra_deg == pytest.approx(150.0) and ident.dec_deg == pytest.approx(-20.5)
    with pytest.raises(ValueError):
        report_identity(
            {"at_report": {"0": report["at_report"]["0"], "1": report["at_report"]["0"]}}
        )


# ----------------------------------------------------------------------------- client calls
def ok(data) -> dict:
    return {"id_code": 200, "id_message": "OK", "data": data}


RATE = {"x-rate-limit-limit": "90", "x-rate-limit-remaining": "89", "x-rate-limit-reset": "42"}


@respx.mock(base_url=BASE, assert_all_called=False)
def test_search_sends_form_key_and_marker(respx_mock, tns):
    route = respx_mock.post("get/search").respond(
        200, json=ok([{"objname": "2026abc", "prefix": "AT", "objid": 1}]), headers=RATE
    )
    hits = tns.search(150.1, -20.6, 2.5)
    assert [h.full_name for h in hits] == ["AT 2026abc"]
    request = route.calls.last.request
    assert (
        request.headers["User-Agent"]
        == 'tns_marker{"tns_id": 4321, "type": "bot", "name": "followup_bot"}'
    )
    sent = form(request)
    assert sent["api_key"] == KEY
    query = json.loads(sent["data"])
    assert query["ra"] == "150.100000" and query["radius"] == "2.5" and query["units"] == "arcsec"
    assert (
        tns.rate_limit.limit == 90
        and tns.rate_limit.remaining == 89
        and tns.rate_limit.reset_s == 42
    )


@respx.mock(base_url=BASE, assert_all_called=False)
def test_search_older_reply_shape_and_internal_name(respx_mock, tns):
    route = respx_mock.post("get/search").respond(
        200, json=ok({"reply": [{"objname": "2025x", "prefix": "SN"}]})
    )
    assert tns.search(internal_name="ZTF26abc")[0].objname == "2025x"
    query = json.loads(form(route.calls.last.request)["data"])
    assert (
        query["internal_name"] == "ZTF26abc"
        and query["internal_name_exact_match"] == 1
        and query["ra"] == ""
    )
    with pytest.raises(ValueError):
        tns.search()


@respx.mock(base_url=BASE, assert_all_called=False)
def test_get_object(respx_mock, tns):
    data = {
        "objname": "2026abc",
        "name_prefix": "AT",
        "objid": 9,
        "radeg": 150.1,
        "decdeg": -20.6,
        "internal_names": "A, B",
    }
    respx_mock.post("get/object").respond(200, json=ok(data))
    obj = tns.get_object("2026abc")
    assert obj.internal_names == ["A", "B"] and obj.ra_deg == 150.1 and obj.prefix == "AT"
    respx_mock.post("get/object").respond(200, json=ok({}))
    with pytest.raises(NotFound):
        tns.get_object("2026zzz")


@respx.mock(base_url=BASE, assert_all_called=False)
def test_send_at_report(respx_mock, tns, report):
    route = respx_mock.post("set/bulk-report").respond(200, json=ok({"report_id": 12345}))
    assert tns.send_at_report(report) == "12345"
    assert json.loads(form(route.calls.last.request)["data"]) == report


@pytest.mark.parametrize(
    "data",
    [{}, {"report_id": ""}, {"report_id": None}, []],
    ids=["missing", "empty", "null", "list"],
)
@respx.mock(base_url=BASE, assert_all_called=False)
def test_send_200_with_nothing_stored(respx_mock, tns, report, data):
    respx_mock.post("set/bulk-report").respond(200, json=ok(data))
    with pytest.raises(TnsNotStored, match="without a report id"):
        tns.send_at_report(report)


@respx.mock(base_url=BASE, assert_all_called=False)
def test_send_504_is_uncertain(respx_mock, tns, report):
    respx_mock.post("set/bulk-report").respond(504, text="<html>504 Gateway Time-out</html>")
    with pytest.raises(UncertainOutcome) as info:
        tns.send_at_report(report)
    assert info.value.status_code == 504


@respx.mock(base_url=BASE, assert_all_called=False)
def test_429_carries_the_reset(respx_mock, tns, report):
    respx_mock.post("set/bulk-report").respond(
        429,
        json={"id_code": 429, "id_message": "Too Many Requests"},
        headers={"x-rate-limit-remaining": "0", "x-rate-limit-reset": "37"},
    )
    with pytest.raises(ServiceUnavailable) as info:
        tns.send_at_report(report)
    # TNS's advice: wait for the reset, then one second more.
    assert info.value.retry_after == 38 and not isinstance(info.value, UncertainOutcome)


@respx.mock(base_url=BASE, assert_all_called=False)
def test_401_and_error_inside_200(respx_mock, tns, report):
    respx_mock.post("set/bulk-report").respond(
        401, json={"id_code": 401, "id_message": "Unauthorized"}
    )
    with pytest.raises(AuthenticationError):
        tns.send_at_report(report)
    respx_mock.post("set/bulk-report").respond(
        200, json={"id_code": 400, "id_message": "Bad request", "data": {}}
    )
    with pytest.raises(RequestRejected):
        tns.send_at_report(report)


@respx.mock(base_url=BASE, assert_all_called=False)
def test_reply_404_is_not_yet(respx_mock, tns):
    route = respx_mock.post("get/bulk-report-reply").respond(
        404, json={"id_code": 404, "id_message": "Not found"}
    )
    reply = tns.get_report_reply(12345)
    assert reply.processed is False and reply.objname is None
    assert form(route.calls.last.request) == {"api_key": KEY, "report_id": "12345"}


@respx.mock(base_url=BASE, assert_all_called=False)
def test_reply_400_carries_the_feedback(respx_mock, tns):
    feedback = {
        "at_report": [
            {"reporting_groupid": [{"message": "Invalid reporting group ID", "message_id": 3}]}
        ]
    }
    respx_mock.post("get/bulk-report-reply").respond(
        400, json={"id_code": 400, "data": {"feedback": feedback}}
    )
    with pytest.raises(
        RequestRejected, match="reporting_groupid: Invalid reporting group ID"
    ) as info:
        tns.get_report_reply("7")
    assert info.value.body == feedback and not isinstance(info.value, TnsIdenticalReport)


@respx.mock(base_url=BASE, assert_all_called=False)
def test_reply_identical_report(respx_mock, tns):
    feedback = {
        "at_report": [
            {"at_report": [{"message": "An identical AT report (sender, RA/DEC) already exists"}]}
        ]
    }
    respx_mock.post("get/bulk-report-reply").respond(
        400, json={"id_code": 400, "data": {"feedback": feedback}}
    )
    with pytest.raises(TnsIdenticalReport):
        tns.get_report_reply("7")


@pytest.mark.parametrize(
    ("entry", "objname", "flags"),
    [
        pytest.param(
            {"100": {"objname": "2026abc", "message": "created", "message_id": 100}},
            "2026abc",
            "c",
            id="100",
        ),
        pytest.param(
            {"101": {"objname": "2025xyz", "prefix": "SN", "message": "exists", "message_id": 101}},
            "2025xyz",
            "e",
            id="101",
        ),
        pytest.param(
            {
                "100": {"objname": "2026abc", "message_id": 100},
                "121": {"objname": "2026abc", "new_object_name": "2026abd", "message_id": 121},
            },
            "2026abd",
            "cr",
            id="121",
        ),
    ],
)
@respx.mock(base_url=BASE, assert_all_called=False)
def test_reply_codes(respx_mock, tns, entry, objname, flags):
    body = ok({"feedback": {"at_report": [{**entry, "at_rep": {"internal_name": "x"}}]}})
    respx_mock.post("get/bulk-report-reply").respond(200, json=body)
    reply = tns.get_report_reply("5")
    assert reply.processed and reply.objname == objname
    assert (reply.created, reply.existing, reply.renamed) == (
        "c" in flags,
        "e" in flags,
        "r" in flags,
    )


@respx.mock(base_url=BASE, assert_all_called=False)
def test_api_key_never_leaks(respx_mock, tns, report):
    respx_mock.post("set/bulk-report").respond(
        400, json={"id_code": 400, "id_message": f"bad key {KEY}"}
    )
    with pytest.raises(RequestRejected) as info:
        tns.send_at_report(report)
    assert KEY not in str(info.value) and KEY not in json.dumps(info.value.body)
    assert KEY not in repr(tns) and KEY not in repr(tns.__dict__)


# ----------------------------------------------------------------------------- report_and_confirm (respx)
class FakeTns:
    """Scripted TNS answers with call counting, for report_and_confirm."""

    def __init__(self, mock: respx.Router) -> None:
        self.searches: list[dict] = []
        self.sends = 0
        self.replies = 0
        self.found: list[dict] = []  # what a search answers
        self.found_after_sends: int | None = (
            None  # the object appears once this many sends happened
        )
        self.send_answers: list[httpx.Response] = []
        self.reply_answers: list[httpx.Response] = []
        mock.post("get/search").mock(side_effect=self.search)
        mock.post("set/bulk-report").mock(side_effect=self.send)
        mock.post("get/bulk-report-reply").mock(side_effect=self.reply)
        mock.post("get/object").respond(
            200, json=ok({"objname": "2026abc", "radeg": 150.123456, "decdeg": -20.654321})
        )

    def search(self, request: httpx.Request) -> httpx.Response:
        self.searches.append(json.loads(form(request)["data"]))
        visible = self.found_after_sends is None or self.sends >= self.found_after_sends
        return httpx.Response(200, json=ok(self.found if visible else []))

    def send(self, request: httpx.Request) -> httpx.Response:
        answer = (
            self.send_answers.pop(0)
            if self.send_answers
            else httpx.Response(200, json=ok({"report_id": 1}))
        )
        if answer.status_code != 429:
            self.sends += 1
        return answer

    def reply(self, request: httpx.Request) -> httpx.Response:
        self.replies += 1
        if self.reply_answers:
            return self.reply_answers.pop(0)
        return httpx.Response(404, json={"id_code": 404})


def created(name: str = "2026abc") -> httpx.Response:
    return httpx.Response(
        200, json=ok({"feedback": {"at_report": [{"100": {"objname": name, "message_id": 100}}]}})
    )


NOT_YET = httpx.Response(404, json={"id_code": 404})
OBJ = [{"objname": "2026abc", "prefix": "AT", "objid": 1}]


@respx.mock(base_url=BASE, assert_all_called=False)
def test_existing_object_means_nothing_is_sent(respx_mock, tns, report):
    fake = FakeTns(respx_mock)
    fake.found = OBJ
    outcome = tns.report_and_confirm(report, poll_interval_s=1, max_wait_s=30)
    assert outcome.status is TnsOutcomeStatus.ALREADY_KNOWN and outcome.objname == "2026abc"
    assert fake.sends == 0 and outcome.sends == 0 and outcome.confirmed
    assert outcome.url == "https://tns.example.org/object/2026abc"
    assert fake.searches[0]["internal_name"] == "S260314ab-C1"


@respx.mock(base_url=BASE, assert_all_called=False)
def test_normal_flow_polls_until_processed(respx_mock, tns, report, clock):
    fake = FakeTns(respx_mock)
    fake.reply_answers = [NOT_YET, NOT_YET, created()]
    outcome = tns.report_and_confirm(report, poll_interval_s=2, max_wait_s=60)
    assert outcome.status is TnsOutcomeStatus.CREATED and outcome.objname == "2026abc"
    assert outcome.report_id == "1" and fake.sends == 1 and fake.replies == 3
    assert clock.sleeps == [2, 3] and outcome.reply is not None and outcome.reply.created


@respx.mock(base_url=BASE, assert_all_called=False)
def test_101_is_attached(respx_mock, tns, report):
    fake = FakeTns(respx_mock)
    fake.reply_answers = [
        httpx.Response(
            200,
            json=ok({"feedback": {"at_report": [{"101": {"objname": "2025q", "prefix": "SN"}}]}}),
        )
    ]
    outcome = tns.report_and_confirm(report, poll_interval_s=1, max_wait_s=10)
    assert outcome.status is TnsOutcomeStatus.ATTACHED and outcome.objname == "2025q"


@respx.mock(base_url=BASE, assert_all_called=False)
def test_nothing_stored_searches_then_resends_once(respx_mock, tns, report):
    fake = FakeTns(respx_mock)
    fake.send_answers = [
        httpx.Response(200, json=ok({})),
        httpx.Response(200, json=ok({"report_id": 77})),
    ]
    fake.reply_answers = [created()]
    outcome = tns.report_and_confirm(report, poll_interval_s=1, max_wait_s=30)
    assert outcome.status is TnsOutcomeStatus.CREATED and outcome.report_id == "77"
    assert fake.sends == 2 and outcome.sends == 2
    # a search by name and by position before the first send, and again before the resend
    assert len(fake.searches) == 4


@respx.mock(base_url=BASE, assert_all_called=False)
def test_nothing_stored_but_it_arrived_after_all(respx_mock, tns, report):
    fake = FakeTns(respx_mock)
    fake.send_answers = [httpx.Response(200, json=ok({"report_id": ""}))]
    fake.found, fake.found_after_sends = OBJ, 1
    outcome = tns.report_and_confirm(report, poll_interval_s=1, max_wait_s=30)
    assert outcome.status is TnsOutcomeStatus.FOUND and fake.sends == 1


@respx.mock(base_url=BASE, assert_all_called=False)
def test_nothing_stored_twice_gives_up(respx_mock, tns, report):
    fake = FakeTns(respx_mock)
    fake.send_answers = [httpx.Response(200, json=ok({})), httpx.Response(200, json=ok({}))]
    outcome = tns.report_and_confirm(report, poll_interval_s=1, max_wait_s=30)
    assert (
        outcome.status is TnsOutcomeStatus.NOT_STORED and fake.sends == 2 and not outcome.confirmed
    )
    fake.send_answers = [httpx.Response(200, json=ok({}))]
    fake.sends = 0
    assert (
        tns.report_and_confirm(report, poll_interval_s=1, max_wait_s=30, max_resends=0).sends == 1
    )


@respx.mock(base_url=BASE, assert_all_called=False)
def test_504_after_storing_is_settled_by_search_without_resend(respx_mock, tns, report, clock):
    fake = FakeTns(respx_mock)
    fake.send_answers = [httpx.Response(504, text="Gateway Time-out")]
    fake.found, fake.found_after_sends = OBJ, 1
    outcome = tns.report_and_confirm(report, poll_interval_s=2, max_wait_s=60)
    assert outcome.status is TnsOutcomeStatus.FOUND and outcome.objname == "2026abc"
    assert fake.sends == 1 and fake.replies == 0 and outcome.report_id is None


@respx.mock(base_url=BASE, assert_all_called=False)
def test_504_never_found_is_unconfirmed_not_resent(respx_mock, tns, report, clock):
    fake = FakeTns(respx_mock)
    fake.send_answers = [httpx.Response(504, text="Gateway Time-out")]
    outcome = tns.report_and_confirm(report, poll_interval_s=5, max_wait_s=30)
    assert outcome.status is TnsOutcomeStatus.UNCONFIRMED and not outcome.confirmed
    assert fake.sends == 1
    assert clock.now - 1000.0 <= 30
    assert any("later report_and_confirm searches first" in n for n in outcome.notes)


@respx.mock(base_url=BASE, assert_all_called=False)
def test_lasting_404_for_a_known_report_id(respx_mock, tns, report, clock):
    fake = FakeTns(respx_mock)  # replies stay 404
    outcome = tns.report_and_confirm(report, poll_interval_s=3, max_wait_s=20)
    assert outcome.status is TnsOutcomeStatus.UNCONFIRMED and outcome.report_id == "1"
    assert fake.sends == 1 and fake.replies == 4  # at 0, 3, 7.5 and 14.25 s
    fake.found = OBJ
    later = tns.confirm_report(outcome.report_id, report, poll_interval_s=3, max_wait_s=6)
    assert later.status is TnsOutcomeStatus.FOUND and later.sends == 0 and fake.sends == 1


@respx.mock(base_url=BASE, assert_all_called=False)
def test_429_on_send_is_left_to_the_task_and_its_retry_searches_first(
    respx_mock, tns, report, clock
):
    fake = FakeTns(respx_mock)
    fake.send_answers = [
        httpx.Response(
            429,
            json={"id_code": 429},
            headers={"x-rate-limit-remaining": "0", "x-rate-limit-reset": "12"},
        )
    ]
    fake.reply_answers = [created()]
    with pytest.raises(ServiceUnavailable) as info:
        tns.report_and_confirm(report, poll_interval_s=1, max_wait_s=60)
    assert info.value.retry_after == 13 and fake.sends == 0 and clock.sleeps == []
    searches = len(fake.searches)
    # The task's retry: a new call, which searches before it sends.
    outcome = tns.report_and_confirm(report, poll_interval_s=1, max_wait_s=60)
    assert outcome.status is TnsOutcomeStatus.CREATED and fake.sends == 1
    assert len(fake.searches) == searches + 2


@respx.mock(base_url=BASE, assert_all_called=False)
def test_a_poll_refused_with_429_waits_for_the_reset(respx_mock, tns, report, clock):
    fake = FakeTns(respx_mock)
    fake.reply_answers = [
        httpx.Response(429, json={"id_code": 429}, headers={"x-rate-limit-reset": "4"}),
        created(),
    ]
    outcome = tns.report_and_confirm(report, poll_interval_s=1, max_wait_s=60)
    assert outcome.status is TnsOutcomeStatus.CREATED and fake.sends == 1 and fake.replies == 2
    assert clock.sleeps == [5]  # reset + 1 s, instead of the 1 s poll interval


@respx.mock(base_url=BASE, assert_all_called=False)
def test_a_spent_rate_limit_window_is_waited_out_before_the_next_call(
    respx_mock, tns, report, clock
):
    fake = FakeTns(respx_mock)
    spent = {"x-rate-limit-remaining": "0", "x-rate-limit-reset": "9"}
    respx_mock.post("get/search").mock(
        side_effect=lambda request: httpx.Response(200, json=ok([]), headers=spent)
    )
    fake.reply_answers = [created()]
    outcome = tns.report_and_confirm(report, poll_interval_s=1, max_wait_s=60)
    assert outcome.status is TnsOutcomeStatus.CREATED
    # The first search spent the window: the second search and the send each waited for it.
    assert clock.sleeps[:2] == [10, 10]
    assert any("rate-limit window spent" in note for note in outcome.notes)


@respx.mock(base_url=BASE, assert_all_called=False)
def test_rejection_is_raised(respx_mock, tns, report):
    fake = FakeTns(respx_mock)
    feedback = {
        "at_report": [
            {"non_detection": [{"message": "Last non-detection or archival info must be filled"}]}
        ]
    }
    fake.reply_answers = [
        httpx.Response(400, json={"id_code": 400, "data": {"feedback": feedback}})
    ]
    with pytest.raises(RequestRejected, match="non-detection"):
        tns.report_and_confirm(report, poll_interval_s=1, max_wait_s=30)
    assert fake.sends == 1


@respx.mock(base_url=BASE, assert_all_called=False)
def test_identical_report_reply_is_resolved_by_search(respx_mock, tns, report):
    fake = FakeTns(respx_mock)
    feedback = {
        "at_report": [{"at_report": [{"message": "An identical AT report (...) already exists"}]}]
    }
    fake.reply_answers = [
        httpx.Response(400, json={"id_code": 400, "data": {"feedback": feedback}})
    ]
    fake.found, fake.found_after_sends = OBJ, 1
    outcome = tns.report_and_confirm(report, poll_interval_s=1, max_wait_s=30)
    assert outcome.status is TnsOutcomeStatus.FOUND and fake.sends == 1


@respx.mock(base_url=BASE, assert_all_called=False)
def test_several_hits_pick_the_nearest(respx_mock, tns, report):
    respx_mock.post("get/search").mock(
        side_effect=lambda request: httpx.Response(
            200,
            json=ok(
                []
                if json.loads(form(request)["data"])["internal_name"]
                else [{"objname": "far"}, {"objname": "near"}]
            ),
        )
    )
    positions = {"far": (150.1238, -20.6543), "near": (150.12346, -20.65432)}
    respx_mock.post("get/object").mock(
        side_effect=lambda request: httpx.Response(
            200,
            json=ok(
                {
                    "objname": (name := json.loads(form(request)["data"])["objname"]),
                    "radeg": positions[name][0],
                    "decdeg": positions[name][1],
                }
            ),
        )
    )
    outcome = tns.report_and_confirm(report, poll_interval_s=1, max_wait_s=30)
    assert outcome.status is TnsOutcomeStatus.ALREADY_KNOWN and outcome.objname == "near"
