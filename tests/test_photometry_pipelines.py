"""Frames from any pipeline: units from BUNIT, single-extension frames, Moffat stars, colour terms, limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits

from followup.exceptions import PhotometryError
from followup.photometry import (
    PhotometryFlag,
    PhotometryOptions,
    calibrate_zero_point,
    measure,
    photometry_table,
)
from followup.photometry.aperture import aperture_correction, gaussian_aperture_correction
from followup.photometry.frame import prepare_frame
from followup.photometry.profile import TYPICAL_BETA, MoffatProfile, fit_moffat
from tests.moffat_frames import EXPTIME, ZERO_POINT, MoffatFrame, in_adu, make_moffat_frame


@pytest.fixture(scope="module")
def frame() -> MoffatFrame:
    return make_moffat_frame(seed=3)


def _mags(table) -> np.ndarray:
    return np.asarray(table["mag"].value, float)


# -- units ------------------------------------------------------------------------------------


def test_a_single_extension_frame_in_electrons_is_measured(frame: MoffatFrame) -> None:
    """BUNIT = 'electron', no RLEVEL, ERR or BPM: measured, and the magnitudes are true."""
    header = frame.hdul[0].header
    assert "RLEVEL" not in header and len(frame.hdul) == 1
    stars = frame.stars[10:20]
    table = photometry_table(frame.hdul, stars["ra"], stars["dec"], catalog=frame.refcat)
    dm = _mags(table) - np.asarray(stars["r"])
    assert np.all(np.abs(dm) < 0.05), dm
    # Its zero point is for the flux in 2 FWHM, which misses a few percent of a Moffat star.
    assert ZERO_POINT - 0.08 < table.meta["zero_point"] < ZERO_POINT


@pytest.mark.parametrize("gain", [pytest.param(2.0, id="gain2"), pytest.param(0.5, id="gain05")])
def test_a_frame_in_adu_is_converted_with_its_gain(frame: MoffatFrame, gain: float) -> None:
    adu = in_adu(frame, gain)
    prepared = prepare_frame(adu)
    electrons = prepare_frame(frame.hdul)
    np.testing.assert_allclose(prepared.data, electrons.data, rtol=1e-5, atol=1e-3)
    stars = frame.stars[10:20]
    got = photometry_table(adu, stars["ra"], stars["dec"], catalog=frame.refcat)
    want = photometry_table(frame.hdul, stars["ra"], stars["dec"], catalog=frame.refcat)
    np.testing.assert_allclose(_mags(got), _mags(want), atol=1e-3)
    np.testing.assert_allclose(got["mag_err"].value, want["mag_err"].value, rtol=0.02)


def test_units_that_cannot_be_measured_are_refused(frame: MoffatFrame) -> None:
    no_gain = in_adu(frame, 2.0)
    del no_gain[0].header["GAIN"]
    with pytest.raises(PhotometryError, match="GAIN"):
        prepare_frame(no_gain)
    odd = fits.HDUList([frame.hdul[0].copy()])
    odd[0].header["BUNIT"] = "Jy/beam"
    with pytest.raises(PhotometryError, match="neither electrons nor ADU"):
        prepare_frame(odd)
    unknown = fits.HDUList([frame.hdul[0].copy()])
    del unknown[0].header["BUNIT"]
    with pytest.raises(PhotometryError, match="not electrons"):
        prepare_frame(unknown)
    raw = fits.HDUList([frame.hdul[0].copy()])
    raw[0].header["RLEVEL"] = 0
    with pytest.raises(PhotometryError, match="calibrate"):
        prepare_frame(raw)


def test_errors_without_err_follow_the_measured_sky_noise(frame: MoffatFrame) -> None:
    """The frame's sky was subtracted: its errors still come out as the sky's noise."""
    prepared = prepare_frame(frame.hdul)
    from tests.moffat_frames import READ_NOISE, SKY_E

    expected = math.sqrt(SKY_E + READ_NOISE**2)
    assert float(np.median(prepared.err)) == pytest.approx(expected, rel=0.05)


# -- aperture corrections ---------------------------------------------------------------------


def test_a_moffat_profile_is_fitted_to_the_stars(frame: MoffatFrame) -> None:
    prepared = prepare_frame(frame.hdul, fwhm=5.0)
    xy = np.column_stack([frame.stars["x"], frame.stars["y"]])[:20]
    profile = fit_moffat(prepared, xy)
    assert profile is not None and profile.n_stars >= 15
    assert profile.beta == pytest.approx(2.5, abs=0.25)
    assert profile.fwhm == pytest.approx(5.0, rel=0.05)


def test_typical_profile_holds_lco_sinistro_fraction() -> None:
    profile = MoffatProfile(alpha=1.0, beta=TYPICAL_BETA)
    assert profile.encircled(profile.fwhm) == pytest.approx(0.74, abs=1e-6)


def test_few_bright_stars_get_a_moffat_correction_not_a_gaussian() -> None:
    """Two stars of S/N > 30: the correction is the fitted Moffat's, within 2 % of the truth."""
    faint = make_moffat_frame(seed=5, mags=np.r_[17.5, 18.0, np.linspace(20.8, 21.3, 25)])
    prepared = prepare_frame(faint.hdul, fwhm=5.0)
    xy = np.column_stack([faint.stars["x"], faint.stars["y"]])
    from followup.photometry.aperture import measure_apertures

    table = measure_apertures(prepared, xy, radius=5.0)
    flux = np.asarray(table["aperture_flux"].value)
    err = np.asarray(table["aperture_flux_err"].value)
    assert np.sum(flux / err > 30) == 2
    corr, modelled = aperture_correction(prepared, xy, flux, err, np.asarray(table["flags"]), 5.0)
    truth = MoffatProfile(alpha=5.0 / (2 * math.sqrt(2 ** (1 / 2.5) - 1)), beta=2.5)
    assert modelled
    assert corr == pytest.approx(truth.aperture_correction(5.0, 10.0), rel=0.02)
    assert abs(corr / gaussian_aperture_correction(5.0, 5.0) - 1) > 0.1


