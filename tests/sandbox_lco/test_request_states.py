"""The LCO portal stand-in's request states: pending, completed, expired, failed, cancelled."""

from __future__ import annotations

from fastapi.testclient import TestClient

from sandbox.lco import ManualClock
from tests.lco_support import AUTH
from tests.sandbox_lco.support import payload, submit

# ------------------------------------------------------------------------------ state machine


def request_state(client: TestClient, rid: int) -> str:
    return client.get(f"/api/requests/{rid}/", headers=AUTH).json()["state"]


def test_pending_then_completed_after_the_delay(client: TestClient, clock: ManualClock) -> None:
    group = submit(client, payload(clock))
    rid = group["requests"][0]["id"]
    blocks = client.get(f"/api/requests/{rid}/observations/", headers=AUTH).json()
    assert isinstance(blocks, list) and blocks[0]["state"] == "PENDING"
    clock.advance(599)
    assert request_state(client, rid) == "PENDING"
    clock.advance(2)
    assert request_state(client, rid) == "COMPLETED"
    assert (
        client.get(f"/api/requestgroups/{group['id']}/", headers=AUTH).json()["state"]
        == "COMPLETED"
    )
    assert (
        client.get(f"/api/requests/{rid}/observations/", headers=AUTH).json()[0]["state"]
        == "COMPLETED"
    )


def test_window_expires_before_completion_and_late_completion_is_accepted(
    client: TestClient, clock: ManualClock
) -> None:
    # 9 minutes: longer than the request (7.2 min, else the portal refuses it), shorter than
    # the 10-minute delay to completion.
    group = submit(client, payload(clock, hours=0.15))
    rid = group["requests"][0]["id"]
    clock.advance(560)
    assert request_state(client, rid) == "WINDOW_EXPIRED"
    assert client.get("/frames/", params={"request_id": rid}, headers=AUTH).json()["count"] == 0
    late = client.post(f"/sandbox/requests/{rid}/complete").json()
    assert late["state"] == "COMPLETED"
    assert (
        client.get(f"/api/requestgroups/{group['id']}/", headers=AUTH).json()["state"]
        == "COMPLETED"
    )
    assert (
        client.get("/frames/", params={"request_id": rid}, headers=AUTH).json()["count"] == 4
    )  # levels 0 and 91


def test_failure_limit_is_injectable(client: TestClient, clock: ManualClock) -> None:
    client.post("/sandbox/outcomes", json={"states": ["FAILURE_LIMIT_REACHED"]})
    failing = submit(client, payload(clock, name="a"))
    normal = submit(client, payload(clock, name="b"))
    clock.advance(700)
    assert request_state(client, failing["requests"][0]["id"]) == "FAILURE_LIMIT_REACHED"
    assert request_state(client, normal["requests"][0]["id"]) == "COMPLETED"
    forced = client.post(
        f"/sandbox/requests/{normal['requests'][0]['id']}/state", json={"state": "WINDOW_EXPIRED"}
    )
    assert forced.json()["state"] == "WINDOW_EXPIRED"


def test_cancel_semantics(client: TestClient, clock: ManualClock) -> None:
    group = submit(client, payload(clock))
    rid = group["requests"][0]["id"]
    first = client.post(f"/api/requestgroups/{group['id']}/cancel/", headers=AUTH)
    assert first.status_code == 200 and first.json()["state"] == "CANCELED"
    assert first.json()["requests"][0]["state"] == "CANCELED"
    again = client.post(f"/api/requestgroups/{group['id']}/cancel/", headers=AUTH)
    assert again.status_code == 200 and again.json()["state"] == "CANCELED"
    assert (
        client.get(f"/api/requests/{rid}/observations/", headers=AUTH).json()[0]["state"]
        == "CANCELED"
    )
    assert (
        client.get(f"/api/requests/{rid}/observations/?exclude_canceled=true", headers=AUTH).json()
        == []
    )
    clock.advance(700)
    assert request_state(client, rid) == "CANCELED"  # no completion after a cancel
    done = submit(client, payload(clock, name="done"))
    clock.advance(700)
    refused = client.post(f"/api/requestgroups/{done['id']}/cancel/", headers=AUTH)
    assert refused.status_code == 400
    assert refused.json() == {
        "errors": [f"Cannot transition from request state COMPLETED to CANCELED for {done['id']}"]
    }
