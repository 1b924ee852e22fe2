"""Visibility windows against a direct astropy AltAz computation; reasons; offline IERS."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import AltAz, SkyCoord, get_sun
from astropy.time import Time
from astropy.utils.data import conf as data_conf

from followup import sites as sites_module
from followup.sites import LCO_SITES, IersStaleWarning, configure_offline_iers, get_sites
from followup.visibility import (
    VisibilityCalculator,
    airmass_to_altitude,
    visibility_windows,
    warm_up,
)

START = datetime(2026, 9, 1, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def offline():
    """No test here may reach the internet (IERS downloads included)."""
    with data_conf.set_temp("allow_internet", False):
        yield


def astropy_windows(ra, dec, site, start, hours=24.0, step_s=30.0, max_airmass=1.6, sun_max=-12):
    """Windows from astropy AltAz on a fine grid, edges refined by bisection with AltAz."""
    t0 = Time(start)
    times = t0 + np.arange(0, hours * 3600 + step_s, step_s) * u.s
    loc = site.location
    target = SkyCoord(ra * u.deg, dec * u.deg)
    alt_min = airmass_to_altitude(max_airmass)

    def ok(t):
        frame = AltAz(obstime=t, location=loc)
        return (target.transform_to(frame).alt.deg > alt_min) & (
            get_sun(t).transform_to(frame).alt.deg < sun_max
        )

    good = ok(times)
    edges = np.nonzero(np.diff(good.astype(int)))[0]
    refined = {}
    for k in edges:
        lo, hi = 0.0, step_s
        state = good[k]
        for _ in range(7):
            mid = (lo + hi) / 2
            if ok(times[k] + mid * u.s) == state:
                lo = mid
            else:
                hi = mid
        refined[k] = (times[k] + lo * u.s).to_datetime(timezone=UTC)
    runs = []
    padded = np.concatenate([[False], good, [False]])
    starts = np.nonzero(~padded[:-1] & padded[1:])[0]
    ends = np.nonzero(padded[:-1] & ~padded[1:])[0] - 1
    for s, e in zip(starts, ends, strict=True):
        s_time = (
            refined.get(s - 1, times[s].to_datetime(timezone=UTC))
            if s > 0
            else times[0].to_datetime(timezone=UTC)
        )
        e_time = refined.get(e, times[e].to_datetime(timezone=UTC))
        runs.append((s_time, e_time))
    return runs


TARGETS = [(350.0, -20.0), (30.0, 10.0), (250.0, -60.0)]


@pytest.mark.slow
def test_windows_agree_with_astropy_altaz_within_a_minute():
    ra = np.array([t[0] for t in TARGETS])
    dec = np.array([t[1] for t in TARGETS])
    result = visibility_windows(ra, dec, start=START)
    compared = 0
    for n, (r, d) in enumerate(TARGETS):
        for code in ("lsc", "coj", "tfn"):
            site = LCO_SITES[code]
            expected = astropy_windows(r, d, site, START)
            mine = [(w.start, w.end) for w in result.windows[n] if w.site == code]
            assert len(mine) == len(expected), (r, d, code, mine, expected)
            for (s1, e1), (s2, e2) in zip(mine, expected, strict=True):
                assert abs((s1 - s2).total_seconds()) < 60
                assert abs((e1 - e2).total_seconds()) < 60
                compared += 1
    assert compared >= 8  # the check compared real windows


def test_analytic_altitude_matches_astropy_to_arcseconds():
    calc = VisibilityCalculator(START, span_hours=6)
    t = np.linspace(0, 6 * 3600, 13)
    ours = calc.altitude([350.0, 30.0], [-20.0, 10.0], t)  # (target, site, time)
    times = calc.start + t * u.s
    for i, site in enumerate(calc.sites):
        frame = AltAz(obstime=times, location=site.location)
        for n, (r, d) in enumerate([(350.0, -20.0), (30.0, 10.0)]):
            alt = SkyCoord(r * u.deg, d * u.deg).transform_to(frame).alt.deg
            assert np.max(np.abs(ours[n, i] - alt)) * 3600 < 2.0


def test_windows_respect_the_limits():
    result = visibility_windows([350.0], [-20.0], start=START, max_airmass=1.6)
    assert result.windows[0]
    end = START + timedelta(hours=24)
    for w in result.windows[0]:
        assert START <= w.start < w.end <= end
        assert 1.0 <= w.min_airmass <= 1.6
    starts = [w.start for w in result.windows[0]]
    assert starts == sorted(starts)
    assert result.hours[0] == pytest.approx(
        sum((w.end - w.start).total_seconds() for w in result.windows[0]) / 3600
    )


def test_reasons_for_targets_without_windows():
    # Dec -89: never above airmass 1.6 from any LCO site (lowest latitude -32.4 deg).
    # RA of the Sun at the start: above the limit only in daylight.
    sun = get_sun(Time(START))
    result = visibility_windows(
        [0.0, float(sun.ra.deg), 350.0],
        [-89.0, float(sun.dec.deg), -20.0],
        start=START,
        min_window_minutes=24 * 60,
    )
    assert result.reasons[0].startswith("never below airmass 1.6")
    assert "Sun is above -12" in result.reasons[1]
    assert "less than 1440 min" in result.reasons[2]
    assert not any(result.visible)


def test_sites_from_geodetic_coordinates():
    assert [s.code for s in get_sites()] == ["coj", "cpt", "tfn", "lsc", "elp", "ogg"]
    lsc = LCO_SITES["lsc"].location
    assert lsc.lat.deg == pytest.approx(-30.167, abs=0.01)
    assert LCO_SITES["tfn"].lat_deg == pytest.approx(28.30, abs=0.01)
    with pytest.raises(ValueError, match="unknown LCO site"):
        get_sites(["xyz"])
    only = visibility_windows([350.0], [-20.0], start=START, sites=get_sites(["lsc"]))
    assert {w.site for w in only.windows[0]} == {"lsc"}


def test_stale_iers_table_warns_once(monkeypatch):
    monkeypatch.setattr(sites_module, "_IERS_CONFIGURED", False)
    with pytest.warns(IersStaleWarning, match="extrapolated"):
        assert configure_offline_iers(now=datetime(2031, 1, 1, tzinfo=UTC))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert configure_offline_iers(now=datetime(2031, 1, 1, tzinfo=UTC)) is False
    # Far beyond the table, alt/az still works (extrapolated), without a download and without
    # a warning per call.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = visibility_windows([350.0], [-20.0], start=datetime(2031, 9, 1, tzinfo=UTC))
    assert result.windows[0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="airmass"):
        airmass_to_altitude(0.5)
    with pytest.raises(ValueError, match="span_hours"):
        VisibilityCalculator(START, span_hours=0)


def test_warm_up_runs():
    assert warm_up() > 0


# ------------------------------------------------------------------ the Moon, against astroplan

MOON_START = datetime(2026, 12, 22, 0, 0, tzinfo=UTC)  # two days before full Moon


def _moon_at(when: datetime) -> SkyCoord:
    from astropy.coordinates import get_body

    configure_offline_iers()
    moon = get_body("moon", Time(when))  # geocentric (GCRS): its direction as seen from Earth
    return SkyCoord(moon.ra, moon.dec, frame="icrs")


def test_a_target_near_the_moon_has_no_window_and_the_reason_says_so():
    moon = _moon_at(MOON_START + timedelta(hours=12))
    near = moon.directional_offset_by(0 * u.deg, 5 * u.deg)  # 5 deg north of the Moon
    far = moon.directional_offset_by(0 * u.deg, 60 * u.deg)
    ra = [near.ra.deg, far.ra.deg]
    dec = [near.dec.deg, far.dec.deg]
    without = VisibilityCalculator(MOON_START, max_airmass=2.0).windows(ra, dec)
    calc = VisibilityCalculator(MOON_START, max_airmass=2.0, min_moon_distance_deg=20.0)
    with_moon = calc.windows(ra, dec)
    assert without.windows[0], "the target would be observable but for the Moon"
    assert not with_moon.windows[0]
    assert "Moon" in with_moon.reasons[0]
    assert with_moon.windows[1]  # far from the Moon: still observable
    assert calc.moon_distance_deg(ra, dec)[0] < 20.0
    for window in with_moon.windows[1]:
        assert window.end > window.start


@pytest.mark.parametrize("offset_deg", [18.0, 25.0, 45.0])
def test_moon_and_airmass_windows_agree_with_astroplan(offset_deg):
    astroplan = pytest.importorskip("astroplan")
    configure_offline_iers()
    moon = _moon_at(MOON_START + timedelta(hours=10))
    target = moon.directional_offset_by(90 * u.deg, offset_deg * u.deg)
    site = next(s for s in get_sites() if s.code == "lsc")
    calc = VisibilityCalculator(
        MOON_START,
        sites=[site],
        max_airmass=2.0,
        min_moon_distance_deg=20.0,
        max_moon_illumination=0.99,
    )
    _, ok = calc.observable_grid(target.ra.deg, target.dec.deg)
    ours = ok[0, 0]
    times = calc.start + calc.t * u.s
    observer = astroplan.Observer(location=site.location)
    constraints = [
        astroplan.AirmassConstraint(max=2.0),
        astroplan.AtNightConstraint.twilight_nautical(),
        astroplan.MoonSeparationConstraint(min=20 * u.deg),
        astroplan.MoonIlluminationConstraint(max=0.99),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = astroplan.is_event_observable(
            constraints, observer, astroplan.FixedTarget(target), times=times
        )[0]
    # The Moon is geocentric here and topocentric in astroplan (up to 1 deg of parallax), and
    # its illumination is the elongation formula: edges may differ by a grid step or two.
    agree = float(np.mean(ours == theirs))
    assert agree >= 0.97, (agree, int(ours.sum()), int(theirs.sum()))
    assert ours.any() == theirs.any()


# ------------------------------------------------------------------ interpolated ephemerides


def test_interpolated_sun_and_moon_match_the_exact_ones_over_a_night(monkeypatch):
    from followup import visibility

    kwargs = {"span_hours": 14.5, "min_moon_distance_deg": 20.0, "max_moon_illumination": 0.9}
    calc = VisibilityCalculator(MOON_START, **kwargs)
    assert calc._t_eph.size < calc.t.size  # hourly ephemeris, five-minute grid
    monkeypatch.setattr(visibility, "EPHEMERIS_STEP_S", 1.0)  # the Sun and Moon at every step
    exact = VisibilityCalculator(MOON_START, **kwargs)
    assert exact._t_eph is exact.t
    moon = np.degrees(
        visibility._separation(calc.moon_ra, calc.moon_dec, exact.moon_ra, exact.moon_dec)
    )
    sun = np.degrees(visibility._separation(calc.sun_ra, calc.sun_dec, exact.sun_ra, exact.sun_dec))
    assert moon.max() < 1e-4  # the brief allows 0.1 deg; cubic interpolation does far better
    assert sun.max() < 1e-4
    assert np.abs(calc.moon_illumination - exact.moon_illumination).max() < 1e-6
    np.testing.assert_array_equal(calc.dark, exact.dark)
    rng = np.random.default_rng(5)
    ra = rng.uniform(0, 360, 3000)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 3000)))
    for got, want in zip(
        calc.observable_grid(ra, dec), exact.observable_grid(ra, dec), strict=True
    ):
        np.testing.assert_array_equal(got, want)
    ours = calc.windows(ra[:300], dec[:300])
    theirs = exact.windows(ra[:300], dec[:300])
    assert ours.reasons == theirs.reasons
    for mine, ref in zip(ours.windows, theirs.windows, strict=True):
        assert [w.site for w in mine] == [w.site for w in ref]
        for a, b in zip(mine, ref, strict=True):
            assert abs((a.start - b.start).total_seconds()) < 1.0
            assert abs((a.end - b.end).total_seconds()) < 1.0


def test_moon_is_computed_only_when_a_rule_or_a_caller_needs_it():
    calc = VisibilityCalculator(MOON_START, span_hours=2)
    assert "_moon" not in calc.__dict__
    calc.windows([10.0], [-30.0])
    assert "_moon" not in calc.__dict__
    assert calc.moon_illumination.shape == calc.t.shape
    assert calc.moon_illumination.max() > 0.9  # two days before full Moon


@pytest.mark.parametrize("telescope_class", ["1m0", "0m4", "2m0"])
def test_hour_angle_limits_match_a_direct_hour_angle(telescope_class):
    from followup.visibility import POINTING_LIMITS

    limits = POINTING_LIMITS[telescope_class]
    calc = VisibilityCalculator(START, max_airmass=3.0, telescope_class=telescope_class)
    free = VisibilityCalculator(START, max_airmass=3.0, sites=calc.sites)
    free.sin_alt_site = calc.sin_alt_site  # same horizons, no hour-angle rule
    rng = np.random.default_rng(7)
    ra_deg = rng.uniform(0, 360, 4000)
    dec_deg = np.degrees(np.arcsin(rng.uniform(-1, 1, 4000)))
    high, _ = calc.observable_grid(ra_deg, dec_deg)
    high_free, _ = free.observable_grid(ra_deg, dec_deg)
    ra, _ = calc.to_cirs(ra_deg, dec_deg)
    ha = calc.era(calc.t)[None, None, :] + calc.lon[None, :, None] - ra[:, None, None]
    hours = np.degrees(np.mod(ha + np.pi, 2 * np.pi) - np.pi) / 15.0
    inside = (hours >= limits.ha_limit_neg_h) & (hours <= limits.ha_limit_pos_h)
    want = high_free & inside
    near_limit = (np.abs(hours - limits.ha_limit_neg_h) < 1e-9) | (
        np.abs(hours - limits.ha_limit_pos_h) < 1e-9
    )
    assert not np.any((high != want) & ~near_limit)
    assert (high_free & ~inside).any() == (telescope_class != "2m0")
    # The refinement uses the same rule, element by element.
    site = np.zeros(ra.size, dtype=np.int64)
    t = np.full(ra.size, calc.t[40])
    if telescope_class != "2m0":
        np.testing.assert_array_equal(calc._in_hour_angle(ra, t, site), inside[:, 0, 40])


def test_to_cirs_is_astropys_icrs_to_cirs_at_the_middle_of_the_span():
    from astropy.coordinates import CIRS

    calc = VisibilityCalculator(MOON_START, span_hours=10)
    rng = np.random.default_rng(11)
    ra = np.concatenate([rng.uniform(-20, 380, 2000), [0.0, 360.0, 180.0]])
    dec = np.concatenate([np.degrees(np.arcsin(rng.uniform(-1, 1, 2000))), [90.0, -90.0, 0.0]])
    mid = calc.start + 5 * u.hour
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = SkyCoord(ra * u.deg, dec * u.deg).transform_to(CIRS(obstime=mid))
    got_ra, got_dec = calc.to_cirs(ra, dec)
    np.testing.assert_allclose(got_ra, want.ra.rad, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got_dec, want.dec.rad, rtol=0, atol=1e-12)
    assert calc.to_cirs(10.0, 20.0)[0].shape == (1,)
