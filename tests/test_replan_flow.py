"""A PRELIMINARY then an UPDATE of one event through ``select-targets`` and ``observe``: the middle layer.

Real Prefect flows against the session's Prefect API (``prefect_api``), the sandbox portal
served on a port. The UPDATE's map moved a degree: its plan version keeps what still holds
probability, the requests of the fields it dropped are CANCELED at the portal with the reason in
the ledger, its new top fields are submitted, and no two fields requested for the event overlap
by more than 10%. Rerunning both alerts' flows makes no version, no submission and no
cancellation more.
"""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from blocks import LcoCredentials
from followup.alerts import parse_message
from followup.alerts.mock import make_lvk_alert, observable_position
from followup.ledger import Ledger
from followup.models import LcoState, RequestStatus, utcnow
from followup.planversions import PlanField
from followup.skymap import make_gaussian_skymap
from sandbox.lco import LcoSandboxState, ManualClock, create_portal_app
from tests.lco_support import TOKEN, serve
from tests.ledger_support import store_alert
from tests.test_flow_approvals import answer, description, in_thread, paused, save_settings
from tests.test_planversions import overlap_fraction

pytestmark = pytest.mark.slow

BOOK = """\
version: 1
strategies:
  t-gw:
    instrument_type: 1M0-SCICAM-SINISTRO
    filters: [rp]
    exposure_time_s: 120
    epochs: 1
    window_hours: 24
    max_targets: 4
    min_probability: 0.02
    max_airmass: 2.0
selection:
  - strategy: t-gw
approval:
  observation_types: []
  max_hours: 12
  max_far_hz: 1.0
  require_significant: false
"""
MAPS = {  # offsets of the map's centre from an observable position, and sigma, in degrees
    "PRELIMINARY": (0.0, 0.0, 0.5),
    "UPDATE": (1.0, 0.5, 0.4),
}


@pytest.fixture(scope="module", autouse=True)
def harness(prefect_api: object) -> Iterator[None]:
    """Flows of this module run against the session's Prefect API (``tests/conftest.py``)."""
    yield


def groups(url: str) -> dict[str, str]:
    """Request group name -> state, as the sandbox portal holds them."""
    results = httpx.get(f"{url}/sandbox/requests").json()["results"]
    return {g["name"]: g["state"] for g in results}


def run_alert(ledger: Ledger, name: str, event_id: str, alert_id: int) -> None:
    from flows.observe import observe
    from flows.targets import select_targets

    select_targets(alert_id, event_id, name)
    observe(alert_id, event_id, name, wait=False)


def test_an_update_cancels_superseded_requests_and_submits_its_new_fields(
    tmp_path: Path,
) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    event_id = "S261206" + "".join(random.choices(string.ascii_lowercase, k=3))
    now = utcnow()
    ra, dec = observable_position(now)
    state = LcoSandboxState(ManualClock(now), None, token=TOKEN, completion_delay_s=10**6)
    with serve(create_portal_app(state)) as url:
        ledger = save_settings(
            name,
            tmp_path,
            strategies_yaml=BOOK,
            lco=LcoCredentials(
                api_token=SecretStr(TOKEN),
                proposal_id="SANDBOX-001",
                portal_url=url,
                archive_url="https://archive.test",
            ),
        )
        ids: dict[str, int] = {}
        seen: dict[str, dict[str, str]] = {}
        for alert_type, (dra, ddec, sigma) in MAPS.items():
            skymap = make_gaussian_skymap(ra + dra, dec + ddec, sigma, object_name=event_id)
            raw = make_lvk_alert(event_id, alert_type, skymap=skymap, far=1e-10, significant=True)
            alert = parse_message(raw)
            ids[alert_type] = store_alert(ledger, alert, raw=raw, uuid=str(uuid.uuid4())).alert_id
            run_alert(ledger, name, event_id, ids[alert_type])
            seen[alert_type] = groups(url)
        # A rerun of each alert's flows (Retry in the UI): nothing more is sent or cancelled.
        for alert_id in ids.values():
            run_alert(ledger, name, event_id, alert_id)
        after = groups(url)

    v1, v2 = ledger.plans.versions(event_id)
    assert (v1.alert_id, v2.alert_id) == (ids["PRELIMINARY"], ids["UPDATE"])
    diff = v2.diff
    dropped = {f["name"] for f in diff["dropped"]}
    kept = {f["name"] for f in diff["kept"]}
    added = {f["name"] for f in diff["added"]}
    assert dropped and added, diff
    targets = {t.id: t for t in ledger.events.targets(event_id)}
    rows = {targets[r.target_id].name: r for r in ledger.requests.for_event(event_id)}
    assert set(rows) == {f["name"] for f in v1.fields} | added  # one request per field, ever
    for field in dropped:  # superseded: CANCELED at the portal, the reason in the ledger
        row = rows[field]
        assert seen["PRELIMINARY"][row.group_name] == "PENDING"
        assert seen["UPDATE"][row.group_name] == "CANCELED" and row.state == LcoState.CANCELED
        assert "dropped by plan v2 (UPDATE)" in row.detail
        assert "below the strategy's minimum 0.02" in row.detail
    for field in kept:  # kept: the PRELIMINARY's request stays, not sent again
        assert seen["UPDATE"][rows[field].group_name] == "PENDING"
    for field in added:  # the UPDATE's new top fields: submitted
        row = rows[field]
        assert row.group_name not in seen["PRELIMINARY"]
        assert seen["UPDATE"][row.group_name] == "PENDING"
        assert row.local_status == RequestStatus.SUBMITTED
    best = max(v2.fields, key=lambda f: f["probability"])
    assert best["name"] in kept | added
    # No two fields requested for the event overlap by more than 10%.
    requested = [PlanField(**f) for f in v1.fields] + [PlanField(**f) for f in diff["added"]]
    for i, a in enumerate(requested):
        for b in requested[i + 1 :]:
            assert overlap_fraction(a, b) <= 0.10, (a.name, b.name)
    # The reruns: the same two versions, the same groups in the same states.
    assert len(ledger.plans.versions(event_id)) == 2
    assert after == seen["UPDATE"]


