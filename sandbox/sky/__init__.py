"""A deterministic synthetic sky that renders LCO Sinistro frames, raw and BANZAI-like, with known truth.

The sky is a star catalogue that is a pure function of the sky position (stars are drawn per
HEALPix cell from a seed, so overlapping or repeated pointings see the same stars), plus the
transients it was given. :meth:`SyntheticSky.render` turns a :class:`sandbox.specs.FrameSpec` into
the bytes of a FITS file:

* ``reduction_level=91``: a BANZAI-like reduced frame: empty primary, ``SCI`` (electrons, RICE
  compressed), ``CAT`` (sources measured on the frame), ``BPM`` (1 bad, 2 saturated, 4 low flat,
  8 cosmic ray) and ``ERR``, with BANZAI's keywords including the zero point ``L1ZP``;
* ``reduction_level=0``: a raw frame in ADU (bias level and pattern, dark current, flat-field
  pattern, cosmic rays, gain != 1), and the BIAS, DARK and SKYFLAT frames of the same instrument,
  so that a reduction of the raw frames recovers the truth.

Everything the frames contain is known: :meth:`SyntheticSky.truth` gives the true magnitude of each
transient, :meth:`SyntheticSky.zero_point` the true zero point of a frame,
:meth:`SyntheticSky.frame_truth` the observing conditions and the transients on a frame, and
:meth:`SyntheticSky.reference_catalog` an ATLAS-REFCAT2-like catalogue with realistic errors.

Simplifications, on purpose: the PSF is a pixel-integrated circular Gaussian; photon noise is drawn
as a Gaussian with the Poisson variance (exact mean and variance, fast); raw frames are one image
(no overscan, no separate amplifier extensions) stored as int32 because a gain near 1 e-/ADU and a
130,000 e- full well do not fit 16 bits; raw frames carry the true WCS.
"""

from sandbox.sky.model import (
    BANDS,
    BPM_BAD,
    BPM_COSMIC_RAY,
    BPM_LOW_FLAT,
    BPM_SATURATED,
    FrameConditions,
    FrameTruth,
)
from sandbox.sky.synthetic import SkyReferenceCatalog, SyntheticSky

__all__ = [
    "BANDS",
    "BPM_BAD",
    "BPM_COSMIC_RAY",
    "BPM_LOW_FLAT",
    "BPM_SATURATED",
    "FrameConditions",
    "FrameTruth",
    "SkyReferenceCatalog",
    "SyntheticSky",
]
