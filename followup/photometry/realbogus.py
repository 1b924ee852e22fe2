"""Sources of a difference image and a real-bogus score from measured features.

A real transient on a difference image looks like the PSF: positive, as wide as the PSF, with
no negative lobe beside it. Residuals of a poor subtraction are dipoles (a misregistered star),
rings or negative holes (a PSF mismatch); cosmic rays and hot pixels are much sharper than the
PSF and usually flagged; a subtracted bright star leaves noise that the propagated error already
explains. Each feature gives a factor in [0, 1]; the score is their product, so one bad feature
is enough to call a source bogus.

Features (columns of :func:`detect_difference_sources`):

- ``snr`` -- matched-filter S/N of the peak with the propagated error (not the sky rms, so bright
  stars' Poisson residuals do not count as detections);
- ``sharpness`` -- peak pixel over what a PSF of this FWHM predicts (~1 for a point source, >> 1
  for cosmic rays, < 0.5 for diffuse residuals);
- ``fwhm_ratio`` -- second-moment width of the source over the PSF's;
- ``negative_fraction`` -- the share of the absolute flux within 2 FWHM that is negative;
- ``dipole`` -- the most negative matched-filter S/N within 2 FWHM;
- ``masked_fraction`` -- the share of the PSF core on flagged pixels of either image;
- ``elongation`` -- major over minor axis of the footprint of significant pixels within 3 FWHM
  (~1 for a point source; a satellite trail's segment, or a streaked asteroid's, is a strip).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from astropy import units as u
from astropy.table import QTable

from followup.photometry.frame import FWHM_TO_SIGMA, MASKED_BITS, PreparedFrame

__all__ = ["FEATURES", "REAL_SCORE", "detect_difference_sources", "score"]

FEATURES = (
    "sharpness",
    "fwhm_ratio",
    "negative_fraction",
    "dipole",
    "masked_fraction",
    "elongation",
)
"""The measured features of a difference source, columns of the detection table."""

REAL_SCORE = 0.5
"""Sources scoring below this are bogus."""
MAX_ELONGATION = 1.6
"""Axis ratio beyond which a source stops looking like a point source."""
NEGATIVE_LOBE_SNR = 3.0
"""The negative share counts only where some pixel within 2 FWHM is this negative (S/N)."""


def _significance(frame: PreparedFrame) -> tuple[np.ndarray, np.ndarray]:
    """Matched-filter S/N map of the difference, and the filtered flux estimate.

    ``S = G*(D/V) / sqrt(G^2*(1/V))`` with G the PSF: the S/N of a PSF flux fitted at each pixel
    with the per-pixel variance V.
    """
    from scipy import ndimage

    sigma = frame.fwhm * FWHM_TO_SIGMA
    bad = frame.mask | (frame.err <= 0)
    inv = np.where(bad, 0.0, 1.0 / np.where(bad, 1.0, np.square(frame.err))).astype(np.float32)
    num = ndimage.gaussian_filter(np.where(bad, 0.0, frame.data) * inv, sigma, truncate=3.0)
    # Filtering with a Gaussian of sigma/sqrt(2) is filtering with G^2 up to a constant.
    den = ndimage.gaussian_filter(inv, sigma / math.sqrt(2.0), truncate=3.0)
    # Normalise: G (unit sum) has sum(G^2) = 1 / (4 pi sigma^2).
    g2 = 1.0 / (4.0 * math.pi * sigma * sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = num / np.sqrt(den * g2)
        flux = num / (den * g2)
    snr[~np.isfinite(snr)] = 0.0
    # Where flagged pixels hold more than half the PSF's weight there is nothing to detect.
    coverage = ndimage.gaussian_filter((~bad).astype(np.float32), sigma, truncate=3.0)
    snr[bad | (coverage < 0.5)] = 0.0
    return snr.astype(np.float32), flux.astype(np.float32)


def detect_difference_sources(
    frame: PreparedFrame,
    *,
    snr_min: float = 5.0,
    psf_frame: PreparedFrame | None = None,
    psf_stars: np.ndarray | None = None,
) -> QTable:
    """Positive point sources of a difference image with their real-bogus features and score.

    Args:
        frame: The difference (:attr:`followup.photometry.difference.Difference.frame`).
        snr_min: Matched-filter S/N threshold.
        psf_frame: An image with the difference's PSF (the PSF-matched science frame) and
        psf_stars: pixel positions of bright stars on it: the shape features are divided by
            theirs, so a point source scores 1 whatever the PSF's profile (Moffat wings make a
            Gaussian's expectations wrong by tens of per cent).

    Returns:
        QTable: ``x``, ``y`` (pix, 0-based), ``ra``, ``dec`` (deg), ``snr``, ``flux``
        (electron, matched-filter estimate), ``sharpness``, ``fwhm_ratio``,
        ``negative_fraction``, ``dipole``, ``masked_fraction``, ``score``, ``bogus_reasons``.
    """
    from scipy import ndimage

    snr_map, flux_map = _significance(frame)
    fw = frame.fwhm
    size = max(3, round(fw) | 1)
    peaks = (snr_map >= snr_min) & (snr_map == ndimage.maximum_filter(snr_map, size=size))
    py, px = np.nonzero(peaks)
    smooth = np.where(np.isfinite(flux_map), flux_map, 0.0)
    rows = [
        _features(frame, snr_map, smooth, float(x), float(y)) for x, y in zip(px, py, strict=True)
    ]
    norm = _psf_norms(psf_frame, psf_stars)
    for r in rows:
        r["sharpness"] /= norm["sharpness"]
        r["fwhm_ratio"] /= norm["fwhm_ratio"]
    table = QTable(meta={"fwhm": fw, "snr_min": snr_min})
    n = len(rows)
    xs = np.array([r["x"] for r in rows]) if n else np.zeros(0)
    ys = np.array([r["y"] for r in rows]) if n else np.zeros(0)
    ra, dec = (np.asarray(v) for v in frame.wcs.all_pix2world(xs, ys, 0)) if n else (xs, ys)
    table["x"] = xs * u.pix
    table["y"] = ys * u.pix
    table["ra"] = ra * u.deg
    table["dec"] = dec * u.deg
    table["snr"] = snr_map[py, px].astype(float)
    table["flux"] = flux_map[py, px].astype(float) * u.electron
    for name in FEATURES:
        table[name] = np.array([r[name] for r in rows], float)
    scores = [score(r) for r in rows]
    table["score"] = np.array([s for s, _ in scores], float)
    table["bogus_reasons"] = [", ".join(why) for _, why in scores]
    table.sort("snr", reverse=True)
    return table


def _psf_norms(frame: PreparedFrame | None, xy: np.ndarray | None) -> dict[str, float]:
    """Median sharpness and width ratio of stars (1 and 1 without stars: a Gaussian PSF)."""
    if frame is None or xy is None or len(xy) < 3:
        return {"sharpness": 1.0, "fwhm_ratio": 1.0}
    fw = frame.fwhm
    half = math.ceil(5 * fw)
    ny, nx = frame.shape
    values: dict[str, list[float]] = {"sharpness": [], "fwhm_ratio": []}
    for x, y in xy[:40]:
        xi, yi = round(x), round(y)
        if not (half <= xi < nx - half and half <= yi < ny - half):
            continue
        stamp = frame.data[yi - half : yi + half + 1, xi - half : xi + half + 1].astype(float)
        yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
        ring = np.hypot(xx, yy) > 3.5 * fw
        sub = stamp - np.median(stamp[ring])
        local = replace(
            frame,
            data=np.zeros_like(frame.data[: 2 * half + 1, : 2 * half + 1]) + sub.astype(np.float32),
            err=np.ones((2 * half + 1, 2 * half + 1), np.float32),
            flags=np.zeros((2 * half + 1, 2 * half + 1), np.uint8),
        )
        zeros = np.zeros(sub.shape, np.float32)
        f = _features(local, zeros, zeros, float(x - xi + half), float(y - yi + half))
        values["sharpness"].append(f["sharpness"])
        values["fwhm_ratio"].append(f["fwhm_ratio"])
    if len(values["sharpness"]) < 3:
        return {"sharpness": 1.0, "fwhm_ratio": 1.0}
    return {k: float(np.median(v)) for k, v in values.items()}


def _features(
    frame: PreparedFrame, snr_map: np.ndarray, smooth: np.ndarray, x: float, y: float
) -> dict[str, float]:
    """Measured features of one peak (``smooth``: the PSF-filtered flux map)."""
    fw = frame.fwhm
    sigma = fw * FWHM_TO_SIGMA
    half = max(3, math.ceil(2.0 * fw))
    ny, nx = frame.shape
    xi, yi = round(x), round(y)
    x0, x1 = max(0, xi - half), min(nx, xi + half + 1)
    y0, y1 = max(0, yi - half), min(ny, yi + half + 1)
    d = frame.data[y0:y1, x0:x1].astype(float)
    m = frame.mask[y0:y1, x0:x1]
    yy, xx = np.mgrid[y0:y1, x0:x1]
    r2 = (xx - x) ** 2 + (yy - y) ** 2
    # Sub-pixel centroid within 1 FWHM (positive pixels).
    core = (r2 <= fw * fw) & ~m
    w = np.clip(d, 0, None) * core
    if w.sum() > 0:
        x = float((w * xx).sum() / w.sum())
        y = float((w * yy).sum() / w.sum())
        r2 = (xx - x) ** 2 + (yy - y) ** 2
    # The negative share of the PSF-filtered flux: a residual's negative lobe, not pixel noise.
    within = r2 <= (2.0 * fw) ** 2
    sm = smooth[y0:y1, x0:x1].astype(float)
    absolute = np.abs(sm[within]).sum()
    negative = float(-sm[within & (sm < 0)].sum() / absolute) if absolute > 0 else 1.0
    # Width from the flux-weighted second moment inside 1.5 FWHM, against a Gaussian's there.
    inner = (r2 <= (1.5 * fw) ** 2) & ~m
    pos = np.clip(d, 0, None) * inner
    if pos.sum() > 0:
        measured = math.sqrt(max((pos * r2).sum() / pos.sum(), 1e-6))
        # A Gaussian truncated at 1.5 FWHM has <r^2> about 0.945 * 2 sigma^2 there.
        expected = math.sqrt(2.0 * sigma * sigma * 0.945)
        fwhm_ratio = measured / expected
    else:
        fwhm_ratio = 0.0
    # Elongation: the axis ratio of the footprint of significant pixels (S/N above 3 and above
    # 30 % of the peak's on the filtered map) within 3 FWHM. A point source's is round whatever its S/N; a satellite
    # trail's crosses the window as a strip (a faint trail's segments are otherwise as round,
    # sharp and wide as the PSF within 1.5 FWHM, and a few hundred of them filled the cap).
    big = math.ceil(3.0 * fw)
    bx0, bx1 = max(0, xi - big), min(nx, xi + big + 1)
    by0, by1 = max(0, yi - big), min(ny, yi + big + 1)
    gy, gx = np.mgrid[by0:by1, bx0:bx1]
    window = snr_map[by0:by1, bx0:bx1]
    level = max(3.0, 0.3 * float(snr_map[yi, xi])) if (0 <= yi < ny and 0 <= xi < nx) else 3.0
    foot = (window > level) & ((gx - x) ** 2 + (gy - y) ** 2 <= (3.0 * fw) ** 2)
    elongation = 1.0
    if foot.sum() >= 3:
        fx, fy = gx[foot].astype(float), gy[foot].astype(float)
        mxx, myy = float(np.var(fx)), float(np.var(fy))
        mxy = float(np.mean((fx - fx.mean()) * (fy - fy.mean())))
        spread = math.sqrt(((mxx - myy) / 2) ** 2 + mxy**2)
        major, minor = (mxx + myy) / 2 + spread + 1 / 12, (mxx + myy) / 2 - spread + 1 / 12
        elongation = math.sqrt(major / minor)
    flux = float(d[inner].sum())
    peak = float(d[yi - y0, xi - x0]) if (y0 <= yi < y1 and x0 <= xi < x1) else 0.0
    predicted = flux / (2 * math.pi * sigma * sigma) if flux > 0 else 0.0
    sharpness = peak / predicted if predicted > 0 else math.inf
    dipole = float(snr_map[y0:y1, x0:x1][r2 <= (2.0 * fw) ** 2].min())
    psf_core = np.exp(-r2 / (2 * sigma * sigma)) * (r2 <= fw * fw)
    flagged = (frame.flags[y0:y1, x0:x1] & MASKED_BITS) > 0
    masked = float((psf_core * flagged).sum() / max(psf_core.sum(), 1e-12))
    return {
        "x": x,
        "y": y,
        "sharpness": sharpness,
        "fwhm_ratio": fwhm_ratio,
        "negative_fraction": negative,
        "dipole": dipole,
        "masked_fraction": masked,
        "elongation": elongation,
    }


def score(features: dict[str, float]) -> tuple[float, list[str]]:
    """Real-bogus score in [0, 1] and the reasons it is low.

    Each factor is 1 for a clean point source and falls smoothly past a limit:
    sharpness beyond 0.4-2.5, width beyond 0.6-1.6 PSF, negative fraction above 0.15 (when the
    negative side reaches -3 sigma somewhere within 2 FWHM), a negative lobe below -5 sigma, more
    than 20 % of the core masked.
    """
    reasons: list[str] = []
    factors: list[float] = []

    def band(value: float, low: float, high: float, softness: float, reason: str) -> None:
        if not math.isfinite(value):
            factors.append(0.0)
            reasons.append(reason)
            return
        excess = max(0.0, low - value, value - high) / softness
        factor = math.exp(-(excess**2))
        factors.append(factor)
        if factor < 0.7:
            reasons.append(reason)

    band(features["sharpness"], 0.4, 2.5, 0.5, "sharper or flatter than the PSF")
    band(features["fwhm_ratio"], 0.6, 1.6, 0.25, "wider or narrower than the PSF")
    # A negative share with no significant negative pixel is the noise of a faint source or of
    # its host's light, not a subtraction residual: only a lobe of 3 sigma or more counts.
    if features["dipole"] <= -NEGATIVE_LOBE_SNR or not math.isfinite(features["dipole"]):
        band(features["negative_fraction"], 0.0, 0.15, 0.07, "negative residual around it")
    band(-features["dipole"], -math.inf, 5.0, 2.0, "dipole (negative lobe beside it)")
    band(features["masked_fraction"], 0.0, 0.2, 0.15, "on flagged pixels")
    band(features.get("elongation", 1.0), 0.0, MAX_ELONGATION, 0.25, "elongated (a trail?)")
    total = float(np.prod(factors))
    return total, reasons
