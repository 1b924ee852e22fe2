"""Frame pairs for difference imaging (benchmarks/transients.py and its tests): stars, Sérsic galaxies, a transient on its host.

Frames are BANZAI-like HDU lists (SCI in electrons, ERR, BPM, CAT with BANZAI's flags and NaN
FWHM for flagged rows) with a TAN WCS; the reference is another night: other seeing, another
pointing by a few pixels, another sky level and gradient, no transient and no minor planet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from scipy.special import erf, gammaincinv

SCALE = 0.389  # arcsec / pixel
ZP = 23.3  # AB mag of 1 e-/s
EXPTIME = 300.0
RA0, DEC0 = 150.0, -20.0
CATALOG_DEPTH = 19.0  # like ATLAS-REFCAT2 on a real Sinistro frame
SUPERSAMPLE = 5  # sub-pixels per pixel on a side where galaxies are convolved with the PSF
NUCLEUS_PX = 0.25  # light of a galaxy within this radius is rendered as a point at its nucleus


@dataclass
class Source:
    """A point source (star, transient, minor planet) or a Sérsic galaxy at a sky position."""

    ra: float
    dec: float
    mag: float
    kind: str = "star"  # star | galaxy | transient | asteroid
    sersic_n: float = 1.0
    r_eff_arcsec: float = 2.0
    ellipticity: float = 0.0
    angle_deg: float = 0.0


@dataclass
class Scene:
    """A field: its sources and the shape of its frames."""

    shape: tuple[int, int] = (512, 512)
    sources: list[Source] = field(default_factory=list)

    def catalog(self, depth: float = CATALOG_DEPTH) -> Table:
        """Reference stars (normalised columns) down to ``depth``; galaxies and transients out."""
        stars = [s for s in self.sources if s.kind == "star" and s.mag <= depth]
        table = Table()
        table["ra"] = [s.ra for s in stars]
        table["dec"] = [s.dec for s in stars]
        for band in "griz":
            table[band] = [s.mag for s in stars]
            table[f"{band}_err"] = [0.01] * len(stars)
        table.meta["catalog"] = "test-refcat"
        return table


def wcs_for(shape: tuple[int, int], ra: float = RA0, dec: float = DEC0) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(shape[1] + 1) / 2.0, (shape[0] + 1) / 2.0]
    w.wcs.cd = np.array([[-SCALE / 3600.0, 0.0], [0.0, SCALE / 3600.0]])
    return w


def _gaussian(
    x: float, y: float, sigma: float, shape: tuple[int, int]
) -> tuple[np.ndarray, slice, slice]:
    half = math.ceil(5 * sigma)
    ny, nx = shape
    x0, x1 = max(0, round(x) - half), min(nx, round(x) + half + 1)
    y0, y1 = max(0, round(y) - half), min(ny, round(y) + half + 1)
    s2 = math.sqrt(2.0) * sigma
    px, py = np.arange(x0, x1), np.arange(y0, y1)
    ex = 0.5 * (erf((px + 0.5 - x) / s2) - erf((px - 0.5 - x) / s2))
    ey = 0.5 * (erf((py + 0.5 - y) / s2) - erf((py - 0.5 - y) / s2))
    return np.outer(ey, ex), slice(y0, y1), slice(x0, x1)


def _sersic(
    src: Source, x: float, y: float, sigma: float, shape: tuple[int, int]
) -> tuple[np.ndarray, slice, slice]:
    """Unit-flux Sérsic profile, PSF-convolved, then integrated over each pixel, on a box.

    The sky is convolved before it is pixelised: the profile is sampled on a grid of
    ``SUPERSAMPLE`` x ``SUPERSAMPLE`` sub-pixels (3 x 3 points each within 2 px of the nucleus),
    convolved with the Gaussian PSF there and summed into pixels. The light within
    ``NUCLEUS_PX`` of the nucleus (the cusp of an n = 4 profile: about a per cent of the galaxy's
    light within 0.1 px, which no sampling grid holds) is added analytically as a point source at
    the nucleus, since a PSF of sigma >= 2 px cannot tell it from one. Convolving an image
    integrated over pixels instead (a discrete sum over pixel centres) put the nucleus's light at
    the centre of its pixel: two frames of one galaxy with different pointings disagreed at its
    core by a per cent of its light, which no sky does.
    """
    from scipy.ndimage import gaussian_filter
    from scipy.special import gammainc

    re = src.r_eff_arcsec / SCALE
    half = math.ceil(min(12 * re, 400) + 5 * sigma)
    ny, nx = shape
    x0, x1 = max(0, round(x) - half), min(nx, round(x) + half + 1)
    y0, y1 = max(0, round(y) - half), min(ny, round(y) + half + 1)
    theta = math.radians(src.angle_deg)
    q = 1.0 - src.ellipticity
    n = src.sersic_n
    b = gammaincinv(2 * n, 0.5)
    r0 = NUCLEUS_PX

    def profile(px: np.ndarray, py: np.ndarray, sub: int, step: float) -> np.ndarray:
        """Mean of the profile outside ``r0`` over ``sub`` x ``sub`` points of cells ``step`` wide."""
        offsets = ((np.arange(sub) + 0.5) / sub - 0.5) * step
        out = np.zeros(np.broadcast_shapes(px.shape, py.shape))
        for sy in offsets:
            for sx in offsets:
                dx, dy = px + sx - x, py + sy - y
                u = dx * math.cos(theta) + dy * math.sin(theta)
                v = -dx * math.sin(theta) + dy * math.cos(theta)
                r = np.sqrt(u**2 + (v / q) ** 2)
                out += np.where(r >= r0, np.exp(-b * ((r / re) ** (1 / n) - 1)), 0.0)
        return out / (sub * sub)

    ss = SUPERSAMPLE
    step = 1.0 / ss
    px = x0 - 0.5 + (np.arange((x1 - x0) * ss) + 0.5) * step
    py = y0 - 0.5 + (np.arange((y1 - y0) * ss) + 0.5) * step
    img = profile(px[None, :], py[:, None], 1, step)
    near_x = np.nonzero(np.abs(px - x) <= 2.0)[0]
    near_y = np.nonzero(np.abs(py - y) <= 2.0)[0]
    core = (slice(near_y[0], near_y[-1] + 1), slice(near_x[0], near_x[-1] + 1))
    img[core] = profile(px[None, core[1]], py[core[0], None], 3, step)
    # In units of the profile times pixel area, like the analytic light of the nucleus.
    outer = img.sum() * step * step
    nucleus = (
        2 * math.pi * q * re * re * n * math.exp(b) * b ** (-2 * n) * math.gamma(2 * n)
    ) * float(gammainc(2 * n, b * (r0 / re) ** (1 / n)))
    img = gaussian_filter(img, sigma * ss, mode="constant", truncate=5.0)
    img = img.reshape(y1 - y0, ss, x1 - x0, ss).sum(axis=(1, 3)) * (step * step)
    point, sy, sx = _gaussian(x, y, sigma, shape)
    total = outer + nucleus
    out = img / total
    out[sy.start - y0 : sy.stop - y0, sx.start - x0 : sx.stop - x0] += point * (nucleus / total)
    return out, slice(y0, y1), slice(x0, x1)


def render(
    scene: Scene,
    *,
    seed: int,
    fwhm_arcsec: float,
    sky_e: float = 600.0,
    gradient: float = 0.0,
    shift_px: tuple[float, float] = (0.0, 0.0),
    kinds: tuple[str, ...] = ("star", "galaxy", "transient", "asteroid"),
    zp: float = ZP,
    cosmic_rays: int = 0,
    nan_fwhm_near: list[tuple[float, float]] | None = None,
    date_obs: str = "2026-03-01T04:00:00",
) -> fits.HDUList:
    """A BANZAI-like frame of the scene.

    Args:
        scene: The field.
        seed: Seed of the noise and cosmic rays.
        fwhm_arcsec: Seeing (Gaussian PSF).
        sky_e: Sky level in electrons per pixel.
        gradient: Fractional sky gradient from bottom to top.
        shift_px: Pointing offset of the frame in pixels (its CRVAL moves accordingly).
        kinds: Which kinds of sources are on this frame.
        zp: Zero point (AB mag of 1 e-/s): the night's transparency.
        cosmic_rays: Cosmic-ray hits (2 pixels each, flagged in BPM).
        nan_fwhm_near: Sky positions whose CAT row is flagged deblended (2) with NaN FWHM, as
            BANZAI 1.40 writes them.
        date_obs: Exposure start.
    """
    rng = np.random.default_rng(seed)
    ny, nx = scene.shape
    base = wcs_for(scene.shape)
    ra_c, dec_c = base.all_pix2world([[(nx - 1) / 2 + shift_px[0], (ny - 1) / 2 + shift_px[1]]], 0)[
        0
    ]
    w = wcs_for(scene.shape, float(ra_c), float(dec_c))
    sigma = fwhm_arcsec / SCALE / (2 * math.sqrt(2 * math.log(2)))
    yy = np.mgrid[0:ny, 0:nx][0]
    model = np.full(scene.shape, sky_e, float) * (1 + gradient * (yy / ny - 0.5))
    rows = []
    for src in scene.sources:
        if src.kind not in kinds:
            continue
        x, y = w.all_world2pix([[src.ra, src.dec]], 0)[0]
        flux = 10 ** (-0.4 * (src.mag - zp)) * EXPTIME
        if src.kind == "galaxy":
            g, sy, sx = _sersic(src, x, y, sigma, scene.shape)
            model[sy, sx] += flux * g
        else:
            g, sy, sx = _gaussian(x, y, sigma, scene.shape)
            model[sy, sx] += flux * g
        rows.append((x, y, flux))
    data = rng.poisson(np.clip(model, 0, None)).astype(np.float32) + rng.normal(
        0, 7.5, model.shape
    ).astype(np.float32)
    err = np.sqrt(np.clip(model, 0, None) + 7.5**2).astype(np.float32)
    bpm = np.zeros(scene.shape, np.uint8)
    for _ in range(cosmic_rays):
        cx, cy = rng.integers(10, nx - 10), rng.integers(10, ny - 10)
        data[cy, cx : cx + 2] += 5000.0
        bpm[cy, cx : cx + 2] |= 8
    header = fits.Header()
    header.update(w.to_header())
    header["FILTER"] = "rp"
    header["EXPTIME"] = EXPTIME
    header["DATE-OBS"] = date_obs
    header["RLEVEL"] = 91
    header["GAIN"] = 1.0
    header["RDNOISE"] = 7.5
    header["SATURATE"] = 120000.0
    header["L1FWHM"] = fwhm_arcsec
    header["L1ZP"] = zp
    header["L1ZPERR"] = 0.01
    header["TELID"] = "1m0a"
    header["INSTRUME"] = "fa16"
    cat = Table()
    cat["x"] = [r[0] + 1 for r in rows]
    cat["y"] = [r[1] + 1 for r in rows]
    ra, dec = w.all_pix2world(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), 0)
    cat["ra"], cat["dec"] = ra, dec
    cat["flux"] = [r[2] for r in rows]
    cat["fluxerr"] = [math.sqrt(r[2] + 50.0) for r in rows]
    cat["mag"] = [zp - 2.5 * math.log10(r[2] / EXPTIME) for r in rows]
    cat["magerr"] = [0.01] * len(rows)
    cat["fwhm"] = [fwhm_arcsec / SCALE] * len(rows)
    cat["flag"] = [0] * len(rows)
    for ra_n, dec_n in nan_fwhm_near or []:
        d = np.hypot((cat["ra"] - ra_n) * math.cos(math.radians(dec_n)), cat["dec"] - dec_n) * 3600
        k = int(np.argmin(d))
        cat["flag"][k] = 2
        cat["fwhm"][k] = np.nan
    return fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.ImageHDU(data, header=header, name="SCI"),
            fits.BinTableHDU(cat, name="CAT"),
            fits.ImageHDU(bpm, name="BPM"),
            fits.ImageHDU(err, name="ERR"),
        ]
    )


def offset(ra: float, dec: float, east_arcsec: float, north_arcsec: float) -> tuple[float, float]:
    return ra + east_arcsec / 3600.0 / math.cos(math.radians(dec)), dec + north_arcsec / 3600.0


def standard_scene(seed: int = 1, *, shape: tuple[int, int] = (512, 512)) -> Scene:
    """A 512 px field: stars, two hosts, a transient on one, a minor planet, a faint star.

    Stars from 14 to 22 mag, two galaxies (n=1, n=4), a 19 mag transient 1" from the bright
    galaxy's nucleus, a 19.5 mag minor planet, a 20.5 mag star below the catalogue's depth.
    """
    rng = np.random.default_rng(seed)
    w = wcs_for(shape)
    ny, nx = shape
    sources: list[Source] = []
    mags = 14 + 8 * rng.random(int(1.2 * nx * ny / 4000)) ** 0.5
    for m in mags:
        x, y = rng.uniform(15, nx - 15), rng.uniform(15, ny - 15)
        ra, dec = w.all_pix2world([[x, y]], 0)[0]
        sources.append(Source(float(ra), float(dec), float(m)))
    host_ra, host_dec = w.all_pix2world([[0.35 * nx, 0.6 * ny]], 0)[0]
    sources.append(Source(float(host_ra), float(host_dec), 15.5, "galaxy", 4.0, 3.0, 0.3, 30.0))
    g2_ra, g2_dec = w.all_pix2world([[0.7 * nx, 0.3 * ny]], 0)[0]
    sources.append(Source(float(g2_ra), float(g2_dec), 16.5, "galaxy", 1.0, 4.0, 0.5, 100.0))
    t_ra, t_dec = offset(float(host_ra), float(host_dec), 0.8, 0.6)
    sources.append(Source(t_ra, t_dec, 19.0, "transient"))
    a_ra, a_dec = w.all_pix2world([[0.65 * nx, 0.75 * ny]], 0)[0]
    sources.append(Source(float(a_ra), float(a_dec), 19.5, "asteroid"))
    f_ra, f_dec = w.all_pix2world([[0.2 * nx, 0.25 * ny]], 0)[0]
    sources.append(Source(float(f_ra), float(f_dec), 20.5, "star"))
    return Scene(shape=shape, sources=sources)


def pair(
    scene: Scene, seed: int = 1, *, science_fwhm: float = 2.2, reference_fwhm: float = 1.8
) -> tuple[fits.HDUList, fits.HDUList]:
    """A science frame and its reference.

    The science frame has the transient, the minor planet, a NaN-FWHM deblended CAT row at the
    transient and cosmic rays; the reference is another night, without them.
    """
    transient = next(s for s in scene.sources if s.kind == "transient")
    science = render(
        scene,
        seed=seed,
        fwhm_arcsec=science_fwhm,
        sky_e=700.0,
        gradient=0.05,
        cosmic_rays=20,
        nan_fwhm_near=[(transient.ra, transient.dec)],
    )
    reference = render(
        scene,
        seed=seed + 1000,
        fwhm_arcsec=reference_fwhm,
        sky_e=500.0,
        gradient=-0.03,
        shift_px=(7.3, -4.6),
        kinds=("star", "galaxy"),
        zp=23.45,
        date_obs="2026-01-20T04:00:00",
    )
    return science, reference
