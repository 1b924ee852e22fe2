"""Reference catalogues: normalisation, local files, a frame's CAT, Vizier mocked at requests."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io.votable import from_table
from astropy.table import Table

from followup.catalogs import (
    FrameCatalog,
    LocalCatalog,
    ReferenceCatalog,
    TableCatalog,
    VizierCatalog,
    catalog_band,
    normalise_catalog,
)
from followup.exceptions import CatalogError, ServiceUnavailable
from followup.reduction import read_frame
from sandbox.sky import SyntheticSky
from tests.frames_support import DEC, RA, spec

CENTER = SkyCoord(RA * u.deg, DEC * u.deg)


@pytest.fixture(scope="module")
def sky() -> SyntheticSky:
    return SyntheticSky(seed=21, shape=(1024, 1024))


@pytest.fixture(scope="module")
def refcat(sky: SyntheticSky) -> Table:
    return sky.reference_catalog(RA, DEC, 0.1)


def votable_bytes(table: Table, name: str = "J/ApJ/867/105/refcat2") -> bytes:
    table = table.copy()
    table.meta.clear()  # from_table would turn meta["name"] into an ID (with a warning)
    vot = from_table(table)
    vot.resources[0].tables[0].ID = name.replace("/", "_")
    vot.resources[0].tables[0].name = name
    buffer = io.BytesIO()
    vot.to_xml(buffer)
    return buffer.getvalue()


def test_band_names() -> None:
    assert [catalog_band(f) for f in ("gp", "rp", "ip", "zs", "g", "R", "z")] == list("grizgrz")
    with pytest.raises(CatalogError, match="griz"):
        catalog_band("w")


def test_normalise_refcat2_and_generic_columns(refcat: Table) -> None:
    out = normalise_catalog(refcat, name="refcat2")
    assert out.colnames == ["ra", "dec", "g", "g_err", "r", "r_err", "i", "i_err", "z", "z_err"]
    assert out["ra"].unit == u.deg and out["r"].unit == u.mag
    np.testing.assert_allclose(out["r"], refcat["rmag"])
    assert out.meta["catalog"] == "refcat2"
    generic = Table(
        {
            "RAJ2000": [1.0, 2.0],
            "DEJ2000": [3.0, 4.0],
            "rmag": np.ma.masked_array([15.0, 16.0], [False, True]),
        }
    )
    norm = normalise_catalog(generic)
    assert np.isnan(norm["r"][1]) and norm["r_err"][0] == pytest.approx(0.02)  # default error
    assert np.all(np.isnan(norm["g"]))
    with pytest.raises(CatalogError, match="RA/Dec"):
        normalise_catalog(Table({"x": [1.0]}))
    with pytest.raises(CatalogError, match="magnitude"):
        normalise_catalog(Table({"ra": [1.0], "dec": [2.0], "flux": [3.0]}))


@pytest.mark.parametrize("suffix", [".csv", ".ecsv", ".xml"])
def test_local_catalog_reads_files_lazily(refcat: Table, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"refcat{suffix}"
    catalog = LocalCatalog(path)  # nothing read yet: the file does not even exist
    if suffix == ".xml":
        path.write_bytes(votable_bytes(refcat))
    else:
        refcat.write(path, format="ascii.csv" if suffix == ".csv" else "ascii.ecsv")
    assert isinstance(catalog, ReferenceCatalog)
    stars = catalog.query(CENTER, 3 * u.arcmin)
    seps = SkyCoord(stars["ra"], stars["dec"]).separation(CENTER)
    assert len(stars) > 0 and np.all(seps <= 3 * u.arcmin)
    full = catalog.query(CENTER, 1 * u.deg)
    assert len(full) == len(refcat)


def test_local_catalog_errors(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        LocalCatalog(tmp_path / "none.csv").query(CENTER, 1 * u.arcmin)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(CatalogError):
        LocalCatalog(bad).query(CENTER, 1 * u.arcmin)
    parquet = tmp_path / "stars.parquet"
    parquet.write_bytes(b"PAR1")
    with pytest.raises(CatalogError):
        LocalCatalog(parquet).query(CENTER, 1 * u.arcmin)


def test_frame_catalog_uses_banzai_magnitudes(sky: SyntheticSky) -> None:
    frame = read_frame(sky.render(spec(1)))
    catalog = FrameCatalog.from_frame(frame)
    stars = catalog.query(CENTER, 10 * u.arcmin)
    assert len(stars) > 5
    assert np.all(np.isfinite(stars["r"])) and np.all(np.isnan(stars["g"]))
    assert catalog.zero_point == frame.header["L1ZP"]
    assert catalog.zero_point_error == frame.header["L1ZPERR"]
    # Only unflagged sources.
    assert len(stars) <= int(np.sum(np.asarray(frame.catalog["flag"]) == 0))
    frame.catalog.remove_column("mag")
    header = frame.header.copy()
    del header["L1ZP"]
    with pytest.raises(CatalogError, match="not calibrated"):
        FrameCatalog(frame.catalog, header)


def test_table_catalog_cone(refcat: Table) -> None:
    catalog = TableCatalog(refcat, name="synthetic")
    assert len(catalog.query(CENTER, 2 * u.arcmin)) < len(catalog.query(CENTER, 5 * u.arcmin))


class _Recorder:
    """A stand-in for requests.Session.request that serves one VOTable and records the calls."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self, session: requests.Session, method: str, url: str, **kwargs: Any
    ) -> requests.Response:
        self.calls.append({"method": method, "url": url, **kwargs})
        response = requests.Response()
        response.status_code = 200
        response._content = self.body
        response.url = url
        response.headers["Content-Type"] = "application/x-votable+xml"
        return response

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def request(
            session: requests.Session, method: str, url: str, **kwargs: Any
        ) -> requests.Response:
            return self(session, method, url, **kwargs)

        monkeypatch.setattr(requests.Session, "request", request)


