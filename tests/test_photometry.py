"""Photometry checked against the synthetic sky's truth: magnitudes, errors, zero points, limits, candidates."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.table import Table
from astropy.time import Time

from followup.exceptions import PhotometryError, ReductionError
from followup.models import Measurement
from followup.photometry import (
    PhotometryFlag,
    PhotometryOptions,
    aperture_photometry_at,
    associate_candidates,
    build_light_curve,
    calibrate_zero_point,
    candidate_name,
    describe_flags,
    detect_sources,
    find_candidates,
    fit_zero_point,
    mag_to_ujy,
    measure,
    measure_targets,
    photometry_table,
    plot_light_curve,
)
from followup.photometry.candidates import search_catalog_frame
from followup.reduction import (
    BPM_BAD,
    BPM_COSMIC_RAY,
    calibrate,
    make_master_bias,
    make_master_dark,
    make_master_flat,
    read_frame,
    reduce_raw_frames,
)
from sandbox.sky import SyntheticSky
from sandbox.specs import Transient
from tests.frames_support import DEC, RA, START, isolated_positions, spec

SHAPE = (1024, 1024)
N_FRAMES = 16
BRIGHT = np.linspace(17.0, 20.3, 12)  # injected magnitudes, S/N ~15 to ~300 in 300 s
FAINT = [23.0, 23.0, 23.0]  # non-detections
N_BLANK = 20


@dataclass
class Field:
    sky: SyntheticSky
    transients: list[Transient]
    blank: np.ndarray  # (n, 2) ra, dec
    refcat: Table


def _field(seed: int, *, colour_terms: dict[str, float] | None = None) -> Field:
    rng = np.random.default_rng(seed)
    base = SyntheticSky(seed=seed, shape=SHAPE)
    wcs = base.wcs(spec(0))
    mags = [*BRIGHT, *FAINT]
    positions = isolated_positions(base, wcs, len(mags) + N_BLANK, rng=rng, border_px=80)
    transients = [
        Transient(name=f"T{k:02d}", ra=float(ra), dec=float(dec), peak_mag={"rp": float(m), "gp": float(m) + 0.3, "ip": float(m) - 0.1},
                  peak_time=START - timedelta(days=1))
        for k, ((ra, dec), m) in enumerate(zip(positions[: len(mags)], mags, strict=True))
    ]  # fmt: skip
    sky = SyntheticSky(seed=seed, shape=SHAPE, transients=transients, colour_terms=colour_terms)
    return Field(
        sky=sky,
        transients=transients,
        blank=positions[len(mags) :],
        refcat=sky.reference_catalog(RA, DEC, 0.15),
    )


@pytest.fixture(scope="module")
def field() -> Field:
    return _field(101)


@dataclass
class Run:
    mag: np.ndarray
    mag_err: np.ndarray
    snr: np.ndarray
    true_mag: np.ndarray
    limit: np.ndarray
    true_depth: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    zp: np.ndarray
    zp_true: np.ndarray
    blank_pull: np.ndarray
    psf_depth: np.ndarray
    flags: np.ndarray


def _frames(field: Field) -> list[tuple[Any, np.ndarray, Any]]:
    """The field's N_FRAMES frames (spec, pixels, truth), rendered once for every method."""
    specs = [spec(200 + number) for number in range(N_FRAMES)]
    return [(s, field.sky.render(s), field.sky.frame_truth(s)) for s in specs]


