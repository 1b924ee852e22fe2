"""Fuzz every client's answer handling: any status, body and headers give a model or a ServiceError.

Each client call of the HTTP table (LCO portal and archive, HERMES, TNS, GCN; reads and creating
calls) is answered by a transport that returns an arbitrary status (1xx to 5xx), body (bytes, any
JSON value, or the expected answer with values replaced) and headers (Content-Type,
Content-Encoding, Content-Length, Content-Range, Retry-After, Location...). The call must return
or raise one of the :mod:`followup.exceptions` service errors, never anything else; and an
answer to a creating call that cannot be read is an ``UncertainOutcome`` (it may have been
stored), never a plain failure a retry would resend.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from followup.exceptions import ServiceError, ServiceUnavailable, UncertainOutcome
from followup.reporting.tns import TnsNotStored
from tests.fuzz.support import FUZZ, JSON, measure, mutated
from tests.test_http import CALLS, Call

pytestmark = pytest.mark.slow

GOOD = {
    "id": 1,
    "name": "x",
    "proposal": "P",
    "state": "PENDING",
    "observation_type": "NORMAL",
    "requests": [{"id": 2, "state": "PENDING"}],
    "count": 1,
    "next": None,
    "results": [],
    "request_durations": {"duration": 1},
    "errors": {},
    "message_text": "ok",
    "uuid": "u",
    "basename": "b",
    "filename": "b.fits.fz",
    "url": "https://s3.test/b.fits.fz",
    "data": {"reply": {}, "objname": "2026abc"},
    "id_code": 200,
    "circularId": 1,
}
"""An answer holding most fields some client expects, mutated by the fuzzer."""

HEADER_VALUES = st.text(max_size=30) | st.sampled_from(
    [
        "gzip",
        "deflate",
        "0",
        "-1",
        "10",
        "99999999999",
        "bytes 0-1/2",
        "bytes */5",
        "application/json",
    ]
)
HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "Content-Type",
            "Content-Encoding",
            "Content-Length",
            "Content-Range",
            "Retry-After",
            "x-rate-limit-reset",
            "Location",
        ]
    ),
    HEADER_VALUES,
    max_size=3,
)
BODIES = st.one_of(
    st.binary(max_size=64),
    JSON.map(lambda value: json.dumps(value).encode()),
    mutated(GOOD).map(lambda value: json.dumps(value).encode()),
    st.just(gzip.compress(b'{"id": 1}')),
)
STATUSES = st.sampled_from([200, 201, 204, 206, 302, 400, 401, 404, 429, 500, 503]) | st.integers(
    100, 599
)


def _answer(status: int, body: bytes, headers: dict[str, str]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        clean = {k: v.encode("ascii", "replace").decode() for k, v in headers.items()}
        return httpx.Response(status, content=body, headers=clean)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("call", CALLS, ids=[c.name for c in CALLS])
def test_any_answer_gives_a_model_or_a_service_error(call: Call, tmp_path: Path) -> None:
    @FUZZ
    @given(STATUSES, BODIES, HEADERS)
    def check(status: int, body: bytes, headers: dict[str, str]) -> None:
        transport = _answer(status, body, headers)
        with tempfile.TemporaryDirectory(dir=tmp_path) as cache:  # no cache hit from before
            outcome = measure(
                f"client {call.name}", lambda: call.make(transport, Path(cache)), (ServiceError,)
            )
        if isinstance(outcome, ServiceError) and call.creates and 200 <= status < 300:
            # A creating call whose success could not be read may have stored it (TNS's
            # "200 without a report id" is its documented "nothing stored").
            assert isinstance(outcome, UncertainOutcome | TnsNotStored), outcome
        if isinstance(outcome, ServiceUnavailable) and not call.creates:
            assert outcome.retry_after is None or outcome.retry_after >= 0

    check()
