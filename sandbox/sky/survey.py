"""Survey cutouts of the synthetic sky: a Pan-STARRS1-like stack, without the transients.

The cutout shows the sky's stars and (on the realistic sky) galaxies, but no transient, minor
planet or trail: a reference taken years before the event. Pixels follow the PS1 stack
convention: ``m = 25 + 2.5 log10(EXPTIME) - 2.5 log10(counts)``, with a 0.25 arcsec pixel, a
Moffat PSF of about 1.2 arcsec, Gaussian noise for a 5-sigma point-source depth near 23.
The header carries a TAN WCS, ``EXPTIME``, ``FILTER``, ``ZPT`` (the zero point above, for
convenience), ``FPA.ZP`` (25.0) and ``HIERARCH FPA.EXPOSURE``.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from sandbox.sky import realism
from sandbox.sky.model import mix_seed

if TYPE_CHECKING:
    from sandbox.sky.synthetic import SyntheticSky

__all__ = ["PS1_BANDS", "PS1_PIXEL_SCALE", "survey_cutout"]

PS1_PIXEL_SCALE = 0.25
PS1_BANDS = ("g", "r", "i", "z", "y")
_EXPTIME = {"g": 1080.0, "r": 900.0, "i": 1320.0, "z": 900.0, "y": 1050.0}
_FWHM = {"g": 1.31, "r": 1.19, "i": 1.11, "z": 1.07, "y": 1.02}
_DEPTH = {"g": 23.3, "r": 23.2, "i": 23.1, "z": 22.3, "y": 21.4}


def survey_cutout(
    sky: SyntheticSky, ra: float, dec: float, size: int, band: str, *, pixel_scale: float = 0.25
) -> bytes:
    """A FITS cutout (bytes) of ``size`` x ``size`` pixels centred on (ra, dec), without transients.

    Raises:
        ValueError: Unknown band or a size outside 8-6000 pixels.
    """
    if band not in PS1_BANDS:
        raise ValueError(f"band must be one of {PS1_BANDS}, got {band!r}")
    if not 8 <= size <= 6000:
        raise ValueError(f"size must be 8 to 6000 pixels, got {size}")
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [size / 2.0 + 0.5, size / 2.0 + 0.5]
    scale = pixel_scale / 3600.0
    w.wcs.cd = np.array([[-scale, 0.0], [0.0, scale]])
    w.wcs.radesys = "ICRS"
    w.wcs.equinox = 2000.0
    exptime = _EXPTIME[band]
    zp = 25.0 + 2.5 * math.log10(exptime)
    fwhm_px = _FWHM[band] / pixel_scale
    beta = 3.0
    radius = size * pixel_scale / 3600.0 / math.sqrt(2.0) + 0.005
    image = np.zeros((size, size), np.float32)
    col = "y" if band == "y" else band
    mag_col = "zmag" if col == "y" else f"{col}mag"
    stars = sky.stars(ra, dec, radius)
    if len(stars):
        xy = w.all_world2pix(np.column_stack([stars["ra"], stars["dec"]]), 0)
        flux = 10 ** (-0.4 * (np.asarray(stars[mag_col]) - zp))
        realism.moffat_points(image, xy[:, 0], xy[:, 1], flux, fwhm_px, beta)
    galaxies = sky.galaxies(ra, dec, radius + 0.02)
    if len(galaxies):
        kernel = realism.moffat_kernel(fwhm_px, beta)
        xy = w.all_world2pix(np.column_stack([galaxies["ra"], galaxies["dec"]]), 0)
        for k in range(len(galaxies)):
            realism.add_sersic(
                image,
                float(xy[k, 0]),
                float(xy[k, 1]),
                float(10 ** (-0.4 * (float(galaxies[mag_col][k]) - zp))),
                n=float(galaxies["n"][k]),
                r_eff_px=float(galaxies["r_eff"][k]) / pixel_scale,
                q=float(galaxies["q"][k]),
                theta_rad=math.radians(float(galaxies["pa"][k])),
                kernel=kernel,
            )
    # Noise for a 5-sigma depth in an aperture of radius one FWHM (Moffat enclosed fraction).
    alpha = realism.moffat_alpha(fwhm_px, beta)
    fraction = float(realism.moffat_enclosed(fwhm_px, alpha, beta))
    limit_counts = 10 ** (-0.4 * (_DEPTH[band] - zp)) * fraction
    sigma_px = limit_counts / 5.0 / math.sqrt(math.pi * fwhm_px**2)
    rng = np.random.default_rng(mix_seed(sky.seed, "ps1", band, round(ra, 6), round(dec, 6), size))
    image += rng.normal(0.0, sigma_px, image.shape).astype(np.float32)
    header = w.to_header()
    header["EXPTIME"] = (exptime, "[s] Stack exposure time")
    header["HIERARCH FPA.EXPOSURE"] = exptime
    header["HIERARCH FPA.ZP"] = (25.0, "Zero point for 1 s")
    header["ZPT"] = (round(zp, 4), "m = ZPT - 2.5 log10(counts)")
    header["FILTER"] = (f"{band}.00000", "PS1 filter")
    header["HIERARCH FPA.FILTER"] = f"{band}.00000"
    header["SEEING"] = (_FWHM[band], "[arcsec] PSF FWHM")
    header["SANDBOX"] = ("ps1-stack", "synthetic reference: no transients")
    hdu = fits.PrimaryHDU(image, header=header)
    buffer = io.BytesIO()
    hdu.writeto(buffer)
    return buffer.getvalue()
