"""Cosmic rays: LACosmic through ccdproc, pixels flagged (BPM bit 8), never replaced."""

from __future__ import annotations

import numpy as np
from astropy import units as u
from astropy.nddata import CCDData

from followup.exceptions import ReductionError
from followup.reduction.frames import BPM_BAD, BPM_COSMIC_RAY, BPM_SATURATED, flags_of

__all__ = ["detect_cosmic_rays"]


def detect_cosmic_rays(
    ccd: CCDData,
    *,
    sigclip: float = 4.5,
    objlim: float = 5.0,
    niter: int = 2,
    read_noise: float | None = None,
) -> CCDData:
    """Flag cosmic rays with LACosmic (``ccdproc.cosmicray_lacosmic``): flagged, not replaced.

    ccdproc calls astroscrappy as this module did before, and as fast: the same 9,332 pixels of
    a 4k frame in 15.8 and 20.3 s against 19.9 and 15.2 s directly in two runs of
    ``benchmarks/frames.py --lacosmic`` on a busy machine; alternating in one process on a 2k
    frame, 5.03 s against 4.88 s (best of three). Bad and saturated pixels are masked from the
    search. ccdproc's cleaned image is discarded:
    photometry leaves flagged pixels out rather than trusting interpolated values. Costs about
    15 s on a 4k x 4k frame on two cores, so it is meant for single raw frames; BANZAI frames
    already carry the bit, and stacks reject cosmic rays by clipping.

    Args:
        ccd: Calibrated frame in electrons.
        sigclip: Laplacian-to-noise threshold.
        objlim: Contrast limit between a cosmic ray and an underlying object.
        niter: LACosmic iterations.
        read_noise: Read noise in electrons (default ``RDNOISE``).

    Returns:
        A new CCDData with bit 8 set on cosmic-ray pixels and the header noting ``CRMETHOD``.

    Raises:
        ReductionError: The frame is not in electrons.
    """
    import ccdproc

    if ccd.unit != u.electron:
        raise ReductionError(f"cosmic-ray detection expects electrons, got {ccd.unit}")
    flags = flags_of(ccd).copy()
    masked = (flags & (BPM_BAD | BPM_SATURATED)) > 0
    # Only the image and the pixels to leave out: ccdproc copies what it is given.
    search = CCDData(np.asarray(ccd.data, np.float32), unit=u.electron, mask=masked, copy=False)
    found = ccdproc.cosmicray_lacosmic(
        search,
        sigclip=sigclip,
        objlim=objlim,
        gain=1.0,
        readnoise=float(read_noise if read_noise is not None else ccd.meta.get("RDNOISE", 7.0)),
        satlevel=float(ccd.meta.get("SATURATE", 1e9)),
        niter=niter,
        sepmed=True,
        cleantype="meanmask",
        fsmode="median",
    )
    crmask = np.asarray(found.mask, bool) & ~masked
    flags[crmask] |= BPM_COSMIC_RAY
    out = ccd.copy()
    out.flags = flags
    out.mask = flags != 0
    out.meta["CRMETHOD"] = ("lacosmic", "Cosmic rays flagged by LACosmic")
    out.meta["NCRPIX"] = (int(crmask.sum()), "Pixels flagged as cosmic rays")
    out.meta["HISTORY"] = (
        f"followup.reduction.detect_cosmic_rays: LACosmic sigclip={sigclip} niter={niter}"
    )
    return out
