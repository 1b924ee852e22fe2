"""The reacting cadence in real Prefect flows: re-requests on the schedule, a candidate's spectrum.

``refresh-requests`` runs against the sandbox portal (served on a port) and requests an expired
epoch again exactly once; ``follow-candidate`` submits a vetted candidate's MuSCAT cadence, pauses
for a person, and sends the FLOYDS spectrum with its calibrations only when approved (the test
answers with Prefect's resume API, as the UI's Resume button does).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from blocks import LcoCredentials
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


def settings(name: str, tmp_path: Path, portal_url: str = "https://portal.test") -> Ledger:
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
