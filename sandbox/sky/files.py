"""How the synthetic sky writes its frames: LCO headers, (compressed) image HDUs, files."""

from __future__ import annotations

import io
import math
import zlib
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS

from sandbox.sky.model import SITE_LONGITUDE, FrameConditions, sexagesimal
from sandbox.specs import FrameSpec

if TYPE_CHECKING:
    from sandbox.sky.synthetic import SyntheticSky

__all__ = ["frame_header", "image_hdu", "raw_saturate", "reduced_hdul", "serialise"]


def frame_header(
    sky: SyntheticSky, spec: FrameSpec, cond: FrameConditions, wcs: WCS, *, level: int
) -> fits.Header:
    """The header of a frame as LCO writes it (BANZAI's keywords at level 91)."""
    ny, nx = sky.shape
    start = Time(spec.date_obs)
    t = spec.exposure_time_s
    ra_str, dec_str = sexagesimal(spec.ra, spec.dec)
    longitude = SITE_LONGITUDE.get(spec.site_id, 0.0)
    day_obs = (spec.date_obs + timedelta(hours=longitude / 15.0 - 12.0)).strftime("%Y%m%d")
    obstype = {"EXPOSE": "EXPOSE", "BIAS": "BIAS", "DARK": "DARK", "SKYFLAT": "SKYFLAT"}[
        spec.configuration_type
    ]
    raw_name = (
        spec.basename[:-3] + f"{spec.basename[-3]}00"
        if spec.basename[-2:].isdigit()
        else spec.basename
    )
    gain = 1.0 if level == 91 else sky.gain_raw
    saturate = sky.saturation_e if level == 91 else None
    h = fits.Header()
    cards: list[tuple[str, object, str]] = [
        ("ORIGIN", "LCOGT", "Organization responsible for the data"),
        ("SITEID", spec.site_id, "ID code of the Observatory site"),
        ("ENCID", spec.enclosure_id, "ID code of the Enclosure"),
        ("TELID", spec.telescope_id, "ID code of the Telescope"),
        (
            "TELESCOP",
            f"{spec.telescope_id[:3]}-{zlib.crc32((spec.site_id + spec.enclosure_id + spec.telescope_id).encode()) % 14 + 1:02d}",
            "Telescope used",
        ),
        ("INSTRUME", spec.instrument_id, "Instrument used"),
        ("OBSTYPE", obstype, "Observation type"),
        (
            "OBJECT",
            spec.target_name if spec.configuration_type == "EXPOSE" else "N/A",
            "Object name",
        ),
        ("FILTER", spec.filter or "air", "Filter used"),
        ("FILTER1", spec.filter or "air", "Filter in wheel 1"),
        ("EXPTIME", round(t, 3), "[s] Exposure length"),
        ("DATE-OBS", start.isot, "[UTC] Start of the observation"),
        ("DAY-OBS", day_obs, "[UTC] Date at start of local observing night"),
        ("UTSTART", start.isot[11:], "[UTC] The start time of the observation"),
        ("UTSTOP", (start + t * u.s).isot[11:], "[UTC] The finish time of the observation"),
        ("MJD-OBS", round(start.mjd, 8), "[UTC days] Start date/time (MJD)"),
        ("RA", ra_str, "[HH:MM:SS.sss] Telescope pointing RA"),
        ("DEC", dec_str, "[sDD:MM:SS.ss] Telescope pointing Dec"),
        ("CAT-RA", ra_str, "[HH:MM:SS.sss] Catalog RA of the object"),
        ("CAT-DEC", dec_str, "[sDD:MM:SS.ss] Catalog Dec of the object"),
        (
            "AIRMASS",
            round(cond.airmass, 4) if spec.configuration_type == "EXPOSE" else 1.0,
            "Effective mean airmass",
        ),
        ("PIXSCALE", sky.pixel_scale_arcsec, "[arcsec/pixel] Nominal pixel scale on sky"),
        ("GAIN", gain, "[electrons/count] Pixel gain"),
        ("RDNOISE", sky.read_noise_e, "[electrons/pixel] Read noise"),
        (
            "SATURATE",
            round(
                saturate if saturate is not None else raw_saturate(sky.saturation_e, sky.gain_raw),
                1,
            ),
            "[ADU] Saturation level used" if level == 0 else "[e-] Saturation level used",
        ),
        (
            "MAXLIN",
            round(
                0.95
                * (
                    saturate
                    if saturate is not None
                    else raw_saturate(sky.saturation_e, sky.gain_raw)
                ),
                1,
            ),
            "Non-linearity level",
        ),
        ("PROPID", spec.proposal_id, "Proposal ID"),
        ("GROUPID", spec.group_name or "N/A", "Group identification"),
        (
            "TRACKNUM",
            f"{spec.group_id:010d}" if spec.group_id is not None else "N/A",
            "Request group id",
        ),
        (
            "REQNUM",
            f"{spec.request_id:010d}" if spec.request_id is not None else "N/A",
            "Request number",
        ),
        ("BLKUID", (spec.request_id or 0) * 10 + 1, "Block unique ID"),
        ("MOLUID", f"{spec.frame_number:08d}", "Molecule unique ID"),
        ("FRAMENUM", spec.frame_number, "Running frame number"),
        ("RLEVEL", level, "Reduction level"),
        ("ORIGNAME", raw_name, "Fname written by ICS"),
        ("PIPEVER", "sandbox" if level == 91 else "N/A", "Pipeline version"),
        ("L1PUBDAT", (start + 365 * u.day).isot, "[UTC] Date the frame becomes public"),
    ]
    for key, value, comment in cards:
        h[key] = (value, comment)
    if spec.configuration_type in ("EXPOSE", "SKYFLAT"):
        for key, value, comment in _wcs_cards(wcs):
            h[key] = (value, comment)
        h["WCSERR"] = (0, "Error status of WCS fit. 0 for no error")
    h["NAXIS1"] = nx
    h["NAXIS2"] = ny
    return h