def test_the_update_asks_only_about_its_new_fields_and_shows_the_difference(
    tmp_path: Path,
) -> None:
    from flows.observe import observe
    from flows.targets import select_targets

    name = f"t-{uuid.uuid4().hex[:8]}"
    event_id = "S261206" + "".join(random.choices(string.ascii_lowercase, k=3))
    now = utcnow()
    ra, dec = observable_position(now)
    state = LcoSandboxState(ManualClock(now), None, token=TOKEN, completion_delay_s=10**6)
    texts: dict[str, str] = {}
    runs: set[str] = set()
    with serve(create_portal_app(state)) as url:
        ledger = save_settings(
            name,
            tmp_path,
            strategies_yaml=BOOK.replace("observation_types: []", "observation_types: [NORMAL]"),
            lco=LcoCredentials(
                api_token=SecretStr(TOKEN),
                proposal_id="SANDBOX-001",
                portal_url=url,
                archive_url="https://archive.test",
            ),
        )
        for alert_type, (dra, ddec, sigma) in MAPS.items():
            skymap = make_gaussian_skymap(ra + dra, dec + ddec, sigma, object_name=event_id)
            raw = make_lvk_alert(event_id, alert_type, skymap=skymap, far=1e-10, significant=True)
            alert_id = store_alert(
                ledger, parse_message(raw), raw=raw, uuid=str(uuid.uuid4())
            ).alert_id
            select_targets(alert_id, event_id, name)
            thread, out = in_thread(
                lambda alert_id=alert_id: observe(alert_id, event_id, name, wait=False)
            )
            run = paused(f"approve-requests:{event_id}", runs, timeout=120)
            texts[alert_type] = description(run)
            answer(run, approved=True, reviewer="on-call")
            thread.join(120)
            assert "error" not in out, out.get("error")

    _, v2 = ledger.plans.versions(event_id)
    targets = {t.id: t.name for t in ledger.events.targets(event_id)}
    rows = {targets[r.target_id]: r for r in ledger.requests.for_event(event_id)}
    text = texts["UPDATE"]
    assert f"**Plan version 2:** {len(v2.diff['added'])} added" in text
    assert f"in {v2.hours:.1f} h of telescope time" in text
    assert f"covers {100 * v2.covered_probability:.2f}% of the map" in text
    for field in v2.diff["dropped"]:
        assert f"| dropped | {field['name']} |" in text
    for field in v2.diff["added"]:  # asked about, and submitted
        assert rows[field["name"]].group_name in text
        assert rows[field["name"]].local_status == RequestStatus.SUBMITTED
    for field in v2.diff["kept"]:  # in the difference, but not asked about again
        assert f"| kept | {field['name']} |" in text
        assert rows[field["name"]].group_name not in text
    assert "**Plan version 1:**" in texts["PRELIMINARY"]
    [decision] = ledger.approvals.for_subject(f"requests:{event_id}:update:v2")
    assert decision.approved and decision.decided_by == "on-call"
