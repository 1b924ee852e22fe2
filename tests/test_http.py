"""The one HTTP layer: every row of its error table, for every client (LCO, HERMES, TNS, GCN).

Each client call is made once against an ``httpx.MockTransport`` that gives the row's answer (a
status) or raises the row's transport error; the test checks the exception class the table
promises for that kind of call (read or creating), that the client sent exactly one request (no
retries inside clients), and that the client's secret is in no message or body.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import pytest

from followup.exceptions import ServiceError, ServiceUnavailable, UncertainOutcome
from followup.http import (
    OTHER_4XX,
    OTHER_5XX,
    STATUS_RULES,
    TRANSPORT_RULES,
    UNEXPECTED,
    ServiceClient,
    status_rule,
    transport_rule,
)
from followup.lco import ArchiveClient, PortalClient
from followup.models import Frame, Measurement
from followup.reporting.gcn import Circular, GcnCircularsClient
from followup.reporting.hermes import HermesClient, build_hermes_message
from followup.reporting.tns import TnsClient
from tests.reporting.conftest import make_at_report, make_measurement, make_target

SECRET = "s3cret-credential-0123456789"


def _points() -> list[Measurement]:
    return [make_measurement(hours=1.0, limit=21.5), make_measurement(hours=5.0, mag=19.6)]


FRAME = Frame(
    frame_id=1,
    basename="cpt1m010-fa14-20260101-0001-e91",
    filename="cpt1m010-fa14-20260101-0001-e91.fits.fz",
    url="https://s3.test/cpt1m010-fa14-20260101-0001-e91.fits.fz?X-Amz-Signature=abc",
    version_id=9,
)


@dataclass(frozen=True)
class Call:
    """One client call: which service, whether it creates something, how to make it."""

    name: str
    kind: Literal["read", "create"]
    make: Callable[[httpx.BaseTransport, Any], Any]  # (transport, tmp_path) -> result

    @property
    def creates(self) -> bool:
        return self.kind == "create"


def _portal(transport: httpx.BaseTransport) -> PortalClient:
    return PortalClient(SECRET, base_url="https://portal.test", transport=transport)


def _archive(transport: httpx.BaseTransport) -> ArchiveClient:
    return ArchiveClient(
        SECRET, base_url="https://archive.test", transport=transport, download_hosts=["s3.test"]
    )


def _hermes(transport: httpx.BaseTransport) -> HermesClient:
    return HermesClient(SECRET, base_url="https://hermes.test/", transport=transport)


def _tns(transport: httpx.BaseTransport) -> TnsClient:
    return TnsClient(
        SECRET, bot_id=1, bot_name="bot", base_url="https://tns.test/api/", transport=transport
    )


def _gcn(transport: httpx.BaseTransport) -> GcnCircularsClient:
    return GcnCircularsClient(SECRET, base_url="https://gcn.test/", transport=transport)


MESSAGE = build_hermes_message("S1", [make_target()], _points(), title="t", authors="a")
CIRCULAR = Circular(subject="GRB 260101A: LCO optical upper limits", body="A. B. report.")

CALLS = [
    Call("portal get_request_group", "read", lambda t, _: _portal(t).get_request_group(7)),
    Call("portal get_profile", "read", lambda t, _: _portal(t).get_profile()),
    Call(
        "portal submit_request_group",
        "create",
        lambda t, _: _portal(t).submit_request_group({"name": "x"}),
    ),
    Call("archive get_frame", "read", lambda t, _: _archive(t).get_frame(1)),
    Call("archive download_frame", "read", lambda t, tmp: _archive(t).download_frame(FRAME, tmp)),
    Call("HERMES validate_message", "read", lambda t, _: _hermes(t).validate_message(MESSAGE)),
    Call("HERMES submit_message", "create", lambda t, _: _hermes(t).submit_message(MESSAGE)),
    Call("TNS search", "read", lambda t, _: _tns(t).search(internal_name="C1")),
    Call(
        "TNS send_at_report",
        "create",
        lambda t, _: _tns(t).send_at_report(make_at_report(make_target(), _points())),
    ),
    Call("GCN submit_circular", "create", lambda t, _: _gcn(t).submit_circular(CIRCULAR)),
]
CALL_IDS = [call.name for call in CALLS]

# Every status with a rule of its own, and representatives of the rules for the rest.
STATUSES = sorted({*STATUS_RULES, 400, 405, 409, 413, 422, 500, 501, 502, 504, 304})
TRANSPORT_ERRORS = [
    cls
    for classes, _ in TRANSPORT_RULES
    for cls in classes
    if cls is not httpx.RequestError  # the catch-all row: represented by CloseError below
] + [httpx.CloseError]


class Counting(httpx.MockTransport):
    """A MockTransport that counts the requests it was given."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []

        def counted(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return handler(request)

        super().__init__(counted)


def _raise(error: type[Exception]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error(f"{error.__name__} with {SECRET} in it", request=request)

    return handler


def _no_secret(error: ServiceError) -> None:
    assert SECRET not in str(error)
    assert SECRET not in json.dumps(error.body, default=str)
    assert SECRET not in error.url and "Signature" not in error.url


def test_every_status_falls_in_a_row() -> None:
    assert all(status_rule(s) is STATUS_RULES[s] for s in STATUS_RULES)
    assert status_rule(418) is OTHER_4XX and status_rule(599) is OTHER_5XX
    assert status_rule(304) is UNEXPECTED and status_rule(101) is UNEXPECTED
    assert transport_rule(httpx.CloseError("x")) is TRANSPORT_RULES[-1][1]
    with pytest.raises(TypeError):
        transport_rule(ValueError("not httpx"))


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("call", CALLS, ids=CALL_IDS)
def test_status_row(call: Call, status: int, tmp_path) -> None:
    transport = Counting(
        lambda request: httpx.Response(
            status, json={"detail": f"refused for {SECRET}"}, headers={"Retry-After": "7"}
        )
    )
    expected = status_rule(status).error_class(creates=call.creates)
    with pytest.raises(ServiceError) as info:
        call.make(transport, tmp_path)
    error = info.value
    assert type(error) is expected, (call.name, status, error)
    assert error.status_code == status and str(status) in str(error)
    assert error.operation and error.operation in str(error)
    _no_secret(error)
    if isinstance(error, ServiceUnavailable):
        # TNS adds its advised second to a 429's reset.
        assert error.retry_after == (8 if call.name.startswith("TNS") and status == 429 else 7)
    if isinstance(error, UncertainOutcome):
        assert "look it up" in str(error)
    # One request, never a retry; an expired download URL is refreshed once by re-reading the frame.
    refresh = call.name == "archive download_frame" and status in (401, 403)
    assert len(transport.requests) == (2 if refresh else 1)
    assert not list(tmp_path.rglob("*.part"))


@pytest.mark.parametrize("error_class", TRANSPORT_ERRORS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("call", CALLS, ids=CALL_IDS)
def test_transport_row(call: Call, error_class: type[Exception], tmp_path) -> None:
    transport = Counting(_raise(error_class))
    expected = transport_rule(error_class("x")).error_class(creates=call.creates)
    with pytest.raises(ServiceError) as info:
        call.make(transport, tmp_path)
    error = info.value
    assert type(error) is expected, (call.name, error_class, error)
    assert error.status_code is None and error_class.__name__ in str(error)
    assert isinstance(error.__cause__, error_class)
    _no_secret(error)
    assert len(transport.requests) == 1
    assert not list(tmp_path.rglob("*.part"))


@pytest.mark.parametrize(
    "call", [c for c in CALLS if "download" not in c.name], ids=lambda c: c.name
)
def test_an_unreadable_success_is_uncertain_only_for_a_creating_call(call: Call, tmp_path) -> None:
    transport = Counting(lambda request: httpx.Response(200, text="<html>proxy page</html>"))
    with pytest.raises(ServiceError) as info:
        call.make(transport, tmp_path)
    assert type(info.value) is (UncertainOutcome if call.creates else ServiceUnavailable)
    assert len(transport.requests) == 1


def test_a_2xx_is_returned_and_the_client_is_described_without_secrets() -> None:
    transport = Counting(lambda request: httpx.Response(204))
    with ServiceClient(
        "https://svc.test/api/", transport=transport, secrets=[SECRET], timeout=5
    ) as client:
        assert client._request("DELETE", "things/1/", operation="drop").status_code == 204
        assert client.base_url == "https://svc.test/api"
        assert SECRET not in repr(client)
    assert transport.requests[0].headers["User-Agent"].startswith("followup/")
    with pytest.raises(ValueError, match="timeout"):
        ServiceClient("https://svc.test/", timeout=0)


def test_clients_travel_to_another_process_without_their_connections() -> None:
    portal = PortalClient(SECRET, base_url="https://portal.test/api")
    copy = pickle.loads(pickle.dumps(portal))
    assert copy.base_url == portal.base_url == "https://portal.test"
    assert copy._client is not portal._client and not copy._client.is_closed


def test_clients_share_the_process_tls_context() -> None:
    """Loading the CA bundle costs ~40 ms a time: one verifying context serves every client."""
    import pickle
    import ssl

    from followup.http import client_settings, tls_context

    context = tls_context()
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert client_settings() == {"verify": context}
    first = ServiceClient("https://one.example/")
    second = pickle.loads(pickle.dumps(ServiceClient("https://two.example/")))
    for client in (first, second):
        assert client._client._transport._pool._ssl_context is context
