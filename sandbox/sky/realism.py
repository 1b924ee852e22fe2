"""The realistic sky's ingredients: Moffat PSF, Sérsic galaxies, moonlight, trails, asteroids.

What makes the sky no kinder than the real one.

Every function here is pure: its randomness comes from a generator the caller seeds from the sky's
seed and the content's identity (see :func:`sandbox.sky.model.mix_seed`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from sandbox.ephemeris import days_since_j2000, moon, sun
from sandbox.sky.model import mix_seed
from sandbox.specs import Transient

__all__ = [
    "MinorPlanet",
    "Moonlight",
    "SatelliteTrail",
    "add_sersic",
    "add_trail",
    "minor_planets_for",
    "moffat_alpha",
    "moffat_enclosed",
    "moffat_kernel",
    "moffat_points",
    "moonlight",
    "satellite_trail",
]

SITE_LATITUDE = {
    "coj": -31.2729,
    "cpt": -32.3806,
    "tfn": 28.3003,
    "lsc": -30.1673,
    "elp": 30.6799,
    "ogg": 20.7069,
}
V_EXTINCTION = 0.172
# How much of the Moon's brightening in V each band sees (moonlight is blue).
MOON_BAND_FACTOR = {"gp": 1.15, "rp": 1.0, "ip": 0.8, "zs": 0.65}


# ---------------------------------------------------------------------------------------- PSF


def moffat_alpha(fwhm_px: float, beta: float) -> float:
    """Moffat core width alpha (pixels) of a profile with this FWHM and beta."""
    return fwhm_px / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def moffat_enclosed(radius: np.ndarray | float, alpha: float, beta: float) -> np.ndarray:
    """Fraction of a Moffat profile's flux within ``radius`` pixels."""
    return 1.0 - (1.0 + (np.asarray(radius, float) / alpha) ** 2) ** (1.0 - beta)


def _moffat_half(alpha: float, beta: float, loss: float = 0.003, cap: int = 60) -> int:
    """Stamp half-size (pixels) outside which a Moffat profile has lost ``loss`` of its flux."""
    radius = alpha * math.sqrt(loss ** (1.0 / (1.0 - beta)) - 1.0)
    return int(min(max(math.ceil(radius), 4), cap))


def _moffat_values(dx: np.ndarray, dy: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """The profile at pixel offsets, averaged over a 2x2 sub-pixel grid (unnormalised)."""
    out = np.zeros(np.broadcast_shapes(dx.shape, dy.shape), np.float64)
    for sx in (-0.25, 0.25):
        for sy in (-0.25, 0.25):
            out += (1.0 + ((dx + sx) ** 2 + (dy + sy) ** 2) / alpha**2) ** (-beta)
    return out


def moffat_kernel(fwhm_px: float, beta: float) -> np.ndarray:
    """The frame's PSF as a normalised, centred kernel (odd size)."""
    alpha = moffat_alpha(fwhm_px, beta)
    half = _moffat_half(alpha, beta)
    offsets = np.arange(-half, half + 1, dtype=float)
    kernel = _moffat_values(offsets[None, :], offsets[:, None], alpha, beta)
    return (kernel / kernel.sum()).astype(np.float32)


def moffat_points(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    fwhm_px: float,
    beta: float,
    chunk: int = 128,
) -> None:
    """Add Moffat point sources to ``image`` in place (each stamp holds exactly its flux)."""
    if len(x) == 0:
        return
    ny, nx = image.shape
    alpha = moffat_alpha(fwhm_px, beta)
    half = _moffat_half(alpha, beta)
    offsets = np.arange(-half, half + 1)
    for k in range(0, len(x), chunk):
        xs, ys, fs = x[k : k + chunk], y[k : k + chunk], flux[k : k + chunk]
        ix, iy = np.rint(xs).astype(int), np.rint(ys).astype(int)
        dx = (ix[:, None, None] + offsets[None, None, :] - xs[:, None, None]).astype(np.float64)
        dy = (iy[:, None, None] + offsets[None, :, None] - ys[:, None, None]).astype(np.float64)
        stamps = _moffat_values(dx, dy, alpha, beta)
        stamps *= (fs / stamps.sum(axis=(1, 2)))[:, None, None]
        for j in range(len(xs)):
            x0, y0 = ix[j] - half, iy[j] - half
            x1, y1 = x0 + 2 * half + 1, y0 + 2 * half + 1
            if x1 <= 0 or y1 <= 0 or x0 >= nx or y0 >= ny:
                continue
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, nx), min(y1, ny)
            image[cy0:cy1, cx0:cx1] += stamps[j, cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0].astype(
                np.float32
            )


