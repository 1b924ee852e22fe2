"""How a frame is measured: the method and its sizes, shared by zero points and targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Method", "PhotometryOptions"]

Method = Literal["aperture", "psf"]


@dataclass(frozen=True)
class PhotometryOptions:
    """How targets and reference stars are measured (both the same way, so the zero point holds).

    Attributes:
        method: ``aperture`` (forced aperture photometry, aperture-corrected to total flux) or
            ``psf`` (forced fit of a pixel-integrated Gaussian).
        aperture_radius: Aperture radius in pixels; default 1 FWHM.
        fwhm: PSF FWHM in pixels; default the frame's (``L1FWHM``, the CAT, or fitted on stars).
        colour_term: Fit a colour term in the zero point (BANZAI's colour for the band): None
            (the default) fits it wherever the reference catalogue has both bands of the colour
            for enough stars; True always; False never.
        local_background: Subtract each position's background, the median of an annulus at 3-5
            FWHM (the default: a frame's sky). False on a difference image, whose background is
            zero by construction: there an annulus holds nothing but noise and what the
            subtraction left of a host, and its median biases the flux (near a host's nucleus
            the residual in the annulus is not the one in the aperture) and adds noise.

    Example:
        >>> photometry_table(frame, ra, dec, options=PhotometryOptions(method="psf"))  # doctest: +SKIP

    Raises:
        ValueError: An unknown method or a radius or FWHM that is not positive.
    """

    method: Method = "aperture"
    aperture_radius: float | None = None
    fwhm: float | None = None
    colour_term: bool | None = None
    local_background: bool = True

    def __post_init__(self) -> None:
        if self.method not in ("aperture", "psf"):
            raise ValueError(f"method must be 'aperture' or 'psf', got {self.method!r}")
        if self.colour_term not in (None, True, False):
            raise ValueError(f"colour_term must be None, True or False, got {self.colour_term!r}")
        for name in ("aperture_radius", "fwhm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be a positive number of pixels, got {value!r}")
