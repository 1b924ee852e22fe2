"""Frame reduction: read LCO frames, build bias/dark/flat masters, calibrate raw frames, flag cosmic rays.

BANZAI-reduced frames (``reduction_level=91``) are used as they are: their ``SCI`` (electrons),
``ERR``, ``BPM`` (with cosmic rays at bit 8) and zero point ``L1ZP`` (:mod:`~followup.reduction.frames`).
Raw frames are calibrated here:

* a night's calibration frames are sorted by their headers with ccdproc's
  ``ImageFileCollection`` (:mod:`~followup.reduction.night`);
* overscan (``BIASSEC``) subtracted and the frame trimmed (``TRIMSEC``) when the header names
  them (:mod:`~followup.reduction.overscan`);
* masters by a sigma-clipped median in float32, read in row chunks under a memory limit
  (bottleneck does the medians, :mod:`~followup.reduction.combine`);
* calibration ``(raw - bias - dark * t) / flat * gain`` and its error map in float32, one pass
  over cache-sized blocks of rows, with the pixel flags the masters imply (hot, low-flat) and
  saturation; :class:`MasterCalibration` prepares the masters once for a night of frames
  (:mod:`~followup.reduction.calibrate`);
* cosmic rays by LACosmic (``ccdproc.cosmicray_lacosmic``) on single frames without a mask
  (:mod:`~followup.reduction.cosmics`), or by clipping when several exposures of one pointing are
  stacked (:mod:`~followup.reduction.stack`).

Where ccdproc does a step as fast, it does it; the float32 kernels stay where
``benchmarks/frames.py`` measures them faster (each module's docstring says by how much).

Inputs are not modified: a raw frame is calibrated in its own buffers only when it was read here
from a path or bytes, or when the caller gives it up with ``overwrite_input``. Each step is
recorded in the output header (``HISTORY`` and keywords such as ``BIASCORR``). Pixel flags follow
BANZAI's BPM bits (see :data:`BPM_BAD` and friends).
"""

from __future__ import annotations

from followup.reduction.calibrate import (
    HeaderOverrides,
    MasterCalibration,
    PixelFlagging,
    calibrate,
)
from followup.reduction.combine import (
    combine,
    make_master_bias,
    make_master_dark,
    make_master_flat,
)
from followup.reduction.cosmics import detect_cosmic_rays
from followup.reduction.frames import (
    BPM_BAD,
    BPM_COSMIC_RAY,
    BPM_LOW_FLAT,
    BPM_SATURATED,
    FitsFrame,
    FrameSource,
    describe_pixel_flags,
    frame_to_hdulist,
    read_frame,
)
from followup.reduction.night import NightCalibrations, reduce_raw_frames
from followup.reduction.stack import stack_exposures

__all__ = [
    "BPM_BAD",
    "BPM_COSMIC_RAY",
    "BPM_LOW_FLAT",
    "BPM_SATURATED",
    "FitsFrame",
    "FrameSource",
    "HeaderOverrides",
    "MasterCalibration",
    "NightCalibrations",
    "PixelFlagging",
    "calibrate",
    "combine",
    "describe_pixel_flags",
    "detect_cosmic_rays",
    "frame_to_hdulist",
    "make_master_bias",
    "make_master_dark",
    "make_master_flat",
    "read_frame",
    "reduce_raw_frames",
    "stack_exposures",
]
