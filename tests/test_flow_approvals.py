"""The observe, report and drill flows with a person answering in the UI: the middle layer.

Real Prefect flows against the session's Prefect API (``prefect_api``: one server for the middle
layer, no stack); the portal, HERMES and GCN answer through respx; the test answers each paused
run with Prefect's resume API, as the UI's Resume button does. It checks that a recorded approval
returns the form as submitted (a rerun after an edit of the filters gives the same group names and
no second POST), that each bad edit is refused and asked again, that the report stage asks, then
delivers what was approved once, and that drills are fenced.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterName,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from pydantic import SecretStr

from blocks import (
    GcnCredentials,
    HermesCredentials,
    HopCredentials,
    LcoCredentials,
    ListenerSettings,
    TriggerRulesBlock,
)
from followup.alerts import parse_message
from followup.alerts.mock import make_lvk_alert
from followup.http import client_settings
from followup.ledger import Ledger
from followup.models import (
    Alert,
    Frame,
    ObservationRequest,
    ReportDestination,
    ReportStatus,
    TargetKind,
    utcnow,
)
from tests.blocks_support import followup_settings
from tests.lco_support import target
from tests.ledger_support import store_alert
from tests.reporting.conftest import make_measurement
from tests.stack_support import answer_form, form_text
from tests.test_lco_client import group_body

pytestmark = pytest.mark.slow

PORTAL = "https://portal.test"
HERMES = "https://hermes.test/"
GCN = "https://gcn.test"
STRATEGIES = """\
version: 1
strategies:
  t-gw:
    instrument_type: 1M0-SCICAM-SINISTRO
    filters: [gp, rp]
    exposure_time_s: 120
    exposure_count: 1
    epochs: 1
    window_hours: 24
    max_targets: 2
selection:
  - strategy: t-gw
approval:
  observation_types: [{types}]
  max_hours: 4
"""


@pytest.fixture(scope="module", autouse=True)
def harness(prefect_api: object) -> Iterator[None]:
    """Flows of this module run against the session's Prefect API (``tests/conftest.py``)."""
    yield


@pytest.fixture
def name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def save_settings(name: str, tmp_path: Path, *, approve: bool = True, **fields: Any) -> Ledger:
    """Save the settings documents of one test; return its (migrated) ledger."""
    values: dict[str, Any] = dict(
        lco=LcoCredentials(
            api_token=SecretStr("lco-token"),
            proposal_id="P1",
            portal_url=PORTAL,
            archive_url="https://archive.test",
        ),
        hermes=HermesCredentials(api_token=SecretStr("hermes-token"), base_url=HERMES),
        gcn=GcnCredentials(access_token=SecretStr("gcn-token"), base_url=GCN),
        strategies_yaml=STRATEGIES.format(types="NORMAL" if approve else "TIME_CRITICAL"),
        approval_timeout_s=120,
        send_tns=False,
    )
    values.update(fields)
    settings = followup_settings(tmp_path, **values)
    settings.save(name, overwrite=True)
    return settings.get_ledger()


def stored_alert(ledger: Ledger, event_id: str) -> tuple[int, Alert]:
    raw = make_lvk_alert(event_id, "PRELIMINARY")
    alert = parse_message(raw)
    recorded = store_alert(ledger, alert, raw=raw, uuid=str(uuid.uuid4()))
    ledger.events.save_targets(
        event_id, [target("GAL-001"), target("GAL-002", ra=151.0, dec=-21.0)]
    )
    return recorded.alert_id, alert


def in_thread(run: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run a flow in a thread (it pauses); the result or the error lands in the dict."""
    out: dict[str, Any] = {}

    def target_() -> None:
        try:
            out["result"] = run()
        except BaseException as exc:  # the flow's failure, for the test to look at
            out["error"] = exc

    thread = threading.Thread(target=target_, daemon=True)
    thread.start()
    return thread, out


def paused(prefix: str, seen: set[str], timeout: float = 60.0) -> Any:
    """The next paused run whose name starts with ``prefix`` (not one of ``seen``)."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    name=FlowRunFilterName(like_=prefix),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
                )
            )
            fresh = [r for r in runs if str(r.id) not in seen and r.name.startswith(prefix)]
            if fresh:
                seen.add(str(fresh[0].id))
                return fresh[0]
            time.sleep(0.3)
    raise AssertionError(f"no run {prefix}* paused within {timeout} s")


