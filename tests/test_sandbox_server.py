"""Every stand-in runs in one process on its own port and answers the real clients."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from followup.lco import (
    ArchiveClient,
    PortalClient,
    RequestGroupSpec,
    build_request_group,
    make_group_name,
)
from followup.models import Measurement, ObservingStrategy, Target
from followup.reporting.gcn import GcnCircularsClient, draft_circular
from followup.reporting.hermes import HermesClient, build_hermes_message
from followup.reporting.tns import TnsClient
from sandbox.server import SandboxConfig, SandboxServer, SandboxUrls
from sandbox.specs import Transient

pytestmark = pytest.mark.slow

PEAK = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = SandboxConfig(
        renderer="header-only",
        completion_delay_s=0.5,
        cache_dir=str(tmp_path_factory.mktemp("frames")),
        transients=[
            Transient(
                name="AT-demo",
                ra=150.0,
                dec=-20.0,
                peak_mag={"rp": 18.0},
                peak_time=PEAK,
                decline_mag_per_day=0.5,
            )
        ],
    )
    with SandboxServer(config) as running:
        yield running


def test_each_service_has_its_own_port(server) -> None:
    urls = server.urls
    ports = {
        getattr(urls, name).rsplit(":", 1)[1]
        for name in ("portal", "archive", "hermes", "tns", "gcn", "webhook", "vizier", "control")
    }
    assert len(ports) == 8


def test_portal_and_archive_share_state(server) -> None:
    urls = server.urls
    portal = PortalClient(urls.lco_token, base_url=urls.portal)
    archive = ArchiveClient(urls.lco_token, base_url=urls.archive)
    target = Target(name="F001", ra=150.0, dec=-20.0, kind="field", rank=1, probability=0.5)
    strategy = ObservingStrategy(name="t", filters=["rp"], exposure_time_s=60)
    now = datetime.now(UTC)
    name = make_group_name("S250101ab", "F001", filters=["rp"])
    group = portal.submit_request_group(
        build_request_group(
            RequestGroupSpec(
                target=target,
                strategy=strategy,
                proposal=urls.proposal_id,
                group_name=name,
                window_start=now,
                window_end=now + timedelta(hours=24),
            )
        )
    )
    request_id = group.request_ids[0]
    # Ids start far above the portal's defaults, so a fresh sandbox never reuses an old id.
    assert request_id > 1_000_000_000
    deadline = time.monotonic() + 10
    while portal.get_request(request_id).state.value != "COMPLETED":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    frames = archive.list_frames(request_id)
    assert [f.request_id for f in frames] == [request_id]
    assert frames[0].reduction_level == 91 and frames[0].filter == "rp"


def test_reporting_stand_ins_answer_the_real_clients(server) -> None:
    urls = server.urls
    target = Target(name="AT-demo", ra=150.0, dec=-20.0, kind="point", rank=1, probability=1)
    message = build_hermes_message(
        "S250101ab", [target], [], title="LCO follow-up of S250101ab", authors="A. Astronomer"
    )
    receipt = HermesClient(urls.hermes_token, base_url=urls.hermes).submit_message(message)
    assert receipt.uuid
    tns_client = TnsClient(
        urls.tns_api_key,
        bot_id=urls.tns_bot_id,
        bot_name=urls.tns_bot_name,
        base_url=f"{urls.tns}/api/",
    )
    assert tns_client.search(150.0, -20.0, 5.0) == []
    limit = Measurement(
        target_name="AT-demo",
        frame_basename="cpt1m010-fa16-20250101-0001-e91",
        date_obs=PEAK,
        mjd=60676.0,
        band="rp",
        flux_ujy=1.0,
        flux_err_ujy=2.0,
        snr=0.5,
        limit_mag_5sigma=21.3,
        zero_point=23.9,
        zero_point_err=0.02,
        n_ref_stars=30,
    )
    circular = draft_circular(
        "S250101ab", [limit], observers=["A. Astronomer (LCO)"], team="followup"
    )
    record = GcnCircularsClient(urls.gcn_token, base_url=urls.gcn).submit_circular(circular)
    assert record.circular_id >= 40000
    hook = httpx.post(f"{urls.webhook}/hooks/alarm", json={"text": "listener silent"})
    assert hook.status_code < 300


def test_vizier_stand_in_answers_astroquery_with_the_sky_s_stars(server) -> None:
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    from followup.catalogs import VizierCatalog

    stars = VizierCatalog("refcat2", server=server.urls.vizier, mag_limit=19.0).query(
        SkyCoord(150.0, -20.0, unit="deg"), 10 * u.arcmin
    )
    truth = server.sky.reference_catalog(150.0, -20.0, 10 / 60)
    assert len(stars) == int((truth["rmag"] < 19.0).sum()) > 10
    assert float(stars["r"].max()) < 19.0


def test_control_app_reports_the_truth(server) -> None:
    config = httpx.get(f"{server.urls.control}/sandbox/config").json()
    assert config["urls"]["portal"] == server.urls.portal
    rows = httpx.get(
        f"{server.urls.control}/sandbox/truth",
        params={"band": "rp", "time": "2025-01-03T00:00:00Z"},
    ).json()
    assert rows == [
        {
            "name": "AT-demo",
            "ra": 150.0,
            "dec": -20.0,
            "band": "rp",
            "time": "2025-01-03T00:00:00Z",
            "mag": 19.0,
        }
    ]
    assert (
        httpx.get(f"{server.urls.control}/sandbox/truth", params={"band": "gp"}).status_code == 404
    )


def test_module_runs_as_a_process_and_writes_its_urls(tmp_path) -> None:
    config = tmp_path / "sandbox.json"
    config.write_text(
        SandboxConfig(renderer="header-only", cache_dir=str(tmp_path)).model_dump_json()
    )
    out = tmp_path / "urls.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.server", "--config", str(config), "--urls-out", str(out)],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not out.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        urls = SandboxUrls.model_validate(json.loads(out.read_text()))
        assert httpx.get(f"{urls.control}/sandbox/config").status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def science_pixels(config: SandboxConfig) -> dict[tuple[str, int], tuple]:
    """Run a sandbox, observe one request in gp and rp, and read back its science frames.

    Returns (filter, level) -> (basename, SCI pixels, CAT rows) of each frame.
    """
    from astropy.io import fits

    with SandboxServer(config) as running:
        urls = running.urls
        portal = PortalClient(urls.lco_token, base_url=urls.portal)
        target = Target(name="F002", ra=150.0, dec=-20.0, kind="field", rank=1, probability=0.5)
        strategy = ObservingStrategy(name="t", filters=["gp", "rp"], exposure_time_s=30)
        now = datetime.now(UTC)
        group = portal.submit_request_group(
            build_request_group(
                RequestGroupSpec(
                    target=target,
                    strategy=strategy,
                    proposal=urls.proposal_id,
                    group_name=make_group_name("S250102ab", "F002", filters=["gp", "rp"]),
                    window_start=now,
                    window_end=now + timedelta(hours=24),
                )
            )
        )
        request_id = group.request_ids[0]
        deadline = time.monotonic() + 30
        while portal.get_request(request_id).state.value != "COMPLETED":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        auth = {"Authorization": f"Token {urls.lco_token}"}
        records = httpx.get(
            f"{urls.archive}/frames/", params={"request_id": request_id}, headers=auth, timeout=60
        ).json()["results"]
        frames = {}
        for record in records:
            data = httpx.get(record["url"], timeout=60).content
            with fits.open(io.BytesIO(data)) as hdus:
                catalog = hdus["CAT"].data.tolist() if "CAT" in hdus else None
                frames[(record["primary_optical_element"], record["reduction_level"])] = (
                    record["basename"],
                    hdus["SCI"].data.copy(),
                    catalog,
                )
    return frames


def test_the_same_seed_serves_the_same_sky_and_another_seed_another(tmp_path) -> None:
    """Two sandboxes with one seed serve the same pixels for the same request; names differ."""
    import numpy as np

    def config(seed: int, folder: str) -> SandboxConfig:
        steady = Transient(
            name="AT-steady",
            ra=150.002,
            dec=-20.001,
            peak_mag={"gp": 18.5, "rp": 18.2},
            peak_time=PEAK,
        )
        return SandboxConfig(
            seed=seed,
            completion_delay_s=0.5,
            frame_shape=(256, 256),
            cache_dir=str(tmp_path / folder),
            transients=[steady],
        )

    first = science_pixels(config(11, "a"))
    observed = time.monotonic()
    other = science_pixels(config(12, "c"))
    # The replay's exposure starts in a later frame-number step (8.7 s) of the night.
    time.sleep(max(0.0, 9 - (time.monotonic() - observed)))
    replay = science_pixels(config(11, "b"))
    assert set(first) == set(replay) == set(other) == {("gp", 0), ("gp", 91), ("rp", 0), ("rp", 91)}
    for key, (name, pixels, catalog) in first.items():
        again_name, again, again_catalog = replay[key]
        assert again_name != name  # another exposure, another basename...
        np.testing.assert_array_equal(again, pixels)  # ...of the same sky
        assert again_catalog == catalog
        assert not np.array_equal(other[key][1], pixels)
