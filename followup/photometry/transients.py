"""Transients found and measured on the difference of a frame and its reference.

:func:`find_transients` subtracts the reference (:mod:`~followup.photometry.difference`), detects
positive point sources on the difference with their real-bogus score
(:mod:`~followup.photometry.realbogus`) and calibrates their host-subtracted fluxes with the zero
point of the PSF-matched science frame. :func:`measure_difference` is forced photometry of given
positions on the difference: the flux of whatever changed, without its host galaxy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import QTable, Table

from followup.models import Measurement
from followup.photometry.difference import Difference, subtract
from followup.photometry.frame import AnyFrame, PreparedFrame
from followup.photometry.options import PhotometryOptions
from followup.photometry.realbogus import FEATURES, REAL_SCORE, detect_difference_sources
from followup.photometry.targets import (
    frame_zero_point,
    measurement_of,
    photometry_table,
    targets_on_frame,
)
from followup.photometry.zeropoint import CatalogLike, ZeroPoint

__all__ = [
    "COVER_GRID",
    "MAX_REFERENCES",
    "MAX_SOURCES",
    "covering_references",
    "difference_zero_point",
    "find_transients",
    "load_difference",
    "measure_difference",
    "measure_saved_difference",
    "on_difference",
    "save_difference",
    "search_frame",
]


MAX_SOURCES = 200
"""Most sources of one difference measured and vetted by :func:`search_frame`. A clean 4k
difference holds a few; thousands mean the PSFs were poorly matched (rings around every star),
and measuring each (about 50 ms with its neighbours fitted) would take minutes per frame."""


COVER_GRID = 5
"""Points on a side of the grid whose coverage by the references is checked."""
MAX_REFERENCES = 5
"""Most references combined for one frame (each costs a resampling of the frame)."""


def covering_references(
    science: PreparedFrame, reference_for: Any, *, grid: int = COVER_GRID
) -> tuple[list[Any], list[PreparedFrame]]:
    """References that together cover the science frame, the one of its centre first.

    An archive answers ``covers=POINT(ra dec)`` with earlier frames that contain the point,
    which rarely share the science frame's pointing: the reference of the frame's centre may
    leave a strip of it (where a transient can be) uncovered. Points on a ``grid`` x ``grid``
    lattice over the frame that no reference covers yet are asked for in turn, and what they
    bring is kept, up to :data:`MAX_REFERENCES`.

    Args:
        science: The prepared science frame.
        reference_for: ``(ra, dec, band) -> path`` of a reference covering the position.
        grid: Points on a side of the lattice (corners and edges included, inset by 1 %).

    Returns:
        ``(paths, frames)``: each reference's path and prepared frame, the centre's first.

    Raises:
        PhotometryError: No reference of the frame's centre.
    """
    from followup.exceptions import FollowupError
    from followup.photometry.frame import prepare_frame

    ny, nx = science.shape
    centre = science.wcs.pixel_to_world((nx - 1) / 2.0, (ny - 1) / 2.0)
    first = reference_for(float(centre.ra.deg), float(centre.dec.deg), science.band)
    paths = [first]
    frames = [prepare_frame(first)]
    fx = np.linspace(0.01 * (nx - 1), 0.99 * (nx - 1), grid)
    fy = np.linspace(0.01 * (ny - 1), 0.99 * (ny - 1), grid)
    gx, gy = (a.ravel() for a in np.meshgrid(fx, fy))
    ra, dec = science.wcs.all_pix2world(gx, gy, 0)
    # The centre's grid point first, then outwards: the nearest strips are filled first.
    order = np.argsort(np.hypot(gx - (nx - 1) / 2.0, gy - (ny - 1) / 2.0), kind="stable")
    for k in order:
        if len(frames) >= MAX_REFERENCES:
            break
        if any(_covers(f, float(ra[k]), float(dec[k])) for f in frames):
            continue
        try:
            path = reference_for(float(ra[k]), float(dec[k]), science.band)
        except FollowupError:
            continue  # that part stays uncovered (flagged on the difference)
        if any(str(path) == str(p) for p in paths):
            continue
        frame = prepare_frame(path)
        if not _covers(frame, float(ra[k]), float(dec[k])):
            continue
        paths.append(path)
        frames.append(frame)
    return paths, frames


def _covers(frame: PreparedFrame, ra: float, dec: float, margin_px: float = 8.0) -> bool:
    """True when a position falls on a frame, ``margin_px`` inside its edges."""
    x, y = frame.wcs.all_world2pix([[ra, dec]], 0)[0]
    ny, nx = frame.shape
    return bool(margin_px <= x < nx - margin_px and margin_px <= y < ny - margin_px)


def on_difference(options: PhotometryOptions) -> PhotometryOptions:
    """How positions are measured on a difference: as ``options`` says, with no local background.

    The difference's background is zero by construction (what the sky gradients left of it is
    removed by :func:`~followup.photometry.difference.subtract`); an annulus around a position
    holds only noise and what the subtraction left of a host, which differs from what it left in
    the aperture. The zero point is still measured with ``options`` on the PSF-matched science
    frame, where the sky is.
    """
    return replace(options, local_background=False)


def difference_zero_point(
    difference: Difference, catalog: CatalogLike, options: PhotometryOptions
) -> tuple[ZeroPoint, int]:
    """Zero point of the difference: that of the science frame with the difference's PSF."""
    return frame_zero_point(difference.matched_science, catalog, options)


