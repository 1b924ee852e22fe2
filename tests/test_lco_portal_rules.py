"""The portal's rules: the sandbox refuses what LCO refuses, and the project's payloads pass.

Each refusal is checked with the portal's own message (observatorycontrolsystem/observation-portal,
``observation_portal/requestgroups/serializers.py`` and the files named in
:mod:`sandbox.lco.validation`). aeonlib's ``RequestGroup`` (PyPI ``aeonlib``, generated from LCO's
configdb) is the second judge of the strategies' payloads; it needs Python 3.12, so it runs in the
``FOLLOWUP_PEER_PYTHON`` interpreter when one is set (see :func:`tests.lco_support.peer_python`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from followup.lco import (
    PortalClient,
    RequestGroupSpec,
    Semester,
    at_submission,
    build_request_group,
    clip_to_semester,
    epoch_windows,
)
from followup.models import ObservationType
from followup.strategies import load_strategies
from sandbox.lco import LcoSandboxState, ManualClock, create_app
from tests.lco_support import (
    AUTH,
    NIGHT_AT_CPT,
    TOKEN,
    peer_python,
    run_probe,
    strategy,
    target,
    window,
)

LAST_DAY_OF_2026B = datetime(2027, 1, 31, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NIGHT_AT_CPT)


@pytest.fixture
def state(clock: ManualClock) -> LcoSandboxState:
    return LcoSandboxState(clock, None, token=TOKEN)


@pytest.fixture
def client(state: LcoSandboxState) -> Iterator[TestClient]:
    with TestClient(create_app(state)) as test_client:
        yield test_client


@pytest.fixture
def portal(client: TestClient) -> PortalClient:
    return PortalClient(TOKEN, base_url="http://testserver", transport=client._transport)


def group(clock: ManualClock, **fields: Any) -> dict[str, Any]:
    when = window(
        clock.now(), **{k: fields.pop(k) for k in ("hours", "start_offset_h") if k in fields}
    )
    return build_request_group(
        RequestGroupSpec(
            target=fields.pop("target", target()),
            strategy=strategy(**fields),
            proposal="SANDBOX-001",
            group_name="rules",
            **when,
        )
    )


def errors_of(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/api/requestgroups/validate/", json=body, headers=AUTH).json()
    return answer["errors"]


def configuration(body: dict[str, Any]) -> dict[str, Any]:
    return body["requests"][0]["configurations"][0]


def muscat_without_channel_times(body: dict[str, Any]) -> None:
    extra = configuration(body)["instrument_configs"][0]["extra_params"]
    for channel in "griz":
        extra.pop(f"exposure_time_{channel}")


CASES: list[Any] = [
    pytest.param(
        {},
        lambda body: body["requests"][0]["windows"][0].update(
            start="2027-01-31T12:00:00Z", end="2027-02-01T12:00:00Z"
        ),
        {"requests": [{"windows": [{"non_field_errors": [
            "The observation window does not fit within any defined semester."]}]}]},
        id="window across semesters",
    ),
    pytest.param(
        {"instrument_type": "2M0-SCICAM-MUSCAT", "filters": ["gp", "rp", "ip", "zs"]},
        muscat_without_channel_times,
        {"requests": [{"configurations": [{"non_field_errors": [
            "Exposure mode SYNCHRONOUS requirements are not met: extra_params{exposure_time_g "
            "error: required field, exposure_time_i error: required field, exposure_time_r error: "
            "required field, exposure_time_z error: required field}"]}]}]},
        id="MuSCAT without per-channel times",
    ),
    pytest.param(
        {},
        lambda body: configuration(body)["target"].update(epoch=5000),
        {"requests": [{"configurations": [{"target": {
            "epoch": ["Ensure this value is less than or equal to 2100."]}}]}]},
        id="target epoch 5000",
    ),
    pytest.param(
        {},
        lambda body: configuration(body)["acquisition_config"].update(exposure_time=100),
        {"requests": [{"configurations": [{"acquisition_config": {
            "exposure_time": ["Ensure this value is less than or equal to 60.0."]}}]}]},
        id="acquisition exposure 100 s",
    ),
    pytest.param(
        {},
        lambda body: configuration(body)["guiding_config"].update(exposure_time=200),
        {"requests": [{"configurations": [{"guiding_config": {
            "exposure_time": ["Ensure this value is less than or equal to 120.0."]}}]}]},
        id="guiding exposure 200 s",
    ),
    pytest.param(
        {"target": target(ra=253.0, dec=-22.5)},  # beside the Sun in December
        lambda body: None,
        {"requests": [{"non_field_errors": [
            "According to the constraints of the request, the target will not be visible within "
            "the time window. Check that the target is in the nighttime sky. Consider modifying "
            "the time window or loosening the airmass or lunar separation constraints. If the "
            "target is non sidereal, double check that the provided elements are correct."]}]},
        id="target never rises",
    ),
    pytest.param(
        {},
        lambda body: body.update(ipp_value=2.5),
        {"non_field_errors": ["requestgroups ipp_value must be >= 0.5, <= 2.0"]},
        id="ipp above 2",
    ),
    pytest.param(
        {"observation_type": "RAPID_RESPONSE", "hours": 6, "start_offset_h": 1},
        lambda body: None,
        {"non_field_errors": [
            "The Rapid Response observation window start time cannot be in the future."]},
        id="rapid response opening later",
    ),
    pytest.param(
        {"observation_type": "RAPID_RESPONSE", "hours": 30},
        lambda body: None,
        {"non_field_errors": [
            "A Rapid Response observation must start within the next 24 hours, so the window end "
            "time must be within the next (24 hours + the observation duration)"]},
        id="rapid response ending after 24 h",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "change", "expected"), CASES)
def test_the_sandbox_refuses_what_the_portal_refuses(
    client: TestClient,
    clock: ManualClock,
    fields: dict[str, Any],
    change: Callable[[dict[str, Any]], None],
    expected: dict[str, Any],
) -> None:
    assert errors_of(client, group(clock)) == {}
    broken = group(clock, **fields)
    change(broken)
    assert errors_of(client, broken) == expected


def test_ipp_time_runs_out_with_the_portals_message(clock: ManualClock) -> None:
    state = LcoSandboxState(clock, None, token=TOKEN)
    state.portal.ipp_time_hours = 0.05
    with TestClient(create_app(state)) as client:
        errors = errors_of(client, group(clock, ipp_value=1.5))
    message = errors["non_field_errors"][0]
    assert message.startswith(
        'TimeAllocationError("An IPP Value of 1.5 requires more IPP time than you have available '
        "for 'NORMAL' Observation with the 1M0-SCICAM-SINISTRO . Please lower your IPP Value to <= "
    )


def test_the_client_reads_the_semesters(portal: PortalClient) -> None:
    semesters = portal.list_semesters(ending_after=NIGHT_AT_CPT)
    assert semesters[0] == Semester(
        id="2026B",
        start=datetime(2026, 8, 1, tzinfo=UTC),
        end=datetime(2027, 2, 1, tzinfo=UTC),
    )
    assert all(a.end <= b.start for a, b in itertools.pairwise(semesters))
    assert len(semesters) > 10  # more than one page of the portal's 10


def test_a_window_keeps_the_semester_holding_most_of_it() -> None:
    terms = [
        Semester(id="2026B", start=datetime(2026, 8, 1, tzinfo=UTC), end=datetime(2027, 2, 1, tzinfo=UTC)),
        Semester(id="2027A", start=datetime(2027, 2, 1, tzinfo=UTC), end=datetime(2027, 8, 1, tzinfo=UTC)),
    ]  # fmt: skip
    end_of_b = datetime(2027, 2, 1, tzinfo=UTC)
    assert clip_to_semester(
        end_of_b - timedelta(hours=20), end_of_b + timedelta(hours=4), terms
    ) == (
        end_of_b - timedelta(hours=20),
        end_of_b,
    )
    assert clip_to_semester(
        end_of_b - timedelta(hours=1), end_of_b + timedelta(hours=23), terms
    ) == (
        end_of_b,
        end_of_b + timedelta(hours=23),
    )
    with pytest.raises(ValueError, match="overlaps no semester"):
        clip_to_semester(datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 1, 2, tzinfo=UTC), terms)


def strategy_books() -> list[Any]:
    folder = resources.files("followup").joinpath("strategies")
    return [
        pytest.param(load_strategies(folder.joinpath(item.name).read_text()), id=item.name)
        for item in folder.iterdir()
        if item.name.endswith(".yaml")
    ]


def strategy_payloads(book: Any, portal: PortalClient, now: datetime) -> dict[str, Any]:
    """Every epoch's payload of every strategy of a book, as sent at ``now``."""
    semesters = portal.list_semesters(ending_after=now)
    payloads = {}
    for name, plan in book.strategies.items():
        for epoch, (start, end) in enumerate(epoch_windows(plan, now, semesters=semesters)):
            spec = RequestGroupSpec(
                target=target(),
                strategy=plan,
                proposal="SANDBOX-001",
                group_name=f"{name}-{epoch}",
                window_start=start,
                window_end=end,
                planned_at=now,
            )
            payloads[f"{name}-{epoch}"] = build_request_group(
                at_submission(spec, now=now, semesters=semesters)
            )
    return payloads


