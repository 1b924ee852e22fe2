"""The realistic sandbox sky: galaxies, faint stars, flagged CAT rows, moonlight, trails, asteroids."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from astropy.io import fits

from sandbox.sky import SyntheticSky
from sandbox.sky.realism import moonlight
from sandbox.sky.truth import frame_truth_record
from sandbox.specs import FrameSpec, HostGalaxy, Transient

PEAK = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
RA, DEC = 150.0, -20.0
SHAPE = (512, 512)
HOST = HostGalaxy(
    offset_arcsec=(1.0, 0.8),
    r_mag=15.5,
    sersic_n=2.0,
    r_eff_arcsec=4.0,
    axis_ratio=0.6,
    position_angle_deg=35.0,
    distance_mpc=40.0,
)


def kilonova() -> Transient:
    return Transient(
        name="KN",
        ra=RA,
        dec=DEC,
        peak_mag={"gp": 19.3, "rp": 19.0, "ip": 18.9},
        peak_time=PEAK,
        host=HOST,
    )


def make_sky(seed: int = 7, **kwargs: object) -> SyntheticSky:
    options: dict[str, object] = {
        "shape": SHAPE,
        "realistic": True,
        "catalog_depth": 19.0,
        "compress": False,
        "trail_probability": 0.0,
    }
    options.update(kwargs)
    return SyntheticSky(seed=seed, transients=[kilonova()], **options)  # type: ignore[arg-type]


def spec(
    hours: float,
    *,
    exposure: str = "abc/c0/i0/x0/rp",
    band: str = "rp",
    pointing: tuple[float, float] = (RA + 0.01, DEC - 0.005),
) -> FrameSpec:
    return FrameSpec(
        basename=f"cpt1m010-fa14-20261206-{100 + int(hours * 10):04d}-e91",
        frame_number=100 + int(hours * 10),
        ra=pointing[0],
        dec=pointing[1],
        filter=band,
        exposure_time_s=300.0,
        date_obs=PEAK + timedelta(hours=hours),
        site_id="cpt",
        exposure_id=f"{exposure}/{hours}",
    )


@pytest.fixture(scope="module")
def sky() -> SyntheticSky:
    return make_sky(star_density=2.0)


@pytest.fixture(scope="module")
def after(sky: SyntheticSky) -> fits.HDUList:
    """A frame one hour after the event: the kilonova on its host."""
    return fits.open(io.BytesIO(sky.render(spec(1.0))))


def background(image: np.ndarray, x: float, y: float, r_in: float, r_out: float) -> float:
    yy, xx = np.indices(image.shape)
    rr = np.hypot(xx - x, yy - y)
    return float(np.median(image[(rr >= r_in) & (rr <= r_out)]))


def aperture_sum(image: np.ndarray, x: float, y: float, radius: float) -> float:
    yy, xx = np.indices(image.shape)
    return float(image[np.hypot(xx - x, yy - y) <= radius].sum())


def test_the_host_has_its_profile_integrated_magnitude(sky: SyntheticSky) -> None:
    """Before the event only the host is there: its total light gives its catalogued r."""
    before = spec(-2.0)
    hdus = fits.open(io.BytesIO(sky.render(before)))
    data = hdus["SCI"].data.astype(float)
    zp = sky.conditions(before).zero_point
    hra, hdec = HOST.position(kilonova())
    x, y = sky.wcs(before).all_world2pix([[hra, hdec]], 0)[0]
    r_eff_px = HOST.r_eff_arcsec / sky.pixel_scale_arcsec
    radius = 8 * r_eff_px + 15
    sky_level = background(data, x, y, radius + 10, radius + 40)
    data[hdus["BPM"].data > 0] = sky_level  # dead columns and cosmic rays: the sky instead
    flux = aperture_sum(data, x, y, radius) - sky_level * np.sum(
        np.hypot(*np.indices(data.shape)[::-1] - np.array([x, y])[:, None, None]) <= radius
    )
    mag = zp - 2.5 * math.log10(flux / before.exposure_time_s)
    assert mag == pytest.approx(HOST.r_mag, abs=0.05)
    # A Sérsic n = 2 galaxy is extended: far more light outside 2 FWHM than a star has.
    fwhm_px = sky.conditions(before).fwhm_arcsec / sky.pixel_scale_arcsec
    core = aperture_sum(data, x, y, 2 * fwhm_px) - sky_level * math.pi * (2 * fwhm_px) ** 2
    assert core / flux < 0.7  # a Moffat star has over 90 % there
    assert frame_truth_record(sky, before)["transients"] == []  # dark before its peak


def test_the_galaxy_catalog_lists_the_host_where_the_frames_show_it(sky: SyntheticSky) -> None:
    glade = sky.glade_catalog(RA, DEC, 0.3)
    hra, hdec = HOST.position(kilonova())
    host = glade[glade["HyperLEDA"] == "KN-host"]
    assert len(host) == 1
    assert float(host["RAJ2000"][0]) == pytest.approx(hra, abs=1e-6)
    assert float(host["DEJ2000"][0]) == pytest.approx(hdec, abs=1e-6)
    assert float(host["dL"][0]) == pytest.approx(40.0)
    # Other catalogued galaxies are rendered too: every GLADE+ row is a galaxy of the sky.
    galaxies = sky.galaxies(RA, DEC, 0.3)
    assert set(glade["HyperLEDA"]) <= set(galaxies["id"])
    assert len(galaxies) > 10 * len(glade)  # most galaxies are faint and in no catalogue


def test_a_faint_star_is_on_the_frame_but_not_in_the_reference_catalog(
    sky: SyntheticSky, after: fits.HDUList
) -> None:
    s = spec(1.0)
    wcs = sky.wcs(s)
    stars = sky.stars(RA, DEC, 0.05)
    xy = wcs.all_world2pix(np.column_stack([stars["ra"], stars["dec"]]), 0)
    inside = (xy[:, 0] > 20) & (xy[:, 0] < SHAPE[1] - 20) & (xy[:, 1] > 20) & (xy[:, 1] < 480)
    faint = inside & (np.asarray(stars["rmag"]) > 19.4) & (np.asarray(stars["rmag"]) < 21.0)
    assert faint.any()
    refcat = sky.reference_catalog(RA, DEC, 0.05)
    assert refcat["rmag"].max() < 19.2  # ATLAS-REFCAT2 stops near r = 19
    cat = after["CAT"].data
    for k in np.nonzero(faint)[0]:
        ra, dec = float(stars["ra"][k]), float(stars["dec"][k])
        in_ref = (
            np.hypot(
                (refcat["RA_ICRS"] - ra) * math.cos(math.radians(dec)), refcat["DE_ICRS"] - dec
            )
            * 3600
            < 1.5
        )
        assert not in_ref.any()
        d = np.hypot(cat["x"] - 1 - xy[k, 0], cat["y"] - 1 - xy[k, 1])
        assert d.min() < 2.0, f"r = {stars['rmag'][k]:.2f} star not detected"


def test_flagged_cat_rows_have_nan_fwhm_and_the_kilonova_is_deblended(
    sky: SyntheticSky, after: fits.HDUList
) -> None:
    """BANZAI 1.40 writes fwhm = NaN on every flagged row; the kilonova is blended with its host."""
    cat = after["CAT"].data
    flagged = cat["flag"] != 0
    assert flagged.any()
    assert np.isnan(cat["fwhm"][flagged]).all()
    assert np.isfinite(cat["fwhm"][~flagged]).all()
    # Cosmic rays are flagged, not replaced, so BANZAI detects the strong ones.
    assert ((cat["flag"] & 16) > 0).sum() >= 3
    truth = frame_truth_record(sky, spec(1.0))
    (kn,) = truth["transients"]
    assert kn["host"]["separation_arcsec"] < 2.0
    assert kn["host"]["mag"] < kn["mag"] - 3.0  # a host several magnitudes brighter
    d = np.hypot(cat["x"] - 1 - kn["x"], cat["y"] - 1 - kn["y"])
    row = cat[np.argmin(d)]
    assert d.min() < 1.5
    assert row["flag"] & 2 and math.isnan(row["fwhm"])


def test_the_minor_planet_moves_between_two_frames(sky: SyntheticSky) -> None:
    (planet,) = sky.minor_planets
    pointing = planet.position(PEAK + timedelta(hours=1.5))
    first = spec(1.0, pointing=pointing)
    second = spec(2.0, exposure="abc/c0/i0/x1/rp", pointing=pointing)
    a = frame_truth_record(sky, first)["minor_planets"]
    b = frame_truth_record(sky, second)["minor_planets"]
    assert len(a) == len(b) == 1
    moved = math.hypot(
        (b[0]["ra"] - a[0]["ra"]) * math.cos(math.radians(DEC)), b[0]["dec"] - a[0]["dec"]
    )
    assert 14.0 < moved * 3600 < 41.0  # 15-40 arcsec per hour
    for record, frame in ((a[0], first), (b[0], second)):
        cat = fits.open(io.BytesIO(sky.render(frame)))["CAT"].data
        d = np.hypot(cat["x"] - 1 - record["x"], cat["y"] - 1 - record["y"])
        assert d.min() < 1.5  # detected where it was then
        # ...and trailed by 1.3-3.3 arcsec in 300 s: longer than round stars.
        stars = (cat["flag"] == 0) & (cat["flux"] / cat["fluxerr"] > 50)
        assert cat["a"][np.argmin(d)] / cat["b"][np.argmin(d)] > 1.05 * np.median(
            cat["a"][stars] / cat["b"][stars]
        )
    # And it is in no catalogue.
    refcat = sky.reference_catalog(a[0]["ra"], a[0]["dec"], 2 / 3600)
    assert len(refcat) == 0 or refcat["rmag"].min() > 19


def test_a_satellite_trail_crosses_the_frame() -> None:
    sky = make_sky(trail_probability=1.0)
    s = spec(1.0)
    trail = sky.trail(s)
    assert trail is not None
    data = fits.open(io.BytesIO(sky.render(s)))["SCI"].data.astype(float)
    t = math.radians(trail.angle_deg)
    steps = np.arange(-400, 400, 3.0)
    on = [(trail.x0 + k * math.cos(t), trail.y0 + k * math.sin(t)) for k in steps]
    off = [(x + 25 * math.sin(t), y - 25 * math.cos(t)) for x, y in on]

    def sample(points: list[tuple[float, float]]) -> np.ndarray:
        return np.array(
            [data[round(y), round(x)] for x, y in points if 0 <= x < 511 and 0 <= y < 511]
        )

    fwhm_px = sky.conditions(s).fwhm_arcsec / sky.pixel_scale_arcsec
    # The line-spread profile peaks near e_per_px / (1.1 FWHM) on the line, nothing 25 px off.
    assert np.median(sample(on)) - np.median(sample(off)) > 0.5 * trail.e_per_px / fwhm_px
    assert frame_truth_record(sky, s)["satellite_trail"]["e_per_px"] > 0


def test_cosmic_rays_and_seeing_change_from_frame_to_frame(sky: SyntheticSky, after) -> None:
    assert (after["BPM"].data & 8).any()
    conditions = [sky.conditions(spec(h, exposure=f"e{k}")) for k, h in enumerate((1, 2, 3, 4))]
    assert len({round(c.fwhm_arcsec, 3) for c in conditions}) == 4
    assert len({round(c.psf_beta or 0, 3) for c in conditions}) == 4
    assert all(2.5 <= (c.psf_beta or 0) <= 4.5 for c in conditions)


def test_the_moon_brightens_the_sky_only_when_it_is_up() -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    hours = [start + timedelta(hours=h) for h in range(0, 24 * 30, 2)]
    samples = [moonlight(t, "cpt", 20.81, 60.0, -25.0, 1.2) for t in hours]
    up_full = [m for m in samples if m.illumination > 0.9 and m.altitude_deg > 30]
    down = [m for m in samples if m.altitude_deg < 0]
    assert up_full and down
    assert all(m.delta_mag == 0.0 for m in down)
    assert min(m.delta_mag for m in up_full) < -1.5
    new_up = [m for m in samples if m.illumination < 0.05 and m.altitude_deg > 10]
    assert all(m.delta_mag > -0.3 for m in new_up)


def test_one_seed_replays_the_same_bytes_and_another_seed_does_not() -> None:
    s = spec(1.0)
    first = make_sky(seed=11, trail_probability=1.0).render(s)
    again = make_sky(seed=11, trail_probability=1.0).render(s)
    other = make_sky(seed=12, trail_probability=1.0).render(s)
    assert first == again
    assert fits.open(io.BytesIO(first))["SCI"].data.tolist() != (
        fits.open(io.BytesIO(other))["SCI"].data.tolist()
    )
