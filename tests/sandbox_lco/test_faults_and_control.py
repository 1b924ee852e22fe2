"""Faults injected into the LCO stand-ins, damaged frames, and the control API's clock."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta

from astropy.io import fits
from fastapi.testclient import TestClient

from followup.lco import make_group_name
from sandbox.lco import Fault, ManualClock, damage_frame
from tests.lco_support import AUTH
from tests.sandbox_lco.support import completed_request, payload, submit

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
