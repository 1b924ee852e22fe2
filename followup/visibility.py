"""When targets can be observed from LCO sites: airmass, twilight, the Moon, pointing limits.

A target is observable from a site when it is below the airmass limit and above the
telescope class's horizon, inside the class's hour-angle limits, the Sun is below the twilight
altitude, the target is at least the minimum distance from the Moon, and the Moon is not both up
and more illuminated than allowed (the observation portal's rise-set rules).

All targets, all sites and a time grid are computed at once with an analytic altitude: target
positions are transformed once to CIRS (precession, nutation, aberration) and the hour angle
follows from the Earth rotation angle, which is linear in time. That agrees with astropy's
``AltAz`` to under an arcsecond (checked in the tests); refraction is not included, as in
``AltAz`` without pressure. Window edges are refined by bisection to about a second.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import erfa
import numpy as np
from astropy import units as u
from astropy.coordinates import CIRS, Latitude, Longitude, get_body, get_sun
from astropy.coordinates.erfa_astrom import erfa_astrom
from astropy.time import Time
from scipy.interpolate import CubicSpline

from followup.models import VisibilityWindow
from followup.sites import Site, configure_offline_iers, get_sites

__all__ = [
    "ERA_RATE_RAD_S",
    "POINTING_LIMITS",
    "PointingLimits",
    "VisibilityCalculator",
    "VisibilityResult",
    "airmass_to_altitude",
    "visibility_windows",
    "warm_up",
]

ERA_RATE_RAD_S = 2 * math.pi * 1.00273781191135448 / 86400.0
"""Rate of the Earth rotation angle in radians per (UT1) second."""

_BISECT_STEPS = 20

EPHEMERIS_STEP_S = 3600.0
"""The Sun and the Moon are computed this far apart and interpolated (cubic spline) in between.

