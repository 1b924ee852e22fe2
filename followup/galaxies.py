"""Galaxy catalogs (a local GLADE+-like file, or GLADE+ on Vizier) and 3-D galaxy ranking.

Every catalog returns the same normalised :class:`~astropy.table.QTable`:

======================  =======  ===================================================
column                  unit     meaning
======================  =======  ===================================================
``name``                         a catalog name (GWGC, HyperLEDA, CLU...) or ""
``ra``, ``dec``         deg      ICRS position
``distance``            Mpc      luminosity distance (NaN if unknown)
``distance_err``        Mpc      its 1-sigma error (NaN if unknown)
``b_mag``, ``k_mag``    mag      apparent B and Ks magnitudes (NaN if unknown)
``stellar_mass``        solMass  stellar mass (NaN if unknown)
======================  =======  ===================================================

:func:`rank_galaxies` scores galaxies by the 3-D probability density of the sky map at their
position and distance (Singer et al. 2016) times a mass or luminosity weight.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from astropy import units as u
from astropy.table import QTable, Table
from scipy import special

from followup.exceptions import CatalogError, ServiceUnavailable, SkymapError
from followup.skymap import SR_PER_DEG2, SkyMap, ansatz_moments

__all__ = [
    "COLUMN_ALIASES",
    "GalaxyCatalog",
    "LocalGalaxyCatalog",
    "VizierGladeCatalog",
    "WeightMode",
    "empty_galaxy_table",
    "normalise_galaxy_table",
    "rank_galaxies",
    "region_cone",
]

WeightMode = Literal["auto", "stellar_mass", "k_luminosity", "b_luminosity", "none"]

# Known column names, in order of preference, and the factor to the normalised unit.
COLUMN_ALIASES: dict[str, list[tuple[str, float]]] = {
    "ra": [("RA", 1), ("RAJ2000", 1), ("_RAJ2000", 1), ("ra", 1)],
    "dec": [("DEC", 1), ("Dec", 1), ("DEJ2000", 1), ("_DEJ2000", 1), ("dec", 1)],
    "distance": [("d_L", 1), ("dL", 1), ("distmpc", 1), ("Dist", 1), ("distance", 1)],
    "distance_err": [("d_L err", 1), ("e_dL", 1), ("distance_err", 1)],
    "b_mag": [("B", 1), ("Bmag", 1), ("magb", 1), ("b_mag", 1)],
    "k_mag": [("K", 1), ("Kmag", 1), ("magk", 1), ("k_mag", 1)],
    # GLADE+ gives M* in units of 1e10 solar masses; CLU's mstar is in solar masses.
    "stellar_mass": [("M*", 1e10), ("mstar", 1), ("stellar_mass", 1)],
}
"""Recognised input columns (GLADE+ file and Vizier names, gwemopt, CLU) per output column."""

_NAME_COLUMNS = [
    "GWGC name",
    "GWGC",
    "HyperLEDA name",
    "HyperLEDA",
    "name",
    "Name",
    "2MASS name",
    "2MASS",
    "GLADE no",
    "GLADE+",
]
_NULLS = {"", "null", "none", "nan", "---", "<na>", "--", "b''"}

_SUN_ABS_MAG = {"b_mag": 5.44, "k_mag": 3.27}  # AB-ish solar absolute magnitudes (Willmer 2018)


def empty_galaxy_table() -> QTable:
    """A normalised galaxy table with no rows."""
    return normalise_galaxy_table(pd.DataFrame({"ra": [], "dec": []}))


def _clean_name(value: Any) -> str:
    text = str(value).strip()
    match = re.fullmatch(r"b'(.*)'", text)  # bytes repr left in some CSV exports
    if match:
        text = match.group(1)
    return "" if text.lower() in _NULLS else text


def normalise_galaxy_table(
    data: pd.DataFrame | Table, *, columns: Mapping[str, str] | None = None
) -> QTable:
    """Turn a catalog with GLADE+-like columns into the normalised galaxy table.

    Args:
        data: The catalog rows.
        columns: Explicit ``{normalised_name: input_column}`` overrides.

    Returns:
        The normalised table (see the module docstring), with the input row order.

    Raises:
        CatalogError: No RA/Dec columns, or values out of range.
    """
    frame = data.to_pandas() if isinstance(data, Table) else data
    overrides = dict(columns or {})
    out: dict[str, np.ndarray] = {}
    for key, aliases in COLUMN_ALIASES.items():
        candidates = [(overrides[key], 1.0)] if key in overrides else aliases
        values = None
        for name, factor in candidates:
            if name in frame.columns:
                values = pd.to_numeric(frame[name], errors="coerce").to_numpy(float) * factor
                break
        if values is None:
            if key in ("ra", "dec"):
                raise CatalogError(f"galaxy catalog has no {key} column; columns: {list(frame)}")
            values = np.full(len(frame), np.nan)
        out[key] = values
    if np.isnan(out["ra"]).any() or np.isnan(out["dec"]).any():
        raise CatalogError("galaxy catalog has rows without RA or Dec")
    if len(frame) and (np.abs(out["dec"]).max() > 90):
        raise CatalogError("galaxy catalog has declinations beyond +-90 deg")
    names = np.full(len(frame), "", dtype=object)
    name_cols = [overrides["name"]] if "name" in overrides else _NAME_COLUMNS
    for col in name_cols:
        if col in frame.columns:
            cleaned = np.array([_clean_name(v) for v in frame[col].to_numpy()], dtype=object)
            if col in ("GLADE no", "GLADE+"):
                cleaned = np.array([f"GLADE+{v}" if v else "" for v in cleaned], dtype=object)
            names = np.where(names == "", cleaned, names)
    table = QTable()
    table["name"] = names.astype(str)
    table["ra"] = np.mod(out["ra"], 360.0) * u.deg
    table["dec"] = out["dec"] * u.deg
    table["distance"] = out["distance"] * u.Mpc
    table["distance_err"] = out["distance_err"] * u.Mpc
    table["b_mag"] = out["b_mag"] * u.mag
    table["k_mag"] = out["k_mag"] * u.mag
    table["stellar_mass"] = out["stellar_mass"] * u.solMass
    return table


def _angular_distance_deg(ra0: float, dec0: float, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    a0, d0, a, d = map(np.radians, (ra0, dec0, ra, dec))
    hav = np.sin((d - d0) / 2) ** 2 + np.cos(d) * np.cos(d0) * np.sin((a - a0) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(hav, 0, 1))))


@runtime_checkable
class GalaxyCatalog(Protocol):
    """Anything that returns the normalised galaxy table for a cone and distance cut."""

    name: str

    def query(
        self, *, ra: float, dec: float, radius_deg: float, max_distance_mpc: float | None = None
    ) -> QTable:
        """Return the galaxies within ``radius_deg`` of a position and closer than a distance.

        Raises:
            CatalogError: The catalog cannot be read or queried.
            ServiceUnavailable: A remote catalog did not answer (retryable).
        """
        ...


class LocalGalaxyCatalog:
    """A galaxy catalog in a local file: CSV/TSV, HDF5, Parquet, FITS, ECSV or VOTable.

    Columns are recognised by their GLADE+ names (``RA``, ``DEC``, ``d_L``, ``B``, ``K``,
    ``M*``...), Vizier names (``RAJ2000``, ``dL``, ``Bmag``...), gwemopt's (``distmpc``,
    ``magb``) or CLU's (``mstar``); see :data:`COLUMN_ALIASES`. The file is read once.

    Args:
        path: The file.
        columns: Explicit ``{normalised_name: input_column}`` overrides.
        hdf5_path: Dataset path inside an HDF5 file (default: ``data``, else the first table).

    Raises:
        CatalogError: (on first query) unreadable file or missing columns.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        columns: Mapping[str, str] | None = None,
        hdf5_path: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path.name}"
        self._columns = dict(columns or {})
        self._hdf5_path = hdf5_path
        self._table: QTable | None = None

    def __repr__(self) -> str:
        return f"LocalGalaxyCatalog({str(self.path)!r})"

    def _read(self) -> pd.DataFrame | Table:
        suffixes = [s.lower() for s in self.path.suffixes]
        suffix = suffixes[-1] if suffixes else ""
        if suffix == ".gz" and len(suffixes) > 1:
            suffix = suffixes[-2]
        if not self.path.exists():
            raise CatalogError(f"galaxy catalog {self.path} does not exist")
        try:
            if suffix in (".csv", ".txt"):
                return pd.read_csv(self.path)
            if suffix == ".tsv":
                return pd.read_csv(self.path, sep="\t")
            if suffix in (".parquet", ".pq"):
                return pd.read_parquet(self.path)
            if suffix in (".hdf5", ".h5", ".hdf"):
                return self._read_hdf5()
            if suffix in (".fits", ".fit", ".ecsv", ".vot", ".xml"):
                return Table.read(self.path)
        except ImportError as exc:
            raise CatalogError(
                f"reading {self.path.name} needs an optional package: {exc}"
            ) from exc
        except CatalogError:
            raise
        except Exception as exc:
            raise CatalogError(f"cannot read galaxy catalog {self.path}: {exc}") from exc
        raise CatalogError(
            f"unknown galaxy catalog format {suffix!r} (csv, tsv, parquet, hdf5, fits, ecsv, vot)"
        )

    def _read_hdf5(self) -> Table:
        try:
            import h5py
        except ImportError as exc:
            raise CatalogError("reading HDF5 galaxy catalogs needs h5py") from exc
        path = self._hdf5_path
        if path is None:
            with h5py.File(self.path, "r") as handle:
                names: list[str] = []
                handle.visititems(
                    lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
                )
            if not names:
                raise CatalogError(f"no table in HDF5 file {self.path}")
            path = "data" if "data" in names else names[0]
        return Table.read(self.path, path=path)

    @property
    def table(self) -> QTable:
        """The whole normalised catalog (read on first use)."""
        if self._table is None:
            self._table = normalise_galaxy_table(self._read(), columns=self._columns)
        return self._table

    def query(
        self, *, ra: float, dec: float, radius_deg: float, max_distance_mpc: float | None = None
    ) -> QTable:
        """Galaxies within a cone, closer than ``max_distance_mpc`` (unknown distances kept out).

        Raises:
            CatalogError: Unreadable file or missing columns.
        """
        table = self.table
        sep = _angular_distance_deg(
            ra, dec, table["ra"].to_value(u.deg), table["dec"].to_value(u.deg)
        )
        keep = sep <= radius_deg
        if max_distance_mpc is not None:
            dist = table["distance"].to_value(u.Mpc)
            keep &= np.isfinite(dist) & (dist <= max_distance_mpc)
        return table[keep]