def _run(
    field: Field, method: str, catalog: object, frames: list[tuple[Any, np.ndarray, Any]]
) -> Run:
    rows: dict[str, list[float]] = {k: [] for k in Run.__dataclass_fields__}
    names = [t.name for t in field.transients]
    # The transients and the blank positions in one call per frame: each position is measured
    # on its own (all isolated), and the frame's background and zero point are found once.
    n = len(names)
    ra = np.concatenate([[t.ra for t in field.transients], field.blank[:, 0]])
    dec = np.concatenate([[t.dec for t in field.transients], field.blank[:, 1]])
    for _, data, truth in frames:
        cat = field.refcat if catalog == "refcat" else None
        both = photometry_table(
            data,
            ra,
            dec,
            catalog=cat,
            names=[*names, *(f"blank-{k}" for k in range(len(field.blank)))],
            options=PhotometryOptions(method=method),
        )  # type: ignore[arg-type]
        table, blank = both[:n], both[n:]
        true_mag = {row["name"]: row["mag"] for row in truth.transients}
        cond = truth.conditions
        sigma = cond.fwhm_arcsec / field.sky.pixel_scale_arcsec / 2.3548
        psf_noise = math.sqrt(
            4 * math.pi * sigma**2 * (cond.sky_e_per_s * 300 + field.sky.read_noise_e**2)
        )
        for row in table:
            rows["mag"].append(float(row["mag"].value))
            rows["mag_err"].append(float(row["mag_err"].value))
            rows["snr"].append(float(row["snr"]))
            rows["true_mag"].append(true_mag[row["name"]])
            rows["limit"].append(float(row["limit_mag_5sigma"].value))
            rows["true_depth"].append(truth.depth_5sigma)
            rows["psf_depth"].append(cond.zero_point - 2.5 * math.log10(5 * psf_noise / 300))
            rows["flux"].append(float(row["flux_ujy"].value))
            rows["flux_err"].append(float(row["flux_err_ujy"].value))
            rows["flags"].append(int(row["flags"]))
        rows["zp"].append(table.meta["zero_point"])
        rows["zp_true"].append(cond.zero_point)
        rows["blank_pull"].extend(np.asarray(blank["flux"].value / blank["flux_err"].value))
    return Run(**{k: np.asarray(v, float) for k, v in rows.items()})


@pytest.fixture(scope="module")
def runs(field: Field) -> dict[tuple[str, str], Run]:
    frames = _frames(field)  # the same pixels for each method: rendering is deterministic
    return {
        ("aperture", "refcat"): _run(field, "aperture", "refcat", frames),
        ("psf", "refcat"): _run(field, "psf", "refcat", frames),
        ("aperture", "CAT"): _run(field, "aperture", "CAT", frames),
    }


CASES = [("aperture", "refcat"), ("psf", "refcat"), ("aperture", "CAT")]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_recovered_magnitudes_are_unbiased_with_honest_errors(
    runs: dict[tuple[str, str], Run], case: tuple[str, str]
) -> None:
    run = runs[case]
    good = run.snr >= 10
    assert good.sum() >= N_FRAMES * len(BRIGHT) - 2
    dm = run.mag[good] - run.true_mag[good]
    pull = dm / run.mag_err[good]
    print(
        f"{case}: n={good.sum()} mean dm {dm.mean():+.4f} pull mean {pull.mean():+.2f} std {pull.std():.2f}"
    )
    assert abs(dm.mean()) < 0.02
    assert 0.8 < pull.std() < 1.2
    assert abs(pull.mean()) < 0.3
    # The brightest sources are good to a percent.
    bright = good & (run.true_mag < 18)
    assert np.all(np.abs(run.mag[bright] - run.true_mag[bright]) < 0.05)
    # Flux in microjansky agrees with the magnitude, and S/N < 5 never gets a magnitude.
    np.testing.assert_allclose(run.flux[good], mag_to_ujy(run.mag[good]), rtol=1e-9)
    assert np.all(np.isnan(run.mag[run.snr < 5]))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_zero_point_matches_the_truth(
    runs: dict[tuple[str, str], Run], case: tuple[str, str]
) -> None:
    run = runs[case]
    offset = run.zp - run.zp_true
    print(f"{case}: ZP - truth: mean {offset.mean():+.4f} max |.| {np.abs(offset).max():.4f}")
    assert np.all(np.abs(offset) < 0.02)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES[:2], ids=["-".join(c) for c in CASES[:2]])