def find_transients(
    science: AnyFrame,
    reference: AnyFrame | Difference,
    *,
    catalog: CatalogLike = None,
    snr_min: float = 5.0,
    min_score: float = 0.0,
    options: PhotometryOptions | None = None,
    margin_px: float = 20.0,
    max_sources: int | None = None,
) -> QTable:
    """Candidates on the difference of a frame and its reference, calibrated and scored.

    Args:
        science: A reduced science frame.
        reference: A reduced frame of the field in the same band, or a difference already made.
        catalog: Reference stars for the zero point (None: the frame's CAT and ``L1ZP``).
        snr_min: Detection threshold (matched-filter S/N on the difference).
        min_score: Keep sources scoring at least this (0 keeps all, with their score).
        options: How fluxes are measured (aperture by default, as for the zero point).
        margin_px: Sources closer to the edge than this are left out.
        max_sources: Measure at most this many (the highest S/N); how many were left out is
            ``meta["left_out"]``. Each source costs a forced measurement with its neighbours
            fitted, and a difference with thousands of sources (a poor PSF match) would
            otherwise take many minutes.

    Returns:
        QTable, highest S/N first: ``ra``, ``dec`` (deg), ``x``, ``y`` (pix), ``flux``,
        ``flux_err`` (electron, forced photometry on the difference), ``snr``, ``flux_ujy``,
        ``flux_err_ujy``, ``mag``, ``mag_err`` (NaN below S/N 5), ``limit_mag_5sigma``, the
        features of :func:`~followup.photometry.realbogus.detect_difference_sources`, ``score``,
        ``real`` (score >= :data:`REAL_SCORE`), ``bogus_reasons``, ``detection_snr``,
        ``source`` (``difference``). ``meta`` holds the zero point, the kernel's star count and
        residual and which image was convolved.

    Raises:
        PhotometryError: Unreadable frames, different bands, no overlap, too few stars.
    """
    options = options or PhotometryOptions()
    diff = reference if isinstance(reference, Difference) else subtract(science, reference)
    found = detect_difference_sources(
        diff.frame, snr_min=snr_min, psf_frame=diff.matched_science, psf_stars=diff.stars
    )
    ny, nx = diff.frame.shape
    x = np.asarray(found["x"].value, float)
    y = np.asarray(found["y"].value, float)
    inside = (x >= margin_px) & (x < nx - margin_px) & (y >= margin_px) & (y < ny - margin_px)
    found = found[inside & (np.asarray(found["score"], float) >= min_score)]
    left_out = max(0, len(found) - max_sources) if max_sources is not None else 0
    if left_out:
        found = found[:max_sources]  # highest S/N first
    zero_point, frame_flags = difference_zero_point(diff, catalog, options)
    meta = {
        "zero_point": zero_point.zero_point,
        "zero_point_err": zero_point.zero_point_err,
        "kernel_stars": diff.n_stars,
        "kernel_residual": diff.residual_rms,
        "convolved": diff.convolved,
        "flux_scale": diff.scale,
        "fwhm": diff.frame.fwhm,
        "frame": diff.science.name,
        "origin": "difference",
        "zero_point_fit": zero_point,
        "left_out": left_out,
    }
    if not len(found):
        table = QTable(meta=meta)
        for name in ("ra", "dec", "x", "y", "flux", "flux_err", "snr", "flux_ujy", "mag"):
            table[name] = np.zeros(0)
        table["score"] = np.zeros(0)
        table["bogus_reasons"] = np.zeros(0, str)
        return table
    phot = photometry_table(
        diff.frame,
        found["ra"],
        found["dec"],
        names=[f"d{k}" for k in range(len(found))],
        zero_point=zero_point,
        options=on_difference(options),
    )
    table = QTable(meta=meta)
    for name in ("ra", "dec", "x", "y", "flux", "flux_err", "snr", "flux_ujy", "flux_err_ujy"):
        table[name] = phot[name]
    for name in ("mag", "mag_err", "limit_mag_5sigma"):
        table[name] = phot[name]
    table["flags"] = np.asarray(phot["flags"]) | frame_flags
    for name in FEATURES:
        table[name] = found[name]
    table["detection_snr"] = found["snr"]
    table["score"] = found["score"]
    table["real"] = np.asarray(found["score"], float) >= REAL_SCORE
    table["bogus_reasons"] = found["bogus_reasons"]
    table["source"] = ["difference"] * len(found)
    return table


