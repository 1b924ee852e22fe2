"""The LCO portal stand-in's API: auth, shapes, reads, listing and redirects."""

from __future__ import annotations

import time
from datetime import timedelta

from fastapi.testclient import TestClient

from sandbox.lco import ManualClock
from tests.lco_support import AUTH
from tests.sandbox_lco.support import payload, submit

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
