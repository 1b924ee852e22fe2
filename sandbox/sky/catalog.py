"""The BANZAI-like source catalogue (``CAT``) of a reduced frame, and its ``L1*`` keywords.

Sources are measured where the sky put them (known positions): aperture fluxes, local
background, windowed moments; then flagged, deblended, calibrated against the reference stars
they match (zero point with an optional colour term) and summarised (FWHM, ellipticity).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.table import Table
from astropy.wcs import WCS

from sandbox.sky.model import BPM_BAD, BPM_COSMIC_RAY, BPM_SATURATED, COLOUR, FWHM_TO_SIGMA

__all__ = ["ReducedPixels", "measure_catalog"]

_CHUNK = 400
_KEYS = (
    "flux",
    "flux_err",
    "flags",
    "det_flux",
    "det_err",
    "bkg",
    "mx",
    "my",
    "x2",
    "y2",
    "xy",
    "peak",
)


@dataclass(frozen=True)
class ReducedPixels:
    """A reduced frame's pixels and what measuring its sources needs to know.

    Attributes:
        sci: Science image (electrons).
        err: Its error image.
        bpm: Its bad-pixel mask (``BPM_*`` bits).
        fwhm_px: Seeing FWHM in pixels.
        exptime: Exposure time in seconds.
        sky_e: Sky level of the exposure (electrons per pixel).
        read_noise_e: Read noise (electrons).
        pixel_scale: Arcseconds per pixel.
        band: Filter code.
        psf_beta: Moffat beta of the PSF; None for a Gaussian PSF.
        nan_flagged_fwhm: Write ``fwhm = NaN`` on rows with a nonzero flag (BANZAI 1.40).
    """

    sci: np.ndarray
    err: np.ndarray
    bpm: np.ndarray
    fwhm_px: float
    exptime: float
    sky_e: float
    read_noise_e: float
    pixel_scale: float
    band: str
    psf_beta: float | None = None
    nan_flagged_fwhm: bool = False

    def enclosed(self, radius: float) -> float:
        """Fraction of a point source's flux within ``radius`` pixels."""
        if self.psf_beta is None:
            return 1.0 - math.exp(-(radius**2) / (2.0 * self.sigma**2))
        from sandbox.sky.realism import moffat_alpha, moffat_enclosed

        alpha = moffat_alpha(self.fwhm_px, self.psf_beta)
        return float(moffat_enclosed(radius, alpha, self.psf_beta))

    @property
    def sigma(self) -> float:
        """Gaussian sigma of the PSF in pixels."""
        return self.fwhm_px * FWHM_TO_SIGMA

    @property
    def r_kron(self) -> float:
        """Kron radius (2.5 Kron units) of a Gaussian PSF, in pixels."""
        return 2.5 * self.sigma * math.sqrt(math.pi / 2.0)


def measure_catalog(
    frame: ReducedPixels,
    sources: dict[str, np.ndarray],
    wcs: WCS,
    rng: Callable[[str], np.random.Generator],
) -> tuple[Table, dict[str, tuple[object, str]]]:
    """Measure every source on the frame like BANZAI's SourceDetector and fit the zero point.

    Args:
        frame: The reduced frame.
        sources: The sky's sources (``x``, ``y``, ``flux``, ``in_ref``, ``ref_mag``,
            ``ref_err``, ``ref_colour``), in pixels and electrons.
        wcs: The frame's WCS.
        rng: The generator of a named draw (``deblend-flux``, ``deblend``) of this frame.

    Returns:
        The catalogue and the ``L1*`` header keywords as (value, comment).
    """
    idx = _measurable(frame, sources)
    radii = [frame.r_kron, frame.fwhm_px] + [
        0.5 * d / frame.pixel_scale for d in (1, 2, 3, 4, 5, 6)
    ]
    m = _measure(frame, sources, idx, radii)
    positions = np.column_stack([sources["x"][idx], sources["y"][idx]])
    _deblend(
        m,
        frame,
        sources["flux"][idx],
        positions,
        radii,
        rng("deblend-flux"),
        point=sources["kind"][idx] != 2,
    )
    detected, flag, mx, my = _flag(m, frame, sources, idx, rng("deblend"))
    l1 = _zero_point(m, frame, sources, idx, detected & (flag == 0))
    shapes = _shapes(m, frame.sigma)
    l1 |= _image_quality(m, frame, shapes, detected & (flag == 0))
    keep = np.nonzero(detected)[0]
    xs = sources["x"][idx][keep] + mx[keep]
    ys = sources["y"][idx][keep] + my[keep]
    world = wcs.all_pix2world(np.column_stack([xs, ys]), 0) if len(keep) else np.zeros((0, 2))
    peaks = np.rint(positions).astype(int)
    table = _table(m, shapes, keep, (xs, ys), world, peaks[keep], flag[keep])
    if frame.nan_flagged_fwhm:
        table["fwhm"][table["flag"] != 0] = np.nan
    if "L1ZP" in l1:
        zp = float(l1["L1ZP"][0])  # type: ignore[arg-type]
        with np.errstate(invalid="ignore", divide="ignore"):
            table["mag"] = zp - 2.5 * np.log10(table["flux"] / frame.exptime)
            table["magerr"] = 1.0857 * table["fluxerr"] / table["flux"]
    for col in ("ra", "dec"):
        table[col].unit = u.deg
    return table, l1


