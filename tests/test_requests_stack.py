"""Telescope requests through the real stack: approvals, timeouts, retractions, duplicates.

One local stack (Prefect server, Tansu broker, sandbox, served deployments, listener) whose
approval rules make every request wait for a person. Alerts go in through Kafka with hop-client;
answers go in through Prefect's resume API (the call the UI's Resume button makes); what happened
is read from the ledger, the Prefect API and the sandbox portal's record of what it received.
Requests stay PENDING at the portal (a day to complete), so a retraction has something to cancel,
and the runs do not wait for LCO (``max_wait_s`` 0), so each frees its worker at once. The last
test kills a dispatcher worker while the portal holds the answer to a POST it has stored, then
reruns the observe stage: exactly one group per request reaches the portal.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from deployments.demo import DemoAlert, make_demo_alert
from deployments.stack import DEMO_STRATEGIES, LocalStack, StackOptions
from followup.http import client_settings
from followup.lco import group_name_prefix
from sandbox.server import SandboxConfig
from tests.stack_support import answer_form, flow_runs, serving, wait_for

pytestmark = pytest.mark.slow

# Every request needs a person: more telescope time than 0 h.
ALWAYS_ASK = DEMO_STRATEGIES.replace("max_hours: 12", "max_hours: 0")
assert ALWAYS_ASK != DEMO_STRATEGIES
APPROVAL_TIMEOUT_S = 20
REVIEWER = "Vera Rubin (resume API test)"


def unique_alerts(n: int) -> list[DemoAlert]:
    alerts: dict[str, DemoAlert] = {}
    while len(alerts) < n:
        alert = make_demo_alert()
        alerts.setdefault(alert.event_id, alert)
    return list(alerts.values())


@pytest.fixture(scope="module")
def alerts() -> dict[str, DemoAlert]:
    """One event per test: approved, timed out, retracted, published twice."""
    names = ("approved", "timeout", "retracted", "twice", "crash")
    return dict(zip(names, unique_alerts(len(names)), strict=True))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, alerts) -> Iterator[LocalStack]:
    from deployments.processes import free_port

    port = free_port()
    options = StackOptions(
        root=tmp_path_factory.mktemp("requests-stack"),
        ui_port=port,
        sandbox=SandboxConfig(completion_delay_s=86_400.0, renderer="header-only"),
        settings_overrides={
            "strategies_yaml": ALWAYS_ASK,
            "approval_timeout_s": APPROVAL_TIMEOUT_S,
            "max_wait_s": 0.0,
        },
        refresh_interval_s=3600.0,
        alarms=False,
    )
    with serving(LocalStack(options)) as stack:
        # The timeout test's clock runs while the other tests work.
        stack.publish(alerts["timeout"].raw)
        stack.publish(alerts["approved"].raw)
        yield stack


def active_runs() -> list[str]:
    """Names of the flow runs under way (scheduled runs of the schedules do not count)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    active = [StateType.PENDING, StateType.RUNNING, StateType.PAUSED]
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=active))
            )
        )
    return [r.name for r in runs]


def subject(event_id: str) -> str:
    return f"requests:{event_id}:preliminary"


def paused_approval(event_id: str, timeout: float = 120) -> Any:
    """The event's approval run, once it is paused."""
    name = f"approve-{subject(event_id)}"
    found = wait_for(
        lambda: [r for r in flow_runs(name) if r.state and r.state.is_paused()], timeout
    )
    assert found, f"no paused approval run {name}"
    return found[0]


def answer(event_id: str, *, approved: bool) -> None:
    """Answer the event's approval form through Prefect's resume API."""
    run = paused_approval(event_id)
    answer_form(run.id, {"approved": approved, "reviewer": REVIEWER, "comment": "stack test"})


def portal_groups(stack: LocalStack, event_id: str) -> list[dict[str, Any]]:
    """What the sandbox portal received for the event."""
    assert stack.urls is not None
    groups = httpx.get(f"{stack.urls.portal}/sandbox/requests", timeout=10).json()["results"]
    return [g for g in groups if g["name"].startswith(group_name_prefix(event_id))]


def ledger_requests(stack: LocalStack, event_id: str) -> list[Any]:
    ledger = stack.ledger()
    try:
        return ledger.requests.for_event(event_id)
    finally:
        ledger.dispose()


