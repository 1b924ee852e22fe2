"""Calibrated forced photometry of sky positions: fluxes in microjansky, magnitudes, 5-sigma limits."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import QTable
from astropy.time import Time

from followup.exceptions import PhotometryError
from followup.models import Measurement
from followup.photometry.depth import noise_around
from followup.photometry.flags import PhotometryFlag
from followup.photometry.fluxes import flux_to_ujy
from followup.photometry.frame import AnyFrame, PreparedFrame, prepare_frame
from followup.photometry.neighbours import without_neighbours
from followup.photometry.options import PhotometryOptions
from followup.photometry.zeropoint import (
    CatalogLike,
    ZeroPoint,
    calibrate_zero_point,
    header_zero_point,
    instrumental_fluxes,
)

__all__ = [
    "DETECTION_SNR",
    "frame_zero_point",
    "measure",
    "measure_targets",
    "measurement_of",
    "mid_exposure",
    "photometry_table",
    "start_and_mid_mjd",
]

DETECTION_SNR = 5.0
"""Below this S/N a measurement has no magnitude, only a flux and a 5-sigma limit."""


def _coords(ra: Any, dec: Any) -> SkyCoord:
    """Positions from a SkyCoord, degrees (numbers or Quantities) or sexagesimal strings.

    Strings with ``:`` or ``h`` in the right ascension are read as hours, others as degrees.
    """
    if isinstance(ra, SkyCoord):
        return ra
    try:
        first = np.atleast_1d(ra)[0]
        if isinstance(first, str):
            hours = ":" in first or "h" in first.lower()
            return SkyCoord(ra, dec, unit=(u.hourangle if hours else u.deg, u.deg))
        ra_q = ra if isinstance(ra, u.Quantity) else np.atleast_1d(np.asarray(ra, float)) * u.deg
        dec_q = (
            dec if isinstance(dec, u.Quantity) else np.atleast_1d(np.asarray(dec, float)) * u.deg
        )
        return SkyCoord(ra_q, dec_q)
    except (ValueError, TypeError, IndexError) as exc:
        raise PhotometryError(f"cannot understand the position {ra!r}, {dec!r}: {exc}") from exc


def mid_exposure(header: fits.Header, exptime: float) -> datetime:
    """The middle of the exposure (UTC).

    Raises:
        PhotometryError: The header has neither DATE-OBS nor MJD-OBS.
    """
    from astropy.time import Time as _Time

    _, mjd = start_and_mid_mjd(header, exptime)
    return _Time(mjd, format="mjd", scale="utc").to_datetime(timezone=UTC)


def start_and_mid_mjd(header: fits.Header, exptime: float) -> tuple[datetime, float]:
    """Start of the exposure (UTC) and the MJD of its middle."""
    if "DATE-OBS" in header:
        start = Time(str(header["DATE-OBS"]), scale="utc")
    elif "MJD-OBS" in header:
        start = Time(float(header["MJD-OBS"]), format="mjd", scale="utc")
    else:
        raise PhotometryError("the frame has neither DATE-OBS nor MJD-OBS")
    mid = start + exptime / 2.0 * u.s
    when = mid.to_datetime(timezone=UTC) - timedelta(seconds=exptime / 2.0)
    return when, float(mid.mjd)


def frame_zero_point(
    fr: PreparedFrame, catalog: CatalogLike, options: PhotometryOptions
) -> tuple[ZeroPoint, int]:
    """The frame's zero point from reference stars, else its header's ``L1ZP``; frame flags.

    Raises:
        PhotometryError: No reference stars and (with a catalogue given, or a CAT) no fallback.
    """
    try:
        zero_point, _ = calibrate_zero_point(fr, catalog, options=options)
    except PhotometryError:
        if catalog is not None or fr.catalog is not None or "L1ZP" not in fr.header:
            raise
        flags = PhotometryFlag.ZERO_POINT_FROM_HEADER | PhotometryFlag.APERTURE_CORRECTION_MODEL
        return header_zero_point(fr, options), int(flags)
    return zero_point, 0


def _blended(fr: PreparedFrame, xy: np.ndarray) -> np.ndarray:
    """True where a CAT source other than the position itself lies within 2 FWHM of it."""
    blended = np.zeros(len(xy), bool)
    if fr.catalog is None or not len(fr.catalog) or not {"x", "y"} <= set(fr.catalog.colnames):
        return blended
    from scipy.spatial import cKDTree

    cat_xy = np.column_stack(
        [np.asarray(fr.catalog["x"], float) - 1, np.asarray(fr.catalog["y"], float) - 1]
    )
    tree = cKDTree(cat_xy)
    for k, pos in enumerate(xy):
        near = tree.query_ball_point(pos, 2.0 * fr.fwhm)
        blended[k] = any(np.hypot(*(cat_xy[j] - pos)) > 0.5 * fr.fwhm for j in near)
    return blended


def _target_fluxes(
    fr: PreparedFrame, xy: np.ndarray, options: PhotometryOptions
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fluxes, errors and flags of the targets, each measured with its neighbours' light removed."""
    flux, flux_err, flags, _ = instrumental_fluxes(fr, xy, options)
    for k, (x, y) in enumerate(xy):
        cleaned = without_neighbours(fr, float(x), float(y))
        if cleaned is None:
            continue
        f, e, fl, _ = instrumental_fluxes(cleaned.frame, xy[k : k + 1] - cleaned.offset, options)
        flux[k], flux_err[k] = f[0], e[0] * cleaned.error_scale
        flags[k] = fl[0] | PhotometryFlag.NEIGHBOURS_SUBTRACTED
    return flux, flux_err, flags


