"""Sky maps: LVK reference numbers, synthetic maps of known width, distances, bad input."""

from __future__ import annotations

import base64
import gzip
import io
import json
import math

import numpy as np
import pytest
from astropy.io import fits
from numpy.testing import assert_allclose

from followup.exceptions import SkymapError
from followup.skymap import (
    SkyMap,
    ansatz_moments,
    ansatz_parameters,
    gaussian_skymap,
    make_gaussian_skymap,
    read_skymap,
)

LN = -2 * math.log(0.1)  # 90% area of a circular Gaussian is pi * sigma^2 * LN


def analytic_area(sigma: float, level: float) -> float:
    return math.pi * sigma**2 * -2 * math.log(1 - level)


# ------------------------------------------------------------------ LVK samples


def test_lvk_user_guide_reference_numbers(samples):
    sky = read_skymap(samples / "lvk_userguide" / "bayestar.multiorder.fits")
    assert sky.area90 == pytest.approx(30.975, abs=0.01)
    assert sky.area(0.9, interpolate=False) == pytest.approx(30.975, abs=0.0005)  # the recipe
    assert sky.density(197.4133, -23.3996) == pytest.approx(0.034679, abs=1e-5)
    ra, dec, dens = sky.peak
    assert dens == pytest.approx(0.07825, abs=1e-5)
    assert (ra, dec) == pytest.approx((194.30, -17.86), abs=0.01)
    assert sky.distance_mean == pytest.approx(39.77, abs=0.01)
    assert sky.distance_std == pytest.approx(8.31, abs=0.01)
    assert sky.object_name == "MS181101ab"


