"""The LCO portal and archive stand-ins through Starlette's TestClient, on a manual clock."""

from __future__ import annotations

import copy
import hashlib
import io
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from astropy.io import fits
from fastapi.testclient import TestClient

from followup.lco import RequestGroupSpec, build_request_group, make_group_name
from sandbox.lco import Fault, LcoSandboxState, ManualClock, create_app, damage_frame
from sandbox.lco.archive import SITE_LONGITUDES
from sandbox.lco.configdb import semester as lco_semester
from sandbox.times import parse_datetime
from tests.lco_support import AUTH, NIGHT_AT_CPT, TOKEN, TinyRenderer, strategy, target, window


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NIGHT_AT_CPT)


@pytest.fixture
def renderer() -> TinyRenderer:
    return TinyRenderer()


@pytest.fixture
def state(clock: ManualClock, renderer: TinyRenderer, tmp_path) -> LcoSandboxState:
    return LcoSandboxState(
        clock, renderer, token=TOKEN, completion_delay_s=600, cache_dir=tmp_path / "render"
    )


@pytest.fixture
def client(state: LcoSandboxState) -> TestClient:
    with TestClient(create_app(state)) as test_client:
        yield test_client


def payload(clock: ManualClock, name: str = "S1_GAL-001_e0_abc", **fields: Any) -> dict[str, Any]:
    when = window(
        clock.now(), **{k: fields.pop(k) for k in ("hours", "start_offset_h") if k in fields}
    )
    return build_request_group(
        RequestGroupSpec(
            target=target(),
            strategy=strategy(**fields),
            proposal="SANDBOX-001",
            group_name=name,
            **when,
        )
    )


