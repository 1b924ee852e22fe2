"""Reduction: reading frames, masters, calibration with errors, cosmic rays, stacking."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData

from followup.exceptions import ReductionError
from followup.reduction import (
    BPM_BAD,
    BPM_COSMIC_RAY,
    BPM_LOW_FLAT,
    BPM_SATURATED,
    HeaderOverrides,
    MasterCalibration,
    calibrate,
    combine,
    describe_pixel_flags,
    detect_cosmic_rays,
    frame_to_hdulist,
    make_master_bias,
    make_master_dark,
    make_master_flat,
    read_frame,
    stack_exposures,
)
from sandbox.sky import SyntheticSky
from tests.frames_support import spec

SHAPE = (256, 256)


@pytest.fixture(scope="module")
def sky() -> SyntheticSky:
    return SyntheticSky(seed=11, shape=SHAPE)


@pytest.fixture(scope="module")
def calibrations(sky: SyntheticSky) -> dict[str, list[bytes]]:
    return {
        "bias": [sky.render(spec(100 + k, kind="BIAS", level=0)) for k in range(7)],
        "dark": [sky.render(spec(110 + k, kind="DARK", level=0, exptime=600)) for k in range(5)],
        "flat": [sky.render(spec(120 + k, kind="SKYFLAT", level=0, exptime=3)) for k in range(7)],
    }


@pytest.fixture(scope="module")
def masters(calibrations: dict[str, list[bytes]]) -> dict[str, CCDData]:
    bias = make_master_bias(calibrations["bias"])
    dark = make_master_dark(calibrations["dark"], bias=bias)
    flat = make_master_flat(calibrations["flat"], bias=bias, dark=dark)
    return {"bias": bias, "dark": dark, "flat": flat}


def test_read_banzai_frame(sky: SyntheticSky, tmp_path: Path) -> None:
    path = tmp_path / "cpt1m010-fa16-20250301-0001-e91.fits.fz"
    path.write_bytes(sky.render(spec(1)))
    frame = read_frame(path)
    assert frame.name == "cpt1m010-fa16-20250301-0001-e91"
    assert frame.is_reduced and frame.ccd.unit == u.electron
    assert frame.ccd.uncertainty is not None and frame.ccd.uncertainty.array.shape == SHAPE
    assert frame.ccd.flags.dtype == np.uint8 and np.array_equal(
        frame.ccd.mask, frame.ccd.flags != 0
    )
    assert frame.ccd.wcs is not None and frame.ccd.wcs.has_celestial
    assert frame.catalog is not None and "flux" in frame.catalog.colnames
    assert frame.header["FILTER"] == "rp"
    # From bytes and from an open HDU list too; the name falls back to ORIGNAME.
    from_bytes = read_frame(path.read_bytes())
    assert from_bytes.name == "cpt1m010-fa16-20250301-0001-e91"
    np.testing.assert_array_equal(from_bytes.ccd.data, frame.ccd.data)
    with fits.open(path) as hdul:
        assert read_frame(hdul).ccd.shape == SHAPE


def test_read_errors_are_reduction_errors(sky: SyntheticSky, tmp_path: Path) -> None:
    data = sky.render(spec(2))
    with pytest.raises(ReductionError):
        read_frame(data[: len(data) // 2])  # truncated download
    with pytest.raises(ReductionError):
        read_frame(b"")
    with pytest.raises(ReductionError):
        read_frame(b"not a fits file at all" * 200)
    hdul = fits.open(io.BytesIO(data))
    bad = fits.HDUList(
        [hdul[0], hdul["SCI"], fits.ImageHDU(np.zeros((10, 10), np.float32), name="ERR")]
    )
    with pytest.raises(ReductionError, match="ERR shape"):
        read_frame(bad)
    no_image = fits.HDUList(
        [fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("a", "E", array=[1.0])])]
    )
    with pytest.raises(ReductionError, match="no 2-D image"):
        read_frame(no_image)
    with pytest.raises(FileNotFoundError):
        read_frame(tmp_path / "missing.fits")


def test_combine_rejects_outliers_and_reports_errors() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.normal(100.0, 5.0, (64, 64)).astype(np.float32) for _ in range(9)]
    frames[3][10, 10] = 5000.0  # a cosmic ray in one frame
    before = [f.copy() for f in frames]
    master = combine(frames, mem_limit=64 * 64 * 4 * 9 * 3 * 4)  # several chunks
    assert master.data.dtype == np.float32
    assert abs(master.data[10, 10] - 100) < 15
    assert master.data.mean() == pytest.approx(100, abs=0.5)
    expected = 1.2533 * 5.0 / 3.0
    assert np.median(master.uncertainty.array) == pytest.approx(expected, rel=0.15)
    assert master.meta["NCOMBINE"] == 9
    for a, b in zip(frames, before, strict=True):
        np.testing.assert_array_equal(a, b)  # inputs untouched
    with pytest.raises(ReductionError, match="at least 2"):
        combine(frames[:1])
    with pytest.raises(ReductionError, match="shapes differ"):
        combine([frames[0], np.zeros((32, 32), np.float32)])


def test_masters_recover_the_instrument(sky: SyntheticSky, masters: dict[str, CCDData]) -> None:
    inst = sky._instrument("fa16")
    bias_resid = masters["bias"].data - inst.bias
    expected_noise = 1.2533 * sky.read_noise_e / sky.gain_raw / np.sqrt(7)
    assert abs(np.median(bias_resid)) < 1.0  # only the frames' bias drift remains
    assert np.std(bias_resid) == pytest.approx(np.hypot(expected_noise, 0.3), rel=0.25)
    true_flat = sky._flat(inst, "fa16", "rp")
    good = true_flat > 0.5
    flat_resid = masters["flat"].data[good] / true_flat[good]
    assert np.median(flat_resid) == pytest.approx(1.0, abs=0.003)
    assert np.std(flat_resid) < 0.01
    hot = inst.hot & (inst.dark > 2.0)
    if hot.any():
        dark_e = masters["dark"].data * sky.gain_raw
        np.testing.assert_allclose(dark_e[hot], inst.dark[hot], rtol=0.2, atol=0.05)
    assert masters["dark"].unit == u.adu / u.s and masters["flat"].unit == u.dimensionless_unscaled


def test_calibrate_gives_electrons_with_honest_errors(
    sky: SyntheticSky, masters: dict[str, CCDData]
) -> None:
    raw_bytes = sky.render(spec(3, level=0))
    raw = read_frame(raw_bytes)
    raw_before = raw.ccd.data.copy()
    red = calibrate(raw, **masters, cosmic_rays="none")
    np.testing.assert_array_equal(raw.ccd.data, raw_before)  # input not mutated
    assert red.unit == u.electron and red.data.dtype == np.float32
    assert red.uncertainty.array.dtype == np.float32
    for key in ("BIASCORR", "DARKCORR", "FLATCORR"):
        assert red.meta[key] is True
    assert red.meta["GAIN"] == 1.0 and red.meta["RAWGAIN"] == pytest.approx(sky.gain_raw)
    assert any("followup.reduction.calibrate" in str(h) for h in red.meta["HISTORY"])
    # The reduced sky level is the true one; pixel noise matches the error map.
    truth = sky.conditions(spec(3, level=0))
    expected_sky = truth.sky_e_per_s * 300.0
    sky_pixels = red.data[red.flags == 0]
    level = np.median(sky_pixels)
    assert level == pytest.approx(expected_sky, rel=0.03)
    faint = (red.flags == 0) & (red.data < level + 3 * np.median(red.uncertainty.array))
    pulls = (red.data[faint] - level) / red.uncertainty.array[faint]
    assert 0.9 < np.std(pulls) < 1.1
    # Dead columns were found through the flat; nothing else is flagged low-flat.
    assert np.any(red.flags & BPM_LOW_FLAT)
    assert (red.flags & BPM_LOW_FLAT).mean() < 0.05
    assert describe_pixel_flags(BPM_BAD | BPM_COSMIC_RAY) == ["bad", "cosmic_ray"]


def test_calibrate_flags_saturation_and_refuses_bad_input(
    sky: SyntheticSky, masters: dict[str, CCDData]
) -> None:
    raw = read_frame(sky.render(spec(4, level=0)))
    data = raw.ccd.data.copy()
    data[50, 50] = raw.header["SATURATE"] + 10
    ccd = CCDData(data, unit="adu", meta=raw.header)
    red = calibrate(ccd, **masters, cosmic_rays="none")
    assert red.flags[50, 50] & BPM_SATURATED
    with pytest.raises(ReductionError, match="master bias"):
        calibrate(ccd, bias=None)
    with pytest.raises(ReductionError, match="shape"):
        calibrate(ccd, bias=CCDData(np.zeros((10, 10), np.float32), unit="adu"))
    header = raw.header.copy()
    del header["GAIN"]
    with pytest.raises(ReductionError, match="gain"):
        calibrate(CCDData(data, unit="adu", meta=header), bias=masters["bias"])
    reduced = read_frame(sky.render(spec(5)))
    with pytest.raises(ReductionError, match="already reduced"):
        calibrate(reduced, bias=masters["bias"])


def _same_calibration(a: CCDData, b: CCDData) -> None:
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.uncertainty.array, b.uncertainty.array)
    np.testing.assert_array_equal(a.flags, b.flags)
    np.testing.assert_array_equal(a.mask, b.mask)


def test_calibration_in_the_frames_own_buffers(
    sky: SyntheticSky, masters: dict[str, CCDData], tmp_path: Path
) -> None:
    raw_bytes = sky.render(spec(12, level=0))
    kept = read_frame(raw_bytes)
    kept.ccd.data[40, 40] = kept.header["SATURATE"] + 5
    kept.ccd.data[41, 41] = np.nan
    kept.ccd.flags[41, 41] = BPM_BAD
    before = kept.ccd.data.copy()
    reference = calibrate(kept, **masters, cosmic_rays="none")
    np.testing.assert_array_equal(kept.ccd.data, before)  # not given up: left alone
    assert not np.shares_memory(reference.data, kept.ccd.data)
    assert reference.flags[40, 40] & BPM_SATURATED and reference.flags[41, 41] & BPM_BAD
    assert reference.mask[40, 40] and reference.mask[41, 41] and not reference.mask[42, 42]

    given = read_frame(raw_bytes)
    given.ccd.data[...] = before
    given.ccd.flags[41, 41] = BPM_BAD
    given.ccd.mask[41, 41] = True
    buffers = (given.ccd.data, given.ccd.flags, given.ccd.mask)
    red = calibrate(given, **masters, cosmic_rays="none", overwrite_input=True)
    assert red.data is buffers[0] and red.flags is buffers[1] and red.mask is buffers[2]
    _same_calibration(red, reference)

    # Read here from bytes or a path: nobody else holds the arrays, so they are reused.
    path = tmp_path / "raw.fits"
    path.write_bytes(raw_bytes)
    plain = calibrate(read_frame(raw_bytes), **masters, cosmic_rays="none")
    _same_calibration(calibrate(raw_bytes, **masters, cosmic_rays="none"), plain)
    _same_calibration(calibrate(str(path), **masters, cosmic_rays="none"), plain)


def test_calibration_blocks_in_place_and_threaded() -> None:
    """Several blocks of rows; saturation is tested on the raw values before they are overwritten."""
    rng = np.random.default_rng(5)
    shape = (5, 2**17)  # blocks of 2 rows
    bias = CCDData(np.full(shape, 100, np.float32), unit="adu")
    flat = CCDData(rng.uniform(0.9, 1.1, shape).astype(np.float32), unit="")
    header = fits.Header({"GAIN": 2.0, "RDNOISE": 7.0, "EXPTIME": 30.0, "SATURATE": 60000.0})
    raw = rng.normal(1000, 30, shape).astype(np.float32)
    raw[0, 10] = np.nan  # a NaN in the first block must not hide its saturated pixel
    raw[1, 20] = 65000.0
    raw[4, 30] = 60000.0
    results = []
    for threads in (1, 2):
        prepared = MasterCalibration(bias, flat=flat, threads=threads)
        for overwrite in (False, True):
            data = raw.copy()
            out = prepared.calibrate(
                CCDData(data, unit="adu", meta=header),
                cosmic_rays="none",
                overwrite_input=overwrite,
            )
            assert np.shares_memory(out.data, data) is overwrite
            results.append(out)
    flagged = {tuple(ix) for ix in np.argwhere(results[0].flags & BPM_SATURATED)}
    assert flagged == {(1, 20), (4, 30)}
    np.testing.assert_allclose(results[0].data[2], (raw[2] - 100) * 2.0 / flat.data[2], rtol=1e-6)
    for other in results[1:]:
        np.testing.assert_array_equal(other.data, results[0].data)
        np.testing.assert_array_equal(other.uncertainty.array, results[0].uncertainty.array)
        np.testing.assert_array_equal(other.flags, results[0].flags)


@pytest.mark.slow
def test_lacosmic_flags_cosmic_rays_without_touching_pixels(
    sky: SyntheticSky, masters: dict[str, CCDData]
) -> None:
    raw = read_frame(sky.render(spec(6, level=0)))
    red = calibrate(raw, **masters, cosmic_rays="none")
    truth = red.copy()
    # Put a few bright cosmic-ray hits on blank sky.
    rng = np.random.default_rng(3)
    hits = [(int(y), int(x)) for y, x in rng.integers(20, SHAPE[0] - 20, (12, 2))]
    for y, x in hits:
        red.data[y, x] += 4000.0
        red.data[y, x + 1] += 2500.0
    cleaned = detect_cosmic_rays(red)
    found = sum(bool(cleaned.flags[y, x] & BPM_COSMIC_RAY) for y, x in hits)
    assert found >= 11
    np.testing.assert_array_equal(cleaned.data, red.data)  # flagged, not replaced
    assert cleaned.meta["CRMETHOD"] == "lacosmic"
    assert not np.any(truth.flags & BPM_COSMIC_RAY)


def test_stack_rejects_cosmic_rays_by_clipping(
    sky: SyntheticSky, masters: dict[str, CCDData]
) -> None:
    exposures = [
        calibrate(sky.render(spec(7, level=0, seed=k, exptime=100)), **masters, cosmic_rays="none")
        for k in range(4)
    ]
    # The same pointing, so the frames align; cosmic rays differ between exposures.
    exposures[0].data[30, 30] += 3000.0
    stack = stack_exposures(exposures)
    assert stack.meta["EXPTIME"] == pytest.approx(400.0)
    assert stack.meta["NCOMBINE"] == 4
    others = np.mean([e.data[30, 30] for e in exposures[1:]])
    assert stack.data[30, 30] == pytest.approx(4 * others, rel=0.1)
    single = exposures[1].uncertainty.array
    assert np.median(stack.uncertainty.array) == pytest.approx(2 * np.median(single), rel=0.1)
    with pytest.raises(ReductionError, match="at least 2"):
        stack_exposures(exposures[:1])


def test_frame_to_hdulist_round_trips(sky: SyntheticSky, masters: dict[str, CCDData]) -> None:
    red = calibrate(sky.render(spec(8, level=0)), **masters, cosmic_rays="none")
    buffer = io.BytesIO()
    frame_to_hdulist(red, compress=True).writeto(buffer)
    back = read_frame(buffer.getvalue())
    assert back.is_reduced
    np.testing.assert_allclose(back.ccd.data, red.data, atol=np.median(red.uncertainty.array) / 4)
    np.testing.assert_array_equal(back.ccd.flags, red.flags)
    assert back.ccd.wcs is not None


def test_arrays_in(masters: dict[str, CCDData], sky: SyntheticSky) -> None:
    raw = read_frame(sky.render(spec(9, level=0)))
    array = np.asarray(raw.ccd.data).copy()
    values = HeaderOverrides(gain=sky.gain_raw, read_noise=sky.read_noise_e, exposure_time=300.0)
    red = calibrate(array, **masters, overrides=values, cosmic_rays="none")
    reference = calibrate(raw, **masters, cosmic_rays="none")
    np.testing.assert_allclose(red.data, reference.data, rtol=1e-6)
    with pytest.raises(ReductionError, match="exposure time"):
        calibrate(array, bias=masters["bias"], overrides=HeaderOverrides(gain=1.0, read_noise=7.0))


OVERSCAN = 24  # columns of serial overscan added to the right of the sandbox's trimmed frames


def _with_overscan(data: bytes, *, drift: float, rng: np.random.Generator) -> fits.HDUList:
    """A raw sandbox frame as a camera with a serial overscan writes it.

    The bias level drifts by ``drift`` ADU (on the image and in the overscan alike) and has a
    row pattern the overscan sees too; the overscan columns hold that level plus read noise.
    """
    hdul = fits.open(io.BytesIO(data))
    image = np.asarray(hdul["SCI"].data, np.float32)
    ny, nx = image.shape
    pattern = 3.0 * np.sin(np.arange(ny) / 17.0)[:, None].astype(np.float32)
    level = np.float32(drift) + pattern
    overscan = level + rng.normal(0, 6.0, (ny, OVERSCAN)).astype(np.float32)
    full = np.hstack([image + level, overscan])
    header = hdul["SCI"].header.copy()
    header["BIASSEC"] = f"[{nx + 1}:{nx + OVERSCAN},1:{ny}]"
    header["TRIMSEC"] = f"[1:{nx},1:{ny}]"
    header["SATURATE"] = header["SATURATE"] + drift
    return fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(full, header=header, name="SCI")])


def test_overscan_is_subtracted_and_trimmed(
    sky: SyntheticSky, calibrations: dict[str, list[bytes]], masters: dict[str, CCDData]
) -> None:
    rng = np.random.default_rng(8)
    drifts = iter(rng.uniform(-40, 40, 100))
    padded = {
        kind: [_with_overscan(d, drift=next(drifts), rng=rng) for d in frames]
        for kind, frames in calibrations.items()
    }
    bias = make_master_bias(padded["bias"])
    assert bias.shape == SHAPE and "BIASSEC" not in bias.meta
    assert any("overscan" in str(h) for h in bias.meta["HISTORY"])
    dark = make_master_dark(padded["dark"], bias=bias)
    flat = make_master_flat(padded["flat"], bias=bias, dark=dark)
    raw_bytes = sky.render(spec(13, level=0))
    reference = calibrate(raw_bytes, **masters, cosmic_rays="none")
    red = calibrate(
        _with_overscan(raw_bytes, drift=55.0, rng=rng),
        bias=bias,
        dark=dark,
        flat=flat,
        cosmic_rays="none",
    )
    assert red.shape == SHAPE and red.meta["OVERSCAN"] == pytest.approx(55.0, abs=3.0)
    assert "BIASSEC" not in red.meta and "TRIMSEC" not in red.meta
    # The drift of each frame is gone: the same electrons as the frames without an overscan,
    # within the noise of a 24-column median per row.
    good = (red.flags == 0) & (reference.flags == 0)
    diff = red.data[good] - reference.data[good]
    assert abs(np.median(diff)) < 3.0
    assert np.std(diff) < 0.1 * np.median(reference.uncertainty.array)
    np.testing.assert_allclose(red.meta["SATURATE"], reference.meta["SATURATE"], atol=30)
    assert (
        red.wcs.pixel_to_world(10, 10).separation(reference.wcs.pixel_to_world(10, 10)).arcsec
        < 1e-6
    )


def test_overscan_of_a_real_raw_frame() -> None:
    """ccdproc's test frame: a real raw CCD frame (SAAO 1.0 m) with BIASSEC and TRIMSEC."""
    import ccdproc

    path = Path(ccdproc.__file__).parent / "tests" / "data" / "a8280271.fits"
    if not path.exists():
        pytest.skip("ccdproc's test data are not installed")
    header = fits.getheader(path)
    raw = fits.getdata(path).astype(np.float32)
    master = combine([path, path])
    assert master.shape == (520, 512)  # TRIMSEC [17:528, 1:520]
    # ccdproc's own subtract_overscan + trim_image give the same pixels.
    ccd = CCDData(raw, unit="adu", meta=header)
    expected = ccdproc.trim_image(
        ccdproc.subtract_overscan(
            ccd, fits_section=header["BIASSEC"], median=True, overscan_axis=1
        ),
        fits_section=header["TRIMSEC"],
    )
    np.testing.assert_allclose(master.data, expected.data, atol=1e-3)
    with pytest.raises(ReductionError, match="serial"):
        bad = header.copy()
        bad["BIASSEC"] = "[17:528,1:10]"
        combine([CCDData(raw, unit="adu", meta=bad)] * 2)


