"""Requests for the LCO portal stand-in: a payload built as the client builds it, a submit."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from followup.lco import RequestGroupSpec, build_request_group
from sandbox.lco import ManualClock
from tests.lco_support import AUTH, strategy, target, window


def payload(clock: ManualClock, name: str = "S1_GAL-001_e0_abc", **fields: Any) -> dict[str, Any]:
    when = window(
        clock.now(), **{k: fields.pop(k) for k in ("hours", "start_offset_h") if k in fields}
    )
    return build_request_group(
        RequestGroupSpec(
            target=target(),
            strategy=strategy(**fields),
            proposal="SANDBOX-001",
            group_name=name,
            **when,
        )
    )


def submit(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/requestgroups/", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    return response.json()


def completed_request(client: TestClient, clock: ManualClock, **fields: Any) -> int:
    group = submit(client, payload(clock, **fields))
    clock.advance(700)
    return group["requests"][0]["id"]
