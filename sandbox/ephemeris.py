"""Low-precision Sun and Moon positions (the Astronomical Almanac's formulas).

Good to about 0.01 deg (Sun) and 0.3 deg (Moon): enough for the portal's rise-set check and for
the synthetic sky's moonlight. Times are Unix seconds or days since J2000.0 (TT ~ UTC here).
"""

from __future__ import annotations

import numpy as np

__all__ = ["days_since_j2000", "equatorial", "moon", "sun"]


def days_since_j2000(unix: np.ndarray) -> np.ndarray:
    """Days since J2000.0 of Unix times (seconds)."""
    return unix / 86400.0 + 2440587.5 - 2451545.0


def sun(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apparent right ascension and declination of the Sun in radians."""
    mean_longitude = np.radians(280.460 + 0.9856474 * d)
    anomaly = np.radians(357.528 + 0.9856003 * d)
    longitude = mean_longitude + np.radians(1.915 * np.sin(anomaly) + 0.020 * np.sin(2 * anomaly))
    return equatorial(longitude, np.zeros_like(longitude), d)


def moon(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Geocentric right ascension and declination of the Moon in radians."""
    t = d / 36525.0

    def s(a: float, b: float) -> np.ndarray:
        return np.sin(np.radians(a + b * t))

    longitude = (
        218.32
        + 481267.881 * t
        + 6.29 * s(135.0, 477198.87)
        - 1.27 * s(259.3, -413335.36)
        + 0.66 * s(235.7, 890534.22)
        + 0.21 * s(269.9, 954397.74)
        - 0.19 * s(357.5, 35999.05)
        - 0.11 * s(186.5, 966404.03)
    )
    latitude = (
        5.13 * s(93.3, 483202.02)
        + 0.28 * s(228.2, 960400.89)
        - 0.28 * s(318.3, 6003.15)
        - 0.17 * s(217.6, -407332.21)
    )
    return equatorial(np.radians(longitude), np.radians(latitude), d)


def equatorial(
    longitude: np.ndarray, latitude: np.ndarray, d: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Right ascension and declination (radians) of ecliptic longitude and latitude."""
    obliquity = np.radians(23.439 - 0.0000004 * d)
    ra = np.arctan2(
        np.sin(longitude) * np.cos(obliquity) - np.tan(latitude) * np.sin(obliquity),
        np.cos(longitude),
    )
    dec = np.arcsin(
        np.sin(latitude) * np.cos(obliquity)
        + np.cos(latitude) * np.sin(obliquity) * np.sin(longitude)
    )
    return ra, dec
