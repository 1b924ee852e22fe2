"""The sandbox serves sky maps at GraceDB's paths, for notices that carry only a URL."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from followup.alerts import parse_message
from followup.alerts.mock import make_lvk_alert
from followup.exceptions import SkymapError
from followup.skymap import SkyMap, make_gaussian_skymap
from followup.skymap.fetch import SkymapFetcher, with_fetched_skymap
from sandbox.server import SandboxConfig, create_control_app
from tests.lco_support import serve


def test_a_url_only_alert_gets_the_map_the_sandbox_serves() -> None:
    first = make_gaussian_skymap(60.0, -30.0, 0.5, object_name="S261206ur")
    second = make_gaussian_skymap(61.0, -29.5, 0.4, object_name="S261206ur")
    with serve(create_control_app(SandboxConfig(), {})) as url:
        for data in (first, second):
            put = httpx.put(
                f"{url}/sandbox/skymaps/S261206ur/bayestar.multiorder.fits", content=data
            )
            assert put.status_code == 201
        assert put.json()["path"].endswith("bayestar.multiorder.fits,1")
        alert = parse_message(make_lvk_alert("S261206ur", "UPDATE", skymap=first))
        files = f"{url}/api/superevents/S261206ur/files"
        netloc = urlsplit(url).netloc
        fetched = {}
        for name in ("bayestar.multiorder.fits,0", "bayestar.multiorder.fits"):
            only_url = alert.model_copy(update={"skymap": None, "skymap_url": f"{files}/{name}"})
            with SkymapFetcher(allowed_hosts=[netloc]) as fetcher:
                fetched[name] = with_fetched_skymap(only_url, fetcher).skymap
        assert fetched["bayestar.multiorder.fits,0"] == first
        assert fetched["bayestar.multiorder.fits"] == second  # no version: the latest
        assert SkyMap.from_fits(fetched["bayestar.multiorder.fits"]).peak[0] == pytest.approx(
            61.0, abs=0.3
        )
        # As GraceDB: an unknown file or version is a 404; the fetcher says so.
        missing = httpx.get(f"{files}/bayestar.multiorder.fits,7")
        assert missing.status_code == 404 and missing.json() == {"detail": "Not found."}
        gone = alert.model_copy(
            update={"skymap": None, "skymap_url": f"{files}/bayestar.multiorder.fits,7"}
        )
        with SkymapFetcher(allowed_hosts=[netloc]) as fetcher, pytest.raises(SkymapError):
            with_fetched_skymap(gone, fetcher)
        # The sandbox is not an allowed host unless the caller says so.
        with SkymapFetcher() as fetcher, pytest.raises(SkymapError, match="not allowed"):
            with_fetched_skymap(
                alert.model_copy(update={"skymap": None, "skymap_url": f"{files}/x.fits"}),
                fetcher,
            )