def _pixels_on_frame(fr: PreparedFrame, coords: SkyCoord) -> np.ndarray:
    """Pixel positions (n, 2) of sky positions.

    Raises:
        PhotometryError: A position off the frame.
    """
    x, y = fr.wcs.all_world2pix(coords.ra.deg, coords.dec.deg, 0)
    ny, nx = fr.shape
    off = ~((x >= -0.5) & (x <= nx - 0.5) & (y >= -0.5) & (y <= ny - 0.5))
    if off.any():
        bad = [f"{c.ra.deg:.5f} {c.dec.deg:+.5f}" for c in coords[off]]
        raise PhotometryError(
            f"target off the frame {fr.label}: {', '.join(bad)} (frame is {nx}x{ny} px)"
        )
    return np.column_stack([x, y])


def _calibrated(
    flux: np.ndarray,
    flux_err: np.ndarray,
    zero_point: ZeroPoint,
    colour: np.ndarray,
    exptime: float,
    noise: np.ndarray,
) -> dict[str, np.ndarray]:
    """S/N, microjansky, AB magnitudes (S/N >= 5 only) and 5-sigma limits of total fluxes.

    ``noise`` is the empty sky's noise (electrons, total flux) that the limits are made of.
    """
    zp = zero_point.zero_point + zero_point.colour_coefficient * colour
    zp_err = zero_point.error_at(colour)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = flux / flux_err
        flux_ujy = flux_to_ujy(flux / exptime, zp)
        detected = snr >= DETECTION_SNR
        return {
            "snr": snr,
            "flux_ujy": flux_ujy,
            # The zero point's error is common to every target; it is in the flux's error too.
            "flux_err_ujy": np.hypot(
                flux_to_ujy(flux_err / exptime, zp),
                flux_ujy * 0.4 * math.log(10) * zp_err,
            ),
            "mag": np.where(
                detected, zp - 2.5 * np.log10(np.where(detected, flux, 1.0) / exptime), np.nan
            ),
            "mag_err": np.where(detected, np.hypot(1.0857 / snr, zp_err), np.nan),
            "limit": zp - 2.5 * np.log10(DETECTION_SNR * noise / exptime),
        }


