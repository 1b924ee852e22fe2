"""Reference-star catalogues behind one small interface: Vizier (REFCAT2, PS1, Gaia), a file, a frame's CAT.

Every provider answers ``query(center, radius)`` with an astropy Table in one normalised schema:

========== ====== =====================================================================
column     unit   meaning
========== ====== =====================================================================
``ra``     deg    right ascension (ICRS)
``dec``    deg    declination (ICRS)
``g``      mag    AB magnitude in g (NaN when the catalogue has none), same for r, i, z
``g_err``  mag    1-sigma error of ``g``, same for r, i, z
========== ====== =====================================================================

``meta["catalog"]`` names the source. LCO filter codes map onto the bands with
:func:`catalog_band` (gp -> g, rp -> r, ip -> i, zs -> z), and BANZAI's colour per band is given by
:data:`COLOUR_INDEX` (g: g-r, r: r-i, i: r-i, z: i-z).

Vizier access goes through astroquery (``requests``); tests mock ``requests.Session``. The Vizier
server is configurable: a host name (astroquery builds ``https://<host>/viz-bin/votable``) or a
full base URL such as ``http://127.0.0.1:8123`` (for a local stand-in; astroquery alone cannot do
plain http).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle, SkyCoord
from astropy.table import Table

from followup.exceptions import CatalogError, ServiceUnavailable

__all__ = [
    "BANDS",
    "COLOUR_INDEX",
    "VIZIER_CATALOGS",
    "FrameCatalog",
    "LocalCatalog",
    "ReferenceCatalog",
    "TableCatalog",
    "VizierCatalog",
    "VizierCatalogSpec",
    "catalog_band",
    "cone",
    "normalise_catalog",
]

BANDS: tuple[str, ...] = ("g", "r", "i", "z")
"""Bands of the normalised schema."""

COLOUR_INDEX: dict[str, tuple[str, str]] = {
    "g": ("g", "r"),
    "r": ("r", "i"),
    "i": ("r", "i"),
    "z": ("i", "z"),
}
"""The colour BANZAI uses for each band's colour term."""

_FILTER_TO_BAND = {
    "gp": "g",
    "g": "g",
    "g'": "g",
    "sdss-g": "g",
    "rp": "r",
    "r": "r",
    "r'": "r",
    "sdss-r": "r",
    "ip": "i",
    "i": "i",
    "i'": "i",
    "sdss-i": "i",
    "zs": "z",
    "z": "z",
    "zp": "z",
    "z'": "z",
    "ps-z": "z",
}

_DEFAULT_ERROR = 0.02  # mag, for catalogues without per-star errors

_FORMATS = {
    ".csv": "ascii.csv",
    ".ecsv": "ascii.ecsv",
    ".xml": "votable",
    ".vot": "votable",
    ".votable": "votable",
    ".parquet": "parquet",
    ".fits": "fits",
    ".fit": "fits",
}


def catalog_band(filter_name: str) -> str:
    """Catalogue band (g, r, i, z) of an LCO filter code or band name.

    Raises:
        CatalogError: The filter has no counterpart in the griz reference catalogues.
    """
    band = _FILTER_TO_BAND.get(str(filter_name).strip().lower())
    if band is None:
        raise CatalogError(
            f"filter {filter_name!r} has no griz reference magnitudes (use gp, rp, ip, zs)"
        )
    return band


@runtime_checkable
class ReferenceCatalog(Protocol):
    """Anything that returns reference stars in the normalised schema."""

    name: str

    def query(self, center: SkyCoord, radius: Angle | u.Quantity) -> Table:
        """Stars within ``radius`` of ``center`` in the normalised schema."""
        ...


@dataclass(frozen=True)
class VizierCatalogSpec:
    """How one Vizier catalogue maps onto the normalised schema.

    Attributes:
        vizier_id: Vizier catalogue identifier.
        ra: Column of right ascension (deg).
        dec: Column of declination (deg).
        mags: Normalised band -> (magnitude column, error column or None).
        description: Human name.
    """

    vizier_id: str
    ra: str
    dec: str
    mags: Mapping[str, tuple[str, str | None]]
    description: str