@pytest.mark.parametrize("book", strategy_books())
def test_every_strategy_planned_on_a_semesters_last_day_is_accepted(book: Any) -> None:
    clock = ManualClock(LAST_DAY_OF_2026B)
    state = LcoSandboxState(clock, None, token=TOKEN)
    with TestClient(create_app(state)) as client:
        portal = PortalClient(TOKEN, base_url="http://testserver", transport=client._transport)
        payloads = strategy_payloads(book, portal, clock.now())
        assert len(payloads) == sum(plan.epochs for plan in book.strategies.values())
        for name, body in payloads.items():
            assert "acceptability_threshold" not in body["requests"][0]
            result = portal.validate_request_group(body)
            assert result.is_valid, (name, result.messages)


@pytest.mark.parametrize("book", strategy_books())
def test_every_strategy_payload_is_an_aeonlib_request_group(book: Any, tmp_path: Path) -> None:
    python = peer_python("aeonlib")
    state = LcoSandboxState(ManualClock(LAST_DAY_OF_2026B), None, token=TOKEN)
    with TestClient(create_app(state)) as client:
        portal = PortalClient(TOKEN, base_url="http://testserver", transport=client._transport)
        payloads = strategy_payloads(book, portal, state.now())
    path = tmp_path / "payloads.json"
    path.write_text(json.dumps(payloads))
    probe = Path(__file__).parent / "peer_clients" / "aeonlib_models_probe.py"
    assert run_probe(python, str(probe), str(path)) == dict.fromkeys(payloads)