def decisions(stack: LocalStack, event_id: str) -> list[Any]:
    ledger = stack.ledger()
    try:
        return ledger.approvals.for_subject(subject(event_id))
    finally:
        ledger.dispose()


def submitted(stack: LocalStack, event_id: str, timeout: float = 60) -> list[Any]:
    """The event's requests once its observe run has ended with them all submitted.

    The run claims and sends its requests one after another: until it ends, every request in the
    ledger may be submitted while the next one is not claimed yet.
    """

    def done() -> list[Any]:
        runs = flow_runs(f"observe-{event_id}")
        if not runs or not all(r.state and r.state.is_final() for r in runs):
            return []
        rows = ledger_requests(stack, event_id)
        return rows if rows and all(r.local_status == "submitted" for r in rows) else []

    return wait_for(done, timeout)


def test_an_approval_through_the_resume_api_submits_and_records_the_reviewer(stack, alerts) -> None:
    event_id = alerts["approved"].event_id
    assert not portal_groups(stack, event_id), "submitted before anybody approved"
    answer(event_id, approved=True)
    rows = submitted(stack, event_id)
    assert rows, f"nothing submitted after the approval: {ledger_requests(stack, event_id)}"
    (decision,) = decisions(stack, event_id)
    assert decision.approved and decision.decided_by == REVIEWER
    groups = portal_groups(stack, event_id)
    assert sorted(g["name"] for g in groups) == sorted(r.group_name for r in rows)
    assert all(g["state"] == "PENDING" for g in groups)


def test_a_retraction_cancels_every_pending_request_of_its_event_and_nothing_else(
    stack, alerts
) -> None:
    from followup.alerts.mock import make_lvk_alert

    retracted, other = alerts["retracted"].event_id, alerts["approved"].event_id
    stack.publish(alerts["retracted"].raw)
    answer(retracted, approved=True)
    assert submitted(stack, retracted), "nothing submitted for the event to retract"
    assert submitted(stack, other), "the approval test's requests are missing"
    before = {g["name"] for g in portal_groups(stack, retracted)}
    assert before and all(g["state"] == "PENDING" for g in portal_groups(stack, retracted))

    stack.publish(make_lvk_alert(retracted, "RETRACTION"))
    canceled = wait_for(
        lambda: all(g["state"] == "CANCELED" for g in portal_groups(stack, retracted)), 60
    )
    assert canceled, portal_groups(stack, retracted)
    assert {g["name"] for g in portal_groups(stack, retracted)} == before
    assert wait_for(
        lambda: all(r.state == "CANCELED" for r in ledger_requests(stack, retracted)), 30
    ), ledger_requests(stack, retracted)
    assert all(g["state"] == "PENDING" for g in portal_groups(stack, other))
    assert all(r.state == "PENDING" for r in ledger_requests(stack, other))


def test_the_same_alert_published_twice_gives_one_followup_run(stack, alerts) -> None:
    from followup.alerts.mock import make_lvk_alert
    from followup.stream import Publisher

    alert = alerts["twice"]
    # Not significant: refused, no run. The listener reads in order, so once this one is
    # processed, so are the three copies before it.
    sentinel = make_lvk_alert(f"{alert.event_id}x", "PRELIMINARY", significant=False)
    with Publisher(f"kafka://{stack.broker.bootstrap}") as publisher:
        first = publisher.send(alert.raw, topic="igwn.gwalert")
        second = publisher.send(alert.raw, topic="igwn.gwalert")  # new _id; same event, type, time
        publisher.send(alert.raw, topic="igwn.gwalert", message_id=first)  # the same message again
        last = publisher.send(sentinel, topic="igwn.gwalert")
    ledger = stack.ledger()
    try:

        def processed(uuid: str) -> bool:
            row = ledger.alerts.find_message(uuid)
            return row is not None and row.status.is_final

        assert wait_for(lambda: processed(last), 60), "the listener did not get to the sentinel"
        assert ledger.alerts.find_message(first).status == "accepted"
        assert ledger.alerts.find_message(second).status == "duplicate"
        (row,) = ledger.alerts.for_event(alert.event_id)
    finally:
        ledger.dispose()
    name = f"followup-{alert.event_id}-preliminary"
    runs = flow_runs(name)
    assert len(runs) == 1 and row.flow_run_id == str(runs[0].id)
    # Decline its approval so that the run ends; still one run, and nothing sent.
    answer(alert.event_id, approved=False)
    assert wait_for(lambda: ended(name), 60), flow_runs(name)
    assert len(flow_runs(name)) == 1
    assert not portal_groups(stack, alert.event_id)