def description(run: Any) -> str:
    return form_text(run)


def answer(run: Any, **run_input: Any) -> None:
    answer_form(run.id, run_input)


@contextmanager
def services() -> Iterator[respx.Router]:
    """respx for the services; the Prefect API (the harness, on 127.0.0.1) is passed through."""
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()
        yield mock


def portal_routes(mock: respx.Router) -> tuple[respx.Route, respx.Route]:
    now = utcnow()
    semester = {
        "id": "SEM",
        "start": (now - timedelta(days=30)).isoformat(),
        "end": (now + timedelta(days=180)).isoformat(),
    }
    mock.get(f"{PORTAL}/api/semesters/").respond(
        200, json={"count": 1, "next": None, "previous": None, "results": [semester]}
    )
    validate = mock.post(f"{PORTAL}/api/requestgroups/validate/").respond(
        200, json={"request_durations": {"duration": 400, "requests": []}, "errors": {}}
    )
    ids = iter(range(100, 200))

    def submitted(request: httpx.Request) -> httpx.Response:
        payload = json.loads(request.content)
        group_id = next(ids)
        return httpx.Response(
            201, json=group_body(group_id, name=payload["name"], request_ids=(group_id * 10,))
        )

    return validate, mock.post(f"{PORTAL}/api/requestgroups/").mock(side_effect=submitted)


def requested_filters(route: respx.Route) -> list[list[str]]:
    return [
        [
            c["optical_elements"]["filter"]
            for c in json.loads(call.request.content)["requests"][0]["configurations"][0][
                "instrument_configs"
            ]
        ]
        for call in route.calls
    ]


# ------------------------------------------------------------------------ telescope time


def test_a_rerun_after_an_edited_approval_sends_nothing_new(name: str, tmp_path: Path) -> None:
    from flows.observe import observe

    ledger = save_settings(name, tmp_path)
    alert_id, alert = stored_alert(ledger, "S260101aa")
    with services() as mock:
        validate, submit = portal_routes(mock)
        thread, out = in_thread(lambda: observe(alert_id, alert.event_id, name, wait=False))
        run = paused("approve-requests:S260101aa", set())
        assert "Telescope time for S260101aa" in description(run)
        answer(run, approved=True, reviewer="on-call", filters=["ip"], comment="ip only")
        thread.join(60)
        assert "error" not in out, out.get("error")
        first = {r.group_name for r in ledger.requests.for_event("S260101aa")}
        assert submit.call_count == 2 and requested_filters(submit) == [["ip"], ["ip"]]

        rerun = observe(alert_id, alert.event_id, name, wait=False)  # no pause: reused
    assert {r.group_name for r in ledger.requests.for_event("S260101aa")} == first
    assert submit.call_count == 2 and validate.call_count == 2
    assert {row["group"] for row in rerun} == first
    [decision] = ledger.approvals.for_subject("requests:S260101aa:preliminary")
    assert decision.data["form"]["filters"] == ["ip"] and decision.decided_by == "on-call"