def test_blank_sky_fluxes_are_pure_noise(
    runs: dict[tuple[str, str], Run], case: tuple[str, str]
) -> None:
    pull = runs[case].blank_pull
    assert len(pull) == N_FRAMES * N_BLANK
    print(f"{case}: blank pulls mean {pull.mean():+.3f} std {pull.std():.3f}")
    assert abs(pull.mean()) < 0.15
    assert 0.85 < pull.std() < 1.15


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES[:2], ids=["-".join(c) for c in CASES[:2]])
def test_non_detections_give_the_true_depth(
    runs: dict[tuple[str, str], Run], case: tuple[str, str]
) -> None:
    run = runs[case]
    faint = run.true_mag > 22.5
    assert np.all(np.isnan(run.mag[faint]))  # 23 mag is ~1.5 mag below the limit
    # Where a cosmic ray sits in the aperture the limit is honestly shallower: leave those out.
    clean = faint & ((run.flags.astype(int) & PhotometryFlag.MASKED_PIXELS) == 0)
    assert clean.sum() >= 0.6 * faint.sum()  # one position sits next to a dead column
    depth = run.true_depth if case[0] == "aperture" else run.psf_depth
    offset = run.limit[clean] - depth[clean]
    print(
        f"{case}: limit - true depth: mean {offset.mean():+.3f} max |.| {np.abs(offset).max():.3f}"
    )
    assert np.all(np.abs(offset) < 0.2)
    assert np.all(run.flux_err[faint] > 0)


def test_single_measurement_model(field: Field) -> None:
    s = spec(300)
    data = field.sky.render(s)
    bright = field.transients[0]
    m = measure(data, bright.ra, bright.dec, catalog=field.refcat, target_name=bright.name)
    assert isinstance(m, Measurement)
    assert m.is_detection and m.band == "rp" and m.method == "aperture"
    assert m.frame_basename == s.basename  # from ORIGNAME, e00 -> e91
    assert m.date_obs == s.date_obs
    assert m.mjd == pytest.approx(Time(s.date_obs).mjd + 150 / 86400, abs=1e-6)  # mid-exposure
    assert m.telescope == "1m0a" and m.instrument == "fa16" and m.exposure_time_s == 300
    assert m.n_ref_stars >= 5
    faint = field.transients[-1]
    m2 = measure(
        data, faint.ra, faint.dec, catalog=field.refcat, options=PhotometryOptions(method="psf")
    )
    assert m2.mag is None and m2.mag_err is None and not m2.is_detection
    assert m2.snr < 5 and math.isfinite(m2.limit_mag_5sigma)
    # Sexagesimal input gives the same answer.
    from astropy.coordinates import SkyCoord

    c = SkyCoord(bright.ra * u.deg, bright.dec * u.deg)
    m3 = measure(
        data,
        c.ra.to_string(u.hourangle, sep=":", precision=4),
        c.dec.to_string(sep=":", precision=3, alwayssign=True),
        catalog=field.refcat,
    )
    assert m3.mag == pytest.approx(m.mag, abs=0.002)


def test_find_candidates_finds_the_transients_and_no_star(field: Field) -> None:
    s = spec(301)
    data = field.sky.render(s)
    truth = field.sky.frame_truth(s)
    visible = truth.transients[truth.transients["mag"] < truth.depth_5sigma - 0.7]
    for use_cat in (True, False):
        cands = find_candidates(data, field.refcat, use_frame_catalog=use_cat)
        assert cands.meta["origin"] == ("CAT" if use_cat else "detection")
        assert np.all(cands["snr"] >= 5)
        for row in visible:
            sep = (
                np.hypot(
                    (cands["ra"].value - row["ra"]) * math.cos(math.radians(DEC)),
                    cands["dec"].value - row["dec"],
                )
                * 3600
            )
            assert sep.size and sep.min() < 1.0, (
                f"{row['name']} ({row['mag']:.1f}) not found (CAT={use_cat})"
            )
        # Nothing else: every candidate is one of the transients.
        from astropy.coordinates import SkyCoord

        cand = SkyCoord(cands["ra"], cands["dec"])
        real = SkyCoord(
            np.asarray(truth.transients["ra"]) * u.deg, np.asarray(truth.transients["dec"]) * u.deg
        )
        _, sep, _ = cand.match_to_catalog_sky(real)
        assert np.all(sep < 1.5 * u.arcsec), cands[sep >= 1.5 * u.arcsec]
        stars = SkyCoord(field.refcat["RA_ICRS"], field.refcat["DE_ICRS"])
        _, star_sep, _ = cand.match_to_catalog_sky(stars)
        assert np.all(star_sep > 1.5 * u.arcsec)
    # Without a reference catalogue every source is a candidate.
    assert len(find_candidates(data, None)) > len(visible) + 5