def test_header_zero_point_magnitudes_are_true_for_moffat_stars(frame: MoffatFrame) -> None:
    """No catalogue, no CAT: L1ZP with the correction measured on the frame's own stars."""
    hdul = fits.HDUList([frame.hdul[0].copy()])
    hdul[0].header["L1ZP"] = ZERO_POINT
    hdul[0].header["L1FWHM"] = 5.0 * 0.389
    star = frame.stars[15]
    m = measure(hdul, float(star["ra"]), float(star["dec"]))
    assert m.flags & PhotometryFlag.ZERO_POINT_FROM_HEADER
    # Total flux here is the flux in 2 FWHM, which misses 6.6 % of a beta = 2.5 Moffat.
    held = MoffatProfile(alpha=1.0, beta=2.5)
    missing = -2.5 * math.log10(held.encircled(2 * held.fwhm))
    assert m.mag == pytest.approx(float(star["r"]) + missing, abs=0.04)


# -- colour terms -----------------------------------------------------------------------------


def test_the_colour_term_is_on_where_the_catalogue_has_the_colours() -> None:
    tilted = make_moffat_frame(seed=7, colour_term=0.1)
    zp, _ = calibrate_zero_point(tilted.hdul, tilted.refcat)
    assert zp.colour == "r-i"
    assert zp.colour_coefficient == pytest.approx(0.1, abs=0.03)
    assert ZERO_POINT - 0.08 < zp.zero_point < ZERO_POINT  # for the flux in 2 FWHM
    # The zero point is known best at the stars' own colours, not at colour 0.
    assert 0.1 < zp.reference_colour < 0.5
    assert zp.error_at(zp.reference_colour) < 0.8 * zp.zero_point_err
    star = tilted.stars[12]
    m = measure(
        tilted.hdul, float(star["ra"]), float(star["dec"]), catalog=tilted.refcat,
        colour=float(star["colour"]),
    )  # fmt: skip
    assert m.mag == pytest.approx(float(star["r"]), abs=0.03)
    # Without the colours in the catalogue there is no colour term, and no error.
    plain = tilted.refcat.copy()
    plain["i"] = np.nan
    zp, _ = calibrate_zero_point(tilted.hdul, plain)
    assert zp.colour is None and zp.colour_coefficient == 0.0
    # Asked off, it stays off.
    zp, _ = calibrate_zero_point(
        tilted.hdul, tilted.refcat, options=PhotometryOptions(colour_term=False)
    )
    assert zp.colour is None


# -- limits -----------------------------------------------------------------------------------


def test_the_limit_at_a_bright_source_is_the_limit_of_the_empty_sky_around_it() -> None:
    sparse = make_moffat_frame(
        seed=11, shape=(800, 800), mags=np.r_[15.5, np.linspace(18.5, 20.5, 20)]
    )
    bright = sparse.stars[0]  # S/N in the hundreds
    wcs = prepare_frame(sparse.hdul).wcs
    blank_ra, blank_dec = wcs.all_pix2world([200, 600, 200, 600], [200, 200, 600, 600], 0)
    table = photometry_table(
        sparse.hdul,
        [float(bright["ra"]), *blank_ra],
        [float(bright["dec"]), *blank_dec],
        catalog=sparse.refcat,
    )
    at_star, *blanks = np.asarray(table["limit_mag_5sigma"].value)
    blank = float(np.median(blanks))
    # The star's wings make the sky around it a little noisier, no more.
    assert at_star == pytest.approx(blank, abs=0.25)
    # With the star's own noise in it, the limit would be more than a magnitude brighter.
    own = table.meta["zero_point"] - 2.5 * math.log10(5 * table["flux_err"][0].value / EXPTIME)
    assert at_star > own + 1.0
    # The empty-sky limit: 5 sigma of the sky noise in the aperture, corrected to total flux.
    radius = table.meta["aperture_radius"]
    from tests.moffat_frames import READ_NOISE, SKY_E

    noise = math.sqrt(math.pi * radius**2 * (SKY_E + READ_NOISE**2))
    expected = table.meta["zero_point"] - 2.5 * math.log10(
        5 * noise * table.meta["aperture_correction"] / EXPTIME
    )
    assert blank == pytest.approx(expected, abs=0.15)
