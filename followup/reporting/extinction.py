"""Galactic extinction at a position: E(B-V) from IRSA's dust service, A per LCO filter.

IRSA's Galactic Dust Reddening and Extinction service (through
``astroquery.ipac.irsa.irsa_dust.IrsaDust``) answers E(B-V) from the Schlegel, Finkbeiner and
Davis (1998) maps and its Schlafly and Finkbeiner (2011) recalibration; the latter is the one
reported, at the position's own pixel (``ext SandF ref``; the ``mean`` columns average a
region of degrees around it). The extinction in a filter is ``R * E(B-V)`` with the R_V = 3.1
coefficients of Schlafly and Finkbeiner (2011), Table 6: SDSS ugriz for LCO's u', g', r', i',
Pan-STARRS z for ``zs`` and Landolt UBVRI for the Bessell filters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from followup.reporting.bands import band_label

__all__ = ["R_COEFFICIENTS", "Extinction", "query_extinction"]

R_COEFFICIENTS: Mapping[str, float] = {
    "up": 4.239,
    "gp": 3.303,
    "rp": 2.285,
    "ip": 1.698,
    "zs": 1.322,
    "U": 4.334,
    "B": 3.626,
    "V": 2.742,
    "R": 2.169,
    "I": 1.505,
}
"""A_band / E(B-V) for R_V = 3.1 (Schlafly and Finkbeiner 2011, Table 6), by LCO filter code."""


class Extinction(BaseModel):
    """Galactic reddening at one position.

    Attributes:
        ebv: E(B-V) in magnitudes (Schlafly and Finkbeiner 2011 recalibration of SFD).
        source: Where it came from, for the text.
    """

    ebv: float = Field(ge=0)
    source: str = "Schlafly & Finkbeiner 2011"

    def a_band(self, band: str) -> float | None:
        """A in magnitudes in an LCO filter, or None for a filter without a coefficient."""
        r = R_COEFFICIENTS.get(band)
        return None if r is None else r * self.ebv

    def text(self, bands: list[str] | tuple[str, ...] = ()) -> str:
        """``E(B-V) = 0.045 mag (A_r = 0.10)``: the reddening and A in the bands given."""
        parts = [f"A_{band_label(b)} = {a:.2f}" for b in bands if (a := self.a_band(b)) is not None]
        return f"E(B-V) = {self.ebv:.3f} mag" + (f" ({', '.join(parts)})" if parts else "")


def _ebv(table: Any) -> float:
    for column in ("ext SandF ref", "ext SFD ref"):
        if column in table.colnames:
            return float(table[column][0])
    raise ValueError(f"IRSA dust answer without an E(B-V) column: {table.colnames}")


def query_extinction(ra: float, dec: float, *, url: str | None = None) -> Extinction:
    """Ask IRSA's dust service for E(B-V) at a position (ICRS degrees).

    Args:
        ra: Right ascension in degrees.
        dec: Declination in degrees.
        url: The service URL (a sandbox stand-in); default IRSA's.

    Returns:
        The reddening there.

    Raises:
        ValueError: The answer has no E(B-V).
        Exception: astroquery's errors when IRSA cannot be reached or refuses the position.
    """
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astroquery import cache_conf
    from astroquery.ipac.irsa.irsa_dust import IrsaDust

    coordinate = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
    options = {"url": url} if url else {}
    with cache_conf.set_temp("cache_active", False):  # no answers kept on disk
        table = IrsaDust().get_query_table(coordinate, section="ebv", **options)
    return Extinction(ebv=_ebv(table))
