"""LCO observing sites from geodetic coordinates, and offline-safe Earth orientation settings.

Sites are built with :meth:`astropy.coordinates.EarthLocation.from_geodetic` (``of_site`` needs
the internet). :func:`configure_offline_iers` keeps alt/az working when the bundled IERS table
is stale and never triggers a download.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from astropy import units as u
from astropy.coordinates import EarthLocation

__all__ = [
    "LCO_SITES",
    "IersStaleWarning",
    "Site",
    "configure_offline_iers",
    "get_sites",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Site:
    """An observatory site.

    Attributes:
        code: LCO site code (``coj``, ``cpt``, ``tfn``, ``lsc``, ``elp``, ``ogg``).
        name: Human name.
        lat_deg: Geodetic latitude in degrees (north positive).
        lon_deg: Geodetic longitude in degrees (east positive).
        height_m: Height above the WGS84 ellipsoid in metres.
    """

    code: str
    name: str
    lat_deg: float
    lon_deg: float
    height_m: float

    @property
    def location(self) -> EarthLocation:
        """The site as an :class:`~astropy.coordinates.EarthLocation` (no network access)."""
        return EarthLocation.from_geodetic(
            lon=self.lon_deg * u.deg, lat=self.lat_deg * u.deg, height=self.height_m * u.m
        )


# Geodetic positions of the LCO network's 1-m/0.4-m/2-m sites (LCO site pages and configdb,
# rounded to ~10 m; tom_base's table has Teide at latitude 20.3, a typo for 28.3).
LCO_SITES: dict[str, Site] = {
    site.code: site
    for site in (
        Site("coj", "Siding Spring Observatory", -31.272932, 149.070648, 1116.0),
        Site("cpt", "SAAO Sutherland", -32.380556, 20.810116, 1804.0),
        Site("tfn", "Teide Observatory", 28.300300, -16.511700, 2390.0),
        Site("lsc", "Cerro Tololo", -30.167383, -70.804789, 2198.0),
        Site("elp", "McDonald Observatory", 30.679869, -104.015175, 2027.0),
        Site("ogg", "Haleakala Observatory", 20.706944, -156.258056, 3055.0),
    )
}
"""The six LCO sites by code."""


def get_sites(codes: Iterable[str] | None = None) -> list[Site]:
    """Return LCO sites by code (all six when ``codes`` is None).

    Raises:
        ValueError: An unknown site code.
    """
    if codes is None:
        return list(LCO_SITES.values())
    out = []
    for code in codes:
        key = code.strip().lower()
        if key not in LCO_SITES:
            raise ValueError(f"unknown LCO site {code!r}; known: {', '.join(LCO_SITES)}")
        out.append(LCO_SITES[key])
    return out


class IersStaleWarning(UserWarning):
    """The bundled IERS Earth-orientation table is older than 30 days; values are extrapolated."""


_IERS_CONFIGURED = False


def configure_offline_iers(*, now: datetime | None = None) -> bool:
    """Make astropy's Earth orientation work offline; warn once if the table is stale.

    Sets ``astropy.utils.iers.conf.auto_max_age = None`` (no refusal of an old table) and
    ``auto_download = False`` (never fetch one). For target planning the error of a stale
    table (UT1-UTC extrapolation, polar motion) is far below a minute of time.

    Args:
        now: The current time, for the staleness check (default: the clock).

    Returns:
        True when the table is stale (more than 30 days past its last measurement).
    """
    global _IERS_CONFIGURED
    from astropy.time import Time
    from astropy.utils import iers

    iers.conf.auto_max_age = None
    iers.conf.auto_download = False
    if _IERS_CONFIGURED:
        return False
    _IERS_CONFIGURED = True
    try:
        table = iers.IERS_Auto.open()
        last_measured = float(table.meta.get("predictive_mjd", table["MJD"][-1].value))
    except Exception as exc:  # a broken installation: say so, planning still uses IERS-B
        logger.warning("could not open the IERS table: %s", exc)
        return True
    current = Time(now or datetime.now(UTC)).mjd
    age = current - last_measured
    if age > 30:
        message = (
            f"the bundled IERS table ends its measurements {age:.0f} days ago; Earth "
            "orientation is extrapolated (fine for planning, update astropy-iers-data)"
        )
        logger.warning(message)
        warnings.warn(message, IersStaleWarning, stacklevel=2)
        return True
    return False
