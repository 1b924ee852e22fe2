"""The sandbox keeps the real order of things: frames inside their window, after the event."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from followup.lco import RequestGroupSpec, build_request_group
from sandbox.lco import LcoSandboxState, ManualClock, create_app
from sandbox.times import parse_datetime
from tests.lco_support import AUTH, NIGHT_AT_CPT, TOKEN, TinyRenderer, strategy, target, window


def test_no_frame_is_taken_before_the_event_or_outside_its_window(tmp_path) -> None:
    """T-T0 >= 0 for every frame, though the sandbox completes requests faster than they expose.

    Three 300 s exposures in two filters take about half an hour; the sandbox completes the
    request 20 s after submission. Frames used to end at completion, so they started before the
    alert arrived (negative T-T0 in the circulars).
    """
    clock = ManualClock(NIGHT_AT_CPT)
    event_time = clock.now() - timedelta(seconds=60)
    state = LcoSandboxState(
        clock, TinyRenderer(), token=TOKEN, completion_delay_s=20, cache_dir=tmp_path / "frames"
    )
    when = window(clock.now(), hours=6, start_offset_h=-1.0)  # a window opened before the event
    body = build_request_group(
        RequestGroupSpec(
            target=target(),
            strategy=strategy(exposure_time_s=300.0, exposure_count=3),
            proposal="SANDBOX-001",
            group_name="S1_GAL-001_e0_order",
            **when,
        )
    )
    with TestClient(create_app(state)) as client:
        submitted = clock.now()
        response = client.post("/api/requestgroups/", json=body, headers=AUTH)
        assert response.status_code == 201, response.text
        clock.advance(60)
        records = client.get(
            "/frames/", params={"limit": 1000, "OBSTYPE": "EXPOSE"}, headers=AUTH
        ).json()["results"]
    assert len(records) == 2 * 3 * 2  # filters x exposures x (raw, reduced)
    for record in records:
        start = parse_datetime(record["observation_date"])
        end = start + timedelta(seconds=record["exposure_time"])
        t_minus_t0_h = (start - event_time).total_seconds() / 3600.0
        assert t_minus_t0_h >= 0, f"{record['basename']} starts {t_minus_t0_h:.3f} h after T0"
        assert start >= submitted
        assert when["window_start"] <= start and end <= when["window_end"]
