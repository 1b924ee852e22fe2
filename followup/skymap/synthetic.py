"""Synthetic sky maps: a Gaussian blob of known width, as a SkyMap or as LVK-style FITS bytes."""

from __future__ import annotations

import gzip
import io
import math
from typing import Any, Literal

import astropy_healpix as ah
import numpy as np
from astropy import units as u
from astropy.io import fits

from followup.skymap.distance import ansatz_parameters
from followup.skymap.pixels import _nested_lonlat
from followup.skymap.sky import SkyMap

__all__ = ["gaussian_skymap", "make_gaussian_skymap"]


def _offsets_deg(
    ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float
) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthal-equidistant offsets (east, north) in degrees of positions from a centre."""
    r1, d1 = np.radians(ra), np.radians(dec)
    r0, d0 = math.radians(ra0), math.radians(dec0)
    cos_c = np.sin(d0) * np.sin(d1) + np.cos(d0) * np.cos(d1) * np.cos(r1 - r0)
    c = np.arccos(np.clip(cos_c, -1, 1))
    bearing = np.arctan2(
        np.cos(d1) * np.sin(r1 - r0),
        np.cos(d0) * np.sin(d1) - np.sin(d0) * np.cos(d1) * np.cos(r1 - r0),
    )
    east = np.degrees(c) * np.sin(bearing)
    north = np.degrees(c) * np.cos(bearing)
    return east, north


def _gaussian_density(
    ra: np.ndarray,
    dec: np.ndarray,
    ra0: float,
    dec0: float,
    sigma: float,
    sigma_minor: float,
    pa_deg: float,
) -> np.ndarray:
    east, north = _offsets_deg(ra, dec, ra0, dec0)
    pa = math.radians(pa_deg)
    # Major axis at position angle pa east of north.
    major = north * math.cos(pa) + east * math.sin(pa)
    minor = -north * math.sin(pa) + east * math.cos(pa)
    return np.exp(-0.5 * ((major / sigma) ** 2 + (minor / sigma_minor) ** 2))


def gaussian_skymap(
    ra: float,
    dec: float,
    sigma_deg: float,
    *,
    sigma_minor_deg: float | None = None,
    position_angle_deg: float = 0.0,
    distance_mpc: float | None = None,
    distance_sigma_mpc: float | None = None,
    max_order: int | None = None,
    object_name: str = "SYNTHETIC",
) -> SkyMap:
    """A multi-order sky map of a 2-D Gaussian blob (circular or elliptical) on the sphere.

    The density is ``exp(-(a**2/sigma**2 + b**2/sigma_minor**2)/2)`` in azimuthal-equidistant
    offsets from the centre, sampled at pixel centres and normalised. Pixels within about six
    sigma are refined down to ``max_order``; the rest of the sky stays coarse.

    Args:
        ra: Centre RA in degrees.
        dec: Centre Dec in degrees.
        sigma_deg: Gaussian width (major axis) in degrees.
        sigma_minor_deg: Minor-axis width in degrees (default: circular).
        position_angle_deg: Major-axis position angle east of north, degrees.
        distance_mpc: Mean distance in Mpc; adds uniform DISTMU/DISTSIGMA/DISTNORM layers.
        distance_sigma_mpc: Distance standard deviation in Mpc (default 20% of the distance).
        max_order: Deepest HEALPix order (default: pixels about sigma/10 wide, at most 13).
        object_name: The OBJECT header value.

    Returns:
        The sky map; 90% area of a circular blob ~ ``pi * sigma**2 * -2 ln(0.1)`` deg2.

    Raises:
        ValueError: Non-positive widths or an impossible distance spread.
    """
    if not sigma_deg > 0:
        raise ValueError(f"sigma_deg must be positive, got {sigma_deg}")
    minor = sigma_deg if sigma_minor_deg is None else float(sigma_minor_deg)
    if not minor > 0:
        raise ValueError(f"sigma_minor_deg must be positive, got {minor}")
    if not -90 <= dec <= 90:
        raise ValueError(f"dec must be within [-90, 90], got {dec}")
    smallest = min(sigma_deg, minor)
    if max_order is None:
        res = smallest / 10.0
        max_order = int(np.clip(math.ceil(math.log2(58.6 / res)), 3, 13))
    max_order = int(max_order)
    base = min(3, max_order)
    radius = 6.5 * max(sigma_deg, minor)
    ipix = np.arange(12 * 4**base, dtype=np.int64)
    done_uniq: list[np.ndarray] = []
    for o in range(base, max_order):
        lon, lat = _nested_lonlat(ipix, np.full(ipix.size, o))
        east, north = _offsets_deg(lon, lat, ra, dec)
        dist = np.hypot(east, north)
        pixel_size = float(ah.nside_to_pixel_resolution(2**o).to_value(u.deg)) * 1.5
        refine = dist < radius + pixel_size
        done_uniq.append(4 * 4**o + ipix[~refine])
        ipix = ((ipix[refine] << 2)[:, None] + np.arange(4)[None, :]).ravel()
    done_uniq.append(4 * 4**max_order + ipix)
    uniq = np.concatenate(done_uniq)
    order, nest = ah.uniq_to_level_ipix(uniq)
    lon, lat = _nested_lonlat(np.asarray(nest), np.asarray(order))
    density = _gaussian_density(lon, lat, ra, dec, sigma_deg, minor, position_angle_deg)
    area = 4 * math.pi / (12.0 * 4.0 ** np.asarray(order))
    density = density / np.sum(density * area)
    meta: dict[str, Any] = {"OBJECT": object_name, "CREATOR": "followup.skymap.gaussian_skymap"}
    if distance_mpc is None:
        return SkyMap(uniq, density, meta=meta)
    dsig = 0.2 * distance_mpc if distance_sigma_mpc is None else float(distance_sigma_mpc)
    mu, sig, norm = ansatz_parameters(float(distance_mpc), dsig)
    meta["DISTMEAN"] = float(distance_mpc)
    meta["DISTSTD"] = dsig
    n = uniq.size
    return SkyMap(
        uniq,
        density,
        distmu=np.full(n, mu),
        distsigma=np.full(n, sig),
        distnorm=np.full(n, norm),
        meta=meta,
    )


def make_gaussian_skymap(
    ra: float,
    dec: float,
    sigma_deg: float,
    *,
    distance_mpc: float | None = None,
    distance_sigma_mpc: float | None = None,
    form: Literal["multiorder", "flat"] = "multiorder",
    nside: int | None = None,
    max_order: int | None = None,
    ordering: Literal["NESTED", "RING"] = "NESTED",
    sigma_minor_deg: float | None = None,
    position_angle_deg: float = 0.0,
    object_name: str = "SYNTHETIC",
    compress: bool = False,
) -> bytes:
    """FITS bytes of a Gaussian-blob sky map, as LVK's readers expect them (for tests and drills).

    The multi-order form is a BinTable with UNIQ, PROBDENSITY (and DISTMU, DISTSIGMA, DISTNORM
    when a distance is given), header ORDERING='NUNIQ', MOC=True, OBJECT, DISTMEAN, DISTSTD.
    The flat form samples the same density at every pixel centre of one NSIDE, in RING or
    NESTED order, in a PROB column (pix-1) with per-pixel distance layers.

    Args:
        ra: Centre RA in degrees.
        dec: Centre Dec in degrees.
        sigma_deg: Gaussian width in degrees.
        distance_mpc: Mean distance in Mpc (adds the distance layers).
        distance_sigma_mpc: Distance standard deviation in Mpc (default 20%).
        form: ``"multiorder"`` or ``"flat"``.
        nside: NSIDE of a flat map (default: pixels about sigma/10 wide, at most 4096).
        max_order: Deepest order of a multi-order map (see :func:`gaussian_skymap`).
        ordering: ``"NESTED"`` or ``"RING"`` for a flat map (ignored for multi-order).
        sigma_minor_deg: Minor-axis width for an elliptical blob.
        position_angle_deg: Major-axis position angle east of north.
        object_name: OBJECT header value.
        compress: Gzip the output.

    Returns:
        FITS bytes.

    Raises:
        ValueError: Bad widths, form, ordering or NSIDE.
    """
    if form == "multiorder":
        sky = gaussian_skymap(
            ra,
            dec,
            sigma_deg,
            sigma_minor_deg=sigma_minor_deg,
            position_angle_deg=position_angle_deg,
            distance_mpc=distance_mpc,
            distance_sigma_mpc=distance_sigma_mpc,
            max_order=max_order,
            object_name=object_name,
        )
        return sky.to_fits(form="multiorder", compress=compress)
    if form != "flat":
        raise ValueError(f"form must be 'multiorder' or 'flat', got {form!r}")
    if ordering not in ("NESTED", "RING"):
        raise ValueError(f"ordering must be NESTED or RING, got {ordering!r}")
    if not sigma_deg > 0:
        raise ValueError(f"sigma_deg must be positive, got {sigma_deg}")
    minor = sigma_deg if sigma_minor_deg is None else float(sigma_minor_deg)
    if nside is None:
        res = min(sigma_deg, minor) / 10.0
        nside = 2 ** int(np.clip(math.ceil(math.log2(58.6 / res)), 3, 12))
    if nside < 1 or nside & (nside - 1):
        raise ValueError(f"nside must be a power of two, got {nside}")
    npix = 12 * nside * nside
    index = np.arange(npix, dtype=np.int64)
    lon, lat = ah.healpix_to_lonlat(index, nside, order=ordering.lower())
    density = _gaussian_density(
        lon.to_value(u.deg), lat.to_value(u.deg), ra, dec, sigma_deg, minor, position_angle_deg
    )
    prob = density / density.sum()
    cols = [fits.Column("PROB", "D", unit="pix-1", array=prob)]
    header: dict[str, Any] = {
        "PIXTYPE": "HEALPIX",
        "ORDERING": ordering,
        "COORDSYS": "C",
        "NSIDE": nside,
        "INDXSCHM": "IMPLICIT",
        "FIRSTPIX": 0,
        "LASTPIX": npix - 1,
        "OBJECT": object_name,
        "CREATOR": "followup.skymap.make_gaussian_skymap",
    }
    if distance_mpc is not None:
        dsig = 0.2 * distance_mpc if distance_sigma_mpc is None else float(distance_sigma_mpc)
        mu, sig, norm = ansatz_parameters(float(distance_mpc), dsig)
        cols += [
            fits.Column("DISTMU", "D", unit="Mpc", array=np.full(npix, mu)),
            fits.Column("DISTSIGMA", "D", unit="Mpc", array=np.full(npix, sig)),
            fits.Column("DISTNORM", "D", unit="Mpc-2", array=np.full(npix, norm)),
        ]
        header["DISTMEAN"] = float(distance_mpc)
        header["DISTSTD"] = dsig
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header.update(header)
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
    data = buffer.getvalue()
    return gzip.compress(data, compresslevel=6) if compress else data