# ------------------------------------------------------------------------------------ galaxies


def _sersic_b(n: float) -> float:
    """b_n of a Sérsic profile (Ciotti and Bertin 1999's expansion, better than 1e-5 for n >= 0.5)."""
    return 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n**2)


def _convolve_full(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Full linear convolution through real FFTs (scipy.fft; scipy.signal is slow to import)."""
    from scipy import fft

    shape = (image.shape[0] + kernel.shape[0] - 1, image.shape[1] + kernel.shape[1] - 1)
    fast = tuple(fft.next_fast_len(n, real=True) for n in shape)
    product = fft.rfft2(image, fast) * fft.rfft2(kernel, fast)
    return fft.irfft2(product, fast)[: shape[0], : shape[1]].astype(np.float32)


CUSP_PIXELS = 4
"""Pixels either side of a galaxy's centre integrated on the fine grid :data:`CUSP_SUB`."""
CUSP_SUB = 8
"""Sub-samples a side of a pixel near a galaxy's centre."""
CORE_SUB = 32
"""Sub-samples a side of the 3 x 3 pixels at a galaxy's centre."""


def _sersic_pixels(
    half: int,
    sub: int,
    *,
    n: float,
    r_eff_px: float,
    q: float,
    theta_rad: float,
    dx: float,
    dy: float,
) -> np.ndarray:
    """A Sérsic profile's mean over each of (2 half + 1)**2 pixels, from ``sub`` x ``sub`` points.

    The galaxy's centre is ``(-dx, -dy)`` from the middle pixel's centre; the profile is 1 at
    r_eff and 0 beyond 8 r_eff. Means, not sums: pixels integrated on different grids agree.
    """
    grid = (np.arange((2 * half + 1) * sub) + 0.5) / sub - half - 0.5
    gx = grid[None, :] + dx
    gy = grid[:, None] + dy
    # Major axis along (-sin t, cos t) in pixels (east = -x, north = +y).
    u = -gx * math.sin(theta_rad) + gy * math.cos(theta_rad)
    v = gx * math.cos(theta_rad) + gy * math.sin(theta_rad)
    radius = np.sqrt(u**2 + (v / q) ** 2)
    profile = np.exp(-_sersic_b(n) * ((radius / r_eff_px) ** (1.0 / n) - 1.0))
    profile[radius > 8.0 * r_eff_px] = 0.0
    size = 2 * half + 1
    return profile.reshape(size, sub, size, sub).mean(axis=(1, 3))


def add_sersic(
    image: np.ndarray,
    x: float,
    y: float,
    flux: float,
    *,
    n: float,
    r_eff_px: float,
    q: float,
    theta_rad: float,
    kernel: np.ndarray,
    max_half: int = 300,
) -> None:
    """Add a PSF-convolved Sérsic galaxy of total ``flux`` centred at pixel (x, y), in place.

    The profile is integrated over each pixel on a sub-pixel grid, truncated at 8 half-light
    radii (or ``max_half`` pixels) and renormalised to ``flux``, then convolved with ``kernel``.
    ``theta_rad`` is the major axis's angle from the +y axis towards -x (east of north on a
    north-up, east-left frame).
    """
    ny, nx = image.shape
    k_half = kernel.shape[0] // 2
    half = int(min(max(math.ceil(8.0 * r_eff_px), 3), max_half))
    sub = 3 if half <= 30 else 2 if half <= 100 else 1
    ix, iy = round(x), round(y)
    shape = dict(n=n, r_eff_px=r_eff_px, q=q, theta_rad=theta_rad, dx=ix - x, dy=iy - y)
    pixels = _sersic_pixels(half, sub, **shape)
    # The cusp: a profile sampled at a few points a pixel changes with where the centre falls
    # within the pixel (an n = 3.4 nucleus held 44 % more light within 4 px on a pixel's
    # centre than on its corner), so two pointings of one galaxy differed by a point source
    # at its nucleus. The central pixels are integrated finely, the very centre more so.
    for reach, fine in ((min(half, CUSP_PIXELS), CUSP_SUB), (min(half, 1), CORE_SUB)):
        if fine > sub:
            inner = _sersic_pixels(reach, fine, **shape)
            pixels[half - reach : half + reach + 1, half - reach : half + reach + 1] = inner
    total = pixels.sum()
    if not total > 0:
        return
    pixels *= flux / total
    stamp = _convolve_full(pixels, kernel)
    h = half + k_half
    x0, y0 = ix - h, iy - h
    x1, y1 = x0 + stamp.shape[1], y0 + stamp.shape[0]
    if x1 <= 0 or y1 <= 0 or x0 >= nx or y0 >= ny:
        return
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, nx), min(y1, ny)
    image[cy0:cy1, cx0:cx1] += stamp[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]


