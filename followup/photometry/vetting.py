"""Vetting of difference-image candidates, with every reason kept.

A candidate passes when nothing explains it away:

- its real-bogus score is at least :data:`~followup.photometry.realbogus.REAL_SCORE` and its
  forced S/N on the difference at least 5;
- no known minor planet is there at that time (IMCCE SkyBoT through astroquery; the sandbox
  stands in at another URL);
- no catalogued point source (a star, perhaps variable) lies within ``star_radius_arcsec``;
- it is not in the halo of a bright catalogued star (:func:`bright_star_radius`) while much
  fainter than it: what a difference leaves in the wings of a 12-14 mag star, whose PSF changes
  from night to night beyond what one convolution kernel matches, is a ring of point-like
  residuals seen on every frame (ZTF's real-bogus uses the nearest star's distance and
  magnitude for the same reason);
- if a galaxy of the catalogue lies within 30 kpc (projected) its distance agrees with the GW
  distance along that line of sight (the sky map's conditional distance) within
  ``distance_sigma``; a candidate without a host is kept (hostless kilonovae exist);
- it lies inside the ``max_level`` credible region of the event's latest sky map.

Each check adds a sentence to the candidate's ``reasons``, passing or not, so the approval form
can show a person why a candidate is there.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import QTable, Table

from followup.exceptions import ServiceError
from followup.photometry.realbogus import REAL_SCORE

__all__ = [
    "MinorPlanets",
    "SkybotMinorPlanets",
    "Vetting",
    "bright_star_radius",
    "passing",
    "vet_candidates",
]

BRIGHT_STAR_MAG = 15.0
"""Catalogued stars brighter than this (r) have a halo candidates are checked against."""
BRIGHT_STAR_RADIUS_ARCSEC = 3.0
"""Halo radius of a star of :data:`BRIGHT_STAR_MAG`; it grows 1.58x per magnitude brighter."""
HALO_CONTRAST_MAG = 2.5
"""A candidate in a halo is a residual when it is this much fainter than the star, or more."""
HOST_KPC = 30.0
"""Largest projected offset of a transient from its host galaxy."""
MIN_SNR = 5.0


class MinorPlanets(Protocol):
    """Known solar-system objects in a cone at a time."""

    def objects(self, ra: float, dec: float, radius_deg: float, when: datetime) -> Table:
        """``name``, ``ra``, ``dec`` (deg), ``v_mag`` of the objects in the cone."""
        ...


@dataclass
class SkybotMinorPlanets:
    """Minor planets and comets from IMCCE SkyBoT (``astroquery.imcce.Skybot``).

    Attributes:
        url: The cone-search service (default astroquery's, the real SkyBoT); the sandbox's
            stand-in for drills and tests.
        location: Observatory code (MPC), e.g. ``W85`` for LCO CTIO; ``500`` is geocentric.
        timeout: Seconds per request.
    """

    url: str | None = None
    location: str = "500"
    timeout: float = 30.0

    def objects(self, ra: float, dec: float, radius_deg: float, when: datetime) -> Table:
        """Objects in the cone at ``when``.

        Raises:
            ServiceError: SkyBoT cannot be reached or answers nonsense.
        """
        import warnings

        import requests
        from astropy.time import Time
        from astroquery.imcce import Skybot, conf

        url = self.url or conf.skybot_server
        response = None
        try:
            # astroquery builds the query; the answer is fetched here so that the URL can be
            # the sandbox's (astroquery accepts only IMCCE's own servers).
            payload = Skybot.cone_search_async(
                SkyCoord(ra * u.deg, dec * u.deg),
                radius_deg * u.deg,
                Time(when),
                location=self.location,
                get_query_payload=True,
            )
            with requests.Session() as session:
                response = session.request("GET", url, params=payload, timeout=self.timeout)
            response.raise_for_status()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = QTable.read(io.BytesIO(response.content), format="votable")
        except requests.RequestException as exc:
            raise ServiceError(f"SkyBoT at {url}: {type(exc).__name__}: {exc}") from exc
        except (ValueError, IndexError) as exc:
            # No object: SkyBoT answers a VOTable without a table (or a plain message).
            if response is not None and b"no solar system object" in response.content.lower():
                return _empty_objects()
            raise ServiceError(f"SkyBoT at {url} answered nonsense: {exc}") from exc
        if len(found) == 0:
            return _empty_objects()
        coords = SkyCoord(
            [str(v) for v in found["ra"]], [str(v) for v in found["de"]], unit=(u.hourangle, u.deg)
        )
        out = Table()
        out["name"] = [str(n) for n in found["name"]]
        out["ra"] = coords.ra.deg
        out["dec"] = coords.dec.deg
        out["v_mag"] = (
            np.asarray(found["magV"], float)
            if "magV" in found.colnames
            else np.full(len(found), np.nan)
        )
        return out


def _empty_objects() -> Table:
    return Table(
        {"name": np.zeros(0, str), "ra": np.zeros(0), "dec": np.zeros(0), "v_mag": np.zeros(0)}
    )


@dataclass
class Vetting:
    """The outcome of vetting one candidate."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    host: str | None = None
    host_distance_mpc: float | None = None
    host_offset_arcsec: float | None = None
    credible_level: float | None = None
    minor_planet: str | None = None


def _separation_arcsec(ra: float, dec: float, ras: np.ndarray, decs: np.ndarray) -> np.ndarray:
    if not len(ras):
        return np.zeros(0)
    return (
        SkyCoord(ra * u.deg, dec * u.deg)
        .separation(SkyCoord(np.asarray(ras, float) * u.deg, np.asarray(decs, float) * u.deg))
        .arcsec
    )


def _value(cell: Any) -> float:
    return float(cell.value if hasattr(cell, "value") else cell)


def vet_candidates(
    candidates: QTable,
    *,
    when: datetime | None = None,
    stars: Table | None = None,
    galaxies: QTable | None = None,
    skymap: Any = None,
    minor_planets: MinorPlanets | None = None,
    star_radius_arcsec: float = 1.0,
    minor_planet_radius_arcsec: float = 5.0,
    distance_sigma: float = 3.0,
    max_level: float = 0.99,
    min_score: float = REAL_SCORE,
) -> list[Vetting]:
    """Vet each candidate, keeping every reason.

    The candidates are those of :func:`~followup.photometry.transients.find_transients`, or any
    table with ``ra``, ``dec``, ``snr`` and ``score``.

    Args:
        candidates: The candidates.
        when: Mid-exposure time, for the minor-planet check.
        stars: Catalogued point sources (``ra``, ``dec`` and optionally ``r``): a star there
            explains the candidate (a variable).
        galaxies: Galaxy table (:mod:`followup.galaxies` columns) around the field.
        skymap: The event's latest :class:`followup.skymap.SkyMap`.
        minor_planets: SkyBoT (or a stand-in); None skips the check (and says so).
        star_radius_arcsec: Match radius for catalogued stars.
        minor_planet_radius_arcsec: Match radius for minor planets.
        distance_sigma: Host distances further than this many sigma from the GW distance fail.
        max_level: Candidates outside this credible level fail.
        min_score: Lowest real-bogus score that passes.

    Returns:
        One :class:`Vetting` per candidate, in order.

    Raises:
        ServiceError: SkyBoT fails (the caller decides whether to vet without it).
    """
    if stars is not None and "ra" not in stars.colnames:
        from followup.catalogs import normalise_catalog

        stars = normalise_catalog(stars)
    n = len(candidates)
    ras = np.array([_value(c) for c in candidates["ra"]]) if n else np.zeros(0)
    decs = np.array([_value(c) for c in candidates["dec"]]) if n else np.zeros(0)
    objects = _empty_objects()
    if n and minor_planets is not None and when is not None:
        centre_ra = (
            float(
                np.degrees(
                    np.arctan2(np.sin(np.radians(ras)).mean(), np.cos(np.radians(ras)).mean())
                )
            )
            % 360
        )
        centre_dec = float(decs.mean())
        radius = float(_separation_arcsec(centre_ra, centre_dec, ras, decs).max()) / 3600.0
        objects = minor_planets.objects(centre_ra, centre_dec, radius + 0.01, when)
    out: list[Vetting] = []
    for k in range(n):
        row = candidates[k]
        v = Vetting(passed=True)
        _check_score(v, row, min_score)
        if minor_planets is None or when is None:
            v.reasons.append("minor planets not checked")
        else:
            _check_minor_planets(v, ras[k], decs[k], objects, minor_planet_radius_arcsec)
        if stars is not None:
            _check_stars(v, ras[k], decs[k], stars, star_radius_arcsec)
            _check_bright_stars(v, ras[k], decs[k], _candidate_mag(row), stars)
        if galaxies is not None:
            _check_host(v, ras[k], decs[k], galaxies, skymap, distance_sigma)
        if skymap is not None:
            level = float(skymap.searched_probability(ras[k], decs[k]))
            v.credible_level = level
            if level > max_level:
                v.passed = False
                v.reasons.append(f"outside the {max_level:.0%} credible region (at {level:.1%})")
            else:
                v.reasons.append(f"inside the {level:.1%} credible region of the latest map")
        out.append(v)
    return out


def _check_score(v: Vetting, row: Any, min_score: float) -> None:
    if "score" not in row.colnames:  # found by catalogue match: no difference to score on
        v.reasons.append("no real-bogus score: found by catalogue match, not on a difference")
        return
    score = float(row["score"])
    snr = float(row["snr"]) if "snr" in row.colnames else math.inf
    bogus = str(row["bogus_reasons"]) if "bogus_reasons" in row.colnames else ""
    if score < min_score:
        v.passed = False
        v.reasons.append(f"real-bogus score {score:.2f} < {min_score:.2f}: {bogus or 'bogus'}")
    else:
        v.reasons.append(f"real-bogus score {score:.2f}")
    if not snr >= MIN_SNR:
        v.passed = False
        v.reasons.append(f"S/N {snr:.1f} on the difference is below {MIN_SNR:.0f}")


def _check_minor_planets(v: Vetting, ra: float, dec: float, objects: Table, radius: float) -> None:
    sep = _separation_arcsec(ra, dec, objects["ra"], objects["dec"])
    if len(sep) and sep.min() <= radius:
        j = int(np.argmin(sep))
        v.passed = False
        v.minor_planet = str(objects["name"][j])
        v.reasons.append(
            f"known minor planet {objects['name'][j]} {sep[j]:.1f}\u2033 away"
            f" (V {float(objects['v_mag'][j]):.1f})"
        )
    else:
        v.reasons.append("no known minor planet there (SkyBoT)")


def _check_stars(v: Vetting, ra: float, dec: float, stars: Table, radius: float) -> None:
    sep = _separation_arcsec(ra, dec, stars["ra"], stars["dec"])
    if len(sep) and sep.min() <= radius:
        j = int(np.argmin(sep))
        mag = f" r {float(stars['r'][j]):.1f}" if "r" in stars.colnames else ""
        v.passed = False
        v.reasons.append(f"catalogued star{mag} {sep[j]:.1f}\u2033 away: a variable star")
    else:
        v.reasons.append(f"no catalogued star within {radius:.1f}\u2033")


def bright_star_radius(mag: np.ndarray | float) -> np.ndarray:
    """Radius (arcsec) of a catalogued star's halo: 3" at r = 15, x1.58 per magnitude brighter.

    0 for stars fainter than :data:`BRIGHT_STAR_MAG`. The scaling follows the radius at which a
    Moffat (beta 2.5-4.5) wing falls to a fixed surface brightness.
    """
    mag = np.asarray(mag, float)
    radius = BRIGHT_STAR_RADIUS_ARCSEC * 10 ** (0.2 * (BRIGHT_STAR_MAG - mag))
    return np.where(np.isfinite(mag) & (mag <= BRIGHT_STAR_MAG), radius, 0.0)


def _candidate_mag(row: Any) -> float:
    """The candidate's AB magnitude from its flux (NaN when not positive)."""
    if "flux_ujy" in row.colnames:
        flux = _value(row["flux_ujy"])
        return 23.9 - 2.5 * math.log10(flux) if flux > 0 else math.nan
    if "mag" in row.colnames:
        return _value(row["mag"])
    return math.nan


def _check_bright_stars(v: Vetting, ra: float, dec: float, mag: float, stars: Table) -> None:
    if "r" not in stars.colnames or not len(stars):
        return
    star_mag = np.asarray(stars["r"], float)
    bright = np.isfinite(star_mag) & (star_mag <= BRIGHT_STAR_MAG)
    if not bright.any():
        return
    sep = _separation_arcsec(
        ra, dec, np.asarray(stars["ra"])[bright], np.asarray(stars["dec"])[bright]
    )
    radius = bright_star_radius(star_mag[bright])
    inside = sep <= radius
    if not inside.any():
        return
    j = int(np.argmin(np.where(inside, star_mag[bright], np.inf)))
    if math.isfinite(mag) and mag < star_mag[bright][j] + HALO_CONTRAST_MAG:
        v.reasons.append(
            f"in the halo of a r {star_mag[bright][j]:.1f} star ({sep[j]:.1f}\u2033) but bright"
            " enough not to be its residual"
        )
        return
    v.passed = False
    v.reasons.append(
        f"in the halo of a r {star_mag[bright][j]:.1f} star {sep[j]:.1f}\u2033 away (within"
        f" {radius[j]:.1f}\u2033): a residual of its wings"
    )


def _check_host(
    v: Vetting, ra: float, dec: float, galaxies: QTable, skymap: Any, distance_sigma: float
) -> None:
    if not len(galaxies):
        v.reasons.append("no catalogued galaxy nearby (hostless)")
        return
    dist = np.asarray(u.Quantity(galaxies["distance"], u.Mpc).value, float)
    sep = _separation_arcsec(ra, dec, galaxies["ra"], galaxies["dec"])
    with np.errstate(invalid="ignore", divide="ignore"):
        kpc = sep / 206264.8 * dist * 1000.0
    near = np.isfinite(kpc) & (kpc <= HOST_KPC)
    if not near.any():
        v.reasons.append(f"no catalogued galaxy within {HOST_KPC:.0f} kpc (hostless)")
        return
    j = int(np.nonzero(near)[0][np.argmin(kpc[near])])
    name = (
        str(galaxies["name"][j])
        or f"galaxy {_value(galaxies['ra'][j]):.4f} {_value(galaxies['dec'][j]):+.4f}"
    )
    v.host, v.host_distance_mpc, v.host_offset_arcsec = name, float(dist[j]), float(sep[j])
    text = f"host {name} {sep[j]:.1f}\u2033 away ({kpc[j]:.1f} kpc) at {dist[j]:.0f} Mpc"
    along = skymap.distance_along(ra, dec) if skymap is not None and skymap.has_distance else None
    mean = float(along.mean_mpc) if along is not None else math.nan
    if not math.isfinite(mean):
        v.reasons.append(text + "; the map has no distance here")
        return
    std = float(along.std_mpc)
    err = float(u.Quantity(galaxies["distance_err"][j], u.Mpc).value)
    err = err if math.isfinite(err) and err > 0 else 0.2 * dist[j]
    pull = abs(dist[j] - mean) / math.hypot(std, err)
    text += f"; GW {mean:.0f} \u00b1 {std:.0f} Mpc along this line of sight ({pull:.1f}\u03c3)"
    if pull > distance_sigma:
        v.passed = False
        v.reasons.append(text + ": the distances disagree")
    else:
        v.reasons.append(text + ": the distances agree")


def passing(candidates: QTable, vettings: Sequence[Vetting]) -> QTable:
    """The candidates that passed, with ``reasons`` joined."""
    keep = [k for k, v in enumerate(vettings) if v.passed]
    table = candidates[keep]
    table["reasons"] = ["; ".join(vettings[k].reasons) for k in keep]
    return table
