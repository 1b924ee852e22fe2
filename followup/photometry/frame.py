"""The frame as photometry sees it: electrons, errors, pixel flags, WCS, filter, exposure and FWHM."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.table import Table

from followup.exceptions import PhotometryError, ReductionError
from followup.reduction import (
    BPM_BAD,
    BPM_COSMIC_RAY,
    BPM_LOW_FLAT,
    BPM_SATURATED,
    FitsFrame,
    FrameSource,
    read_frame,
)

__all__ = [
    "FWHM_TO_SIGMA",
    "MASKED_BITS",
    "AnyFrame",
    "PreparedFrame",
    "edge_flags",
    "gaussian_pixels",
    "pixel_scale",
    "prepare_frame",
    "with_typical_fwhm",
]

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
"""Standard deviation of a Gaussian per unit FWHM."""
MASKED_BITS = BPM_BAD | BPM_SATURATED | BPM_LOW_FLAT | BPM_COSMIC_RAY
"""BPM bits whose pixels photometry leaves out."""
TYPICAL_SEEING_ARCSEC = 2.0
"""A first guess of the FWHM at LCO when neither the header nor the stars tell it."""


@dataclass
class PreparedFrame:
    """A calibrated frame ready to measure.

    Attributes:
        data: Image, float32 electrons.
        err: 1-sigma error, float32 electrons.
        flags: BPM bits, uint8.
        header: The science header.
        wcs: Celestial WCS.
        band: The header's ``FILTER``.
        exptime: Exposure time in seconds.
        fwhm: PSF FWHM in pixels (NaN when not known yet).
        saturate: Saturation level in electrons, if known.
        name: Frame basename.
        catalog: BANZAI's ``CAT`` table, if any.
        mask: Pixels left out of photometry (any of :data:`MASKED_BITS`).
    """

    data: np.ndarray
    err: np.ndarray
    flags: np.ndarray
    header: fits.Header
    wcs: Any
    band: str
    exptime: float
    fwhm: float
    saturate: float | None
    name: str
    catalog: Table | None
    mask: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.mask = (self.flags & MASKED_BITS) > 0

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape (ny, nx)."""
        return self.data.shape  # type: ignore[return-value]

    @property
    def label(self) -> str:
        """The frame's name for messages."""
        return self.name or "<memory>"

    @property
    def fwhm_known(self) -> bool:
        """True when the FWHM is a positive number."""
        return math.isfinite(self.fwhm) and self.fwhm > 0


AnyFrame = FrameSource | FitsFrame | CCDData | PreparedFrame
"""What the photometry functions accept: a path, FITS bytes, an HDU list, a read frame, CCDData."""


def prepare_frame(frame: AnyFrame, *, fwhm: float | None = None) -> PreparedFrame:
    """Read a calibrated frame for photometry (a prepared one is returned as is).

    Args:
        frame: A calibrated frame in electrons with a celestial WCS, ``FILTER`` and ``EXPTIME``.
        fwhm: FWHM in pixels; default ``L1FWHM`` (unless the CAT's round bright stars disagree),
            else the CAT's median, else unknown (NaN).

    Raises:
        PhotometryError: An unreadable frame, one not in electrons, without WCS, a positive
            ``EXPTIME`` or a ``FILTER``.
    """
    if isinstance(frame, PreparedFrame):
        return frame if fwhm is None or fwhm == frame.fwhm else replace(frame, fwhm=float(fwhm))
    try:
        fr = read_frame(frame)
    except ReductionError as exc:
        raise PhotometryError(f"cannot measure: {exc}") from exc
    header = fr.header
    ccd = fr.ccd
    label = fr.name or "<memory>"
    gain = _electrons_per_unit(frame, fr, label)
    if ccd.wcs is None:
        raise PhotometryError(f"frame {label} has no celestial WCS")
    if "EXPTIME" not in header or not float(header["EXPTIME"]) > 0:
        raise PhotometryError(f"frame {label} has no positive EXPTIME")
    band = str(header.get("FILTER", "")).strip()
    if not band:
        raise PhotometryError(f"frame {label} has no FILTER")
    data, err, flags = _pixels(ccd, header, gain)
    frame_fwhm = fwhm if fwhm is not None else _header_fwhm(header, fr.catalog, ccd.wcs)
    return PreparedFrame(
        data=data,
        err=err,
        flags=flags,
        header=header,
        wcs=ccd.wcs,
        band=band,
        exptime=float(header["EXPTIME"]),
        fwhm=frame_fwhm if frame_fwhm is not None else float("nan"),
        saturate=float(header["SATURATE"]) * gain if "SATURATE" in header else None,
        name=fr.name,
        catalog=fr.catalog,
    )


