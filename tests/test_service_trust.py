"""Services are not trusted: what an archive, portal or TNS answers cannot move our token or files.

Each test is one finding of issue 17 (item 4), tried with the input named there: an archive ``next``
link to another host, a frame URL on any host (and one that never ends, or trickles), an absolute
or ``../`` file name, a token echoed back in an error (also URL-encoded, for a TNS key holding
``/+=``), and a pickled ArchiveClient on its way to a Dask worker.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest

from followup.exceptions import ServiceError, ServiceUnavailable
from followup.lco import ArchiveClient, PortalClient
from followup.models import Frame
from followup.reporting.tns import TnsClient

TOKEN = "tok/en+with=signs-0123456789"
ARCHIVE = "https://archive.test"
DATA = b"SIMPLE  =                    T" + b" " * 2850


class Recorder(httpx.MockTransport):
    """A MockTransport that keeps every request it was given."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []

        def recorded(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return handler(request)

        super().__init__(recorded)

    def hosts(self) -> set[str]:
        return {r.url.host for r in self.requests}


def frame(url: str, *, filename: str = "cpt1m010-fa14-20250101-0001-e91.fits.fz", **kw) -> Frame:
    fields = dict(
        frame_id=1,
        basename="cpt1m010-fa14-20250101-0001-e91",
        filename=filename,
        url=url,
        version_id=7,
        md5=hashlib.md5(DATA).hexdigest(),
    )
    fields.update(kw)
    return Frame(**fields)


def leaks(error: BaseException, secret: str = TOKEN) -> list[str]:
    """Where ``secret`` (as it is, or URL-encoded) shows in an error: str, repr, body, traceback,
    pickle."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret), quote(secret)}
    places = {
        "str": str(error),
        "repr": repr(error),
        "body": json.dumps(getattr(error, "body", None), default=str),
        "traceback": "".join(traceback.format_exception(error)),
        "pickle": pickle.dumps(error).decode("latin-1"),
    }
    return [f"{where}:{form}" for where, text in places.items() for form in forms if form in text]


# ------------------------------------------------------------------------------ pagination


def test_a_next_page_on_another_host_is_not_followed() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"count": 2, "next": "https://evil.test/frames/?offset=1", "results": []}
        )

    transport = Recorder(answer)
    archive = ArchiveClient(TOKEN, base_url=ARCHIVE, transport=transport)
    with pytest.raises(ServiceError, match="another origin"):
        archive.list_frames(70)
    assert transport.hosts() == {"archive.test"}
    assert all(
        TOKEN not in str(r.headers) for r in transport.requests if r.url.host != "archive.test"
    )


def test_a_next_page_on_the_same_host_is_followed_and_http_is_upgraded() -> None:
    pages = iter(
        [
            {"count": 2, "next": "http://archive.test/frames/?offset=1", "results": []},
            {"count": 2, "next": None, "results": []},
        ]
    )
    transport = Recorder(lambda request: httpx.Response(200, json=next(pages)))
    ArchiveClient(TOKEN, base_url=ARCHIVE, transport=transport).list_frames(70)
    assert [r.url.scheme for r in transport.requests] == ["https", "https"]


# ------------------------------------------------------------------------------ downloads


def test_a_frame_url_on_a_host_not_allowed_is_not_fetched(tmp_path: Path) -> None:
    transport = Recorder(lambda request: httpx.Response(200, content=DATA))
    archive = ArchiveClient(TOKEN, base_url=ARCHIVE, transport=transport)
    with pytest.raises(ServiceError, match="not an allowed download host"):
        archive.download_frame(frame("https://evil.test/x.fits.fz?X-Amz-Signature=s"), tmp_path)
    assert transport.requests == []
    allowed = ArchiveClient(
        TOKEN, base_url=ARCHIVE, transport=transport, download_hosts=["s3.test"]
    )
    path = allowed.download_frame(frame("https://s3.test/x.fits.fz?X-Amz-Signature=s"), tmp_path)
    assert path.read_bytes() == DATA
    # The archive's own host is always allowed; the S3 URL never carries the token.
    own = frame(f"{ARCHIVE}/download/1?X-Amz-Signature=s", version_id=8)
    assert ArchiveClient(TOKEN, base_url=ARCHIVE, transport=transport).download_frame(own, tmp_path)
    assert all("authorization" not in r.headers for r in transport.requests)


def test_a_redirect_to_a_host_not_allowed_is_not_followed(tmp_path: Path) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "s3.test":
            return httpx.Response(302, headers={"Location": "https://evil.test/x"})
        return httpx.Response(200, content=DATA)

    transport = Recorder(answer)
    archive = ArchiveClient(
        TOKEN, base_url=ARCHIVE, transport=transport, download_hosts=["s3.test"]
    )
    with pytest.raises(ServiceError, match="not an allowed download host"):
        archive.download_frame(frame("https://s3.test/x?X-Amz-Signature=s"), tmp_path)
    assert transport.hosts() == {"s3.test"}


def test_a_download_larger_than_the_cap_is_refused(tmp_path: Path) -> None:
    endless = Recorder(
        lambda request: httpx.Response(200, content=_chunks(b"\0" * 65536, 64))  # 4 MiB
    )
    archive = ArchiveClient(TOKEN, base_url=ARCHIVE, transport=endless, max_download_bytes=1 << 20)
    with pytest.raises(ServiceError, match="more than 1048576 bytes"):
        archive.download_frame(frame(f"{ARCHIVE}/download/1", md5=None), tmp_path)
    announced = Recorder(
        lambda request: httpx.Response(200, headers={"Content-Length": str(1 << 30)}, content=b"")
    )
    archive = ArchiveClient(
        TOKEN, base_url=ARCHIVE, transport=announced, max_download_bytes=1 << 20
    )
    with pytest.raises(ServiceError, match="announced"):
        archive.download_frame(frame(f"{ARCHIVE}/download/1", md5=None), tmp_path)
    assert not list(tmp_path.rglob("*.part")) and not list(tmp_path.rglob("*.fz"))


def test_a_download_that_trickles_past_its_deadline_is_stopped(tmp_path: Path) -> None:
    def slow() -> Iterator[bytes]:
        for _ in range(100):
            time.sleep(0.05)
            yield b"\0" * 16

    transport = Recorder(lambda request: httpx.Response(200, content=slow()))
    archive = ArchiveClient(
        TOKEN, base_url=ARCHIVE, transport=transport, download_deadline_s=0.5, max_resumes=5
    )
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="deadline"):
        archive.download_frame(frame(f"{ARCHIVE}/download/1", md5=None), tmp_path)
    assert time.monotonic() - started < 2.0
    assert len(transport.requests) == 1  # not resumed after the deadline


@pytest.mark.parametrize(
    ("filename", "basename"),
    [
        ("/tmp/evil.fits.fz", "cpt1m010-fa14-20250101-0001-e91"),
        ("../../../evil.fits.fz", "cpt1m010-fa14-20250101-0001-e91"),
        ("ok.fits.fz", "../../escape"),
        ("..\\..\\evil.fits.fz", "/abs/base"),
    ],
)
def test_archive_file_names_are_reduced_to_a_base_name_in_the_cache(
    tmp_path: Path, filename: str, basename: str
) -> None:
    cache = tmp_path / "cache"
    transport = Recorder(lambda request: httpx.Response(200, content=DATA))
    archive = ArchiveClient(TOKEN, base_url=ARCHIVE, transport=transport)
    hostile = frame(f"{ARCHIVE}/download/1", filename=filename, basename=basename)
    path = archive.download_frame(hostile, cache)
    assert path.resolve().is_relative_to(cache.resolve())
    assert path.read_bytes() == DATA
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [path]


# ------------------------------------------------------------------------------ secrets


def echo(status: int) -> Callable[[httpx.Request], httpx.Response]:
    """A service that echoes the request (its headers and form body) in its error."""

    def answer(request: httpx.Request) -> httpx.Response:
        text = f"{dict(request.headers)} {request.content.decode('latin-1')}"
        return httpx.Response(status, json={"detail": text, "echo": [text]})

    return answer


@pytest.mark.parametrize("status", [400, 401, 500, 503])
def test_a_token_echoed_back_is_in_no_error_form(status: int) -> None:
    portal = PortalClient(TOKEN, base_url="https://portal.test", transport=Recorder(echo(status)))
    with pytest.raises(ServiceError) as info:
        portal.submit_request_group({"name": "x"})
    assert leaks(info.value) == []


@pytest.mark.parametrize("status", [400, 500])
def test_a_tns_key_holding_slash_plus_equals_is_scrubbed_url_encoded_too(status: int) -> None:
    tns = TnsClient(
        TOKEN,
        bot_id=1,
        bot_name="bot",
        base_url="https://tns.test/api/",
        transport=Recorder(echo(status)),
    )
    with pytest.raises(ServiceError) as info:
        tns.search(internal_name="C1")
    assert quote_plus(TOKEN) != TOKEN  # the form body carries it encoded
    assert leaks(info.value) == []


def test_a_transport_error_quoting_the_token_leaves_it_in_no_traceback() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach it with {TOKEN}", request=request)

    portal = PortalClient(TOKEN, base_url="https://portal.test", transport=Recorder(fail))
    with pytest.raises(ServiceError) as info:
        portal.get_profile()
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert info.value.__context__ is None
    assert leaks(info.value) == []
    # Dask (distributed) installs tblib's pickling of exceptions with their causes and contexts.
    from tblib import pickling_support

    pickling_support.install(info.value)
    assert leaks(info.value) == []


class FakeBlockToken:
    """Stands for the Block look-up a Dask worker makes (picklable; holds a name, no secret)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self) -> str:
        return {"lco-default": TOKEN}[self.name]