@pytest.mark.parametrize(
    ("path", "area90", "tol"),
    [
        pytest.param("lvk_userguide/combined-ext.multiorder.fits", 27.70, 0.01, id="combined-ext"),
        pytest.param("gwcelery/MS220722v_bayestar.multiorder.fits", 1261, 1.0, id="MS220722v"),
        pytest.param("m4opt_pypi/800.fits", 22.85, 0.01, id="m4opt-800"),
        pytest.param("skyportal/bayestar.fits.gz", 10182.6, 0.1, id="S190425z-flat-256"),
        pytest.param(
            "skyportal/GW190814_LALInference.v1.fits.gz",
            23.08,
            0.01,
            id="GW190814-flat-1024",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "skyportal/GRB220617A_IPN_map_hpx.fits.gz",
            0.088,
            0.0005,
            id="IPN-ring-2048",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "lvk_userguide/bayestar.slim.fits.gz",
            30.975,
            0.01,
            id="slim-2048",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_sample_maps_have_their_stated_areas(samples, path, area90, tol):
    sky = read_skymap(samples / path)
    assert sky.area90 == pytest.approx(area90, abs=tol)


def test_flat_and_multiorder_forms_of_one_map_agree(samples):
    moc = read_skymap(samples / "lvk_userguide" / "bayestar.multiorder.fits")
    flat = read_skymap(samples / "skyportal" / "bayestar.fits.gz")  # another event: sanity only
    assert moc.has_distance and flat.has_distance
    assert flat.meta["flat_nside"] == 256


def test_base64_map_from_an_lvk_json_alert(samples):
    alert = json.loads((samples / "lvk_userguide" / "MS181101ab-preliminary.json").read_text())
    text = alert["event"]["skymap"].encode()
    sky = read_skymap(text)
    assert sky.area90 == pytest.approx(30.975, abs=0.01)
    assert read_skymap(base64.b64decode(text)).area90 == sky.area90


def test_distnorm_matches_the_ansatz_normalisation(samples):
    sky = read_skymap(samples / "lvk_userguide" / "bayestar.multiorder.fits")
    mean, _, norm = ansatz_moments(sky.distmu, sky.distsigma)
    ok = np.isfinite(mean)
    assert ok.mean() > 0.99
    assert_allclose(norm[ok], sky.distnorm[ok], rtol=1e-6)
    # The marginal moments from the layers reproduce the header DISTMEAN/DISTSTD.
    assert sky._marginal_distance() == pytest.approx((39.77, 8.308), abs=0.01)


def test_distance_posterior_along_a_line_of_sight(samples):
    sky = read_skymap(samples / "lvk_userguide" / "bayestar.multiorder.fits")
    r = np.linspace(0.01, 200, 20001)
    pdf = sky.distance_pdf(194.3, -17.86, r)
    assert np.trapezoid(pdf, r) == pytest.approx(1.0, abs=1e-4)
    sight = sky.distance_along(194.3, -17.86)
    assert np.trapezoid(pdf * r, r) == pytest.approx(sight.mean_mpc, rel=1e-4)
    var = np.trapezoid(pdf * (r - sight.mean_mpc) ** 2, r)
    assert math.sqrt(var) == pytest.approx(sight.std_mpc, rel=1e-3)


# ------------------------------------------------------------------ synthetic maps


@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_multiorder_gaussian_areas_match_the_analytic_values(sigma):
    sky = read_skymap(make_gaussian_skymap(150.0, -30.0, sigma))
    assert sky.order.min() < sky.max_order  # genuinely multi-order
    for level in (0.5, 0.9):
        assert sky.area(level) == pytest.approx(analytic_area(sigma, level), rel=0.01)
    ra, dec, _ = sky.peak
    assert (ra, dec) == pytest.approx((150.0, -30.0), abs=sigma / 5)


@pytest.mark.parametrize("ordering", ["NESTED", "RING"])
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_flat_gaussian_areas_match_the_analytic_values(ordering, compress):
    sigma = 2.0
    data = make_gaussian_skymap(
        40.0, 20.0, sigma, form="flat", nside=256, ordering=ordering, compress=compress
    )
    assert (data[:2] == b"\x1f\x8b") is compress
    sky = read_skymap(data)
    assert sky.meta["flat_ordering"] == ordering
    assert len(sky) < 12 * 256**2 / 10  # the empty sky was merged away
    for level in (0.5, 0.9):
        assert sky.area(level) == pytest.approx(analytic_area(sigma, level), rel=0.01)
    assert sky.peak[:2] == pytest.approx((40.0, 20.0), abs=0.3)


def test_elliptical_gaussian_area():
    sky = gaussian_skymap(200.0, 10.0, 3.0, sigma_minor_deg=1.0, position_angle_deg=30.0)
    assert sky.area90 == pytest.approx(math.pi * 3.0 * 1.0 * LN, rel=0.01)
    # Along the major axis (PA 30 deg east of north) the density falls slower.
    along = sky.density(
        200.0 + 2 * math.sin(math.radians(30)) / math.cos(math.radians(10)),
        10.0 + 2 * math.cos(math.radians(30)),
    )
    across = sky.density(
        200.0 + 2 * math.cos(math.radians(30)) / math.cos(math.radians(10)),
        10.0 - 2 * math.sin(math.radians(30)),
    )
    peak = sky.peak[2]
    assert along / peak == pytest.approx(math.exp(-((2 / 3) ** 2) / 2), rel=0.05)
    assert across / peak == pytest.approx(math.exp(-2), rel=0.05)


def test_lvk_format_fields_of_the_multiorder_builder():
    data = make_gaussian_skymap(10.0, -5.0, 2.0, distance_mpc=120.0, distance_sigma_mpc=25.0)
    with fits.open(io.BytesIO(data)) as hdul:
        hdu = hdul[1]
        assert hdu.columns.names == ["UNIQ", "PROBDENSITY", "DISTMU", "DISTSIGMA", "DISTNORM"]
        assert hdu.header["ORDERING"] == "NUNIQ"
        assert hdu.header["MOC"] is True
        assert hdu.header["DISTMEAN"] == 120.0
        assert hdu.header["DISTSTD"] == 25.0
        assert hdu.header["OBJECT"] == "SYNTHETIC"
        assert hdu.columns["PROBDENSITY"].unit == "sr-1"


def test_synthetic_distance_layers_reproduce_the_requested_distance():
    sky = read_skymap(
        make_gaussian_skymap(10.0, -5.0, 2.0, distance_mpc=120.0, distance_sigma_mpc=25.0)
    )
    sight = sky.distance_along(10.0, -5.0)
    assert sight.mean_mpc == pytest.approx(120.0, rel=1e-6)
    assert sight.std_mpc == pytest.approx(25.0, rel=1e-6)
    assert sky._marginal_distance() == pytest.approx((120.0, 25.0), rel=1e-6)


def test_ansatz_inversion_round_trip_and_limits():
    mu, sigma, norm = ansatz_parameters(40.0, 8.0)
    mean, std, norm2 = ansatz_moments(mu, sigma)
    assert (float(mean), float(std), float(norm2)) == pytest.approx((40.0, 8.0, norm), rel=1e-8)
    with pytest.raises(ValueError, match="too wide"):
        ansatz_parameters(40.0, 30.0)
    mean, std, norm = ansatz_moments(np.inf, 1.0)
    assert np.isnan(mean) and norm == 0


def test_fits_round_trips():
    sky = gaussian_skymap(300.0, 45.0, 1.5, distance_mpc=60.0)
    again = read_skymap(sky.to_fits())
    assert_allclose(again.uniq, sky.uniq)
    assert_allclose(again.probdensity, sky.probdensity)
    ring = read_skymap(sky.to_fits(form="flat", order=8, ordering="RING", compress=True))
    assert ring.area90 == pytest.approx(sky.area90, rel=0.01)
    assert ring.has_distance
    assert ring.distance_along(300.0, 45.0).mean_mpc == pytest.approx(60.0, rel=1e-6)


def test_region_as_moc_and_pixel_list():
    sky = gaussian_skymap(80.0, 0.0, 2.0)
    uniq = sky.credible_uniq(0.9)
    assert np.all(np.diff(uniq) > 0)
    moc_prob = sky.prob[np.isin(sky.uniq, uniq)].sum()
    assert moc_prob == pytest.approx(0.9, abs=0.002)
    order = sky.max_order
    pixels = sky.credible_pixels(0.9, order=order)
    area = pixels.size * 4 * math.pi / (12 * 4**order) * (180 / math.pi) ** 2
    assert area == pytest.approx(sky.area90, rel=0.01)
    assert sky.probability_in_pixels(order, pixels).sum() == pytest.approx(0.9, abs=0.002)
    # At a coarser order the region grows: parents of any pixel in it count.
    coarse = sky.credible_pixels(0.9, order=order - 2)
    assert sky.probability_in_pixels(order - 2, coarse).sum() > 0.9


def _flatten_by_unique(ipix: np.ndarray, order: np.ndarray, target: int) -> np.ndarray:
    """Reference: expand every pixel at ``target``, then sort and de-duplicate."""
    parts = [np.empty(0, dtype=np.int64)]
    for o, p in zip(order.tolist(), ipix.tolist(), strict=True):
        if o >= target:
            parts.append(np.array([p >> (2 * (o - target))], dtype=np.int64))
        else:
            parts.append((p << (2 * (target - o))) + np.arange(4 ** (target - o), dtype=np.int64))
    return np.unique(np.concatenate(parts))


def test_credible_pixels_equal_a_sort_and_unique_of_all_children():
    # Multi-order map with pixels coarser and finer than the requested orders.
    sky = gaussian_skymap(80.0, 10.0, 3.0)
    assert np.unique(sky.order).size > 2
    for level in (0.5, 0.9, 0.999, 1.0):
        mask = sky.region_mask(level)
        for order in (2, int(sky.order.min()), sky.max_order - 1, sky.max_order, sky.max_order + 2):
            got = sky.credible_pixels(level, order=order)
            want = _flatten_by_unique(sky.ipix[mask], sky.order[mask], order)
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, want)


def test_flatten_indices_of_overlapping_pixels_are_unique():
    from followup.skymap.pixels import _flatten_indices

    rng = np.random.default_rng(3)
    order = rng.integers(0, 7, 300)
    ipix = np.array([rng.integers(0, 12 * 4 ** int(o)) for o in order], dtype=np.int64)
    for target in (0, 3, 5, 8):
        np.testing.assert_array_equal(
            _flatten_indices(ipix, order, target), _flatten_by_unique(ipix, order, target)
        )
    assert _flatten_indices(np.zeros(0, np.int64), np.zeros(0, np.int64), 4).size == 0


def test_probability_in_pixels_finer_than_a_partial_map():
    # Two order-3 pixels and four order-4 children of a third; the rest of the sky is uncovered.
    order = np.array([3, 3, 4, 4, 4, 4])
    ipix = np.array([10, 11, 48, 49, 50, 51])
    sky = SkyMap(4 * 4**order + ipix, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    target = 6
    got = sky.probability_in_pixels(target, np.arange(12 * 4**target))
    assert got.sum() == pytest.approx(1.0, abs=1e-12)
    for o, p, prob in zip(order, ipix, sky.prob, strict=True):
        children = (p << (2 * (target - o))) + np.arange(4 ** (target - o))
        assert_allclose(got[children], prob / 4 ** (target - o), rtol=1e-12)
    assert np.count_nonzero(got) == 2 * 4**3 + 4 * 4**2  # uncovered pixels hold 0


def test_probability_in_pixels_is_exact_at_any_order():
    sky = gaussian_skymap(80.0, 0.0, 2.0)
    for order in (0, 4, sky.max_order):
        assert sky.rasterize(order).sum() == pytest.approx(1.0, abs=1e-9)
    # Finer than the map: children share their parent's probability equally.
    top = int(np.argmax(sky.probdensity))
    children = (sky.ipix[top] << 4) + np.arange(16)
    shares = sky.probability_in_pixels(sky.order[top] + 2, children)
    assert_allclose(shares, sky.prob[top] / 16, rtol=1e-12)
    coarse = sky.rasterize(3)
    fine = sky.rasterize(6).reshape(-1, 4**3).sum(axis=1)
    assert_allclose(coarse, fine, atol=1e-12)


def test_searched_probability_and_area():
    sky = gaussian_skymap(80.0, 0.0, 2.0)
    assert sky.searched_probability(80.0, 0.0) < 0.01
    sp = sky.searched_probability([80.0, 83.0, 120.0], [0.0, 0.0, 0.0])
    assert sp[0] < sp[1] < sp[2]
    # For a Gaussian, the searched probability at radius r is 1 - exp(-r^2 / 2 sigma^2).
    assert sp[1] == pytest.approx(1 - math.exp(-(3.0**2) / 8), abs=0.02)
    assert sky.searched_area(83.0, 0.0) == pytest.approx(math.pi * 9, rel=0.05)
    assert list(sky.contains([80.0, 120.0], [0.0, 0.0])) == [True, False]


def test_tail_merging_keeps_credible_areas():
    data = make_gaussian_skymap(10.0, 10.0, 1.0, form="flat", nside=512)
    exact = read_skymap(data, tail_probability=0)
    merged = read_skymap(data)
    assert len(merged) < len(exact)
    assert merged.area90 == pytest.approx(exact.area90, rel=1e-9)
    assert merged.area(0.999) == pytest.approx(exact.area(0.999), rel=1e-9)


# ------------------------------------------------------------------ bad input


def _flat_bytes(prob: np.ndarray, **header) -> bytes:
    hdu = fits.BinTableHDU.from_columns([fits.Column("PROB", "D", array=prob)])
    base = {"PIXTYPE": "HEALPIX", "ORDERING": "NESTED", "COORDSYS": "C", "NSIDE": 4}
    base.update(header)
    for key, value in base.items():
        if value is not None:
            hdu.header[key] = value
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
    return buffer.getvalue()


def _moc_bytes(uniq, density) -> bytes:
    hdu = fits.BinTableHDU.from_columns(
        [
            fits.Column("UNIQ", "K", array=np.asarray(uniq)),
            fits.Column("PROBDENSITY", "D", array=np.asarray(density, float)),
        ]
    )
    hdu.header["ORDERING"] = "NUNIQ"
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
    return buffer.getvalue()


GOOD = np.full(192, 1 / 192)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"", "empty", id="empty"),
        pytest.param(b"not a fits file at all", "not a FITS", id="garbage"),
        pytest.param(gzip.compress(b"junk"), "not a FITS", id="gzip-junk"),
        pytest.param(b"\x1f\x8b\x08\x00broken", "gzip", id="broken-gzip"),
        pytest.param(_flat_bytes(np.zeros(192)), "all zero", id="all-zero"),
        pytest.param(_flat_bytes(np.where(np.arange(192) == 3, np.nan, GOOD)), "NaN", id="nan"),
        pytest.param(
            _flat_bytes(np.where(np.arange(192) == 3, -1.0, GOOD)), "negative", id="negative"
        ),
        pytest.param(_flat_bytes(GOOD, ORDERING=None), "ORDERING", id="no-ordering"),
        pytest.param(_flat_bytes(GOOD, NSIDE=8), "NSIDE=8 needs", id="wrong-nside"),
        pytest.param(_flat_bytes(GOOD, COORDSYS="G"), "COORDSYS", id="galactic"),
        pytest.param(_moc_bytes([4, 4], [1.0, 1.0]), "overlapping", id="duplicate-uniq"),
        pytest.param(_moc_bytes([4, 16], [1.0, 1.0]), "overlapping", id="nested-uniq"),
        pytest.param(_moc_bytes([4, 5], [np.nan, 1.0]), "NaN", id="moc-nan"),
        pytest.param(_moc_bytes([], []), "no pixels", id="moc-empty"),
    ],
)
def test_bad_maps_raise_a_clear_skymap_error(data, message):
    with pytest.raises(SkymapError, match=message):
        read_skymap(data)


