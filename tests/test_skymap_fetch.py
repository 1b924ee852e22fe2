"""Fetching a sky map an alert only points at: allow-list, size cap, deadline (respx)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
import respx

from followup.exceptions import SkymapError
from followup.models import Alert, AlertKind, AlertType
from followup.skymap import make_gaussian_skymap, read_skymap
from followup.skymap.fetch import SkymapFetcher, allowed_skymap_hosts, with_fetched_skymap

URL = "https://gracedb.ligo.org/api/superevents/S250101a/files/bayestar.multiorder.fits,0"
MAP = make_gaussian_skymap(40.0, -20.0, 2.0, compress=True)


def url_alert(url: str = URL) -> Alert:
    return Alert(
        source="LVK",
        kind=AlertKind.GW,
        format="voevent",
        event_id="S250101a",
        alert_type=AlertType.PRELIMINARY,
        issued_at=datetime(2026, 12, 6, tzinfo=UTC),
        skymap_url=url,
    )


@respx.mock
def test_an_allowed_url_is_fetched_into_the_alert():
    respx.get(URL).mock(return_value=httpx.Response(200, content=MAP))
    with SkymapFetcher() as fetcher:
        alert = with_fetched_skymap(url_alert(), fetcher)
    assert alert.skymap == MAP
    assert read_skymap(alert.skymap).area90 > 0


@respx.mock
def test_a_host_not_on_the_list_is_never_asked():
    route = respx.get(url__startswith="https://evil.example").mock(
        return_value=httpx.Response(200, content=MAP)
    )
    with SkymapFetcher() as fetcher, pytest.raises(SkymapError, match="not allowed"):
        with_fetched_skymap(url_alert("https://evil.example/map.fits"), fetcher)
    assert not route.called
    with SkymapFetcher() as fetcher, pytest.raises(SkymapError, match="http"):
        fetcher.fetch("file:///etc/passwd")


@respx.mock
def test_the_size_cap_and_the_hosts_from_the_environment(monkeypatch):
    monkeypatch.setenv("FOLLOWUP_SKYMAP_HOSTS", "127.0.0.1:8000")
    assert "127.0.0.1:8000" in allowed_skymap_hosts()
    local = "http://127.0.0.1:8000/skymaps/S1.fits.gz"
    respx.get(local).mock(return_value=httpx.Response(200, content=b"x" * 5000))
    with (
        SkymapFetcher(max_bytes=1000) as fetcher,
        pytest.raises(SkymapError, match="more than the 1000"),
    ):
        fetcher.fetch(local)


@respx.mock
def test_an_error_answer_is_a_skymap_error_naming_the_event():
    respx.get(URL).mock(return_value=httpx.Response(404, json={"detail": "no such file"}))
    with SkymapFetcher() as fetcher, pytest.raises(SkymapError, match="S250101a"):
        with_fetched_skymap(url_alert(), fetcher)