def photometry_table(
    frame: AnyFrame,
    ra: Any,
    dec: Any = None,
    *,
    catalog: CatalogLike = None,
    names: Sequence[str] | None = None,
    colours: Sequence[float] | None = None,
    zero_point: ZeroPoint | None = None,
    options: PhotometryOptions | None = None,
) -> QTable:
    """Calibrated forced photometry of one or more sky positions on one frame.

    Args:
        frame: A calibrated frame (path, bytes, HDU list, FitsFrame or CCDData in electrons with
            WCS, FILTER and EXPTIME).
        ra: Right ascension(s) in degrees (or a SkyCoord, then ``dec`` is ignored; or sexagesimal
            strings).
        dec: Declination(s) in degrees.
        catalog: Reference stars (see :func:`calibrate_zero_point`); None uses the frame's CAT,
            and the header's ``L1ZP`` alone when the CAT is absent.
        names: A name per position.
        colours: Colour of each target (BANZAI's colour for the band) for the colour term; when
            not given (or NaN), the reference stars' mean colour, where the term adds nothing.
        zero_point: A zero point already measured for this frame and method (skips the fit).
        options: Method, aperture radius, FWHM and colour term (default: apertures of 1 FWHM).

    Returns:
        QTable, one row per position: ``name``, ``ra``, ``dec`` (deg), ``x``, ``y`` (pix),
        ``flux``, ``flux_err`` (electron, total flux), ``snr``, ``flux_ujy``, ``flux_err_ujy``
        (uJy; the error includes the zero point's), ``mag``, ``mag_err`` (AB mag; NaN when
        S/N < 5), ``limit_mag_5sigma`` (AB mag; 5 times the noise of empty apertures around the
        position, :mod:`~followup.photometry.depth`), ``flags``. ``meta`` holds ``zero_point``,
        ``zero_point_err``, ``n_ref_stars``, ``band``, ``method``, ``exptime``, ``fwhm``,
        ``aperture_correction``, ``reference``, ``frame``, ``flags`` (frame-level bits).

    Raises:
        PhotometryError: No WCS, a position off the frame, no reference stars (and no ``L1ZP``).
    """
    options = options or PhotometryOptions()
    fr = prepare_frame(frame, fwhm=options.fwhm)
    coords = _coords(ra, dec)
    coords = coords if not coords.isscalar else coords.reshape((1,))
    xy = _pixels_on_frame(fr, coords)
    frame_flags = 0
    if zero_point is None:
        zero_point, frame_flags = frame_zero_point(fr, catalog, options)
    if zero_point.n_stars and zero_point.n_stars < 5:
        frame_flags |= PhotometryFlag.FEW_REFERENCE_STARS
    if zero_point.fwhm is not None and zero_point.fwhm != fr.fwhm:
        fr = replace(fr, fwhm=zero_point.fwhm)
    flux, flux_err, flags = _target_fluxes(fr, xy, options)
    flux = flux * zero_point.aperture_correction
    flux_err = flux_err * zero_point.aperture_correction
    colour_arr = np.asarray(colours, float) if colours is not None else np.full(len(xy), np.nan)
    colour_arr = np.where(np.isfinite(colour_arr), colour_arr, zero_point.reference_colour)
    # The limit is what the empty sky around each position allows, not the target's own error
    # (which holds the target's Poisson noise); the error is the fallback where the sky is full.
    noise = noise_around(fr, xy, options) * zero_point.aperture_correction
    noise = np.where(np.isfinite(noise) & (noise > 0), noise, flux_err)
    calibrated = _calibrated(flux, flux_err, zero_point, colour_arr, fr.exptime, noise)
    flags[_blended(fr, xy)] |= PhotometryFlag.BLENDED
    radius = options.aperture_radius if options.aperture_radius is not None else fr.fwhm
    table = QTable(
        meta={
            "zero_point": zero_point.zero_point,
            "zero_point_err": zero_point.zero_point_err,
            "n_ref_stars": zero_point.n_stars,
            "band": fr.band,
            "method": options.method,
            "exptime": fr.exptime,
            "fwhm": fr.fwhm,
            "aperture_radius": float(radius) if options.method == "aperture" else None,
            "aperture_correction": zero_point.aperture_correction,
            "colour_coefficient": zero_point.colour_coefficient,
            "reference": zero_point.source,
            "frame": fr.name,
            "flags": frame_flags,
        }
    )
    table["name"] = list(names) if names is not None else [f"target{k}" for k in range(len(xy))]
    table["ra"] = coords.ra.deg * u.deg
    table["dec"] = coords.dec.deg * u.deg
    table["x"] = xy[:, 0] * u.pix
    table["y"] = xy[:, 1] * u.pix
    table["flux"] = flux * u.electron
    table["flux_err"] = flux_err * u.electron
    table["snr"] = calibrated["snr"]
    for name, unit in (("flux_ujy", u.uJy), ("flux_err_ujy", u.uJy), ("mag", u.mag)):
        table[name] = calibrated[name] * unit
    table["mag_err"] = calibrated["mag_err"] * u.mag
    table["limit_mag_5sigma"] = calibrated["limit"] * u.mag
    table["flags"] = flags | frame_flags
    return table