def test_truncated_fits_is_a_skymap_error():
    data = make_gaussian_skymap(10.0, 10.0, 2.0)
    with pytest.raises(SkymapError):
        read_skymap(data[: len(data) // 2])


def test_table_without_probability_is_a_skymap_error():
    hdu = fits.BinTableHDU.from_columns([fits.Column("FLUX", "D", array=np.ones(12))])
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
    with pytest.raises(SkymapError, match="probability column"):
        read_skymap(buffer.getvalue())


def test_missing_file_is_a_skymap_error(tmp_path):
    with pytest.raises(SkymapError, match="cannot read"):
        read_skymap(tmp_path / "nope.fits")


def test_unnormalised_map_is_normalised_and_recorded():
    sky = SkyMap(np.arange(4, 16), np.full(12, 2 / (4 * math.pi)))  # sums to 2
    assert sky.prob.sum() == pytest.approx(1.0)
    assert sky.meta["input_total_probability"] == pytest.approx(2.0)


def test_level_must_be_a_probability():
    sky = gaussian_skymap(10.0, 10.0, 2.0)
    with pytest.raises(ValueError, match="credible level"):
        sky.area(1.5)


# ------------------------------------------------------------------ fast flat reads


def test_flat_columns_are_viewed_in_place_and_read_like_astropy():
    from followup.skymap.flat import flat_columns

    data = make_gaussian_skymap(40.0, 20.0, 2.0, form="flat", nside=256, distance_mpc=80)
    table = flat_columns(data)
    assert table is not None
    buffer = np.frombuffer(data, dtype=np.uint8)
    assert all(np.shares_memory(col, buffer) for col in table.columns.values())
    with fits.open(io.BytesIO(data)) as hdul:
        for name in ("PROB", "DISTMU", "DISTNORM"):
            assert_allclose(table.columns[name], hdul[1].data[name])
    # Multi-order maps are left to astropy.
    assert flat_columns(make_gaussian_skymap(40.0, 20.0, 2.0)) is None


@pytest.mark.parametrize("ordering", ["NESTED", "RING"])
def test_flat_blocks_give_the_map_they_were_rasterised_from(ordering, monkeypatch):
    # The reader's blocks scaled down with the map: an order-8 map read in blocks of 4**7 pixels
    # is, like an order-11 one in its blocks of 4**10, 48 blocks merged back to the multi-order
    # original (the same code path; writing the order-11 file alone took 10-30 s, its 400 MB).
    # tests/test_flat_ring.py checks the RING blocks of 4**10 of an NSIDE-2048 map.
    from followup.skymap import flat

    monkeypatch.setattr(flat, "_BLOCK_ORDER", 7)
    sky = gaussian_skymap(120.0, -30.0, 4.0, max_order=8)  # 0.5 deg at order 11, scaled
    back = read_skymap(sky.to_fits(form="flat", order=8, ordering=ordering), tail_probability=0)
    assert back.meta["flat_nside"] == 256
    assert back.area(0.9) == pytest.approx(sky.area(0.9), rel=1e-6)
    assert back.density(120.0, -30.0) == pytest.approx(sky.density(120.0, -30.0), rel=1e-9)
    # Lossless merging recovers the multi-order pixels (and merges siblings that underflow to 0).
    assert 0.9 * len(sky) < len(back) <= len(sky)
    ra, dec = np.array([119.0, 120.3, 121.0]), np.array([-30.2, -29.5, -30.9])
    assert_allclose(back.density(ra, dec), sky.density(ra, dec), rtol=1e-9)
