"""The realistic sky's galaxies: a GLADE+-like catalogue of nearby ones and faint field galaxies.

Galaxies are drawn per HEALPix cell (nested, order 7, like the stars) from the sky's seed, so every
frame and every catalogue query sees the same ones. Two populations:

* **Catalogue galaxies** (about 8 per deg²): nearby (volume-weighted out to 400 Mpc), brighter
  than B = 19.5, with a luminosity distance and its error, B and Ks magnitudes and a stellar mass.
  The GLADE+ stand-in (``VII/291/gladep`` on the Vizier stand-in) lists exactly these, plus the
  hosts of the sky's transients: galaxy targeting points where the frames show them.
* **Field galaxies** (about 3,000 per deg² brighter than r = 22, counts rising 0.33 dex/mag): small,
  faint and in no catalogue, as on a real 1-m frame.

Each galaxy has a Sérsic profile: index ``n`` (1 to 4), half-light radius ``r_eff`` (arcsec),
axis ratio ``q`` and position angle (degrees east of north). Magnitudes are totals (AB).
"""

from __future__ import annotations

import math

import numpy as np
from astropy import units as u
from astropy.table import Table

from sandbox.sky.model import CELL_ORDER, SUB_ORDER, angular_separation_deg, mix_seed
from sandbox.specs import Transient

__all__ = [
    "GALAXY_COLUMNS",
    "cell_galaxies",
    "glade_table",
    "host_rows",
]

GALAXY_COLUMNS = (
    "id",
    "ra",
    "dec",
    "gmag",
    "rmag",
    "imag",
    "zmag",
    "Bmag",
    "Kmag",
    "dist",
    "e_dist",
    "mstar",
    "n",
    "r_eff",
    "q",
    "pa",
    "in_glade",
)
"""Columns of a galaxy draw (``dist`` in Mpc, ``mstar`` in solar masses, NaN when unknown)."""

CATALOG_PER_DEG2 = 8.0
FIELD_PER_DEG2_R22 = 3000.0
FIELD_SLOPE = 0.33
FIELD_BRIGHT, FIELD_FAINT = 17.0, 22.5
MAX_DISTANCE_MPC = 400.0
GLADE_B_LIMIT = 19.5
# Colours of a typical galaxy (AB): g-r, r-i, i-z, B-r, r-Ks.
G_R, R_I, I_Z, B_R, R_K = 0.65, 0.35, 0.2, 1.1, 2.4


