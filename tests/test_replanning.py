"""Re-planning an event: plan versions from alerts, and the dropped fields' requests cancelled.

A PRELIMINARY then an UPDATE of one event, planned at a fixed start on the fixed Sinistro grid:
the UPDATE's version keeps, drops and adds fields; a rerun of an alert reuses its version. Then,
against the sandbox portal, the requests of the dropped fields are cancelled with the reason
recorded, the kept ones stay pending, and a second pass cancels nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from followup.alerts import parse_message
from followup.alerts.mock import make_lvk_alert
from followup.cadence import plan_epochs
from followup.lco import PortalClient, at_submission, build_request_group
from followup.ledger import Ledger
from followup.models import Alert, LcoState, RequestStatus, Target
from followup.observing import cancel_superseded_requests, submit_once
from followup.replanning import (
    again_after_cancel,
    current_targets,
    record_plan_version,
    superseded_targets,
    version_targets,
)
from followup.skymap import make_gaussian_skymap
from followup.strategies import load_strategies
from followup.targeting import Plan, plan_targets
from sandbox.lco import LcoSandboxState, ManualClock, create_portal_app
from tests.lco_support import TOKEN, serve
from tests.ledger_support import store_alert

EVENT = "S261206re"
START = datetime(2026, 12, 6, tzinfo=UTC)
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
"""
STRATEGY = load_strategies(BOOK).strategies["t-gw"]
MAPS = {  # centre RA, Dec and sigma in degrees: the UPDATE moved a degree and shrank
    "PRELIMINARY": (60.0, -30.0, 0.5),
    "UPDATE": (61.0, -29.5, 0.4),
    "INITIAL": (60.0, -30.0, 0.5),  # back where the PRELIMINARY was
}


def alert_of(alert_type: str) -> tuple[bytes, Alert]:
    ra, dec, sigma = MAPS[alert_type]
    skymap = make_gaussian_skymap(ra, dec, sigma, object_name=EVENT)
    raw = make_lvk_alert(EVENT, alert_type, skymap=skymap, far=1e-10, significant=True)
    return raw, parse_message(raw)


def plan_of(alert: Alert) -> Plan:
    return plan_targets(
        alert,
        instrument_type=STRATEGY.instrument_type,
        max_targets=STRATEGY.max_targets,
        start=START,
        max_airmass=STRATEGY.max_airmass,
        min_moon_distance_deg=STRATEGY.min_lunar_distance_deg,
        min_probability=STRATEGY.min_probability,
        allow_empty=True,
    )


@pytest.fixture(scope="module")
def alerts() -> dict[str, tuple[bytes, Alert, Plan]]:
    out = {}
    for alert_type in MAPS:
        raw, alert = alert_of(alert_type)
        out[alert_type] = (raw, alert, plan_of(alert))
    return out


def version_of(ledger: Ledger, alerts, alert_type: str):
    raw, alert, plan = alerts[alert_type]
    alert_id = store_alert(ledger, alert, raw=raw, uuid=alert_type).alert_id
    version = record_plan_version(ledger, plan, STRATEGY, alert_id=alert_id, alert=alert)
    ledger.events.save_targets(EVENT, version_targets(plan, version))
    return alert_id, version