class VizierGladeCatalog:
    """GLADE+ (Dalya et al. 2022, Vizier ``VII/291/gladep``) queried through astroquery.

    Args:
        catalog: Vizier table.
        columns: Vizier columns to fetch.
        timeout: Seconds before giving up on Vizier.
        row_limit: At most this many rows (-1: no limit).
        server: Vizier mirror host (default: astroquery's configured one).

    Example:
        >>> glade = VizierGladeCatalog()  # doctest: +SKIP
        >>> glade.query(ra=197.4, dec=-23.4, radius_deg=3, max_distance_mpc=80)  # doctest: +SKIP
    """

    name = "vizier:VII/291/gladep"

    def __init__(
        self,
        *,
        catalog: str = "VII/291/gladep",
        columns: list[str] | None = None,
        timeout: float = 60.0,
        row_limit: int = 50000,
        server: str | None = None,
    ) -> None:
        self.catalog = catalog
        self.name = f"vizier:{catalog}"
        self.columns = columns or [
            "GLADE+",
            "GWGC",
            "HyperLEDA",
            "RAJ2000",
            "DEJ2000",
            "Bmag",
            "Kmag",
            "dL",
            "e_dL",
            "M*",
        ]
        self.timeout = timeout
        self.row_limit = row_limit
        self.server = server

    def query(
        self, *, ra: float, dec: float, radius_deg: float, max_distance_mpc: float | None = None
    ) -> QTable:
        """Galaxies within a cone from Vizier, closer than ``max_distance_mpc``.

        Raises:
            ServiceUnavailable: Timeouts, connection errors, 429 and 5xx (retryable).
            CatalogError: Any other failure, or an answer that is not a catalog.
        """
        import requests
        from astropy.coordinates import SkyCoord
        from astroquery.vizier import Vizier

        filters = {} if max_distance_mpc is None else {"dL": f"<{max_distance_mpc:.3f}"}
        kwargs: dict[str, Any] = {
            "columns": self.columns,
            "column_filters": filters,
            "row_limit": self.row_limit,
            "timeout": self.timeout,
        }
        if self.server:
            kwargs["vizier_server"] = self.server
        vizier = Vizier(**kwargs)
        centre = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
        operation = f"Vizier query of {self.catalog}"
        try:
            result = vizier.query_region(
                centre, radius=radius_deg * u.deg, catalog=self.catalog, cache=False
            )
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise ServiceUnavailable(f"{operation} failed: {exc}", operation=operation) from exc
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            retry_after = None
            if exc.response is not None and exc.response.headers.get("Retry-After", "").isdigit():
                retry_after = float(exc.response.headers["Retry-After"])
            if status is not None and (status == 429 or status >= 500):
                raise ServiceUnavailable(
                    f"{operation} failed with HTTP {status}",
                    operation=operation,
                    status_code=status,
                    retry_after=retry_after,
                ) from exc
            raise CatalogError(f"{operation} failed with HTTP {status}: {exc}") from exc
        except Exception as exc:
            raise CatalogError(f"{operation} failed: {exc}") from exc
        if isinstance(result, str | bytes) or result is None:
            raise CatalogError(f"{operation} returned something that is not a table")
        if len(result) == 0:
            return empty_galaxy_table()
        table = result[0]
        if len(table) >= self.row_limit > 0:
            raise CatalogError(
                f"{operation} hit the row limit ({self.row_limit}): the region is too large "
                "for galaxy targeting"
            )
        return normalise_galaxy_table(table)