Computing them (ERFA ephemerides and the GCRS to CIRS transform) costs about 30 microseconds
per time, and the grid has hundreds. The Moon moves about 0.5 deg an hour along a smooth path:
the interpolation is good to about 1e-6 deg (checked in the tests).
"""


@dataclass(frozen=True)
class PointingLimits:
    """Where one LCO telescope class can point, per site (configdb's horizons and HA limits).

    Attributes:
        telescope_class: ``1m0``, ``0m4`` or ``2m0``.
        horizon_deg: Lowest altitude per site code.
        ha_limit_neg_h: Most negative hour angle in hours.
        ha_limit_pos_h: Largest hour angle in hours.
    """

    telescope_class: str
    horizon_deg: dict[str, float]
    ha_limit_neg_h: float
    ha_limit_pos_h: float


POINTING_LIMITS: dict[str, PointingLimits] = {
    "1m0": PointingLimits(
        "1m0", {"cpt": 15.0, "lsc": 15.0, "coj": 15.0, "elp": 15.0, "tfn": 15.0}, -4.6, 4.6
    ),
    "0m4": PointingLimits("0m4", {"ogg": 25.0, "coj": 25.0, "tfn": 15.0}, -4.533333, 4.4666667),
    "2m0": PointingLimits("2m0", {"ogg": 25.0, "coj": 25.0}, -12.0, 12.0),
}
"""Pointing limits of the LCO telescope classes (LCO configdb, as the sandbox portal uses)."""


@contextlib.contextmanager
def _quiet_iers() -> Iterator[None]:
    """Silence astropy's per-call IERS range warnings: a stale table is warned about once."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*IERS.*")
        warnings.filterwarnings("ignore", message=".*polar motion.*")
        warnings.filterwarnings("ignore", message=".*dubious year.*")
        yield


def airmass_to_altitude(airmass: float) -> float:
    """Altitude in degrees at which the plane-parallel airmass ``sec z`` equals ``airmass``.

    Raises:
        ValueError: ``airmass`` below 1.
    """
    if airmass < 1:
        raise ValueError(f"airmass must be >= 1, got {airmass}")
    return math.degrees(math.asin(1.0 / airmass))


def _as_time(value: datetime | Time) -> Time:
    if isinstance(value, Time):
        return Time(value, scale="utc")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return Time(value.astimezone(UTC), scale="utc")


@dataclass
class VisibilityResult:
    """Visibility of a list of targets.

    Attributes:
        windows: One list of windows per target, sorted by start time (all sites).
        reasons: One string per target: empty when it has a window, else why it has none.
        hours: Total observable hours per target, summed over sites.
    """

    windows: list[list[VisibilityWindow]]
    reasons: list[str]
    hours: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def visible(self) -> np.ndarray:
        """True for targets with at least one window."""
        return np.array([bool(w) for w in self.windows], dtype=bool)


class VisibilityCalculator:
    """Sun and Earth-rotation data for one span and set of sites, reused for many targets.

    Args:
        start: Span start (aware datetime, naive read as UTC, or astropy Time).
        span_hours: Span length in hours.
        sites: Sites to consider (default: the six LCO sites).
        max_airmass: Airmass limit (``sec z``), >= 1.
        sun_alt_max_deg: The Sun must be below this altitude (degrees), e.g. -12.
        step_minutes: Grid step; windows shorter than a step can be missed.
        min_moon_distance_deg: Targets closer to the Moon than this are not observable
            (0: no Moon rule). The Moon is geocentric (parallax up to 1 deg).
        max_moon_illumination: While the Moon is up at a site and more illuminated than this
            fraction (0 to 1), nothing is observable there (1: no rule).
        telescope_class: Apply this class's pointing limits (see :data:`POINTING_LIMITS`);
            sites without the class are left out. None: no horizon or hour-angle limits.

    Raises:
        ValueError: Non-positive span or step, airmass below 1.
    """

    def __init__(
        self,
        start: datetime | Time,
        *,
        span_hours: float = 24.0,
        sites: Sequence[Site] | None = None,
        max_airmass: float = 1.6,
        sun_alt_max_deg: float = -12.0,
        step_minutes: float = 5.0,
        min_moon_distance_deg: float = 0.0,
        max_moon_illumination: float = 1.0,
        telescope_class: str | None = None,
    ) -> None:
        if not span_hours > 0:
            raise ValueError(f"span_hours must be positive, got {span_hours}")
        if not step_minutes > 0:
            raise ValueError(f"step_minutes must be positive, got {step_minutes}")
        configure_offline_iers()
        with _quiet_iers():
            self.start = _as_time(start)
            self.start_datetime: datetime = self.start.to_datetime(timezone=UTC)
        self.span_s = float(span_hours) * 3600.0
        self.sites = list(sites) if sites is not None else get_sites()
        self.limits = POINTING_LIMITS[telescope_class] if telescope_class else None
        if self.limits is not None:
            self.sites = [s for s in self.sites if s.code in self.limits.horizon_deg]
        if not self.sites:
            raise ValueError("no sites given")
        self.max_airmass = float(max_airmass)
        self.alt_min_deg = airmass_to_altitude(self.max_airmass)
        self.min_moon_distance_deg = float(min_moon_distance_deg)
        self.max_moon_illumination = float(max_moon_illumination)
        # Per-site lowest altitude: the airmass limit or the telescope's horizon.
        horizons = [self.limits.horizon_deg[s.code] if self.limits else -90.0 for s in self.sites]
        self.sin_alt_site = np.sin(np.radians(np.maximum(self.alt_min_deg, horizons)))
        self.sun_alt_max_deg = float(sun_alt_max_deg)
        n = max(2, math.ceil(self.span_s / (step_minutes * 60.0)) + 1)
        self.t = np.linspace(0.0, self.span_s, n)
        self.lat = np.radians([s.lat_deg for s in self.sites])
        self.lon = np.radians([s.lon_deg for s in self.sites])
        n_nodes = max(4, math.ceil(self.span_s / EPHEMERIS_STEP_S) + 1)
        # Ephemeris times: hourly (at least four, for the cubic), or the grid when as coarse.
        self._t_eph = self.t if n_nodes >= self.t.size else np.linspace(0.0, self.span_s, n_nodes)
        with _quiet_iers():
            self.era0 = float(self.start.earth_rotation_angle(0 * u.deg).rad)
        self.sun_ra, self.sun_dec = self._ephemeris(get_sun)
        self.sin_alt_min = math.sin(math.radians(self.alt_min_deg))
        self.sin_sun_max = math.sin(math.radians(self.sun_alt_max_deg))
        sun_sin = self._sin_alt(self.sun_ra, self.sun_dec, self.t)  # (site, time)
        self.dark = sun_sin < self.sin_sun_max  # (site, time)
        if self.max_moon_illumination < 1.0:
            moon_up = self._sin_alt(self.moon_ra, self.moon_dec, self.t) > 0
            self.dark &= ~(moon_up & (self.moon_illumination > self.max_moon_illumination)[None])
        local = self.era(self.t)[None, :] + self.lon[:, None]  # (site, time)
        cos_lat = np.cos(self.lat)[:, None]
        self._basis = np.stack(
            [
                np.broadcast_to(np.sin(self.lat)[:, None], local.shape),
                cos_lat * np.cos(local),
                cos_lat * np.sin(local),
            ]
        ).reshape(3, -1)
        # Hour-angle limits as a distance from their centre c: |HA - c| <= w, i.e.
        # cos(HA - c) >= cos(w), and cos(local - c - ra) is again a dot product (see
        # observable_grid). Limits 24 h or more apart do not limit.
        self._ha_limited = False
        if self.limits is not None:
            neg = math.radians(15.0 * self.limits.ha_limit_neg_h)
            pos = math.radians(15.0 * self.limits.ha_limit_pos_h)
            self._ha_limited = pos - neg < 2 * math.pi
            self._ha_centre = (pos + neg) / 2
            self._cos_ha_half = math.cos((pos - neg) / 2)
            shifted = (local - self._ha_centre).reshape(-1)
            self._ha_basis = np.stack([np.cos(shifted), np.sin(shifted)])

    def _ephemeris(self, body: Any) -> tuple[np.ndarray, np.ndarray]:
        """CIRS RA (unwrapped) and Dec in radians of a body on the grid, from ``self._t_eph``.

        Args:
            body: ``get_sun`` or a ``get_body``-like callable of an astropy Time.
        """
        with _quiet_iers():
            times = self.start + self._t_eph * u.s
            cirs = body(times).transform_to(CIRS(obstime=times))
        ra = np.unwrap(cirs.ra.rad)
        dec = cirs.dec.rad
        if self._t_eph is self.t:
            return ra, dec
        ra, dec = CubicSpline(self._t_eph, np.stack([ra, dec], axis=1))(self.t).T
        return ra, dec

    @functools.cached_property
    def _moon(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The Moon on the grid: CIRS RA, Dec (radians) and illuminated fraction.

        Computed on first use: plans without a Moon rule do not pay for it.
        """
        ra, dec = self._ephemeris(functools.partial(get_body, "moon"))
        elongation = _separation(self.sun_ra, self.sun_dec, ra, dec)
        return ra, dec, (1.0 - np.cos(elongation)) / 2.0

    @property
    def moon_ra(self) -> np.ndarray:
        """CIRS right ascension of the (geocentric) Moon on the grid, radians, unwrapped."""
        return self._moon[0]

    @property
    def moon_dec(self) -> np.ndarray:
        """CIRS declination of the Moon on the grid, radians."""
        return self._moon[1]

    @property
    def moon_illumination(self) -> np.ndarray:
        """Illuminated fraction of the Moon on the grid (from its elongation)."""
        return self._moon[2]

    # ------------------------------------------------------------------ geometry
    def era(self, t: np.ndarray) -> np.ndarray:
        """Earth rotation angle (radians) at ``t`` seconds after the start."""
        return self.era0 + ERA_RATE_RAD_S * t

    def _sin_alt(
        self, ra: np.ndarray, dec: np.ndarray, t: np.ndarray, site: np.ndarray | None = None
    ) -> np.ndarray:
        """sin(altitude) for CIRS ra/dec (radians) at times ``t``; broadcasts over sites.

        With ``site`` None, the result has a leading site axis; else ``site`` holds a site
        index per element.
        """
        if site is None:
            lat = self.lat.reshape((-1,) + (1,) * np.ndim(t))
            lon = self.lon.reshape((-1,) + (1,) * np.ndim(t))
        else:
            lat = self.lat[site]
            lon = self.lon[site]
        hour_angle = self.era(t) + lon - ra
        return np.sin(lat) * np.sin(dec) + np.cos(lat) * np.cos(dec) * np.cos(hour_angle)

    @functools.cached_property
    def _astrom(self) -> np.ndarray:
        """ERFA astrometry context of ICRS to CIRS at the middle of the span (astropy's)."""
        with _quiet_iers():
            mid = self.start + (self.span_s / 2) * u.s
            return erfa_astrom.get().apco(CIRS(obstime=mid))

    def to_cirs(self, ra_deg: Any, dec_deg: Any) -> tuple[np.ndarray, np.ndarray]:
        """ICRS degrees to CIRS radians at the middle of the span.

        The steps of astropy's ICRS to CIRS transform for a direction without distance
        (light deflection, aberration, bias-precession-nutation), with its astrometry context
        computed once per calculator rather than once per call.
        """
        ra = Longitude(np.atleast_1d(np.asarray(ra_deg, dtype=float)) * u.deg).radian
        dec = Latitude(np.atleast_1d(np.asarray(dec_deg, dtype=float)) * u.deg).radian
        astrom = self._astrom
        direction = erfa.s2c(ra, dec)
        natural = erfa.ld(1.0, direction, direction, astrom["eh"], astrom["em"], 1e-6)
        proper = erfa.ab(natural, astrom["v"], astrom["em"], astrom["bm1"])
        cirs_ra, cirs_dec = erfa.c2s(erfa.rxp(astrom["bpn"], proper))
        return np.asarray(erfa.anp(cirs_ra), dtype=float), np.asarray(cirs_dec, dtype=float)

    def altitude(self, ra_deg: Any, dec_deg: Any, t_seconds: Any) -> np.ndarray:
        """Altitude in degrees of targets at times, shape ``(n_targets, n_sites, n_times)``."""
        ra, dec = self.to_cirs(ra_deg, dec_deg)
        t = np.atleast_1d(np.asarray(t_seconds, dtype=float))
        s = self._sin_alt(ra[:, None], dec[:, None], t[None, :], None)  # (site, target, time)
        return np.degrees(np.arcsin(np.clip(s.transpose(1, 0, 2), -1, 1)))

    def _sun_sin_alt(self, t: np.ndarray, site: np.ndarray) -> np.ndarray:
        ra = np.interp(t, self.t, self.sun_ra)
        dec = np.interp(t, self.t, self.sun_dec)
        return self._sin_alt(ra, dec, t, site)

    # ------------------------------------------------------------------ screening
    def observable_grid(self, ra_deg: Any, dec_deg: Any) -> tuple[np.ndarray, np.ndarray]:
        """Grid masks ``(high, ok)`` of shape ``(n_targets, n_sites, n_times)``.

        ``high``: above the airmass limit; ``ok``: above it with the Sun down.
        """
        return self._grid(*self.to_cirs(ra_deg, dec_deg))

    def _grid(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`observable_grid` of CIRS positions in radians."""
        # sin(alt) = sin(lat) sin(dec) + cos(lat) cos(dec) cos(ERA + lon - ra) is a dot product
        # of a per-target vector with a per-(site, time) vector: one matrix product.
        target = np.stack([np.sin(dec), np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra)], 1)
        sin_alt = (target @ self._basis).reshape(ra.size, len(self.sites), self.t.size)
        high = sin_alt > self.sin_alt_site[None, :, None]
        if self._ha_limited:
            cos_ha = (np.stack([np.cos(ra), np.sin(ra)], 1) @ self._ha_basis).reshape(high.shape)
            high &= cos_ha >= self._cos_ha_half
        ok = high & self.dark[None, :, :]
        if self.min_moon_distance_deg > 0:
            ok &= self.moon_clear(ra, dec, self.t)[:, None, :]
        return high, ok

    def _in_hour_angle(self, ra: np.ndarray, t: np.ndarray, site: np.ndarray) -> np.ndarray:
        """True where the hour angle is within the telescope class's limits (one shape)."""
        hour_angle = self.era(t) + self.lon[site] - ra
        return np.cos(hour_angle - self._ha_centre) >= self._cos_ha_half

    def moon_clear(self, ra: np.ndarray, dec: np.ndarray, t: np.ndarray) -> np.ndarray:
        """True where CIRS positions (radians) are far enough from the Moon at times ``t``.

        ``ra``/``dec`` of shape ``(n,)`` and ``t`` of shape ``(m,)`` give ``(n, m)``; arrays of
        one shape give that shape.
        """
        moon_ra = np.interp(t, self.t, self.moon_ra)
        moon_dec = np.interp(t, self.t, self.moon_dec)
        if np.ndim(ra) == 1 and np.ndim(t) == 1 and np.shape(ra) != np.shape(t):
            ra, dec = ra[:, None], dec[:, None]
        separation = _separation(ra, dec, moon_ra, moon_dec)
        return separation >= math.radians(self.min_moon_distance_deg)

    def moon_distance_deg(self, ra_deg: Any, dec_deg: Any) -> np.ndarray:
        """Smallest distance to the Moon over the span, degrees, per target."""
        ra, dec = self.to_cirs(ra_deg, dec_deg)
        return np.degrees(
            _separation(ra[:, None], dec[:, None], self.moon_ra[None], self.moon_dec[None])
        ).min(axis=1)

    def ever_observable(self, ra_deg: Any, dec_deg: Any, *, chunk: int = 4096) -> np.ndarray:
        """Fast screen: True for targets observable at some grid time from some site."""
        ra_arr = np.atleast_1d(np.asarray(ra_deg, dtype=float))
        dec_arr = np.atleast_1d(np.asarray(dec_deg, dtype=float))
        out = np.zeros(ra_arr.size, dtype=bool)
        for i in range(0, ra_arr.size, chunk):
            _, ok = self.observable_grid(ra_arr[i : i + chunk], dec_arr[i : i + chunk])
            out[i : i + chunk] = ok.any(axis=(1, 2))
        return out

    # ------------------------------------------------------------------ windows
    def _refine(
        self,
        ra: np.ndarray,
        dec: np.ndarray,
        site: np.ndarray,
        t_lo: np.ndarray,
        t_hi: np.ndarray,
        ok_at_lo: np.ndarray,
    ) -> np.ndarray:
        """Bisect the time in [t_lo, t_hi] where observability changes."""
        lo = t_lo.copy()
        hi = t_hi.copy()
        for _ in range(_BISECT_STEPS):
            mid = 0.5 * (lo + hi)
            same = self._ok_at(ra, dec, mid, site) == ok_at_lo
            lo = np.where(same, mid, lo)
            hi = np.where(same, hi, mid)
        return 0.5 * (lo + hi)

    def _ok_at(
        self, ra: np.ndarray, dec: np.ndarray, t: np.ndarray, site: np.ndarray
    ) -> np.ndarray:
        """Observability of CIRS positions at times ``t`` from sites ``site`` (all one shape)."""
        ok = self._sin_alt(ra, dec, t, site) > self.sin_alt_site[site]
        ok &= self._sun_sin_alt(t, site) < self.sin_sun_max
        if self._ha_limited:
            ok &= self._in_hour_angle(ra, t, site)
        if self.min_moon_distance_deg > 0:
            ok &= self.moon_clear(ra, dec, t)
        if self.max_moon_illumination < 1.0:
            moon_ra = np.interp(t, self.t, self.moon_ra)
            moon_dec = np.interp(t, self.t, self.moon_dec)
            bright = np.interp(t, self.t, self.moon_illumination) > self.max_moon_illumination
            ok &= ~(bright & (self._sin_alt(moon_ra, moon_dec, t, site) > 0))
        return ok

    def windows(
        self, ra_deg: Any, dec_deg: Any, *, min_window_minutes: float = 0.0
    ) -> VisibilityResult:
        """Observing windows of each target from each site, with reasons for targets without.

        Args:
            ra_deg: Target RA(s), ICRS degrees.
            dec_deg: Target Dec(s), ICRS degrees.
            min_window_minutes: Windows shorter than this are left out.

        Returns:
            The windows, the reasons and the observable hours per target.
        """
        ra_arr = np.atleast_1d(np.asarray(ra_deg, dtype=float))
        dec_arr = np.atleast_1d(np.asarray(dec_deg, dtype=float))
        n_targets = ra_arr.size
        n_sites = len(self.sites)
        ra_c, dec_c = self.to_cirs(ra_arr, dec_arr)
        high, ok = self._grid(ra_c, dec_c)
        n_t = self.t.size
        flat = ok.reshape(n_targets * n_sites, n_t)
        padded = np.zeros((flat.shape[0], n_t + 2), dtype=np.int8)
        padded[:, 1:-1] = flat
        change = np.diff(padded, axis=1)  # +1 at a run start (index k), -1 after a run end
        row_s, k_s = np.nonzero(change == 1)
        _, k_e = np.nonzero(change == -1)  # runs end at grid index k_e - 1, same row order
        target_s = row_s // n_sites
        site_s = row_s % n_sites
        # Refine starts that are not at the span start, ends that are not at the span end.
        t_start = self.t[np.minimum(k_s, n_t - 1)].copy()
        inner = k_s > 0
        if inner.any():
            t_start[inner] = self._refine(
                ra_c[target_s[inner]],
                dec_c[target_s[inner]],
                site_s[inner],
                self.t[k_s[inner] - 1],
                self.t[k_s[inner]],
                np.zeros(int(inner.sum()), dtype=bool),
            )
        t_end = self.t[k_e - 1].copy()
        inner = k_e < n_t
        if inner.any():
            t_end[inner] = self._refine(
                ra_c[target_s[inner]],
                dec_c[target_s[inner]],
                site_s[inner],
                self.t[k_e[inner] - 1],
                self.t[np.minimum(k_e[inner], n_t - 1)],
                np.ones(int(inner.sum()), dtype=bool),
            )
        # Best altitude in each window: at an end, or at transit when it falls inside.
        ra_w = ra_c[target_s]
        dec_w = dec_c[target_s]
        to_transit = np.mod(ra_w - self.lon[site_s] - self.era(t_start), 2 * math.pi)
        t_transit = t_start + to_transit / ERA_RATE_RAD_S
        candidates = [t_start, t_end, np.where(t_transit <= t_end, t_transit, t_start)]
        best = np.max([self._sin_alt(ra_w, dec_w, tc, site_s) for tc in candidates], axis=0)
        min_airmass = 1.0 / np.clip(best, 1e-6, 1.0)

        duration = t_end - t_start
        keep = duration >= min_window_minutes * 60.0
        windows: list[list[VisibilityWindow]] = [[] for _ in range(n_targets)]
        hours = np.zeros(n_targets)
        t0 = self.start_datetime
        for i in np.nonzero(keep)[0]:
            n = int(target_s[i])
            windows[n].append(
                VisibilityWindow(
                    site=self.sites[int(site_s[i])].code,
                    start=t0 + timedelta(seconds=float(t_start[i])),
                    end=t0 + timedelta(seconds=float(t_end[i])),
                    min_airmass=round(float(min_airmass[i]), 4),
                )
            )
            hours[n] += duration[i] / 3600.0
        for w in windows:
            w.sort(key=lambda win: (win.start, win.site))

        span_h = self.span_s / 3600.0
        reasons = []
        any_high = high.any(axis=(1, 2))
        any_ok = ok.any(axis=(1, 2))
        any_dark = (high & self.dark[None]).any(axis=(1, 2))
        for n in range(n_targets):
            if windows[n]:
                reasons.append("")
            elif not any_high[n]:
                within = " within the telescopes' pointing limits" if self.limits else ""
                reasons.append(
                    f"never below airmass {self.max_airmass:g}{within} from any site "
                    f"({', '.join(s.code for s in self.sites)}) in the next {span_h:g} h"
                )
            elif not any_dark[n]:
                moonlit = (
                    " or the Moon is up and too bright" if self.max_moon_illumination < 1 else ""
                )
                reasons.append(
                    f"below airmass {self.max_airmass:g} only while the Sun is above "
                    f"{self.sun_alt_max_deg:g} deg{moonlit} in the next {span_h:g} h"
                )
            elif not any_ok[n]:
                reasons.append(
                    f"closer than {self.min_moon_distance_deg:g} deg to the Moon whenever "
                    f"it is high enough in the dark in the next {span_h:g} h"
                )
            else:
                reasons.append(
                    f"observable for less than {min_window_minutes:g} min in a row "
                    f"in the next {span_h:g} h"
                )
        return VisibilityResult(windows=windows, reasons=reasons, hours=hours)


def _separation(ra1: Any, dec1: Any, ra2: Any, dec2: Any) -> np.ndarray:
    """Angular separation in radians."""
    cos_sep = np.sin(dec1) * np.sin(dec2) + np.cos(dec1) * np.cos(dec2) * np.cos(ra1 - ra2)
    return np.arccos(np.clip(cos_sep, -1.0, 1.0))


def visibility_windows(
    ra_deg: Any,
    dec_deg: Any,
    *,
    start: datetime | Time,
    span_hours: float = 24.0,
    sites: Sequence[Site] | None = None,
    max_airmass: float = 1.6,
    sun_alt_max_deg: float = -12.0,
    min_window_minutes: float = 0.0,
    step_minutes: float = 5.0,
) -> VisibilityResult:
    """Observing windows of targets from LCO sites (see :class:`VisibilityCalculator`).

    Args:
        ra_deg: Target RA(s), ICRS degrees.
        dec_deg: Target Dec(s), ICRS degrees.
        start: Span start (aware datetime, naive read as UTC, or astropy Time).
        span_hours: Span length in hours.
        sites: Sites (default: coj, cpt, tfn, lsc, elp, ogg).
        max_airmass: Airmass limit.
        sun_alt_max_deg: Sun altitude limit in degrees.
        min_window_minutes: Shorter windows are left out.
        step_minutes: Grid step before refinement.

    Returns:
        Windows and reasons per target.
    """
    calc = VisibilityCalculator(
        start,
        span_hours=span_hours,
        sites=sites,
        max_airmass=max_airmass,
        sun_alt_max_deg=sun_alt_max_deg,
        step_minutes=step_minutes,
    )
    return calc.windows(ra_deg, dec_deg, min_window_minutes=min_window_minutes)


def warm_up() -> float:
    """Open the IERS table and run one small computation, so the first alert does not pay it.

    A worker calls this once at start: the first :class:`VisibilityCalculator` of a process
    costs about 0.5-0.8 s more than later ones (IERS table, ephemeris, transform set-up).

    Returns:
        Seconds spent.
    """
    import time

    t0 = time.perf_counter()
    calc = VisibilityCalculator(datetime.now(UTC), span_hours=1.0)
    calc.windows([0.0], [0.0])
    calc.moon_distance_deg([0.0], [0.0])  # the Moon is computed on first use
    return time.perf_counter() - t0