def test_a_rapid_response_approved_hours_later_still_gets_a_valid_window(
    clock: ManualClock,
) -> None:
    state = LcoSandboxState(clock, None, token=TOKEN)
    plan = strategy(observation_type=ObservationType.RAPID_RESPONSE, window_hours=6)
    [(start, end)] = epoch_windows(plan, clock.now())
    spec = RequestGroupSpec(
        target=target(),
        strategy=plan,
        proposal="SANDBOX-001",
        group_name="rr",
        window_start=start,
        window_end=end,
        planned_at=clock.now(),
    )
    clock.advance(7 * 3600)  # the approval comes 7 h later
    with TestClient(create_app(state)) as client:
        assert errors_of(client, build_request_group(spec)) == {
            "requests": [{"windows": [{"end": ["Window end time must be in the future"]}]}]
        }
        final = at_submission(spec, now=clock.now())
        assert final.window_start == clock.now()
        assert final.window_end == clock.now() + timedelta(hours=6)
        assert errors_of(client, build_request_group(final)) == {}


def test_floyds_is_left_to_the_portals_acceptability_default(
    client: TestClient, clock: ManualClock
) -> None:
    body = group(
        clock, instrument_type="2M0-FLOYDS-SCICAM", filters=["slit_2.0as"], exposure_time_s=600
    )
    assert "acceptability_threshold" not in body["requests"][0]
    stored = client.post("/api/requestgroups/", json=body, headers=AUTH)
    assert stored.status_code == 201, stored.text
    assert stored.json()["requests"][0]["acceptability_threshold"] == 100.0
    chosen = group(clock, acceptability_threshold=70)
    assert chosen["requests"][0]["acceptability_threshold"] == 70