def _positions(rng: np.random.Generator, cell: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    from astropy_healpix import healpix_to_lonlat

    sub_per_cell = 4**SUB_ORDER
    sub = cell * sub_per_cell + rng.integers(0, sub_per_cell, n, dtype=np.int64)
    ra, dec = healpix_to_lonlat(
        sub, 2 ** (CELL_ORDER + SUB_ORDER), dx=rng.random(n), dy=rng.random(n), order="nested"
    )
    return np.asarray(ra.deg, float), np.asarray(dec.deg, float)


def _with_colours(r: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = len(r)
    g_r = G_R + rng.normal(0, 0.1, n)
    r_i = R_I + rng.normal(0, 0.05, n)
    i_z = I_Z + rng.normal(0, 0.05, n)
    return {"gmag": r + g_r, "rmag": r, "imag": r - r_i, "zmag": r - r_i - i_z}


def cell_galaxies(seed: int, cell: int) -> dict[str, np.ndarray]:
    """Every galaxy of one HEALPix cell (nested, order 7), both populations (see the module)."""
    nside = 2**CELL_ORDER
    area = 41252.96 / (12 * nside**2)
    rng = np.random.default_rng(mix_seed(seed, "galaxies", cell))
    # Catalogue galaxies: volume-weighted distances, a broad luminosity function.
    n_cat = int(rng.poisson(CATALOG_PER_DEG2 * area * 3.0))
    dist = MAX_DISTANCE_MPC * rng.random(n_cat) ** (1.0 / 3.0)
    abs_b = rng.uniform(-22.5, -18.0, n_cat)
    bmag = abs_b + 5.0 * np.log10(np.maximum(dist, 1.0) * 1e5)
    r_cat = bmag - B_R
    re_kpc = 3.0 * 10 ** (-0.4 * (abs_b + 20.0) * 0.4) * rng.lognormal(0.0, 0.3, n_cat)
    re_cat = re_kpc / (np.maximum(dist, 1.0) * 4.848e-3)
    kmag = r_cat - R_K + rng.normal(0, 0.1, n_cat)
    abs_k = kmag - 5.0 * np.log10(np.maximum(dist, 1.0) * 1e5)
    mstar = 0.6 * 10 ** (-0.4 * (abs_k - 3.28))
    n_cat_idx = rng.uniform(1.0, 4.0, n_cat)
    # Field galaxies: faint, small, mostly discs.
    lo = 10 ** (FIELD_SLOPE * (FIELD_BRIGHT - 22.0))
    hi = 10 ** (FIELD_SLOPE * (FIELD_FAINT - 22.0))
    n_field = int(rng.poisson(FIELD_PER_DEG2_R22 * area * (hi - lo)))
    r_field = 22.0 + np.log10(lo + rng.random(n_field) * (hi - lo)) / FIELD_SLOPE
    re_field = np.clip(
        0.6 * 10 ** (-0.1 * (r_field - 22.0)) * rng.lognormal(0.0, 0.35, n_field), 0.25, 4.0
    )
    n_field_idx = np.where(rng.random(n_field) < 0.6, 1.0, rng.uniform(1.5, 4.0, n_field))
    n_all = n_cat + n_field
    ra, dec = _positions(rng, cell, n_all)
    r = np.concatenate([r_cat, r_field])
    nan = np.full(n_field, np.nan)
    out: dict[str, np.ndarray] = {
        "id": np.array([f"G{cell:06d}-{k:05d}" for k in range(n_all)]),
        "ra": ra,
        "dec": dec,
        **_with_colours(r, rng),
        "Bmag": np.concatenate([bmag, r_field + B_R]),
        "Kmag": np.concatenate([kmag, nan]),
        "dist": np.concatenate([dist, nan]),
        "e_dist": np.concatenate([0.15 * dist, nan]),
        "mstar": np.concatenate([mstar, nan]),
        "n": np.concatenate([n_cat_idx, n_field_idx]),
        "r_eff": np.concatenate([np.clip(re_cat, 0.4, 60.0), re_field]),
        "q": rng.uniform(0.3, 1.0, n_all),
        "pa": rng.uniform(0.0, 180.0, n_all),
        "in_glade": np.concatenate([bmag < GLADE_B_LIMIT, np.zeros(n_field, bool)]),
    }
    # Catalogue galaxies fainter than GLADE's limit stay in the sky as unlisted galaxies.
    return out


def host_rows(transients: tuple[Transient, ...]) -> dict[str, np.ndarray]:
    """The host galaxies of the transients that have one, as galaxy columns (all in GLADE+)."""
    hosts = [(t, t.host) for t in transients if t.host is not None]
    cols: dict[str, list[object]] = {c: [] for c in GALAXY_COLUMNS}
    for transient, host in hosts:
        assert host is not None
        ra, dec = host.position(transient)
        mags = _with_colours(np.array([host.r_mag]), np.random.default_rng(0))
        cols["id"].append(host.name or f"{transient.name}-host")
        cols["ra"].append(ra)
        cols["dec"].append(dec)
        for band in "griz":
            cols[f"{band}mag"].append(host.r_mag if band == "r" else float(mags[f"{band}mag"][0]))
        cols["Bmag"].append(host.r_mag + B_R)
        cols["Kmag"].append(host.r_mag - R_K)
        cols["dist"].append(host.distance_mpc)
        cols["e_dist"].append(0.1 * host.distance_mpc)
        abs_k = host.r_mag - R_K - 5.0 * math.log10(max(host.distance_mpc, 1.0) * 1e5)
        cols["mstar"].append(0.6 * 10 ** (-0.4 * (abs_k - 3.28)))
        cols["n"].append(host.sersic_n)
        cols["r_eff"].append(host.r_eff_arcsec)
        cols["q"].append(host.axis_ratio)
        cols["pa"].append(host.position_angle_deg)
        cols["in_glade"].append(True)
    return {
        c: np.array(v, dtype=str if c == "id" else bool if c == "in_glade" else float)
        for c, v in cols.items()
    }


def glade_table(galaxies: Table, ra: float, dec: float, radius_deg: float) -> Table:
    """GLADE+ columns (Vizier ``VII/291/gladep``) of the catalogued galaxies within a cone.

    Columns: ``GLADE+`` (number), ``GWGC``, ``HyperLEDA`` (names, empty), ``RAJ2000``,
    ``DEJ2000`` (deg), ``Bmag``, ``Kmag`` (mag), ``dL``, ``e_dL`` (Mpc), ``M*`` (1e10 solMass).
    """
    sep = angular_separation_deg(ra, dec, np.asarray(galaxies["ra"]), np.asarray(galaxies["dec"]))
    rows = galaxies[(sep <= radius_deg) & np.asarray(galaxies["in_glade"], bool)]
    out = Table(meta={"name": "VII/291/gladep", "description": "synthetic GLADE+"})
    out["GLADE+"] = np.array(
        [int(mix_seed(str(i))[0]) % 22_000_000 + 1 for i in rows["id"]], dtype=np.int64
    )
    out["GWGC"] = np.array(["" for _ in range(len(rows))], dtype="U16")
    out["HyperLEDA"] = np.array([str(i) for i in rows["id"]], dtype="U32")
    out["RAJ2000"] = np.round(np.asarray(rows["ra"], float), 7) * u.deg
    out["DEJ2000"] = np.round(np.asarray(rows["dec"], float), 7) * u.deg
    out["Bmag"] = np.round(np.asarray(rows["Bmag"], float), 3) * u.mag
    out["Kmag"] = np.round(np.asarray(rows["Kmag"], float), 3) * u.mag
    out["dL"] = np.round(np.asarray(rows["dist"], float), 3) * u.Mpc
    out["e_dL"] = np.round(np.asarray(rows["e_dist"], float), 3) * u.Mpc
    out["M*"] = np.round(np.asarray(rows["mstar"], float) / 1e10, 4)
    return out