def append_sources(
    sources: dict[str, np.ndarray], kind: int, prefix: str, xyf: np.ndarray, wcs: object
) -> dict[str, np.ndarray]:
    """``sources`` with rows (x, y, electrons) of one kind added (no magnitude, not in REFCAT)."""
    n = len(xyf)
    if n == 0:
        return sources
    world = wcs.all_pix2world(xyf[:, :2], 0)  # type: ignore[attr-defined]
    nan = np.full(n, np.nan)
    extra = {
        "id": np.array([f"{prefix}-{k}" for k in range(n)]),
        "x": xyf[:, 0],
        "y": xyf[:, 1],
        "ra": world[:, 0],
        "dec": world[:, 1],
        "mag": nan,
        "flux": xyf[:, 2],
        "kind": np.full(n, kind, np.int8),
        "in_ref": np.zeros(n, bool),
    }
    out = {}
    for key, values in sources.items():
        added = extra.get(key, np.zeros(n) if key.startswith("motion") else nan)
        if key != "id":
            added = added.astype(values.dtype, copy=False)
        out[key] = np.concatenate([values, added])
    return out


# ---------------------------------------------------------------------------------- moonlight


@dataclass(frozen=True)
class Moonlight:
    """The Moon at a frame's mid-exposure and what it adds to the sky.

    Attributes:
        illumination: Illuminated fraction (0 new, 1 full).
        altitude_deg: Altitude at the site.
        distance_deg: Angular distance from the pointing.
        delta_mag: Brightening of the sky in V (mag/arcsec², negative; 0 when the Moon is down).
    """

    illumination: float
    altitude_deg: float
    distance_deg: float
    delta_mag: float


