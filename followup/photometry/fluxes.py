"""AB magnitudes and fluxes in microjansky."""

from __future__ import annotations

import numpy as np

__all__ = ["AB_ZERO_POINT_UJY", "flux_to_ujy", "mag_to_ujy"]

AB_ZERO_POINT_UJY = 23.9
"""AB magnitude of 1 microjansky."""


def flux_to_ujy(rate_e_per_s: np.ndarray | float, zero_point: float) -> np.ndarray | float:
    """Convert a count rate (e-/s) to microjansky with an AB zero point (mag of 1 e-/s)."""
    return np.asarray(rate_e_per_s) * 10 ** (-0.4 * (zero_point - AB_ZERO_POINT_UJY))


def mag_to_ujy(mag: np.ndarray | float) -> np.ndarray | float:
    """Convert AB magnitudes to microjansky."""
    return 10 ** (-0.4 * (np.asarray(mag) - AB_ZERO_POINT_UJY))