def submit(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/requestgroups/", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    return response.json()


# ------------------------------------------------------------------------------ auth and shapes


def test_writes_need_a_valid_token(client: TestClient, clock: ManualClock) -> None:
    body = payload(clock)
    missing = client.post("/api/requestgroups/", json=body)
    assert missing.status_code == 403
    assert missing.json() == {"detail": "Authentication credentials were not provided."}
    wrong = client.post(
        "/api/requestgroups/validate/", json=body, headers={"Authorization": "Token nope"}
    )
    assert wrong.status_code == 403 and wrong.json() == {"detail": "Invalid token."}
    assert client.post("/api/requestgroups/1/cancel/").status_code == 403
    assert client.get("/api/profile/").status_code == 403
    # Anonymous reads see no private group.
    submit(client, body)
    anonymous = client.get("/api/requestgroups/").json()
    assert anonymous["count"] == 0 and anonymous["results"] == []


def test_create_answers_201_with_the_stored_group(client: TestClient, clock: ManualClock) -> None:
    group = submit(client, payload(clock))
    assert {
        "id",
        "submitter",
        "requests",
        "created",
        "state",
        "modified",
        "name",
        "observation_type",
        "operator",
        "ipp_value",
        "proposal",
    } <= set(group)
    assert group["state"] == "PENDING" and group["submitter"] == "sandbox"
    request = group["requests"][0]
    assert request["state"] == "PENDING" and request["location"]["telescope_class"] == "1m0"
    configuration = request["configurations"][0]
    assert configuration["acquisition_config"]["mode"] == "OFF"
    assert (
        configuration["guiding_config"]["mode"] == "ON"
        and configuration["guiding_config"]["optional"] is True
    )
    assert configuration["instrument_configs"][0]["mode"] == "full_frame"
    assert client.get(f"/api/requestgroups/{group['id']}/", headers=AUTH).json() == group


def test_the_control_api_says_when_each_post_arrived(
    client: TestClient, clock: ManualClock
) -> None:
    """Wall-clock arrival of each stored POST (the latency benchmark's end point), portal-hidden."""
    before = time.time()
    group = submit(client, payload(clock))
    after = time.time()
    assert "received_at" not in group
    (seen,) = client.get("/sandbox/requests").json()["results"]
    assert seen["group_id"] == group["id"] and before <= seen["received_at"] <= after


def test_unknown_keys_are_ignored_and_naive_times_are_utc(
    client: TestClient, clock: ManualClock
) -> None:
    body = payload(clock)
    body["some_new_field"] = 1
    configuration = body["requests"][0]["configurations"][0]
    configuration["constraints"]["max_lunar_distance"] = 30.0  # aeonlib sends this
    start = (clock.now() + timedelta(hours=1)).replace(microsecond=0)
    body["requests"][0]["windows"] = [
        {
            "start": start.replace(tzinfo=None).isoformat(),
            "end": (start + timedelta(hours=5)).replace(tzinfo=None).isoformat(),
        }
    ]
    group = submit(client, body)
    assert group["requests"][0]["windows"][0]["start"] == start.isoformat().replace("+00:00", "Z")
    assert "some_new_field" not in group


def test_validate_is_always_200(client: TestClient, clock: ManualClock) -> None:
    good = client.post("/api/requestgroups/validate/", json=payload(clock), headers=AUTH)
    assert good.status_code == 200 and good.json()["errors"] == {}
    durations = good.json()["request_durations"]
    assert (
        durations["duration"] > 240
        and durations["requests"][0]["configurations"][0]["instrument_configs"]
    )
    bad_body = payload(clock)
    bad_body["ipp_value"] = 5
    bad = client.post("/api/requestgroups/validate/", json=bad_body, headers=AUTH)
    assert bad.status_code == 200
    assert bad.json() == {
        "request_durations": {},
        "errors": {"non_field_errors": ["requestgroups ipp_value must be >= 0.5, <= 2.0"]},
    }
    assert client.get("/sandbox/requests").json()["count"] == 0


# ------------------------------------------------------------------------------ the portal's messages


def _mutate(body: dict[str, Any], change) -> dict[str, Any]:
    body = copy.deepcopy(body)
    change(body)
    return body


def _config(body):
    return body["requests"][0]["configurations"][0]


MISTAKES = [
    pytest.param(
        lambda b: b.update(ipp_value=2.5),
        {"non_field_errors": ["requestgroups ipp_value must be >= 0.5, <= 2.0"]},
        id="ipp-range",
    ),
    pytest.param(
        lambda b: b.update(requests=b["requests"] * 2),
        {"non_field_errors": ["'Single' type requestgroups must have exactly one child request."]},
        id="single-with-two",
    ),
    pytest.param(
        lambda b: b.update(operator="MANY"),
        {"non_field_errors": ["'Many' type requestgroups must have more than one child request."]},
        id="many-with-one",
    ),
    pytest.param(lambda b: b.pop("name"), {"name": ["This field is required."]}, id="missing-name"),
    pytest.param(
        lambda b: b.update(name=""), {"name": ["Please provide a name."]}, id="blank-name"
    ),
    pytest.param(
        lambda b: b.update(name="x" * 51),
        {"name": ["Ensure this field has no more than 50 characters."]},
        id="long-name",
    ),
    pytest.param(
        lambda b: b.update(proposal=None),
        {"proposal": ["Please provide a proposal."]},
        id="null-proposal",
    ),
    pytest.param(
        lambda b: b.pop("proposal"),
        {"proposal": ["This field is required."]},
        id="missing-proposal",
    ),
    pytest.param(
        lambda b: b.update(proposal="OTHER-1"),
        {"proposal": ['Invalid pk "OTHER-1" - object does not exist.']},
        id="unknown-proposal",
    ),
    pytest.param(
        lambda b: b.update(observation_type="URGENT"),
        {"observation_type": ['"URGENT" is not a valid choice.']},
        id="bad-type",
    ),
    pytest.param(
        lambda b: _config(b).update(instrument_type="1M0-SCICAM-SBIG"),
        {
            "requests": [
                {
                    "configurations": [
                        {
                            "instrument_type": [
                                "Invalid instrument type 1M0-SCICAM-SBIG. Valid instruments may include: 0M4-SCICAM-QHY600, 1M0-SCICAM-SINISTRO, 2M0-SCICAM-MUSCAT, 2M0-FLOYDS-SCICAM"
                            ]
                        }
                    ]
                }
            ]
        },
        id="unknown-instrument",
    ),
    pytest.param(
        lambda b: _config(b)["instrument_configs"][1]["optical_elements"].update(filter="Ha"),
        {
            "requests": [
                {
                    "configurations": [
                        {"non_field_errors": ["optical element Ha of type filter is not available"]}
                    ]
                }
            ]
        },
        id="unknown-filter",
    ),
    pytest.param(
        lambda b: _config(b)["instrument_configs"][0]["optical_elements"].update(filter="CN"),
        {
            "requests": [
                {
                    "configurations": [
                        {"non_field_errors": ["optical element CN of type filter is not available"]}
                    ]
                }
            ]
        },
        id="unschedulable-filter",
    ),
    pytest.param(
        lambda b: _config(b)["instrument_configs"][0].update(optical_elements={}),
        {
            "requests": [
                {
                    "configurations": [
                        {
                            "non_field_errors": [
                                "Must set optical element of type filter for instrument type 1M0-SCICAM-SINISTRO"
                            ]
                        }
                    ]
                }
            ]
        },
        id="no-filter",
    ),
    pytest.param(
        lambda b: _config(b)["instrument_configs"][0].update(mode="fast"),
        {
            "requests": [
                {
                    "configurations": [
                        {
                            "non_field_errors": [
                                "Readout mode fast is not available for instrument type 1M0-SCICAM-SINISTRO"
                            ]
                        }
                    ]
                }
            ]
        },
        id="bad-readout",
    ),
    pytest.param(
        lambda b: _config(b)["instrument_configs"][1].update(exposure_count=0),
        {
            "requests": [
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
                            ]
                        }
                    ]
                }
            ]
        },
        id="exposure-count",
    ),
    pytest.param(
        lambda b: _config(b)["instrument_configs"][0].pop("exposure_time"),
        {
            "requests": [
                {
                    "configurations": [
                        {"instrument_configs": [{"exposure_time": ["This field is required."]}, {}]}
                    ]
                }
            ]
        },
        id="missing-exposure-time",
    ),
    pytest.param(
        lambda b: _config(b).update(type="BIAS"),
        {
            "requests": [
                {
                    "configurations": [
                        {
                            "non_field_errors": [
                                "configuration type BIAS is not schedulable for instrument type 1M0-SCICAM-SINISTRO"
                            ]
                        }
                    ]
                }
            ]
        },
        id="unschedulable-type",
    ),
    pytest.param(
        lambda b: _config(b).update(type="SPECTRUM"),
        {
            "requests": [
                {
                    "configurations": [
                        {
                            "non_field_errors": [
                                "configuration type SPECTRUM is not valid for instrument type 1M0-SCICAM-SINISTRO"
                            ]
                        }
                    ]
                }
            ]
        },
        id="wrong-type",
    ),
    pytest.param(
        lambda b: _config(b)["constraints"].update(max_airmass=30),
        {
            "requests": [
                {
                    "configurations": [
                        {
                            "constraints": {
                                "max_airmass": ["Ensure this value is less than or equal to 25.0."]
                            }
                        }
                    ]
                }
            ]
        },
        id="airmass",
    ),
    pytest.param(
        lambda b: _config(b)["target"].pop("ra"),
        {"requests": [{"configurations": [{"target": {"ra": ["This field is required."]}}]}]},
        id="missing-ra",
    ),
    pytest.param(
        lambda b: _config(b).pop("guiding_config"),
        {"requests": [{"configurations": [{"guiding_config": ["This field is required."]}]}]},
        id="missing-guiding",
    ),
    pytest.param(
        lambda b: b["requests"][0]["windows"][0].pop("end"),
        {"requests": [{"windows": [{"end": ["This field is required."]}]}]},
        id="missing-window-end",
    ),
    pytest.param(
        lambda b: b["requests"][0].update(windows=[]),
        {"requests": [{"windows": ["You must specify at least 1 window"]}]},
        id="no-window",
    ),
    pytest.param(
        lambda b: b["requests"][0]["windows"][0].update(end="yesterday"),
        {
            "requests": [
                {
                    "windows": [
                        {
                            "end": [
                                "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
                            ]
                        }
                    ]
                }
            ]
        },
        id="bad-datetime",
    ),
    pytest.param(
        lambda b: b["requests"][0]["location"].update(telescope_class="2m0"),
        {
            "requests": [
                {
                    "non_field_errors": [
                        "Invalid instrument type '1M0-SCICAM-SINISTRO' at site=Any, enc=Any, tel=Any. \nValid instruments include: 2M0-SCICAM-MUSCAT, 2M0-FLOYDS-SCICAM, ."
                    ]
                }
            ]
        },
        id="instrument-not-on-class",
    ),
    pytest.param(
        lambda b: b.update(requests=[]),
        {"requests": ["You must specify at least 1 request"]},
        id="no-requests",
    ),
]