def test_a_night_is_sorted_by_its_headers(
    sky: SyntheticSky, calibrations: dict[str, list[bytes]], tmp_path: Path
) -> None:
    from followup.reduction import NightCalibrations, reduce_raw_frames

    paths = []
    for kind, frames in calibrations.items():
        for k, data in enumerate(frames[:3]):
            paths.append(tmp_path / f"{kind}{k}.fits.fz")
            paths[-1].write_bytes(data)
    night = NightCalibrations(paths)
    assert len(night.files("BIAS")) == 3 and len(night.files("SKYFLAT", filter="rp")) == 3
    assert night.files("SKYFLAT", filter="gp") == []
    first = night.masters("rp")
    assert night.masters("rp") is first  # built once
    science = tmp_path / "science-e00.fits.fz"
    science.write_bytes(sky.render(spec(14, level=0)))
    (out,) = reduce_raw_frames([science], paths, tmp_path / "out", cosmic_rays="none")
    assert read_frame(out).is_reduced
    gp = tmp_path / "science-gp-e00.fits.fz"
    gp.write_bytes(sky.render(spec(15, level=0, band="gp")))
    with pytest.raises(ReductionError, match="no SKYFLAT in filter 'gp'"):
        reduce_raw_frames([gp], paths, tmp_path / "out")
    with pytest.raises(ReductionError, match="no BIAS"):
        reduce_raw_frames([science], paths[3:], tmp_path / "out")