def floyds(clock: ManualClock) -> dict[str, Any]:
    return group(
        clock, instrument_type="2M0-FLOYDS-SCICAM", filters=["slit_2.0as"], exposure_time_s=600
    )


def test_a_floyds_spectrum_with_its_calibrations_is_accepted(client: TestClient, clock) -> None:
    body = floyds(clock)
    assert errors_of(client, body) == {}
    stored = client.post("/api/requestgroups/", json=body, headers=AUTH)
    assert stored.status_code == 201, stored.text
    configurations = stored.json()["requests"][0]["configurations"]
    assert [c["type"] for c in configurations] == [
        "LAMP_FLAT",
        "ARC",
        "SPECTRUM",
        "ARC",
        "LAMP_FLAT",
    ]
    assert [c["acquisition_config"]["mode"] for c in configurations] == [
        "OFF", "OFF", "WCS", "OFF", "OFF"
    ]  # fmt: skip
    assert configurations[2]["guiding_config"]["optional"] is False


def test_an_unguided_floyds_spectrum_is_refused(client: TestClient, clock) -> None:
    body = floyds(clock)
    body["requests"][0]["configurations"][2]["guiding_config"]["optional"] = True
    errors = errors_of(client, body)["requests"][0]["configurations"]
    assert errors[2] == {
        "non_field_errors": [
            "Guiding cannot be optional on spectrograph instruments for types that are not ARC "
            "or LAMP_FLAT."
        ]
    }
    assert errors[:2] == [{}, {}] and errors[3:] == [{}, {}]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            lambda c: c["acquisition_config"].update(mode="OFF"),
            "Acquisition mode OFF is not available for instrument type 2M0-FLOYDS-SCICAM",
            id="no acquisition",
        ),
        pytest.param(
            lambda c: c["instrument_configs"][0]["optical_elements"].clear(),
            "Must set optical element of type slit for instrument type 2M0-FLOYDS-SCICAM",
            id="no slit",
        ),
        pytest.param(
            lambda c: c["instrument_configs"][0].update(rotator_mode="FIXED"),
            "Rotator mode FIXED is not available for instrument type 2M0-FLOYDS-SCICAM",
            id="unknown rotator mode",
        ),
    ],
)
def test_a_floyds_spectrum_needs_acquisition_slit_and_rotator(
    client: TestClient, clock, change, message
) -> None:
    body = floyds(clock)
    change(body["requests"][0]["configurations"][2])
    errors = errors_of(client, body)["requests"][0]["configurations"][2]
    assert errors == {"non_field_errors": [message]}


def test_calibrations_are_forced_to_acquisition_off(client: TestClient, clock) -> None:
    body = floyds(clock)
    sent = [c["acquisition_config"]["mode"] for c in body["requests"][0]["configurations"]]
    assert sent == ["WCS"] * 5
    stored = client.post("/api/requestgroups/", json=body, headers=AUTH)
    assert stored.status_code == 201, stored.text
    modes = [
        c["acquisition_config"]["mode"] for c in stored.json()["requests"][0]["configurations"]
    ]
    assert modes == ["OFF", "OFF", "WCS", "OFF", "OFF"]