def test_each_bad_edit_is_refused_and_asked_again(name: str, tmp_path: Path) -> None:
    from flows.observe import observe

    ledger = save_settings(name, tmp_path)
    alert_id, alert = stored_alert(ledger, "S260101bb")
    bad = [
        ({"filters": []}, "at least one filter"),
        ({"filters": ["NOT-A-FILTER"]}, "has no filter NOT-A-FILTER"),
        ({"exposure_time_s": 0.0}, "not between 0 and 3600 s"),
        ({"exposure_time_s": 1e6, "exposure_count": 1000}, "not between 0 and 3600 s"),
        ({"exposure_count": 0}, "not between 1 and 100"),
        ({"exposure_time_s": 3600, "exposure_count": 3}, "h of telescope time, more than 4.0 h"),
    ]
    seen: set[str] = set()
    with services() as mock:
        _, submit = portal_routes(mock)
        thread, out = in_thread(lambda: observe(alert_id, alert.event_id, name, wait=False))
        run = paused("approve-requests:S260101bb", seen)
        for edit, problem in bad:
            # The re-asked form holds the last answer; each answer here is a whole form.
            form = {"filters": ["gp", "rp"], "exposure_time_s": 120.0, "exposure_count": 1}
            answer(run, approved=True, reviewer="on-call", **{**form, **edit})
            run = paused("approve-requests:S260101bb", seen)
            shown = description(run)
            assert "Your answer was not recorded" in shown and problem in shown, shown
            assert ledger.approvals.for_subject("requests:S260101bb:preliminary") == []
        answer(run, approved=True, reviewer="on-call", filters=["rp"], exposure_time_s=200.0)
        thread.join(60)
    assert "error" not in out, out.get("error")
    assert requested_filters(submit) == [["rp"], ["rp"]]
    [decision] = ledger.approvals.for_subject("requests:S260101bb:preliminary")
    assert decision.approved and decision.data["form"]["exposure_time_s"] == 200.0


# ------------------------------------------------------------------------ reports


def measured(ledger: Ledger, event_id: str) -> None:
    """One detected candidate with two frames of photometry, as process-frames leaves it."""
    candidate = target("C-1").model_copy(update={"kind": TargetKind.CANDIDATE})
    ledger.events.save_targets(event_id, [candidate])
    row, _ = ledger.requests.claim(
        ObservationRequest(
            event_id=event_id, target_name="C-1", group_name=f"{event_id}-C-1", filters=["rp"]
        )
    )
    targets = {t.name: t.id for t in ledger.events.targets(event_id)}
    for point in [
        make_measurement("C-1", hours=1.0, limit=21.5),
        make_measurement("C-1", hours=5.0, mag=19.6),
    ]:
        frame_row, _ = ledger.frames.record(
            Frame(
                frame_id=uuid.uuid4().int % 10**9,
                basename=point.frame_basename,
                filename=f"{point.frame_basename}.fits.fz",
                url="https://archive.test/f",
                observation_date=point.date_obs - timedelta(minutes=1),
                filter="rp",
            ),
            row.id,
        )
        ledger.frames.record_measurement(frame_row.id, targets["C-1"], point)


def test_reports_are_asked_for_then_delivered_once(name: str, tmp_path: Path) -> None:
    from flows.report import report

    ledger = save_settings(name, tmp_path, hermes_topic="hermes.photometry", send_gcn=True)
    alert_id, alert = stored_alert(ledger, "S260101cc")
    measured(ledger, alert.event_id)
    seen: set[str] = set()
    with services() as mock:
        hermes = mock.post(f"{HERMES}api/v0/submit_message/").mock(
            side_effect=lambda request: httpx.Response(
                200, json={**json.loads(request.content), "uuid": str(uuid.uuid4())}
            )
        )
        gcn = mock.post(f"{GCN}/api/circulars").mock(
            side_effect=lambda request: httpx.Response(
                200,
                json={
                    **json.loads(request.content),
                    "circularId": 40123,
                    "createdOn": 1773489600000,
                    "submitter": "A. Author",
                },
            )
        )
        thread, out = in_thread(lambda: report(alert_id, alert.event_id, name))
        run = paused("approve-report:hermes:S260101cc", seen)
        assert "LCO follow-up photometry of S260101cc" in description(run)
        answer(run, approved=True, reviewer="on-call", text="Edited HERMES text.")
        run = paused("approve-report:gcn:S260101cc", seen)
        answer(run, approved=True, reviewer="on-call", text="   ")
        run = paused("approve-report:gcn:S260101cc", seen)
        assert "a GCN Circular needs a body" in description(run)
        answer(run, approved=True, reviewer="on-call", text="Edited Circular body.")
        thread.join(60)
        assert "error" not in out, out.get("error")
        rows = {r["destination"]: r for r in out["result"]}
        assert rows[ReportDestination.HERMES]["status"] == ReportStatus.CONFIRMED
        assert rows[ReportDestination.GCN]["remote id"] == "40123"
        assert json.loads(hermes.calls.last.request.content)["message_text"] == (
            "Edited HERMES text."
        )
        assert json.loads(gcn.calls.last.request.content)["body"] == "Edited Circular body."

        again = report(alert_id, alert.event_id, name)  # decisions reused, nothing resent
    assert hermes.call_count == 1 and gcn.call_count == 1
    assert {r["ledger id"] for r in again} == {r["ledger id"] for r in rows.values()}


