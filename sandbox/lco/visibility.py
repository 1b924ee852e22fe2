"""When a request's target can be observed: the portal's rise-set check, with the sandbox's own sky.

The portal refuses a request whose target is never observable in its windows, or observable for
less than the request's duration (observatorycontrolsystem/observation-portal,
``observation_portal/requestgroups/serializers.py`` ``RequestSerializer.validate`` with
``observation_portal/common/rise_set_utils.py``): at each telescope of the request's class, the
sky must be darker than nautical twilight (``twilight='nautical'``, the Sun below -12 deg), the
target above the telescope's horizon and below the airmass limit, inside the telescope's
hour-angle limits, at least ``min_lunar_distance`` from the Moon, and the Moon no more illuminated
than ``max_lunar_phase`` while it is up. Times before now do not count (``exclude_past=True``).

The Sun and Moon come from low-precision formulas (the Astronomical Almanac's, good to about
0.01 deg and 0.3 deg), sampled every five minutes: ample for a yes/no on hours-long windows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from sandbox.ephemeris import days_since_j2000 as _days_since_j2000
from sandbox.ephemeris import moon as _moon
from sandbox.ephemeris import sun as _sun
from sandbox.lco.configdb import Telescope

__all__ = ["STEP_S", "largest_visible_interval"]

STEP_S = 300.0
"""Longest sampling step in seconds."""
_NAUTICAL_TWILIGHT_DEG = -12.0
_MAX_SAMPLES = 200_000


def _altitude_and_hour_angle(
    ra: np.ndarray | float, dec: np.ndarray | float, lst: np.ndarray, latitude: float
) -> tuple[np.ndarray, np.ndarray]:
    hour_angle = (lst - ra + np.pi) % (2 * np.pi) - np.pi
    sin_alt = np.sin(latitude) * np.sin(dec) + np.cos(latitude) * np.cos(dec) * np.cos(hour_angle)
    return np.arcsin(np.clip(sin_alt, -1.0, 1.0)), hour_angle


def _separation(ra1: Any, dec1: Any, ra2: Any, dec2: Any) -> np.ndarray:
    cos_sep = np.sin(dec1) * np.sin(dec2) + np.cos(dec1) * np.cos(dec2) * np.cos(ra1 - ra2)
    return np.arccos(np.clip(cos_sep, -1.0, 1.0))


def _observable(
    times: np.ndarray,
    telescope: Telescope,
    target: Mapping[str, Any],
    constraints: Mapping[str, Any],
) -> np.ndarray:
    """Which sample times the target is observable from one telescope."""
    d = _days_since_j2000(times)
    lst = np.radians(280.46061837 + 360.98564736629 * d + telescope.longitude)
    latitude = np.radians(telescope.latitude)
    ra, dec = np.radians(float(target["ra"])), np.radians(float(target["dec"]))
    sun_ra, sun_dec = _sun(d)
    sun_alt, _ = _altitude_and_hour_angle(sun_ra, sun_dec, lst, latitude)
    alt, hour_angle = _altitude_and_hour_angle(ra, dec, lst, latitude)
    max_airmass = float(constraints.get("max_airmass", 1.6))
    lowest = max(np.radians(telescope.horizon_deg), np.arcsin(1.0 / max_airmass))
    hour_angle_h = np.degrees(hour_angle) / 15.0
    ok = (
        (sun_alt < np.radians(_NAUTICAL_TWILIGHT_DEG))
        & (alt >= lowest)
        & (hour_angle_h >= telescope.ha_limit_neg_h)
        & (hour_angle_h <= telescope.ha_limit_pos_h)
    )
    if not ok.any():
        return ok
    moon_ra, moon_dec = _moon(d)
    ok &= _separation(ra, dec, moon_ra, moon_dec) >= np.radians(
        float(constraints.get("min_lunar_distance", 30.0))
    )
    max_phase = float(constraints.get("max_lunar_phase", 1.0))
    if max_phase < 1.0:
        illuminated = (1.0 - np.cos(_separation(sun_ra, sun_dec, moon_ra, moon_dec))) / 2.0
        moon_alt, _ = _altitude_and_hour_angle(moon_ra, moon_dec, lst, latitude)
        ok &= ~((illuminated > max_phase) & (moon_alt > 0))
    return ok


def _longest_run(flags: np.ndarray) -> int:
    if not flags.any():
        return 0
    padded = np.concatenate(([0], flags.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max())


def largest_visible_interval(
    windows: Iterable[Mapping[str, datetime]],
    configurations: Iterable[Mapping[str, Any]],
    telescopes: Iterable[Telescope],
    now: datetime,
) -> timedelta:
    """The longest span, from now on, in which every configuration's target is observable.

    Args:
        windows: The request's windows (``start``, ``end``, aware datetimes).
        configurations: The request's configurations (``target`` with ICRS ``ra``/``dec``,
            ``constraints``); targets of other types are taken as observable.
        telescopes: The telescopes that could take the request.
        now: The portal's time.

    Returns:
        The largest interval at any one telescope (zero when the target never rises there).
    """
    configurations = list(configurations)
    best = 0.0
    for window in windows:
        start = max(window["start"], now).astimezone(UTC)
        end = window["end"].astimezone(UTC)
        if end <= start:
            continue
        span = (end - start).total_seconds()
        count = min(_MAX_SAMPLES, math.ceil(span / STEP_S) + 1)
        times, step = np.linspace(start.timestamp(), end.timestamp(), count, retstep=True)
        for telescope in telescopes:
            ok = np.ones(count, dtype=bool)
            for configuration in configurations:
                target = configuration.get("target", {})
                if target.get("type", "ICRS") in ("ICRS", "HOUR_ANGLE") and "ra" in target:
                    ok &= _observable(times, telescope, target, configuration["constraints"])
            # n consecutive samples cover (n - 1) steps of certain visibility.
            best = max(best, max(0, _longest_run(ok) - 1) * float(step))
    return timedelta(seconds=best)