_ELECTRON_UNITS = frozenset({"electron", "electrons", "e", "e-", "electron/pixel"})
_ADU_UNITS = frozenset({"adu", "adus", "count", "counts", "dn", "data number"})


def _electrons_per_unit(source: AnyFrame, fr: FitsFrame, label: str) -> float:
    """Electrons per unit of the frame's pixels: 1 for electrons, ``GAIN`` for ADU.

    The header's ``BUNIT`` decides for frames read from FITS (any pipeline writes it; BANZAI's
    ``RLEVEL`` and ``ERR`` are only BANZAI's); a CCDData's own unit decides for CCDData. Without
    ``BUNIT``, a frame with ``RLEVEL`` > 0 or an ``ERR`` is in electrons (BANZAI's convention).
    A raw frame (``RLEVEL`` 0) is never measured, whatever its unit.

    Raises:
        PhotometryError: A raw frame, a unit that is neither electrons nor ADU, or ADU without a
            positive ``GAIN``.
    """
    header = fr.header
    rlevel = header.get("RLEVEL")
    if rlevel is not None and str(rlevel).strip() in ("0", "00"):
        raise PhotometryError(
            f"frame {label} is raw (RLEVEL 0, in {fr.ccd.unit}), not electrons: calibrate it "
            "first (followup.reduction.calibrate)"
        )
    bunit = str(header.get("BUNIT", "") or "").strip().lower()
    if isinstance(source, CCDData) or not bunit:
        unit = fr.ccd.unit.to_string().lower() if fr.ccd.unit is not None else ""
        if not bunit and unit not in _ELECTRON_UNITS:
            raise PhotometryError(
                f"frame {label} is in {fr.ccd.unit}, not electrons (no BUNIT, RLEVEL or ERR says "
                "otherwise): calibrate it first (followup.reduction.calibrate)"
            )
        bunit = unit or bunit
    if bunit in _ELECTRON_UNITS:
        return 1.0
    if bunit in _ADU_UNITS:
        gain = header.get("GAIN")
        if not isinstance(gain, int | float) or not math.isfinite(gain) or gain <= 0:
            raise PhotometryError(
                f"frame {label} is in ADU (BUNIT {header.get('BUNIT')!r}) without a positive GAIN "
                "to convert it to electrons"
            )
        return float(gain)
    raise PhotometryError(
        f"frame {label} is in {bunit!r}, neither electrons nor ADU: photometry needs electrons"
    )


