"""The sandbox's references and vetting services, read by the clients the pipeline uses."""

from __future__ import annotations

import io
import math
from datetime import timedelta

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from fastapi.testclient import TestClient

from sandbox import irsa_dust, ps1, skybot, vizier
from sandbox.lco import LcoSandboxState, ManualClock, create_app
from sandbox.server import SandboxConfig, create_control_app, reference_epoch
from sandbox.serving import serve
from tests.lco_support import AUTH, NIGHT_AT_CPT, TOKEN
from tests.test_sky_realistic import DEC, HOST, PEAK, RA, kilonova, make_sky


@pytest.fixture(scope="module")
def sky():
    return make_sky()


def test_skybot_cone_search_finds_the_minor_planet_where_it_is_then(sky, monkeypatch) -> None:
    """astroquery's Skybot.cone_search, its server replaced (its config allows only IMCCE's)."""
    from astroquery.imcce import Skybot, conf

    (planet,) = sky.minor_planets
    when = PEAK + timedelta(hours=3)
    ra, dec = planet.position(when)
    with serve(skybot.create_app(sky)) as url:
        monkeypatch.setattr(type(conf), "skybot_server", url + skybot.CONE_SEARCH_PATH)
        found = Skybot.cone_search(
            SkyCoord(ra * u.deg, dec * u.deg), 30 * u.arcsec, Time(when), cache=False
        )
        earlier = Skybot.cone_search(
            SkyCoord(ra * u.deg, dec * u.deg),
            30 * u.arcsec,
            Time(when - timedelta(hours=2)),
            cache=False,
        )
    assert list(found["Number"]) == [planet.number]
    assert found["Name"][0] == planet.name
    assert u.Quantity(found["RA"][0], u.deg).value == pytest.approx(ra, abs=1e-4)
    assert u.Quantity(found["DEC"][0], u.deg).value == pytest.approx(dec, abs=1e-4)
    assert float(found["RA_rate"][0].value) == pytest.approx(planet.dra_arcsec_h, abs=1e-3)
    assert len(earlier) == 0  # two hours earlier it was 30-80 arcsec away


def test_irsa_dust_answers_astroquery_with_the_sandbox_reddening() -> None:
    from astroquery.ipac.irsa.irsa_dust import IrsaDust

    coord = SkyCoord(RA * u.deg, DEC * u.deg)
    expected = irsa_dust.ebv_sfd(RA, DEC)
    with serve(irsa_dust.create_app()) as url:
        table = IrsaDust.get_query_table(coord, section="ebv", url=url + irsa_dust.DUST_PATH)
    assert float(table["ext SFD ref"][0]) == pytest.approx(expected, abs=1e-4)
    assert float(table["ext SandF ref"][0]) == pytest.approx(0.86 * expected, abs=2e-4)
    # Dust rises towards the Galactic plane.
    assert irsa_dust.ebv_sfd(266.4, -29.0) > 10 * irsa_dust.ebv_sfd(192.86, 27.13)


def test_the_vizier_stand_in_serves_glade_where_the_sky_renders_hosts(sky, monkeypatch) -> None:
    """followup's VizierGladeCatalog, astroquery pointed at the stand-in's http URL."""
    import astroquery.vizier

    from followup.catalogs import _vizier_at_url_class
    from followup.galaxies import VizierGladeCatalog

    with serve(vizier.create_app(sky)) as url:

        def at_url(**kwargs: object) -> object:
            kwargs.pop("vizier_server", None)
            client = _vizier_at_url_class()(**kwargs)
            client.base_url = url
            return client

        monkeypatch.setattr(astroquery.vizier, "Vizier", at_url)
        galaxies = VizierGladeCatalog().query(
            ra=RA, dec=DEC, radius_deg=0.2, max_distance_mpc=100.0
        )
    hra, hdec = HOST.position(kilonova())
    d = np.hypot(
        (galaxies["ra"].to_value(u.deg) - hra) * math.cos(math.radians(hdec)),
        galaxies["dec"].to_value(u.deg) - hdec,
    )
    assert d.min() * 3600 < 0.01
    assert galaxies["distance"][np.argmin(d)].to_value(u.Mpc) == pytest.approx(40.0)