def measure(
    frame: AnyFrame,
    ra: float | str,
    dec: float | str,
    *,
    catalog: CatalogLike = None,
    target_name: str = "target",
    frame_name: str | None = None,
    colour: float | None = None,
    options: PhotometryOptions | None = None,
) -> Measurement:
    """Forced photometry of one target on one frame, calibrated to AB.

    Args:
        frame: A BANZAI-reduced or calibrated frame: path, FITS bytes, HDU list, FitsFrame or
            CCDData.
        ra: Right ascension (degrees, or a sexagesimal string in hours).
        dec: Declination (degrees, or a sexagesimal string).
        catalog: Reference stars: a provider (:class:`followup.catalogs.VizierCatalog`,
            :class:`followup.catalogs.LocalCatalog`...), a table, a file path, or None for the
            frame's CAT and ``L1ZP``.
        target_name: Name recorded in the measurement.
        frame_name: Frame basename (default: the file name, else ``ORIGNAME``).
        colour: The target's colour for the colour term (``options.colour_term``).
        options: Method, aperture radius, FWHM and colour term (default: apertures of 1 FWHM).

    Returns:
        The measurement: flux (uJy) always, ``mag`` only at S/N >= 5, the 5-sigma limit always.

    Raises:
        PhotometryError: No WCS, the target off the frame, no reference stars.
    """
    options = options or PhotometryOptions()
    fr = prepare_frame(frame, fwhm=options.fwhm)
    table = photometry_table(
        fr,
        ra,
        dec,
        catalog=catalog,
        names=[target_name],
        colours=[colour] if colour is not None else None,
        options=options,
    )
    return measurement_of(table[0], table, fr, frame_name=frame_name)


def measurement_of(
    row: Any, table: QTable, fr: PreparedFrame, *, frame_name: str | None
) -> Measurement:
    """One row of :func:`photometry_table` as a :class:`Measurement`."""
    date_obs, mjd = start_and_mid_mjd(fr.header, fr.exptime)
    mag = float(row["mag"].value)
    detected = math.isfinite(mag)
    return Measurement(
        target_name=str(row["name"]),
        frame_basename=frame_name or fr.name or "unknown",
        date_obs=date_obs,
        mjd=mjd,
        band=fr.band,
        flux_ujy=float(row["flux_ujy"].value),
        flux_err_ujy=float(row["flux_err_ujy"].value),
        snr=float(row["snr"]),
        mag=mag if detected else None,
        mag_err=float(row["mag_err"].value) if detected else None,
        limit_mag_5sigma=float(row["limit_mag_5sigma"].value),
        zero_point=float(table.meta["zero_point"]),
        zero_point_err=float(table.meta["zero_point_err"]),
        n_ref_stars=int(table.meta["n_ref_stars"]),
        method=table.meta["method"],
        telescope=str(fr.header.get("TELID", "")) or None,
        instrument=str(fr.header.get("INSTRUME", "")) or None,
        exposure_time_s=fr.exptime,
        flags=int(row["flags"]),
    )


def targets_on_frame(
    fr: PreparedFrame, targets: Sequence[tuple[str, float, float]], margin_px: float
) -> tuple[SkyCoord, list[str]]:
    """The targets that lie on the frame, at least ``margin_px`` from its edge.

    Args:
        fr: The frame, with its WCS.
        targets: ``(name, ra, dec)`` of each target (degrees).
        margin_px: Targets closer than this to the frame's edge are left out.

    Returns:
        The coordinates and names of the targets on the frame, in the order given (both empty
        when none is on it).
    """
    if not targets:
        return SkyCoord([], [], unit="deg"), []
    coords = SkyCoord([t[1] for t in targets], [t[2] for t in targets], unit="deg")
    x, y = fr.wcs.all_world2pix(coords.ra.deg, coords.dec.deg, 0)
    ny, nx = fr.shape
    on = (x >= margin_px) & (x <= nx - 1 - margin_px) & (y >= margin_px) & (y <= ny - 1 - margin_px)
    return coords[on], [t[0] for t, k in zip(targets, on, strict=True) if k]


def measure_targets(
    frame: AnyFrame,
    targets: Sequence[tuple[str, float, float]],
    *,
    catalog: CatalogLike = None,
    frame_name: str | None = None,
    margin_px: float = 10.0,
    options: PhotometryOptions | None = None,
) -> list[Measurement]:
    """Forced photometry of every target that lies on the frame, with one zero-point fit.

    Args:
        frame: A BANZAI-reduced or calibrated frame.
        targets: ``(name, ra, dec)`` of each target (degrees).
        catalog: Reference stars, as for :func:`measure`.
        frame_name: Frame basename recorded in the measurements.
        margin_px: Targets closer than this to the frame's edge are not measured.
        options: Method, aperture radius, FWHM (default: apertures of 1 FWHM).

    Returns:
        One measurement per target on the frame (targets off the frame are left out: a field
        frame covers only some of an event's targets).

    Raises:
        PhotometryError: No WCS, no reference stars.
    """
    options = options or PhotometryOptions()
    fr = prepare_frame(frame, fwhm=options.fwhm)
    coords, names = targets_on_frame(fr, targets, margin_px)
    if not names:
        return []
    table = photometry_table(
        fr,
        coords,
        catalog=catalog,
        names=names,
        options=options,
    )
    return [measurement_of(row, table, fr, frame_name=frame_name) for row in table]
