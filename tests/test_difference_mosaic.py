"""Mosaics of references: each part matched on its own, seams without steps, holes that spoil.

A science frame whose field one reference covers only in part is completed by others (another
pointing, another night); each part is PSF-matched and scaled with its own kernel. The scene is
that of ``tests/test_transients.py`` (benchmarks/transient_scenes.py).
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks.transient_scenes import Scene, render
from followup.photometry.difference import subtract
from followup.photometry.transients import measure_difference
from tests.transient_support import (
    near,
    of_kind,
    on_frame,
    split_at_the_transient,
)


def test_a_reference_covering_part_of_the_frame_is_completed_by_another(
    scene: Scene, frames
) -> None:
    """The centre's reference misses the transient's side; one asked for there covers it."""
    from followup.photometry.transients import covering_references, search_frame

    t, sci, _, main, other = split_at_the_transient(scene, frames, frames[1])
    asked = []

    def reference_for(ra: float, dec: float, band: str):
        asked.append((ra, dec))
        return main if on_frame(main, ra, dec) else other

    def only_the_centre(ra: float, dec: float, band: str):
        return main

    before = search_frame(frames[0], only_the_centre, catalog=scene.catalog())
    assert len(near(before, t.ra, t.dec)) == 0  # masked: off the reference
    _, refs = covering_references(sci, reference_for)
    assert len(refs) == 2 and refs[0] is main and len(asked) >= 2
    kept = search_frame(frames[0], reference_for, catalog=scene.catalog())
    assert len(near(kept, t.ra, t.dec)) == 1
    assert len(kept.meta["references"]) == 2
    # Nothing else but the minor planet (not vetted here): no seam between the two parts.
    planet = of_kind(scene, "asteroid")[0]
    assert len(kept) == 1 + len(near(kept, planet.ra, planet.dec))


def test_a_reference_of_another_night_fills_the_transient_side_at_its_scale(
    scene: Scene, frames
) -> None:
    """Two references of two nights: each part is matched with its own kernel and scale."""
    # Another night: 0.25 mag more transparent than the first reference, other seeing.
    night2 = render(
        scene, seed=77, fwhm_arcsec=1.6, sky_e=450.0, shift_px=(-3.4, 5.2),
        kinds=("star", "galaxy"), zp=23.70, date_obs="2025-12-02T04:00:00",
    )  # fmt: skip
    t, sci, tx, main, other = split_at_the_transient(scene, frames, night2)
    nx = sci.shape[1]
    d = subtract(frames[0], [main, other])
    [m] = measure_difference(frames[0], d, [("T", t.ra, t.dec)], catalog=scene.catalog())
    assert m.mag is not None and abs(m.mag - t.mag) < 3 * m.mag_err
    # The second night's part has honest errors too: blank sky scatters as they say.
    from photutils.aperture import CircularAperture, aperture_photometry

    fr = d.frame
    side = slice(round(tx) - 40, nx) if tx > nx / 2 else slice(0, round(tx) + 40)
    rng = np.random.default_rng(4)
    xs = rng.uniform(side.start + 30, side.stop - 30, 400)
    ys = rng.uniform(30, fr.shape[0] - 30, 400)
    phot = aperture_photometry(
        fr.data, CircularAperture(np.column_stack([xs, ys]), r=fr.fwhm), error=fr.err, mask=fr.mask
    )
    pulls = np.asarray(phot["aperture_sum"]) / np.asarray(phot["aperture_sum_err"])
    pulls = pulls[np.isfinite(pulls)]
    assert 0.8 < 1.4826 * np.median(np.abs(pulls - np.median(pulls))) < 1.25


def test_each_part_of_a_mosaic_keeps_its_own_background_at_the_seam(scene: Scene, frames) -> None:
    """Another night's sky, brighter at the top: no step is smoothed across the seam.

    One background mesh over the whole difference bent the main part's level towards the other
    part's beside the seam (and the other's towards the main part's): seed 20 of the recovery
    benchmark had a row of S/N 6-9 sources along the join of two references.
    """
    night2 = render(
        scene, seed=77, fwhm_arcsec=1.6, sky_e=450.0, shift_px=(-3.4, 5.2), gradient=0.3,
        kinds=("star", "galaxy"), zp=23.70, date_obs="2025-12-02T04:00:00",
    )  # fmt: skip
    _, sci, tx, main, other = split_at_the_transient(scene, frames, night2)
    fr = subtract(frames[0], [main, other]).frame
    seam = round(tx) - 40 if tx > sci.shape[1] / 2 else round(tx) + 40

    def level(rows: slice, c0: int, c1: int) -> float:
        ok = ~fr.mask[rows, c0:c1]
        return float(np.median(fr.data[rows, c0:c1][ok]) / np.median(fr.err[rows, c0:c1][ok]))

    for y0 in range(20, 500, 120):
        rows = slice(y0, y0 + 120)
        # Both sides of the seam at zero, to a few hundredths of a pixel's error (0.21 and
        # 0.16 before: a step the detection's filter sums over a PSF into S/N 6-9 sources).
        assert abs(level(rows, seam + 3, seam + 30)) < 0.08
        assert abs(level(rows, seam - 30, seam - 3)) < 0.08


def test_a_part_of_a_mosaic_spoils_what_its_own_holes_reach(scene: Scene, frames) -> None:
    """A hole of the second reference, filled by the first, still spoils the second's part.

    Each part's reference is convolved on its own with its holes as zeros: the kernel spreads
    them into the pixels the part fills, and they were left unflagged when another reference
    filled the hole itself (seed 31 of the recovery benchmark: a host under-subtracted by 16 %
    of its light beside a reference's bad column that another reference covered).
    """
    from dataclasses import replace

    from followup.reduction import BPM_BAD

    night2 = render(
        scene, seed=77, fwhm_arcsec=1.6, sky_e=450.0, shift_px=(-3.4, 5.2),
        kinds=("star", "galaxy"), zp=23.70, date_obs="2025-12-02T04:00:00",
    )  # fmt: skip
    _, sci, tx, main, other = split_at_the_transient(scene, frames, night2)
    right = tx > sci.shape[1] / 2

    def science_x(frame, x: float) -> float:
        world = frame.wcs.all_pix2world([[x, 300]], 0)[0]
        return float(sci.wcs.all_world2pix([world], 0)[0][0])

    # Five columns too wide to fill in the second reference, just inside the first one's edge:
    # the first reference fills them, the second's part lies within the kernel's reach.
    edge = science_x(main, main.shape[1] - 1 if right else 0)
    hole = math.floor(edge) - 5 if right else math.ceil(edge) + 1
    start = round(
        float(other.wcs.all_world2pix([sci.wcs.all_pix2world([[hole, 300]], 0)[0]], 0)[0][0])
    )
    data, flags = other.data.copy(), other.flags.copy()
    data[:, start : start + 5] = 0.0
    flags[:, start : start + 5] |= BPM_BAD
    d = subtract(frames[0], [main, replace(other, data=data, flags=flags)])
    assert d.convolved == "reference"
    fr = d.frame
    band = (
        range(math.ceil(edge), math.ceil(edge) + 7)
        if right
        else range(math.floor(edge) - 6, math.floor(edge) + 1)
    )
    rows = slice(40, sci.shape[0] - 40)
    for column in band:
        seen = ~fr.mask[rows, column]
        # What is left unflagged beside the hole is noise, not the hole spread by the kernel
        # (median pulls of 0.6, 1.5 and 3.6 on the three columns nearest it, unflagged, before).
        if seen.sum() > 50:
            pulls = fr.data[rows, column][seen] / fr.err[rows, column][seen]
            assert abs(float(np.median(pulls))) < 0.3
