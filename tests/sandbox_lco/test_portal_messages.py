"""The LCO portal stand-in refuses what the portal refuses, in its words; time is debited."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sandbox.lco import LcoSandboxState, ManualClock, create_app
from sandbox.lco.configdb import semester as lco_semester
from tests.lco_support import AUTH, TOKEN
from tests.sandbox_lco.support import payload, submit

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