VIZIER_CATALOGS: dict[str, VizierCatalogSpec] = {
    "refcat2": VizierCatalogSpec(
        vizier_id="J/ApJ/867/105/refcat2",
        ra="RA_ICRS",
        dec="DE_ICRS",
        mags={b: (f"{b}mag", f"e_{b}mag") for b in BANDS},
        description="ATLAS-REFCAT2 (Tonry et al. 2018), the catalogue BANZAI calibrates against",
    ),
    "ps1": VizierCatalogSpec(
        vizier_id="II/349/ps1",
        ra="RAJ2000",
        dec="DEJ2000",
        mags={b: (f"{b}mag", f"e_{b}mag") for b in BANDS},
        description="Pan-STARRS1 DR1 mean PSF magnitudes",
    ),
    "gaia-synphot": VizierCatalogSpec(
        vizier_id="I/360/syntphot",
        ra="RA_ICRS",
        dec="DE_ICRS",
        # Only the magnitude columns are requested (their error columns' names were not checked
        # against the live service); the normalised errors default to 0.02 mag.
        mags={b: (f"{b}mag", None) for b in BANDS},
        description="Gaia DR3 synthetic SDSS photometry (Gaia Collaboration, Montegriffo et al. 2023)",
    ),
}
"""Vizier catalogues known by short name."""


def _empty() -> Table:
    table = Table()
    table["ra"] = np.zeros(0) * u.deg
    table["dec"] = np.zeros(0) * u.deg
    for band in BANDS:
        table[band] = np.zeros(0) * u.mag
        table[f"{band}_err"] = np.zeros(0) * u.mag
    return table


def _column(table: Table, name: str) -> np.ndarray:
    col = table[name]
    values = np.ma.filled(np.ma.asarray(col, dtype=float), np.nan)
    return np.asarray(values, float)


def _find(table: Table, candidates: tuple[str, ...]) -> str | None:
    lower = {c.lower(): c for c in table.colnames}
    for cand in candidates:
        if cand.lower() in lower:
            return lower[cand.lower()]
    return None


def normalise_catalog(table: Table, *, name: str = "") -> Table:
    """Turn a reference catalogue with known column names into the normalised schema.

    Recognised: the normalised schema itself; Vizier REFCAT2 (``RA_ICRS``, ``gmag``, ``e_gmag``,
    ...), PS1 (``RAJ2000``/``DEJ2000``), Gaia synthetic photometry; generic ``ra``/``dec`` with
    ``g``/``gmag`` and ``g_err``/``e_g``/``gmag_err``. Masked values become NaN; missing errors
    become 0.02 mag; bands absent from the input are NaN.

    Args:
        table: Input catalogue.
        name: Catalogue name recorded in ``meta["catalog"]`` (default: the input's ``meta["name"]``).

    Returns:
        A new table in the normalised schema (rows in input order).

    Raises:
        CatalogError: No recognisable position columns, or no recognisable magnitude column.
    """
    ra_col = _find(table, ("ra", "RA_ICRS", "RAJ2000", "_RAJ2000", "RA_deg", "RAdeg", "raMean"))
    dec_col = _find(table, ("dec", "DE_ICRS", "DEJ2000", "_DEJ2000", "DEC_deg", "DEdeg", "decMean"))
    if ra_col is None or dec_col is None:
        raise CatalogError(f"no RA/Dec columns among {table.colnames}")
    out = Table(
        meta={"catalog": name or str(table.meta.get("catalog", table.meta.get("name", "")))}
    )
    out["ra"] = _column(table, ra_col) * u.deg
    out["dec"] = _column(table, dec_col) * u.deg
    found = 0
    for band in BANDS:
        mag_col = _find(table, (band, f"{band}mag", f"{band}_mag", f"{band}MeanPSFMag"))
        err_col = _find(
            table,
            (f"{band}_err", f"e_{band}mag", f"e_{band}", f"{band}mag_err", f"{band}MeanPSFMagErr"),
        )
        if mag_col is None:
            out[band] = np.full(len(table), np.nan) * u.mag
            out[f"{band}_err"] = np.full(len(table), np.nan) * u.mag
            continue
        found += 1
        mags = _column(table, mag_col)
        errs = (
            _column(table, err_col) if err_col is not None else np.full(len(table), _DEFAULT_ERROR)
        )
        errs = np.where(np.isfinite(errs) & (errs > 0), errs, _DEFAULT_ERROR)
        out[band] = mags * u.mag
        out[f"{band}_err"] = np.where(np.isfinite(mags), errs, np.nan) * u.mag
    if found == 0 and len(table):
        raise CatalogError(f"no griz magnitude columns among {table.colnames}")
    return out