def _measurable(frame: ReducedPixels, sources: dict[str, np.ndarray]) -> np.ndarray:
    """Indices of the sources on the frame that could reach the detection threshold.

    A cheap prediction from the true flux; the detection itself is decided on the pixels.
    """
    ny, nx = frame.sci.shape
    x, y, flux = sources["x"], sources["y"], sources["flux"]
    inside = (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
    noise2 = math.pi * frame.fwhm_px**2 * (frame.sky_e + frame.read_noise_e**2)
    expected = 0.937 * flux / np.sqrt(noise2 + 0.937 * flux)
    return np.nonzero(inside & (expected >= 1.5))[0]


def _measure(
    frame: ReducedPixels, sources: dict[str, np.ndarray], idx: np.ndarray, radii: list[float]
) -> dict[str, np.ndarray]:
    """Aperture fluxes, background and moments of the sources ``idx``, in chunks."""
    fwhm = frame.fwhm_px
    r_in, r_out = max(3.0 * fwhm, frame.r_kron + 2), max(5.0 * fwhm, frame.r_kron + 8)
    half = math.ceil(r_out) + 1
    padded = (
        np.pad(frame.sci, half, mode="constant", constant_values=np.nan),
        np.pad(frame.err, half, mode="constant", constant_values=np.nan),
        np.pad(frame.bpm, half, mode="constant", constant_values=BPM_BAD),
    )
    chunks = [
        _measure_sources(
            padded,
            half,
            sources["x"][idx[k : k + _CHUNK]],
            sources["y"][idx[k : k + _CHUNK]],
            sigma=frame.sigma,
            radii=radii,
            annulus=(r_in, r_out),
        )
        for k in range(0, len(idx), _CHUNK)
    ]
    if chunks:
        return {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
    return {
        key: np.zeros((0, len(radii))) if key in ("flux", "flux_err", "flags") else np.zeros(0)
        for key in _KEYS
    }


def _deblend(
    m: dict[str, np.ndarray],
    frame: ReducedPixels,
    true_flux: np.ndarray,
    xy: np.ndarray,
    radii: list[float],
    noise: np.random.Generator,
    point: np.ndarray | None = None,
) -> None:
    """Give sources with a close neighbour the fluxes a deblender reports (in place).

    Measuring at known positions adds a close neighbour's light to a faint source; BANZAI's
    deblender splits it. Sources with a neighbour within 3 FWHM get their own flux in each
    aperture (the PSF's enclosed fraction of their true flux) plus the measured noise; extended
    sources (``point`` False: galaxies) keep what was measured. Without
    this, faint neighbours of bright stars would pass for bright uncatalogued sources (false
    transient candidates).
    """
    if len(xy) <= 1:
        return
    from scipy.spatial import cKDTree

    close = cKDTree(xy).query_pairs(3.0 * frame.fwhm_px, output_type="ndarray")
    near = np.zeros(len(xy), bool)
    near[np.unique(close.ravel())] = True
    if point is not None:
        near &= point
    if not near.any():
        return
    own = true_flux[near]
    for col, radius in enumerate(radii):
        enclosed = own * frame.enclosed(radius)
        m["flux"][near, col] = enclosed + noise.normal(0, 1, near.sum()) * m["flux_err"][near, col]


def _flag(
    m: dict[str, np.ndarray],
    frame: ReducedPixels,
    sources: dict[str, np.ndarray],
    idx: np.ndarray,
    jitter: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Detection, BANZAI's flag bits, and centroid offsets (mx, my) of the measured sources.

    Blended: another detected source within 3 FWHM. A deblender separates them; the windowed
    centroid would be pulled towards the neighbour, so blended sources get the centroid a
    deblended fit would give: the true position plus its statistical error.
    """
    ny, nx = frame.sci.shape
    flux, pix_flags = m["flux"][:, 0], m["flags"][:, 0].astype(int)
    det_flux, det_err = m["det_flux"], m["det_err"]
    x, y = sources["x"][idx], sources["y"][idx]
    detected = (det_flux / det_err >= 3.0) & (flux > 0)
    flag = np.zeros(len(idx), np.int16)
    flag[(pix_flags & BPM_BAD) > 0] |= 1
    flag[(pix_flags & BPM_SATURATED) > 0] |= 4
    flag[(pix_flags & BPM_COSMIC_RAY) > 0] |= 16
    r_kron = frame.r_kron
    flag[(x < r_kron) | (y < r_kron) | (x > nx - 1 - r_kron) | (y > ny - 1 - r_kron)] |= 8
    sel = np.nonzero(detected)[0]
    blended = np.zeros(len(idx), bool)
    if len(sel) > 1:
        from scipy.spatial import cKDTree

        tree = cKDTree(np.column_stack([x[sel], y[sel]]))
        pairs = tree.query_pairs(3.0 * frame.fwhm_px, output_type="ndarray")
        if len(pairs):
            blended[sel[np.unique(pairs.ravel())]] = True
            flag[blended] |= 2
    sigma = frame.sigma
    with np.errstate(invalid="ignore", divide="ignore"):
        centroid_err = np.clip(sigma / np.maximum(det_flux / det_err, 1.0), 0.01, sigma)
    mx = np.where(blended, jitter.normal(0, 1, len(idx)) * centroid_err, m["mx"])
    my = np.where(blended, jitter.normal(0, 1, len(idx)) * centroid_err, m["my"])
    return detected, flag, mx, my


def _zero_point(
    m: dict[str, np.ndarray],
    frame: ReducedPixels,
    sources: dict[str, np.ndarray],
    idx: np.ndarray,
    clean: np.ndarray,
) -> dict[str, tuple[object, str]]:
    """BANZAI's zero point from the reference stars among the clean detections.

    Reference stars matched, flag 0, clipped weighted fit with a colour term (kept only when
    significant), magnitude of 1 e-/s of the Kron flux. Stars near the detection limit are left
    out: selected on their measured flux they would bias the fit (and fake a colour term, faint
    stars being redder).
    """
    flux, flux_err = m["flux"][:, 0], m["flux_err"][:, 0]
    ref, pos = idx[clean], np.nonzero(clean)[0]
    usable = (
        sources["in_ref"][ref]
        & np.isfinite(sources["ref_mag"][ref])
        & (flux[pos] / flux_err[pos] > 30)
    )
    ref, pos = ref[usable], pos[usable]
    if len(ref) < 3:
        return {}
    inst_mag = -2.5 * np.log10(flux[pos] / frame.exptime)
    dm = sources["ref_mag"][ref] - inst_mag
    sig = np.hypot(sources["ref_err"][ref], 1.0857 * flux_err[pos] / flux[pos])
    colour = sources["ref_colour"][ref]
    zp, zp_err, coef, coef_err = _fit_line(dm, sig, colour)
    if abs(coef) < 3 * coef_err:
        zp, zp_err, coef, coef_err = _fit_line(dm, sig, np.zeros_like(colour))
    c1, c2 = COLOUR[frame.band]
    return {
        "L1ZP": (round(zp, 4), "Instrumental zeropoint [mag]"),
        "L1ZPERR": (round(zp_err, 4), "Error on Instrumental zeropoint [mag]"),
        "L1COLORU": (f"{c1}-{c2}", "Color used for calibration"),
        "L1COLOR": (round(coef, 4), "Color coefficient [mag]"),
        "L1COLERR": (round(coef_err, 4), "Error on color coefficient [mag]"),
    }


def _shapes(m: dict[str, np.ndarray], sigma: float) -> dict[str, np.ndarray]:
    """FWHM, axes, angle and ellipticity of each source from its windowed second moments.

    For a Gaussian source of sigma s seen through a Gaussian window of sigma w, the measured
    second moment is s^2 w^2 / (s^2 + w^2): invert it.
    """
    x2, y2, xy = m["x2"], m["y2"], m["xy"]
    w2 = (2 * sigma) ** 2
    m2 = np.clip(0.5 * (x2 + y2), 0.05, 0.99 * w2)
    s2 = m2 * w2 / (w2 - m2)
    common = np.sqrt(np.maximum(((x2 - y2) / 2) ** 2 + xy**2, 0))
    a = np.sqrt(np.maximum((x2 + y2) / 2 + common, 1e-6))
    b = np.sqrt(np.maximum((x2 + y2) / 2 - common, 1e-6))
    return {
        "s2": s2,
        "fwhm": 2.0 * np.sqrt(2.0 * np.log(2.0) * s2),
        "a": a,
        "b": b,
        "theta": 0.5 * np.degrees(np.arctan2(2 * xy, x2 - y2)),
        "ellipticity": 1.0 - b / a,
    }


def _image_quality(
    m: dict[str, np.ndarray],
    frame: ReducedPixels,
    shapes: dict[str, np.ndarray],
    clean: np.ndarray,
) -> dict[str, tuple[object, str]]:
    """``L1FWHM``, ``L1FWTM``, ``L1ELLIP`` and ``L1ELLIPA`` from the bright clean sources."""
    good = clean & (m["flux"][:, 0] / m["flux_err"][:, 0] > 20)
    good_fwhm = shapes["fwhm"][good]
    fwhm_px = float(np.median(good_fwhm)) if len(good_fwhm) >= 3 else frame.fwhm_px
    ellipticity, theta = shapes["ellipticity"][good], shapes["theta"][good]
    return {
        "L1FWHM": (round(fwhm_px * frame.pixel_scale, 3), "[arcsec] Frame FWHM in arcsec"),
        "L1FWTM": (
            round(fwhm_px * frame.pixel_scale * 1.8226, 3),
            "[arcsec] Frame FWTM in arcsec",
        ),
        "L1ELLIP": (
            round(float(np.median(ellipticity)) if len(ellipticity) else 0.0, 3),
            "Mean image ellipticity (1-B/A)",
        ),
        "L1ELLIPA": (
            round(float(np.median(theta)) if len(theta) else 0.0, 3),
            "[deg] PA of mean image ellipticity",
        ),
    }


def _table(
    m: dict[str, np.ndarray],
    shapes: dict[str, np.ndarray],
    keep: np.ndarray,
    centroid: tuple[np.ndarray, np.ndarray],
    world: np.ndarray,
    peaks: np.ndarray,
    flag: np.ndarray,
) -> Table:
    """The ``CAT`` table of the detected sources ``keep`` (BANZAI's columns, 1-based pixels)."""
    xs, ys = centroid
    cat = Table()
    cat["x"] = (xs + 1.0).astype(np.float64)
    cat["y"] = (ys + 1.0).astype(np.float64)
    cat["xwin"] = cat["x"]
    cat["ywin"] = cat["y"]
    cat["xpeak"] = (peaks[:, 0] + 1).astype(np.int32)
    cat["ypeak"] = (peaks[:, 1] + 1).astype(np.int32)
    cat["ra"] = world[:, 0]
    cat["dec"] = world[:, 1]
    cat["flux"] = m["flux"][:, 0][keep]
    cat["fluxerr"] = m["flux_err"][:, 0][keep]
    cat["peak"] = m["peak"][keep]
    for k in range(2, m["flux"].shape[1]):
        cat[f"fluxaper{k - 1}"] = m["flux"][:, k][keep]
        cat[f"fluxerr{k - 1}"] = m["flux_err"][:, k][keep]
    cat["background"] = m["bkg"][keep]
    cat["fwhm"] = shapes["fwhm"][keep]
    cat["fwtm"] = shapes["fwhm"][keep] * 1.8226
    for name in ("a", "b", "theta"):
        cat[name] = shapes[name][keep]
    cat["kronrad"] = np.full(len(keep), 2.5)
    cat["ellipticity"] = shapes["ellipticity"][keep]
    for frac, name in ((0.25, "fluxrad25"), (0.5, "fluxrad50"), (0.75, "fluxrad75")):
        cat[name] = np.sqrt(-2.0 * np.log(1.0 - frac)) * np.sqrt(shapes["s2"][keep])
    for name in ("x2", "y2", "xy"):
        cat[name] = m[name][keep]
    cat["flag"] = flag
    return cat


def _fit_line(
    y: np.ndarray, sigma: np.ndarray, colour: np.ndarray, *, clip: float = 3.0, iterations: int = 8
) -> tuple[float, float, float, float]:
    """Clipped weighted fit ``y = a + b * colour``; returns a, its error, b, its error."""
    ok = np.isfinite(y) & np.isfinite(sigma) & np.isfinite(colour) & (sigma > 0)
    a = b = 0.0
    cov = np.zeros((2, 2))
    fit_colour = bool(np.any(colour[ok] != 0))
    for _ in range(iterations):
        w = 1.0 / sigma[ok] ** 2
        if fit_colour:
            design = np.column_stack([np.ones(ok.sum()), colour[ok]])
            normal = design.T @ (design * w[:, None])
            cov = np.linalg.inv(normal)
            a, b = cov @ (design.T @ (w * y[ok]))
        else:
            cov = np.array([[1.0 / w.sum(), 0.0], [0.0, 0.0]])
            a, b = float(np.sum(w * y[ok]) / w.sum()), 0.0
        resid = (y - a - b * colour) / sigma
        scale = max(1.4826 * float(np.median(np.abs(resid[ok]))), 1.0)
        new_ok = np.isfinite(resid) & (np.abs(resid) < clip * scale)
        if new_ok.sum() < 3 or np.array_equal(new_ok, ok):
            break
        ok = new_ok
    chi2 = float(np.sum(((y[ok] - a - b * colour[ok]) / sigma[ok]) ** 2) / max(ok.sum() - 2, 1))
    inflate = math.sqrt(max(chi2, 1.0))
    return (
        float(a),
        float(math.sqrt(cov[0, 0]) * inflate),
        float(b),
        float(math.sqrt(cov[1, 1]) * inflate),
    )


def _measure_sources(
    padded: tuple[np.ndarray, np.ndarray, np.ndarray],
    half: int,
    x: np.ndarray,
    y: np.ndarray,
    *,
    sigma: float,
    radii: Sequence[float],
    annulus: tuple[float, float],
) -> dict[str, np.ndarray]:
    """Aperture fluxes, local background and windowed moments of sources at known positions.

    Apertures use an anti-aliased edge (weight ``clip(r + 0.5 - d, 0, 1)``); the background is
    the median of unflagged annulus pixels; errors add the background's uncertainty. Dead pixels
    are left out of the detection flux (radius ``radii[1]``) and the moments only. ``padded``
    holds the science, error and mask images padded by ``half`` pixels on every side.
    """
    import bottleneck as bn

    n = len(x)
    r_in, r_out = annulus
    pad_sci, pad_err, pad_bpm = padded
    ix = np.rint(x).astype(int)
    iy = np.rint(y).astype(int)
    offsets = np.arange(-half, half + 1)
    yy = iy[:, None, None] + offsets[None, :, None] + half
    xx = ix[:, None, None] + offsets[None, None, :] + half
    stamps = pad_sci[yy, xx]
    var_stamps = pad_err[yy, xx] ** 2
    bstamps = pad_bpm[yy, xx]
    dx = (ix[:, None, None] + offsets[None, None, :] - x[:, None, None]).astype(np.float32)
    dy = (iy[:, None, None] + offsets[None, :, None] - y[:, None, None]).astype(np.float32)
    rr = np.sqrt(dx**2 + dy**2)
    in_annulus = (rr >= r_in) & (rr <= r_out) & (bstamps == 0)
    ann = np.where(in_annulus, stamps, np.nan).reshape(n, -1)
    bkg = bn.nanmedian(ann, axis=1)
    bkg_std = 1.4826 * bn.nanmedian(np.abs(ann - bkg[:, None]), axis=1)
    n_ann = np.maximum(np.sum(np.isfinite(ann), axis=1), 1)
    sub = stamps - bkg[:, None, None]
    good = np.isfinite(sub) & np.isfinite(var_stamps)
    sub = np.where(good, sub, 0.0)
    var_stamps = np.where(good, var_stamps, 0.0)
    # BANZAI detects and centres a source on its segment, and a dead pixel, far below the sky,
    # is never in one: it takes from the Kron and aperture fluxes (summed without a mask) but
    # neither from the detection nor from the position.
    dead = ((bstamps & BPM_BAD) > 0) & (sub < 0)
    detection = np.where(good & ~dead, np.clip(radii[1] + 0.5 - rr, 0.0, 1.0), 0.0)
    det_flux = (detection * sub).sum(axis=(1, 2))
    det_err = np.sqrt(
        (detection * var_stamps).sum(axis=(1, 2))
        + (detection.sum(axis=(1, 2)) * 1.2533 * bkg_std) ** 2 / n_ann
    )
    fluxes = np.empty((n, len(radii)))
    errors = np.empty((n, len(radii)))
    flags = np.empty((n, len(radii)), np.int64)
    for k, radius in enumerate(radii):
        weight = np.where(good, np.clip(radius + 0.5 - rr, 0.0, 1.0), 0.0)
        area = weight.sum(axis=(1, 2))
        fluxes[:, k] = (weight * sub).sum(axis=(1, 2))
        errors[:, k] = np.sqrt(
            (weight * var_stamps).sum(axis=(1, 2)) + (area * 1.2533 * bkg_std) ** 2 / n_ann
        )
        flags[:, k] = np.bitwise_or.reduce(np.where(weight > 0, bstamps, 0).reshape(n, -1), axis=1)
    # The position comes from the source's own light, as BANZAI's from its segment: a window of
    # the PSF's sigma cut at 4 of them (the windowed centroid's, ``sep.winpos`` with 2/2.35 of
    # the half-light radius), which a bright star beyond the deblending distance (3 FWHM) does
    # not reach, so it does not pull a faint neighbour's centroid (a window twice as wide did,
    # by arcseconds). One step from the true position, not iterated: its noise is about half
    # the converged centroid's, far within the 1.5 arcsec that catalogue matching allows.
    light = np.where(dead, 0.0, sub)
    centring = light * (np.exp(-(rr**2) / (2 * sigma**2)) * (rr <= 4 * sigma))
    total = centring.sum(axis=(1, 2))
    total = np.where(total > 0, total, np.nan)
    mx = (centring * dx).sum(axis=(1, 2)) / total
    my = (centring * dy).sum(axis=(1, 2)) / total
    # The shape: second moments through a window twice as wide, about its own centroid.
    wsub = light * (np.exp(-(rr**2) / (2 * (2 * sigma) ** 2)) * (rr <= 6 * sigma))
    norm = wsub.sum(axis=(1, 2))
    norm = np.where(norm > 0, norm, np.nan)
    ddx = dx - ((wsub * dx).sum(axis=(1, 2)) / norm)[:, None, None]
    ddy = dy - ((wsub * dy).sum(axis=(1, 2)) / norm)[:, None, None]
    x2 = (wsub * ddx**2).sum(axis=(1, 2)) / norm
    y2 = (wsub * ddy**2).sum(axis=(1, 2)) / norm
    xy = (wsub * ddx * ddy).sum(axis=(1, 2)) / norm
    peak = np.max(np.where(rr <= 2 * sigma, sub, -np.inf), axis=(1, 2))
    # Sources too faint for moments get the moments of the PSF seen through the window.
    fallback = (sigma**2 * 4 * sigma**2) / (sigma**2 + 4 * sigma**2)
    bad = ~(np.isfinite(x2) & np.isfinite(y2) & np.isfinite(xy) & (x2 > 0) & (y2 > 0))
    x2 = np.where(bad, fallback, x2)
    y2 = np.where(bad, fallback, y2)
    xy = np.where(bad, 0.0, xy)
    return {
        "flux": fluxes,
        "flux_err": errors,
        "flags": flags,
        "det_flux": det_flux,
        "det_err": det_err,
        "bkg": bkg,
        "mx": np.nan_to_num(mx),
        "my": np.nan_to_num(my),
        "x2": x2,
        "y2": y2,
        "xy": xy,
        "peak": peak,
    }
