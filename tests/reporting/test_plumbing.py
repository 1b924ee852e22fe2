"""Shared plumbing: Retry-After parsing, error mapping for reads vs creating calls, the fault queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from pydantic import SecretStr

from followup.exceptions import NotFound, RequestRejected, ServiceUnavailable, UncertainOutcome
from followup.reporting._http import ServiceClient, parse_retry_after
from sandbox.fault_queue import Fault, FaultQueue


def test_retry_after_forms():
    assert parse_retry_after(httpx.Headers({"Retry-After": "12"})) == 12
    assert parse_retry_after(httpx.Headers({"x-rate-limit-reset": "7"})) == 7
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < parse_retry_after(httpx.Headers({"Retry-After": soon})) <= 30
    assert parse_retry_after(httpx.Headers({"Retry-After": "whenever"})) is None
    assert parse_retry_after(httpx.Headers({})) is None


def answer(status: int, **kwargs) -> ServiceClient:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, **kwargs))
    return ServiceClient(
        "https://svc.example/", service="SVC", transport=transport, secrets=[SecretStr("s3cret")]
    )


@pytest.mark.parametrize(
    ("status", "creates", "error"),
    [
        (500, True, UncertainOutcome),
        (500, False, ServiceUnavailable),
        (504, True, UncertainOutcome),
        (503, True, ServiceUnavailable),
        (429, True, ServiceUnavailable),
        (404, False, NotFound),
        (409, True, RequestRejected),
        (422, True, RequestRejected),
    ],
)
def test_status_mapping(status, creates, error):
    with answer(status, json={"detail": "nope s3cret"}) as client, pytest.raises(error) as info:
        client._request("POST", "things/", operation="make_thing", creates=creates)
    assert type(info.value) is error
    assert "make_thing" in str(info.value) and "https://svc.example/things/" in str(info.value)
    assert "s3cret" not in str(info.value) and info.value.body == {"detail": "nope ***"}


def test_timeout_must_be_positive():
    with pytest.raises(ValueError):
        ServiceClient("https://svc.example/", service="SVC", timeout=0)


def test_fault_queue_counts():
    queue = FaultQueue()
    queue.add(Fault(kind="status", endpoint="a", count=2))
    queue.add(Fault(kind="hang", endpoint="*", count=-1))
    assert queue.take("a").kind == "status"
    assert queue.take("b").kind == "hang"
    assert queue.take("a", {"status"}).kind == "status"
    assert queue.take("a", {"status"}) is None
    assert [queue.take("z").kind for _ in range(3)] == ["hang"] * 3
    queue.clear()
    assert queue.pending() == []