def cone(table: Table, center: SkyCoord, radius: Angle | u.Quantity) -> Table:
    """Rows of a normalised catalogue within ``radius`` of ``center``."""
    if len(table) == 0:
        return table
    coords = SkyCoord(
        np.asarray(table["ra"], float) * u.deg, np.asarray(table["dec"], float) * u.deg
    )
    keep = coords.separation(center) <= Angle(radius)
    return table[keep]


class TableCatalog:
    """An in-memory catalogue (for example the sandbox sky's reference catalogue).

    Args:
        table: Any table :func:`normalise_catalog` understands.
        name: Catalogue name.
    """

    def __init__(self, table: Table, *, name: str = "table") -> None:
        self.name = name
        self._table = normalise_catalog(table, name=name)

    def query(self, center: SkyCoord, radius: Angle | u.Quantity) -> Table:
        """Stars within ``radius`` of ``center`` (normalised schema)."""
        return cone(self._table, center, radius)


class LocalCatalog:
    """A reference catalogue in a local file: CSV, ECSV, VOTable, FITS or Parquet.

    The file is read on the first query (never at construction) and kept in memory.

    Args:
        path: The file. Its columns may be the normalised schema or Vizier's (see
            :func:`normalise_catalog`).
        format: astropy Table format; guessed from the extension when None.

    Raises:
        CatalogError: On query, when the file is missing, unreadable or has no usable columns.
    """

    def __init__(self, path: str | os.PathLike[str], *, format: str | None = None) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.format = format or _FORMATS.get(self.path.suffix.lower())
        self._table: Table | None = None

    def _load(self) -> Table:
        if self._table is None:
            if not self.path.is_file():
                raise CatalogError(f"catalogue file {self.path} does not exist")
            try:
                raw = Table.read(self.path, format=self.format)
            except Exception as exc:  # astropy raises many types for a bad file
                raise CatalogError(f"cannot read catalogue {self.path}: {exc}") from exc
            self._table = normalise_catalog(raw, name=self.name)
        return self._table

    def query(self, center: SkyCoord, radius: Angle | u.Quantity) -> Table:
        """Stars within ``radius`` of ``center`` (normalised schema)."""
        return cone(self._load(), center, radius)


