"""Helpers of the difference-imaging tests: the scene's sources, crops of frames as references
of other pointings, a transient's side split between two references, a cosmic ray added."""

from __future__ import annotations

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import QTable

from benchmarks.transient_scenes import Scene


def of_kind(scene: Scene, kind: str):
    return [s for s in scene.sources if s.kind == kind]


def near(table: QTable, ra: float, dec: float, radius: float = 1.5) -> QTable:
    if not len(table):
        return table
    sep = SkyCoord(table["ra"], table["dec"]).separation(SkyCoord(ra, dec, unit="deg")).arcsec
    return table[sep <= radius]


def crop(frame, x0: int, x1: int):
    """The part of a frame between columns ``x0`` and ``x1`` (a reference of another pointing)."""
    from dataclasses import replace

    from followup.photometry.frame import prepare_frame

    fr = prepare_frame(frame)
    cat = fr.catalog
    if cat is not None:
        cat = cat[(np.asarray(cat["x"]) > x0 + 1) & (np.asarray(cat["x"]) <= x1)]
        cat["x"] = np.asarray(cat["x"], float) - x0
    return replace(
        fr,
        data=fr.data[:, x0:x1].copy(),
        err=fr.err[:, x0:x1].copy(),
        flags=fr.flags[:, x0:x1].copy(),
        wcs=fr.wcs[:, x0:x1],
        catalog=cat,
    )


def split_at_the_transient(scene: Scene, frames, other_source):
    """The transient, the prepared science frame, the transient's x, and two references.

    The main one (cut from ``frames[1]``) stops 40 pixels short of the transient, on either side
    of it; the other (cut from ``other_source``) covers the transient's side.
    """
    from followup.photometry.frame import prepare_frame

    t = of_kind(scene, "transient")[0]
    sci = prepare_frame(frames[0])
    nx = sci.shape[1]
    tx = float(sci.wcs.all_world2pix([[t.ra, t.dec]], 0)[0][0])
    if tx > nx / 2:
        main, other = crop(frames[1], 0, round(tx) - 40), crop(other_source, nx // 3, nx)
    else:
        main, other = crop(frames[1], round(tx) + 40, nx), crop(other_source, 0, 2 * nx // 3)
    return t, sci, tx, main, other


def on_frame(frame, ra: float, dec: float) -> bool:
    x, y = frame.wcs.all_world2pix([[ra, dec]], 0)[0]
    ny, nx = frame.shape
    return bool(8 <= x < nx - 8 and 8 <= y < ny - 8)


def with_cosmic_ray(frame, x: int, y: int):
    """A copy of a frame with a two-pixel cosmic ray (flagged) at pixel (x, y)."""
    hdul = frame.copy()
    data = hdul["SCI"].data.copy()
    bpm = hdul["BPM"].data.copy()
    data[y, x : x + 2] += 5000.0
    bpm[y, x : x + 2] |= 8
    hdul["SCI"].data = data
    hdul["BPM"].data = bpm
    return hdul


def with_bad_column(frame, column: int):
    """A copy of a frame with a bad column (zeros, flagged ``BPM_BAD``) at ``column``."""
    hdul = frame.copy()
    data, bpm = hdul["SCI"].data.copy(), hdul["BPM"].data.copy()
    data[:, column] = 0.0
    bpm[:, column] |= 1
    hdul["SCI"].data, hdul["BPM"].data = data, bpm
    return hdul