def test_each_alert_makes_a_version_and_a_rerun_reuses_it(sqlite_ledger: Ledger, alerts) -> None:
    first_id, v1 = version_of(sqlite_ledger, alerts, "PRELIMINARY")
    assert v1.version == 1 and len(v1.diff.added) == 4 and not v1.diff.dropped
    assert current_targets(sqlite_ledger, EVENT) == [f.name for f in v1.diff.added]
    assert superseded_targets(sqlite_ledger, EVENT) == {}

    update_id, v2 = version_of(sqlite_ledger, alerts, "UPDATE")
    assert v2.version == 2 and v2.diff.kept and v2.diff.dropped and v2.diff.added
    assert {f.name for f in v2.diff.kept} | {f.name for f in v2.diff.dropped} == {
        f.name for f in v1.diff.added
    }
    assert all(f.probability < STRATEGY.min_probability for f in v2.diff.dropped)
    assert all(f.probability >= STRATEGY.min_probability for f in v2.diff.kept)
    assert v2.diff.probability_gained == pytest.approx(sum(f.probability for f in v2.diff.added))
    assert v2.covered_probability == pytest.approx(v2.diff.probability_covered)
    assert v2.hours > 0 and "covers" in v2.summary()
    markdown = v2.markdown()
    assert "| dropped |" in markdown and "below the strategy's minimum 0.02" in markdown
    superseded = superseded_targets(sqlite_ledger, EVENT)
    assert set(superseded) == {f.name for f in v2.diff.dropped}
    assert all(why.startswith("dropped by plan v2 (UPDATE)") for why in superseded.values())

    # Reruns of either alert reuse their versions: no third version, the same current plan.
    _, _, plan = alerts["UPDATE"]
    again = record_plan_version(sqlite_ledger, plan, STRATEGY, alert_id=update_id)
    assert again.reused and again.version == 2 and again.diff == v2.diff
    _, _, plan = alerts["PRELIMINARY"]
    assert record_plan_version(sqlite_ledger, plan, STRATEGY, alert_id=first_id).version == 1
    assert len(sqlite_ledger.plans.versions(EVENT)) == 2
    assert current_targets(sqlite_ledger, EVENT) == [f.name for f in v2.diff.fields]


@pytest.fixture
def portal() -> Iterator[tuple[PortalClient, str]]:
    state = LcoSandboxState(ManualClock(START), None, token=TOKEN, completion_delay_s=10**6)
    with serve(create_portal_app(state)) as url, PortalClient(TOKEN, base_url=url) as client:
        yield client, url


def submit_current(ledger: Ledger, client: PortalClient) -> list[str]:
    """Submit one request per target of the current version, as ``observe`` does."""
    stored = {t.name: t for t in ledger.events.targets(EVENT)}
    semesters = client.list_semesters(ending_after=START)
    names = []
    for name in current_targets(ledger, EVENT) or []:
        target = Target.model_validate(stored[name].data)
        planned = plan_epochs(
            EVENT, target, STRATEGY, proposal="SANDBOX-001", now=START, semesters=semesters
        )
        for request, spec in again_after_cancel(ledger, planned, plan=STRATEGY.name):
            spec = at_submission(spec, now=START, semesters=semesters)
            submit_once(client, ledger, request, build_request_group(spec))
            names.append(request.group_name)
    return names


def test_requests_of_dropped_fields_are_cancelled_once_with_the_reason(
    sqlite_ledger: Ledger, alerts, portal
) -> None:
    client, url = portal
    version_of(sqlite_ledger, alerts, "PRELIMINARY")
    first = submit_current(sqlite_ledger, client)
    _, v2 = version_of(sqlite_ledger, alerts, "UPDATE")
    reasons = superseded_targets(sqlite_ledger, EVENT)

    results = cancel_superseded_requests(client, sqlite_ledger, EVENT, reasons)
    second = submit_current(sqlite_ledger, client)

    dropped = {f.name for f in v2.diff.dropped}
    targets = {t.id: t.name for t in sqlite_ledger.events.targets(EVENT)}
    rows = {r.group_name: r for r in sqlite_ledger.requests.for_event(EVENT)}
    by_target = {targets[r.target_id]: r for r in rows.values()}
    assert {r.group_name for r in results} == {by_target[n].group_name for n in dropped}
    assert all(r.canceled and r.state == LcoState.CANCELED for r in results)
    at_portal = {
        g["name"]: g["state"] for g in httpx.get(f"{url}/sandbox/requests").json()["results"]
    }
    for name in dropped:
        row = by_target[name]
        assert at_portal[row.group_name] == "CANCELED" and row.state == LcoState.CANCELED
        assert row.detail.startswith("cancelled: dropped by plan v2 (UPDATE): p fell from")
    for field in v2.diff.kept:  # kept: still pending, not sent again
        row = by_target[field.name]
        assert at_portal[row.group_name] == "PENDING" and row.group_name in first
    for field in v2.diff.added:  # added: submitted now
        row = by_target[field.name]
        assert row.local_status == RequestStatus.SUBMITTED and row.group_name not in first
    assert len(at_portal) == len(first) + len(v2.diff.added) and set(second) <= set(at_portal)

    # A second pass (a retry, a rerun) finds them cancelled: nothing is sent again.
    assert cancel_superseded_requests(client, sqlite_ledger, EVENT, reasons) == []
    assert submit_current(sqlite_ledger, client) == second
    assert len(httpx.get(f"{url}/sandbox/requests").json()["results"]) == len(at_portal)