class _Planets:
    """A SkyBoT stand-in: one minor planet at a given place, whenever asked."""

    def __init__(self, ra: float, dec: float) -> None:
        self.ra, self.dec, self.asked = ra, dec, []

    def objects(self, ra: float, dec: float, radius_deg: float, when: Any) -> Table:
        self.asked.append(when)
        return Table({"name": ["2010 AB1"], "ra": [self.ra], "dec": [self.dec], "v_mag": [19.5]})


class _Map:
    """A sky map stand-in: one credible level everywhere, no distance."""

    has_distance = False

    def __init__(self, level: float) -> None:
        self.level = level

    def searched_probability(self, ra: Any, dec: Any) -> float:
        return self.level


def test_catalogue_candidates_are_vetted_for_minor_planets_and_the_map(field: Field) -> None:
    """The catalogue path vets as the difference path does; what fails is kept with its reasons."""
    s = spec(301)
    data = field.sky.render(s)
    truth = field.sky.frame_truth(s)
    bright = truth.transients[np.argmin(truth.transients["mag"])]
    found = find_candidates(data, field.refcat)

    inside = search_catalog_frame(data, field.refcat, skymap=_Map(0.5))
    assert len(inside) == len(found) and not inside.meta["rejected"]
    reasons = str(inside["reasons"][0])
    assert "no real-bogus score" in reasons and "minor planets not checked" in reasons
    assert "inside the 50.0% credible region" in reasons

    outside = search_catalog_frame(data, field.refcat, skymap=_Map(0.999))
    assert len(outside) == 0 and len(outside.meta["rejected"]) == len(found)
    assert all(any("outside" in r for r in why) for _, _, why in outside.meta["rejected"])

    # No time in the header: still searched and vetted, only not for minor planets.
    with fits.open(io.BytesIO(data)) as hdul:
        del hdul["SCI"].header["DATE-OBS"], hdul["SCI"].header["MJD-OBS"]
        buffer = io.BytesIO()
        hdul.writeto(buffer)
    undated = search_catalog_frame(buffer.getvalue(), field.refcat, skymap=_Map(0.5))
    assert len(undated) == len(found)
    with pytest.raises(PhotometryError):
        search_catalog_frame(buffer.getvalue(), field.refcat, minor_planets=_Planets(0.0, 0.0))

    planets = _Planets(float(bright["ra"]), float(bright["dec"]))
    vetted = search_catalog_frame(data, field.refcat, minor_planets=planets)
    assert len(vetted) == len(found) - 1 and planets.asked  # asked at mid-exposure
    ((ra, dec, why),) = vetted.meta["rejected"]
    assert abs(dec - bright["dec"]) * 3600 < 1.5
    assert abs(ra - bright["ra"]) * 3600 < 1.5 and any("2010 AB1" in r for r in why)


@pytest.mark.parametrize(("cat_bit", "pixel_flag"), [(1, BPM_BAD), (16, BPM_COSMIC_RAY)])
def test_a_candidate_beside_a_bad_pixel_is_kept_and_one_on_it_is_not(
    field: Field, cat_bit: int, pixel_flag: int
) -> None:
    """CAT bits 1 and 16 (a bad pixel or cosmic ray in the Kron aperture) alone drop nothing."""
    s = spec(301)
    data = field.sky.render(s)
    truth = field.sky.frame_truth(s)
    row = truth.transients[np.argmin(truth.transients["mag"])]

    def found(offset: tuple[int, int], column: bool = False) -> bool:
        frame = read_frame(data)
        cat = frame.catalog
        (i,) = np.nonzero(
            np.hypot(np.asarray(cat["x"]) - 1 - row["x"], np.asarray(cat["y"]) - 1 - row["y"]) < 2
        )[0][:1]
        cat["flag"][i] |= cat_bit  # as the CAT marks one inside the aperture
        x, y = round(float(cat["x"][i])) - 1 + offset[0], round(float(cat["y"][i])) - 1 + offset[1]
        if column:  # a dead column, as the sandbox's detectors have
            frame.ccd.flags[:, x] |= pixel_flag
        else:
            frame.ccd.flags[y, x] |= pixel_flag
        cands = find_candidates(frame, field.refcat)
        sep = np.hypot(
            (cands["ra"].value - row["ra"]) * math.cos(math.radians(DEC)),
            cands["dec"].value - row["dec"],
        )
        return bool(sep.size and sep.min() * 3600 < 1.0)

    assert found((5, 0)), "a flagged pixel 5 px away lost the transient"
    # Half a FWHM (2"-2.5" seeing) from a bad column: the column cannot have made the source.
    assert found((2, 0), column=True), "a flagged column 2 px away lost the transient"
    assert found((-2, 0), column=True), "a flagged column 2 px away lost the transient"
    assert not found((0, 0)), "a source on a flagged pixel was kept"