def ended(name: str) -> list[Any]:
    """The runs with this name, once there is one and all of them are final."""
    runs = flow_runs(name)
    return runs if runs and all(r.state and r.state.is_final() for r in runs) else []


def test_an_approval_that_times_out_is_a_decline(stack, alerts) -> None:
    """Nobody answers: the observe run records a decline by ``timeout`` and sends nothing.

    The decision is recorded inside the observe run before it marks its requests declined, one
    task each: the test waits for that run to end, not for the decision, so that it never reads
    the requests half-way.
    """
    event_id = alerts["timeout"].event_id
    name = f"observe-{event_id}"
    observed = wait_for(lambda: ended(name), APPROVAL_TIMEOUT_S + 90)
    assert observed, f"{name} did not end after the approval timeout: {flow_runs(name)}"
    assert all(r.state.is_completed() for r in observed), [r.state for r in observed]
    (decision,) = decisions(stack, event_id)
    assert not decision.approved and decision.decided_by == "timeout"
    rows = ledger_requests(stack, event_id)
    assert rows and all(r.local_status == "declined" for r in rows), rows
    assert not portal_groups(stack, event_id), "a declined request reached the portal"
    (approval_run,) = flow_runs(f"approve-{subject(event_id)}")
    assert approval_run.state.is_failed()


def test_a_crash_after_the_post_and_a_rerun_leave_one_request_at_the_portal(stack, alerts) -> None:
    """The worker process dies after the portal stored the POST, before the ledger heard back."""
    import psutil

    from flows.observe import observe

    assert stack.urls is not None
    event_id = alerts["crash"].event_id
    portal_port = int(stack.urls.portal.rsplit(":", 1)[1])
    (listener,) = [p for p in stack.processes if p.name == "listener"]

    def portal_workers() -> list[psutil.Process]:
        """Workers with an open connection to the portal (idle ones close after uvicorn's 5 s)."""
        return [
            child
            for child in psutil.Process(listener.pid).children(recursive=True)
            if any(
                c.raddr and c.raddr.port == portal_port and c.status == psutil.CONN_ESTABLISHED
                for c in child.net_connections("tcp")
            )
        ]

    # Killing a worker breaks the dispatcher's pool and every run in it: wait for the others,
    # and for their kept-alive connections to the portal to close, so that the worker to kill is
    # the only one connected below.
    assert wait_for(lambda: not active_runs(), 120), active_runs()
    assert wait_for(lambda: not portal_workers(), 30), portal_workers()
    # The portal stores the first POST, then holds its answer: the run waits inside the POST.
    httpx.post(
        f"{stack.urls.portal}/sandbox/faults",
        json={"endpoint": "POST /api/requestgroups/$", "after_store": True, "delay_s": 45},
    ).raise_for_status()
    stack.publish(alerts["crash"].raw)
    answer(event_id, approved=True)
    (stored,) = wait_for(lambda: portal_groups(stack, event_id), 60, interval=0.1)

    # Kill the worker that is waiting for that answer (the one connected to the portal's port).
    workers = portal_workers()
    assert len(workers) == 1, workers
    workers[0].kill()
    workers[0].wait(10)
    rows = {r.group_name: r for r in ledger_requests(stack, event_id)}
    assert rows[stored["name"]].local_status == "claimed", "the ledger heard back before the kill"
    assert not any(r.local_status == "submitted" for r in rows.values())

    # Rerun the observe stage: it finds the stored group by name and submits the rest once.
    ledger = stack.ledger()
    try:
        (alert_row,) = ledger.alerts.for_event(event_id)
    finally:
        ledger.dispose()
    observe(alert_row.id, event_id, stack.options.settings_name, wait=False)
    rows = {r.group_name: r for r in ledger_requests(stack, event_id)}
    assert rows and all(r.local_status == "submitted" for r in rows.values()), rows
    groups = portal_groups(stack, event_id)
    assert sorted(g["name"] for g in groups) == sorted(rows), "a group was submitted twice"
    assert rows[stored["name"]].group_id == stored["group_id"]
