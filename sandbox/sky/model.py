"""The synthetic sky's physical model: bands, mask bits, photometric system, draws, truth records."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle
from astropy.table import Table
from astropy.wcs import WCS

from sandbox.specs import FrameSpec, Transient

__all__ = [
    "BANDS",
    "BPM_BAD",
    "BPM_COSMIC_RAY",
    "BPM_LOW_FLAT",
    "BPM_SATURATED",
    "FrameConditions",
    "FrameTruth",
]

BANDS: tuple[str, ...] = ("gp", "rp", "ip", "zs")
"""Filters the sky knows (LCO codes)."""

BPM_BAD = 1
BPM_SATURATED = 2
BPM_LOW_FLAT = 4
BPM_COSMIC_RAY = 8

# Catalogue band of each LCO filter, and the colour BANZAI uses for its colour term.
CATALOG_BAND = {"gp": "g", "rp": "r", "ip": "i", "zs": "z"}
COLOUR = {"gp": ("g", "r"), "rp": ("r", "i"), "ip": ("r", "i"), "zs": ("i", "z")}

# Photometric system of a 1 m + Sinistro: magnitude giving 1 e-/s above the atmosphere,
# extinction per airmass, dark-sky brightness (mag/arcsec^2).
ZP_ABOVE_ATMOSPHERE = {"gp": 23.62, "rp": 23.55, "ip": 23.15, "zs": 22.30}
EXTINCTION = {"gp": 0.20, "rp": 0.12, "ip": 0.08, "zs": 0.06}
DARK_SKY = {"gp": 21.9, "rp": 21.0, "ip": 20.2, "zs": 19.3}

# Site longitudes (degrees east), only used for DAY-OBS.
SITE_LONGITUDE = {
    "coj": 149.07,
    "cpt": 20.81,
    "tfn": -16.51,
    "lsc": -70.80,
    "elp": -104.02,
    "ogg": -156.26,
}

# Star catalogue: HEALPix cells of nside 2**7 (~0.21 deg^2); positions on sub-cells 2**16 finer.
CELL_ORDER = 7
SUB_ORDER = 16
COUNT_SLOPE = 0.2  # d log10 N / dm
BRIGHT_LIMIT = 12.0

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def mix_seed(*parts: object) -> list[int]:
    """Turn strings and integers into a seed sequence for numpy (stable across runs)."""
    out: list[int] = []
    for part in parts:
        if isinstance(part, int | np.integer):
            out.append(int(part) & 0xFFFFFFFF)
        else:
            out.append(zlib.crc32(str(part).encode()))
    return out


def exposure_key(spec: FrameSpec) -> str:
    """What a frame's conditions are drawn from: the exposure (raw and reduced alike)."""
    return spec.exposure_id or spec.basename


def frame_key(spec: FrameSpec) -> str:
    """What a frame's own draws (noise, cosmic rays, deblending) are drawn from."""
    if spec.exposure_id is None:
        return spec.basename
    return f"{spec.exposure_id}/{spec.reduction_level}"


def mid_exposure(spec: FrameSpec) -> datetime:
    return spec.date_obs + timedelta(seconds=spec.exposure_time_s / 2.0)


def sexagesimal(ra_deg: float, dec_deg: float) -> tuple[str, str]:
    ra = Angle(ra_deg, u.deg).to_string(unit=u.hourangle, sep=":", precision=3, pad=True)
    dec = Angle(dec_deg, u.deg).to_string(
        unit=u.deg, sep=":", precision=2, pad=True, alwayssign=True
    )
    return ra, dec


@dataclass(frozen=True)
class FrameConditions:
    """Observing conditions of one frame, all true values.

    Attributes:
        fwhm_arcsec: Seeing FWHM in arcseconds.
        airmass: Airmass of the pointing.
        sky_mag_arcsec2: Sky brightness in mag/arcsec^2 (science frames).
        sky_e_per_s: Sky level in electrons per second per pixel at the frame centre.
        sky_gradient: Fractional sky gradient across the frame in x and y.
        zero_point: Magnitude giving 1 e-/s of total flux (colour 0) in the reduced frame.
        pointing_offset_arcsec: Offset of the true frame centre from the requested pointing (east, north).
        flat_level_e: Counts per pixel of a SKYFLAT frame (electrons), 0 otherwise.
        bias_drift_adu: Offset of this frame's bias level from the master (ADU).
        psf_beta: Moffat beta of the PSF (realistic sky); None: a Gaussian PSF.
        moon_illumination: Illuminated fraction of the Moon (realistic sky).
        moon_altitude_deg: The Moon's altitude at the site (realistic sky).
        moon_distance_deg: The Moon's distance from the pointing (realistic sky).
    """

    fwhm_arcsec: float
    airmass: float
    sky_mag_arcsec2: float
    sky_e_per_s: float
    sky_gradient: tuple[float, float]
    zero_point: float
    pointing_offset_arcsec: tuple[float, float]
    flat_level_e: float
    bias_drift_adu: float
    psf_beta: float | None = None
    moon_illumination: float | None = None
    moon_altitude_deg: float | None = None
    moon_distance_deg: float | None = None


@dataclass(frozen=True)
class FrameTruth:
    """What is really on a frame.

    Attributes:
        basename: Frame basename.
        band: Filter code.
        mid_exposure: Middle of the exposure (UTC): transient magnitudes are evaluated there.
        conditions: The frame's observing conditions (including the true zero point).
        wcs: The frame's true WCS.
        transients: One row per transient on the frame: ``name``, ``ra``, ``dec`` (deg), ``x``,
            ``y`` (0-based pixels), ``mag`` (AB, true), ``flux_e`` (electrons in the exposure).
        depth_5sigma: AB magnitude of a point source detected at S/N 5 by an aperture of radius
            one FWHM at the frame centre (sky, read noise; aperture loss included).
    """

    basename: str
    band: str | None
    mid_exposure: datetime
    conditions: FrameConditions
    wcs: WCS
    transients: Table
    depth_5sigma: float | None


def transient_colour(transient: Transient, band: str, when: datetime) -> float:
    c1, c2 = COLOUR[band]
    lco = {v: k for k, v in CATALOG_BAND.items()}
    b1, b2 = lco[c1], lco[c2]
    if b1 in transient.peak_mag and b2 in transient.peak_mag:
        return transient.magnitude(b1, when) - transient.magnitude(b2, when)
    return 0.0


def angular_separation_deg(ra0: float, dec0: float, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    ra0r, dec0r = math.radians(ra0), math.radians(dec0)
    rar, decr = np.radians(ra), np.radians(dec)
    s = (
        np.sin((decr - dec0r) / 2) ** 2
        + math.cos(dec0r) * np.cos(decr) * np.sin((rar - ra0r) / 2) ** 2
    )
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(s, 0, 1))))
