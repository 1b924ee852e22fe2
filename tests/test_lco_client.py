"""PortalClient and ArchiveClient against respx: every call and every failure path."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from followup.exceptions import (
    AuthenticationError,
    NotFound,
    RequestRejected,
    ServiceUnavailable,
    UncertainOutcome,
)
from followup.lco import (
    ArchiveClient,
    ChecksumMismatch,
    PortalClient,
    flatten_errors,
    frame_from_record,
)
from followup.models import LcoState

PORTAL = "https://portal.test"
ARCHIVE = "https://archive.test"
TOKEN = "secret-token-xyz"


def group_body(
    group_id: int = 7, name: str = "S1_G1_e0_abc", state: str = "PENDING", request_ids=(70,)
) -> dict[str, Any]:
    return {
        "id": group_id,
        "name": name,
        "proposal": "P1",
        "state": state,
        "observation_type": "NORMAL",
        "operator": "SINGLE",
        "ipp_value": 1.05,
        "submitter": "me",
        "created": "2025-01-01T00:00:00Z",
        "modified": "2025-01-01T00:10:00Z",
        "requests": [
            {
                "id": rid,
                "state": state,
                "duration": 400,
                "location": {"telescope_class": "1m0"},
                "windows": [{"start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z"}],
                "configurations": [
                    {
                        "id": rid * 10,
                        "type": "EXPOSE",
                        "instrument_type": "1M0-SCICAM-SINISTRO",
                        "target": {"name": "G1", "type": "ICRS", "ra": 1.0, "dec": 2.0},
                        "constraints": {"max_airmass": 1.6, "min_lunar_distance": 30},
                        "instrument_configs": [
                            {
                                "exposure_time": 120,
                                "exposure_count": 1,
                                "mode": "full_frame",
                                "optical_elements": {"filter": "rp"},
                            }
                        ],
                        "acquisition_config": {"mode": "OFF"},
                        "guiding_config": {"mode": "ON", "optional": True},
                    }
                ],
                "modified": "2025-01-01T00:10:00Z",
            }
            for rid in request_ids
        ],
    }


@pytest.fixture
def portal() -> PortalClient:
    client = PortalClient(TOKEN, base_url=PORTAL + "/api/")
    yield client
    client.close()


@pytest.fixture
def archive() -> ArchiveClient:
    client = ArchiveClient(TOKEN, base_url=ARCHIVE, download_hosts=["s3.test"])
    yield client
    client.close()


# ------------------------------------------------------------------------------ basics


def test_headers_and_secret_handling(portal: PortalClient) -> None:
    with respx.mock(base_url=PORTAL) as mock:
        route = mock.get("/api/profile/").respond(
            200,
            json={
                "username": "me",
                "proposals": [{"id": "P1", "title": "t", "current": True}],
                "tokens": {"api_token": TOKEN},
            },
        )
        profile = portal.get_profile()
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Token {TOKEN}"
    assert request.headers["User-Agent"].startswith("followup/")
    assert profile.username == "me" and profile.proposals[0].id == "P1"
    # The profile carries the user's tokens: they must not be kept in the model.
    assert TOKEN not in repr(profile) and TOKEN not in profile.model_dump_json()
    assert TOKEN not in repr(portal)
    assert TOKEN not in repr(portal._client.auth)


def test_validate_valid_and_invalid(portal: PortalClient) -> None:
    with respx.mock(base_url=PORTAL) as mock:
        mock.post("/api/requestgroups/validate/").mock(
            side_effect=[
                httpx.Response(
                    200, json={"request_durations": {"duration": 436, "requests": []}, "errors": {}}
                ),
                httpx.Response(
                    200,
                    json={
                        "request_durations": {},
                        "errors": {
                            "requests": [
                                {"windows": [{"end": ["Window end time must be in the future"]}]}
                            ]
                        },
                    },
                ),
            ]
        )
        ok = portal.validate_request_group({"name": "x"})
        bad = portal.validate_request_group({"name": "x"})
    assert ok.is_valid and ok.duration_s == 436
    assert not bad.is_valid and bad.duration_s is None
    assert bad.messages == ["requests[0].windows[0].end: Window end time must be in the future"]


def test_submit_returns_group(portal: PortalClient) -> None:
    with respx.mock(base_url=PORTAL) as mock:
        route = mock.post("/api/requestgroups/").respond(201, json=group_body())
        group = portal.submit_request_group({"name": "S1_G1_e0_abc"})
    assert json.loads(route.calls.last.request.content) == {"name": "S1_G1_e0_abc"}
    assert group.id == 7 and group.request_ids == [70] and group.state is LcoState.PENDING
    assert group.requests[0].configurations[0].instrument_configs[0].optical_elements == {
        "filter": "rp"
    }
    assert group.created == datetime(2025, 1, 1, tzinfo=UTC)


def test_nested_400_is_flattened_and_kept(portal: PortalClient) -> None:
    body = {
        "requests": [
            {},
            {
                "configurations": [
                    {
                        "instrument_configs": [
                            {},
                            {
                                "exposure_count": [
                                    "Ensure this value is greater than or equal to 1."
                                ]
                            },
                        ],
                        "non_field_errors": ["optical element xx of type filter is not available"],
                    }
                ]
            },
        ],
        "non_field_errors": ["requestgroups ipp_value must be >= 0.5, <= 2.0"],
    }
    with respx.mock(base_url=PORTAL) as mock:
        mock.post("/api/requestgroups/").respond(400, json=body)
        with pytest.raises(RequestRejected) as info:
            portal.submit_request_group({})
    error = info.value
    assert error.status_code == 400 and error.body == body
    text = str(error)
    assert (
        "requests[1].configurations[0].instrument_configs[1].exposure_count: Ensure this value is greater than or equal to 1."
        in text
    )
    assert (
        "requests[1].configurations[0]: optical element xx of type filter is not available" in text
    )
    assert "requestgroups ipp_value must be >= 0.5, <= 2.0" in text
    assert error.operation == "submit_request_group"


def test_flatten_errors_shapes() -> None:
    assert flatten_errors({"detail": "Invalid token."}) == ["Invalid token."]
    assert flatten_errors({"errors": ["Cannot transition"]}) == ["Cannot transition"]
    assert flatten_errors(
        {"name": ["This field is required."], "proposal": ["Please provide a proposal."]}
    ) == [
        "name: This field is required.",
        "proposal: Please provide a proposal.",
    ]
    assert flatten_errors({"requests": [{}, {}]}) == []


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors(portal: PortalClient, status: int) -> None:
    with respx.mock(base_url=PORTAL) as mock:
        mock.post("/api/requestgroups/").respond(status, json={"detail": "Invalid token."})
        with pytest.raises(AuthenticationError, match="Invalid token"):
            portal.submit_request_group({})


def test_not_found(portal: PortalClient) -> None:
    with respx.mock(base_url=PORTAL) as mock:
        mock.get("/api/requestgroups/99/").respond(
            404, json={"detail": "No RequestGroup matches the given query."}
        )
        mock.get("/api/requests/98/").respond(404, json={"detail": "Not found."})
        with pytest.raises(NotFound, match="No RequestGroup matches"):
            portal.get_request_group(99)
        with pytest.raises(NotFound):
            portal.get_request(98)


# ------------------------------------------------------------------------------ no retries inside


def test_a_failed_read_is_unavailable_and_not_retried(portal: PortalClient) -> None:
    with respx.mock(base_url=PORTAL) as mock:
        route = mock.get("/api/requestgroups/7/").mock(
            side_effect=[httpx.Response(502, text="<h1>bad gateway</h1>")]
        )
        with pytest.raises(ServiceUnavailable) as info:
            portal.get_request_group(7)
    assert route.call_count == 1 and info.value.status_code == 502
    assert "bad gateway" in str(info.value)


def test_429_carries_retry_after_for_the_task(portal: PortalClient) -> None:
    with respx.mock(base_url=PORTAL) as mock:
        route = mock.post("/api/requestgroups/").respond(
            429,
            headers={"Retry-After": "7"},
            json={"detail": "Request was throttled. Expected available in 7 seconds."},
        )
        with pytest.raises(ServiceUnavailable) as info:
            portal.submit_request_group({"name": "x"})
    assert route.call_count == 1 and info.value.retry_after == 7
    assert "throttled" in str(info.value)


@pytest.mark.parametrize(
    "effect",
    [
        httpx.Response(500, text="<h1>Server Error (500)</h1>"),
        httpx.Response(504),
        httpx.ReadTimeout("no answer"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
    ids=["500", "504", "read-timeout", "dropped"],
)
def test_submit_after_sending_is_uncertain_and_not_retried(
    portal: PortalClient, effect: Any
) -> None:
    with respx.mock(base_url=PORTAL) as mock:
        route = mock.post("/api/requestgroups/").mock(side_effect=[effect])
        with pytest.raises(UncertainOutcome) as info:
            portal.submit_request_group({"name": "x"})
    assert route.call_count == 1
    # Not a kind of ServiceUnavailable: no retry policy resends it by accident.
    assert not isinstance(info.value, ServiceUnavailable)
    assert "look it up" in str(info.value)


@pytest.mark.parametrize(
    "effect",
    [
        httpx.Response(503, headers={"Retry-After": "3"}),
        httpx.ConnectError("refused"),
        httpx.WriteError("broken pipe"),
    ],
    ids=["503", "connect", "write"],
)
def test_a_submit_that_surely_did_not_arrive_is_unavailable(
    portal: PortalClient, effect: Any
) -> None:
    with respx.mock(base_url=PORTAL) as mock:
        route = mock.post("/api/requestgroups/").mock(side_effect=[effect])
        with pytest.raises(ServiceUnavailable):
            portal.submit_request_group({"name": "x"})
    assert route.call_count == 1


# ------------------------------------------------------------------------------ listing, lookup, cancel


def paged(results: list[dict[str, Any]], size: int, base: str) -> list[httpx.Response]:
    pages = []
    for start in range(0, len(results), size):
        nxt = f"{base}?limit={size}&offset={start + size}" if start + size < len(results) else None
        pages.append(
            httpx.Response(
                200,
                json={
                    "count": len(results),
                    "next": nxt,
                    "previous": None,
                    "results": results[start : start + size],
                },
            )
        )
    return pages


def test_list_follows_every_page_and_sends_filters(portal: PortalClient) -> None:
    groups = [
        group_body(group_id=i, name=f"S1_T{i}_e0_x", request_ids=(100 + i,)) for i in range(7)
    ]
    with respx.mock(base_url=PORTAL) as mock:
        route = mock.get(url__startswith=PORTAL + "/api/requestgroups/").mock(
            side_effect=paged(groups, 3, PORTAL + "/api/requestgroups/")
        )
        found = portal.list_request_groups(
            name="S1_",
            state=[LcoState.PENDING, "COMPLETED"],
            created_after=datetime(2025, 1, 1, 12, tzinfo=UTC),
            page_size=3,
        )
    assert [g.id for g in found] == list(range(7)) and route.call_count == 3
    first = route.calls[0].request.url
    assert first.params.get_list("state") == ["PENDING", "COMPLETED"]
    assert first.params["name"] == "S1_" and first.params["limit"] == "3"
    assert first.params["created_after"] == "2025-01-01T12:00:00Z"


def test_find_by_name_keeps_exact_matches(portal: PortalClient) -> None:
    with respx.mock(base_url=PORTAL) as mock:
        route = mock.get("/api/requestgroups/").mock(
            side_effect=[
                httpx.Response(
                    200,
                    json={
                        "count": 2,
                        "next": None,
                        "previous": None,
                        "results": [group_body(9, "S1_G1_e0_abcX"), group_body(8, "S1_G1_e0_abc")],
                    },
                ),
                httpx.Response(
                    200, json={"count": 0, "next": None, "previous": None, "results": []}
                ),
            ]
        )
        group = portal.find_request_group_by_name("S1_G1_e0_abc")
        missing = portal.find_request_group_by_name("nothing")
    assert group is not None and group.id == 8
    assert missing is None
    assert route.calls[0].request.url.params["name"] == "S1_G1_e0_abc"


def test_cancel_pending_and_already_finished(portal: PortalClient) -> None:
    with respx.mock(base_url=PORTAL) as mock:
        mock.post("/api/requestgroups/7/cancel/").respond(200, json=group_body(7, state="CANCELED"))
        mock.post("/api/requestgroups/8/cancel/").respond(
            400,
            json={"errors": ["Cannot transition from request state COMPLETED to CANCELED for 8"]},
        )
        mock.get("/api/requestgroups/8/").respond(200, json=group_body(8, state="COMPLETED"))
        canceled = portal.cancel_request_group(7)
        finished = portal.cancel_request_group(8)
    assert (
        canceled.canceled and canceled.message is None and canceled.group.state is LcoState.CANCELED
    )
    assert not finished.canceled and finished.group.state is LcoState.COMPLETED
    assert finished.message == "Cannot transition from request state COMPLETED to CANCELED for 8"


def test_cancel_unknown_group_raises(portal: PortalClient) -> None:
    with respx.mock(base_url=PORTAL) as mock:
        mock.post("/api/requestgroups/5/cancel/").respond(404, json={"detail": "Not found."})
        with pytest.raises(NotFound):
            portal.cancel_request_group(5)


def test_batched_states_use_one_paged_query(portal: PortalClient) -> None:
    groups = [
        group_body(
            i, f"S1_T{i}_e0_x", state="COMPLETED" if i % 2 else "PENDING", request_ids=(100 + i,)
        )
        for i in range(40)
    ]
    with respx.mock(base_url=PORTAL) as mock:
        route = mock.get("/api/requestgroups/").mock(
            side_effect=paged(groups, 1000, PORTAL + "/api/requestgroups/")
        )
        states = portal.get_request_states(
            [101, 102, 999], created_after=datetime(2025, 1, 1, tzinfo=UTC)
        )
    assert route.call_count == 1
    assert set(states) == {101, 102}
    assert states[101].state is LcoState.COMPLETED and states[102].state is LcoState.PENDING
    assert states[101].group_id == 1 and states[101].group_name == "S1_T1_e0_x"
    with pytest.raises(ValueError, match="created_after or name"):
        portal.get_request_states([1])


def test_instruments_request_and_observations(portal: PortalClient) -> None:
    instruments = {
        "1M0-SCICAM-SINISTRO": {
            "type": "IMAGE",
            "class": "1m0",
            "name": "1.0 meter Sinistro",
            "optical_elements": {
                "filters": [
                    {"name": "SDSS-rp", "code": "rp", "schedulable": True, "default": True},
                    {"name": "CN", "code": "CN", "schedulable": False},
                ]
            },
            "modes": {},
        }
    }
    with respx.mock(base_url=PORTAL) as mock:
        mock.get("/api/instruments/").respond(200, json=instruments)
        mock.get("/api/requests/70/").respond(200, json=group_body()["requests"][0])
        obs = mock.get("/api/requests/70/observations/").respond(
            200,
            json=[
                {
                    "id": 1,
                    "state": "PENDING",
                    "start": "2025-01-01T01:00:00Z",
                    "end": "2025-01-01T01:10:00Z",
                    "site": "cpt",
                }
            ],
        )
        found = portal.get_instruments()
        request = portal.get_request(70)
        blocks = portal.list_request_observations(70, exclude_canceled=True)
    sinistro = found["1M0-SCICAM-SINISTRO"]
    assert sinistro.telescope_class == "1m0" and sinistro.schedulable_elements() == ["rp"]
    assert request.id == 70 and request.windows[0].end == datetime(2025, 1, 2, tzinfo=UTC)
    assert (
        blocks[0].state == "PENDING"
        and obs.calls.last.request.url.params["exclude_canceled"] == "true"
    )
    assert portal.request_url(70) == "https://portal.test/requests/70"


# ------------------------------------------------------------------------------ archive


def frame_record(
    frame_id: int,
    content: bytes,
    *,
    level: int = 91,
    request_id: int | None = 70,
    kind: str = "EXPOSE",
    day: str = "2025-01-01",
    filt: str = "rp",
) -> dict[str, Any]:
    basename = f"cpt1m010-fa14-20250101-{frame_id:04d}-{'e' if kind == 'EXPOSE' else kind[0].lower()}{level:02d}"
    url = f"https://s3.test/{basename}.fits.fz?X-Amz-Expires=172800&X-Amz-Signature=abc{frame_id}"
    return {
        "id": frame_id,
        "basename": basename,
        "filename": f"{basename}.fits.fz",
        "url": url,
        "version_set": [
            {
                "id": 900 + frame_id,
                "created": "2025-01-01T00:00:00Z",
                "key": "k",
                "md5": hashlib.md5(content).hexdigest(),
                "extension": ".fits.fz",
                "url": url,
            }
        ],
        "related_frames": [],
        "observation_date": "2025-01-01T05:00:00Z",
        "observation_day": day,
        "reduction_level": level,
        "request_id": request_id,
        "primary_optical_element": filt,
        "exposure_time": 120.0,
        "configuration_type": kind,
        "site_id": "cpt",
        "telescope_id": "1m0a",
        "instrument_id": "fa14",
        "REQNUM": request_id,
    }


def test_frame_from_record_picks_latest_version() -> None:
    record = frame_record(5, b"abc")
    record["version_set"].append(
        {
            "id": 1,
            "created": "2024-01-01T00:00:00Z",
            "md5": "old",
            "extension": ".fits.fz",
            "url": "x",
        }
    )
    frame = frame_from_record(record)
    assert frame.version_id == 905 and frame.md5 == hashlib.md5(b"abc").hexdigest()
    assert frame.filter == "rp" and frame.reduction_level == 91 and frame.request_id == 70
    assert frame.observation_date == datetime(2025, 1, 1, 5, tzinfo=UTC)


def test_list_frames_follows_next(archive: ArchiveClient) -> None:
    records = [frame_record(i, b"x") for i in range(5)]
    with respx.mock(base_url=ARCHIVE) as mock:
        route = mock.get("/frames/").mock(side_effect=paged(records, 2, ARCHIVE + "/frames/"))
        frames = archive.list_frames(70)
    assert [f.frame_id for f in frames] == list(range(5)) and route.call_count == 3
    params = route.calls[0].request.url.params
    assert (
        params["request_id"] == "70"
        and params["reduction_level"] == "91"
        and params["limit"] == "1000"
    )


def test_frames_for_request_prefers_reduced(archive: ArchiveClient) -> None:
    with respx.mock(base_url=ARCHIVE) as mock:
        route = mock.get("/frames/").respond(
            200,
            json={"count": 1, "next": None, "previous": None, "results": [frame_record(1, b"x")]},
        )
        frames = archive.frames_for_request(70)
    assert [f.frame_id for f in frames] == [1] and route.call_count == 1


def test_frames_for_request_falls_back_to_raw_and_calibrations(archive: ArchiveClient) -> None:
    raw = [frame_record(1, b"x", level=0), frame_record(2, b"y", level=0)]
    calibrations = [
        frame_record(10, b"b", level=0, request_id=None, kind="BIAS"),
        frame_record(11, b"d", level=0, request_id=None, kind="DARK"),
        frame_record(12, b"f", level=0, request_id=None, kind="SKYFLAT"),
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        if params.get("reduction_level") == "91":
            results: list[dict[str, Any]] = []
        elif "request_id" in params:
            results = raw
        else:
            assert params.get_list("include_configuration_type") == ["BIAS", "DARK", "SKYFLAT"]
            assert params["instrument_id"] == "fa14" and params["dayobs"] == "2025-01-01"
            results = calibrations
        return httpx.Response(
            200, json={"count": len(results), "next": None, "previous": None, "results": results}
        )

    with respx.mock(base_url=ARCHIVE) as mock:
        route = mock.get("/frames/").mock(side_effect=answer)
        frames = archive.frames_for_request(70)
    assert [f.frame_id for f in frames] == [1, 2, 10, 11, 12]
    assert route.call_count == 3
    assert [f.configuration_type for f in frames[2:]] == ["BIAS", "DARK", "SKYFLAT"]


def test_get_frame_and_headers(archive: ArchiveClient) -> None:
    with respx.mock(base_url=ARCHIVE) as mock:
        mock.get("/frames/3/").respond(200, json=frame_record(3, b"z"))
        mock.get("/frames/3/headers/").respond(200, json={"data": {"OBJECT": "G1", "RLEVEL": 91}})
        mock.get("/frames/4/").respond(404, json={"detail": "No Frame matches the given query."})
        assert archive.get_frame(3).frame_id == 3
        assert archive.get_frame_headers(3) == {"OBJECT": "G1", "RLEVEL": 91}
        with pytest.raises(NotFound):
            archive.get_frame(4)


CONTENT = bytes(range(256)) * 20


def test_download_and_cache_hit(archive: ArchiveClient, tmp_path: Path) -> None:
    frame = frame_from_record(frame_record(1, CONTENT))
    with respx.mock() as mock:
        route = mock.get(url__startswith="https://s3.test/").respond(
            200, content=CONTENT, headers={"Content-Length": str(len(CONTENT))}
        )
        path = archive.download_frame(frame, tmp_path)
        again = archive.download_frame(frame, tmp_path)
    assert path == again and path.read_bytes() == CONTENT and route.call_count == 1
    assert path == tmp_path / frame.basename / "v901" / frame.filename
    # The signed URL is used as is, and without the API token.
    assert "Authorization" not in route.calls.last.request.headers
    assert not list(tmp_path.rglob("*.part"))


class BrokenStream(httpx.SyncByteStream):
    def __init__(self, data: bytes, cut: int) -> None:
        self.data, self.cut = data, cut

    def __iter__(self):
        yield self.data[: self.cut]
        raise httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body"
        )


def test_download_resumes_after_a_broken_transfer(archive: ArchiveClient, tmp_path: Path) -> None:
    frame = frame_from_record(frame_record(1, CONTENT))
    cut = 1000

    def answer(request: httpx.Request) -> httpx.Response:
        if "range" not in request.headers:
            return httpx.Response(
                200,
                headers={"Content-Length": str(len(CONTENT))},
                stream=BrokenStream(CONTENT, cut),
            )
        assert request.headers["range"] == f"bytes={cut}-"
        return httpx.Response(
            206,
            content=CONTENT[cut:],
            headers={"Content-Range": f"bytes {cut}-{len(CONTENT) - 1}/{len(CONTENT)}"},
        )

    with respx.mock() as mock:
        route = mock.get(url__startswith="https://s3.test/").mock(side_effect=answer)
        path = archive.download_frame(frame, tmp_path)
    assert path.read_bytes() == CONTENT and route.call_count == 2
    assert not list(tmp_path.rglob("*.part"))


def test_resumes_are_bounded_and_need_progress(tmp_path: Path) -> None:
    frame = frame_from_record(frame_record(1, CONTENT))
    archive = ArchiveClient(TOKEN, base_url=ARCHIVE, max_resumes=2, download_hosts=["s3.test"])

    def always_cut(request: httpx.Request) -> httpx.Response:
        start = int(request.headers.get("range", "bytes=0-")[6:-1])
        return httpx.Response(
            206 if start else 200,
            headers={
                "Content-Length": str(len(CONTENT) - start),
                **(
                    {"Content-Range": f"bytes {start}-{len(CONTENT) - 1}/{len(CONTENT)}"}
                    if start
                    else {}
                ),
            },
            stream=BrokenStream(CONTENT[start:], 100),
        )

    with respx.mock() as mock:
        route = mock.get(url__startswith="https://s3.test/").mock(side_effect=always_cut)
        with pytest.raises(ServiceUnavailable):
            archive.download_frame(frame, tmp_path)
    assert route.call_count == 3  # the first transfer and two resumes, each with progress
    # A resume that brings nothing new (here a 503) is raised at once, for the task to retry.
    with respx.mock() as mock:
        route = mock.get(url__startswith="https://s3.test/").mock(
            side_effect=[
                httpx.Response(
                    200,
                    headers={"Content-Length": str(len(CONTENT))},
                    stream=BrokenStream(CONTENT, 100),
                ),
                httpx.Response(503, headers={"Retry-After": "4"}),
            ]
        )
        with pytest.raises(ServiceUnavailable) as info:
            archive.download_frame(frame, tmp_path)
    assert route.call_count == 2 and info.value.retry_after == 4
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_download_resumes_a_short_body(archive: ArchiveClient, tmp_path: Path) -> None:
    frame = frame_from_record(frame_record(1, CONTENT))
    with respx.mock() as mock:
        route = mock.get(url__startswith="https://s3.test/").mock(
            side_effect=[
                httpx.Response(
                    200, headers={"Content-Length": str(len(CONTENT))}, content=CONTENT[:300]
                ),
                httpx.Response(
                    206,
                    content=CONTENT[300:],
                    headers={"Content-Range": f"bytes 300-{len(CONTENT) - 1}/{len(CONTENT)}"},
                ),
            ]
        )
        path = archive.download_frame(frame, tmp_path)
    assert path.read_bytes() == CONTENT and route.call_count == 2


def test_md5_mismatch_raises_and_leaves_nothing(archive: ArchiveClient, tmp_path: Path) -> None:
    frame = frame_from_record(frame_record(1, CONTENT))
    corrupted = b"\xff" + CONTENT[1:]
    with respx.mock() as mock:
        mock.get(url__startswith="https://s3.test/").respond(200, content=corrupted)
        with pytest.raises(ChecksumMismatch, match="md5"):
            archive.download_frame(frame, tmp_path)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_expired_url_is_refreshed_once(archive: ArchiveClient, tmp_path: Path) -> None:
    record = frame_record(1, CONTENT)
    frame = frame_from_record(record)
    fresh = dict(record, url="https://s3.test/fresh.fits.fz?X-Amz-Signature=new")
    with respx.mock() as mock:
        mock.get(url__startswith="https://s3.test/cpt").respond(
            403,
            text="<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
        )
        mock.get(ARCHIVE + "/frames/1/").respond(200, json=fresh)
        good = mock.get(url__startswith="https://s3.test/fresh").respond(200, content=CONTENT)
        path = archive.download_frame(frame, tmp_path)
    assert path.read_bytes() == CONTENT and good.call_count == 1


def test_download_errors_do_not_leak_the_signature(archive: ArchiveClient, tmp_path: Path) -> None:
    frame = frame_from_record(frame_record(1, CONTENT))
    with respx.mock() as mock:
        mock.get(url__startswith="https://s3.test/").respond(
            404, text="<Error><Code>NoSuchKey</Code></Error>"
        )
        with pytest.raises(NotFound) as info:
            archive.download_frame(frame, tmp_path)
    assert "Signature" not in str(info.value) and "abc1" not in info.value.url