def _wcs_cards(wcs: WCS) -> list[tuple[str, object, str]]:
    """The WCS keywords BANZAI writes: a CD matrix (astropy would write PC + CDELT)."""
    return [
        ("CTYPE1", "RA---TAN", "Type of WCS Projection"),
        ("CTYPE2", "DEC--TAN", "Type of WCS Projection"),
        (
            "CRPIX1",
            float(wcs.wcs.crpix[0]),
            "[pixel] Coordinate of reference point (axis 1)",
        ),
        (
            "CRPIX2",
            float(wcs.wcs.crpix[1]),
            "[pixel] Coordinate of reference point (axis 2)",
        ),
        ("CRVAL1", float(wcs.wcs.crval[0]), "[deg] RA at the reference pixel"),
        ("CRVAL2", float(wcs.wcs.crval[1]), "[deg] Dec at the reference pixel"),
        ("CUNIT1", "deg", "Units of RA"),
        ("CUNIT2", "deg", "Units of Dec"),
        ("CD1_1", float(wcs.wcs.cd[0, 0]), "Coordinate transformation matrix element"),
        ("CD1_2", float(wcs.wcs.cd[0, 1]), "Coordinate transformation matrix element"),
        ("CD2_1", float(wcs.wcs.cd[1, 0]), "Coordinate transformation matrix element"),
        ("CD2_2", float(wcs.wcs.cd[1, 1]), "Coordinate transformation matrix element"),
        ("RADESYS", "ICRS", "Equatorial coordinate system"),
    ]


def raw_saturate(saturation_e: float, gain_raw: float) -> float:
    """SATURATE of raw frames (ADU): the full well over the gain above the lowest bias level."""
    inst_bias = 480.0 - 8.0 - 10.0  # lowest possible bias level in ADU (see make_instrument)
    return math.floor(inst_bias + saturation_e / gain_raw)


def image_hdu(
    data: np.ndarray,
    header: fits.Header | None,
    name: str,
    *,
    compress: bool,
    quantize: float = 16.0,
) -> fits.ImageHDU | fits.CompImageHDU:
    """An image extension, RICE-compressed as the archive's ``.fits.fz`` when ``compress``."""
    if not compress:
        return fits.ImageHDU(data, header=header, name=name)
    rows = min(64, data.shape[0])
    # A fixed dither seed (the default uses the clock) keeps the pixels reproducible.
    quantized = (
        {"quantize_level": quantize, "dither_seed": 1 + zlib.crc32(name.encode()) % 10000}
        if data.dtype.kind == "f"
        else {}
    )
    return fits.CompImageHDU(
        data,
        header=header,
        name=name,
        compression_type="RICE_1",
        tile_shape=(rows, data.shape[1]),
        **quantized,
    )


def reduced_hdul(
    header: fits.Header,
    sci: np.ndarray,
    err: np.ndarray,
    bpm: np.ndarray,
    catalog: Table,
    *,
    compress: bool,
) -> fits.HDUList:
    """A BANZAI-like reduced file: empty primary, SCI, CAT, BPM and ERR."""
    for key in ("NAXIS1", "NAXIS2"):
        header.remove(key, ignore_missing=True)
    sci_hdu = image_hdu(sci, header, "SCI", compress=compress)
    cat_hdu = fits.BinTableHDU(catalog, name="CAT")
    bpm_hdu = image_hdu(bpm, None, "BPM", compress=compress)
    err_hdu = image_hdu(err, None, "ERR", compress=compress, quantize=4.0)
    for hdu in (bpm_hdu, err_hdu):
        hdu.header["EXTVER"] = 1
    return fits.HDUList([fits.PrimaryHDU(), sci_hdu, cat_hdu, bpm_hdu, err_hdu])


def serialise(hdul: fits.HDUList) -> bytes:
    """Write an HDU list to bytes, compressing its image extensions in parallel threads.

    Tile compression (quantisation + RICE) is most of the writing time and releases the GIL, so
    each extension is written on its own (after a throw-away primary) and the pieces are
    concatenated: a FITS file is the sequence of its HDUs, each padded to 2880 bytes.
    """
    from concurrent.futures import ThreadPoolExecutor

    primary = io.BytesIO()
    fits.HDUList([hdul[0]]).writeto(primary)
    head = primary.getvalue()
    empty = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU()]).writeto(empty)
    skip = len(empty.getvalue())

    def one(hdu: fits.hdu.base.ExtensionHDU) -> bytes:
        buffer = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
        return buffer.getvalue()[skip:]

    with ThreadPoolExecutor(max_workers=2) as pool:
        parts = list(pool.map(one, hdul[1:]))
    return head + b"".join(parts)
