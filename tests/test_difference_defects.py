"""Defects of the frames differenced: cosmic rays, bad pixels, columns and rows, and what they spoil.

A flagged pixel that is resampled or convolved spreads over the reach; small clusters and thin
lines are filled with errors that say so, so that a transient beside one is not lost. The scene
is that of ``tests/test_transients.py`` (benchmarks/transient_scenes.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.transient_scenes import Scene, pair
from followup.photometry.difference import subtract
from followup.photometry.transients import measure_difference
from tests.transient_support import crop, of_kind, with_bad_column, with_cosmic_ray


def test_bad_columns_and_rows_are_filled_across_with_errors_that_say_so() -> None:
    from followup.photometry.holes import fill_small_holes, fill_thin_lines
    from followup.reduction import BPM_BAD, BPM_SATURATED

    rng = np.random.default_rng(9)
    yy, xx = np.mgrid[0:96, 0:96]
    model = 400.0 + 3e4 * np.exp(-((xx - 30.0) ** 2 + (yy - 60.0) ** 2) / (2 * 2.5**2))
    model += 2e3 * np.exp(-np.hypot(xx - 70.0, yy - 30.0) / 6.0)  # a galaxy's nucleus
    data = (model + rng.normal(0, 1, model.shape) * np.sqrt(model)).astype(np.float32)
    err = np.sqrt(model).astype(np.float32)
    flags = np.zeros(model.shape, np.uint8)
    flags[:, 30] = BPM_BAD  # a bad column through the star's peak
    flags[:, 70:72] = BPM_BAD  # two through the nucleus
    flags[10, :] = BPM_BAD  # a bad row
    flags[:, 50:53] = BPM_BAD  # three: too wide
    flags[40:60, 85] = BPM_SATURATED  # never filled
    data[flags > 0] = 0.0
    filled_small = fill_small_holes(data, err, flags)[2]
    assert not filled_small.any()  # all too big for the small-hole fill
    out, out_err, lines = fill_thin_lines(data, err, flags, filled_small)
    assert lines[:, 30][12:].all() and lines[:, 70:72][12:].all()
    from followup.photometry.holes import _LINE_NODES, LINE_MAX_WIDTH

    assert max(length for length, _ in _LINE_NODES) == LINE_MAX_WIDTH
    crossings = [30, 50, 51, 52, 70, 71]
    assert np.delete(lines[10], crossings).all()  # across the row
    assert not lines[10, crossings].any()  # where a row meets a column: no good nodes
    assert not lines[:, 50:53].any() and not lines[40:60, 85].any()
    pulls = (out[lines] - model[lines]) / out_err[lines]
    assert np.all(np.abs(pulls) < 4) and abs(float(np.median(pulls))) < 0.5
    # On the peak the cubic is rougher than on blank sky, and its error says so.
    assert out_err[60, 30] > 3 * err[60, 30]
    assert out_err[80, 30] < 2 * err[80, 30]
    assert (out[~lines] == data[~lines]).all() and (out_err[~lines] == err[~lines]).all()


@pytest.mark.parametrize("convolved", ["reference", "science"])
def test_a_cosmic_ray_beside_the_transient_does_not_blank_it(scene: Scene, convolved: str) -> None:
    """A flagged pixel of the image that is convolved is filled in, not grown by the kernel.

    Flagging every pixel within the kernel's reach of it blanked squares of 11-25 pixels on the
    difference (2-4 % of a 4k frame): a kilonova 5 pixels from a cosmic ray was lost.
    """
    from astropy.wcs import WCS

    science, reference = (
        pair(scene, 3) if convolved == "reference"
        else pair(scene, 3, science_fwhm=1.6, reference_fwhm=2.4)
    )  # fmt: skip
    t = of_kind(scene, "transient")[0]
    image = reference if convolved == "reference" else science
    x, y = WCS(image["SCI"].header).all_world2pix([[t.ra, t.dec]], 0)[0]
    # Beside it, outside the aperture (1 FWHM) on the science frame, within the kernel's reach.
    hit = with_cosmic_ray(image, round(x) + 7, round(y))
    if convolved == "reference":
        d = subtract(science, hit)
    else:
        d = subtract(hit, reference)
        science = hit
    assert d.convolved == convolved
    fr = d.frame
    tx, ty = fr.wcs.all_world2pix([[t.ra, t.dec]], 0)[0]
    yy, xx = np.mgrid[0 : fr.shape[0], 0 : fr.shape[1]]
    near = np.hypot(xx - tx, yy - ty) <= fr.fwhm
    assert not fr.mask[near].any()
    [m] = measure_difference(science, d, [("T", t.ra, t.dec)], catalog=scene.catalog())
    assert m.mag is not None and abs(m.mag - t.mag) < 3 * m.mag_err


@pytest.mark.parametrize("convolved", ["reference", "science"])
def test_a_bad_column_of_the_reference_beside_the_transient_is_flagged_alone(
    scene: Scene, convolved: str
) -> None:
    """A reference's bad column is filled across and flagged itself, not the kernel's reach.

    Sharper, the reference is convolved: a line of zeros took its light from every pixel within
    the kernel's reach, so the whole reach was flagged (2 half + 1 columns) and a transient 5
    pixels away was lost. Blurrier, it is only resampled: grown by the kernel's reach all the
    same, a bad column blanked the band where seed 22 of the recovery benchmark has its kilonova,
    6 px from one.
    """
    from astropy.wcs import WCS

    science, reference = (
        pair(scene, 3) if convolved == "reference"
        else pair(scene, 3, science_fwhm=1.6, reference_fwhm=2.4)
    )  # fmt: skip
    t = of_kind(scene, "transient")[0]
    x, _ = WCS(reference["SCI"].header).all_world2pix([[t.ra, t.dec]], 0)[0]
    d = subtract(science, with_bad_column(reference, round(x) + 5))
    assert d.convolved == convolved
    fr = d.frame
    tx, ty = fr.wcs.all_world2pix([[t.ra, t.dec]], 0)[0]
    # Flagged: the column and the resampling's pixel either side.
    row = fr.mask[round(ty) + 30, round(tx) - 10 : round(tx) + 20]
    assert 1 <= row.sum() <= 4
    assert not fr.mask[round(ty), round(tx)]
    [m] = measure_difference(science, d, [("T", t.ra, t.dec)], catalog=scene.catalog())
    assert m.mag is not None and abs(m.mag - t.mag) < 3 * m.mag_err


def test_small_holes_are_filled_with_errors_that_say_so() -> None:
    from followup.photometry.holes import fill_small_holes
    from followup.reduction import BPM_COSMIC_RAY, BPM_SATURATED

    rng = np.random.default_rng(8)
    yy, xx = np.mgrid[0:64, 0:64]
    model = 500.0 + 2e4 * np.exp(-((xx - 40.0) ** 2 + (yy - 40.0) ** 2) / (2 * 2.0**2))
    data = (model + rng.normal(0, 1, model.shape) * np.sqrt(model)).astype(np.float32)
    err = np.sqrt(model).astype(np.float32)
    flags = np.zeros(model.shape, np.uint8)
    flags[10, 10:12] = BPM_COSMIC_RAY  # on blank sky
    flags[41, 41] = BPM_COSMIC_RAY  # on a star's slope
    flags[50:60, 5:10] = BPM_COSMIC_RAY  # too big to fill
    flags[20, 50] = BPM_SATURATED  # never filled
    data[flags > 0] = 9e4
    out, out_err, filled = fill_small_holes(data, err, flags)
    assert filled[10, 10:12].all() and filled[41, 41]
    assert not filled[50:60, 5:10].any() and not filled[20, 50]
    assert np.all(np.abs(out[10, 10:12] - 500.0) < 3 * out_err[10, 10:12])
    assert out_err[10, 10] < 3 * err[10, 10]
    # On the slope the fill is rougher, and its error says so.
    assert abs(out[41, 41] - model[41, 41]) < 2 * out_err[41, 41]
    assert out_err[41, 41] > 3 * err[41, 41]
    assert (out[~filled] == data[~filled]).all()


@pytest.mark.parametrize("box", [None, (20, 300, 5, 251)])
def test_resampling_reads_only_what_it_reaches_and_gives_the_same_pixels(
    frames, box, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half a science frame (an odd shift from the reference) takes the same pixels from the
    part of the reference its grid reaches as from the whole of it, holes filled alike."""
    from dataclasses import replace

    from followup.photometry import registration
    from followup.photometry.frame import prepare_frame

    reference = prepare_frame(frames[1])
    ny, nx = reference.shape
    flags = reference.flags.copy()  # holes to fill (hot pixels, small cosmic rays), a bad column
    rng = np.random.default_rng(5)
    flags[rng.integers(0, ny, 400), rng.integers(0, nx, 400)] |= registration.BPM_BAD
    flags[100:103, 160:162] |= registration.BPM_BAD
    flags[:, 351] |= registration.BPM_BAD
    reference = replace(reference, flags=flags)
    science = crop(frames[0], nx // 2 - 1, nx)
    margin = registration.REACH_MARGIN
    start, stop = registration._reach(np.array([301.3, 400.5], np.float32), 1000)
    assert (start, stop) == (300 - margin, 402 + margin)  # an even start, below 301 - margin
    assert registration._reach(np.array([np.nan], np.float32), 1000) == (0, 1000)
    part = registration.resample_reference(reference, science, box=box)
    monkeypatch.setattr(registration, "REACH_MARGIN", 10 * nx)  # the whole reference
    whole = registration.resample_reference(reference, science, box=box)
    for a, b in zip(part, whole, strict=True):
        np.testing.assert_array_equal(a, b)
