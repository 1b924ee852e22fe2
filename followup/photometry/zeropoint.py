"""Zero points: reference stars measured exactly like a target, and a clipped weighted fit."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle
from astropy.table import QTable, Table

from followup.catalogs import (
    COLOUR_INDEX,
    FrameCatalog,
    LocalCatalog,
    ReferenceCatalog,
    TableCatalog,
    catalog_band,
    normalise_catalog,
)
from followup.exceptions import CatalogError, PhotometryError
from followup.photometry.aperture import aperture_correction, measure_apertures
from followup.photometry.detection import detect_sources
from followup.photometry.flags import PhotometryFlag
from followup.photometry.frame import (
    AnyFrame,
    PreparedFrame,
    pixel_scale,
    prepare_frame,
    with_typical_fwhm,
)
from followup.photometry.fwhm import ensure_fwhm
from followup.photometry.options import PhotometryOptions
from followup.photometry.psf import fit_fwhm, measure_psf

__all__ = [
    "CatalogLike",
    "ZeroPoint",
    "calibrate_zero_point",
    "fit_zero_point",
    "header_zero_point",
    "instrumental_fluxes",
    "reference_table",
]

_MIN_COLOUR_STARS = 10
"""Fewer reference stars with both colours leave the (automatic) colour term off."""

CatalogLike = ReferenceCatalog | Table | str | None
"""Reference stars: a provider, a table (normalised or Vizier columns), a file path, or None for
the frame's own CAT."""


@dataclass(frozen=True)
class ZeroPoint:
    """A photometric zero point: AB magnitude of 1 e-/s (of total flux, at colour 0).

    Attributes:
        zero_point: The zero point in mag.
        zero_point_err: Its 1-sigma error in mag (error of the weighted mean, inflated by
            sqrt(reduced chi^2) when the scatter exceeds the errors; includes a systematic error
            passed in, such as BANZAI's ``L1ZPERR``).
        n_stars: Stars kept after clipping.
        scatter: Robust standard deviation of the residuals (mag).
        colour_coefficient: Colour term C in ``m_ref = ZP + m_inst + C * colour`` (0 if not fitted).
        colour_coefficient_err: Its error.
        colour_covariance: Covariance of the zero point and the colour coefficient (mag^2), for
            the zero point's error at a colour other than 0.
        colour: The colour used, e.g. ``r-i``, or None.
        reference_colour: Weighted mean colour of the stars used (0 without a colour term):
            targets of unknown colour are taken at it, so the term adds nothing for them.
        aperture_correction: Factor from aperture to total flux (1 for PSF photometry).
        source: Where the reference magnitudes came from.
        fwhm: FWHM (pixels) the stars were measured with; targets must use the same.
    """

    zero_point: float
    zero_point_err: float
    n_stars: int
    scatter: float
    colour_coefficient: float = 0.0
    colour_coefficient_err: float = 0.0
    colour_covariance: float = 0.0
    colour: str | None = None
    reference_colour: float = 0.0
    aperture_correction: float = 1.0
    source: str = ""
    fwhm: float | None = None

    def error_at(self, colour: np.ndarray | float) -> np.ndarray:
        """The zero point's error (mag) at a colour: the fit is tightest at its stars' colours."""
        c = np.asarray(colour, float)
        var = (
            self.zero_point_err**2
            + 2 * c * self.colour_covariance
            + c**2 * self.colour_coefficient_err**2
        )
        return np.sqrt(np.clip(var, 0.0, None))