class FrameCatalog:
    """Reference stars from a BANZAI frame's own ``CAT``: its ``mag`` column, calibrated by ``L1ZP``.

    Only unflagged (``flag == 0``) sources with a finite magnitude are kept; the magnitude error
    is ``magerr``. The zero point these stars carry is BANZAI's (``L1ZPERR`` is its systematic
    error, available as :attr:`zero_point_error`). Magnitudes go in the band of the frame's
    ``FILTER``; the other bands are NaN.

    Args:
        catalog: The ``CAT`` table.
        header: The frame's science header (``FILTER``, ``L1ZP``, ``L1ZPERR``, ``EXPTIME``).

    Raises:
        CatalogError: The CAT has no calibrated magnitudes (no ``mag`` column and no ``L1ZP``),
            no positions, or the filter is not g, r, i or z.
    """

    def __init__(self, catalog: Table, header: Mapping[str, Any]) -> None:
        self.name = "frame CAT (BANZAI L1ZP)"
        band = catalog_band(str(header.get("FILTER", "")))
        if "ra" not in catalog.colnames or "dec" not in catalog.colnames:
            raise CatalogError("the frame's CAT has no ra/dec columns")
        flux = _column(catalog, "flux") if "flux" in catalog.colnames else None
        if "mag" in catalog.colnames:
            mag = _column(catalog, "mag")
            magerr = (
                _column(catalog, "magerr")
                if "magerr" in catalog.colnames
                else np.full(len(catalog), np.nan)
            )
        elif "L1ZP" in header and flux is not None and "EXPTIME" in header:
            with np.errstate(invalid="ignore", divide="ignore"):
                mag = float(header["L1ZP"]) - 2.5 * np.log10(flux / float(header["EXPTIME"]))
                magerr = 1.0857 * _column(catalog, "fluxerr") / flux
        else:
            raise CatalogError("the frame's CAT is not calibrated (no mag column, no L1ZP)")
        flag = (
            np.asarray(catalog["flag"])
            if "flag" in catalog.colnames
            else np.zeros(len(catalog), int)
        )
        keep = (flag == 0) & np.isfinite(mag) & np.isfinite(magerr) & (magerr > 0)
        n = int(keep.sum())
        table = Table(meta={"catalog": self.name})
        table["ra"] = _column(catalog, "ra")[keep] * u.deg
        table["dec"] = _column(catalog, "dec")[keep] * u.deg
        for b in BANDS:
            table[b] = (mag[keep] if b == band else np.full(n, np.nan)) * u.mag
            table[f"{b}_err"] = (magerr[keep] if b == band else np.full(n, np.nan)) * u.mag
        self.band = band
        self.zero_point = float(header["L1ZP"]) if "L1ZP" in header else None
        self.zero_point_error = float(header.get("L1ZPERR", 0.0) or 0.0)
        self._table = table

    @classmethod
    def from_frame(cls, frame: Any) -> FrameCatalog:
        """Build from a :class:`followup.reduction.FitsFrame` (or anything :func:`followup.reduction.read_frame` reads).

        Raises:
            CatalogError: The frame has no CAT, or see the class.
        """
        from followup.reduction import read_frame

        fr = read_frame(frame)
        if fr.catalog is None:
            raise CatalogError(f"frame {fr.name or '<memory>'} has no CAT extension")
        return cls(fr.catalog, fr.header)

    def query(self, center: SkyCoord, radius: Angle | u.Quantity) -> Table:
        """Stars within ``radius`` of ``center`` (normalised schema)."""
        return cone(self._table, center, radius)