def measure_difference(
    science: AnyFrame,
    reference: AnyFrame | Difference,
    targets: Sequence[tuple[str, float, float]],
    *,
    catalog: CatalogLike = None,
    frame_name: str | None = None,
    margin_px: float = 10.0,
    options: PhotometryOptions | None = None,
) -> list[Measurement]:
    """Forced photometry of targets on the difference: host-subtracted flux, mag, limit.

    Args:
        science: A reduced science frame.
        reference: A reduced frame of the field in the same band, or a difference already made.
        targets: ``(name, ra, dec)`` of each target (degrees).
        catalog: Reference stars for the zero point, as for
            :func:`~followup.photometry.measure`.
        frame_name: Frame basename recorded in the measurements.
        margin_px: Targets closer than this to the frame's edge are not measured.
        options: Method, aperture radius (default: apertures of 1 FWHM).

    Returns:
        One measurement per target on the frame, with the difference's flux (uJy), its
        magnitude at S/N >= 5 and its 5-sigma limit; the reference's light is not in it.

    Raises:
        PhotometryError: Unreadable frames, no overlap, too few stars, no reference stars.
    """
    options = options or PhotometryOptions()
    diff = reference if isinstance(reference, Difference) else subtract(science, reference)
    fr = diff.frame
    coords, names = targets_on_frame(fr, targets, margin_px)
    if not names:
        return []
    zero_point, frame_flags = difference_zero_point(diff, catalog, options)
    table = photometry_table(
        fr,
        coords,
        names=names,
        zero_point=zero_point,
        options=on_difference(options),
    )
    table["flags"] = np.asarray(table["flags"]) | frame_flags
    name = frame_name or diff.science.name
    return [measurement_of(row, table, diff.science, frame_name=name) for row in table]