def test_vizier_query_through_a_patched_session(
    refcat: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = _Recorder(votable_bytes(refcat))
    recorder.install(monkeypatch)
    catalog = VizierCatalog("refcat2", mag_limit=19.0)
    stars = catalog.query(CENTER, 30 * u.arcmin)
    assert len(stars) == len(refcat)
    np.testing.assert_allclose(np.sort(np.asarray(stars["r"])), np.sort(np.asarray(refcat["rmag"])))
    call = recorder.calls[0]
    assert call["method"] == "POST"
    assert call["url"].startswith("https://") and call["url"].endswith("/viz-bin/votable")
    body = call["data"]
    assert "-source=J/ApJ/867/105/refcat2" in body
    assert "rmag=<19.0" in body
    assert "-out.max=unlimited" in body
    assert "-c.rm=30" in body


@pytest.mark.parametrize(
    ("name", "vizier_id", "ra_col"),
    [("ps1", "II/349/ps1", "RAJ2000"), ("gaia-synphot", "I/360/syntphot", "RA_ICRS")],
)
def test_vizier_other_catalogues(
    refcat: Table, monkeypatch: pytest.MonkeyPatch, name: str, vizier_id: str, ra_col: str
) -> None:
    table = refcat.copy()
    table.rename_column("RA_ICRS", ra_col)
    table.rename_column("DE_ICRS", "DEJ2000" if ra_col == "RAJ2000" else "DE_ICRS")
    recorder = _Recorder(votable_bytes(table, vizier_id))
    recorder.install(monkeypatch)
    stars = VizierCatalog(name).query(CENTER, 30 * u.arcmin)
    assert len(stars) == len(refcat)
    assert f"-source={vizier_id}" in recorder.calls[0]["data"]


def test_vizier_server_can_be_a_plain_http_url(refcat: Table) -> None:
    responses = pytest.importorskip("responses")
    with responses.RequestsMock() as mock:
        mock.add(
            responses.POST,
            "http://127.0.0.1:8123/viz-bin/votable",
            body=votable_bytes(refcat),
            status=200,
        )
        stars = VizierCatalog("refcat2", server="http://127.0.0.1:8123/").query(
            CENTER, 20 * u.arcmin
        )
        assert len(stars) > 0
        assert mock.calls[0].request.url == "http://127.0.0.1:8123/viz-bin/votable"
    with responses.RequestsMock() as mock:
        mock.add(
            responses.POST,
            "https://vizier.cfa.harvard.edu/viz-bin/votable",
            body=votable_bytes(refcat),
        )
        assert len(VizierCatalog(server="vizier.cfa.harvard.edu").query(CENTER, 20 * u.arcmin)) > 0


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, ServiceUnavailable),
        (503, ServiceUnavailable),
        (429, ServiceUnavailable),
        (400, CatalogError),
        (404, CatalogError),
    ],
)
def test_vizier_http_errors_map_onto_the_error_tree(status: int, error: type[Exception]) -> None:
    responses = pytest.importorskip("responses")
    with responses.RequestsMock() as mock:
        mock.add(
            responses.POST,
            re.compile(r"https://vizier\..*/viz-bin/votable"),
            status=status,
            body="no",
            headers={"Retry-After": "7"},
        )
        with pytest.raises(error) as info:
            VizierCatalog().query(CENTER, 5 * u.arcmin)
    if isinstance(info.value, ServiceUnavailable):
        assert info.value.status_code == status
        assert info.value.retry_after == 7.0


def test_vizier_timeouts_and_garbage() -> None:
    responses = pytest.importorskip("responses")
    with responses.RequestsMock() as mock:
        mock.add(
            responses.POST,
            re.compile(r"https://vizier\..*"),
            body=requests.exceptions.ConnectTimeout("slow"),
        )
        with pytest.raises(ServiceUnavailable, match="unreachable"):
            VizierCatalog().query(CENTER, 5 * u.arcmin)
    with responses.RequestsMock() as mock:
        mock.add(
            responses.POST,
            re.compile(r"https://vizier\..*"),
            body="<html>maintenance</html>",
            status=200,
        )
        with pytest.raises(CatalogError, match="not a VOTable"):
            VizierCatalog().query(CENTER, 5 * u.arcmin)
    with responses.RequestsMock() as mock:  # an empty answer is an empty table, not an error
        empty = Table({"RA_ICRS": np.zeros(0), "DE_ICRS": np.zeros(0), "rmag": np.zeros(0)})
        mock.add(responses.POST, re.compile(r"https://vizier\..*"), body=votable_bytes(empty))
        assert len(VizierCatalog().query(CENTER, 5 * u.arcmin)) == 0
    with pytest.raises(CatalogError, match="unknown"):
        VizierCatalog("sdss")


@pytest.mark.remote_data
def test_live_vizier_refcat2() -> None:
    stars = VizierCatalog("refcat2", mag_limit=17).query(CENTER, 5 * u.arcmin)
    assert len(stars) > 0
