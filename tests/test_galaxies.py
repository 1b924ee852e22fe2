"""Galaxy catalogs (local files, Vizier mocked at requests) and 3-D ranking."""

from __future__ import annotations

import io
from urllib.parse import parse_qs

import numpy as np
import pandas as pd
import pytest
import requests
import responses
from astropy import units as u
from astropy.io.votable import from_table
from astropy.table import Table

from followup.exceptions import CatalogError, ServiceUnavailable, SkymapError
from followup.galaxies import (
    LocalGalaxyCatalog,
    VizierGladeCatalog,
    normalise_galaxy_table,
    rank_galaxies,
    region_cone,
)
from followup.skymap import gaussian_skymap

VIZIER_URL = "https://vizier.cds.unistra.fr/viz-bin/votable"


@pytest.fixture(scope="module")
def sky():
    """A map at RA 350, Dec -20, sigma 1.5 deg, distance 80 +/- 15 Mpc."""
    return gaussian_skymap(350.0, -20.0, 1.5, distance_mpc=80.0, distance_sigma_mpc=15.0)


def glade_frame(rows):
    """A GLADE+-format frame (file column names) from (name, ra, dec, d_L, B, K, M*) rows."""
    return pd.DataFrame(rows, columns=["GWGC name", "RA", "DEC", "d_L", "B", "K", "M*"]).assign(
        **{"GLADE no": range(1, len(rows) + 1), "d_L err": np.nan}
    )


# ------------------------------------------------------------------ ranking


def test_galaxy_at_the_peak_and_distance_outranks_one_far_in_distance(sky):
    table = normalise_galaxy_table(
        glade_frame(
            [
                ("FAR", 350.0, -20.0, 300.0, 14.0, 10.0, 5.0),  # same direction, wrong distance
                ("OFFSKY", 358.0, -20.0, 80.0, 14.0, 10.0, 5.0),  # right distance, off the map
                ("GOOD", 350.0, -20.0, 80.0, 14.0, 10.0, 5.0),
                ("EDGE", 351.5, -20.5, 95.0, 14.0, 10.0, 5.0),
            ]
        )
    )
    ranked = rank_galaxies(sky, table)
    names = list(ranked["name"])
    assert names[0] == "GOOD"
    assert names.index("GOOD") < names.index("FAR")
    good = ranked[ranked["name"] == "GOOD"][0]
    far = ranked[ranked["name"] == "FAR"][0]
    assert good["score"] > 1e3 * far["score"]
    assert good["in_volume"] and not far["in_volume"]
    assert not ranked[ranked["name"] == "OFFSKY"][0]["in_region"]
    assert ranked["probability"][ranked["in_volume"]].sum() == pytest.approx(1.0)
    assert ranked["probability"][~ranked["in_volume"]].sum() == 0
    assert ranked.meta["weight_mode"] == "stellar_mass"
    assert ranked["dp_dv"].unit == u.Mpc**-3


def test_mass_weight_and_fill_in(sky):
    table = normalise_galaxy_table(
        glade_frame(
            [
                ("A", 350.0, -20.0, 80.0, 14.0, 10.0, 1.0),
                ("B", 350.0, -20.0, 80.0, 14.0, 10.0, 4.0),
                ("C", 350.0, -20.0, 80.0, 14.0, 10.0, np.nan),
            ]
        )
    )
    ranked = rank_galaxies(sky, table, weight="stellar_mass")
    score = dict(zip(ranked["name"], ranked["score"], strict=True))
    assert score["B"] == pytest.approx(4 * score["A"])
    assert score["C"] == pytest.approx(2.5 * score["A"])  # the median of 1e10 and 4e10 solMass
    assert list(ranked["weight_filled"][ranked["name"] == "C"]) == [True]
    flat = rank_galaxies(sky, table, weight="none")
    assert np.allclose(flat["weight"], 1)
    # K luminosity: a galaxy 2.5 mag brighter in K weighs 10 times more.
    bright = normalise_galaxy_table(
        glade_frame(
            [
                ("K1", 350.0, -20.0, 80.0, 14, 10.0, np.nan),
                ("K2", 350.0, -20.0, 80.0, 14, 7.5, np.nan),
            ]
        )
    )
    k = rank_galaxies(sky, bright)
    assert k.meta["weight_mode"] == "k_luminosity"
    assert k["weight"][0] / k["weight"][1] == pytest.approx(10.0)


def test_ranking_needs_distances():
    with pytest.raises(SkymapError, match="distance"):
        rank_galaxies(gaussian_skymap(0.0, 0.0, 1.0), normalise_galaxy_table(glade_frame([])))


def test_region_cone_encloses_the_region(sky):
    ra, dec, radius = region_cone(sky)
    assert (ra, dec) == pytest.approx((350.0, -20.0), abs=0.05)
    assert radius == pytest.approx(1.5 * np.sqrt(-2 * np.log(0.1)), rel=0.1)


# ------------------------------------------------------------------ local files


def test_glade_plus_csv_sample(samples):
    cat = LocalGalaxyCatalog(samples / "skyportal" / "GLADE.csv")
    table = cat.table
    assert len(table) == 101
    row = table[table["name"] == "NGC4548"][0]
    assert row["distance"].to_value(u.Mpc) == pytest.approx(15.876, abs=1e-3)
    assert row["stellar_mass"].to_value(u.solMass) == pytest.approx(3e9)  # M* is 1e10 Msun