class VizierCatalog:
    """A reference catalogue queried from Vizier through astroquery.

    Args:
        catalog: Short name (``refcat2``, ``ps1``, ``gaia-synphot``) or a
            :class:`VizierCatalogSpec`.
        server: Vizier host (e.g. ``vizier.cds.unistra.fr``, ``vizier.cfa.harvard.edu``) or a full
            base URL (``http://127.0.0.1:8123``); default astroquery's configured server.
        timeout: Seconds to wait for Vizier.
        mag_limit: Keep stars brighter than this in ``limit_band`` (a server-side filter).
        limit_band: Band of ``mag_limit``.
        row_limit: Maximum rows (-1: no limit).
        cache: Let astroquery cache responses on disk (off by default).

    Example:
        >>> refcat = VizierCatalog("refcat2", mag_limit=19.5)
        >>> stars = refcat.query(SkyCoord(150.1, 2.2, unit="deg"), 15 * u.arcmin)
    """

    def __init__(
        self,
        catalog: str | VizierCatalogSpec = "refcat2",
        *,
        server: str | None = None,
        timeout: float = 60.0,
        mag_limit: float | None = None,
        limit_band: str = "r",
        row_limit: int = -1,
        cache: bool = False,
    ) -> None:
        if isinstance(catalog, str):
            if catalog not in VIZIER_CATALOGS:
                raise CatalogError(
                    f"unknown Vizier catalogue {catalog!r}; known: {sorted(VIZIER_CATALOGS)}"
                )
            self.spec = VIZIER_CATALOGS[catalog]
            self.name = catalog
        else:
            self.spec = catalog
            self.name = catalog.vizier_id
        if limit_band not in self.spec.mags:
            raise CatalogError(f"limit_band must be one of {sorted(self.spec.mags)}")
        self.server = server
        self.timeout = float(timeout)
        self.mag_limit = mag_limit
        self.limit_band = limit_band
        self.row_limit = int(row_limit)
        self.cache = bool(cache)

    def _client(self) -> Any:
        from astroquery.vizier import VizierClass

        columns = [self.spec.ra, self.spec.dec]
        for mag, err in self.spec.mags.values():
            columns.append(mag)
            if err:
                columns.append(err)
        filters = {}
        if self.mag_limit is not None:
            filters[self.spec.mags[self.limit_band][0]] = f"<{self.mag_limit}"
        kwargs: dict[str, Any] = {
            "columns": columns,
            "column_filters": filters,
            "row_limit": self.row_limit,
            "timeout": self.timeout,
        }
        if self.server and "://" in self.server:
            client = _VizierAtUrl(**kwargs)
            client.base_url = self.server.rstrip("/")
            return client
        if self.server:
            kwargs["vizier_server"] = self.server
        return VizierClass(**kwargs)

    def query(self, center: SkyCoord, radius: Angle | u.Quantity) -> Table:
        """Query Vizier for stars within ``radius`` of ``center``.

        Returns:
            The stars in the normalised schema (possibly empty).

        Raises:
            ServiceUnavailable: Timeout, connection failure, HTTP 429 or 5xx (worth retrying).
            CatalogError: Any other HTTP error, or a response that cannot be parsed.
        """
        import requests

        client = self._client()
        url = client._server_to_url()
        try:
            result = client.query_region(
                center, radius=Angle(radius), catalog=self.spec.vizier_id, cache=self.cache
            )
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            message = f"Vizier {self.spec.vizier_id} query failed with HTTP {status}"
            if status is not None and (status == 429 or status >= 500):
                retry = None
                if (
                    exc.response is not None
                    and exc.response.headers.get("Retry-After", "").isdigit()
                ):
                    retry = float(exc.response.headers["Retry-After"])
                raise ServiceUnavailable(
                    message,
                    operation="vizier_query",
                    status_code=status,
                    url=url,
                    retry_after=retry,
                ) from exc
            raise CatalogError(message) from exc
        except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as exc:
            raise ServiceUnavailable(
                f"Vizier {self.spec.vizier_id} unreachable: {exc}",
                operation="vizier_query",
                url=url,
            ) from exc
        except Exception as exc:  # astroquery's TableParseError and friends
            raise CatalogError(
                f"Vizier {self.spec.vizier_id} answer could not be used: {exc}"
            ) from exc
        if result is None:
            raise CatalogError(
                f"Vizier {self.spec.vizier_id} answered with something that is not a VOTable ({url})"
            )
        if len(result) == 0:
            return Table(_empty(), meta={"catalog": self.name})
        table = result[0]
        renamed = Table(meta={"catalog": self.name})
        if self.spec.ra not in table.colnames or self.spec.dec not in table.colnames:
            raise CatalogError(
                f"Vizier {self.spec.vizier_id} answer lacks {self.spec.ra}/{self.spec.dec}"
            )
        renamed["ra"] = table[self.spec.ra]
        renamed["dec"] = table[self.spec.dec]
        for band, (mag, err) in self.spec.mags.items():
            if mag in table.colnames:
                renamed[band] = table[mag]
                if err and err in table.colnames:
                    renamed[f"{band}_err"] = table[err]
        out = normalise_catalog(renamed, name=self.name)
        return cone(out, center, Angle(radius) * (1 + 1e-9))


def _vizier_at_url_class() -> type:
    from astroquery.vizier import VizierClass

    class VizierAtUrl(VizierClass):  # type: ignore[misc, valid-type]
        """astroquery's Vizier client with a configurable scheme and port (for a local stand-in)."""

        base_url = ""

        def _server_to_url(self, return_type: str = "votable") -> str:
            return f"{self.base_url}/viz-bin/{return_type}"

    return VizierAtUrl


class _LazyVizierAtUrl:
    """Builds the astroquery subclass on first use, so importing this module does not import astroquery."""

    _cls: type | None = None

    def __call__(self, **kwargs: Any) -> Any:
        if self._cls is None:
            type(self)._cls = _vizier_at_url_class()
        assert self._cls is not None
        return self._cls(**kwargs)


_VizierAtUrl = _LazyVizierAtUrl()