def test_a_pickled_archive_client_holds_no_token_and_rebuilds_it_from_its_source() -> None:
    plain = ArchiveClient(TOKEN, base_url=ARCHIVE)
    assert TOKEN.encode() not in pickle.dumps(plain)
    import cloudpickle

    sourced = ArchiveClient(
        TOKEN, base_url=ARCHIVE, credential_source=FakeBlockToken("lco-default")
    )
    shipped = cloudpickle.dumps(sourced)  # what a DaskTaskRunner sends to a worker
    assert TOKEN.encode() not in shipped and quote_plus(TOKEN).encode() not in shipped
    worker_copy = pickle.loads(shipped)
    transport = Recorder(
        lambda request: httpx.Response(200, json={"count": 0, "next": None, "results": []})
    )
    worker_copy._client._transport = transport
    worker_copy.list_frames(70)
    assert transport.requests[0].headers["authorization"] == f"Token {TOKEN}"
    # Its errors are scrubbed of the rebuilt token too.
    assert worker_copy._scrub(f"x {TOKEN} y") == "x *** y"


class CountingToken(FakeBlockToken):
    calls = 0

    def __call__(self) -> str:
        type(self).calls += 1
        return super().__call__()


def test_an_unpickled_client_asks_its_source_at_the_first_request_not_while_unpickling() -> None:
    """A Dask worker unpickles on its event loop, where a Block look-up cannot run."""
    CountingToken.calls = 0
    sourced = ArchiveClient(TOKEN, base_url=ARCHIVE, credential_source=CountingToken("lco-default"))
    worker_copy = pickle.loads(pickle.dumps(sourced))
    assert CountingToken.calls == 0
    request = worker_copy._client.build_request("GET", "/frames/")
    assert next(worker_copy._client.auth.auth_flow(request)).headers["Authorization"] == (
        f"Token {TOKEN}"
    )
    next(worker_copy._client.auth.auth_flow(request))
    assert CountingToken.calls == 1


def _chunks(block: bytes, count: int) -> Iterator[bytes]:
    for _ in range(count):
        yield block


def test_what_process_frames_sends_to_dask_holds_no_secret() -> None:
    import cloudpickle
    from pydantic import SecretStr

    from blocks import LcoCredentials
    from flows.runtime import LcoToken

    lco = LcoCredentials(api_token=SecretStr(TOKEN), proposal_id="LCO2026A-001")
    # As flows/frames.py builds it: the archive client mapped over the frames of a request.
    archive = lco.get_archive_client(credential_source=LcoToken("default"))
    shipped = cloudpickle.dumps((archive, frame(f"{ARCHIVE}/download/1")))
    assert TOKEN.encode() not in shipped and quote_plus(TOKEN).encode() not in shipped
    assert pickle.loads(cloudpickle.dumps(LcoToken("default"))) == LcoToken("default")