def _pixels(
    ccd: CCDData, header: fits.Header, gain: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Data, error and flags in float32 electrons/uint8; non-finite pixels become flagged zeros.

    Args:
        ccd: The image.
        header: Its header (``RDNOISE`` in electrons when there is no ``ERR``).
        gain: Electrons per unit of the pixels (``GAIN`` for ADU, 1 for electrons).
    """
    data = np.asarray(ccd.data, np.float32)
    if gain != 1.0:
        data = data * np.float32(gain)
    flags = np.asarray(
        ccd.flags if getattr(ccd, "flags", None) is not None else np.zeros(data.shape), np.uint8
    )
    if ccd.uncertainty is not None:
        err = np.asarray(ccd.uncertainty.array, np.float32)
        if gain != 1.0:
            err = err * np.float32(gain)
    else:
        err = _error_map(data, float(header.get("RDNOISE", 0.0) or 0.0))
    bad = ~np.isfinite(data) | ~np.isfinite(err)
    if bad.any():
        flags = flags.copy()
        flags[bad] |= BPM_BAD
        data = np.where(bad, 0, data).astype(np.float32)
        err = np.where(bad, 0, err).astype(np.float32)
    return data, err, flags


def _error_map(data: np.ndarray, read_noise: float) -> np.ndarray:
    """1-sigma errors of a frame without ``ERR``: the sky's measured noise plus the sources'.

    The sky's noise is the robust standard deviation of the pixels (1.4826 MAD of a sample),
    which holds whether or not the pipeline subtracted the sky; above the sky's level each pixel
    adds its own Poisson noise. The read noise (electrons) is a floor.
    """
    finite = data[np.isfinite(data)]
    sample = finite[:: max(1, finite.size // 200_000)] if finite.size else np.zeros(1)
    level = float(np.median(sample))
    sky_sigma = 1.4826 * float(np.median(np.abs(sample - level)))
    floor = max(sky_sigma, read_noise, 1e-3)
    return np.sqrt(np.clip(data - level, 0, None) + floor**2).astype(np.float32)


def pixel_scale(wcs: Any) -> float:
    """Mean pixel scale in arcsec/pixel."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    return float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600.0)


def with_typical_fwhm(frame: PreparedFrame) -> PreparedFrame:
    """The frame itself when its FWHM is known, else with LCO's typical seeing as a first guess."""
    if frame.fwhm_known:
        return frame
    return replace(frame, fwhm=TYPICAL_SEEING_ARCSEC / pixel_scale(frame.wcs))


FWHM_DISAGREEMENT = 0.25
"""Relative difference beyond which the CAT's round bright stars overrule ``L1FWHM``."""


def _header_fwhm(header: fits.Header, catalog: Table | None, wcs: Any) -> float | None:
    """FWHM in pixels from ``L1FWHM`` (arcsec), else the CAT's unflagged ``fwhm`` median.

    ``L1FWHM`` is a median over the pipeline's catalogue, which a satellite trail can take
    over: its segments are unflagged, bright and twice as wide as the stars (a reference of
    the recovery benchmark's seed 38 said 3.9" for stars of 2.6", and the PSF match blurred
    every reference of the mosaic to it). When the CAT's round bright stars disagree with it
    by more than :data:`FWHM_DISAGREEMENT`, their median is taken instead.
    """
    scale = pixel_scale(wcs)
    stars = _round_star_fwhm(catalog)
    value = header.get("L1FWHM")
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        fwhm = float(value) / scale
        if stars is not None and abs(fwhm / stars - 1.0) > FWHM_DISAGREEMENT:
            return stars
        return fwhm
    if catalog is not None and "fwhm" in catalog.colnames:
        fw = np.asarray(catalog["fwhm"], float)
        ok = np.isfinite(fw) & (fw > 0)
        if "flag" in catalog.colnames:
            ok &= np.asarray(catalog["flag"]) == 0
        if ok.sum() >= 5:
            return float(np.median(fw[ok]))
    return None


def _round_star_fwhm(catalog: Table | None, min_stars: int = 10) -> float | None:
    """Median ``fwhm`` of the CAT's unflagged, round (b/a >= 0.7) sources at S/N >= 20."""
    need = ("fwhm", "flag", "a", "b", "flux", "fluxerr")
    if catalog is None or not all(name in catalog.colnames for name in need):
        return None
    fw = np.asarray(catalog["fwhm"], float)
    a, b = np.asarray(catalog["a"], float), np.asarray(catalog["b"], float)
    flux, err = np.asarray(catalog["flux"], float), np.asarray(catalog["fluxerr"], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = (np.asarray(catalog["flag"]) == 0) & np.isfinite(fw) & (fw > 0)
        ok &= (b >= 0.7 * a) & (a > 0) & (flux >= 20.0 * err) & (err > 0)
    if ok.sum() < min_stars:
        return None
    return float(np.median(fw[ok]))


def gaussian_pixels(
    x: float, y: float, sigma: float, x0: int, x1: int, y0: int, y1: int
) -> np.ndarray:
    """Pixel-integrated unit-flux circular Gaussian over pixels [y0, y1) x [x0, x1)."""
    from scipy.special import erf

    s2 = math.sqrt(2.0) * sigma
    px = np.arange(x0, x1)
    py = np.arange(y0, y1)
    ex = 0.5 * (erf((px + 0.5 - x) / s2) - erf((px - 0.5 - x) / s2))
    ey = 0.5 * (erf((py + 0.5 - y) / s2) - erf((py - 0.5 - y) / s2))
    return np.outer(ey, ex)


def edge_flags(xy: np.ndarray, radius: float, shape: tuple[int, int]) -> np.ndarray:
    """True where a circle of ``radius`` pixels around each position runs off the image."""
    ny, nx = shape
    return (
        (xy[:, 0] - radius < -0.5)
        | (xy[:, 1] - radius < -0.5)
        | (xy[:, 0] + radius > nx - 0.5)
        | (xy[:, 1] + radius > ny - 0.5)
    )
