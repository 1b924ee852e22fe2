"""The PSF-matching kernel of difference imaging (Alard & Lupton 1998, a constant kernel).

A sum of Gaussians of three widths times polynomials, fitted by linear least squares on stamps
of clean, point-like stars (:func:`fit_kernel`), then radial wings fitted on larger stamps of the
brightest (:func:`fit_wings`); the flux ratio between two images measured between matched PSFs
(:func:`flux_ratio`), and the factor by which a kernel's noise correlation inflates an
aperture's variance (:func:`correlation_factor`).
"""

from __future__ import annotations

import math

import numpy as np

from followup.exceptions import PhotometryError
from followup.photometry.detection import detect_sources
from followup.photometry.frame import FWHM_TO_SIGMA, MASKED_BITS, PreparedFrame

__all__ = [
    "MIN_STARS",
    "convolve",
    "correlation_factor",
    "fit_kernel",
    "fit_wings",
    "flux_ratio",
    "gaussian_kernel",
    "matching_stars",
]

MIN_STARS = 6
"""Fewest clean stars a kernel is fitted on."""


def gaussian_kernel(sigma: float) -> np.ndarray:
    """A normalised circular Gaussian kernel of width ``sigma`` pixels."""
    half = max(1, math.ceil(4.0 * sigma))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    g = np.exp(-(xx**2 + yy**2) / (2.0 * sigma * sigma))
    return (g / g.sum()).astype(np.float32)


def _basis(sigma_k: float, half: int) -> list[np.ndarray]:
    """Alard-Lupton basis: Gaussians of three widths times polynomials (degrees 4, 3, 2)."""
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(float)
    out: list[np.ndarray] = []
    for width, degree in ((0.5, 4), (1.0, 3), (2.0, 2)):
        s = max(0.5, width * sigma_k)
        g = np.exp(-(xx**2 + yy**2) / (2 * s * s))
        for i in range(degree + 1):
            for j in range(degree + 1 - i):
                b = g * (xx / half) ** i * (yy / half) ** j
                out.append(b)
    # Orthogonalise for a well-conditioned fit (the span is what matters).
    flat = np.array([b.ravel() for b in out]).T
    q, _ = np.linalg.qr(flat)
    return [q[:, k].reshape(xx.shape) for k in range(q.shape[1])]


def matching_stars(science: PreparedFrame, reference_flags: np.ndarray, half: int) -> np.ndarray:
    """Pixel positions of bright, unsaturated, unmasked stars of the science frame.

    They come from the frame's CAT when it has one (unflagged rows: BANZAI writes NaN FWHM on
    flagged ones), else from :func:`detect_sources`.
    """
    cat = science.catalog
    if cat is not None and {"x", "y", "flux", "fluxerr"} <= set(cat.colnames) and len(cat):
        x = np.asarray(cat["x"], float) - 1.0
        y = np.asarray(cat["y"], float) - 1.0
        flux = np.asarray(cat["flux"], float)
        with np.errstate(invalid="ignore", divide="ignore"):
            snr = flux / np.asarray(cat["fluxerr"], float)
        ok = np.isfinite(snr) & (snr >= 30.0)
        if "flag" in cat.colnames:
            ok &= np.asarray(cat["flag"]) == 0
        if "fwhm" in cat.colnames:
            fw = np.asarray(cat["fwhm"], float)
            ok &= np.isfinite(fw) & (fw > 0.7 * science.fwhm) & (fw < 1.5 * science.fwhm)
    else:
        table = detect_sources(science, snr_min=30.0)
        x = np.asarray(table["x"].value, float)
        y = np.asarray(table["y"].value, float)
        flux = np.asarray(table["flux"].value, float)
        snr = np.asarray(table["snr"], float)
        ok = (np.asarray(table["flags"]) == 0) & (np.asarray(table["sharpness"]) < 2.0)
    ny, nx = science.shape
    ok &= (x > 2 * half) & (x < nx - 1 - 2 * half) & (y > 2 * half) & (y < ny - 1 - 2 * half)
    peak = flux / (2 * math.pi * (science.fwhm * FWHM_TO_SIGMA) ** 2)
    if science.saturate:
        ok &= peak < 0.5 * science.saturate
    # No other CAT source within the stamp: a neighbour half in it, or a variable one (the
    # transient itself), biases the kernel's sum, the flux scale every host is subtracted with.
    if len(x) > 1:
        from scipy.spatial import cKDTree

        all_xy = np.column_stack([x, y])
        d, _ = cKDTree(all_xy).query(all_xy, k=2)
        ok &= d[:, 1] > half
    idx = np.nonzero(ok)[0]
    for k in idx:
        xi, yi = round(x[k]), round(y[k])
        stamp = reference_flags[yi - half : yi + half + 1, xi - half : xi + half + 1]
        stamp2 = science.flags[yi - half : yi + half + 1, xi - half : xi + half + 1]
        if stamp.any() or (stamp2 & MASKED_BITS).any():
            ok[k] = False
    idx = np.nonzero(ok)[0]
    # The brightest unsaturated ones (at most 150: the fit's cost grows with them), point-like:
    # a compact galaxy passes the CAT's FWHM cut, but its light is less concentrated than a
    # star's, and in a flux ratio weighted by brightness it pulled the scale by a per cent.
    idx = idx[np.argsort(-snr[idx])][:300]
    idx = idx[_point_like(science, x[idx], y[idx])][:150]
    return np.column_stack([x[idx], y[idx]])