# ------------------------------------------------------------------------ drills


def test_a_mock_alert_reaches_no_service_that_is_not_a_sandbox(name: str, tmp_path: Path) -> None:
    from flows.observe import observe
    from flows.report import report
    from followup.drills import DrillFenced

    ledger = save_settings(name, tmp_path, approve=False)
    alert_id, alert = stored_alert(ledger, "MS260101dd")
    measured(ledger, alert.event_id)
    with services() as mock:
        validate, submit = portal_routes(mock)
        hermes = mock.post(f"{HERMES}api/v0/submit_message/").respond(500)
        with pytest.raises(DrillFenced, match="sandbox_endpoints is off"):
            observe(alert_id, alert.event_id, name, wait=False)
        with pytest.raises(DrillFenced, match="MS260101dd is a drill"):
            report(alert_id, alert.event_id, name)
    assert validate.call_count == submit.call_count == hermes.call_count == 0
    assert all(r.request_id is None for r in ledger.requests.for_event("MS260101dd"))
    assert ledger.reports.for_event("MS260101dd") == []


def test_the_drill_reads_its_folder_only_and_never_quotes_a_file(name: str, tmp_path: Path) -> None:
    from flows.drill import drill
    from followup.drills import DrillFileError

    drills = tmp_path / "drills"
    drills.mkdir()
    (drills / "notes.txt").write_text("SECRET-FIRST-LINE of a file that is not an alert\n")
    (tmp_path / "outside.json").write_text("SECRET-OUTSIDE\n")
    (drills / "real.json").write_bytes(make_lvk_alert("S260101ee", "PRELIMINARY"))
    ListenerSettings(
        hop=HopCredentials(broker_url="kafka://127.0.0.1:1", topics=["igwn.gwalert"]),
        rules=TriggerRulesBlock(),
        drills_dir=str(drills),
    ).save(name, overwrite=True)
    for alert_file, problem in [
        ("../outside.json", "outside the drills folder"),
        (str(tmp_path / "outside.json"), "outside the drills folder"),
        ("notes.txt", "not an alert followup can read"),
        ("real.json", "not a mock or test alert"),
    ]:
        with pytest.raises(DrillFileError, match=problem) as caught:
            drill(name, alert_file=alert_file)
        assert "SECRET" not in str(caught.value) and caught.value.__cause__ is None


def test_a_hermes_send_whose_answer_was_lost_is_looked_up_not_resent(
    name: str, tmp_path: Path
) -> None:
    from flows.report import report
    from sandbox.fault_queue import Fault
    from sandbox.hermes import DEFAULT_TOKEN, HermesSandboxState, create_app
    from tests.reporting.conftest import AppTransport

    sandbox = HermesSandboxState()
    app = AppTransport(create_app(sandbox))
    ledger = save_settings(
        name,
        tmp_path,
        hermes=HermesCredentials(api_token=SecretStr(DEFAULT_TOKEN), base_url=HERMES),
    )
    alert_id, alert = stored_alert(ledger, "S260101ff")
    measured(ledger, alert.event_id)
    # HERMES publishes the message, then its answer is lost (502).
    sandbox.faults.add(Fault(kind="status", endpoint="submit", status=502, variant="after_store"))
    with services() as mock:
        mock.route(host="hermes.test").mock(side_effect=app.handle_request)
        rows = report(alert_id, alert.event_id, name)  # hermes.test: no approval asked
    [hermes] = [r for r in rows if r["destination"] == ReportDestination.HERMES]
    assert hermes["status"] == ReportStatus.CONFIRMED
    assert hermes["remote id"] == sandbox.messages[-1]["uuid"] and len(sandbox.messages) == 1
    [row] = [r for r in ledger.reports.for_event("S260101ff") if r.destination == "hermes"]
    assert any("HERMES's message query" in note for note in row.payload["notes"])
