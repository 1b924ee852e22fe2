"""The LCO archive stand-in: basenames, seeded pixels, frames at completion, downloads."""

from __future__ import annotations

import hashlib
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from astropy.io import fits
from fastapi.testclient import TestClient

from sandbox.lco import LcoSandboxState, ManualClock, create_app
from sandbox.lco.archive import SITE_LONGITUDES
from sandbox.times import parse_datetime
from tests.lco_support import AUTH, TOKEN, TinyRenderer
from tests.sandbox_lco.support import completed_request, payload, submit

# ------------------------------------------------------------------------------ archive


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
