"""The synthetic sky: deterministic stars, BANZAI-like and raw frames, truth."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from sandbox.sky import BPM_BAD, BPM_COSMIC_RAY, BPM_SATURATED, SyntheticSky
from sandbox.specs import Transient
from tests.frames_support import DEC, RA, START, spec

SHAPE = (1024, 1024)

BANZAI_KEYWORDS = [
    "OBJECT", "RA", "DEC", "CAT-RA", "CAT-DEC", "FILTER", "EXPTIME", "GAIN", "RDNOISE", "SATURATE",
    "DATE-OBS", "MJD-OBS", "DAY-OBS", "AIRMASS", "PIXSCALE", "SITEID", "TELID", "ENCID", "INSTRUME",
    "TELESCOP", "PROPID", "GROUPID", "TRACKNUM", "REQNUM", "BLKUID", "OBSTYPE", "RLEVEL", "ORIGIN",
    "L1FWHM", "WCSERR", "L1ZP", "L1ZPERR", "L1COLORU", "L1COLOR", "L1COLERR", "CTYPE1", "CD1_1",
]  # fmt: skip
CAT_COLUMNS = [
    "x",
    "y",
    "ra",
    "dec",
    "flux",
    "fluxerr",
    "fwhm",
    "flag",
    "mag",
    "magerr",
    "background",
]
CAT_COLUMNS += [f"fluxaper{k}" for k in range(1, 7)]


@pytest.fixture(scope="module")
def kilonova() -> Transient:
    return Transient(
        name="AT2025kn",
        ra=RA + 0.004,
        dec=DEC - 0.003,
        peak_mag={"gp": 18.4, "rp": 18.0, "ip": 18.1},
        peak_time=START - timedelta(days=1),
        decline_mag_per_day=0.5,
    )


@pytest.fixture(scope="module")
def sky(kilonova: Transient) -> SyntheticSky:
    return SyntheticSky(seed=7, transients=[kilonova], shape=SHAPE)


@pytest.fixture(scope="module")
def reduced(sky: SyntheticSky) -> fits.HDUList:
    return fits.open(io.BytesIO(sky.render(spec(1))))


def test_stars_are_a_function_of_position_only() -> None:
    a = SyntheticSky(seed=3)
    b = SyntheticSky(seed=3)
    wide = a.stars(RA, DEC, 0.3)
    narrow = b.stars(RA + 0.1, DEC, 0.1)  # overlapping cone from a fresh sky
    assert set(narrow["id"]) <= set(wide["id"])
    common = wide[np.isin(wide["id"], narrow["id"])]
    common.sort("id")
    narrow.sort("id")
    np.testing.assert_array_equal(common["ra"], narrow["ra"])
    np.testing.assert_array_equal(common["rmag"], narrow["rmag"])
    assert (
        set(SyntheticSky(seed=4).stars(RA, DEC, 0.1)["id"]) != set(narrow["id"]) or len(narrow) == 0
    )


def test_star_density_is_that_of_a_high_latitude_field() -> None:
    sky = SyntheticSky(seed=0)
    side_deg = 4096 * 0.389 / 3600
    stars = sky.stars(RA, DEC, side_deg / 2 * 2**0.5)
    bright = np.asarray(stars["rmag"]) < 21
    per_field = bright.sum() / (np.pi * (side_deg / 2 * 2**0.5) ** 2) * side_deg**2
    assert 200 < per_field < 2500
    # Colours stay on a stellar locus.
    g_r = np.asarray(stars["gmag"] - stars["rmag"])
    assert -0.5 < np.median(g_r) < 1.2
    plane = sky.stars(266.4, -28.9, 0.1)  # galactic centre is denser
    assert len(plane) / 0.1**2 > 3 * len(stars) / (side_deg / 2 * 2**0.5) ** 2


def test_reference_catalog_has_refcat2_columns_and_realistic_errors(sky: SyntheticSky) -> None:
    cat = sky.reference_catalog(RA, DEC, 0.2)
    assert cat.colnames == [
        "RA_ICRS", "DE_ICRS", "gmag", "e_gmag", "rmag", "e_rmag", "imag", "e_imag", "zmag", "e_zmag",
    ]  # fmt: skip
    bright = np.asarray(cat["rmag"]) < 18
    assert bright.sum() > 5
    assert 0.005 <= np.median(np.asarray(cat["e_rmag"])[bright]) <= 0.02
    truth = sky.stars(RA, DEC, 0.2)
    truth = truth[np.asarray(truth["rmag_cat"]) < sky.catalog_depth]
    resid = (np.asarray(cat["rmag"]) - np.asarray(truth["rmag"])) / np.asarray(cat["e_rmag"])
    assert abs(np.mean(resid)) < 0.2
    assert 0.8 < np.std(resid) < 1.2
    assert np.all(sky.reference_catalog(RA, DEC, 0.2) == cat)  # repeatable


def test_reduced_frame_is_banzai_like(reduced: fits.HDUList, sky: SyntheticSky) -> None:
    assert [h.name for h in reduced] == ["PRIMARY", "SCI", "CAT", "BPM", "ERR"]
    assert reduced[0].data is None
    assert isinstance(reduced["SCI"], fits.CompImageHDU)
    header = reduced["SCI"].header
    missing = [k for k in BANZAI_KEYWORDS if k not in header]
    assert missing == []
    assert header["ORIGIN"] == "LCOGT"
    assert header["RLEVEL"] == 91
    assert header["GAIN"] == 1.0
    assert header["FILTER"] == "rp"
    assert header["RA"] == "10:00:00.000" and header["DEC"] == "+02:12:00.00"
    assert header["REQNUM"] == "0000001234"
    assert reduced["SCI"].data.shape == SHAPE and reduced["SCI"].data.dtype == np.float32
    assert reduced["ERR"].data.shape == SHAPE and reduced["BPM"].data.dtype == np.uint8
    for column in CAT_COLUMNS:
        assert column in reduced["CAT"].columns.names
    # WCS points at the requested position (within the simulated pointing error).
    wcs = WCS(header)
    centre = wcs.pixel_to_world(SHAPE[1] / 2 - 0.5, SHAPE[0] / 2 - 0.5)
    assert centre.separation(wcs.pixel_to_world(0, 0)).arcsec > 100
    assert abs(centre.ra.deg - RA) * 3600 < 20 and abs(centre.dec.deg - DEC) * 3600 < 20
    # Background and noise are those of a real 300 s r' frame.
    sci = reduced["SCI"].data
    err = reduced["ERR"].data
    sky_level = np.median(sci)
    assert 100 < sky_level < 3000
    good = reduced["BPM"].data == 0
    pulls = ((sci - sky_level) / err)[good & (sci < sky_level + 3 * np.median(err))]
    assert 0.85 < np.std(pulls) < 1.1


def test_bad_pixel_mask_flags_defects(reduced: fits.HDUList, sky: SyntheticSky) -> None:
    bpm = reduced["BPM"].data
    assert np.any(bpm & BPM_BAD)
    assert np.any(bpm & BPM_COSMIC_RAY)
    sci = reduced["SCI"].data
    sat = (bpm & BPM_SATURATED) > 0
    if sat.any():
        assert np.all(sci[sat] == np.float32(sky.saturation_e))
    # A dead column is flagged over its whole bad length.
    column_fraction = (bpm & BPM_BAD).astype(bool).mean(axis=0)
    assert column_fraction.max() > 0.4


def test_catalog_contains_the_transient_and_calibrated_magnitudes(
    reduced: fits.HDUList, sky: SyntheticSky, kilonova: Transient
) -> None:
    cat = reduced["CAT"].data
    header = reduced["SCI"].header
    truth = sky.frame_truth(spec(1))
    sep = (
        np.hypot((cat["ra"] - kilonova.ra) * np.cos(np.radians(DEC)), cat["dec"] - kilonova.dec)
        * 3600
    )
    row = np.argmin(sep)
    assert sep[row] < 0.5
    assert abs(cat["mag"][row] - truth.transients["mag"][0]) < 5 * cat["magerr"][row] + 0.03
    # L1ZP is BANZAI's Kron-flux zero point: within a few hundredths of the true total-flux one.
    assert abs(header["L1ZP"] - truth.conditions.zero_point) < 0.03
    assert abs(header["L1FWHM"] - truth.conditions.fwhm_arcsec) < 0.1 * truth.conditions.fwhm_arcsec
    # Pixel positions are 1-based, as in BANZAI.
    x, y = WCS(header).all_world2pix(kilonova.ra, kilonova.dec, 1)
    assert abs(cat["x"][row] - x) < 0.3 and abs(cat["y"][row] - y) < 0.3


def test_rendering_is_deterministic_and_noise_follows_the_seed(sky: SyntheticSky) -> None:
    small = SyntheticSky(seed=2, shape=(128, 128))
    assert small.render(spec(2)) == SyntheticSky(seed=2, shape=(128, 128)).render(
        spec(2)
    )  # same md5
    a = fits.open(io.BytesIO(sky.render(spec(2))))["SCI"].data
    b = fits.open(
        io.BytesIO(SyntheticSky(seed=7, transients=sky.transients, shape=SHAPE).render(spec(2)))
    )["SCI"].data
    np.testing.assert_array_equal(a, b)
    c = fits.open(io.BytesIO(sky.render(spec(2, seed=1))))["SCI"].data
    assert not np.array_equal(a, c)
    assert abs(np.median(a) - np.median(c)) < 3  # same conditions, other noise


def test_an_exposure_id_not_its_name_or_date_decides_its_draws() -> None:
    """A replay names and dates the exposure anew; with the same id and seed its pixels are equal.

    Raw and reduced products of one exposure share its conditions (seeing, pointing, sky).
    """
    sky = SyntheticSky(seed=3, shape=(256, 256))

    def render(number: int, exposure: str | None, *, level: int = 91, days: float = 0) -> tuple:
        s = spec(number, level=level, when=START + timedelta(days=days)).model_copy(
            update={"exposure_id": exposure, "seed": 11}
        )
        return sky.conditions(s), fits.open(io.BytesIO(sky.render(s)))["SCI"].data

    first_conditions, first = render(30, "abc/c0/i0/x0/rp")
    replay_conditions, replay = render(4031, "abc/c0/i0/x0/rp", days=3)
    np.testing.assert_array_equal(first, replay)
    assert first_conditions == replay_conditions
    raw_conditions, _ = render(30, "abc/c0/i0/x0/rp", level=0)
    assert raw_conditions == first_conditions
    other_conditions, other = render(30, "abc/c0/i0/x1/rp")
    assert other_conditions != first_conditions and not np.array_equal(first, other)
    # Without an id the basename is the identity, as before.
    _, unnamed = render(30, None)
    _, renamed = render(31, None)
    assert not np.array_equal(unnamed, renamed)


def test_truth_follows_the_light_curve(sky: SyntheticSky, kilonova: Transient) -> None:
    later = START + timedelta(days=2)
    assert sky.truth("rp", later) == {"AT2025kn": pytest.approx(18.0 + 0.5 * 3)}
    assert sky.truth("zs", later) == {}
    assert sky.transient_magnitude("AT2025kn", "gp", START - timedelta(days=1)) == 18.4
    with pytest.raises(KeyError):
        sky.transient_magnitude("nope", "rp", later)
    truth = sky.frame_truth(spec(3, exptime=100.0))
    mid = truth.mid_exposure
    assert mid == spec(3).date_obs + timedelta(seconds=50)
    assert truth.transients["mag"][0] == pytest.approx(kilonova.magnitude("rp", mid))
    assert sky.zero_point(spec(3)) == truth.conditions.zero_point
    # Fainter transient where the filter extinction and airmass say so.
    assert 22.5 < truth.conditions.zero_point < 23.8
    assert 19.5 < truth.depth_5sigma < 22.5


def test_transient_flux_matches_its_magnitude(sky: SyntheticSky) -> None:
    truth = sky.frame_truth(spec(4))
    row = truth.transients[0]
    expected = 300.0 * 10 ** (-0.4 * (row["mag"] - truth.conditions.zero_point))
    assert row["flux_e"] == pytest.approx(expected, rel=0.05)  # the colour term is 0 by default


def test_raw_frames_are_adu_with_gain_and_calibrations(sky: SyntheticSky) -> None:
    raw = fits.open(io.BytesIO(sky.render(spec(5, level=0))))
    header = raw["SCI"].header
    data = raw["SCI"].data
    assert (
        header["RLEVEL"] == 0
        and header["GAIN"] == pytest.approx(sky.gain_raw)
        and header["GAIN"] != 1
    )
    assert data.dtype.kind == "i"
    assert "CAT" not in [h.name for h in raw] and "L1ZP" not in header
    bias = fits.open(io.BytesIO(sky.render(spec(6, kind="BIAS", level=0))))["SCI"]
    assert bias.header["OBSTYPE"] == "BIAS" and bias.header["EXPTIME"] == 0
    level = np.median(bias.data)
    assert 450 < level < 560
    # Read noise in ADU: RN / gain (with the fixed column pattern removed by a second bias).
    bias2 = fits.open(io.BytesIO(sky.render(spec(7, kind="BIAS", level=0))))["SCI"].data
    diff = (bias.data.astype(float) - bias2.astype(float))[10:-10, 10:-10]
    noise = np.std(diff[np.abs(diff - np.median(diff)) < 50]) / np.sqrt(2)
    assert noise == pytest.approx(sky.read_noise_e / sky.gain_raw, rel=0.1)
    flat = fits.open(io.BytesIO(sky.render(spec(8, kind="SKYFLAT", level=0, exptime=4))))["SCI"]
    assert flat.header["OBSTYPE"] == "SKYFLAT" and flat.header["FILTER"] == "rp"
    assert np.median(flat.data) > level + 10000
    assert np.median(data) > level  # sky on the science frame


def test_invalid_specs_are_rejected(sky: SyntheticSky) -> None:
    with pytest.raises(ValueError, match="filters"):
        sky.render(spec(9, band="w"))
    with pytest.raises(ValueError, match="only raw"):
        sky.render(spec(9, kind="BIAS", level=91))
    with pytest.raises(ValueError, match="unique"):
        SyntheticSky(transients=[*sky.transients, *sky.transients])
    with pytest.raises(ValueError, match="shape"):
        SyntheticSky(shape=(10, 10))


def test_uncompressed_option_gives_plain_images() -> None:
    sky = SyntheticSky(seed=1, shape=(128, 128), compress=False)
    hdul = fits.open(io.BytesIO(sky.render(spec(10))))
    assert isinstance(hdul["SCI"], fits.ImageHDU) and not isinstance(hdul["SCI"], fits.CompImageHDU)


def test_concurrent_renders_agree() -> None:
    from concurrent.futures import ThreadPoolExecutor

    sky = SyntheticSky(seed=9, shape=(256, 256))
    specs = [spec(20 + k) for k in range(4)]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(sky.render, specs))
    fresh = SyntheticSky(seed=9, shape=(256, 256))
    for s, data in zip(specs, parallel, strict=True):
        a = fits.open(io.BytesIO(data))["SCI"].data
        b = fits.open(io.BytesIO(fresh.render(s)))["SCI"].data
        np.testing.assert_array_equal(a, b)


def _catalog_of(
    stars: list[tuple[float, float, float]], *, fwhm: float = 6.0, dead_column: int | None = None
) -> Table:
    """The sandbox's CAT of a 121 x 121 frame of Gaussian stars ``(x, y, flux)`` (0-based)."""
    from sandbox.sky.catalog import ReducedPixels, measure_catalog

    ny = nx = 121
    sky_e = 1200.0
    sigma = fwhm / 2.3548
    yy, xx = np.mgrid[0:ny, 0:nx]
    light = sum(
        f * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)
        for x, y, f in stars
    )
    rng = np.random.default_rng(3)
    sci = (sky_e + light + rng.normal(0, np.sqrt(sky_e), (ny, nx))).astype(np.float32)
    bpm = np.zeros((ny, nx), np.uint8)
    if dead_column is not None:
        sci[:, dead_column] = 15.0  # dead: a bias-level trough far below the sky
        bpm[:, dead_column] = BPM_BAD
    frame = ReducedPixels(
        sci=sci,
        err=np.full((ny, nx), np.sqrt(sky_e + 49.0), np.float32),
        bpm=bpm,
        fwhm_px=fwhm,
        exptime=300.0,
        sky_e=sky_e,
        read_noise_e=7.0,
        pixel_scale=0.389,
        band="rp",
    )
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [RA, DEC]
    wcs.wcs.crpix = [61, 61]
    wcs.wcs.cdelt = [-0.389 / 3600, 0.389 / 3600]
    n = len(stars)
    sources = {
        "x": np.array([x for x, _, _ in stars]),
        "y": np.array([y for _, y, _ in stars]),
        "flux": np.array([f for _, _, f in stars]),
        "kind": np.zeros(n, int),
        "in_ref": np.zeros(n, bool),
        "ref_mag": np.full(n, np.nan),
        "ref_err": np.full(n, np.nan),
        "ref_colour": np.full(n, np.nan),
    }
    table, _ = measure_catalog(frame, sources, wcs, lambda name: np.random.default_rng(0))
    return table


