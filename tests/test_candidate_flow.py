"""The reacting cadence in real Prefect flows: re-requests on the schedule, a candidate's spectrum.

``refresh-requests`` runs against the sandbox portal (served on a port) and requests an expired
epoch again exactly once; ``follow-candidate`` submits a vetted candidate's MuSCAT cadence, pauses
for a person, and sends the FLOYDS spectrum with its calibrations only when approved (the test
answers with Prefect's resume API, as the UI's Resume button does). ``process-frames``, storing
the candidates of a real difference search, starts one ``follow-candidate`` run per vetted
candidate: a deployment run it does not wait for, or a subflow where nothing is deployed; never
a second one, on a rerun or after the ledger lost the answer.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from blocks import LcoCredentials
from followup.http import client_settings
from followup.lco import PortalClient, RequestGroupSpec, build_request_group, make_group_name
from followup.ledger import Ledger
from followup.ledger.requests import attempt_of
from followup.models import ObservationRequest, Target, utcnow
from followup.observing import submit_once
from followup.strategies import load_strategies
from sandbox.lco import LcoSandboxState, ManualClock, create_portal_app
from tests.lco_support import TOKEN, serve
from tests.test_flow_approvals import (
    answer,
    description,
    in_thread,
    paused,
    portal_routes,
    save_settings,
    services,
    stored_alert,
)

pytestmark = pytest.mark.slow

BOOK = """\
version: 1
strategies:
  t-gw:
    instrument_type: 1M0-SCICAM-SINISTRO
    filters: [rp]
    exposure_time_s: 120
    epochs: 2
    window_hours: 12
  t-muscat:
    instrument_type: 2M0-SCICAM-MUSCAT
    filters: [gp, rp, ip, zs]
    exposure_time_s: 120
    epochs: 2
  t-floyds:
    instrument_type: 2M0-FLOYDS-SCICAM
    filters: [slit_2.0as]
    exposure_time_s: 900
selection:
  - strategy: t-gw
candidates:
  cadence: t-muscat
  spectrum: t-floyds
approval:
  observation_types: []
  max_hours: 12
"""


@pytest.fixture(scope="module", autouse=True)
def harness(prefect_api: object) -> Iterator[None]:
    """Flows of this module run against the session's Prefect API (``tests/conftest.py``)."""
    yield


@pytest.fixture
def name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def settings(
    name: str, tmp_path: Path, portal_url: str = "https://portal.test", **fields: Any
) -> Ledger:
    return save_settings(
        name,
        tmp_path,
        strategies_yaml=BOOK,
        lco=LcoCredentials(
            api_token=SecretStr(TOKEN),
            proposal_id="SANDBOX-001",
            portal_url=portal_url,
            archive_url="https://archive.test",
        ),
        **fields,
    )


def test_refresh_requests_asks_again_for_an_epoch_that_closed_unobserved(
    name: str, tmp_path: Path
) -> None:
    from flows.maintenance import refresh_requests

    state = LcoSandboxState(ManualClock(utcnow()), None, token=TOKEN, completion_delay_s=10**6)
    with serve(create_portal_app(state)) as url:
        ledger = settings(name, tmp_path, url)
        stored_alert(ledger, "S260101ee")
        target = Target.model_validate(ledger.events.targets("S260101ee")[0].data)
        plan = load_strategies(BOOK).strategies["t-gw"]
        group = make_group_name("S260101ee", target.name, filters=["rp"], plan="t-gw")
        now = state.now()
        window = {"window_start": now, "window_end": now + timedelta(hours=plan.window_hours)}
        request = ObservationRequest(
            event_id="S260101ee",
            target_name=target.name,
            group_name=group,
            filters=["rp"],
            **window,
        )
        spec = RequestGroupSpec(
            target=target, strategy=plan, proposal="SANDBOX-001", group_name=group, **window
        )
        with PortalClient(TOKEN, base_url=url) as portal:
            submit_once(portal, ledger, request, build_request_group(spec))
            request_id = ledger.requests.find(group).request_id
            httpx.post(
                f"{url}/sandbox/requests/{request_id}/state", json={"state": "WINDOW_EXPIRED"}
            ).raise_for_status()

        first = refresh_requests(name)
        second = refresh_requests(name)

        sent = httpx.get(f"{url}/sandbox/requests").json()["results"]
    [again] = first["requested_again"]
    assert second["requested_again"] == []  # the new attempt is pending: nothing to send
    assert [s["name"] for s in sent] == [group, again] and "_e0a1_" in again
    rows = {r.group_name: r for r in ledger.requests.for_event("S260101ee")}
    assert attempt_of(rows[again]) == 1 and rows[group].state == "WINDOW_EXPIRED"
    assert f"requested again as {again}" in rows[again].detail