def test_ps1_cutouts_show_the_sky_without_the_transient(sky) -> None:
    client = TestClient(ps1.create_app(sky))
    listing = client.get(
        ps1.FILENAMES_PATH, params={"ra": RA, "dec": DEC, "filters": "gr", "type": "stack"}
    )
    assert listing.status_code == 200
    header, *rows = listing.text.strip().splitlines()
    assert header.split() == [
        "projcell", "subcell", "ra", "dec", "filter", "mjd", "type", "filename", "shortname",
        "badflag",
    ]  # fmt: skip
    assert [row.split()[4] for row in rows] == ["g", "r"]
    r_file = rows[1].split()[7]
    cut = client.get(
        ps1.FITSCUT_PATH,
        params={"ra": RA, "dec": DEC, "size": 400, "format": "fits", "red": r_file},
    )
    assert cut.status_code == 200
    hdu = fits.open(io.BytesIO(cut.content))[0]
    wcs = WCS(hdu.header)
    x, y = wcs.all_world2pix([[RA, DEC]], 0)[0]
    assert (x, y) == (pytest.approx(199.5, abs=0.01), pytest.approx(199.5, abs=0.01))
    hra, hdec = HOST.position(kilonova())
    hx, hy = wcs.all_world2pix([[hra, hdec]], 0)[0]
    yy, xx = np.indices(hdu.data.shape)
    rr = np.hypot(xx - hx, yy - hy)
    radius = 8 * HOST.r_eff_arcsec / 0.25 + 10
    bkg = np.median(hdu.data[rr > radius + 20])
    flux = float((hdu.data[rr <= radius] - bkg).sum())
    assert hdu.header["ZPT"] - 2.5 * math.log10(flux) == pytest.approx(HOST.r_mag, abs=0.05)
    # South of the survey, nothing.
    south = client.get(ps1.FILENAMES_PATH, params={"ra": RA, "dec": -45.0, "filters": "r"})
    assert south.text.strip().splitlines()[1:] == []


def test_the_archive_finds_an_earlier_frame_of_the_field_by_position(sky, tmp_path) -> None:
    clock = ManualClock(NIGHT_AT_CPT)
    epoch = reference_epoch(list(sky.transients))
    state = LcoSandboxState(
        clock, sky.render, token=TOKEN, cache_dir=tmp_path / "frames", reference_epoch=epoch
    )
    point = f"POINT({RA + 0.05} {DEC - 0.03})"
    with TestClient(create_app(state)) as client:
        records = client.get(
            "/frames/", params={"covers": point, "primary_optical_element": "rp"}
        ).json()["results"]  # public: no token needed
        again = client.get(
            "/frames/", params={"covers": point, "primary_optical_element": "rp"}, headers=AUTH
        ).json()["results"]
        elsewhere = client.get(
            "/frames/", params={"covers": "POINT(10 10)", "primary_optical_element": "rp",
                                "start": PEAK.isoformat()}, headers=AUTH
        ).json()["results"]  # fmt: skip
        bad = client.get("/frames/", params={"covers": "POLYGON(1 2)"}, headers=AUTH)
        (record,) = records
        assert [r["id"] for r in again] == [record["id"]]  # made once, found again
        assert record["reduction_level"] == 91 and record["primary_optical_element"] == "rp"
        taken = Time(record["observation_date"]).datetime.replace(tzinfo=PEAK.tzinfo)
        assert taken < PEAK - timedelta(days=300)
        data = client.get(record["url"]).content
        control = TestClient(create_control_app(SandboxConfig(), {}, sky, state))
        truth = control.get(f"/sandbox/frames/{record['basename']}/truth").json()
    assert elsewhere == []
    assert bad.status_code == 400
    with fits.open(io.BytesIO(data)) as hdus:
        centre = WCS(hdus["SCI"].header).wcs.crval
    # A Sinistro field (26.5 arcmin) there covers the point (the test frames are smaller).
    assert abs((centre[0] - RA - 0.05) * math.cos(math.radians(DEC))) < 0.22
    assert abs(centre[1] - DEC + 0.03) < 0.22
    assert truth["transients"] == []  # the kilonova had not happened
    assert truth["realistic"] and truth["catalog_depth"] == 19.0


def test_the_sandbox_server_starts_the_vetting_stand_ins(tmp_path) -> None:
    """The stack hands out each stand-in's URL; each answers there, on the realistic sky."""
    import httpx

    from sandbox.server import SandboxServer

    config = SandboxConfig(
        sky="realistic",
        frame_shape=(256, 256),
        cache_dir=str(tmp_path / "frames"),
        transients=[kilonova()],
        renderer="header-only",
    )
    with SandboxServer(config) as server:
        urls = server.urls
        assert urls is not None and server.sky.realistic and server.sky.catalog_depth == 19.0
        (planet,) = server.sky.minor_planets
        ra, dec = planet.position(PEAK)
        found = httpx.get(
            urls.skybot + skybot.CONE_SEARCH_PATH,
            params={"-ra": ra, "-dec": dec, "-rd": 0.01, "-ep": Time(PEAK).jd},
        )
        dust = httpx.post(urls.irsa + irsa_dust.DUST_PATH, data={"locstr": f"{RA} {DEC}"})
        listing = httpx.get(urls.ps1 + ps1.FILENAMES_PATH, params={"ra": RA, "dec": DEC})
    assert found.status_code == 200 and f"<TD>{planet.number}</TD>" in found.text
    assert dust.status_code == 200 and "refPixelValueSFD" in dust.text
    assert len(listing.text.strip().splitlines()) == 6  # header and g, r, i, z, y