def _point_like(science: PreparedFrame, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Which sources have a star's concentration (flux within 1 FWHM over that within 2.5).

    A source is kept when its concentration is within 3 robust sigma (and at least 0.02) of the
    median's: galaxies are less concentrated, blends and cosmic rays more.
    """
    n = len(x)
    if n < 5:
        return np.ones(n, bool)
    fw = science.fwhm
    half = math.ceil(4.0 * fw)
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    r = np.hypot(xx, yy)
    core, total, ring = r <= fw, r <= 2.5 * fw, (r > 3.0 * fw) & (r <= 4.0 * fw)
    ny, nx = science.shape
    conc = np.full(n, np.nan)
    for k in range(n):
        xi, yi = round(x[k]), round(y[k])
        if not (half <= xi < nx - half and half <= yi < ny - half):
            continue
        stamp = science.data[yi - half : yi + half + 1, xi - half : xi + half + 1]
        stamp = stamp - np.median(stamp[ring])
        whole = float(stamp[total].sum())
        if whole > 0:
            conc[k] = float(stamp[core].sum()) / whole
    good = np.isfinite(conc)
    if good.sum() < 5:
        return good
    median = float(np.median(conc[good]))
    spread = max(0.02, 3 * 1.4826 * float(np.median(np.abs(conc[good] - median))))
    return good & (np.abs(conc - median) <= spread)


def fit_kernel(
    source: np.ndarray,
    target: np.ndarray,
    variance: np.ndarray,
    xy: np.ndarray,
    *,
    sigma_k: float,
    half: int,
    stamp_half: int,
) -> tuple[np.ndarray, float, int, float]:
    """Fit ``target ~ source * K + b`` on stamps around ``xy``.

    Args:
        source: The image to convolve.
        target: The image to match.
        variance: Variance of ``target - source * K`` (both images' noise).
        xy: Star positions (0-based pixels).
        sigma_k: Gaussian width of the expected kernel (pixels).
        half: Kernel half-size.
        stamp_half: Half-size of the fitted stamps.

    Returns:
        ``(kernel, background, n_stars, residual_rms)``.

    Raises:
        PhotometryError: Fewer than :data:`MIN_STARS` usable stars.
    """
    from scipy.signal import fftconvolve

    basis = _basis(sigma_k, half)
    nb = len(basis)
    rows: list[np.ndarray] = []
    rhs: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    pad = stamp_half + half
    for x, y in xy:
        xi, yi = round(x), round(y)
        big = source[yi - pad : yi + pad + 1, xi - pad : xi + pad + 1].astype(float)
        tgt = target[yi - stamp_half : yi + stamp_half + 1, xi - stamp_half : xi + stamp_half + 1]
        var = variance[yi - stamp_half : yi + stamp_half + 1, xi - stamp_half : xi + stamp_half + 1]
        if big.shape != (2 * pad + 1, 2 * pad + 1) or not np.all(var > 0):
            continue
        cols = [fftconvolve(big, b, mode="valid").ravel() for b in basis]
        cols.append(np.ones(tgt.size))
        rows.append(np.array(cols).T)
        rhs.append(tgt.ravel().astype(float))
        weights.append(1.0 / var.ravel().astype(float))
    if len(rows) < MIN_STARS:
        raise PhotometryError(f"only {len(rows)} clean stars to match the PSFs (need {MIN_STARS})")
    coef, use, chi = _clipped_fit(rows, rhs, weights)
    kernel = sum(c * b for c, b in zip(coef[:nb], basis, strict=True))
    return np.asarray(kernel), float(coef[nb]), int(use.sum()), float(np.sqrt(np.median(chi[use])))


WING_FWHM = 5.0
"""Reach of the PSF-matching kernel's wings, in FWHM of the blurrier image."""


WING_STARS = 60
"""Brightest clean stars the kernel's wings are fitted on."""


WING_RINGS = 5
"""Radial hat functions the wings are made of."""


def _wing_basis(inner: int, outer: int, rings: int = WING_RINGS) -> list[np.ndarray]:
    """Radial hat functions, each 1 on a ring and 0 at its neighbours', from ``inner`` to ``outer``.

    The nodes are spaced geometrically (a Moffat wing falls as a power of the radius); the first
    hat is 0 at ``inner`` (where the core kernel ends), the last falls to 0 beyond ``outer``.
    """
    yy, xx = np.mgrid[-outer : outer + 1, -outer : outer + 1].astype(float)
    r = np.hypot(xx, yy)
    nodes = inner * (outer / inner) ** (np.arange(rings + 1) / rings)
    out = []
    for j in range(1, rings + 1):
        lo, mid = nodes[j - 1], nodes[j]
        hi = nodes[j + 1] if j < rings else outer + 1.0
        rise = np.clip((r - lo) / (mid - lo), 0.0, 1.0)
        fall = np.clip((hi - r) / (hi - mid), 0.0, 1.0)
        out.append(np.where(r <= mid, rise, fall))
    return out


def _embed(kernel: np.ndarray, half: int) -> np.ndarray:
    """``kernel`` centred on a (2 half + 1)-pixel square of zeros."""
    k = kernel.shape[0] // 2
    out = np.zeros((2 * half + 1, 2 * half + 1))
    out[half - k : half + k + 1, half - k : half + k + 1] = kernel
    return out


def fit_wings(
    source: np.ndarray,
    target: np.ndarray,
    variance: np.ndarray,
    xy: np.ndarray,
    core: np.ndarray,
    *,
    wing_half: int,
    max_stars: int = WING_STARS,
) -> np.ndarray:
    """The core kernel with the Moffat wings it lacks: ``target ~ source * (a core + wings)``.

    The core kernel, fitted on stamps of 2 FWHM, cannot hold the light the blurrier image's
    PSF has beyond them: a Moffat PSF of beta 2.5 has 6 % of its flux beyond 2 FWHM, one of
    beta 4.5 1 %, and the beta of LCO's PSF changes from night to night. A point source leaves
    little of that in its aperture, but a galaxy is the sum of its points: each leaves its
    wing's difference everywhere around it, and 1.3 arcsec from the nucleus of a host 3.5 mag
    brighter than a kilonova that was a tenth of the kilonova's flux (the recovery benchmark).
    The wings are radial hat functions (:func:`_wing_basis`) from the core's edge out to
    ``wing_half``, fitted with the core's amplitude by weighted least squares on stamps of that
    size around the brightest stars, each with its own constant (the backgrounds of both images
    vary over a stamp that size); stars that fit badly are clipped as in :func:`fit_kernel`.

    Args:
        source: The image convolved.
        target: The image matched.
        variance: Variance of ``target - source * K``.
        xy: Star positions (0-based pixels), brightest first.
        core: The core kernel (:func:`fit_kernel`).
        wing_half: Half-size of the kernel with its wings (pixels).
        max_stars: Brightest stars used.

    Returns:
        The kernel, ``2 wing_half + 1`` pixels on a side; the core alone (embedded) when fewer
        than :data:`MIN_STARS` stars have stamps that size.
    """
    from scipy.fft import irfft2, next_fast_len, rfft2

    core_half = core.shape[0] // 2
    embedded = _embed(core, wing_half)
    if wing_half <= core_half + 2:
        return embedded
    basis = [embedded, *_wing_basis(core_half, wing_half)]
    stamp = wing_half
    pad = stamp + wing_half
    size = 2 * pad + 1
    shape = (next_fast_len(size + 2 * wing_half, real=True),) * 2
    spectra = [rfft2(b, shape) for b in basis]
    rows: list[np.ndarray] = []
    rhs: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    lo = 2 * wing_half  # 'valid' part of the full convolution, the target stamp's pixels
    for x, y in xy:
        if len(rows) >= max_stars:
            break
        xi, yi = round(x), round(y)
        if yi - pad < 0 or xi - pad < 0:
            continue
        big = source[yi - pad : yi + pad + 1, xi - pad : xi + pad + 1].astype(float)
        tgt = target[yi - stamp : yi + stamp + 1, xi - stamp : xi + stamp + 1].astype(float)
        var = variance[yi - stamp : yi + stamp + 1, xi - stamp : xi + stamp + 1]
        if big.shape != (size, size) or tgt.shape != (2 * stamp + 1,) * 2 or not np.all(var > 0):
            continue
        f = rfft2(big - np.median(big), shape)
        cols = [
            irfft2(f * s, shape)[lo : lo + 2 * stamp + 1, lo : lo + 2 * stamp + 1] for s in spectra
        ]
        w = 1.0 / var.ravel().astype(float)
        a = np.array([c.ravel() for c in cols]).T
        t = tgt.ravel()
        # Each star's own constant, eliminated: weighted means out of the columns and target.
        a = a - (w @ a) / w.sum()
        t = t - (w @ t) / w.sum()
        rows.append(a)
        rhs.append(t)
        weights.append(w)
    if len(rows) < MIN_STARS:
        return embedded
    coef, _, _ = _clipped_fit(rows, rhs, weights)
    return np.asarray(sum(c * b for c, b in zip(coef, basis, strict=True)))


def _clipped_fit(
    rows: list[np.ndarray], rhs: list[np.ndarray], weights: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least squares over star stamps, stars that fit badly clipped (three passes).

    Args:
        rows: Each star's design matrix (pixels x coefficients).
        rhs: Each star's target pixels.
        weights: Each star's inverse pixel variances.

    Returns:
        The coefficients, which stars were used, and each star's mean chi-square.
    """
    use = np.ones(len(rows), bool)
    coef = np.zeros(rows[0].shape[1])
    chi = np.zeros(len(rows))
    for _ in range(3):
        idx = np.nonzero(use)[0]
        a = np.vstack([rows[k] * np.sqrt(weights[k])[:, None] for k in idx])
        b = np.concatenate([rhs[k] * np.sqrt(weights[k]) for k in idx])
        coef, *_ = np.linalg.lstsq(a, b, rcond=None)
        chi = np.array(
            [np.mean((rhs[k] - rows[k] @ coef) ** 2 * weights[k]) for k in range(len(rows))]
        )
        limit = np.median(chi[use]) + 3 * 1.4826 * np.median(np.abs(chi[use] - np.median(chi[use])))
        new = chi <= max(limit, 1.5)
        if new.sum() < MIN_STARS or (new == use).all():
            break
        use = new
    return coef, use, chi


def correlation_factor(kernel: np.ndarray, fwhm: float) -> float:
    """How much more variance a PSF-sized sum of a convolved image has than its pixels say.

    Convolving white noise of variance ``v`` with ``K`` leaves ``v * sum(K**2)`` in each pixel,
    but neighbouring pixels share the same input pixels: the sum over an aperture ``F`` has
    variance ``v * ||F * K||**2``, not ``v * sum(K**2) * ||F||**2``. Their ratio, for an aperture
    of radius ``fwhm`` (the forced photometry's and about the matched filter's scale), is the
    factor the propagated variance must carry so that fluxes and their S/N have honest errors;
    without it a 2.2" frame against a 1.8" reference had pulls of 1.26.

    Args:
        kernel: The convolution kernel (any normalisation).
        fwhm: FWHM of the difference's PSF (pixels).

    Returns:
        The ratio (1 for a delta kernel; about 20 for a kernel of 1.4 px sigma and a 5.7 px
        aperture).
    """
    from scipy.signal import fftconvolve

    k = np.asarray(kernel, float)
    k2 = float(np.sum(k * k))
    if not k2 > 0:
        return 1.0
    r = max(1.0, float(fwhm))
    half = math.ceil(r) + 1
    sub = 4
    grid = (np.arange((2 * half + 1) * sub) + 0.5) / sub - half - 0.5
    inside = (np.hypot(grid[None, :], grid[:, None]) <= r).astype(float)
    aperture = inside.reshape(2 * half + 1, sub, 2 * half + 1, sub).mean(axis=(1, 3))
    aperture /= aperture.sum()
    smeared = fftconvolve(aperture, k, mode="full")
    return max(1.0, float(np.sum(smeared**2) / (np.sum(aperture**2) * k2)))


def flux_ratio(
    source: np.ndarray,
    target: np.ndarray,
    xy: np.ndarray,
    half: int,
    kernel: np.ndarray | None = None,
) -> float:
    """Median ratio of the stars' fluxes, target over source, in apertures of ``half`` pixels.

    The kernel's own sum is biased low by the noise of the image it convolves (a noisy
    regressor); the ratio of large-aperture fluxes of bright stars is not, and it sets the flux
    scale every host galaxy is subtracted with (1 % of a host 3 mag brighter is 16 % of the
    transient).

    With ``kernel`` (the PSF-matching kernel, any normalisation) each source stamp is first
    convolved with it normalised to unit sum, so both apertures hold stars of the same PSF.
    Without it the apertures lose different shares of two different PSFs' wings (Moffat wings,
    whose beta changes from night to night, reach well past 2 FWHM): a ratio off by a few per
    cent, which left 0.7 % of a bright host's light at its core.
    """
    from scipy.signal import fftconvolve

    ratios = []
    yy, xx = np.mgrid[-2 * half : 2 * half + 1, -2 * half : 2 * half + 1]
    r = np.hypot(xx, yy)
    inner, ring = r <= half, (r > 1.3 * half) & (r <= 2 * half)
    k_half = 0
    unit = None
    if kernel is not None:
        total = float(np.sum(kernel))
        if not total > 0:
            raise PhotometryError("the fitted PSF-matching kernel has no positive flux")
        unit = np.asarray(kernel, float) / total
        k_half = unit.shape[0] // 2
    for x, y in xy:
        xi, yi = round(x), round(y)
        p = 2 * half + k_half
        if yi - p < 0 or xi - p < 0:
            continue
        a = source[yi - p : yi + p + 1, xi - p : xi + p + 1]
        b = target[yi - 2 * half : yi + 2 * half + 1, xi - 2 * half : xi + 2 * half + 1]
        if unit is not None and a.shape == (2 * p + 1, 2 * p + 1):
            a = fftconvolve(a.astype(float), unit, mode="valid")
        if a.shape != r.shape or b.shape != r.shape:
            continue
        ring_a, ring_b = a[ring], b[ring]
        fa = float((a[inner] - np.median(ring_a)).sum())
        fb = float((b[inner] - np.median(ring_b)).sum())
        if fa > 0 and fb > 0:
            # Variance of each aperture sum: the ring's pixel scatter over the aperture (the
            # convolved stamp's pixels are correlated, so this is a floor) and the star's
            # Poisson noise (both images are in electrons).
            n_in = float(inner.sum())
            va = n_in * _robust_var(ring_a) + fa
            vb = n_in * _robust_var(ring_b) + fb
            ratios.append((fa, fb, va, vb))
    if len(ratios) < 3:
        raise PhotometryError("too few stars to scale the reference's flux")
    fa_all, fb_all, va_all, vb_all = np.array(ratios).T
    each = fb_all / fa_all
    # Each star's ratio with its error and a floor of RATIO_FLOOR: no single star (perhaps a
    # compact galaxy, a blend or a variable) decides the scale, as the brightest one did when
    # the ratio was one of summed fluxes.
    var = each**2 * (va_all / fa_all**2 + vb_all / fb_all**2 + RATIO_FLOOR**2)
    keep = np.ones(len(each), bool)
    centre = float(np.median(each))
    for _ in range(3):
        mad = 1.4826 * np.median(np.abs(each[keep] - centre))
        new = np.abs(each - centre) <= 3 * np.sqrt(mad**2 + var)
        if new.sum() < 3:
            break
        keep = new
        w = 1.0 / var[keep]
        centre = float(np.sum(w * each[keep]) / np.sum(w))
    return centre


RATIO_FLOOR = 0.003
"""Systematic error of one star's flux ratio (PSF variation over the frame, blends)."""


def _robust_var(values: np.ndarray) -> float:
    """Variance of the values from their median absolute deviation."""
    return float((1.4826 * np.median(np.abs(values - np.median(values)))) ** 2)


def convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``image`` convolved with a small kernel (same shape, float32), by FFT."""
    from scipy.fft import set_workers
    from scipy.signal import fftconvolve

    with set_workers(2):
        return np.asarray(
            fftconvolve(image.astype(np.float32), kernel.astype(np.float32), mode="same"),
            np.float32,
        )