def test_detect_sources_rejects_cosmic_rays(field: Field) -> None:
    frame = read_frame(field.sky.render(spec(302)))
    detections = detect_sources(frame)
    assert len(detections) > 10
    sharp = detections["sharpness"]
    stars = detections[(sharp < 2) & (detections["snr"] > 20)]
    assert len(stars) > 5
    # Cosmic-ray pixels are flagged in the BPM and filled before filtering: no detection sits on one.
    cr = (frame.ccd.flags & BPM_COSMIC_RAY) > 0
    xs = np.rint(detections["x"].value).astype(int)
    ys = np.rint(detections["y"].value).astype(int)
    assert not np.any(cr[ys, xs] & (detections["flags"] == 0))


def test_masked_target_is_corrected_and_flagged(field: Field) -> None:
    s = spec(303)
    frame = read_frame(field.sky.render(s))
    target = field.transients[2]
    clean = measure(frame, target.ra, target.dec, catalog=field.refcat)
    x, y = frame.ccd.wcs.all_world2pix(target.ra, target.dec, 0)
    flags = frame.ccd.flags.copy()
    row, col = round(float(y)), round(float(x))
    flags[row - 1 : row + 2, col] |= BPM_COSMIC_RAY
    frame.ccd.flags = flags
    frame.ccd.mask = flags != 0
    hit = measure(frame, target.ra, target.dec, catalog=field.refcat)
    assert hit.flags & PhotometryFlag.MASKED_PIXELS
    assert "MASKED_PIXELS" in describe_flags(hit.flags)
    assert abs(hit.mag - clean.mag) < 3 * hit.mag_err  # type: ignore[operator]
    assert hit.mag_err > clean.mag_err  # type: ignore[operator]


def test_header_zero_point_when_there_is_no_catalogue(field: Field) -> None:
    data = field.sky.render(spec(304))
    hdul = fits.open(io.BytesIO(data))
    del hdul["CAT"]
    target = field.transients[1]
    m = measure(hdul, target.ra, target.dec)
    assert m.flags & PhotometryFlag.ZERO_POINT_FROM_HEADER
    assert m.n_ref_stars == 0
    assert m.zero_point == hdul["SCI"].header["L1ZP"]
    assert abs(m.mag - field.sky.frame_truth(spec(304)).transients["mag"][1]) < 0.1  # type: ignore[operator]


