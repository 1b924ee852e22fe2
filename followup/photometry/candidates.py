"""Transient candidates: sources on a frame without a reference-catalogue counterpart, merged over frames."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import QTable, Table

from followup.photometry.detection import detect_sources
from followup.photometry.flags import PhotometryFlag
from followup.photometry.frame import AnyFrame, PreparedFrame, pixel_scale, prepare_frame
from followup.photometry.zeropoint import CatalogLike, reference_table
from followup.reduction import BPM_BAD, BPM_COSMIC_RAY

__all__ = ["associate_candidates", "candidate_name", "find_candidates", "search_catalog_frame"]

# BANZAI's CAT flag bits (banzai/photometry.py).
_CAT_BAD_PIXEL = 1
_CAT_DEBLENDED = 2
_CAT_SATURATED = 4
_CAT_OFF_IMAGE = 8
_CAT_COSMIC_RAY = 16


def _bad_core(fr: PreparedFrame, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True where a bad or cosmic-ray pixel lies on the centroid (x, y) (0-based pixels).

    A source made by a hot pixel, a bad column or a hit has its centroid on them; a real source
    beside them keeps its centroid where it is, give or take a pixel. So "on" is within a
    quarter FWHM (at least 1 px): a transient 2-3 px from a dead column (half a FWHM at 2"
    seeing on a Sinistro) is kept, as BANZAI, whose segments never hold a dead pixel, detects it.
    """
    radius = max(1.0, 0.25 * fr.fwhm) if math.isfinite(fr.fwhm) else 1.0
    half = math.ceil(radius)
    ny, nx = fr.shape
    bad = np.zeros(len(x), bool)
    for k, (xc, yc) in enumerate(zip(x, y, strict=True)):
        x0, x1 = max(0, round(xc) - half), min(nx, round(xc) + half + 1)
        y0, y1 = max(0, round(yc) - half), min(ny, round(yc) + half + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        core = (xx - xc) ** 2 + (yy - yc) ** 2 <= radius**2
        bad[k] = bool(np.any((fr.flags[y0:y1, x0:x1] & (BPM_BAD | BPM_COSMIC_RAY))[core]))
    return bad


def _catalog_sources(fr: PreparedFrame) -> dict[str, np.ndarray]:
    """The CAT's sources (0-based pixels), with ``ok`` false for those that cannot be trusted.

    Saturated sources and off-image Kron apertures are dropped. Bits 1 and 16 say a bad pixel or
    a cosmic ray lies somewhere in the Kron aperture (about 1.3 FWHM): a real transient beside a
    hot pixel or a hit must not be lost, so such a source is dropped only when one lies on its
    centroid, as on one made by them. Sources much sharper than the PSF are dropped too.
    """
    cat = fr.catalog
    assert cat is not None
    flag = np.asarray(cat["flag"], int) if "flag" in cat.colnames else np.zeros(len(cat), int)
    x = np.asarray(cat["x"], float) - 1.0
    y = np.asarray(cat["y"], float) - 1.0
    ok = (flag & (_CAT_SATURATED | _CAT_OFF_IMAGE)) == 0
    near_bad = (flag & (_CAT_BAD_PIXEL | _CAT_COSMIC_RAY)) > 0
    if near_bad.any():
        ok[near_bad] &= ~_bad_core(fr, x[near_bad], y[near_bad])
    if "fwhm" in cat.colnames and math.isfinite(fr.fwhm):
        ok &= np.asarray(cat["fwhm"], float) > 0.5 * fr.fwhm
    return {
        "ra": np.asarray(cat["ra"], float),
        "dec": np.asarray(cat["dec"], float),
        "x": x,
        "y": y,
        "flux": np.asarray(cat["flux"], float),
        "flux_err": np.asarray(cat["fluxerr"], float),
        "ok": ok,
        "deblended": (flag & _CAT_DEBLENDED) > 0,
    }


def _detected_sources(
    fr: PreparedFrame, snr_min: float, max_sharpness: float
) -> dict[str, np.ndarray]:
    """Own detections, with ``ok`` false for masked, saturated or too sharp ones."""
    det = detect_sources(fr, snr_min=snr_min)
    flagged = np.asarray(det["flags"]) & (PhotometryFlag.MASKED_PIXELS | PhotometryFlag.SATURATED)
    return {
        "ra": np.asarray(det["ra"].value, float),
        "dec": np.asarray(det["dec"].value, float),
        "x": np.asarray(det["x"].value, float),
        "y": np.asarray(det["y"].value, float),
        "flux": np.asarray(det["flux"].value, float),
        "flux_err": np.asarray(det["flux_err"].value, float),
        "ok": (flagged == 0) & (np.asarray(det["sharpness"], float) <= max_sharpness),
        "deblended": np.zeros(len(det), bool),
    }


def find_candidates(
    frame: AnyFrame,
    reference_catalog: CatalogLike,
    *,
    snr_min: float = 5.0,
    match_radius_arcsec: float = 1.5,
    use_frame_catalog: bool = True,
    max_sharpness: float = 3.0,
) -> QTable:
    """Transient candidates: sources on the frame with no reference-catalogue counterpart.

    Sources come from the frame's CAT when it has one (BANZAI's detections; flagged sources --
    saturation, off-image Kron apertures, bad pixels or cosmic rays on the centroid -- are dropped,
    as are sources much sharper than the PSF) or else from :func:`detect_sources`. A source is a
    candidate when its S/N is at least ``snr_min`` and no catalogue star lies within
    ``match_radius_arcsec`` (within one FWHM, if larger, for sources the CAT marks as deblended).
    The reference catalogue must reach deeper than the frame (REFCAT2/PS1 reach ~19-22 mag), or
    faint uncatalogued stars will show up as candidates.

    Args:
        frame: A reduced frame.
        reference_catalog: Provider, table (normalised or Vizier columns) or file path; None
            means an empty catalogue (every source is a candidate).
        snr_min: Minimum S/N of a candidate.
        match_radius_arcsec: Counterpart search radius.
        use_frame_catalog: Use the frame's CAT when present (else always detect).
        max_sharpness: For own detections, the largest sharpness kept.

    Returns:
        QTable of candidates, brightest first: ``ra``, ``dec`` (deg), ``x``, ``y`` (pix, 0-based),
        ``flux``, ``flux_err`` (electron), ``snr``, ``mag`` (AB from ``L1ZP`` when present, else
        NaN), ``separation`` (arcsec to the nearest catalogue star), ``source`` (``CAT`` or
        ``detection``). ``meta`` holds the counts of sources considered and matched.

    Raises:
        PhotometryError: The frame cannot be read or has no WCS.
    """
    fr = prepare_frame(frame)
    has_cat = fr.catalog is not None and {"ra", "dec", "flux", "fluxerr"} <= set(
        fr.catalog.colnames
    )
    if use_frame_catalog and has_cat:
        sources, origin = _catalog_sources(fr), "CAT"
    else:
        sources, origin = _detected_sources(fr, snr_min, max_sharpness), "detection"
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = sources["flux"] / sources["flux_err"]
    ok = sources["ok"] & np.isfinite(snr) & (snr >= snr_min)
    if reference_catalog is None:
        ref = Table({"ra": np.zeros(0), "dec": np.zeros(0)})
    else:
        ref, _, _ = reference_table(fr, reference_catalog)
    separation = np.full(len(snr), np.inf)
    if len(ref) and ok.any():
        cand = SkyCoord(sources["ra"][ok] * u.deg, sources["dec"][ok] * u.deg)
        refc = SkyCoord(np.asarray(ref["ra"], float) * u.deg, np.asarray(ref["dec"], float) * u.deg)
        _, sep, _ = cand.match_to_catalog_sky(refc)
        separation[ok] = sep.arcsec
    # Deblended sources have less certain centroids: match them within a FWHM at least.
    fwhm_arcsec = fr.fwhm * pixel_scale(fr.wcs) if math.isfinite(fr.fwhm) else match_radius_arcsec
    radius = np.where(
        sources["deblended"], max(match_radius_arcsec, fwhm_arcsec), match_radius_arcsec
    )
    unmatched = ok & (separation > radius)
    idx = np.nonzero(unmatched)[0]
    idx = idx[np.argsort(-snr[idx])]
    table = QTable(
        meta={"sources": int(ok.sum()), "matched": int((ok & ~unmatched).sum()), "origin": origin}
    )
    for name, unit in (("ra", u.deg), ("dec", u.deg), ("x", u.pix), ("y", u.pix)):
        table[name] = sources[name][idx] * unit
    table["flux"] = sources["flux"][idx] * u.electron
    table["flux_err"] = sources["flux_err"][idx] * u.electron
    table["snr"] = snr[idx]
    zp = float(fr.header["L1ZP"]) if "L1ZP" in fr.header else math.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        table["mag"] = (zp - 2.5 * np.log10(sources["flux"][idx] / fr.exptime)) * u.mag
    table["separation"] = separation[idx] * u.arcsec
    table["source"] = [origin] * len(idx)
    return table


def candidate_name(ra: float, dec: float) -> str:
    """A stable name for a candidate at (ra, dec): ``C`` and its position, e.g. ``C150.01234+2.20016``."""
    return f"C{ra:.5f}{dec:+.5f}"


def _value(cell: Any) -> float:
    return float(cell.value if hasattr(cell, "value") else cell)


def associate_candidates(
    tables: Iterable[QTable], *, radius_arcsec: float = 1.5, min_frames: int = 1
) -> list[dict[str, Any]]:
    """Merge the candidates of several frames: one entry per position on the sky.

    Args:
        tables: :func:`find_candidates` results, one per frame.
        radius_arcsec: Detections closer than this are the same candidate.
        min_frames: Keep candidates seen on at least this many frames (2 rejects artefacts
            seen once, at the price of needing two frames).

    Returns:
        ``[{name, ra, dec, n_frames, best_snr, best_mag}]``, brightest first; the position is the
        S/N-weighted mean of the detections and the name follows from it (:func:`candidate_name`).
    """
    groups: list[dict[str, Any]] = []
    limit = radius_arcsec / 3600.0
    for index, table in enumerate(tables):
        for row in table:
            ra, dec, snr, mag = (_value(row[c]) for c in ("ra", "dec", "snr", "mag"))
            for group in groups:
                dra = (ra - group["ra"] + 180.0) % 360.0 - 180.0
                if math.hypot(dra * math.cos(math.radians(dec)), dec - group["dec"]) <= limit:
                    weight = group["weight"] + snr
                    group["ra"] = (group["ra"] + dra * snr / weight) % 360.0
                    group["dec"] += (dec - group["dec"]) * snr / weight
                    group["weight"] = weight
                    group["frames"].add(index)
                    if snr > group["best_snr"]:
                        group["best_snr"], group["best_mag"] = snr, mag
                    break
            else:
                groups.append(
                    {
                        "ra": ra,
                        "dec": dec,
                        "weight": snr,
                        "frames": {index},
                        "best_snr": snr,
                        "best_mag": mag,
                    }
                )
    merged = [
        {
            "name": candidate_name(g["ra"], g["dec"]),
            "ra": g["ra"],
            "dec": g["dec"],
            "n_frames": len(g["frames"]),
            "best_snr": g["best_snr"],
            "best_mag": g["best_mag"],
        }
        for g in groups
        if len(g["frames"]) >= min_frames
    ]
    return sorted(merged, key=lambda c: -c["best_snr"])


def search_catalog_frame(
    frame: AnyFrame,
    reference_catalog: CatalogLike,
    *,
    minor_planets: Any = None,
    galaxies: QTable | None = None,
    skymap: Any = None,
) -> QTable:
    """Catalogue-match candidates of a frame (:func:`find_candidates`), vetted.

    The checks that need no difference image run as on the difference path
    (:func:`~followup.photometry.vetting.vet_candidates`): a known minor planet there at
    mid-exposure, the host galaxy's distance against the map's along that line of sight, and the
    credible level in the event's latest map. A catalogue star cannot be there (that is what
    made it a candidate), and there is no real-bogus score.

    Args:
        frame: A reduced frame.
        reference_catalog: As for :func:`find_candidates`.
        minor_planets: SkyBoT or a stand-in; None: not checked (and the reasons say so).
        galaxies: Catalogued galaxies around the frame; None: hosts not checked.
        skymap: The event's latest sky map; None: not checked.

    Returns:
        The candidates that passed, with ``reasons``; ``meta["rejected"]`` holds
        ``[(ra, dec, reasons)]`` of the others.

    Raises:
        ServiceError: SkyBoT failed.
    """
    from followup.photometry.targets import mid_exposure
    from followup.photometry.vetting import passing, vet_candidates

    prepared = prepare_frame(frame)
    found = find_candidates(prepared, reference_catalog)
    # A header without DATE-OBS or MJD-OBS still lets the frame be searched, only not for
    # minor planets (they need the time).
    when = mid_exposure(prepared.header, prepared.exptime) if minor_planets is not None else None
    vettings = vet_candidates(
        found,
        when=when,
        minor_planets=minor_planets,
        galaxies=galaxies,
        skymap=skymap,
    )
    kept = passing(found, vettings)
    kept.meta["rejected"] = [
        (_deg(row["ra"]), _deg(row["dec"]), v.reasons)
        for row, v in zip(found, vettings, strict=True)
        if not v.passed
    ]
    return kept


def _deg(cell: Any) -> float:
    return float(cell.to_value(u.deg) if hasattr(cell, "to_value") else cell)
