"""HERMES: message builder, client (respx) with HERMES's quirks, and the sandbox stand-in."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import respx
from pydantic import SecretStr, ValidationError

from followup.exceptions import (
    AuthenticationError,
    RequestRejected,
    ServiceUnavailable,
    UncertainOutcome,
)
from followup.reporting.hermes import (
    HermesClient,
    HermesMessage,
    HermesPhotometry,
    HermesTarget,
    build_hermes_message,
    is_public_topic,
)
from sandbox.fault_queue import Fault
from sandbox.hermes import (
    DEFAULT_TOKEN,
    NO_CREDENTIAL_ERROR,
    HermesSandboxState,
    create_app,
    validate_hermes_message,
)
from tests.reporting.conftest import AppTransport, make_measurement, make_target

BASE = "https://hermes.example.org/"
TOKEN = "hermes-secret-token-123"


@pytest.fixture
def message(target, candidate_points) -> HermesMessage:
    return build_hermes_message(
        "S260314ab",
        [target],
        candidate_points,
        title="LCO photometry of S260314ab candidates",
        authors="A. Author (LCO), B. Author (UCSB)",
        message_text="Forced photometry of the candidate.",
        catalog="ATLAS-REFCAT2",
    )


@pytest.fixture
def hermes() -> HermesClient:
    with HermesClient(TOKEN, base_url=BASE) as client:
        yield client


# ----------------------------------------------------------------------------- builder
def test_builder_detections_carry_brightness_and_limits_alone(message):
    payload = message.to_payload()
    assert payload["topic"] == "hermes.test"
    assert payload["submitter"] == "followup"
    assert payload["data"]["event_id"] == "S260314ab"
    assert payload["data"]["targets"] == [
        {"name": "S260314ab-C1", "ra": 150.123456, "dec": -20.654321}
    ]
    limit, det_r, det_g = payload["data"]["photometry"]
    assert limit["limiting_brightness"] == 21.5 and limit["limiting_brightness_unit"] == "AB mag"
    assert "brightness" not in limit and "brightness_error" not in limit
    assert det_r["brightness"] == 19.61 and det_r["brightness_error"] == 0.08
    assert det_r["brightness_unit"] == "AB mag" and "limiting_brightness" not in det_r
    assert [p["bandpass"] for p in (limit, det_r, det_g)] == ["r", "r", "g"]
    assert det_r["date_obs"] == "2026-03-14T11:00:00.000"
    assert det_r["telescope"] == "LCO 1-m" and det_r["instrument"] == "LCO1m - Sinistro"
    assert det_r["exposure_time"] == 300.0 and det_r["catalog"] == "ATLAS-REFCAT2"
    assert "55 +/- 4 uJy" in det_r["comments"]


def test_builder_sorts_points_by_time(target):
    late, early = make_measurement(hours=9.0, mag=19.0), make_measurement(hours=1.0)
    msg = build_hermes_message("S1", [target], [late, early], title="t", authors="a")
    assert [p.date_obs for p in msg.data.photometry] == sorted(
        p.date_obs for p in msg.data.photometry
    )


def test_builder_refuses_measurements_of_unknown_targets(target):
    with pytest.raises(ValueError, match="not given"):
        build_hermes_message(
            "S1", [target], [make_measurement(target="other")], title="t", authors="a"
        )


def test_builder_refuses_duplicate_target_names():
    with pytest.raises(ValueError, match="unique"):
        build_hermes_message("S1", [make_target(), make_target()], [], title="t", authors="a")


def test_models_mirror_hermes_rules():
    with pytest.raises(ValidationError, match="brightness or limiting_brightness"):
        HermesPhotometry(target_name="x", date_obs="2026-01-01", telescope="LCO", bandpass="r")
    with pytest.raises(ValidationError, match="telescope or an instrument"):
        HermesPhotometry(target_name="x", date_obs="2026-01-01", bandpass="r", brightness=19.0)
    with pytest.raises(ValidationError, match="ra and dec together"):
        HermesTarget(name="x", ra=10.0)
    with pytest.raises(ValidationError, match="brightness_unit"):
        HermesPhotometry(
            target_name="x",
            date_obs="2026-01-01",
            telescope="L",
            bandpass="r",
            brightness=1.0,
            brightness_unit="Jy",
        )


def test_public_topics():
    assert not is_public_topic("hermes.test")
    assert not is_public_topic("hermes.test.drill")
    assert is_public_topic("hermes.photometry")
    assert is_public_topic("gcn.circulars")
    with pytest.raises(ValueError):
        is_public_topic(" ")


def test_builder_output_passes_the_stand_in_validation(message):
    assert validate_hermes_message(message.to_payload(), dev_server=True) == {}


# ----------------------------------------------------------------------------- client (respx)
@respx.mock(base_url=BASE)
def test_validate_sends_token_and_json(respx_mock, hermes, message):
    route = respx_mock.post("api/v0/submit_message/validate/").respond(200, json={})
    assert hermes.validate_message(message) is None
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Token {TOKEN}"
    assert request.headers["User-Agent"].startswith("followup/")
    assert json.loads(request.content)["data"]["photometry"][1]["brightness"] == 19.61


@respx.mock(base_url=BASE)
def test_validate_errors_with_status_200_are_raised(respx_mock, hermes, message):
    errors = {
        "data": {
            "photometry": [{}, {"brightness": ["brightness or limiting_brightness are required"]}]
        }
    }
    respx_mock.post("api/v0/submit_message/validate/").respond(200, json=errors)
    with pytest.raises(RequestRejected) as info:
        hermes.validate_message(message)
    assert info.value.body == errors
    assert "data.photometry[1].brightness" in str(info.value)


@respx.mock(base_url=BASE)
def test_submit_returns_the_uuid(respx_mock, hermes, message):
    echoed = {**message.to_payload(), "uuid": "0f6b0e4c-5c1f-4b8e-9a43-2f1e0f1d2a3b"}
    respx_mock.post("api/v0/submit_message/").respond(200, json=echoed)
    receipt = hermes.submit_message(message)
    assert receipt.uuid == uuid.UUID("0f6b0e4c-5c1f-4b8e-9a43-2f1e0f1d2a3b")
    assert receipt.topic == "hermes.test" and receipt.event_id == "S260314ab"
    assert receipt.url == f"{BASE}message/0f6b0e4c-5c1f-4b8e-9a43-2f1e0f1d2a3b"


@respx.mock(base_url=BASE)
def test_submit_error_with_status_200_is_never_a_success(respx_mock, hermes, message):
    respx_mock.post("api/v0/submit_message/").respond(200, json={"error": NO_CREDENTIAL_ERROR})
    with pytest.raises(AuthenticationError, match="SCIMMA auth credential") as info:
        hermes.submit_message(message)
    assert info.value.status_code == 200


@respx.mock(base_url=BASE)
def test_other_error_with_status_200_is_a_rejection(respx_mock, hermes, message):
    respx_mock.post("api/v0/submit_message/").respond(200, json={"error": "Something odd"})
    with pytest.raises(RequestRejected, match="Something odd"):
        hermes.submit_message(message)


@respx.mock(base_url=BASE)
def test_submit_200_without_uuid_is_uncertain(respx_mock, hermes, message):
    respx_mock.post("api/v0/submit_message/").respond(200, json=message.to_payload())
    with pytest.raises(UncertainOutcome, match="without a message uuid"):
        hermes.submit_message(message)


@respx.mock(base_url=BASE)
def test_submit_serializer_errors_400(respx_mock, hermes, message):
    errors = {"title": ["This field is required."]}
    respx_mock.post("api/v0/submit_message/").respond(400, json=errors)
    with pytest.raises(RequestRejected) as info:
        hermes.submit_message(message)
    assert info.value.status_code == 400 and info.value.body == errors


@respx.mock(base_url=BASE)
def test_submit_error_400(respx_mock, hermes, message):
    body = {"error": "Error posting message to kafka: boom"}
    respx_mock.post("api/v0/submit_message/").respond(400, json=body)
    with pytest.raises(RequestRejected, match="kafka") as info:
        hermes.submit_message(message)
    assert info.value.body == body


@respx.mock(base_url=BASE)
def test_bad_token_403(respx_mock, hermes, message):
    respx_mock.post("api/v0/submit_message/").respond(403, json={"detail": "Invalid token."})
    with pytest.raises(AuthenticationError, match="Invalid token"):
        hermes.submit_message(message)


@respx.mock(base_url=BASE)
def test_5xx_on_submit_is_uncertain_but_on_validate_unavailable(respx_mock, hermes, message):
    respx_mock.post("api/v0/submit_message/").respond(502, text="Bad Gateway")
    respx_mock.post("api/v0/submit_message/validate/").respond(502, text="Bad Gateway")
    with pytest.raises(UncertainOutcome):
        hermes.submit_message(message)
    with pytest.raises(ServiceUnavailable) as info:
        hermes.validate_message(message)
    assert not isinstance(info.value, UncertainOutcome)


@respx.mock(base_url=BASE)
def test_503_and_429_carry_retry_after(respx_mock, hermes, message):
    respx_mock.post("api/v0/submit_message/").respond(429, headers={"Retry-After": "17"}, json={})
    with pytest.raises(ServiceUnavailable) as info:
        hermes.submit_message(message)
    assert info.value.retry_after == 17 and not isinstance(info.value, UncertainOutcome)


@respx.mock(base_url=BASE)
def test_transport_failures(respx_mock, hermes, message):
    respx_mock.post("api/v0/submit_message/").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ServiceUnavailable) as info:
        hermes.submit_message(message)
    assert not isinstance(info.value, UncertainOutcome)
    respx_mock.post("api/v0/submit_message/").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(UncertainOutcome, match="may have acted"):
        hermes.submit_message(message)


@respx.mock(base_url=BASE)
def test_token_never_leaks(respx_mock, hermes, message):
    respx_mock.post("api/v0/submit_message/").respond(400, json={"error": f"bad token {TOKEN}"})
    with pytest.raises(RequestRejected) as info:
        hermes.submit_message(message)
    assert TOKEN not in str(info.value) and TOKEN not in json.dumps(info.value.body)
    assert TOKEN not in repr(hermes) and TOKEN not in repr(hermes._client.auth)


def test_client_needs_a_token():
    with pytest.raises(ValueError):
        HermesClient(SecretStr(""))


# ----------------------------------------------------------------------------- the stand-in
@pytest.fixture
def sandbox_state() -> HermesSandboxState:
    return HermesSandboxState(tokens={DEFAULT_TOKEN: "ann"}, tokens_without_credential={"no-cred"})


@pytest.fixture
def http(sandbox_state) -> httpx.Client:
    with httpx.Client(
        base_url="http://testserver/", transport=AppTransport(create_app(sandbox_state))
    ) as client:
        yield client


def _valid() -> dict:
    return {
        "title": "t",
        "topic": "hermes.test",
        "submitter": "me",
        "data": {
            "targets": [{"name": "A", "ra": "10:00:00", "dec": "-20:00:00"}],
            "photometry": [
                {
                    "target_name": "A",
                    "date_obs": "2460000.5",
                    "telescope": "LCO",
                    "bandpass": "r",
                    "brightness": 19,
                }
            ],
        },
    }


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            lambda m: m.pop("title"), {"title": ["This field is required."]}, id="title required"
        ),
        pytest.param(
            lambda m: m.pop("submitter"),
            {"submitter": ["This field is required."]},
            id="submitter required",
        ),
        pytest.param(
            lambda m: m["data"]["photometry"][0].pop("brightness"),
            {
                "data": {
                    "photometry": [
                        {
                            "brightness": ["brightness or limiting_brightness are required"],
                            "limiting_brightness": [
                                "brightness or limiting_brightness are required"
                            ],
                        }
                    ]
                }
            },
            id="brightness or limit",
        ),
        pytest.param(
            lambda m: m["data"]["photometry"][0].update(target_name="B"),
            {
                "data": {
                    "photometry": [
                        {
                            "target_name": [
                                "The target_name must reference a name in your target table"
                            ]
                        }
                    ]
                }
            },
            id="target_name must match",
        ),
        pytest.param(
            lambda m: m["data"]["targets"][0].pop("dec"),
            {"data": {"targets": [{"dec": ["Must set dec if ra is set"]}]}},
            id="ra needs dec",
        ),
        pytest.param(
            lambda m: m["data"]["targets"][0].update(ra="nonsense"),
            {"data": {"targets": [{"ra": ["Must be in a format astropy understands"]}]}},
            id="ra format",
        ),
        pytest.param(
            lambda m: m["data"]["photometry"][0].update(date_obs="999"),
            {
                "data": {
                    "photometry": [
                        {
                            "date_obs": [
                                "Date 999.0 in JD format must be within bounds of 2400000 to 2600000, and in MJD format within bounds of 15000 to 150000."
                            ]
                        }
                    ]
                }
            },
            id="date bounds",
        ),
        pytest.param(
            lambda m: m["data"]["photometry"][0].pop("telescope"),
            {
                "data": {
                    "photometry": [
                        {
                            "telescope": ["Must have at least one of telescope or instrument set"],
                            "instrument": ["Must have at least one of telescope or instrument set"],
                        }
                    ]
                }
            },
            id="telescope or instrument",
        ),
    ],
)
def test_stand_in_validation_rules(http, change, expected):
    message = _valid()
    change(message)
    response = http.post("api/v0/submit_message/validate/", json=message)
    assert response.status_code == 200
    assert response.json() == expected
    submitted = http.post(
        "api/v0/submit_message/", json=message, headers={"Authorization": f"Token {DEFAULT_TOKEN}"}
    )
    assert submitted.status_code == 400 and submitted.json() == expected


def test_stand_in_dev_server_topic_rule():
    state = HermesSandboxState(dev_server=True)
    message = {**_valid(), "topic": "hermes.photometry"}
    assert validate_hermes_message(message, dev_server=True) == {
        "topic": ["Hermes Dev can only submit to a test topic."]
    }
    with httpx.Client(
        base_url="http://testserver/", transport=AppTransport(create_app(state))
    ) as http:
        response = http.post("api/v0/submit_message/validate/", json=message)
    assert response.json() == {"topic": ["Hermes Dev can only submit to a test topic."]}


def test_stand_in_auth_and_the_error_200_quirk(http, sandbox_state):
    bad = http.post(
        "api/v0/submit_message/", json=_valid(), headers={"Authorization": "Token nope"}
    )
    assert bad.status_code == 403 and bad.json() == {"detail": "Invalid token."}
    anonymous = http.post("api/v0/submit_message/", json=_valid())
    assert anonymous.status_code == 200 and anonymous.json() == {"error": NO_CREDENTIAL_ERROR}
    no_cred = http.post(
        "api/v0/submit_message/", json=_valid(), headers={"Authorization": "Token no-cred"}
    )
    assert no_cred.status_code == 200 and "error" in no_cred.json()
    assert sandbox_state.messages == []


def test_stand_in_publishes_and_echoes(http, sandbox_state):
    response = http.post(
        "api/v0/submit_message/", json=_valid(), headers={"Authorization": f"Token {DEFAULT_TOKEN}"}
    )
    assert response.status_code == 200
    body = response.json()
    uuid.UUID(body["uuid"])
    target = body["data"]["targets"][0]
    assert target["ra"] == pytest.approx(150.0) and target["dec"] == pytest.approx(-20.0)
    assert body["data"]["photometry"][0]["brightness_unit"] == "AB mag"
    listed = http.get("sandbox/messages").json()
    assert [m["uuid"] for m in listed] == [body["uuid"]] and listed[0]["user"] == "ann"


def test_client_against_stand_in(sandbox_state, message):
    transport = AppTransport(create_app(sandbox_state))
    with HermesClient(DEFAULT_TOKEN, base_url="http://testserver/", transport=transport) as hermes:
        hermes.validate_message(message)
        receipt = hermes.submit_message(message)
        assert [m["uuid"] for m in sandbox_state.messages] == [str(receipt.uuid)]
        sandbox_state.faults.add(Fault(kind="error_200", endpoint="submit"))
        with pytest.raises(AuthenticationError):
            hermes.submit_message(message)
        broken = message.model_copy(deep=True)
        broken.data.photometry[0].target_name = "missing"  # bypasses the model check on purpose
        with pytest.raises(RequestRejected) as info:
            hermes.validate_message(broken.model_dump(mode="json", exclude_none=True))
        assert "target_name" in json.dumps(info.value.body)
    assert len(sandbox_state.messages) == 1
    with (
        HermesClient(
            "wrong",
            base_url="http://testserver/",
            transport=AppTransport(create_app(sandbox_state)),
        ) as h,
        pytest.raises(AuthenticationError),
    ):
        h.validate_message(message)


def test_stand_in_fault_control(http):
    assert http.post("sandbox/faults", json={"kind": "nope"}).status_code == 400
    assert (
        http.post(
            "sandbox/faults", json={"kind": "status", "endpoint": "submit", "status": 503}
        ).status_code
        == 201
    )
    assert len(http.get("sandbox/faults").json()) == 1
    response = http.post(
        "api/v0/submit_message/", json=_valid(), headers={"Authorization": f"Token {DEFAULT_TOKEN}"}
    )
    assert response.status_code == 503
    assert http.get("sandbox/faults").json() == []
    assert http.post("sandbox/reset").status_code == 204