def test_photometry_errors(field: Field) -> None:
    data = field.sky.render(spec(305))
    target = field.transients[0]
    with pytest.raises(PhotometryError, match="off the frame"):
        measure(data, RA + 1.0, DEC, catalog=field.refcat)
    empty = field.refcat[:0]
    with pytest.raises(PhotometryError, match="no reference stars"):
        measure(data, target.ra, target.dec, catalog=empty)
    hdul = fits.open(io.BytesIO(data))
    for key in ("CTYPE1", "CTYPE2"):
        del hdul["SCI"].header[key]
    with pytest.raises(PhotometryError, match="WCS"):
        measure(hdul, target.ra, target.dec, catalog=field.refcat)
    raw = field.sky.render(spec(306, level=0))
    with pytest.raises(PhotometryError, match="calibrate"):
        measure(raw, target.ra, target.dec, catalog=field.refcat)
    with pytest.raises(PhotometryError, match=r"truncated|cannot"):
        measure(data[: len(data) // 3], target.ra, target.dec)
    with pytest.raises(PhotometryError, match="no reference stars"):
        fit_zero_point(np.array([1.0]), np.array([0.1]), np.array([2.0]), np.array([0.1]))


def test_colour_term_is_recovered() -> None:
    field = _field(202, colour_terms={"rp": 0.12})
    s = spec(400)
    data = field.sky.render(s)
    truth = field.sky.frame_truth(s)
    zp, stars = calibrate_zero_point(
        data, field.refcat, options=PhotometryOptions(colour_term=True)
    )
    assert zp.colour == "r-i"
    assert zp.colour_coefficient == pytest.approx(0.12, abs=0.04)
    assert zp.zero_point == pytest.approx(truth.conditions.zero_point, abs=0.02)
    assert stars["used"].sum() == zp.n_stars
    target = field.transients[0]
    colour = target.peak_mag["rp"] - target.peak_mag["ip"]
    m = measure(
        data,
        target.ra,
        target.dec,
        catalog=field.refcat,
        colour=colour,
        options=PhotometryOptions(colour_term=True),
    )
    assert m.mag == pytest.approx(truth.transients["mag"][0], abs=0.03)


@pytest.mark.slow
def test_raw_frames_reduced_here_recover_the_truth(field: Field) -> None:
    sky = field.sky
    bias = make_master_bias([sky.render(spec(500 + k, kind="BIAS", level=0)) for k in range(5)])
    dark = make_master_dark(
        [sky.render(spec(510 + k, kind="DARK", level=0, exptime=300)) for k in range(3)], bias=bias
    )
    flat = make_master_flat(
        [sky.render(spec(520 + k, kind="SKYFLAT", level=0, exptime=4)) for k in range(5)],
        bias=bias,
        dark=dark,
    )
    dm, pulls, zp_offsets = [], [], []
    names = [t.name for t in field.transients]
    for number in range(4):
        s = spec(530 + number, level=0)
        reduced = calibrate(sky.render(s), bias=bias, dark=dark, flat=flat)  # LACosmic included
        assert isinstance(reduced, CCDData) and reduced.meta["CRMETHOD"] == "lacosmic"
        truth = sky.frame_truth(s)
        table = photometry_table(
            reduced,
            [t.ra for t in field.transients],
            [t.dec for t in field.transients],
            catalog=field.refcat,
            names=names,
        )
        true_mag = {row["name"]: row["mag"] for row in truth.transients}
        ok = table["snr"] >= 10
        for row in table[ok]:
            dm.append(float(row["mag"].value) - true_mag[row["name"]])
            pulls.append(dm[-1] / float(row["mag_err"].value))
        zp_offsets.append(table.meta["zero_point"] - truth.conditions.zero_point)
    dm_arr, pull_arr = np.array(dm), np.array(pulls)
    print(
        f"raw: n={len(dm)} mean dm {dm_arr.mean():+.4f} pull std {pull_arr.std():.2f} ZP offsets {np.round(zp_offsets, 4)}"
    )
    assert len(dm) >= 4 * len(BRIGHT) - 2
    assert abs(dm_arr.mean()) < 0.02
    assert 0.75 < pull_arr.std() < 1.25
    assert np.all(np.abs(zp_offsets) < 0.02)


def test_light_curve_table_and_plot(field: Field) -> None:
    measurements = []
    for number, band in [(600, "rp"), (601, "gp"), (602, "rp")]:
        s = spec(600 + number, band=band, when=START + timedelta(days=number - 600))
        data = field.sky.render(s)
        for target in (field.transients[3], field.transients[-1]):
            measurements.append(
                measure(data, target.ra, target.dec, catalog=field.refcat, target_name=target.name)
            )
    df = build_light_curve(measurements)
    assert list(df["target_name"].unique()) == sorted(
        {field.transients[3].name, field.transients[-1].name}
    )
    assert {
        "flux_ujy",
        "flux_err_ujy",
        "mag",
        "limit_mag_5sigma",
        "is_detection",
        "band",
        "mjd",
    } <= set(df.columns)
    first = df[df["target_name"] == field.transients[3].name]
    assert list(first["band"]) == ["gp", "rp", "rp"]  # sorted by band, then time
    assert first[first["band"] == "rp"]["mjd"].is_monotonic_increasing
    assert first["is_detection"].all()
    assert not df[df["target_name"] == field.transients[-1].name]["is_detection"].any()
    png = plot_light_curve(df)
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert plot_light_curve(build_light_curve([])).startswith(b"\x89PNG")


def test_unit_conversions() -> None:
    assert mag_to_ujy(23.9) == pytest.approx(1.0)
    assert mag_to_ujy(16.4) == pytest.approx(1000.0)


def test_sky_catalogue_provider_plugs_into_photometry(field: Field) -> None:
    from sandbox.sky import SkyReferenceCatalog

    data = field.sky.render(spec(700))
    target = field.transients[4]
    via_provider = measure(data, target.ra, target.dec, catalog=SkyReferenceCatalog(field.sky))
    via_table = measure(data, target.ra, target.dec, catalog=field.refcat)
    assert via_provider.mag == pytest.approx(via_table.mag, abs=0.005)
    assert via_provider.n_ref_stars == pytest.approx(via_table.n_ref_stars, abs=3)


def test_measure_targets_measures_what_is_on_the_frame(field: Field) -> None:
    data = field.sky.render(spec(300))
    truth = {row["name"]: row["mag"] for row in field.sky.frame_truth(spec(300)).transients}
    bright = field.transients[0]
    targets = [(bright.name, bright.ra, bright.dec), ("far-away", (RA + 5.0) % 360, DEC)]
    measured = measure_targets(data, targets, catalog=field.refcat, frame_name="f300")
    assert [m.target_name for m in measured] == [bright.name]
    m = measured[0]
    assert m.frame_basename == "f300" and m.is_detection
    assert abs(m.mag - truth[bright.name]) < 3 * m.mag_err
    # One zero point for the frame, shared by every target measured on it.
    both = measure_targets(
        data, [(t.name, t.ra, t.dec) for t in field.transients[:3]], catalog=field.refcat
    )
    assert len({m.zero_point for m in both}) == 1 and len(both) == 3
    assert measure_targets(data, [("far-away", (RA + 5.0) % 360, DEC)]) == []


def test_reduce_raw_frames_writes_frames_that_measure_true(field: Field, tmp_path) -> None:
    sky = field.sky
    specs = [spec(600 + k, kind="BIAS", level=0) for k in range(3)]
    specs += [spec(610 + k, kind="DARK", level=0, exptime=300) for k in range(3)]
    specs += [spec(620 + k, kind="SKYFLAT", level=0, exptime=4) for k in range(3)]
    calibrations = []
    for s in specs:
        calibrations.append(tmp_path / f"{s.basename}.fits.fz")
        calibrations[-1].write_bytes(sky.render(s))
    science = spec(630, level=0)
    raw_path = tmp_path / f"{science.basename}.fits.fz"
    raw_path.write_bytes(sky.render(science))
    (path,) = reduce_raw_frames([raw_path], calibrations, tmp_path / "reduced")
    assert path.name == f"{science.basename}-calibrated.fits"
    bright = field.transients[2]
    truth = {row["name"]: row["mag"] for row in sky.frame_truth(science).transients}
    (m,) = measure_targets(path, [(bright.name, bright.ra, bright.dec)], catalog=field.refcat)
    assert abs(m.mag - truth[bright.name]) < 3 * m.mag_err
    with pytest.raises(ReductionError, match="no BIAS"):
        reduce_raw_frames([raw_path], calibrations[3:], tmp_path / "none")


def test_associate_candidates_merges_positions_across_frames() -> None:
    from astropy.table import QTable

    def table(*rows):
        return QTable(rows=list(rows), names=("ra", "dec", "snr", "mag"))

    first = table((150.0, 2.2, 20.0, 19.0), (150.1, 2.3, 8.0, 20.5))
    second = table((150.0 + 0.5 / 3600, 2.2, 30.0, 18.9))  # same source, 0.5" away
    merged = associate_candidates([first, second])
    assert [(c["n_frames"], round(c["best_snr"])) for c in merged] == [(2, 30), (1, 8)]
    assert merged[0]["name"] == candidate_name(merged[0]["ra"], merged[0]["dec"])
    assert abs(merged[0]["ra"] - 150.0) * 3600 < 0.5 and len(merged[0]["name"]) <= 30
    assert [c["n_frames"] for c in associate_candidates([first, second], min_frames=2)] == [2]
    # Positions across RA = 0 are still one source.
    wrap = associate_candidates(
        [table((359.99999, 0.0, 10.0, 20.0)), table((0.00001, 0.0, 10.0, 20.0))]
    )
    assert len(wrap) == 1


@pytest.mark.slow
@pytest.mark.parametrize(("separation_fwhm", "star_mag"), [(2.0, 15.5), (4.0, 14.0)])
def test_a_bright_neighbour_is_subtracted(separation_fwhm: float, star_mag: float) -> None:
    """A bright star beside a 19 mag transient: its wing in the aperture, or in the annulus.

    The clipped annulus median shrugs off a star in the annulus; the aperture does not.
    """
    base = SyntheticSky(seed=31, shape=SHAPE)
    wcs = base.wcs(spec(0))
    ((ra, dec),) = isolated_positions(
        base, wcs, 1, rng=np.random.default_rng(4), min_separation_px=60, border_px=150
    )
    offset = separation_fwhm * base.fwhm_arcsec / 3600 / math.cos(math.radians(dec))
    transients = [
        Transient(name="target", ra=ra, dec=dec, peak_mag={"rp": 19.0}, peak_time=START),
        Transient(name="star", ra=ra + offset, dec=dec, peak_mag={"rp": star_mag}, peak_time=START),
    ]
    sky = SyntheticSky(seed=31, shape=SHAPE, transients=transients)
    refcat = sky.reference_catalog(RA, DEC, 0.15)
    pulls, naive_pulls = [], []
    for number in range(8):
        s = spec(800 + number, seed=number)
        data = sky.render(s)
        true = {row["name"]: row["mag"] for row in sky.frame_truth(s).transients}["target"]
        table = photometry_table(data, ra, dec, catalog=refcat)
        row = table[0]
        assert row["flags"] & PhotometryFlag.NEIGHBOURS_SUBTRACTED
        pulls.append((row["mag"].value - true) / row["mag_err"].value)
        # The same aperture on the frame as it is, the neighbour's light left in.
        plain = aperture_photometry_at(data, np.array([[row["x"].value, row["y"].value]]))
        flux = plain["aperture_flux"][0].value * table.meta["aperture_correction"]
        naive = table.meta["zero_point"] - 2.5 * math.log10(flux / table.meta["exptime"])
        naive_pulls.append((naive - true) / row["mag_err"].value)
    print(
        f"{separation_fwhm} FWHM: pulls {np.round(pulls, 2)}, without: {np.round(naive_pulls, 1)}"
    )
    assert np.all(np.abs(pulls) < 3)
    assert abs(np.mean(pulls)) < 1.0
    if separation_fwhm < 3:
        assert np.mean(naive_pulls) < -3  # what the subtraction is for


def test_options_are_checked_on_entry() -> None:
    with pytest.raises(ValueError, match="method"):
        PhotometryOptions(method="kron")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="aperture_radius"):
        PhotometryOptions(aperture_radius=0.0)
    assert PhotometryOptions().method == "aperture"


@pytest.mark.parametrize("trail", [False, True])
def test_a_satellite_trail_does_not_set_the_frame_fwhm(trail: bool) -> None:
    """BANZAI's L1FWHM, taken over by a trail's segments, is overruled by the round stars."""
    from astropy.table import Table
    from astropy.wcs import WCS

    from followup.photometry.frame import _header_fwhm

    rng = np.random.default_rng(3)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cdelt = [-0.389 / 3600, 0.389 / 3600]
    n_stars, n_trail = 200, 260 if trail else 0
    fwhm = np.concatenate([rng.normal(6.7, 0.3, n_stars), rng.normal(13.8, 0.4, n_trail)])
    b = np.concatenate([np.full(n_stars, 2.0), np.full(n_trail, 2.0)])
    a = np.concatenate([rng.uniform(2.0, 2.3, n_stars), np.full(n_trail, 4.2)])
    flux = rng.uniform(3e3, 1e5, n_stars + n_trail)
    cat = Table(
        {"fwhm": fwhm, "flag": np.zeros(len(fwhm), int), "a": a, "b": b,
         "flux": flux, "fluxerr": np.sqrt(flux + 2e4)}
    )  # fmt: skip
    # The sandbox's L1FWHM, a median over the bright unflagged rows: the trail's, 13 px.
    bright = flux / np.sqrt(flux + 2e4) >= 20
    header = fits.Header({"L1FWHM": float(np.median(fwhm[bright])) * 0.389})
    got = _header_fwhm(header, cat, wcs)
    assert got is not None
    assert abs(got - 6.7) < 0.2
    if not trail:
        assert got == pytest.approx(header["L1FWHM"] / 0.389, rel=1e-6)  # agreeing: L1FWHM