def test_gwemopt_catalog_sample(samples):
    cat = LocalGalaxyCatalog(samples / "gwemopt_pypi" / "catalog_glade.csv")
    table = cat.query(ra=13.0, dec=-25.0, radius_deg=5.0, max_distance_mpc=400.0)
    assert 0 < len(table) < 2000
    assert np.all(table["distance"].to_value(u.Mpc) <= 400)
    assert "ESO474-026" in list(cat.table["name"])  # bytes reprs in the CSV are cleaned


def test_clu_hdf5_sample(samples):
    pytest.importorskip("h5py")
    table = LocalGalaxyCatalog(samples / "skyportal" / "CLU_mini.hdf5").table
    assert len(table) == 92
    assert np.nanmax(table["stellar_mass"].to_value(u.solMass)) > 1e9  # CLU mstar in solMass


@pytest.mark.parametrize("suffix", ["csv", "ecsv", "fits", "parquet", "hdf5"])
def test_local_catalog_formats(tmp_path, suffix):
    frame = glade_frame(
        [("X1", 10.0, 5.0, 50.0, 14.0, 10.0, 2.0), ("X2", 40.0, 5.0, 60.0, 15.0, 11.0, 1.0)]
    )
    path = tmp_path / f"cat.{suffix}"
    if suffix == "csv":
        frame.to_csv(path, index=False)
    elif suffix == "parquet":
        pytest.importorskip("pyarrow")
        frame.to_parquet(path)
    elif suffix == "hdf5":
        pytest.importorskip("h5py")
        Table.from_pandas(frame.drop(columns=["GWGC name"])).write(path, path="data")
    else:
        Table.from_pandas(frame).write(path)
    cat = LocalGalaxyCatalog(path)
    near = cat.query(ra=10.5, dec=5.0, radius_deg=2.0)
    assert len(near) == 1
    assert near["distance"][0].to_value(u.Mpc) == 50.0
    assert len(cat.query(ra=10.5, dec=5.0, radius_deg=40.0, max_distance_mpc=55.0)) == 1


def test_local_catalog_errors(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        _ = LocalGalaxyCatalog(tmp_path / "missing.csv").table
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    with pytest.raises(CatalogError, match="no ra column"):
        _ = LocalGalaxyCatalog(bad).table
    other = tmp_path / "cat.xyz"
    other.write_text("")
    with pytest.raises(CatalogError, match="unknown galaxy catalog format"):
        _ = LocalGalaxyCatalog(other).table


# ------------------------------------------------------------------ Vizier (mocked at requests)


def votable_bytes(table: Table) -> bytes:
    buffer = io.BytesIO()
    from_table(table).to_xml(buffer)
    return buffer.getvalue()


def vizier_glade_rows() -> Table:
    return Table(
        {
            "GLADE+": [11, 12],
            "HyperLEDA": ["NGC7793", ""],
            "RAJ2000": [359.4576, 350.2] * u.deg,
            "DEJ2000": [-32.5913, -20.1] * u.deg,
            "Bmag": [9.6, 15.1],
            "Kmag": [6.9, 11.2],
            "dL": [3.6, 82.0],
            "M*": [0.5, 2.0],
        }
    )


@responses.activate
def test_vizier_glade_query_and_normalisation():
    responses.add(responses.POST, VIZIER_URL, body=votable_bytes(vizier_glade_rows()), status=200)
    table = VizierGladeCatalog().query(ra=350.0, dec=-20.0, radius_deg=5.0, max_distance_mpc=120.0)
    assert list(table["name"]) == ["NGC7793", "GLADE+12"]
    assert table["distance"][1].to_value(u.Mpc) == 82.0
    assert table["stellar_mass"][1].to_value(u.solMass) == pytest.approx(2e10)
    sent = parse_qs(responses.calls[0].request.body)
    assert "VII/291/gladep" in responses.calls[0].request.body
    assert any("dL" in key or "dL" in " ".join(v) for key, v in sent.items())


@responses.activate
def test_vizier_empty_answer_is_an_empty_table():
    empty = vizier_glade_rows()[:0]
    responses.add(responses.POST, VIZIER_URL, body=votable_bytes(empty), status=200)
    table = VizierGladeCatalog().query(ra=0.0, dec=0.0, radius_deg=1.0)
    assert len(table) == 0
    assert "distance" in table.colnames


@responses.activate
@pytest.mark.parametrize(
    ("status", "error"),
    [(503, ServiceUnavailable), (429, ServiceUnavailable), (400, CatalogError)],
)
def test_vizier_http_errors_are_mapped(status, error):
    responses.add(
        responses.POST, VIZIER_URL, body="oops", status=status, headers={"Retry-After": "7"}
    )
    with pytest.raises(error) as info:
        VizierGladeCatalog().query(ra=0.0, dec=0.0, radius_deg=1.0)
    if status == 429:
        assert info.value.retry_after == 7.0


@responses.activate
def test_vizier_connection_errors_are_retryable():
    responses.add(responses.POST, VIZIER_URL, body=requests.ConnectionError("refused"))
    with pytest.raises(ServiceUnavailable):
        VizierGladeCatalog().query(ra=0.0, dec=0.0, radius_deg=1.0)
    responses.replace(responses.POST, VIZIER_URL, body=requests.Timeout("slow"))
    with pytest.raises(ServiceUnavailable):
        VizierGladeCatalog().query(ra=0.0, dec=0.0, radius_deg=1.0)
