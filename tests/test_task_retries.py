"""Retries live in Prefect tasks: which failures are retried, and never sooner than Retry-After.

The middle layer: real Prefect flows and tasks against the session's Prefect API
(``prefect_api``: one SQLite-backed server for the middle layer, no stack), calling the real
clients on an ``httpx.MockTransport``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed

from followup.exceptions import (
    AuthenticationError,
    NotFound,
    RequestRejected,
    ServiceUnavailable,
    UncertainOutcome,
)
from followup.lco import ArchiveClient, ChecksumMismatch, PortalClient
from followup.reporting.tns import TnsNotStored
from tasks.frames import list_request_frames
from tasks.retry import (
    MAX_RETRY_AFTER_S,
    RETRY_DELAYS_S,
    SERVICE_RETRIES,
    RetryDelays,
    retry_if_unavailable,
    should_retry,
)
from tests.test_lco_client import frame_record, group_body

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def harness(prefect_api: object) -> Iterator[None]:
    """Flows of this module run against the session's Prefect API (``tests/conftest.py``)."""
    yield


class Timed(httpx.MockTransport):
    """Answers from a script, one per request, and notes when each request came."""

    def __init__(self, answers: list[httpx.Response]) -> None:
        self.times: list[float] = []

        def answer(request: httpx.Request) -> httpx.Response:
            self.times.append(time.monotonic())
            return answers[min(len(self.times), len(answers)) - 1]

        super().__init__(answer)


def throttled(seconds: int) -> httpx.Response:
    return httpx.Response(429, headers={"Retry-After": str(seconds)}, json={"detail": "slow down"})


# ------------------------------------------------------------------------------ the policy


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        pytest.param(ServiceUnavailable("503"), True, id="unavailable"),
        pytest.param(ChecksumMismatch("md5"), True, id="corrupted download"),
        pytest.param(TnsNotStored("200 without id"), True, id="tns stored nothing"),
        pytest.param(ServiceUnavailable("429", retry_after=60), True, id="short retry-after"),
        pytest.param(
            ServiceUnavailable("429", retry_after=MAX_RETRY_AFTER_S + 1), False, id="long wait"
        ),
        pytest.param(UncertainOutcome("504 after sending"), False, id="uncertain"),
        pytest.param(RequestRejected("400"), False, id="rejected"),
        pytest.param(AuthenticationError("401"), False, id="auth"),
        pytest.param(NotFound("404"), False, id="not found"),
        pytest.param(KeyError("bug"), False, id="bug"),
    ],
)
def test_the_class_decides(error: Exception, retried: bool) -> None:
    assert should_retry(error) is retried
    assert retry_if_unavailable(None, None, Failed(data=error)) is retried


def test_retry_delays_stretch_to_the_retry_after_just_accepted() -> None:
    delays = RetryDelays([1.0, 2.0])
    assert retry_if_unavailable(None, None, Failed(data=ServiceUnavailable("x", retry_after=7)))
    assert delays[0] == 7.0  # taken once...
    assert delays[0] == 1.0  # ...then gone
    assert retry_if_unavailable(None, None, Failed(data=ServiceUnavailable("x", retry_after=0.5)))
    assert delays[1] == 2.0  # a shorter Retry-After never shortens the delay
    assert not retry_if_unavailable(None, None, Failed(data=RequestRejected("x")))
    assert delays[1] == 2.0 and delays[:1] == [1.0]
    assert SERVICE_RETRIES["retries"] == len(RETRY_DELAYS_S) == 6
    assert SERVICE_RETRIES["retry_delay_seconds"] is RETRY_DELAYS_S


def test_the_delay_scale_multiplies_every_delay_and_must_be_positive() -> None:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tasks.retry import DELAY_SCALE_ENV, delay_scale

    assert delay_scale({}) == 1.0 and delay_scale({DELAY_SCALE_ENV: " "}) == 1.0
    assert delay_scale({DELAY_SCALE_ENV: "0.1"}) == 0.1
    for bad in ("0", "-1", "nan"):
        with pytest.raises(ValueError, match=DELAY_SCALE_ENV):
            delay_scale({DELAY_SCALE_ENV: bad})
    # Read at import, in the process that runs the tasks (a stack passes it to its processes).
    printed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, tasks.retry as r; print(json.dumps(r.RETRY_DELAYS_S))",
        ],
        env={**os.environ, DELAY_SCALE_ENV: "0.1"},
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert [round(x, 6) for x in json.loads(printed)] == [0.2, 0.5, 1.0, 3.0, 6.0, 12.0]


# ------------------------------------------------------------------------------ in Prefect


def test_a_task_waits_retry_after_before_its_retry() -> None:
    transport = Timed([throttled(2), httpx.Response(200, json=group_body(7))])
    portal = PortalClient("t", base_url="https://portal.test", transport=transport)

    @task(
        retries=3,
        retry_delay_seconds=RetryDelays([0.1]),
        retry_condition_fn=retry_if_unavailable,
        cache_policy=NO_CACHE,
    )
    def read_group(client: PortalClient) -> int:
        return client.get_request_group(7).id

    @flow
    def poll(client: PortalClient) -> int:
        return read_group(client)

    assert poll(portal) == 7
    assert len(transport.times) == 2  # one failed attempt, one retry
    waited = transport.times[1] - transport.times[0]
    assert 2.0 <= waited < 2.0 + 5.0, waited  # Retry-After, not the 0.1 s delay, nor twice it


def test_a_production_task_retries_a_throttled_listing() -> None:
    listing = {"count": 1, "next": None, "previous": None, "results": [frame_record(1, b"x")]}
    transport = Timed([throttled(3), httpx.Response(200, json=listing)])
    archive = ArchiveClient("t", base_url="https://archive.test", transport=transport)

    @flow
    def fetch(client: ArchiveClient) -> list[Any]:
        return list_request_frames(client, 70)

    frames = fetch(archive)
    assert [f.frame_id for f in frames] == [1] and len(transport.times) == 2
    assert transport.times[1] - transport.times[0] >= 3.0  # Retry-After beats the 2 s delay


@pytest.mark.parametrize(
    ("answers", "call", "error"),
    [
        pytest.param(
            [httpx.Response(504)],
            lambda portal: portal.submit_request_group({"name": "x"}),
            UncertainOutcome,
            id="uncertain create",
        ),
        pytest.param(
            [httpx.Response(400, json={"name": ["This field is required."]})],
            lambda portal: portal.submit_request_group({}),
            RequestRejected,
            id="rejected",
        ),
        pytest.param(
            [httpx.Response(401, json={"detail": "Invalid token."})],
            lambda portal: portal.get_profile(),
            AuthenticationError,
            id="auth",
        ),
        pytest.param(
            [throttled(3600)],
            lambda portal: portal.get_profile(),
            ServiceUnavailable,
            id="retry-after beyond the limit",
        ),
    ],
)
def test_what_retrying_cannot_fix_fails_at_once(
    answers: list[httpx.Response], call: Callable[[PortalClient], Any], error: type[Exception]
) -> None:
    transport = Timed(answers)
    portal = PortalClient("t", base_url="https://portal.test", transport=transport)

    @task(
        retries=3,
        retry_delay_seconds=RetryDelays([0]),
        retry_condition_fn=retry_if_unavailable,
        cache_policy=NO_CACHE,
    )
    def act(client: PortalClient) -> Any:
        return call(client)

    @flow
    def run(client: PortalClient) -> Any:
        return act(client)

    state = run(portal, return_state=True)
    assert state.is_failed()
    with pytest.raises(error):
        state.result()
    assert len(transport.times) == 1