def fit_zero_point(
    instrumental_mag: np.ndarray,
    instrumental_err: np.ndarray,
    reference_mag: np.ndarray,
    reference_err: np.ndarray,
    *,
    colour: np.ndarray | None = None,
    sigma: float = 3.0,
    max_iterations: int = 10,
) -> tuple[ZeroPoint, np.ndarray]:
    """Zero point as a sigma-clipped inverse-variance mean of ``reference - instrumental``.

    With ``colour``, a weighted linear fit ``reference - instrumental = ZP + C * colour`` instead.
    Clipping uses normalised residuals ``(dm - model) / sigma_i`` against ``sigma`` times their
    robust scatter (at least 1), iterated until nothing changes.

    Args:
        instrumental_mag: ``-2.5 log10(flux / exptime)`` (mag).
        instrumental_err: Its error (mag).
        reference_mag: Catalogue magnitudes (mag).
        reference_err: Catalogue errors (mag).
        colour: Optional catalogue colour per star for a colour term.
        sigma: Clipping threshold.
        max_iterations: Clipping iterations.

    Returns:
        The zero point and the boolean array of stars used.

    Raises:
        PhotometryError: Fewer than 2 usable stars (3 with a colour term).
    """
    inst = np.asarray(instrumental_mag, float)
    ref = np.asarray(reference_mag, float)
    dm = ref - inst
    err = np.hypot(np.asarray(instrumental_err, float), np.asarray(reference_err, float))
    col = np.asarray(colour, float) if colour is not None else np.zeros_like(dm)
    ok = np.isfinite(dm) & np.isfinite(err) & (err > 0) & np.isfinite(col)
    need = 3 if colour is not None else 2
    if ok.sum() < need:
        raise PhotometryError(
            f"no reference stars: {int(ok.sum())} usable, {need} needed for a zero point"
        )
    use = ok.copy()
    params = np.zeros(2)
    cov = np.zeros((2, 2))
    for _ in range(max_iterations):
        w = 1.0 / err[use] ** 2
        if colour is not None:
            design = np.column_stack([np.ones(use.sum()), col[use]])
            normal = design.T @ (design * w[:, None])
            cov = np.linalg.inv(normal)
            params = cov @ (design.T @ (w * dm[use]))
        else:
            cov = np.array([[1.0 / w.sum(), 0.0], [0.0, 0.0]])
            params = np.array([np.sum(w * dm[use]) / w.sum(), 0.0])
        resid = (dm - params[0] - params[1] * col) / err
        scale = max(1.4826 * float(np.median(np.abs(resid[use]))), 1.0)
        new_use = ok & (np.abs(resid) <= sigma * scale)
        if new_use.sum() < need or np.array_equal(new_use, use):
            break
        use = new_use
    dof = max(int(use.sum()) - (2 if colour is not None else 1), 1)
    residual = dm[use] - params[0] - params[1] * col[use]
    inflate = math.sqrt(max(float(np.sum((residual / err[use]) ** 2) / dof), 1.0))
    zp = ZeroPoint(
        zero_point=float(params[0]),
        zero_point_err=float(math.sqrt(cov[0, 0]) * inflate),
        n_stars=int(use.sum()),
        scatter=1.4826 * float(np.median(np.abs(residual - np.median(residual)))),
        colour_coefficient=float(params[1]),
        colour_coefficient_err=float(math.sqrt(cov[1, 1]) * inflate) if colour is not None else 0.0,
        colour_covariance=float(cov[0, 1] * inflate**2),
    )
    return zp, use


def reference_table(frame: PreparedFrame, catalog: CatalogLike) -> tuple[Table, str, float]:
    """Reference stars on the frame (normalised schema), the source name and a systematic error.

    Raises:
        PhotometryError: No catalogue and no CAT, or a catalogue that fails.
    """
    ny, nx = frame.shape
    centre = frame.wcs.pixel_to_world((nx - 1) / 2.0, (ny - 1) / 2.0)
    radius = Angle(math.hypot(nx, ny) / 2.0 * pixel_scale(frame.wcs) * 1.02, u.arcsec)
    systematic = 0.0
    provider: Any
    if catalog is None:
        if frame.catalog is None:
            raise PhotometryError(
                f"no reference stars: frame {frame.label} has no CAT and no catalogue was given"
            )
        try:
            provider = FrameCatalog(frame.catalog, frame.header)
        except CatalogError as exc:
            raise PhotometryError(f"no reference stars: {exc}") from exc
        systematic = provider.zero_point_error
    elif isinstance(catalog, Table):
        name = catalog.meta.get("catalog", catalog.meta.get("name", "table"))
        provider = TableCatalog(catalog, name=str(name))
    elif isinstance(catalog, str):
        provider = LocalCatalog(catalog)
    else:
        provider = catalog
    try:
        table = provider.query(centre, radius)
        if not {"ra", "dec", "g", "r", "i", "z"} <= set(table.colnames):
            # Providers may answer in Vizier's columns: normalise them here.
            table = normalise_catalog(table, name=str(getattr(provider, "name", "")))
    except CatalogError as exc:
        raise PhotometryError(f"no reference stars: {exc}") from exc
    return table, str(getattr(provider, "name", "")), systematic