@pytest.mark.parametrize("offset", [-3, 2, 4, 7])
def test_a_dead_column_beside_a_star_does_not_move_its_centroid(offset: int) -> None:
    """A dead column in the Kron aperture flags the row; the centroid stays (BANZAI's segment)."""
    x0, y0 = 60.3, 59.6
    table = _catalog_of([(x0, y0, 40_000.0)], dead_column=round(x0) + offset)
    (row,) = table
    assert row["flag"] & 1, "the bad pixels in the aperture are flagged"
    # 0-based truth, 1-based CAT: the centroid moves by a fraction of a pixel (the window loses
    # the column's side), not by the FWHM that the trough pulled it before.
    assert abs(row["x"] - 1 - x0) < 0.5 and abs(row["y"] - 1 - y0) < 0.3, (row["x"], row["y"])


@pytest.mark.parametrize("distance_fwhm", [3.1, 3.5, 4.0])
def test_a_bright_star_beyond_the_blend_distance_does_not_pull_a_faint_centroid(
    distance_fwhm: float,
) -> None:
    """A faint star just beyond 3 FWHM of a 14th-magnitude one keeps its own centroid.

    Not deblended (flag 0), it is centred by SEP's window (about the PSF's sigma, cut at 4 of
    them), which the bright star's core does not reach. A window twice as wide moved it 2
    arcsec towards the bright star: off its catalogue position, an uncatalogued "candidate"
    (recovery benchmark on the plain sky, seed 2).
    """
    fwhm = 5.0
    faint = (40.3, 60.6, 4_400.0)
    bright = (faint[0] + distance_fwhm * fwhm, 60.1, 2_100_000.0)
    table = _catalog_of([faint, bright], fwhm=fwhm)
    row = table[np.argmin(table["flux"])]
    assert row["flag"] & 2 == 0, "beyond 3 FWHM: not deblended"
    assert abs(row["x"] - 1 - faint[0]) < 0.5 and abs(row["y"] - 1 - faint[1]) < 0.5, (
        row["x"] - 1,
        row["y"] - 1,
    )


