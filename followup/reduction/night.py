"""A night of raw frames: calibration frames sorted with ccdproc, masters built, science calibrated."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from followup.exceptions import ReductionError
from followup.reduction.calibrate import MasterCalibration
from followup.reduction.combine import make_master_bias, make_master_dark, make_master_flat
from followup.reduction.frames import frame_to_hdulist, image_hdu, open_fits, read_frame, read_here

__all__ = ["NightCalibrations", "reduce_raw_frames"]

PathLike = str | os.PathLike[str]


class NightCalibrations:
    """A night's BIAS, DARK and SKYFLAT frames, sorted by their headers alone.

    ccdproc's ``ImageFileCollection`` reads the headers (``OBSTYPE``, ``FILTER``, ``EXPTIME``);
    the masters are then combined from the files a chunk of rows at a time, so no calibration
    frame is held in memory whole. Masters are built when first asked for and kept.

    Args:
        paths: The calibration frames (files of one instrument and night).

    Raises:
        ReductionError: No path, or a file whose headers cannot be read.
    """

    def __init__(self, paths: Sequence[PathLike]) -> None:
        from ccdproc import ImageFileCollection

        files = [str(Path(p).resolve()) for p in paths]
        if not files:
            raise ReductionError("no calibration frames: cannot reduce raw frames")
        hdul, _, owned = open_fits(files[0])
        try:
            ext = image_hdu(hdul)[0]  # the night's files share their layout (fpacked: 1)
        finally:
            if owned:
                hdul.close()
        try:
            self.collection = ImageFileCollection(
                filenames=files, keywords=["obstype", "filter", "exptime"], ext=ext
            )
        except (OSError, ValueError, KeyError) as exc:
            raise ReductionError(f"cannot read the calibration frames' headers: {exc}") from exc
        self._bias = self._dark = None
        self._flats: dict[str, MasterCalibration] = {}

    def files(self, obstype: str, **keywords: str) -> list[str]:
        """Paths of the frames of an ``OBSTYPE`` (and other header values, e.g. ``filter="rp"``)."""
        if self.collection.summary is None or not len(self.collection.summary):
            return []
        return list(self.collection.files_filtered(obstype=obstype, include_path=True, **keywords))

    def masters(self, band: str) -> MasterCalibration:
        """Bias, dark (when there are darks) and the band's flat, prepared for calibration.

        Raises:
            ReductionError: No BIAS frame, no SKYFLAT in the band, frames that cannot be combined.
        """
        if band in self._flats:
            return self._flats[band]
        if self._bias is None:
            bias_files = self.files("BIAS")
            if not bias_files:
                raise ReductionError(
                    "no BIAS frame among the calibrations: cannot reduce raw frames"
                )
            self._bias = make_master_bias(bias_files)
            dark_files = self.files("DARK")
            self._dark = make_master_dark(dark_files, bias=self._bias) if dark_files else None
        flat_files = self.files("SKYFLAT", filter=band)
        if not flat_files:
            raise ReductionError(f"no SKYFLAT in filter {band!r} among the calibrations")
        flat = make_master_flat(flat_files, bias=self._bias, dark=self._dark)
        self._flats[band] = MasterCalibration(self._bias, self._dark, flat)
        return self._flats[band]


def reduce_raw_frames(
    science: Sequence[PathLike],
    calibrations: Sequence[PathLike],
    out_dir: PathLike,
    *,
    cosmic_rays: Literal["lacosmic", "none"] = "lacosmic",
) -> list[Path]:
    """Reduce raw science frames with masters made from the night's calibration frames.

    The calibration frames are sorted by ``OBSTYPE`` (BIAS, DARK, SKYFLAT; flats by ``FILTER``)
    with :class:`NightCalibrations`; a master bias is required, darks are used when present, and
    each science frame needs a flat in its filter. Each science frame is calibrated (electrons,
    error map, bad-pixel flags, cosmic rays by LACosmic since a raw frame has no mask) and written
    BANZAI-like (SCI, BPM, ERR) as ``<basename>-calibrated.fits``.

    Args:
        science: Raw science frames (files).
        calibrations: Raw BIAS, DARK and SKYFLAT frames (files) of the same instrument and night.
        out_dir: Where the calibrated frames are written.
        cosmic_rays: ``lacosmic`` or ``none``.

    Returns:
        Paths of the calibrated frames, in the order of ``science``.

    Raises:
        ReductionError: No bias frame, no flat for a science frame's filter, unreadable frames.
    """
    night = NightCalibrations(calibrations)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for source in science:
        frame = read_frame(source)
        band = str(frame.header.get("FILTER", ""))
        try:
            masters = night.masters(band)
        except ReductionError as exc:
            raise ReductionError(f"{frame.name}: {exc}") from exc
        # Read here from a file: nobody else holds its arrays, so they become the outputs.
        ccd = masters.calibrate(frame, cosmic_rays=cosmic_rays, overwrite_input=read_here(source))
        name = Path(frame.name or f"frame{len(paths)}").name
        for suffix in (".fz", ".fits"):
            name = name.removesuffix(suffix)
        path = out / f"{name}-calibrated.fits"
        frame_to_hdulist(ccd).writeto(path, overwrite=True)
        paths.append(path)
    return paths