def _select_reference_stars(
    frame: PreparedFrame, table: Table, band: str
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of usable reference stars (on the frame, isolated) and their pixel positions."""
    if len(table) == 0:
        return np.zeros(0, int), np.zeros((0, 2))
    x, y = frame.wcs.all_world2pix(
        np.asarray(table["ra"], float), np.asarray(table["dec"], float), 0
    )
    ny, nx = frame.shape
    margin = 5.0 * frame.fwhm + 1
    mag = np.asarray(table[band], float)
    err = np.asarray(table[f"{band}_err"], float)
    inside = (x > margin) & (y > margin) & (x < nx - 1 - margin) & (y < ny - 1 - margin)
    ok = inside & np.isfinite(mag) & np.isfinite(err) & (err < 0.2)
    # Isolation: no catalogued star within 3 FWHM that is less than 2.5 mag fainter.
    if ok.any():
        from scipy.spatial import cKDTree

        all_xy = np.column_stack([x, y])
        finite = np.isfinite(all_xy).all(axis=1)
        tree = cKDTree(all_xy[finite])
        index = np.nonzero(finite)[0]
        for k in np.nonzero(ok)[0]:
            for j in tree.query_ball_point(all_xy[k], 3.0 * frame.fwhm):
                other = index[j]
                if other != k and (not np.isfinite(mag[other]) or mag[other] < mag[k] + 2.5):
                    ok[k] = False
                    break
    sel = np.nonzero(ok)[0]
    return sel, np.column_stack([x[sel], y[sel]])


def instrumental_fluxes(
    frame: PreparedFrame, xy: np.ndarray, options: PhotometryOptions
) -> tuple[np.ndarray, np.ndarray, np.ndarray, QTable]:
    """Total-flux estimates (before aperture correction), errors, flags and the raw table."""
    if options.method == "psf":
        table = measure_psf(frame, xy, background=options.local_background)
        flux, err = table["psf_flux"], table["psf_flux_err"]
    else:
        radius = options.aperture_radius if options.aperture_radius is not None else frame.fwhm
        table = measure_apertures(frame, xy, radius=radius, background=options.local_background)
        flux, err = table["aperture_flux"], table["aperture_flux_err"]
    return (
        np.asarray(flux.value, float),
        np.asarray(err.value, float),
        np.asarray(table["flags"], int),
        table,
    )


def _stars_on_frame(
    fr: PreparedFrame, table: Table, band: str, options: PhotometryOptions
) -> tuple[PreparedFrame, np.ndarray, np.ndarray]:
    """Reference stars on the frame, with the FWHM they are measured with.

    Raises:
        PhotometryError: Fewer than 2 usable stars; no FWHM can be measured.
    """
    sel, xy = _select_reference_stars(with_typical_fwhm(fr), table, band)
    if len(sel) < 2:
        raise PhotometryError(
            f"no reference stars: {len(sel)} usable catalogue stars on frame {fr.label}"
        )
    if not fr.fwhm_known:
        fr = ensure_fwhm(fr, xy)
    elif options.method == "psf" and options.fwhm is None:
        # The PSF width matters for PSF fluxes: fit it on the frame's bright stars rather than
        # trusting the header.
        fitted = fit_fwhm(fr, xy)
        if fitted is not None:
            fr = replace(fr, fwhm=fitted)
    return fr, sel, xy


def calibrate_zero_point(
    frame: AnyFrame, catalog: CatalogLike = None, *, options: PhotometryOptions | None = None
) -> tuple[ZeroPoint, QTable]:
    """Zero point of a frame from reference stars measured exactly like a target.

    Args:
        frame: A calibrated frame (electrons, WCS, FILTER, EXPTIME).
        catalog: A reference catalogue provider, a table (normalised or Vizier columns), a file
            path, or None for the frame's own CAT (BANZAI ``mag``; ``L1ZPERR`` is added as a
            systematic error).
        options: Method, aperture radius, FWHM and colour term (default: apertures of 1 FWHM,
            a colour term where the catalogue has the colours).

    Returns:
        The zero point and a QTable of every reference star on the frame with ``ra``, ``dec``
        (deg), ``x``, ``y`` (pix), ``flux``, ``flux_err`` (electron, total), ``instrumental_mag``,
        ``reference_mag``, ``reference_err`` (mag), ``flags`` and ``used`` (in the final fit).

    Raises:
        PhotometryError: No WCS, too few reference stars, unknown filter.
    """
    options = options or PhotometryOptions()
    fr = prepare_frame(frame, fwhm=options.fwhm)
    try:
        band = catalog_band(fr.band)
    except CatalogError as exc:
        raise PhotometryError(str(exc)) from exc
    table, source, systematic = reference_table(fr, catalog)
    fr, sel, xy = _stars_on_frame(fr, table, band, options)
    flux, flux_err, flags, raw = instrumental_fluxes(fr, xy, options)
    apcorr, modelled = 1.0, False
    if options.method == "aperture":
        radius = options.aperture_radius if options.aperture_radius is not None else fr.fwhm
        apcorr, modelled = aperture_correction(fr, xy, flux, flux_err, flags, radius)
    total, total_err = flux * apcorr, flux_err * apcorr
    clean = (
        flags & (PhotometryFlag.MASKED_PIXELS | PhotometryFlag.SATURATED | PhotometryFlag.NEAR_EDGE)
    ) == 0
    if fr.saturate is not None:
        # Stay clear of the non-linear regime: brightest pixel below 80 % of saturation.
        level = np.asarray(raw["peak"].value, float) + np.asarray(raw["background"].value, float)
        clean &= ~(np.nan_to_num(level, nan=np.inf) > 0.8 * fr.saturate)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = total / total_err
        inst_mag = -2.5 * np.log10(total / fr.exptime)
    ref_mag = np.asarray(table[band], float)[sel]
    ref_err = np.asarray(table[f"{band}_err"], float)[sel]
    usable = clean & np.isfinite(snr) & (snr >= 10)
    colour = colour_name = None
    c1, c2 = COLOUR_INDEX[band]
    if options.colour_term is not False and {c1, c2} <= set(table.colnames):
        star_colour = np.asarray(table[c1], float)[sel] - np.asarray(table[c2], float)[sel]
        known = usable & np.isfinite(star_colour)
        # Automatic: only with colours for most stars, enough of them and of a range to fit a slope.
        enough = known.sum() >= _MIN_COLOUR_STARS and known.sum() >= 0.8 * usable.sum()
        if options.colour_term or (enough and float(np.std(star_colour[known])) > 0.05):
            colour, colour_name = star_colour, f"{c1}-{c2}"
            usable = known
    if usable.sum() < 2:
        raise PhotometryError(
            f"no reference stars: {int(usable.sum())} clean stars with S/N >= 10 on frame {fr.label}"
        )
    zp, used_sub = fit_zero_point(
        inst_mag[usable],
        1.0857 / snr[usable],
        ref_mag[usable],
        ref_err[usable],
        colour=colour[usable] if colour is not None else None,
    )
    used = np.zeros(len(sel), bool)
    used[np.nonzero(usable)[0][used_sub]] = True
    reference_colour = 0.0
    if colour is not None:
        weight = (snr[used] / 1.0857) ** 2
        reference_colour = float(np.sum(weight * colour[used]) / np.sum(weight))
    zp = replace(
        zp,
        zero_point_err=math.hypot(zp.zero_point_err, systematic),
        colour=colour_name,
        reference_colour=reference_colour,
        aperture_correction=apcorr,
        source=source,
        fwhm=fr.fwhm,
    )
    meta = {"band": fr.band, "method": options.method, "aperture_correction": apcorr}
    stars = QTable(meta={**meta, "aperture_correction_modelled": modelled})
    stars["ra"] = np.asarray(table["ra"], float)[sel] * u.deg
    stars["dec"] = np.asarray(table["dec"], float)[sel] * u.deg
    stars["x"] = xy[:, 0] * u.pix
    stars["y"] = xy[:, 1] * u.pix
    stars["flux"] = total * u.electron
    stars["flux_err"] = total_err * u.electron
    stars["instrumental_mag"] = inst_mag * u.mag
    stars["reference_mag"] = ref_mag * u.mag
    stars["reference_err"] = ref_err * u.mag
    stars["flags"] = flags | (PhotometryFlag.APERTURE_CORRECTION_MODEL if modelled else 0)
    stars["used"] = used
    return zp, stars


def _frame_stars(frame: PreparedFrame) -> np.ndarray:
    """Pixel positions (n, 2) of the frame's clean point sources, brightest first.

    BANZAI's CAT when the frame has one (unflagged rows), else the frame's own detections at
    S/N >= 20 that are not sharper than a star.
    """
    cat = frame.catalog
    if cat is not None and len(cat) and {"x", "y", "flux"} <= set(cat.colnames):
        ok = np.isfinite(np.asarray(cat["flux"], float))
        if "flag" in cat.colnames:
            ok &= np.asarray(cat["flag"]) == 0
        order = np.argsort(-np.asarray(cat["flux"], float)[ok])
        x = np.asarray(cat["x"], float)[ok][order] - 1  # the CAT is 1-based
        y = np.asarray(cat["y"], float)[ok][order] - 1
        return np.column_stack([x, y])[:200]
    found = detect_sources(frame, snr_min=20.0)
    found = found[(found["flags"] == 0) & (np.asarray(found["sharpness"]) < 2.0)]
    found.sort("snr", reverse=True)
    return np.column_stack([np.asarray(found["x"].value), np.asarray(found["y"].value)])[:200]


def header_zero_point(frame: PreparedFrame, options: PhotometryOptions) -> ZeroPoint:
    """The header's ``L1ZP`` (and ``L1ZPERR``) as a zero point, for frames without reference stars.

    Aperture fluxes are corrected to total flux with the correction measured on the frame's own
    stars (its CAT, else its detections), or that of a Moffat profile fitted to them when too few
    are bright (:func:`~followup.photometry.aperture.aperture_correction`).

    Raises:
        PhotometryError: No ``L1ZP`` in the header, or no FWHM can be measured.
    """
    if "L1ZP" not in frame.header:
        raise PhotometryError(f"frame {frame.label} has no L1ZP")
    fr = ensure_fwhm(frame)
    apcorr = 1.0
    if options.method == "aperture":
        radius = options.aperture_radius if options.aperture_radius is not None else fr.fwhm
        xy = _frame_stars(fr)
        if len(xy):
            table = measure_apertures(fr, xy, radius=radius)
            apcorr, _ = aperture_correction(
                fr,
                xy,
                np.asarray(table["aperture_flux"].value, float),
                np.asarray(table["aperture_flux_err"].value, float),
                np.asarray(table["flags"], int),
                radius,
            )
        else:
            apcorr, _ = aperture_correction(
                fr, np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros(0, int), radius
            )
    return ZeroPoint(
        zero_point=float(fr.header["L1ZP"]),
        zero_point_err=float(fr.header.get("L1ZPERR", 0.0) or 0.0),
        n_stars=0,
        scatter=float("nan"),
        aperture_correction=apcorr,
        source="header L1ZP",
        fwhm=fr.fwhm,
    )