def region_cone(skymap: SkyMap, level: float = 0.9) -> tuple[float, float, float]:
    """A cone ``(ra, dec, radius)`` in degrees enclosing the ``level`` credible region."""
    mask = skymap.region_mask(level)
    if not mask.any():
        mask[int(np.argmax(skymap.probdensity))] = True
    ra, dec = (c[mask] for c in skymap.pixel_centers())
    a, d = np.radians(ra), np.radians(dec)
    w = skymap.prob[mask]
    vec = np.array(
        [
            np.sum(w * np.cos(d) * np.cos(a)),
            np.sum(w * np.cos(d) * np.sin(a)),
            np.sum(w * np.sin(d)),
        ]
    )
    norm = float(np.linalg.norm(vec))
    if norm < 1e-9:  # a ring-like region: no meaningful centre, take the whole sky
        return 0.0, 0.0, 180.0
    vec /= norm
    ra0 = math.degrees(math.atan2(vec[1], vec[0])) % 360
    dec0 = math.degrees(math.asin(np.clip(vec[2], -1, 1)))
    pixel_radius = np.degrees(np.sqrt(skymap.pixel_area_sr[mask]))
    radius = float(np.max(_angular_distance_deg(ra0, dec0, ra, dec) + pixel_radius))
    return ra0, dec0, min(radius, 180.0)