_ZP_KEYS = {
    "DZP": ("zero_point", "difference zero point [mag of 1 e-/s]"),
    "DZPERR": ("zero_point_err", "its error [mag]"),
    "DZPNSTAR": ("n_stars", "stars in the zero point"),
    "DZPSCAT": ("scatter", "scatter of the zero point's stars [mag]"),
    "DAPCORR": ("aperture_correction", "aperture to total flux"),
    "DFWHM": ("fwhm", "PSF FWHM of the difference [pix]"),
}


def save_difference(
    difference: Difference,
    zero_point: ZeroPoint,
    path: str | Path,
    *,
    candidates: QTable | None = None,
    cutout_half: int = 25,
) -> Path:
    """Write the difference, its error and flags, its zero point and candidate cutouts.

    The file holds ``SCI`` (difference, electrons, with the science header and the zero point
    as ``DZP``...), ``ERR``, ``BPM``, and when candidates are given ``CANDS`` (their table) and
    one ``CUT<k>`` cube per candidate (science, matched reference, difference).
    """
    from astropy.io import fits

    from followup.photometry.difference import cutouts

    header = difference.frame.header.copy()
    for key, (attribute, comment) in _ZP_KEYS.items():
        value = getattr(zero_point, attribute)
        header[key] = (float(value) if value is not None else difference.frame.fwhm, comment)
    header["DCONV"] = (difference.convolved, "image convolved to match the PSFs")
    header["DSCALE"] = (difference.scale, "flux ratio science / reference")
    header["DNSTAR"] = (difference.n_stars, "stars the kernel was fitted on")
    hdus: list[Any] = [
        fits.PrimaryHDU(),
        fits.ImageHDU(difference.frame.data, header=header, name="SCI"),
        fits.ImageHDU(difference.frame.err, name="ERR"),
        fits.ImageHDU(difference.frame.flags, name="BPM"),
    ]
    if candidates is not None and len(candidates):
        table = Table(candidates)
        table.meta.clear()
        for name in table.colnames:
            table[name].unit = None  # electrons are not a FITS unit; the names say it
            if table[name].dtype.kind in "OU":
                table[name] = [_ascii(v) for v in table[name]]
        hdus.append(fits.BinTableHDU(table, name="CANDS"))
        for k, row in enumerate(candidates):
            stamps = cutouts(difference, float(row["x"].value), float(row["y"].value), cutout_half)
            cube = np.stack([stamps["science"], stamps["reference"], stamps["difference"]])
            hdus.append(fits.ImageHDU(cube, name=f"CUT{k}"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    fits.HDUList(hdus).writeto(tmp, overwrite=True)
    tmp.replace(path)
    return path


def _ascii(value: Any) -> str:
    """Text a FITS table can hold (ASCII only)."""
    text = "; ".join(value) if isinstance(value, list) else str(value)
    for symbol, plain in (("\u2033", '"'), ("\u00b1", "+-"), ("\u03c3", " sigma")):
        text = text.replace(symbol, plain)
    return text.encode("ascii", "replace").decode("ascii")


def load_difference(path: str | Path) -> tuple[PreparedFrame, ZeroPoint]:
    """The difference written by :func:`save_difference` and its zero point.

    Raises:
        PhotometryError: Not such a file.
    """
    from followup.exceptions import PhotometryError
    from followup.photometry.frame import prepare_frame

    fr = prepare_frame(str(path))
    header = fr.header
    if "DZP" not in header:
        raise PhotometryError(f"{path} is not a difference written by save_difference")
    values = {attribute: header[key] for key, (attribute, _) in _ZP_KEYS.items()}
    values["n_stars"] = int(values["n_stars"])
    zero_point = ZeroPoint(**values, source="difference")
    return replace(fr, fwhm=float(header["DFWHM"]), catalog=None), zero_point


def measure_saved_difference(
    path: str | Path,
    targets: Sequence[tuple[str, float, float]],
    *,
    frame_name: str | None = None,
    margin_px: float = 10.0,
    options: PhotometryOptions | None = None,
) -> list[Measurement]:
    """Forced photometry of targets on a difference written by :func:`save_difference`."""
    fr, zero_point = load_difference(path)
    coords, names = targets_on_frame(fr, targets, margin_px)
    if not names:
        return []
    table = photometry_table(
        fr,
        coords,
        names=names,
        zero_point=zero_point,
        options=on_difference(options or PhotometryOptions()),
    )
    return [measurement_of(row, table, fr, frame_name=frame_name) for row in table]


def search_frame(
    science: AnyFrame,
    reference_for: Any,
    *,
    catalog: CatalogLike = None,
    minor_planets: Any = None,
    galaxies: QTable | None = None,
    skymap: Any = None,
    products: str | Path | None = None,
    snr_min: float = 5.0,
    max_sources: int | None = MAX_SOURCES,
) -> QTable:
    """Search one frame for transients against its reference, vetted frame by frame.

    Args:
        science: A reduced science frame.
        reference_for: ``(ra, dec, band) -> path`` of the field's reference (e.g.
            :meth:`followup.photometry.references.ReferenceCache.fetch` bound to an archive).
        catalog: Star catalogue (REFCAT2-like): the zero point, and stars at a candidate's
            position (variables). None: the frame's CAT for the zero point, no star check.
        minor_planets: :class:`~followup.photometry.vetting.MinorPlanets` (SkyBoT), or None.
        galaxies: Catalogued galaxies around the frame (:mod:`followup.galaxies` columns): a
            candidate's host and whether its distance agrees with the map's; None: not checked.
        skymap: The event's latest :class:`followup.skymap.SkyMap`: the credible level at each
            candidate and the distance along its line of sight; None: not checked.
        products: Where to write the difference, its error and the candidates' cutouts.
        snr_min: Detection threshold on the difference.
        max_sources: At most this many sources scoring as real are measured and vetted (the
            highest S/N); ``meta["left_out"]`` says how many more there were.

    Returns:
        The candidates that passed (:func:`~followup.photometry.vetting.passing`: with
        ``reasons``); ``meta`` holds ``reference`` (its path), ``found`` (sources detected) and
        ``rejected`` (``[(ra, dec, reasons)]`` of the others).

    Raises:
        PhotometryError: Unreadable frames, no reference, too few stars.
        ServiceError: The archive or SkyBoT failed.
    """
    from followup.photometry.frame import prepare_frame
    from followup.photometry.targets import mid_exposure
    from followup.photometry.vetting import passing, vet_candidates
    from followup.photometry.zeropoint import reference_table

    sci = prepare_frame(science)
    paths, references = covering_references(sci, reference_for)
    reference = paths[0]
    diff = subtract(sci, references if len(references) > 1 else references[0])
    # Only what scores as real can pass the vetting: the rest is not worth measuring.
    found = find_transients(
        sci,
        diff,
        catalog=catalog,
        snr_min=snr_min,
        min_score=REAL_SCORE,
        max_sources=max_sources,
    )
    stars = reference_table(sci, catalog)[0] if catalog is not None else None
    when = mid_exposure(sci.header, sci.exptime)
    vettings = vet_candidates(
        found,
        when=when,
        stars=stars,
        minor_planets=minor_planets,
        galaxies=galaxies,
        skymap=skymap,
    )
    kept = passing(found, vettings)
    kept.meta.update(
        {
            "reference": str(reference),
            "references": [str(p) for p in paths],
            "found": len(found),
            "left_out": found.meta["left_out"],
            "rejected": [
                (float(row["ra"].value), float(row["dec"].value), v.reasons)
                for row, v in zip(found, vettings, strict=True)
                if not v.passed and bool(row["real"])
            ],
        }
    )
    if products is not None:
        save_difference(diff, found.meta["zero_point_fit"], products, candidates=kept)
        kept.meta["difference"] = str(products)
    return kept