def test_the_approval_form_shows_the_difference_the_hours_and_the_coverage(
    sqlite_ledger: Ledger, alerts
) -> None:
    from flows.observe import _approval_subject, _describe

    _, v1 = version_of(sqlite_ledger, alerts, "PRELIMINARY")
    _, v2 = version_of(sqlite_ledger, alerts, "UPDATE")
    _, update, _ = alerts["UPDATE"]
    text = _describe(update, STRATEGY, [], "more than 0 h", v2)
    assert "**Plan version 2:**" in text
    assert f"covers {100 * v2.covered_probability:.2f}% of the map in {v2.hours:.1f} h" in text
    for field in v2.diff.dropped:
        assert f"| dropped | {field.name} |" in text
    for field in v2.diff.added:
        assert f"| added | {field.name} |" in text
    # A second plan is a new question: it does not reuse the first plan's decision.
    assert _approval_subject(alerts["PRELIMINARY"][1], v1) == f"requests:{EVENT}:preliminary"
    assert _approval_subject(update, v2) == f"requests:{EVENT}:update:v2"


def test_a_field_taken_back_after_its_cancellation_is_requested_again_once(
    sqlite_ledger: Ledger, alerts, portal
) -> None:
    client, url = portal
    version_of(sqlite_ledger, alerts, "PRELIMINARY")
    first = submit_current(sqlite_ledger, client)
    _, v2 = version_of(sqlite_ledger, alerts, "UPDATE")
    cancel_superseded_requests(
        client, sqlite_ledger, EVENT, superseded_targets(sqlite_ledger, EVENT)
    )
    submit_current(sqlite_ledger, client)
    _, v3 = version_of(sqlite_ledger, alerts, "INITIAL")  # the map moved back
    back = {f.name for f in v3.diff.added} & {f.name for f in v2.diff.dropped}
    assert back, v3.diff
    assert not set(superseded_targets(sqlite_ledger, EVENT)) & back

    third = submit_current(sqlite_ledger, client)
    again = submit_current(sqlite_ledger, client)  # a rerun: the same names, nothing new

    assert third == again
    at_portal = {
        g["name"]: g["state"] for g in httpx.get(f"{url}/sandbox/requests").json()["results"]
    }
    targets = {t.id: t.name for t in sqlite_ledger.events.targets(EVENT)}
    for name in back:
        rows = [r for r in sqlite_ledger.requests.for_event(EVENT) if targets[r.target_id] == name]
        cancelled, renewed = sorted(rows, key=lambda r: r.id)
        assert cancelled.group_name in first and at_portal[cancelled.group_name] == "CANCELED"
        assert "_e0a1_" in renewed.group_name and at_portal[renewed.group_name] == "PENDING"
        assert renewed.group_name in third


def test_an_expired_epoch_of_a_dropped_field_is_not_requested_again(
    sqlite_ledger: Ledger, alerts, portal
) -> None:
    from followup.cadence import plan_rerequests
    from followup.observing import refresh_request_states

    client, url = portal
    version_of(sqlite_ledger, alerts, "PRELIMINARY")
    submit_current(sqlite_ledger, client)
    for row in sqlite_ledger.requests.for_event(EVENT):  # every window closed unobserved
        httpx.post(
            f"{url}/sandbox/requests/{row.request_id}/state", json={"state": "WINDOW_EXPIRED"}
        ).raise_for_status()
    refresh_request_states(client, sqlite_ledger, event_id=EVENT)
    _, v2 = version_of(sqlite_ledger, alerts, "UPDATE")
    assert v2.diff.kept and v2.diff.dropped

    again = plan_rerequests(
        sqlite_ledger, EVENT, load_strategies(BOOK), proposal="SANDBOX-001", now=START
    )

    assert {r.request.target_name for r in again} == {f.name for f in v2.diff.kept}
