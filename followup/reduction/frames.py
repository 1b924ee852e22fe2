"""Reading LCO frames (BANZAI-reduced or raw) and writing calibrated ones, with BANZAI's pixel flags."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from followup.exceptions import ReductionError

__all__ = [
    "BPM_BAD",
    "BPM_COSMIC_RAY",
    "BPM_LOW_FLAT",
    "BPM_SATURATED",
    "FitsFrame",
    "FrameSource",
    "describe_pixel_flags",
    "flags_of",
    "frame_to_hdulist",
    "image_hdu",
    "open_fits",
    "read_frame",
    "read_here",
]

BPM_BAD = 1
"""Pixel flag: bad pixel (dead column, hot pixel, non-finite value)."""
BPM_SATURATED = 2
"""Pixel flag: saturated."""
BPM_LOW_FLAT = 4
"""Pixel flag: flat-field response too low to trust."""
BPM_COSMIC_RAY = 8
"""Pixel flag: cosmic-ray hit."""

_FLAG_NAMES = {
    BPM_BAD: "bad",
    BPM_SATURATED: "saturated",
    BPM_LOW_FLAT: "low_flat",
    BPM_COSMIC_RAY: "cosmic_ray",
}

FrameSource = str | os.PathLike[str] | bytes | fits.HDUList
"""Where a frame can come from: a path, the bytes of a FITS file, or an open HDU list."""


def describe_pixel_flags(value: int) -> list[str]:
    """Names of the BPM bits set in ``value`` (e.g. ``9 -> ['bad', 'cosmic_ray']``)."""
    return [name for bit, name in _FLAG_NAMES.items() if value & bit]


@dataclass
class FitsFrame:
    """A frame read from FITS: the image as :class:`~astropy.nddata.CCDData` and BANZAI's catalogue.

    Attributes:
        ccd: The image. Reduced frames: electrons, ``uncertainty`` (1-sigma, electrons) from
            ``ERR``, ``flags`` (uint8 BPM bits) and ``mask`` (any flag set). Raw frames: ADU,
            no uncertainty. ``wcs`` is set when the header has a celestial WCS; ``meta`` is the
            science header.
        catalog: BANZAI's ``CAT`` table (1-based pixel ``x``, ``y``; ``flux`` in electrons), or
            None.
        name: The frame's basename (file name without ``.fits``/``.fits.fz``), when known.
    """

    ccd: CCDData
    catalog: Table | None
    name: str

    @property
    def header(self) -> fits.Header:
        """The science header."""
        return self.ccd.meta  # type: ignore[return-value]

    @property
    def is_reduced(self) -> bool:
        """True for BANZAI-reduced (RLEVEL 91) or otherwise calibrated frames in electrons."""
        return int(self.header.get("RLEVEL", 0) or 0) > 0 or self.ccd.unit == u.electron


def read_here(source: Any) -> bool:
    """True when reading ``source`` makes arrays that no caller holds (a path or FITS bytes)."""
    return isinstance(source, str | os.PathLike | bytes | bytearray)


def _basename(path: str) -> str:
    name = Path(path).name
    for suffix in (".fz", ".gz", ".fits", ".fit"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def open_fits(source: FrameSource) -> tuple[fits.HDUList, str, bool]:
    """Open a FITS source; return the HDU list, a name and whether we own (must close) it."""
    if isinstance(source, fits.HDUList):
        return source, "", False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", fits.verify.VerifyWarning)
            # astropy only warns about a truncated file; a truncated download is an error here.
            warnings.filterwarnings("error", message=".*truncated.*")
            if isinstance(source, bytes | bytearray):
                import io

                if len(source) == 0:
                    raise ReductionError("empty FITS data (0 bytes)")
                return fits.open(io.BytesIO(bytes(source)), lazy_load_hdus=False), "", True
            path = os.fspath(source)
            handle = open(path, "rb")  # noqa: SIM115 - closed with the HDU list, or below
            try:
                return fits.open(handle, lazy_load_hdus=False, memmap=False), _basename(path), True
            except BaseException:
                handle.close()
                raise
    except ReductionError:
        raise
    except FileNotFoundError:
        raise
    except (OSError, ValueError, TypeError, IndexError, fits.verify.VerifyError, Warning) as exc:
        raise ReductionError(
            f"cannot read FITS file {source if isinstance(source, str | os.PathLike) else '<bytes>'}: {exc}"
        ) from exc


def image_hdu(
    hdul: fits.HDUList,
) -> tuple[int, fits.ImageHDU | fits.PrimaryHDU | fits.CompImageHDU]:
    """Index and HDU of the image: ``SCI``, else the first 2-D image.

    Raises:
        ReductionError: No 2-D image in the file.
    """
    names = [h.name.upper() for h in hdul]
    if "SCI" in names:
        index = names.index("SCI")
        return index, hdul[index]
    for index, hdu in enumerate(hdul):
        if hdu.is_image and hdu.header.get("NAXIS", 0) == 2:
            return index, hdu
    raise ReductionError(f"no 2-D image in the FITS file (HDUs: {names})")


def _data(hdu: Any, what: str, dtype: Any = np.float32) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            data = hdu.data
    except (OSError, ValueError, TypeError, IndexError, EOFError) as exc:
        raise ReductionError(f"{what}: the data cannot be read (truncated file?): {exc}") from exc
    if data is None or data.ndim != 2:
        raise ReductionError(
            f"{what}: expected a 2-D image, got {None if data is None else data.shape}"
        )
    expected = (
        hdu.header.get("ZNAXIS2", hdu.header.get("NAXIS2")),
        hdu.header.get("ZNAXIS1", hdu.header.get("NAXIS1")),
    )
    if None not in expected and data.shape != tuple(int(v) for v in expected):
        raise ReductionError(
            f"{what}: data shape {data.shape} does not match its header {expected}"
        )
    return np.asarray(data, dtype=dtype)


def _celestial_wcs(header: fits.Header) -> WCS | None:
    if "CTYPE1" not in header or "CTYPE2" not in header:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header, naxis=2)
    except Exception:  # any malformed WCS means "no usable WCS"
        return None
    return wcs if wcs.has_celestial else None


def read_frame(
    source: FrameSource | FitsFrame | CCDData | np.ndarray, *, name: str | None = None
) -> FitsFrame:
    """Read an LCO frame (BANZAI-reduced or raw) into a :class:`FitsFrame`.

    Args:
        source: Path, FITS bytes, an open :class:`~astropy.io.fits.HDUList`, an already read
            frame (returned as is), a :class:`~astropy.nddata.CCDData` (wrapped without copying
            its arrays; its ``meta`` is the header) or a bare 2-D array (taken as raw ADU with an
            empty header: pass gain, read noise and exposure time to :func:`calibrate`).
        name: Basename to record; by default the file name, else ``ORIGNAME``.

    Returns:
        The frame. Reduced frames carry ``uncertainty`` from ``ERR`` and ``flags`` from ``BPM``;
        when either is absent, flags are zero and the uncertainty is left unset.

    Raises:
        ReductionError: Unreadable or truncated file, no 2-D image, ``ERR`` or ``BPM`` whose shape
            differs from ``SCI``, an unreadable ``CAT``.
        FileNotFoundError: The path does not exist.
    """
    if isinstance(source, FitsFrame):
        return source
    if isinstance(source, np.ndarray):
        if source.ndim != 2:
            raise ReductionError(f"expected a 2-D image, got shape {source.shape}")
        ccd = CCDData(source, unit=u.adu, meta=fits.Header(), copy=False)
        return FitsFrame(ccd=ccd, catalog=None, name=name or "")
    if isinstance(source, CCDData):
        return _wrap_ccd(source, name)
    hdul, file_name, owned = open_fits(source)
    try:
        return _from_hdul(hdul, name or file_name, named=bool(name or file_name))
    finally:
        if owned:
            hdul.close()


def _wrap_ccd(source: CCDData, name: str | None) -> FitsFrame:
    """A new CCDData over the same arrays, with flags and a WCS from the header when missing.

    Nothing here writes to the arrays, and copying 4k x 4k images costs more than the photometry.
    """
    header = fits.Header(source.meta)
    uncertainty = None
    if source.uncertainty is not None:
        std = source.uncertainty.represent_as(StdDevUncertainty)
        uncertainty = StdDevUncertainty(std.array, copy=False)
    flags = getattr(source, "flags", None)
    if flags is None and source.mask is not None:
        flags = np.where(np.asarray(source.mask), BPM_BAD, 0).astype(np.uint8)
    ccd = CCDData(
        source.data,
        unit=source.unit,
        uncertainty=uncertainty,
        flags=flags,
        mask=source.mask,
        wcs=source.wcs if source.wcs is not None else _celestial_wcs(header),
        meta=header,
        copy=False,
    )
    return FitsFrame(ccd=ccd, catalog=None, name=name or str(header.get("ORIGNAME", "")))


def _science_header(hdul: fits.HDUList, index: int, hdu: Any) -> fits.Header:
    """The image's header, with the primary header's keywords when they live there."""
    header = hdu.header.copy()
    if index > 0 and not header.get("OBJECT") and hdul[0].header.get("OBJECT"):
        for card in hdul[0].header.cards:
            if card.keyword not in header and card.keyword not in ("SIMPLE", "EXTEND", "NAXIS"):
                header[card.keyword] = (card.value, card.comment)
    return header


def _extension(hdul: fits.HDUList, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
    """The ``ERR`` or ``BPM`` image, checked against the science shape; None when absent."""
    if name not in [h.name.upper() for h in hdul]:
        return None
    data = _data(hdul[name], name, dtype=dtype)
    if data.shape != shape:
        raise ReductionError(f"{name} shape {data.shape} differs from SCI shape {shape}")
    return data


def _from_hdul(hdul: fits.HDUList, name: str, *, named: bool) -> FitsFrame:
    """Read SCI, ERR, BPM and CAT of an open HDU list."""
    index, sci_hdu = image_hdu(hdul)
    header = _science_header(hdul, index, sci_hdu)
    data = _data(sci_hdu, "SCI")
    err = _extension(hdul, "ERR", data.shape, np.float32)
    flags = _extension(hdul, "BPM", data.shape, np.uint8)
    catalog = None
    if "CAT" in [h.name.upper() for h in hdul]:
        try:
            catalog = Table.read(hdul["CAT"], format="fits")
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ReductionError(f"CAT extension cannot be read: {exc}") from exc
    reduced = int(header.get("RLEVEL", 0) or 0) > 0 or err is not None
    if flags is None:
        flags = np.zeros(data.shape, np.uint8)
        nonfinite = ~np.isfinite(data)
        if nonfinite.any():
            flags[nonfinite] = BPM_BAD
    ccd = CCDData(
        data,
        unit=u.electron if reduced else u.adu,
        uncertainty=StdDevUncertainty(err, copy=False) if err is not None else None,
        flags=flags,
        mask=flags != 0,
        wcs=_celestial_wcs(header),
        meta=header,
    )
    frame_name = name or str(header.get("ORIGNAME", ""))
    if not named and frame_name and reduced and frame_name.endswith("00"):
        # ORIGNAME names the raw frame; a reduced one ends in its level (e00 -> e91).
        frame_name = frame_name[:-2] + f"{int(header.get('RLEVEL', 91)):02d}"
    return FitsFrame(ccd=ccd, catalog=catalog, name=frame_name)


def frame_to_hdulist(
    ccd: CCDData, *, catalog: Table | None = None, compress: bool = False
) -> fits.HDUList:
    """Write a calibrated image as a BANZAI-like HDU list: empty primary, SCI, [CAT], BPM, ERR.

    Args:
        ccd: The image (electrons), with optional ``uncertainty`` and ``flags``/``mask``.
        catalog: Optional source catalogue for a ``CAT`` extension.
        compress: RICE-compress the image extensions (as ``.fits.fz``).

    Returns:
        The HDU list (not written anywhere).
    """
    header = fits.Header(ccd.meta) if not isinstance(ccd.meta, fits.Header) else ccd.meta.copy()
    if ccd.wcs is not None:
        header.update(ccd.wcs.to_header())
    for key in ("SIMPLE", "EXTEND", "NAXIS", "NAXIS1", "NAXIS2", "BITPIX"):
        header.remove(key, ignore_missing=True, remove_all=True)
    image = fits.CompImageHDU if compress else fits.ImageHDU
    hdus: list[Any] = [
        fits.PrimaryHDU(),
        image(np.asarray(ccd.data, np.float32), header=header, name="SCI"),
    ]
    if catalog is not None:
        hdus.append(fits.BinTableHDU(catalog, name="CAT"))
    flags = flags_of(ccd)
    hdus.append(image(flags, name="BPM"))
    if ccd.uncertainty is not None:
        hdus.append(image(np.asarray(ccd.uncertainty.array, np.float32), name="ERR"))
    return fits.HDUList(hdus)


def flags_of(ccd: CCDData) -> np.ndarray:
    """The frame's BPM bits: its ``flags``, else ``BPM_BAD`` where masked, else zeros."""
    flags = getattr(ccd, "flags", None)
    if flags is not None:
        return np.asarray(flags, np.uint8)
    if ccd.mask is not None:
        return np.where(np.asarray(ccd.mask), BPM_BAD, 0).astype(np.uint8)
    return np.zeros(ccd.shape, np.uint8)
