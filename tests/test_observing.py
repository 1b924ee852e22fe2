"""Exactly-once submission, batched polling and cancellation against the sandbox portal."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from followup.exceptions import RequestRejected, ServiceUnavailable, UncertainOutcome
from followup.lco import PortalClient, RequestGroupSpec, build_request_group, make_group_name
from followup.ledger import Ledger
from followup.models import Alert, LcoState, ObservationRequest, Target
from followup.observing import (
    cancel_event_requests,
    mark_declined,
    refresh_request_states,
    submit_once,
)
from sandbox.lco import LcoSandboxState, ManualClock, create_portal_app
from tests.lco_support import TOKEN, serve, strategy, window
from tests.ledger_support import store_alert

pytestmark = pytest.mark.slow


class CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        return super().handle_request(request)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[LcoSandboxState, str]]:
    state = LcoSandboxState(ManualClock(), None, token=TOKEN, completion_delay_s=600)
    with serve(create_portal_app(state)) as url:
        yield state, url


@pytest.fixture
def sandbox(served):
    served[0].reset()
    return served


@pytest.fixture
def transport() -> CountingTransport:
    return CountingTransport()


@pytest.fixture
def portal(sandbox, transport) -> Iterator[PortalClient]:
    client = PortalClient(TOKEN, base_url=sandbox[1], transport=transport)
    yield client
    client.close()


def stored(sandbox) -> list[dict]:
    return httpx.get(f"{sandbox[1]}/sandbox/requests").json()["results"]


def fault(sandbox, **spec) -> None:
    httpx.post(f"{sandbox[1]}/sandbox/faults", json=spec).raise_for_status()


def prepare(ledger: Ledger, sandbox, event: str = "S250101ab", name: str = "F001"):
    store_alert(
        ledger,
        Alert(
            source="LVK",
            kind="gw",
            format="lvk-json",
            event_id=event,
            alert_type="PRELIMINARY",
            issued_at=datetime(2025, 1, 1, tzinfo=UTC),
        ),
    )
    target = Target(name=name, ra=150.25, dec=-20.5, kind="field", rank=1, probability=0.4)
    ledger.events.save_targets(event, [target])
    chosen = strategy()
    group_name = make_group_name(event, name, filters=chosen.filters)
    request = ObservationRequest(
        event_id=event, target_name=name, group_name=group_name, filters=chosen.filters
    )
    payload = build_request_group(
        RequestGroupSpec(
            target=target,
            strategy=chosen,
            proposal="SANDBOX-001",
            group_name=group_name,
            **window(sandbox[0].now()),
        )
    )
    return request, payload


def test_submit_once_sends_once_and_records_remote_ids(sqlite_ledger, sandbox, portal) -> None:
    request, payload = prepare(sqlite_ledger, sandbox)
    first = submit_once(portal, sqlite_ledger, request, payload)
    again = submit_once(portal, sqlite_ledger, request, payload)
    assert first.outcome == "submitted" and again.outcome == "already"
    assert len(stored(sandbox)) == 1
    row = sqlite_ledger.requests.find(request.group_name)
    assert row.group_id == stored(sandbox)[0]["group_id"] and row.request_id is not None
    assert row.local_status == "submitted" and row.state == "PENDING"


def test_a_crash_after_the_post_does_not_submit_twice(sqlite_ledger, sandbox, portal) -> None:
    request, payload = prepare(sqlite_ledger, sandbox)
    # The first attempt claimed the row and POSTed, then died before writing the answer.
    sqlite_ledger.requests.claim(request)
    portal.submit_request_group(payload)
    result = submit_once(portal, sqlite_ledger, request, payload)
    assert result.outcome == "found"
    assert len(stored(sandbox)) == 1
    assert sqlite_ledger.requests.find(request.group_name).local_status == "submitted"


def test_a_lost_answer_is_resolved_by_name(sqlite_ledger, sandbox, portal) -> None:
    request, payload = prepare(sqlite_ledger, sandbox)
    fault(sandbox, endpoint="POST /api/requestgroups/$", status=502, after_store=True)
    sleeps: list[float] = []
    result = submit_once(portal, sqlite_ledger, request, payload, sleep=sleeps.append)
    assert result.outcome == "found" and sleeps == [5.0]
    assert len(stored(sandbox)) == 1


def test_a_refused_post_is_sent_on_retry_after_a_look_up(
    sqlite_ledger, sandbox, portal, transport
) -> None:
    request, payload = prepare(sqlite_ledger, sandbox)
    fault(sandbox, endpoint="POST /api/requestgroups/$", status=503)
    with pytest.raises(ServiceUnavailable) as info:
        submit_once(portal, sqlite_ledger, request, payload, sleep=lambda s: None)
    assert not isinstance(info.value, UncertainOutcome)  # a 503 stored nothing: no look-up
    assert stored(sandbox) == []
    transport.calls.clear()
    retried = submit_once(portal, sqlite_ledger, request, payload, sleep=lambda s: None)
    assert retried.outcome == "submitted"
    # The retry looks the name up before it sends, since the first attempt had claimed the row.
    assert transport.calls[0] == "GET /api/requestgroups/"
    assert transport.calls[-1] == "POST /api/requestgroups/"
    assert len(stored(sandbox)) == 1


def test_a_lost_answer_never_found_is_unavailable_after_the_look_ups(
    sqlite_ledger, sandbox, portal
) -> None:
    request, payload = prepare(sqlite_ledger, sandbox)
    fault(sandbox, endpoint="POST /api/requestgroups/$", status=500)  # nothing stored
    sleeps: list[float] = []
    with pytest.raises(ServiceUnavailable, match="did not arrive") as info:
        submit_once(portal, sqlite_ledger, request, payload, sleep=sleeps.append)
    assert sleeps == [5.0, 30.0]
    assert isinstance(info.value.__cause__, UncertainOutcome)
    assert stored(sandbox) == []
    assert sqlite_ledger.requests.find(request.group_name).local_status == "claimed"
    retried = submit_once(portal, sqlite_ledger, request, payload, sleep=sleeps.append)
    assert retried.outcome == "submitted" and len(stored(sandbox)) == 1


def test_rejected_and_declined_requests_are_never_sent(sqlite_ledger, sandbox, portal) -> None:
    request, payload = prepare(sqlite_ledger, sandbox)
    bad = dict(payload, ipp_value=9.0)
    with pytest.raises(RequestRejected, match="ipp_value"):
        submit_once(portal, sqlite_ledger, request, bad)
    assert sqlite_ledger.requests.find(request.group_name).local_status == "rejected"
    assert sandbox[0].validate_calls == 1 and sandbox[0].create_calls == 0
    assert submit_once(portal, sqlite_ledger, request, payload).outcome == "not-sent"
    other, other_payload = prepare(sqlite_ledger, sandbox, event="S250101cd")
    assert mark_declined(sqlite_ledger, other, "declined by alice").local_status == "declined"
    assert submit_once(portal, sqlite_ledger, other, other_payload).outcome == "not-sent"
    assert stored(sandbox) == []


def test_refresh_reads_every_state_in_one_query(sqlite_ledger, sandbox, portal, transport) -> None:
    names = [f"F00{i}" for i in range(1, 6)]
    for name in names:
        request, payload = prepare(sqlite_ledger, sandbox, name=name)
        submit_once(portal, sqlite_ledger, request, payload)
    first_request = sqlite_ledger.requests.find(
        make_group_name("S250101ab", "F001", filters=strategy().filters)
    ).request_id
    httpx.post(f"{sandbox[1]}/sandbox/requests/{first_request}/complete").raise_for_status()
    transport.calls.clear()
    changes = refresh_request_states(portal, sqlite_ledger, event_id="S250101ab")
    assert [(c.request_id, c.old, c.new) for c in changes] == [
        (first_request, LcoState.PENDING, LcoState.COMPLETED)
    ]
    assert transport.calls == ["GET /api/requestgroups/"]
    assert len(sqlite_ledger.requests.pending("S250101ab")) == 4


def test_cancel_touches_only_the_retracted_event(sqlite_ledger, sandbox, portal) -> None:
    for event, name in [("S250101ab", "F001"), ("S250101ab", "F002"), ("S250202xy", "F001")]:
        request, payload = prepare(sqlite_ledger, sandbox, event=event, name=name)
        submit_once(portal, sqlite_ledger, request, payload)
    done = sqlite_ledger.requests.find(
        make_group_name("S250101ab", "F002", filters=strategy().filters)
    )
    httpx.post(f"{sandbox[1]}/sandbox/requests/{done.request_id}/complete").raise_for_status()
    refresh_request_states(portal, sqlite_ledger, event_id="S250101ab")
    results = cancel_event_requests(portal, sqlite_ledger, "S250101ab")
    assert [(r.canceled, r.state) for r in results] == [(True, LcoState.CANCELED)]
    states = {r["name"]: r["state"] for r in stored(sandbox)}
    assert sorted(states.values()) == ["CANCELED", "COMPLETED", "PENDING"]
    other = sqlite_ledger.requests.for_event("S250202xy")[0]
    assert states[other.group_name] == "PENDING"