@pytest.mark.parametrize(("change", "errors"), MISTAKES)
def test_common_mistakes_get_the_portals_messages(
    client: TestClient, clock: ManualClock, change, errors
) -> None:
    body = _mutate(payload(clock), change)
    response = client.post("/api/requestgroups/", json=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json() == errors
    validation = client.post("/api/requestgroups/validate/", json=body, headers=AUTH).json()
    assert validation == {"request_durations": {}, "errors": errors}
    assert client.get("/sandbox/requests").json()["count"] == 0


def test_window_mistakes(client: TestClient, clock: ManualClock) -> None:
    past = payload(clock, start_offset_h=-30, hours=2)
    errors = client.post("/api/requestgroups/", json=past, headers=AUTH).json()
    assert errors == {
        "requests": [{"windows": [{"end": ["Window end time must be in the future"]}]}]
    }
    body = payload(clock)
    start = clock.now() + timedelta(hours=5)
    body["requests"][0]["windows"] = [
        {"start": start.isoformat(), "end": (start - timedelta(hours=1)).isoformat()}
    ]
    errors = client.post("/api/requestgroups/", json=body, headers=AUTH).json()
    (message,) = errors["requests"][0]["windows"][0]["non_field_errors"]
    assert message.startswith("Window end '") and "cannot be earlier than window start '" in message


def test_rapid_response_rules_and_time_left(clock: ManualClock, tmp_path) -> None:
    state = LcoSandboxState(
        clock, token=TOKEN, time_allocation_hours={"RAPID_RESPONSE": 0.0, "TIME_CRITICAL": 0.1}
    )
    client = TestClient(create_app(state))
    rr = payload(clock, observation_type="RAPID_RESPONSE", hours=6)
    semester = lco_semester(clock.now())
    assert client.post("/api/requestgroups/", json=rr, headers=AUTH).json() == {
        "non_field_errors": [
            f"Proposal SANDBOX-001 does not have any RAPID_RESPONSE time left allocated in semester {semester} on 1M0-SCICAM-SINISTRO instruments"
        ]
    }
    future = payload(clock, observation_type="RAPID_RESPONSE", start_offset_h=2, hours=6)
    assert client.post("/api/requestgroups/", json=future, headers=AUTH).json() == {
        "non_field_errors": [
            "The Rapid Response observation window start time cannot be in the future."
        ]
    }
    tc = payload(clock, observation_type="TIME_CRITICAL", exposure_time_s=600, exposure_count=2)
    assert client.post("/api/requestgroups/", json=tc, headers=AUTH).json() == {
        "non_field_errors": [
            f"Proposal SANDBOX-001 does not have enough TIME_CRITICAL time allocated in semester {semester}"
        ]
    }


def test_time_is_debited_until_none_is_left(clock: ManualClock) -> None:
    probe = LcoSandboxState(clock, token=TOKEN)
    hours = probe.portal.validate(payload(clock))["request_durations"]["duration"] / 3600
    state = LcoSandboxState(clock, token=TOKEN, time_allocation_hours={"NORMAL": hours})
    client = TestClient(create_app(state))
    submit(client, payload(clock, name="a"))
    response = client.post("/api/requestgroups/", json=payload(clock, name="b"), headers=AUTH)
    assert (
        response.status_code == 400
        and "does not have any NORMAL time left" in response.json()["non_field_errors"][0]
    )


def test_malformed_json_is_a_400(client: TestClient) -> None:
    response = client.post(
        "/api/requestgroups/",
        content=b"{not json",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and response.json()["detail"].startswith("JSON parse error")


# ------------------------------------------------------------------------------ reads, listing, redirects


def test_listing_filters_and_pagination(client: TestClient, clock: ManualClock) -> None:
    groups = [submit(client, payload(clock, name=f"S1_T{i:02d}_e0_x")) for i in range(12)]
    clock.advance(60)
    later = [submit(client, payload(clock, name=f"S2_T{i:02d}_e0_x")) for i in range(3)]
    page = client.get("/api/requestgroups/", headers=AUTH).json()
    assert page["count"] == 15 and len(page["results"]) == 10 and page["previous"] is None
    assert [g["id"] for g in page["results"]] == sorted(
        (g["id"] for g in groups + later), reverse=True
    )[:10]
    second = client.get(page["next"], headers=AUTH).json()
    assert len(second["results"]) == 5 and second["next"] is None and second["previous"]
    by_name = client.get(
        "/api/requestgroups/", params={"name": "s1_t0", "limit": 100}, headers=AUTH
    ).json()
    assert by_name["count"] == 10
    recent = client.get(
        "/api/requestgroups/",
        params={"created_after": (clock.now() - timedelta(seconds=1)).isoformat()},
        headers=AUTH,
    ).json()
    assert {g["id"] for g in recent["results"]} == {g["id"] for g in later}
    rid = groups[3]["requests"][0]["id"]
    holder = client.get("/api/requestgroups/", params={"request_id": rid}, headers=AUTH).json()
    assert holder["count"] == 1 and holder["results"][0]["id"] == groups[3]["id"]
    client.post(f"/api/requestgroups/{groups[0]['id']}/cancel/", headers=AUTH)
    canceled = client.get("/api/requestgroups/?state=CANCELED&state=COMPLETED", headers=AUTH).json()
    assert [g["id"] for g in canceled["results"]] == [groups[0]["id"]]
    bad = client.get(
        "/api/requestgroups/", params={"state": "DONE", "created_after": "soon"}, headers=AUTH
    )
    assert bad.status_code == 400 and set(bad.json()) == {"state", "created_after"}


def test_gets_without_trailing_slash_are_redirected_301(
    client: TestClient, clock: ManualClock
) -> None:
    group = submit(client, payload(clock))
    rid = group["requests"][0]["id"]
    response = client.get(f"/api/requests/{rid}", headers=AUTH, follow_redirects=False)
    assert response.status_code == 301 and response.headers["location"].endswith(
        f"/api/requests/{rid}/"
    )
    response = client.get(
        f"/api/requestgroups?request_id={rid}", headers=AUTH, follow_redirects=False
    )
    assert response.status_code == 301 and response.headers["location"].endswith(
        f"/api/requestgroups/?request_id={rid}"
    )
    assert client.get(f"/api/requestgroups?request_id={rid}", headers=AUTH).json()["count"] == 1


def test_unknown_ids_are_404(client: TestClient) -> None:
    assert client.get("/api/requestgroups/999999/", headers=AUTH).json() == {
        "detail": "No RequestGroup matches the given query."
    }
    assert client.get("/api/requests/999999/", headers=AUTH).status_code == 404
    assert client.get("/api/requests/999999/observations/", headers=AUTH).status_code == 404
    assert client.post("/api/requestgroups/999999/cancel/", headers=AUTH).status_code == 404
    assert client.get("/frames/999999/", headers=AUTH).status_code == 404


def test_instruments_and_profile(client: TestClient) -> None:
    instruments = client.get("/api/instruments/").json()
    sinistro = instruments["1M0-SCICAM-SINISTRO"]
    assert sinistro["class"] == "1m0" and sinistro["modes"]["readout"]["default"] == "full_frame"
    assert {f["code"] for f in sinistro["optical_elements"]["filters"] if f["schedulable"]} >= {
        "gp",
        "rp",
        "ip",
        "zs",
    }
    assert set(instruments["2M0-SCICAM-MUSCAT"]["optical_elements"]) == {
        f"narrowband_{c}_positions" for c in "griz"
    }
    profile = client.get("/api/profile/", headers=AUTH).json()
    assert profile["username"] == "sandbox" and profile["proposals"][0]["id"] == "SANDBOX-001"


# ------------------------------------------------------------------------------ state machine


def request_state(client: TestClient, rid: int) -> str:
    return client.get(f"/api/requests/{rid}/", headers=AUTH).json()["state"]


def test_pending_then_completed_after_the_delay(client: TestClient, clock: ManualClock) -> None:
    group = submit(client, payload(clock))
    rid = group["requests"][0]["id"]
    blocks = client.get(f"/api/requests/{rid}/observations/", headers=AUTH).json()
    assert isinstance(blocks, list) and blocks[0]["state"] == "PENDING"
    clock.advance(599)
    assert request_state(client, rid) == "PENDING"
    clock.advance(2)
    assert request_state(client, rid) == "COMPLETED"
    assert (
        client.get(f"/api/requestgroups/{group['id']}/", headers=AUTH).json()["state"]
        == "COMPLETED"
    )
    assert (
        client.get(f"/api/requests/{rid}/observations/", headers=AUTH).json()[0]["state"]
        == "COMPLETED"
    )


def test_window_expires_before_completion_and_late_completion_is_accepted(
    client: TestClient, clock: ManualClock
) -> None:
    # 9 minutes: longer than the request (7.2 min, else the portal refuses it), shorter than
    # the 10-minute delay to completion.
    group = submit(client, payload(clock, hours=0.15))
    rid = group["requests"][0]["id"]
    clock.advance(560)
    assert request_state(client, rid) == "WINDOW_EXPIRED"
    assert client.get("/frames/", params={"request_id": rid}, headers=AUTH).json()["count"] == 0
    late = client.post(f"/sandbox/requests/{rid}/complete").json()
    assert late["state"] == "COMPLETED"
    assert (
        client.get(f"/api/requestgroups/{group['id']}/", headers=AUTH).json()["state"]
        == "COMPLETED"
    )
    assert (
        client.get("/frames/", params={"request_id": rid}, headers=AUTH).json()["count"] == 4
    )  # levels 0 and 91


def test_failure_limit_is_injectable(client: TestClient, clock: ManualClock) -> None:
    client.post("/sandbox/outcomes", json={"states": ["FAILURE_LIMIT_REACHED"]})
    failing = submit(client, payload(clock, name="a"))
    normal = submit(client, payload(clock, name="b"))
    clock.advance(700)
    assert request_state(client, failing["requests"][0]["id"]) == "FAILURE_LIMIT_REACHED"
    assert request_state(client, normal["requests"][0]["id"]) == "COMPLETED"
    forced = client.post(
        f"/sandbox/requests/{normal['requests'][0]['id']}/state", json={"state": "WINDOW_EXPIRED"}
    )
    assert forced.json()["state"] == "WINDOW_EXPIRED"


def test_cancel_semantics(client: TestClient, clock: ManualClock) -> None:
    group = submit(client, payload(clock))
    rid = group["requests"][0]["id"]
    first = client.post(f"/api/requestgroups/{group['id']}/cancel/", headers=AUTH)
    assert first.status_code == 200 and first.json()["state"] == "CANCELED"
    assert first.json()["requests"][0]["state"] == "CANCELED"
    again = client.post(f"/api/requestgroups/{group['id']}/cancel/", headers=AUTH)
    assert again.status_code == 200 and again.json()["state"] == "CANCELED"
    assert (
        client.get(f"/api/requests/{rid}/observations/", headers=AUTH).json()[0]["state"]
        == "CANCELED"
    )
    assert (
        client.get(f"/api/requests/{rid}/observations/?exclude_canceled=true", headers=AUTH).json()
        == []
    )
    clock.advance(700)
    assert request_state(client, rid) == "CANCELED"  # no completion after a cancel
    done = submit(client, payload(clock, name="done"))
    clock.advance(700)
    refused = client.post(f"/api/requestgroups/{done['id']}/cancel/", headers=AUTH)
    assert refused.status_code == 400
    assert refused.json() == {
        "errors": [f"Cannot transition from request state COMPLETED to CANCELED for {done['id']}"]
    }


# ------------------------------------------------------------------------------ archive


def completed_request(client: TestClient, clock: ManualClock, **fields: Any) -> int:
    group = submit(client, payload(clock, **fields))
    clock.advance(700)
    return group["requests"][0]["id"]


START = datetime(2026, 12, 5, 21, 30, tzinfo=UTC)
BASENAME = re.compile(r"^([a-z]{3})(\dm\d{3})-(\w{4})-(\d{8})-(\d{4})-([ebdf])(00|91)$")


def observe_once(
    tmp_path, tag: str, start: datetime, *, seed: int = 0, first_id: int = 1000, requests: int = 1
) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """A fresh sandbox on a manual clock completes ``requests`` identical requests.

    Returns every frame record it lists and the bytes of each frame by basename.
    """
    clock = ManualClock(start)
    state = LcoSandboxState(
        clock,
        TinyRenderer(),
        seed=seed,
        token=TOKEN,
        completion_delay_s=600,
        cache_dir=tmp_path / tag,
        first_id=first_id,
        first_frame_id=first_id * 1000,
    )
    with TestClient(create_app(state)) as client:
        for k in range(requests):
            submit(client, payload(clock, name=f"S1_GAL-001_e0_{k}"))
        clock.advance(700)
        records = client.get("/frames/", params={"limit": 1000}, headers=AUTH).json()["results"]
        data = {r["basename"]: client.get(r["url"]).content for r in records}
    return records, data


def pixels(data: bytes) -> list[list[float]]:
    with fits.open(io.BytesIO(data)) as hdus:
        return hdus[0].data.tolist()


def test_a_basename_names_one_exposure_as_the_archive_does(tmp_path) -> None:
    """site+telescope, camera, DAY-OBS, frame number, level; raw and reduced share the number."""
    records, _ = observe_once(tmp_path, "a", START)
    by_exposure: dict[tuple[str, ...], set[int]] = {}
    for record in records:
        match = BASENAME.match(record["basename"])
        assert match, record["basename"]
        site, _, camera, day, number, letter, level = match.groups()
        assert (site, camera, int(level)) == (
            record["site_id"],
            record["instrument_id"],
            record["reduction_level"],
        )
        assert (
            day == record["observation_day"].replace("-", "") == record["DAY_OBS"].replace("-", "")
        )
        # DAY-OBS is the date at the local noon before the exposure's start.
        longitude = SITE_LONGITUDES[site]
        local = parse_datetime(record["observation_date"]) + timedelta(hours=longitude / 15)
        assert (local - timedelta(hours=12)).date().isoformat() == record["observation_day"]
        if letter == "e":
            assert int(number) >= 100
            by_exposure.setdefault((camera, day, number), set()).add(record["reduction_level"])
        else:
            assert 1 <= int(number) < 100 and record["configuration_type"] != "EXPOSE"
    assert list(by_exposure.values()) == [{0, 91}, {0, 91}]  # gp and rp, raw and reduced
    assert len({r["basename"] for r in records}) == len(records)


def test_frame_numbers_stay_unique_when_exposures_coincide_on_a_camera(tmp_path) -> None:
    """Six requests observed at once on five 1-m telescopes: two share a camera and a time."""
    records, _ = observe_once(tmp_path, "a", START, requests=6)
    science = [r for r in records if r["configuration_type"] == "EXPOSE"]
    assert len(science) == 6 * 2 * 2
    numbers = {
        (r["instrument_id"], r["observation_day"], r["basename"].split("-")[3], r["RLEVEL"])
        for r in science
    }
    assert len(numbers) == len(science)


def test_a_later_run_never_reuses_a_basename_and_a_replay_reuses_no_version(tmp_path) -> None:
    first, _ = observe_once(tmp_path, "a", START, first_id=1_800_000_000)
    replay, _ = observe_once(tmp_path, "b", START, first_id=1_800_000_060)
    later, _ = observe_once(tmp_path, "c", START + timedelta(hours=1), first_id=1_800_003_600)
    names = [
        {r["basename"] for r in run if r["configuration_type"] == "EXPOSE"}
        for run in (first, replay, later)
    ]
    # The same exposure replayed by another sandbox at the same time has the same name...
    assert names[0] == names[1]
    # ...an exposure an hour later another one, and no two frames ever share a version id.
    assert not names[0] & names[2]
    versions = [{r["version_set"][0]["id"] for r in run} for run in (first, replay, later)]
    assert not (versions[0] & versions[1]) and not (versions[1] & versions[2])


def test_the_seed_and_the_request_decide_the_pixels_not_ids_or_times(tmp_path) -> None:
    """Same seed, same request: same telescope and pixels, whatever the ids, date and numbers."""
    first, first_data = observe_once(tmp_path, "a", START, seed=5)
    later, later_data = observe_once(
        tmp_path, "b", START + timedelta(days=3, hours=5), seed=5, first_id=77_000
    )
    other, other_data = observe_once(tmp_path, "c", START, seed=6)

    def science(records: list[dict[str, Any]], data: dict[str, bytes]) -> dict[tuple, Any]:
        return {
            (r["primary_optical_element"], r["reduction_level"]): (
                r["site_id"],
                pixels(data[r["basename"]]),
            )
            for r in records
            if r["configuration_type"] == "EXPOSE"
        }

    assert {r["basename"] for r in first}.isdisjoint(r["basename"] for r in later)
    assert science(first, first_data) == science(later, later_data)
    different = science(other, other_data)
    assert all(different[key][1] != value[1] for key, value in science(first, first_data).items())


def test_frames_appear_at_completion(
    client: TestClient, clock: ManualClock, renderer: TinyRenderer
) -> None:
    rid = completed_request(client, clock, exposure_count=2)
    reduced = client.get(
        "/frames/", params={"request_id": rid, "reduction_level": 91}, headers=AUTH
    ).json()
    assert reduced["count"] == 4 and reduced["count_estimated"] is False
    record = reduced["results"][0]
    for key in (
        "id",
        "basename",
        "filename",
        "url",
        "version_set",
        "observation_date",
        "reduction_level",
        "request_id",
        "primary_optical_element",
        "exposure_time",
        "configuration_type",
        "site_id",
        "telescope_id",
        "instrument_id",
        "DATE_OBS",
        "REQNUM",
        "RLEVEL",
        "FILTER",
        "OBSTYPE",
        "BLKUID",
    ):
        assert key in record
    assert (
        record["REQNUM"] == rid and record["RLEVEL"] == 91 and record["basename"].endswith("-e91")
    )
    assert record["filename"] == record["basename"] + ".fits"
    assert (
        record["url"] == record["version_set"][0]["url"] and "X-Amz-Expires=172800" in record["url"]
    )
    legacy = client.get(
        "/frames/", params={"REQNUM": rid, "RLEVEL": 0, "limit": 1000}, headers=AUTH
    ).json()
    assert legacy["count"] == 4 and all(r["basename"].endswith("-e00") for r in legacy["results"])
    raw = legacy["results"][0]
    calibrations = client.get(
        "/frames/",
        params=[
            ("instrument_id", raw["instrument_id"]),
            ("dayobs", raw["observation_day"]),
            ("reduction_level", 0),
            ("include_configuration_type", "BIAS"),
            ("include_configuration_type", "DARK"),
            ("include_configuration_type", "SKYFLAT"),
        ],
        headers=AUTH,
    ).json()
    kinds = sorted(
        (r["configuration_type"], r["primary_optical_element"]) for r in calibrations["results"]
    )
    assert kinds == [("BIAS", ""), ("DARK", ""), ("SKYFLAT", "gp"), ("SKYFLAT", "rp")]
    # Listing renders only what it returned, once.
    assert len(renderer.calls) == len(set(renderer.calls)) == 4 + 4 + 4
    assert client.get("/frames/", headers={"Authorization": "Token bad"}).status_code == 401
    assert client.get("/frames/", params={"request_id": rid}).json()["count"] == 0  # proprietary


def test_download_with_range_and_signed_url(
    client: TestClient, clock: ManualClock, renderer: TinyRenderer, state: LcoSandboxState
) -> None:
    rid = completed_request(client, clock)
    record = client.get("/frames/", params={"request_id": rid}, headers=AUTH).json()["results"][0]
    whole = client.get(record["url"])
    assert whole.status_code == 200
    assert hashlib.md5(whole.content).hexdigest() == record["version_set"][0]["md5"]
    with fits.open(io.BytesIO(whole.content)) as hdus:
        assert hdus[0].header["REQNUM"] == rid and hdus[0].header["RLEVEL"] == 91
    part = client.get(record["url"], headers={"Range": "bytes=100-"})
    assert part.status_code == 206 and part.content == whole.content[100:]
    assert (
        part.headers["content-range"] == f"bytes 100-{len(whole.content) - 1}/{len(whole.content)}"
    )
    assert (
        client.get(record["url"], headers={"Range": f"bytes={len(whole.content)}-"}).status_code
        == 416
    )
    tampered = record["url"].replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert client.get(tampered).status_code == 403
    calls = len(renderer.calls)
    assert client.get(record["url"]).content == whole.content and len(renderer.calls) == calls
    assert (state.cache_dir / record["filename"]).read_bytes() == whole.content
    clock.advance(49 * 3600)
    expired = client.get(record["url"])
    assert expired.status_code == 403 and b"Request has expired" in expired.content
    fresh = client.get(f"/frames/{record['id']}/", headers=AUTH).json()
    assert client.get(fresh["url"]).status_code == 200
    headers = client.get(f"/frames/{record['id']}/headers/", headers=AUTH).json()["data"]
    assert (
        headers["REQNUM"] == f"{rid:010d}"
        and headers["ORIGIN"] == "LCOGT"
        and headers["RLEVEL"] == 91
    )


def test_muscat_makes_a_frame_per_channel(client: TestClient, clock: ManualClock) -> None:
    rid = completed_request(
        client,
        clock,
        instrument_type="2M0-SCICAM-MUSCAT",
        filters=["gp", "rp", "ip", "zs"],
        exposure_time_per_filter_s={"gp": 200.0},
    )
    frames = client.get(
        "/frames/", params={"request_id": rid, "reduction_level": 91}, headers=AUTH
    ).json()["results"]
    assert sorted((f["primary_optical_element"], f["exposure_time"]) for f in frames) == [
        ("gp", 200.0),
        ("ip", 120.0),
        ("rp", 120.0),
        ("zs", 120.0),
    ]
    assert (
        len({f["instrument_id"] for f in frames}) == 4
        and len({f["observation_date"] for f in frames}) == 1
    )


def test_header_only_renderer_without_a_sky(clock: ManualClock) -> None:
    state = LcoSandboxState(clock, token=TOKEN)
    client = TestClient(create_app(state))
    rid = completed_request(client, clock)
    record = client.get("/frames/", params={"request_id": rid}, headers=AUTH).json()["results"][0]
    with fits.open(io.BytesIO(client.get(record["url"]).content)) as hdus:
        assert hdus[0].header["SANDBOX"] == "header-only" and hdus[0].header["OBJECT"] == "GAL-001"


# ------------------------------------------------------------------------------ faults and control


def test_fault_429_with_retry_after(client: TestClient) -> None:
    fault = client.post(
        "/sandbox/faults",
        json={"endpoint": "GET /api/instruments/", "status": 429, "retry_after": 7},
    ).json()
    assert fault["id"] > 0
    throttled = client.get("/api/instruments/")
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "7"
    assert throttled.json() == {"detail": "Request was throttled. Expected available in 7 seconds."}
    assert client.get("/api/instruments/").status_code == 200  # count 1 by default
    assert client.get("/sandbox/faults").json() == []


def test_fault_5xx_count_and_delete(client: TestClient) -> None:
    client.post("/sandbox/faults", json={"endpoint": "/api/profile/", "status": 503, "count": 2})
    assert [client.get("/api/profile/", headers=AUTH).status_code for _ in range(3)] == [
        503,
        503,
        200,
    ]
    client.post("/sandbox/faults", json={"endpoint": "/api/profile/", "status": 500, "count": None})
    assert client.get("/api/profile/", headers=AUTH).status_code == 500
    assert client.delete("/sandbox/faults").json() == {"deleted": 1}
    assert client.get("/api/profile/", headers=AUTH).status_code == 200
    assert client.post("/sandbox/faults", json={"endpoint": "(", "status": 500}).status_code == 400
    assert client.post("/sandbox/faults", json={"status": 500, "bogus": 1}).status_code == 422


def test_fault_stored_but_answer_lost(client: TestClient, clock: ManualClock) -> None:
    client.post(
        "/sandbox/faults",
        json={"endpoint": "POST /api/requestgroups/$", "status": 502, "after_store": True},
    )
    name = make_group_name("S1", "GAL-001")
    lost = client.post("/api/requestgroups/", json=payload(clock, name=name), headers=AUTH)
    assert lost.status_code == 502
    seen = client.get("/sandbox/requests").json()
    assert seen["count"] == 1 and seen["results"][0]["name"] == name and seen["create_calls"] == 1
    assert (
        client.get("/api/requestgroups/", params={"name": name}, headers=AUTH).json()["count"] == 1
    )


def test_fault_truncates_a_download(client: TestClient, clock: ManualClock) -> None:
    rid = completed_request(client, clock)
    record = client.get("/frames/", params={"request_id": rid}, headers=AUTH).json()["results"][0]
    client.post("/sandbox/faults", json={"endpoint": "GET /download/", "truncate_bytes": 1000})
    cut = client.get(record["url"])
    assert len(cut.content) == 1000 and int(cut.headers["content-length"]) > 1000
    assert len(client.get(record["url"]).content) > 1000


def test_control_api_clock_and_reset(client: TestClient, clock: ManualClock) -> None:
    before = clock.now()
    now = client.post("/sandbox/clock/advance", json={"seconds": 3600}).json()["now"]
    assert now == (before + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    submit(client, payload(clock))
    assert client.get("/sandbox/requests").json()["count"] == 1
    client.post("/sandbox/reset")
    assert client.get("/sandbox/requests").json() == {
        "count": 0,
        "create_calls": 0,
        "validate_calls": 0,
        "now": client.get("/sandbox/clock").json()["now"],
        "results": [],
    }


def test_fault_model_matching() -> None:
    fault = Fault(endpoint="POST /api/requestgroups/$", status=500)
    assert fault.matches("post", "/api/requestgroups/")
    assert not fault.matches("POST", "/api/requestgroups/validate/")
    assert not fault.matches("GET", "/api/requestgroups/")


def test_damage_is_stored_so_the_download_matches_its_md5(
    client: TestClient, clock: ManualClock
) -> None:
    damage = {"kind": "truncated", "group": "S1_", "filter": "rp"}
    assert client.post("/sandbox/damage", json=damage).status_code == 201
    assert client.post("/sandbox/damage", json={"kind": "melted"}).status_code == 422
    rid = completed_request(client, clock)
    records = client.get("/frames/", params={"request_id": rid}, headers=AUTH).json()["results"]
    assert client.get("/sandbox/damage").json() == []  # used up by the one rp frame
    sizes = []
    for record in records:
        data = client.get(record["url"]).content
        assert hashlib.md5(data).hexdigest() == record["version_set"][0]["md5"]
        sizes.append((record["primary_optical_element"], len(data)))
    whole = max(size for _, size in sizes)  # TinyRenderer frames are all the same size
    assert [band for band, size in sizes if size < whole] == ["rp"]
    assert min(size for _, size in sizes) == whole // 2


def test_damage_frame_strips_every_wcs_keyword() -> None:
    header = fits.Header()
    for key, value in {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 10.0,
                       "CRVAL2": -5.0, "CRPIX1": 8.0, "CRPIX2": 8.0, "CD1_1": -1e-4,
                       "CD2_2": 1e-4, "RADESYS": "ICRS", "OBJECT": "kept"}.items():  # fmt: skip
        header[key] = value
    buffer = io.BytesIO()
    fits.PrimaryHDU(data=[[1.0, 2.0]], header=header).writeto(buffer)
    with fits.open(io.BytesIO(damage_frame(buffer.getvalue(), "no_wcs"))) as hdus:
        left = hdus[0].header
        assert left["OBJECT"] == "kept" and hdus[0].data.tolist() == [[1.0, 2.0]]
        assert not [k for k in left if k.startswith(("CTYPE", "CRVAL", "CRPIX", "CD", "RADESYS"))]
