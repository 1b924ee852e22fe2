"""The real clients against the stand-ins served by uvicorn (the production code path)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from followup.exceptions import (
    AuthenticationError,
    RequestRejected,
    ServiceUnavailable,
    UncertainOutcome,
)
from followup.lco import (
    ArchiveClient,
    PortalClient,
    RequestGroupSpec,
    build_request_group,
    group_name_prefix,
    make_group_name,
)
from followup.models import LcoState
from sandbox.lco import LcoSandboxState, ManualClock, create_archive_app, create_portal_app
from tests.lco_support import (
    TOKEN,
    TinyRenderer,
    peer_python,
    run_probe,
    serve,
    strategy,
    target,
    window,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[LcoSandboxState, str, str]]:
    """Portal and archive on their own ports, sharing one state (as `followup sandbox` runs them)."""
    state = LcoSandboxState(
        ManualClock(),
        TinyRenderer(),
        token=TOKEN,
        completion_delay_s=600,
        cache_dir=tmp_path_factory.mktemp("render"),
    )
    with (
        serve(create_portal_app(state)) as portal_url,
        serve(create_archive_app(state)) as archive_url,
    ):
        yield state, portal_url, archive_url


@pytest.fixture
def sandbox(stack):
    stack[0].reset()
    return stack


def control(url: str, method: str, path: str, **kwargs) -> httpx.Response:
    response = httpx.request(method, url + path, timeout=10, **kwargs)
    response.raise_for_status()
    return response


def group_payload(
    state: LcoSandboxState,
    event: str = "S250101ab",
    name: str = "GAL-001",
    epoch: int = 0,
    **fields,
) -> dict:
    chosen = strategy(**fields)
    return build_request_group(
        RequestGroupSpec(
            target=target(name),
            strategy=chosen,
            proposal="SANDBOX-001",
            group_name=make_group_name(event, name, epoch=epoch, filters=chosen.filters),
            **window(state.now()),
        )
    )


def test_the_whole_exchange(sandbox, tmp_path: Path) -> None:
    state, portal_url, archive_url = sandbox
    portal = PortalClient(TOKEN, base_url=portal_url)
    archive = ArchiveClient(TOKEN, base_url=archive_url)
    since = state.now() - timedelta(minutes=1)
    assert "1M0-SCICAM-SINISTRO" in portal.get_instruments()
    assert portal.get_profile().proposals[0].id == "SANDBOX-001"
    bodies = [group_payload(state, name=f"GAL-{i:03d}") for i in range(3)]
    assert portal.validate_request_group(bodies[0]).is_valid
    groups = [portal.submit_request_group(body) for body in bodies]
    other = portal.submit_request_group(group_payload(state, event="S250101ac"))
    rids = [g.request_ids[0] for g in groups]
    assert portal.get_request(rids[0]).state is LcoState.PENDING
    # One paged query per poll cycle, for every request of the event.
    states = portal.get_request_states(
        rids, name=group_name_prefix("S250101ab"), created_after=since
    )
    assert set(states) == set(rids) and {s.state for s in states.values()} == {LcoState.PENDING}
    everything = portal.get_request_states(created_after=since, page_size=2)  # paged 2 by 2
    assert set(everything) == {*rids, other.request_ids[0]}
    # Cancel one, complete the rest on the simulated clock.
    assert portal.cancel_request_group(groups[2].id).canceled
    control(portal_url, "POST", "/sandbox/clock/advance", json={"seconds": 700})
    states = portal.get_request_states(rids, created_after=since)
    assert [states[r].state for r in rids] == [
        LcoState.COMPLETED,
        LcoState.COMPLETED,
        LcoState.CANCELED,
    ]
    finished = portal.cancel_request_group(groups[0].id)
    assert not finished.canceled and finished.group.state is LcoState.COMPLETED
    assert "Cannot transition from request state COMPLETED to CANCELED" in finished.message
    # Frames, downloads, cache.
    frames = archive.frames_for_request(rids[0])
    assert len(frames) == 2 and {f.reduction_level for f in frames} == {91}
    assert archive.list_frames(rids[2]) == []
    paths = [archive.download_frame(frame, tmp_path) for frame in frames]
    for frame, path in zip(frames, paths, strict=True):
        assert hashlib.md5(path.read_bytes()).hexdigest() == frame.md5
    assert [archive.download_frame(frame, tmp_path) for frame in frames] == paths
    assert archive.get_frame_headers(frames[0].frame_id)["REQNUM"] == f"{rids[0]:010d}"


def test_raw_fallback_brings_calibrations(sandbox, tmp_path: Path) -> None:
    state, portal_url, archive_url = sandbox
    portal = PortalClient(TOKEN, base_url=portal_url)
    archive = ArchiveClient(TOKEN, base_url=archive_url)
    state.reduction_delay_s = 3600  # BANZAI has not delivered yet
    try:
        group = portal.submit_request_group(group_payload(state, filters=["rp"]))
        rid = group.request_ids[0]
        control(portal_url, "POST", "/sandbox/clock/advance", json={"seconds": 700})
        frames = archive.frames_for_request(rid)
    finally:
        state.reduction_delay_s = 0
    assert frames[0].configuration_type == "EXPOSE" and frames[0].request_id == rid
    assert sorted(f.configuration_type for f in frames[1:]) == ["BIAS", "DARK", "SKYFLAT"]
    control(portal_url, "POST", "/sandbox/clock/advance", json={"seconds": 3600})
    assert [f.reduction_level for f in archive.frames_for_request(rid)] == [91]
    assert all(f.reduction_level == 0 for f in frames)


def test_lost_answer_is_found_by_name_and_never_resubmitted(sandbox) -> None:
    state, portal_url, _ = sandbox
    portal = PortalClient(TOKEN, base_url=portal_url)
    body = group_payload(state)
    control(
        portal_url,
        "POST",
        "/sandbox/faults",
        json={"endpoint": "POST /api/requestgroups/$", "status": 502, "after_store": True},
    )
    with pytest.raises(UncertainOutcome):
        portal.submit_request_group(body)
    found = portal.find_request_group_by_name(body["name"])
    assert found is not None and found.name == body["name"]
    seen = control(portal_url, "GET", "/sandbox/requests").json()
    assert seen["count"] == 1 and seen["create_calls"] == 1


def test_hang_after_store_is_uncertain(sandbox) -> None:
    state, portal_url, _ = sandbox
    portal = PortalClient(TOKEN, base_url=portal_url, timeout=0.3)
    body = group_payload(state)
    control(
        portal_url,
        "POST",
        "/sandbox/faults",
        json={"endpoint": "POST /api/requestgroups/$", "after_store": True, "delay_s": 1.0},
    )
    with pytest.raises(UncertainOutcome):
        portal.submit_request_group(body)
    assert portal.find_request_group_by_name(body["name"]) is not None
    assert control(portal_url, "GET", "/sandbox/requests").json()["count"] == 1


def test_a_throttled_submit_stores_nothing_and_says_when_to_come_back(sandbox) -> None:
    state, portal_url, _ = sandbox
    portal = PortalClient(TOKEN, base_url=portal_url)
    control(
        portal_url,
        "POST",
        "/sandbox/faults",
        json={"endpoint": "POST /api/requestgroups/$", "status": 429, "retry_after": 5},
    )
    body = group_payload(state)
    with pytest.raises(ServiceUnavailable) as info:
        portal.submit_request_group(body)
    assert info.value.retry_after == 5 and info.value.status_code == 429
    assert control(portal_url, "GET", "/sandbox/requests").json()["count"] == 0
    # The task's retry gets through.
    assert portal.submit_request_group(body).state is LcoState.PENDING
    assert control(portal_url, "GET", "/sandbox/requests").json()["count"] == 1


def test_a_5xx_read_is_raised_once_and_the_next_call_gets_through(sandbox) -> None:
    _, portal_url, _ = sandbox
    portal = PortalClient(TOKEN, base_url=portal_url)
    control(
        portal_url,
        "POST",
        "/sandbox/faults",
        json={"endpoint": "GET /api/instruments/", "status": 503, "count": 1},
    )
    with pytest.raises(ServiceUnavailable) as info:
        portal.get_instruments()
    assert not isinstance(info.value, UncertainOutcome) and info.value.status_code == 503
    assert portal.get_instruments()


def test_rejections_and_bad_token(sandbox) -> None:
    state, portal_url, _ = sandbox
    body = group_payload(state)
    body["ipp_value"] = 9
    with pytest.raises(RequestRejected, match=r"requestgroups ipp_value must be >= 0.5, <= 2.0"):
        PortalClient(TOKEN, base_url=portal_url).submit_request_group(body)
    with pytest.raises(AuthenticationError, match="Invalid token"):
        PortalClient("wrong", base_url=portal_url).submit_request_group(body)


def test_truncated_download_resumes(sandbox, tmp_path: Path) -> None:
    state, portal_url, archive_url = sandbox
    portal = PortalClient(TOKEN, base_url=portal_url)
    archive = ArchiveClient(TOKEN, base_url=archive_url)
    rid = portal.submit_request_group(group_payload(state, filters=["rp"])).request_ids[0]
    control(portal_url, "POST", "/sandbox/clock/advance", json={"seconds": 700})
    (frame,) = archive.list_frames(rid)
    control(
        archive_url,
        "POST",
        "/sandbox/faults",
        json={"endpoint": "GET /download/", "truncate_bytes": 2000, "count": 2},
    )
    path = archive.download_frame(frame, tmp_path)
    assert hashlib.md5(path.read_bytes()).hexdigest() == frame.md5
    assert control(archive_url, "GET", "/sandbox/faults").json() == []


def test_expired_download_url_is_refreshed(sandbox, tmp_path: Path) -> None:
    state, portal_url, archive_url = sandbox
    portal = PortalClient(TOKEN, base_url=portal_url)
    archive = ArchiveClient(TOKEN, base_url=archive_url)
    rid = portal.submit_request_group(group_payload(state, filters=["rp"])).request_ids[0]
    control(portal_url, "POST", "/sandbox/clock/advance", json={"seconds": 700})
    (frame,) = archive.list_frames(rid)
    control(portal_url, "POST", "/sandbox/clock/advance", json={"seconds": 49 * 3600})
    path = archive.download_frame(frame, tmp_path)
    assert hashlib.md5(path.read_bytes()).hexdigest() == frame.md5


# ------------------------------------------------------------------------------ clients written by others
#
# aeonlib needs Python >= 3.12 and tomtoolkit pins astropy/numpy below this project's, so neither
# can live in the project's venv. Point FOLLOWUP_PEER_PYTHON at a Python that has them
# (python3.12 -m venv /tmp/lco-peers && /tmp/lco-peers/bin/pip install aeonlib tomtoolkit);
# the probes in tests/peer_clients/ run there against the stand-ins served here.

PEERS = Path(__file__).parent / "peer_clients"


def test_aeonlib_works_unchanged(sandbox, tmp_path: Path) -> None:
    python = peer_python("aeonlib")
    state, portal_url, _ = sandbox
    body = group_payload(state)
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(body))
    report = run_probe(python, str(PEERS / "aeonlib_probe.py"), portal_url, TOKEN, str(path))
    assert report["valid"] is True and report["errors"] == []
    assert report["bad_valid"] is False
    assert report["bad_errors"] == {
        "non_field_errors": ["requestgroups ipp_value must be >= 0.5, <= 2.0"]
    }
    assert report["submitted"]["state"] == "PENDING" and report["submitted"]["name"] == body["name"]
    assert control(portal_url, "GET", "/sandbox/requests").json()["count"] == 1


def test_tomtoolkit_lco_facility_works_unchanged(sandbox, tmp_path: Path) -> None:
    python = peer_python("tom_observations")
    state, portal_url, archive_url = sandbox
    body = group_payload(state)
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(body))
    report = run_probe(
        python,
        str(PEERS / "tomtoolkit_probe.py"),
        portal_url,
        archive_url,
        TOKEN,
        str(path),
        portal_url,
    )
    assert report["validate"]["errors"] == {} and report["validate"]["request_durations"]
    assert report["pending"]["state"] == "PENDING" and report["pending"]["scheduled_start"]
    assert report["status"]["state"] == "COMPLETED"
    assert len(report["products"]) == 4 and all(p["url"] for p in report["products"])
    assert report["canceled"] is True
    assert control(portal_url, "GET", "/sandbox/requests").json()["count"] == 2