def _weights(galaxies: QTable, mode: WeightMode) -> tuple[np.ndarray, np.ndarray, str]:
    """Per-galaxy weights, a mask of rows whose weight was filled in, and the mode used."""
    n = len(galaxies)
    if n == 0 or mode == "none":
        return np.ones(n), np.zeros(n, dtype=bool), "none"
    dist = galaxies["distance"].to_value(u.Mpc)
    options: dict[str, np.ndarray] = {
        "stellar_mass": galaxies["stellar_mass"].to_value(u.solMass),
    }
    for key in ("k_mag", "b_mag"):
        mag = galaxies[key].to_value(u.mag)
        with np.errstate(invalid="ignore", divide="ignore"):
            absolute = mag - 5 * np.log10(dist * 1e6 / 10)
            options[key.replace("_mag", "_luminosity")] = 10 ** (
                -0.4 * (absolute - _SUN_ABS_MAG[key])
            )
    if mode == "auto":
        mode = "none"
        for key in ("stellar_mass", "k_luminosity", "b_luminosity"):
            if np.mean(np.isfinite(options[key]) & (options[key] > 0)) >= 0.5:
                mode = key  # type: ignore[assignment]
                break
        if mode == "none":
            return np.ones(n), np.zeros(n, dtype=bool), "none"
    if mode not in options:
        raise ValueError(f"unknown weight mode {mode!r}")
    values = options[mode].astype(float)
    good = np.isfinite(values) & (values > 0)
    # Galaxies without the quantity get the median of the others (they are kept, not dropped).
    fill = float(np.median(values[good])) if good.any() else 1.0
    return np.where(good, values, fill), ~good, mode


