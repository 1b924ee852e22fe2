"""Single-extension frames of Moffat stars, as pipelines other than BANZAI write them, with truth."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

RA, DEC = 150.0, 2.2
PIXEL_SCALE = 0.389  # arcsec/pixel (Sinistro)
ZERO_POINT = 25.0  # AB mag of 1 e-/s at colour 0
EXPTIME = 100.0
SKY_E = 400.0  # electrons per pixel in the exposure
READ_NOISE = 7.5


@dataclass
class MoffatFrame:
    """A frame and what it holds.

    Attributes:
        hdul: The frame (one primary HDU, no ERR, BPM or RLEVEL).
        stars: ``ra``, ``dec``, ``x``, ``y``, ``r``, ``i``, ``colour`` (r-i), ``flux`` (e-).
        refcat: The stars as a normalised reference catalogue (g, r, i, z with errors).
        sources: Where the light is (n, 2) in pixels, stars and extra sources.
    """

    hdul: fits.HDUList
    stars: Table
    refcat: Table
    sources: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))


def _wcs(shape: tuple[int, int]) -> WCS:
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [RA, DEC]
    w.wcs.crpix = [nx / 2.0 + 0.5, ny / 2.0 + 0.5]
    scale = PIXEL_SCALE / 3600.0
    w.wcs.cd = np.array([[-scale, 0.0], [0.0, scale]])
    return w


def moffat_stamp(
    image: np.ndarray, x: float, y: float, flux: float, alpha: float, beta: float
) -> None:
    """Add a pixel-integrated (5 x 5 sub-pixels) Moffat of total ``flux`` to ``image`` in place."""
    ny, nx = image.shape
    half = 60
    ix, iy = round(x), round(y)
    x0, x1 = max(ix - half, 0), min(ix + half + 1, nx)
    y0, y1 = max(iy - half, 0), min(iy + half + 1, ny)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(float)
    steps = (np.arange(5) + 0.5) / 5 - 0.5
    acc = np.zeros_like(xx)
    for sy in steps:
        for sx in steps:
            acc += (1 + ((xx + sx - x) ** 2 + (yy + sy - y) ** 2) / alpha**2) ** -beta
    image[y0:y1, x0:x1] += flux * (beta - 1) / (math.pi * alpha**2) / 25 * acc


def make_moffat_frame(
    *,
    seed: int = 0,
    shape: tuple[int, int] = (600, 600),
    fwhm_px: float = 5.0,
    beta: float = 2.5,
    mags: np.ndarray | None = None,
    colour_term: float = 0.0,
    band: str = "rp",
    extra: list[tuple[float, float, float]] | None = None,
) -> MoffatFrame:
    """A frame of Moffat stars in electrons, with a reference catalogue of them.

    Args:
        seed: Noise and positions.
        shape: (ny, nx).
        fwhm_px: The stars' FWHM in pixels.
        beta: Moffat beta (2.5 holds 71 % of the flux within one FWHM).
        mags: r magnitudes of the stars (default 40 from 15.5 to 20.5).
        colour_term: C in ``m = ZP - 2.5 log10(f / t) + C (r - i)``.
        band: FILTER.
        extra: ``(x, y, mag)`` of sources that are not in the catalogue.
    """
    rng = np.random.default_rng(seed)
    mags = np.linspace(15.5, 20.5, 40) if mags is None else np.asarray(mags, float)
    ny, nx = shape
    alpha = fwhm_px / (2 * math.sqrt(2 ** (1 / beta) - 1))
    positions: list[tuple[float, float]] = []
    while len(positions) < len(mags):
        x, y = rng.uniform(50, nx - 50), rng.uniform(50, ny - 50)
        if all(math.hypot(x - a, y - b) > 8 * fwhm_px for a, b in positions):
            positions.append((x, y))
    xy = np.asarray(positions)
    colour = rng.uniform(0.0, 0.6, len(mags))
    flux = EXPTIME * 10 ** (-0.4 * (mags - ZERO_POINT - colour_term * colour))
    image = np.full(shape, SKY_E, float)
    for (x, y), f in zip(xy, flux, strict=True):
        moffat_stamp(image, x, y, f, alpha, beta)
    sources = [*map(tuple, xy)]
    for x, y, m in extra or []:
        moffat_stamp(image, x, y, EXPTIME * 10 ** (-0.4 * (m - ZERO_POINT)), alpha, beta)
        sources.append((x, y))
    image = rng.poisson(image).astype(float) + rng.normal(0, READ_NOISE, shape)
    image -= SKY_E
    wcs = _wcs(shape)
    ra, dec = wcs.all_pix2world(xy[:, 0], xy[:, 1], 0)
    header = wcs.to_header()
    header["FILTER"] = band
    header["EXPTIME"] = EXPTIME
    header["DATE-OBS"] = "2025-03-01T02:00:00"
    header["BUNIT"] = "electron"
    header["GAIN"] = 1.0
    header["RDNOISE"] = READ_NOISE
    hdul = fits.HDUList([fits.PrimaryHDU(image.astype(np.float32), header=header)])
    stars = Table({"ra": ra, "dec": dec, "x": xy[:, 0], "y": xy[:, 1], "r": mags, "colour": colour})
    stars["i"] = mags - colour
    stars["flux"] = flux
    refcat = Table({"ra": ra, "dec": dec})
    for b, m in (("g", mags + 0.4), ("r", mags), ("i", mags - colour), ("z", mags - colour - 0.1)):
        refcat[b] = m
        refcat[f"{b}_err"] = np.full(len(mags), 0.01)
    refcat.meta["catalog"] = "truth"
    return MoffatFrame(hdul=hdul, stars=stars, refcat=refcat, sources=np.asarray(sources))


def in_adu(frame: MoffatFrame, gain: float) -> fits.HDUList:
    """The same frame in ADU (``BUNIT = 'ADU'``, ``GAIN`` e-/ADU)."""
    hdu = frame.hdul[0].copy()
    hdu.data = (hdu.data / gain).astype(np.float32)
    hdu.header["BUNIT"] = "ADU"
    hdu.header["GAIN"] = gain
    return fits.HDUList([hdu])
