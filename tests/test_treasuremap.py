"""The Treasure Map client (respx, and against the stand-in) and the stand-in's refusals."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import httpx
import pytest
import respx

from followup.exceptions import AuthenticationError, RequestRejected, UncertainOutcome
from followup.treasuremap import (
    Pointing,
    PointingStatus,
    TreasureMapClient,
    gwtm_band,
)
from sandbox.treasuremap import DEFAULT_TOKEN, TreasureMapState, create_app
from tests.reporting.conftest import AppTransport

BASE = "https://gwtm.example.org/"
TOKEN = "tm-secret-token-123"
WHEN = datetime(2026, 3, 14, 7, 30, tzinfo=UTC)


def planned(ra: float = 150.0, **kw) -> Pointing:
    return Pointing(ra=ra, dec=-20.5, instrumentid=101, band="r", time=WHEN, depth=21.0, **kw)


@pytest.fixture
def state() -> TreasureMapState:
    return TreasureMapState()


@pytest.fixture
def client(state):
    c = TreasureMapClient(
        DEFAULT_TOKEN, base_url="http://testserver", transport=AppTransport(create_app(state))
    )
    yield c
    c.close()


# ----------------------------------------------------------------------------- payloads
def test_bands_and_payloads():
    assert gwtm_band("rp") == "r" and gwtm_band("zs") == "z" and gwtm_band("V") == "V"
    with pytest.raises(ValueError, match="no Treasure Map band"):
        gwtm_band("w")
    assert planned().to_payload() == {
        "ra": 150.0,
        "dec": -20.5,
        "instrumentid": 101,
        "band": "r",
        "time": "2026-03-14T07:30:00.000000",
        "status": "planned",
        "depth_unit": "ab_mag",
        "depth": 21.0,
        "pos_angle": 0.0,
    }
    done = Pointing(id=7, time=WHEN, status=PointingStatus.COMPLETED, depth=20.6)
    assert done.to_payload() == {
        "id": 7,
        "status": "completed",
        "time": "2026-03-14T07:30:00.000000",
        "depth_unit": "ab_mag",
        "depth": 20.6,
    }
    with pytest.raises(ValueError, match="needs ra, dec"):
        Pointing(time=WHEN).to_payload()


# ----------------------------------------------------------------------------- respx
@respx.mock(base_url=BASE)
def test_token_goes_in_the_body_and_never_in_messages(respx_mock, caplog):
    route = respx_mock.post("api/v0/pointings").mock(
        return_value=httpx.Response(500, text=f"Invalid api_token {TOKEN}")
    )
    client = TreasureMapClient(TOKEN, base_url=BASE)
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthenticationError) as err:
        client.post_pointings("S260314ab", [planned()])
    sent = json.loads(route.calls[0].request.content)
    assert sent["api_token"] == TOKEN and sent["graceid"] == "S260314ab"
    assert TOKEN not in str(err.value) and TOKEN not in caplog.text
    assert TOKEN not in str(route.calls[0].request.url)
    assert TOKEN not in repr(client)


@respx.mock(base_url=BASE)
def test_other_500s_are_uncertain_after_a_post(respx_mock):
    respx_mock.post("api/v0/pointings").mock(return_value=httpx.Response(500, text="boom"))
    with pytest.raises(UncertainOutcome):
        TreasureMapClient(TOKEN, base_url=BASE).post_pointings("S260314ab", [planned()])


@respx.mock(base_url=BASE)
def test_ids_are_matched_to_the_pointings_around_refusals(respx_mock):
    a, b, c = planned(150.0), planned(151.0), planned(152.0)
    respx_mock.post("api/v0/pointings").mock(
        return_value=httpx.Response(
            200,
            json={
                "pointing_ids": [11, 13],
                "ERRORS": [["Object: " + json.dumps(b.to_payload()), ["Invalid instrumentid"]]],
                "WARNINGS": [],
            },
        )
    )
    receipt = TreasureMapClient(TOKEN, base_url=BASE).post_pointings("S1", [a, b, c])
    assert receipt.ids == [11, None, 13] and receipt.errors == {1: ["Invalid instrumentid"]}


@respx.mock(base_url=BASE)
def test_a_refusal_naming_nothing_posted_is_uncertain(respx_mock):
    respx_mock.post("api/v0/pointings").mock(
        return_value=httpx.Response(
            200, json={"pointing_ids": [], "ERRORS": [["Object: {}", ["x"]]], "WARNINGS": []}
        )
    )
    with pytest.raises(UncertainOutcome, match="names no posted pointing"):
        TreasureMapClient(TOKEN, base_url=BASE).post_pointings("S1", [planned()])


# ----------------------------------------------------------------------------- the stand-in
def test_plan_complete_cancel_and_list(client, state):
    receipt = client.post_pointings("S260314ab", [planned(150.0), planned(151.0)])
    assert receipt.ids == [1, 2] and not receipt.errors
    done = client.post_pointings(
        "S260314ab", [Pointing(id=1, time=WHEN, status=PointingStatus.COMPLETED, depth=20.7)]
    )
    assert done.ids == [1]
    assert client.cancel_pointings([2]) == 1
    assert client.cancel_pointings([1]) == 0  # a completed pointing is not cancelled
    listed = {p.id: p for p in client.get_pointings("S260314ab")}
    assert listed[1].status == "completed" and listed[1].depth == 20.7
    assert (listed[1].ra, listed[1].dec, listed[1].band) == (150.0, -20.5, "r")
    assert listed[2].status == "cancelled"
    again = client.post_pointings(
        "S260314ab", [Pointing(id=2, time=WHEN, status=PointingStatus.COMPLETED, depth=20.7)]
    )
    assert again.ids == [None] and again.errors == {0: ["This pointing has already been cancelled"]}
    assert [p.id for p in client.get_pointings("S260314ab", status=PointingStatus.PLANNED)] == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"band": "rp"}, 'Field "band" is invalid'),
        ({"instrumentid": 999}, "Invalid instrumentid"),
        ({"status": "cancelled"}, "Invalid status"),
        ({"ra": "ten"}, "Invalid position argument"),
        ({"time": "yesterday"}, "Error parsing date"),
        ({"status": "completed", "depth": None}, "depth is required for completed observations"),
        ({"depth_unit": "mag"}, "Invalid depth_unit"),
        ({"depth_unit": None}, "depth_unit is required"),
        ({"instrumentid": None}, "Field instrumentid is required"),
        ({"time": None}, 'Field "time" is required'),
    ],
)
def test_the_stand_in_refuses_what_the_real_api_refuses(state, change, reason):
    app = create_app(state)
    payload = {**planned().to_payload(), **change}
    payload = {k: v for k, v in payload.items() if v is not None}
    with AppTransport(app).client as http:
        answer = http.post(
            "/api/v0/pointings",
            json={"api_token": DEFAULT_TOKEN, "graceid": "S260314ab", "pointings": [payload]},
        )
    body = answer.json()
    assert answer.status_code == 200 and body["pointing_ids"] == []
    assert any(reason in r for r in body["ERRORS"][0][1]), body["ERRORS"]
    assert body["ERRORS"][0][0] == "Object: " + json.dumps(payload)
    assert not state.pointings


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"graceid": "S260314ab", "pointings": []}, "api_token is required"),
        ({"api_token": "nope", "graceid": "S1"}, "Invalid api_token"),
        ({"api_token": DEFAULT_TOKEN}, "graceid is required"),
        (
            {"api_token": DEFAULT_TOKEN, "graceid": "Swift-1125809"},
            "Invalid graceid",
        ),
    ],
)
def test_whole_request_refusals_are_500_text(state, body, message):
    with AppTransport(create_app(state)).client as http:
        answer = http.post("/api/v0/pointings", json=body)
    assert answer.status_code == 500 and answer.text.startswith(message)


def test_client_reads_the_refusals(state):
    bad = TreasureMapClient(
        "wrong", base_url="http://testserver", transport=AppTransport(create_app(state))
    )
    with pytest.raises(AuthenticationError, match="Invalid api_token"):
        bad.post_pointings("S260314ab", [planned()])
    good = TreasureMapClient(
        DEFAULT_TOKEN, base_url="http://testserver", transport=AppTransport(create_app(state))
    )
    with pytest.raises(RequestRejected, match="Invalid graceid"):
        good.post_pointings("GRB 250101A", [planned()])


# ----------------------------------------------------------------------------- the Block
def test_the_block_builds_a_client_and_keeps_the_token_masked(state):
    from blocks import TreasureMapCredentials

    block = TreasureMapCredentials(
        api_token=DEFAULT_TOKEN, base_url="http://testserver", instrument_ids={"Sinistro": 101}
    )
    assert DEFAULT_TOKEN not in repr(block) and DEFAULT_TOKEN not in block.model_dump_json()
    client = block.get_client(transport=AppTransport(create_app(state)))
    assert client.post_pointings("S260314ab", [planned()]).ids == [1]


# ----------------------------------------------------------------------------- sharing
def test_share_plans_completes_and_cancels_once(client, state):
    from followup.ledger import Ledger
    from followup.treasuremap import FieldPointing, share_pointings

    ledger = Ledger("sqlite:///:memory:")
    ledger.migrate()
    ids = {"Sinistro": 101}

    def field(name: str, **kw) -> FieldPointing:
        values = {"ra": 150.0, "dec": -20.0, "band": "rp", "planned_time": WHEN, **kw}
        return FieldPointing(target_name=name, **values)

    fields = [field("F1"), field("F2"), field("F3", camera="QHY600"), field("F4", band="w")]
    rows = share_pointings(ledger, client, "S260314ab", fields, instrument_ids=ids)
    by_name = {r.target_name: r for r in rows}
    assert by_name["F1"].remote_id == 1 and by_name["F2"].remote_id == 2
    assert "no Treasure Map instrument id" in by_name["F3"].error
    assert "no Treasure Map band" in by_name["F4"].error
    assert [p["status"] for p in state.pointings.values()] == ["planned", "planned"]

    # a second call with nothing new posts nothing
    share_pointings(ledger, client, "S260314ab", fields, instrument_ids=ids)
    assert len(state.pointings) == 2

    observed = WHEN.replace(hour=8)
    later = [
        field("F1", status=PointingStatus.COMPLETED, depth=20.8, observed_time=observed),
        field("F2", status=PointingStatus.CANCELLED),
        field("F5", status=PointingStatus.COMPLETED, depth=21.1, observed_time=observed),
    ]
    rows = {
        r.target_name: r
        for r in share_pointings(ledger, client, "S260314ab", later, instrument_ids=ids)
    }
    assert state.pointings[1]["status"] == "completed" and state.pointings[1]["depth"] == 20.8
    assert state.pointings[2]["status"] == "cancelled"
    assert state.pointings[3]["status"] == "completed" and state.pointings[3]["band"] == "r"
    assert rows["F1"].status == "completed" and rows["F1"].depth == 20.8
    assert rows["F2"].status == "cancelled" and rows["F5"].remote_id == 3
    share_pointings(ledger, client, "S260314ab", later, instrument_ids=ids)
    assert len(state.pointings) == 3