def rank_galaxies(
    skymap: SkyMap,
    galaxies: QTable,
    *,
    level: float = 0.9,
    weight: WeightMode = "auto",
) -> QTable:
    """Score galaxies by 3-D probability density times a mass or luminosity weight.

    ``score = rho(n) * DISTNORM(n) * N(d; DISTMU(n), sqrt(DISTSIGMA(n)**2 + d_err**2)) * w``:
    the sky map's probability per Mpc^3 at the galaxy (Singer et al. 2016), with the galaxy's
    distance error added to the line-of-sight width, times the weight ``w``. A galaxy is in
    the ``level`` volume when it lies in the ``level`` 2-D credible region and within the
    central ``level`` interval of the distance posterior along its line of sight (a Gaussian
    interval around the conditional mean, widened by the galaxy's distance error).

    Args:
        skymap: A sky map with distance layers.
        galaxies: A normalised galaxy table (see the module docstring).
        level: Credible level of the volume.
        weight: ``stellar_mass``, ``k_luminosity``, ``b_luminosity``, ``none`` or ``auto``
            (the first with values for at least half of the galaxies).

    Returns:
        The input rows, best first, with added columns: ``density_2d`` [1/deg2],
        ``dp_dv`` [1/Mpc3], ``weight``, ``weight_filled`` (median used), ``score``,
        ``in_region`` (2-D), ``in_volume``, ``probability`` (score share among galaxies in the
        volume; 0 outside it). ``meta['weight_mode']`` names the weight used.

    Raises:
        SkymapError: The map has no distance layers.
    """
    if not skymap.has_distance:
        raise SkymapError("galaxy ranking needs a sky map with distance layers")
    out = QTable(galaxies, copy=True)
    n = len(out)
    ra = out["ra"].to_value(u.deg)
    dec = out["dec"].to_value(u.deg)
    dist = out["distance"].to_value(u.Mpc)
    err = np.nan_to_num(out["distance_err"].to_value(u.Mpc), nan=0.0)
    if n:
        idx, found = skymap.lookup(ra, dec)
        rho = np.where(found, skymap.probdensity[idx], 0.0)
        mu = np.where(found, skymap.distmu[idx], np.inf)
        sigma = np.where(found, skymap.distsigma[idx], 1.0)
        sigma_eff = np.sqrt(sigma**2 + err**2)
        _, _, norm = ansatz_moments(mu, sigma_eff)
        with np.errstate(invalid="ignore", over="ignore"):
            gauss = np.exp(-0.5 * ((dist - mu) / sigma_eff) ** 2) / (
                math.sqrt(2 * math.pi) * sigma_eff
            )
        dp_dv = np.where(np.isfinite(dist) & (dist > 0), rho * norm * gauss, 0.0)
        dp_dv = np.nan_to_num(dp_dv, nan=0.0)
        mean, std, _ = ansatz_moments(mu, sigma)
        z = math.sqrt(2) * float(special.erfinv(level))
        in_region = np.asarray(skymap.searched_probability(ra, dec)) <= level
        with np.errstate(invalid="ignore"):
            in_volume = in_region & (np.abs(dist - mean) <= z * np.sqrt(std**2 + err**2))
        in_volume &= np.isfinite(dist)
    else:
        rho = dp_dv = np.zeros(0)
        in_region = in_volume = np.zeros(0, dtype=bool)
    weights, filled, mode = _weights(out, weight)
    score = dp_dv * weights
    total = float(score[in_volume].sum()) if n else 0.0
    probability = np.where(in_volume, score / total, 0.0) if total > 0 else np.zeros(n)
    out["density_2d"] = rho * SR_PER_DEG2 / u.deg**2
    out["dp_dv"] = dp_dv / u.Mpc**3
    out["weight"] = weights
    out["weight_filled"] = filled
    out["score"] = score
    out["in_region"] = in_region
    out["in_volume"] = in_volume
    out["probability"] = probability
    order = np.lexsort((-score, ~in_volume))  # volume members first, then by score
    out = out[order]
    out.meta["weight_mode"] = mode
    out.meta["level"] = level
    return out