def configuration_types(route) -> list[list[str]]:
    return [
        [c["type"] for c in json.loads(call.request.content)["requests"][0]["configurations"]]
        for call in route.calls
    ]


@pytest.mark.parametrize("approved", [True, False])
def test_a_vetted_candidate_gets_its_cadence_and_a_spectrum_once_approved(
    name: str, tmp_path: Path, approved: bool
) -> None:
    from flows.candidate import follow_candidate

    ledger = settings(name, tmp_path)
    event = "S260101ca" if approved else "S260101cb"
    stored_alert(ledger, event)
    found = Target(name="C150.50000-20.80000", ra=150.5, dec=-20.8, kind="candidate", rank=1,
                   probability=1.0)  # fmt: skip
    ledger.events.save_targets(event, [found])
    with services() as mock:
        _, submit = portal_routes(mock)
        thread, out = in_thread(lambda: follow_candidate(event, found.name, True, name))
        run = paused(f"approve-spectrum:{event}", set())
        assert submit.call_count == 2  # the MuSCAT cadence went before the question
        assert f"Spectrum of candidate {found.name}" in description(run)
        answer(run, approved=approved, reviewer="on-call", filters=["slit_2.0as"])
        thread.join(60)
        assert "error" not in out, out.get("error")
        rerun = follow_candidate(event, found.name, True, name)  # no pause: reused
    types = configuration_types(submit)
    assert types[:2] == [["EXPOSE"], ["EXPOSE"]]
    if approved:
        assert types[2:] == [["LAMP_FLAT", "ARC", "SPECTRUM", "ARC", "LAMP_FLAT"]]
    else:
        assert types[2:] == []
    statuses = sorted(row["status"] for row in rerun)
    assert statuses.count("declined") == (0 if approved else 1)
    [decision] = ledger.approvals.for_subject(f"spectrum:{event}:{found.name}")
    assert decision.approved is approved


def test_an_unvetted_candidate_gets_nothing(name: str, tmp_path: Path) -> None:
    from flows.candidate import follow_candidate

    ledger = settings(name, tmp_path)
    stored_alert(ledger, "S260101ff")
    found = Target(name="C1", ra=150.5, dec=-20.8, kind="candidate", rank=1, probability=1.0)
    ledger.events.save_targets("S260101ff", [found])
    with services() as mock:
        _, submit = portal_routes(mock)
        follow_candidate("S260101ff", "C1", False, name)
    assert submit.call_count == 0 and ledger.requests.for_event("S260101ff") == []


# ------------------------------------------------------------------ process-frames starts it


def storing(name: str, event: str, tables: dict[str, list[Any]]) -> Any:
    """A flow that stores candidates as ``process-frames`` does (its own ``_save_candidates``).

    Returns the flow; it returns each candidate's recorded follow-candidate run.
    """
    from prefect import flow

    from flows.frames import _save_candidates
    from flows.runtime import load_runtime

    @flow(name="process-frames-probe", flow_run_name=f"process-frames-probe-{event}")
    def store(kind: str) -> dict[str, str | None]:
        runtime = load_runtime(name)
        ledger = runtime.ledger
        targets = [Target.model_validate(t.data) for t in ledger.events.targets(event)]
        _save_candidates(runtime, event, tables[kind], targets)
        rows = ledger.events.targets(event)
        return {r.name: r.follow_run_id for r in rows if r.kind == "candidate"}

    return store


def catalog_table() -> Any:
    """A catalog search's candidate (no score: nothing was vetted)."""
    from astropy import units as u
    from astropy.table import QTable

    return QTable({"ra": [150.3] * u.deg, "dec": [-20.3] * u.deg, "snr": [40.0], "mag": [18.0]})


def runs_of(deployment_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )


def test_process_frames_starts_one_deployment_run_per_vetted_candidate(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.deployments.runner import EntrypointType
    from sqlalchemy import text

    from flows import candidate as module
    from flows.candidate import follow_candidate
    from flows.retract import event_tag
    from tests.candidate_support import vetted_table

    deployment = f"fc-{uuid.uuid4().hex[:8]}"  # this test's own: the session's server is shared
    monkeypatch.setattr(module, "FOLLOW_CANDIDATE", f"follow-candidate/{deployment}")
    deployment_id = follow_candidate.to_deployment(
        name=deployment, parameters={"settings": name}, entrypoint_type=EntrypointType.MODULE_PATH
    ).apply()
    ledger = settings(name, tmp_path, candidate_min_frames=1)
    event = "S260102fa"
    stored_alert(ledger, event)
    store = storing(name, event, {"vetted": [vetted_table()], "catalog": [catalog_table()]})

    started = time.monotonic()
    first = store("vetted")
    took = time.monotonic() - started
    runs = {r.parameters["candidate_name"]: r for r in runs_of(deployment_id)}
    assert set(runs) == set(first) and len(runs) == 2, runs
    for candidate, run in runs.items():
        assert first[candidate] == str(run.id)
        assert run.parameters == {
            "event_id": event,
            "candidate_name": candidate,
            "vetted": True,
            "settings": name,
        }
        assert run.name == f"candidate-{event}-{candidate}"
        assert event_tag(event) in run.tags  # a retraction cancels it with the event's runs
        assert run.state.is_scheduled()  # started, not waited for (nobody serves it here)
        assert run.parent_task_run_id is not None  # shown under process-frames in the UI
    assert took < 120, took
    row = ledger.events.get_target(event, next(iter(runs)))
    assert row.vetting["passed"] and row.vetting["reasons"]
    assert Path(row.vetting["detections"][0]["difference"]).is_file()

    assert store("vetted") == first  # a rerun starts nothing
    with_catalog = store("catalog")  # a catalog candidate: stored, never vetted, not followed
    assert len(with_catalog) == 3 and list(with_catalog.values()).count(None) == 1
    # The ledger lost one answer (a crash between start and record): the same run comes back.
    lost = next(iter(first))
    with ledger.engine.begin() as connection:
        connection.execute(
            text("UPDATE targets SET follow_run_id = NULL WHERE name = :n"), {"n": lost}
        )
    assert store("vetted")[lost] == first[lost]
    assert len(runs_of(deployment_id)) == 2


def test_where_nothing_is_deployed_the_candidate_is_followed_as_a_subflow_once(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client

    from flows import candidate as module
    from followup.photometry import associate_candidates
    from tests.candidate_support import kilonova, vetted_table

    monkeypatch.setattr(module, "FOLLOW_CANDIDATE", f"follow-candidate/none-{uuid.uuid4().hex}")
    ledger = settings(name, tmp_path, candidate_min_frames=1)
    event = "S260102fb"
    stored_alert(ledger, event)
    table = vetted_table()
    ra, dec = kilonova()
    table = table[abs(table["ra"].value - ra) + abs(table["dec"].value - dec) < 1e-3]
    assert len(table) == 1
    store = storing(name, event, {"vetted": [table]})
    with services() as mock:
        _, submit = portal_routes(mock)
        thread, out = in_thread(lambda: store("vetted"))
        run = paused(f"approve-spectrum:{event}", set())
        assert submit.call_count == 2  # the MuSCAT cadence went first
        # The question shows the candidate as the search saw it (no plots URL: embedded).
        [shown_name] = [c["name"] for c in associate_candidates([table])]
        shown = description(run)
        assert f"![{shown_name}: science, reference, difference](data:image/png;base64," in shown
        assert f"![{shown_name}: light curve](data:image/png;base64," in shown
        assert "**Real-bogus score:** 1.00" in shown and "- real-bogus score 1.00" in shown
        answer(run, approved=False, reviewer="on-call")
        thread.join(120)
        assert "error" not in out, out.get("error")
        [(candidate, run_id)] = out["result"].items()
        assert store("vetted") == out["result"]  # no second run: no question, no request
    assert submit.call_count == 2
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        child = client.read_flow_run(run_id)
    assert child.name == f"candidate-{event}-{candidate}" and child.state.is_completed()
    assert child.parent_task_run_id is not None


def test_no_run_starts_while_the_book_names_no_candidate_strategies(
    name: str, tmp_path: Path
) -> None:
    from tests.candidate_support import vetted_table
    from tests.test_flow_approvals import STRATEGIES

    ledger = save_settings(name, tmp_path, candidate_min_frames=1)  # no `candidates:` in it
    assert "candidates:" not in STRATEGIES
    event = "S260102fc"
    stored_alert(ledger, event)
    found = storing(name, event, {"vetted": [vetted_table()]})("vetted")
    assert len(found) == 2 and set(found.values()) == {None}
    assert {r.name for r in ledger.events.to_follow(event)} == set(found)  # still to follow