def moonlight(
    when: datetime, site: str, longitude: float, ra: float, dec: float, airmass: float
) -> Moonlight:
    """The Moon's sky brightening at a pointing (Krisciunas and Schaefer 1991, V band).

    Args:
        when: Mid-exposure (UTC).
        site: LCO site code (for the latitude).
        longitude: Site longitude, degrees east.
        ra: Pointing right ascension, degrees.
        dec: Pointing declination, degrees.
        airmass: Airmass of the pointing.
    """
    d = days_since_j2000(np.array([when.timestamp()]))
    moon_ra, moon_dec = (float(v[0]) for v in moon(d))
    sun_ra, sun_dec = (float(v[0]) for v in sun(d))
    latitude = math.radians(SITE_LATITUDE.get(site, 0.0))
    lst = math.radians(280.46061837 + 360.98564736629 * float(d[0]) + longitude)
    hour_angle = lst - moon_ra
    sin_alt = math.sin(latitude) * math.sin(moon_dec) + math.cos(latitude) * math.cos(
        moon_dec
    ) * math.cos(hour_angle)
    altitude = math.asin(max(-1.0, min(1.0, sin_alt)))

    def separation(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
        c = math.sin(dec1) * math.sin(dec2) + math.cos(dec1) * math.cos(dec2) * math.cos(ra1 - ra2)
        return math.acos(max(-1.0, min(1.0, c)))

    elongation = separation(sun_ra, sun_dec, moon_ra, moon_dec)
    illumination = (1.0 - math.cos(elongation)) / 2.0
    rho = math.degrees(separation(math.radians(ra), math.radians(dec), moon_ra, moon_dec))
    delta = 0.0
    if altitude > 0:
        phase = 180.0 - math.degrees(elongation)
        moon_mag = -12.73 + 0.026 * abs(phase) + 4e-9 * phase**4
        lunar = 10 ** (-0.4 * (moon_mag + 16.57))
        rho_c = max(rho, 2.0)
        scattering = 10**5.36 * (1.06 + math.cos(math.radians(rho_c)) ** 2) + 10 ** (
            6.15 - rho_c / 40.0
        )
        z_moon = math.pi / 2 - altitude
        x_moon = (1.0 - 0.96 * math.sin(z_moon) ** 2) ** -0.5
        x_obj = max(airmass, 1.0)
        b_moon = (
            scattering
            * lunar
            * 10 ** (-0.4 * V_EXTINCTION * x_moon)
            * (1.0 - 10 ** (-0.4 * V_EXTINCTION * x_obj))
        )
        b_dark = 34.08 * math.exp(20.7233 - 0.92104 * 21.6)  # nanoLamberts of a V = 21.6 sky
        delta = -2.5 * math.log10((b_dark + b_moon) / b_dark)
    return Moonlight(
        illumination=illumination,
        altitude_deg=math.degrees(altitude),
        distance_deg=rho,
        delta_mag=delta,
    )


# --------------------------------------------------------------------------- satellite trails


@dataclass(frozen=True)
class SatelliteTrail:
    """A satellite's straight trail across a frame.

    Attributes:
        x0: A pixel of the line (0-based x).
        y0: Its y.
        angle_deg: Direction of the line from +x towards +y.
        e_per_px: Electrons deposited per pixel of length.
    """

    x0: float
    y0: float
    angle_deg: float
    e_per_px: float


def satellite_trail(
    rng: np.random.Generator, shape: tuple[int, int], zero_point: float, pixel_scale: float
) -> SatelliteTrail:
    """A trail: a satellite of magnitude 5-8 crossing at 0.3-1 deg/s."""
    ny, nx = shape
    mag = rng.uniform(5.0, 8.0)
    speed_arcsec_s = rng.uniform(0.3, 1.0) * 3600.0
    e_per_px = 10 ** (-0.4 * (mag - zero_point)) * pixel_scale / speed_arcsec_s
    return SatelliteTrail(
        x0=float(rng.uniform(0.2, 0.8) * nx),
        y0=float(rng.uniform(0.2, 0.8) * ny),
        angle_deg=float(rng.uniform(0.0, 180.0)),
        e_per_px=float(e_per_px),
    )


def add_trail(
    image: np.ndarray, trail: SatelliteTrail, fwhm_px: float, beta: float, rows: int = 256
) -> None:
    """Add a trail with the Moffat PSF's line-spread profile, in place."""
    from scipy.special import gammaln

    ny, nx = image.shape
    alpha = moffat_alpha(fwhm_px, beta)
    norm = math.exp(gammaln(beta - 0.5) - gammaln(beta - 1.0)) / (math.sqrt(math.pi) * alpha)
    t = math.radians(trail.angle_deg)
    sin_t, cos_t = math.sin(t), math.cos(t)
    cols = np.arange(nx, dtype=np.float32) - np.float32(trail.x0)
    width = 12.0 * alpha
    for r0 in range(0, ny, rows):
        yy = np.arange(r0, min(r0 + rows, ny), dtype=np.float32) - np.float32(trail.y0)
        dist = np.abs(cols[None, :] * sin_t - yy[:, None] * cos_t)
        near = dist < width
        if not near.any():
            continue
        profile = norm * (1.0 + (dist / alpha) ** 2) ** (0.5 - beta)
        image[r0 : r0 + len(yy)] += np.where(near, trail.e_per_px * profile, 0.0).astype(np.float32)


def trail_points(trail: SatelliteTrail, shape: tuple[int, int], step: float) -> np.ndarray:
    """Points (x, y) every ``step`` pixels along a trail inside the frame."""
    ny, nx = shape
    t = math.radians(trail.angle_deg)
    s = np.arange(-math.hypot(nx, ny), math.hypot(nx, ny), step)
    x = trail.x0 + s * math.cos(t)
    y = trail.y0 + s * math.sin(t)
    inside = (x >= 2) & (x <= nx - 3) & (y >= 2) & (y <= ny - 3)
    return np.column_stack([x[inside], y[inside]])


# ----------------------------------------------------------------------------- minor planets


@dataclass(frozen=True)
class MinorPlanet:
    """A main-belt asteroid moving linearly across the sky near a transient.

    Attributes:
        number: Its number (SkyBoT's ``Num``).
        name: Its name.
        ra: Right ascension at ``epoch``, degrees.
        dec: Declination at ``epoch``, degrees.
        epoch: Reference time (UTC).
        dra_arcsec_h: Motion in RA times cos(dec), arcsec per hour.
        ddec_arcsec_h: Motion in Dec, arcsec per hour.
        v_mag: Apparent V magnitude.
    """

    number: int
    name: str
    ra: float
    dec: float
    epoch: datetime
    dra_arcsec_h: float
    ddec_arcsec_h: float
    v_mag: float

    def position(self, when: datetime) -> tuple[float, float]:
        """ICRS (ra, dec) in degrees at ``when``."""
        hours = (when - self.epoch).total_seconds() / 3600.0
        dec = self.dec + self.ddec_arcsec_h * hours / 3600.0
        ra = self.ra + self.dra_arcsec_h * hours / 3600.0 / max(math.cos(math.radians(dec)), 1e-6)
        return ra % 360.0, dec

    def magnitude(self, band: str) -> float:
        """AB magnitude in an LCO band (a C/S-type asteroid's colours)."""
        return self.v_mag + {"gp": 0.35, "rp": -0.15, "ip": -0.25, "zs": -0.25}.get(band, 0.0)


def minor_planets_for(seed: int, transients: tuple[Transient, ...]) -> list[MinorPlanet]:
    """One minor planet per transient, 1.5-4 arcmin from it at the transient's peak.

    Drawn from the sky's seed and the transient's name: the same sky has the same asteroids.
    """
    planets = []
    for k, transient in enumerate(transients):
        rng = np.random.default_rng(mix_seed(seed, "minor-planet", transient.name))
        distance = rng.uniform(1.5, 4.0) / 60.0
        angle = rng.uniform(0.0, 2 * math.pi)
        dec = transient.dec + distance * math.cos(angle)
        ra = transient.ra + distance * math.sin(angle) / max(math.cos(math.radians(dec)), 1e-6)
        speed = rng.uniform(15.0, 40.0)
        direction = rng.uniform(0.0, 2 * math.pi)
        number = 100_000 + int(rng.integers(0, 500_000))
        planets.append(
            MinorPlanet(
                number=number,
                name=f"Sandbox {number - 99_000 + k}",
                ra=ra % 360.0,
                dec=dec,
                epoch=transient.peak_time,
                dra_arcsec_h=speed * math.sin(direction),
                ddec_arcsec_h=speed * math.cos(direction),
                v_mag=float(rng.uniform(18.0, 19.0)),
            )
        )
    return planets
