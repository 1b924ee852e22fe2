"""Shared plumbing: Retry-After parsing and the stand-ins' fault queue.

The error table of the HTTP layer is tested for every client in ``tests/test_http.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx

from followup.http import parse_retry_after
from sandbox.fault_queue import Fault, FaultQueue


def test_retry_after_forms():
    assert parse_retry_after(httpx.Headers({"Retry-After": "12"})) == 12
    assert parse_retry_after(httpx.Headers({"x-rate-limit-reset": "7"})) == 7
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < parse_retry_after(httpx.Headers({"Retry-After": soon})) <= 30
    assert parse_retry_after(httpx.Headers({"Retry-After": "whenever"})) is None
    assert parse_retry_after(httpx.Headers({})) is None


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
