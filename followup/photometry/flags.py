"""Quality bits of a photometric measurement."""

from __future__ import annotations

from enum import IntFlag

__all__ = ["PhotometryFlag", "describe_flags"]


class PhotometryFlag(IntFlag):
    """Quality bits of a measurement (``Measurement.flags``, ``flags`` columns)."""

    NONE = 0
    MASKED_PIXELS = 1
    """Flagged or off-image pixels in the aperture; the flux was corrected with the PSF."""
    SATURATED = 2
    """A saturated pixel in the aperture: the flux is a lower limit."""
    NEAR_EDGE = 4
    """The aperture or the background annulus runs off the image."""
    ZERO_POINT_FROM_HEADER = 8
    """No reference stars were measured: the zero point is the header's ``L1ZP``."""
    FEW_REFERENCE_STARS = 16
    """Fewer than 5 reference stars in the zero point."""
    APERTURE_CORRECTION_MODEL = 32
    """Too few bright stars: the aperture correction is that of a Moffat profile fitted to the
    frame's stars (LCO's typical profile when none can be fitted)."""
    BLENDED = 64
    """A catalogued star lies within 2 FWHM of the position."""
    NEIGHBOURS_SUBTRACTED = 128
    """Sources near the position were fitted with it and their light subtracted before measuring."""


def describe_flags(flags: int) -> list[str]:
    """Names of the :class:`PhotometryFlag` bits set in ``flags``."""
    return [flag.name or "" for flag in PhotometryFlag if flag and flags & flag]