@pytest.mark.parametrize(("n", "r_eff_px"), [(4.0, 40.0), (3.4, 21.0), (4.0, 1.5)])
def test_a_galaxy_core_does_not_depend_on_where_it_falls_in_a_pixel(
    n: float, r_eff_px: float
) -> None:
    """Two pointings of one galaxy: the same light within 3 px of its nucleus.

    A cuspy profile sampled at one point a pixel put 89 % more light there when the nucleus fell
    on a pixel's centre than on its corner (a point source at the nucleus of a reference's
    galaxy on the difference: seed 36 of the recovery benchmark, S/N 30 on a 12 mag galaxy).
    """
    from photutils.aperture import CircularAperture, aperture_photometry

    from sandbox.sky.realism import add_sersic

    sums = []
    for phase in (0.0, 0.25, 0.5, 0.37):
        x, y = 200.0 + phase, 200.0 + 0.6 * phase
        image = np.zeros((401, 401), np.float32)
        add_sersic(
            image, x, y, 1e6, n=n, r_eff_px=r_eff_px, q=0.6, theta_rad=1.0,
            kernel=np.ones((1, 1), np.float32),
        )  # fmt: skip
        core = aperture_photometry(image, CircularAperture((x, y), r=3.0), method="exact")
        sums.append(float(core["aperture_sum"][0]))
    # 0.25 % is what an exact aperture on pixels leaves for a smooth (n = 1) profile too.
    assert (max(sums) - min(sums)) / np.mean(sums) < 0.01
