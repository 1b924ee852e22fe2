"""HEALPix probability sky maps: read multi-order and flat maps, credible regions, distances.

Everything here is plain numpy + astropy + astropy-healpix (no healpy, no ligo.skymap). A
:class:`SkyMap` always holds the map in multi-order (NUNIQ) form: flat maps are converted on
read, merging sibling pixels that carry identical values (lossless, which recovers the original
multi-order map of a rasterised BAYESTAR map) and, optionally, the faint tail. Positions are ICRS
degrees; densities are given per square degree to users and kept per steradian inside.

Example:
    >>> sky = SkyMap.from_fits("bayestar.multiorder.fits")  # doctest: +SKIP
    >>> round(sky.area(0.9), 3)  # doctest: +SKIP
    30.975
"""

from __future__ import annotations

import base64
import gzip
import io
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import astropy_healpix as ah
import numpy as np
from astropy import units as u
from astropy.io import fits
from scipy import special

from followup.bounded import DecodeLimitExceeded, fits_declared_end, inflate
from followup.exceptions import SkymapError

__all__ = [
    "DistanceAlongSight",
    "SkyMap",
    "ansatz_moments",
    "ansatz_parameters",
    "gaussian_skymap",
    "make_gaussian_skymap",
    "read_skymap",
]

logger = logging.getLogger(__name__)

SR_PER_DEG2 = (math.pi / 180.0) ** 2
"""Steradians in one square degree."""

MAX_ORDER = 29
"""Deepest HEALPix order a NUNIQ index can hold."""

MAX_SKYMAP_BYTES = 512 * 2**20
"""Largest sky map read, once inflated. The largest real flat maps (nside 1024 with distance
layers, nside 2048 without) are about 400 MB; a map larger than this, or whose headers declare
more, is refused before it is inflated further (a 1 MB gzip can inflate to a GiB)."""

MAX_FLAT_NSIDE = 2048
"""Finest flat map read: an explicitly indexed map is rasterised to ``12 * NSIDE**2`` pixels, so
its NSIDE, not its size, decides the memory it takes (50 million pixels at 2048)."""

_HEADER_SLACK = 2**20  # what may follow the last header seen in the first bytes of a map

SkymapSource = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]


# --------------------------------------------------------------------------------------------
# The distance ansatz of Singer et al. (2016): p(r | n) = DISTNORM * r^2 * N(r; DISTMU, DISTSIGMA)
# --------------------------------------------------------------------------------------------


def _partial_moments(a: np.ndarray) -> tuple[np.ndarray, ...]:
    """Return the integrals of t^k phi(t) over t > -a for k = 0..4 (phi: standard normal)."""
    cdf = special.ndtr(a)
    pdf = np.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
    i0 = cdf
    i1 = pdf
    i2 = cdf - a * pdf
    i3 = (a * a + 2) * pdf
    i4 = 3 * cdf - (a**3 + 3 * a) * pdf
    return i0, i1, i2, i3, i4


def ansatz_moments(
    mu: np.ndarray | float, sigma: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Conditional distance mean, standard deviation and normalisation of the distance ansatz.

    The ansatz is ``p(r) = norm * r**2 * N(r; mu, sigma)`` for ``r > 0`` (Singer et al. 2016,
    the form of LVK's DISTMU/DISTSIGMA/DISTNORM layers).

    Args:
        mu: Location parameter(s) in Mpc (``inf`` where the pixel holds no distance information).
        sigma: Scale parameter(s) in Mpc, positive.

    Returns:
        ``(mean, std, norm)``: mean and standard deviation in Mpc and the normalisation in
        Mpc^-2. Pixels without information (non-finite ``mu`` or ``sigma <= 0``) give
        ``(nan, nan, 0)``.
    """
    mu_arr = np.asarray(mu, dtype=float)
    sigma_arr = np.asarray(sigma, dtype=float)
    mu_arr, sigma_arr = np.broadcast_arrays(mu_arr, sigma_arr)
    good = np.isfinite(mu_arr) & np.isfinite(sigma_arr) & (sigma_arr > 0)
    m = np.where(good, mu_arr, 1.0)
    s = np.where(good, sigma_arr, 1.0)
    with np.errstate(all="ignore"):
        i0, i1, i2, i3, i4 = _partial_moments(m / s)
        m2 = m**2 * i0 + 2 * m * s * i1 + s**2 * i2
        m3 = m**3 * i0 + 3 * m**2 * s * i1 + 3 * m * s**2 * i2 + s**3 * i3
        m4 = m**4 * i0 + 4 * m**3 * s * i1 + 6 * m**2 * s**2 * i2 + 4 * m * s**3 * i3 + s**4 * i4
        mean = m3 / m2
        var = np.maximum(m4 / m2 - mean**2, 0.0)
        norm = 1.0 / m2
    ok = good & np.isfinite(mean) & (m2 > 0)
    return (
        np.where(ok, mean, np.nan),
        np.where(ok, np.sqrt(var), np.nan),
        np.where(ok, norm, 0.0),
    )


def ansatz_parameters(mean_mpc: float, std_mpc: float) -> tuple[float, float, float]:
    """Invert :func:`ansatz_moments`: the ``(mu, sigma, norm)`` giving this mean and deviation.

    Args:
        mean_mpc: Wanted conditional mean distance in Mpc (> 0).
        std_mpc: Wanted conditional standard deviation in Mpc; the ansatz cannot be wider than
            ``std/mean = 1/sqrt(3)`` (its ``mu -> -inf`` limit).

    Returns:
        ``(mu, sigma, norm)`` in Mpc, Mpc and Mpc^-2.

    Raises:
        ValueError: The values are not positive or the ratio cannot be reached.
    """
    from scipy import optimize

    if not (mean_mpc > 0 and std_mpc > 0):
        raise ValueError(f"distance mean and std must be positive, got {mean_mpc}, {std_mpc}")
    if std_mpc / mean_mpc >= 0.57:
        raise ValueError(
            f"std/mean = {std_mpc / mean_mpc:.3f} is too wide for the distance ansatz (< 0.57)"
        )

    def residual(x: np.ndarray) -> np.ndarray:
        mean, std, _ = ansatz_moments(x[0] * mean_mpc, math.exp(x[1]) * mean_mpc)
        return np.array([float(mean) / mean_mpc - 1.0, float(std) / mean_mpc - std_mpc / mean_mpc])

    # Start from the narrow-distribution approximation mean ~ mu + 2 sigma^2 / mu.
    x0 = np.array([1.0 - 2 * (std_mpc / mean_mpc) ** 2, math.log(std_mpc / mean_mpc)])
    sol = optimize.root(residual, x0, method="hybr")
    if not sol.success or np.max(np.abs(residual(sol.x))) > 1e-8:
        raise ValueError(f"could not match distance {mean_mpc} +/- {std_mpc} Mpc: {sol.message}")
    mu = float(sol.x[0] * mean_mpc)
    sigma = float(math.exp(sol.x[1]) * mean_mpc)
    _, _, norm = ansatz_moments(mu, sigma)
    return mu, sigma, float(norm)


@dataclass(frozen=True)
class DistanceAlongSight:
    """The distance posterior along one line of sight (arrays when several positions are given).

    Attributes:
        mean_mpc: Conditional mean distance in Mpc (nan without distance information).
        std_mpc: Conditional standard deviation in Mpc.
        mu_mpc: Ansatz location parameter DISTMU in Mpc.
        sigma_mpc: Ansatz scale parameter DISTSIGMA in Mpc.
        norm_mpc2: Ansatz normalisation DISTNORM in Mpc^-2.
    """

    mean_mpc: np.ndarray | float
    std_mpc: np.ndarray | float
    mu_mpc: np.ndarray | float
    sigma_mpc: np.ndarray | float
    norm_mpc2: np.ndarray | float


# --------------------------------------------------------------------------------------------
# The sky map
# --------------------------------------------------------------------------------------------


def _as_float_array(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    return arr.astype(np.float64, copy=False)


class SkyMap:
    """A HEALPix probability sky map in multi-order (NUNIQ) form with optional distance layers.

    Build one with :meth:`from_fits` (or :func:`read_skymap`), :func:`gaussian_skymap`, or
    directly from arrays. Rows are pixels; the map may leave parts of the sky out (their density
    is zero) but pixels must not overlap.

    Args:
        uniq: NUNIQ pixel indices (``4 * 4**order + ipix``, nested ``ipix``).
        probdensity: Probability per steradian of each pixel.
        distmu: Distance ansatz location per pixel in Mpc (optional, with the two below).
        distsigma: Distance ansatz scale per pixel in Mpc.
        distnorm: Distance ansatz normalisation per pixel in Mpc^-2.
        meta: Header values kept for inspection (``OBJECT``, ``DISTMEAN``, ``DISTSTD``...).

    Raises:
        SkymapError: Empty, NaN, negative, all-zero or overlapping input.
    """

    def __init__(
        self,
        uniq: Any,
        probdensity: Any,
        *,
        distmu: Any = None,
        distsigma: Any = None,
        distnorm: Any = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        uniq_arr = np.asarray(uniq).ravel()
        if uniq_arr.size == 0:
            raise SkymapError("the sky map has no pixels")
        if not np.issubdtype(uniq_arr.dtype, np.integer):
            raise SkymapError(f"UNIQ must be integers, got {uniq_arr.dtype}")
        uniq_arr = uniq_arr.astype(np.int64)
        if np.any(uniq_arr < 4):
            raise SkymapError("UNIQ values below 4 are not valid NUNIQ indices")
        density = _as_float_array(probdensity, "PROBDENSITY")
        if density.shape != uniq_arr.shape:
            raise SkymapError(
                f"PROBDENSITY has {density.size} values for {uniq_arr.size} UNIQ pixels"
            )
        if np.isnan(density).any():
            raise SkymapError(f"the sky map has {int(np.isnan(density).sum())} NaN densities")
        if not np.isfinite(density).all():
            raise SkymapError("the sky map has infinite densities")
        if (density < 0).any():
            raise SkymapError(f"the sky map has {int((density < 0).sum())} negative densities")

        order, ipix = ah.uniq_to_level_ipix(uniq_arr)
        order = np.asarray(order, dtype=np.int64)
        ipix = np.asarray(ipix, dtype=np.int64)
        if order.max() > MAX_ORDER:
            raise SkymapError(f"HEALPix order {order.max()} is deeper than {MAX_ORDER}")
        area = 4 * math.pi / (12.0 * 4.0**order)
        prob = density * area
        total = float(prob.sum())
        if not total > 0:
            raise SkymapError("the sky map is all zero")

        self.meta: dict[str, Any] = dict(meta or {})
        if abs(total - 1.0) > 1e-3:
            logger.warning("sky map probability sums to %.6g, not 1: normalising it", total)
            self.meta["input_total_probability"] = total
        density = density / total
        prob = prob / total

        self.uniq = uniq_arr
        self.order = order
        self.ipix = ipix
        self.probdensity = density
        self.pixel_area_sr = area
        self.prob = prob

        layers = [distmu, distsigma, distnorm]
        if any(layer is not None for layer in layers):
            if any(layer is None for layer in layers):
                raise SkymapError("DISTMU, DISTSIGMA and DISTNORM must be given together")
            mu, sigma, norm = (_as_float_array(layer, "distance") for layer in layers)
            if not (mu.shape == sigma.shape == norm.shape == uniq_arr.shape):
                raise SkymapError("distance layers do not match the number of pixels")
            # Pixels without distance information carry inf/nan: normalise them to the
            # convention of ligo.skymap (mu=inf, sigma=1, norm=0).
            bad = ~(np.isfinite(mu) & np.isfinite(sigma) & (sigma > 0) & np.isfinite(norm))
            self.distmu: np.ndarray | None = np.where(bad, np.inf, mu)
            self.distsigma: np.ndarray | None = np.where(bad, 1.0, sigma)
            self.distnorm: np.ndarray | None = np.where(bad, 0.0, norm)
        else:
            self.distmu = self.distsigma = self.distnorm = None

        # Lookup structure: each pixel as a range of nested indices at the deepest order.
        self.max_order = int(order.max())
        shift = 2 * (self.max_order - order)
        starts = ipix << shift
        ends = (ipix + 1) << shift
        self._sort = np.argsort(starts, kind="stable")
        self._starts = starts[self._sort]
        self._ends = ends[self._sort]
        if np.any(self._starts[1:] < self._ends[:-1]):
            raise SkymapError("the sky map has overlapping pixels (duplicate or nested UNIQ)")
        self._cumprob_spatial = np.concatenate([[0.0], np.cumsum(prob[self._sort])])

        # Greedy credible levels: pixels sorted by decreasing density.
        self._rank = np.argsort(-density, kind="stable")
        self._cumprob_ranked = np.cumsum(prob[self._rank])
        self._cumarea_ranked = np.cumsum(area[self._rank])
        levels = np.empty_like(prob)
        levels[self._rank] = self._cumprob_ranked
        self._levels = levels

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_fits(cls, source: SkymapSource, *, tail_probability: float = 1e-4) -> SkyMap:
        """Read a multi-order or flat HEALPix FITS sky map.

        Args:
            source: FITS bytes (plain, gzipped or base64 text as in LVK JSON alerts), a path,
                or a binary file object.
            tail_probability: For flat maps only: pixels in the faintest tail holding at most
                this much probability may be merged with their siblings (densities averaged),
                which keeps nside-2048 maps small. Credible regions up to ``1 -
                tail_probability`` are unchanged. 0 merges only identical siblings (lossless).

        Returns:
            The sky map.

        Raises:
            SkymapError: The input is not a readable HEALPix probability map.
        """
        return read_skymap(source, tail_probability=tail_probability)

    def __repr__(self) -> str:
        name = self.meta.get("OBJECT", "")
        return (
            f"<SkyMap {name!s} pixels={self.uniq.size} max_order={self.max_order} "
            f"area90={self.area(0.9):.2f} deg2 distance={self.has_distance}>"
        )

    def __len__(self) -> int:
        return int(self.uniq.size)

    # ---------------------------------------------------------------- basic properties
    @property
    def has_distance(self) -> bool:
        """True when the map carries the DISTMU/DISTSIGMA/DISTNORM layers."""
        return self.distmu is not None

    @property
    def object_name(self) -> str | None:
        """The OBJECT header value (superevent or trigger id), if present."""
        value = self.meta.get("OBJECT")
        return None if value is None else str(value)

    def pixel_centers(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the RA and Dec of every pixel centre in degrees."""
        lon, lat = _nested_lonlat(self.ipix, self.order)
        return lon, lat

    @property
    def credible_levels(self) -> np.ndarray:
        """Greedy credible level of each pixel: probability of all pixels at least as dense."""
        return self._levels

    # ---------------------------------------------------------------- credible regions
    def area(self, level: float = 0.9, *, interpolate: bool = True) -> float:
        """Area of the smallest region holding ``level`` of the probability, in deg2.

        Pixels are taken in order of decreasing density until the cumulative probability
        reaches ``level``. The pixel that crosses it counts in proportion to the probability
        still needed (as ligo.skymap's crossmatch interpolates), so the result does not depend
        on how finely pixels of equal density were split (flat vs multi-order maps). With
        ``interpolate=False`` that pixel is left out, as in the LVK user guide's recipe
        (30.975 deg2 for its sample map, 30.980 interpolated).

        Args:
            level: Credible level in (0, 1].
            interpolate: Count the crossing pixel in proportion (default) or not at all.

        Raises:
            ValueError: ``level`` outside (0, 1].
        """
        _check_level(level)
        cum = self._cumprob_ranked
        i = min(int(np.searchsorted(cum, level)), cum.size - 1)
        before_prob = float(cum[i - 1]) if i > 0 else 0.0
        before_area = float(self._cumarea_ranked[i - 1]) if i > 0 else 0.0
        pixel = int(self._rank[i])
        fraction = min(max((level - before_prob) / self.prob[pixel], 0.0), 1.0)
        if not interpolate:
            fraction = 0.0
        area_sr = before_area + fraction * float(self.pixel_area_sr[pixel])
        return area_sr / SR_PER_DEG2

    def level_for_area(self, area_deg2: float) -> float:
        """The credible level whose region has the given area (the inverse of :meth:`area`).

        Returns:
            Probability enclosed by the densest ``area_deg2`` of the map (1 if it exceeds the
            map's coverage).
        """
        area_sr = area_deg2 * SR_PER_DEG2
        return float(np.interp(area_sr, self._cumarea_ranked, self._cumprob_ranked, left=0.0))

    @property
    def area50(self) -> float:
        """Area of the 50% credible region in deg2."""
        return self.area(0.5)

    @property
    def area90(self) -> float:
        """Area of the 90% credible region in deg2."""
        return self.area(0.9)

    def region_mask(self, level: float = 0.9) -> np.ndarray:
        """Boolean mask over pixels: True for those inside the ``level`` credible region."""
        _check_level(level)
        i = int(np.searchsorted(self._cumprob_ranked, level))
        mask = np.zeros(self.uniq.size, dtype=bool)
        mask[self._rank[:i]] = True
        return mask

    def credible_uniq(self, level: float = 0.9) -> np.ndarray:
        """The credible region as a multi-order coverage: sorted NUNIQ indices of its pixels."""
        return np.sort(self.uniq[self.region_mask(level)])

    def credible_pixels(self, level: float = 0.9, *, order: int | None = None) -> np.ndarray:
        """The credible region as sorted nested pixel indices at one HEALPix order.

        Coarser map pixels are expanded to all their children; finer ones are replaced by their
        parent at ``order`` (a parent counts when any of its children is in the region).

        Args:
            level: Credible level in (0, 1].
            order: HEALPix order of the result; defaults to the map's deepest order.

        Returns:
            Sorted unique nested pixel indices (int64) at ``order``.
        """
        order = self.max_order if order is None else int(order)
        mask = self.region_mask(level)
        return _flatten_indices(self.ipix[mask], self.order[mask], order)

    def contains(self, ra: Any, dec: Any, level: float = 0.9) -> np.ndarray:
        """True where a position lies inside the ``level`` credible region."""
        _check_level(level)
        return self.searched_probability(ra, dec) <= level

    # ---------------------------------------------------------------- positions
    def lookup(self, ra: Any, dec: Any) -> tuple[np.ndarray, np.ndarray]:
        """The map pixel holding each position.

        Args:
            ra: Right ascension(s) in degrees.
            dec: Declination(s) in degrees.

        Returns:
            ``(index, found)``: indices into the map's arrays (``uniq``, ``probdensity``,
            ``distmu``...) and a mask, False where the map does not cover the position.

        Raises:
            ValueError: Non-finite RA or a Dec outside [-90, 90].
        """
        ra_arr = np.asarray(ra, dtype=float)
        dec_arr = np.asarray(dec, dtype=float)
        if np.any(np.abs(dec_arr) > 90) or not np.all(np.isfinite(ra_arr)):
            raise ValueError("positions need finite RA and Dec in [-90, 90] degrees")
        ipix = ah.lonlat_to_healpix(
            ra_arr * u.deg, dec_arr * u.deg, 2**self.max_order, order="nested"
        )
        ipix = np.asarray(ipix, dtype=np.int64)
        j = np.searchsorted(self._starts, ipix, side="right") - 1
        jc = np.clip(j, 0, None)
        found = (j >= 0) & (ipix < self._ends[jc])
        return self._sort[jc], found

    def density(self, ra: Any, dec: Any) -> np.ndarray | float:
        """Probability density at positions, per square degree.

        Args:
            ra: Right ascension(s) in degrees.
            dec: Declination(s) in degrees.

        Returns:
            Density per deg2 (a float for scalar input); 0 outside the map's coverage.
        """
        idx, found = self.lookup(ra, dec)
        value = np.where(found, self.probdensity[idx], 0.0) * SR_PER_DEG2
        return float(value) if np.ndim(value) == 0 else value

    def searched_probability(self, ra: Any, dec: Any) -> np.ndarray | float:
        """Probability of the smallest credible region that contains each position.

        Returns:
            Values in (0, 1]; 1 outside the map's coverage (a float for scalar input).
        """
        idx, found = self.lookup(ra, dec)
        value = np.where(found, self._levels[idx], 1.0)
        return float(value) if np.ndim(value) == 0 else value

    def searched_area(self, ra: Any, dec: Any) -> np.ndarray | float:
        """Area (deg2) of the smallest credible region that contains each position."""
        idx, found = self.lookup(ra, dec)
        rank_of = np.empty_like(self._rank)
        rank_of[self._rank] = np.arange(self._rank.size)
        area_sr = self._cumarea_ranked[rank_of[idx]]
        value = np.where(found, area_sr, np.nan) / SR_PER_DEG2
        return float(value) if np.ndim(value) == 0 else value

    @property
    def peak(self) -> tuple[float, float, float]:
        """``(ra, dec, density)`` of the densest pixel: its centre in degrees, density per deg2."""
        i = int(self._rank[0])
        lon, lat = _nested_lonlat(self.ipix[i : i + 1], self.order[i : i + 1])
        return float(lon[0]), float(lat[0]), float(self.probdensity[i] * SR_PER_DEG2)

    # ---------------------------------------------------------------- distances
    @property
    def distance_mean(self) -> float | None:
        """Posterior mean luminosity distance in Mpc (header DISTMEAN, else from the layers)."""
        if "DISTMEAN" in self.meta:
            return float(self.meta["DISTMEAN"])
        return self._marginal_distance()[0]

    @property
    def distance_std(self) -> float | None:
        """Posterior standard deviation of the distance in Mpc (header DISTSTD, else layers)."""
        if "DISTSTD" in self.meta:
            return float(self.meta["DISTSTD"])
        return self._marginal_distance()[1]

    def _marginal_distance(self) -> tuple[float | None, float | None]:
        if not self.has_distance:
            return None, None
        mean, std, _ = ansatz_moments(self.distmu, self.distsigma)
        ok = np.isfinite(mean)
        if not ok.any():
            return None, None
        w = self.prob[ok] / self.prob[ok].sum()
        m1 = float(np.sum(w * mean[ok]))
        m2 = float(np.sum(w * (std[ok] ** 2 + mean[ok] ** 2)))
        return m1, math.sqrt(max(m2 - m1 * m1, 0.0))

    def distance_along(self, ra: Any, dec: Any) -> DistanceAlongSight:
        """The distance posterior along the line(s) of sight through positions.

        Raises:
            SkymapError: The map has no distance layers.
        """
        if not self.has_distance:
            raise SkymapError("this sky map has no distance layers (DISTMU/DISTSIGMA/DISTNORM)")
        idx, found = self.lookup(ra, dec)
        mu = np.where(found, self.distmu[idx], np.inf)
        sigma = np.where(found, self.distsigma[idx], 1.0)
        norm = np.where(found, self.distnorm[idx], 0.0)
        mean, std, _ = ansatz_moments(mu, sigma)
        if np.ndim(mean) == 0:
            return DistanceAlongSight(float(mean), float(std), float(mu), float(sigma), float(norm))
        return DistanceAlongSight(mean, std, mu, sigma, norm)

    def distance_pdf(self, ra: Any, dec: Any, distance_mpc: Any) -> np.ndarray | float:
        """Conditional probability density of the distance along a line of sight, per Mpc.

        ``p(r | n) = DISTNORM * r**2 * N(r; DISTMU, DISTSIGMA)`` for ``r > 0``. Positions and
        distances broadcast together.

        Raises:
            SkymapError: The map has no distance layers.
        """
        sight = self.distance_along(ra, dec)
        r = np.asarray(distance_mpc, dtype=float)
        return _ansatz_pdf(r, sight.mu_mpc, sight.sigma_mpc, sight.norm_mpc2, volume=False)

    def volume_density(self, ra: Any, dec: Any, distance_mpc: Any) -> np.ndarray | float:
        """3-D probability density per Mpc^3 at positions and distances.

        ``dP/dV = rho(n) * DISTNORM * N(r; DISTMU, DISTSIGMA)`` with ``rho`` per steradian.

        Raises:
            SkymapError: The map has no distance layers.
        """
        if not self.has_distance:
            raise SkymapError("this sky map has no distance layers (DISTMU/DISTSIGMA/DISTNORM)")
        idx, found = self.lookup(ra, dec)
        rho = np.where(found, self.probdensity[idx], 0.0)
        mu = np.where(found, self.distmu[idx], np.inf)
        sigma = np.where(found, self.distsigma[idx], 1.0)
        norm = np.where(found, self.distnorm[idx], 0.0)
        r = np.asarray(distance_mpc, dtype=float)
        value = rho * _ansatz_pdf(r, mu, sigma, norm, volume=True)
        return float(value) if np.ndim(value) == 0 else value

    # ---------------------------------------------------------------- resampling
    def probability_in_pixels(self, order: int, ipix: Any) -> np.ndarray:
        """Probability inside nested pixels at one order, exactly, whatever the map's orders.

        A map pixel coarser than ``order`` gives each child its share; finer map pixels inside
        a requested pixel are summed.

        Args:
            order: HEALPix order of the requested pixels (0..29).
            ipix: Nested pixel indices at ``order``.

        Returns:
            Probability of each requested pixel (not density).
        """
        order = int(order)
        ipix = np.asarray(ipix, dtype=np.int64)
        depth = max(order, self.max_order)
        rel = depth - self.max_order
        starts = self._starts << (2 * rel)
        ends = self._ends << (2 * rel)
        a = ipix << (2 * (depth - order))
        b = (ipix + 1) << (2 * (depth - order))
        i0 = np.searchsorted(starts, a, side="right") - 1
        i0c = np.clip(i0, 0, None)
        contains = (i0 >= 0) & (ends[i0c] >= b) & (starts[i0c] <= a)
        # Case 1: one map pixel contains the whole requested pixel.
        area_req = 4 * math.pi / (12.0 * 4.0**order)
        dens = self.probdensity[self._sort[i0c]]
        whole = np.where(contains, dens * area_req, 0.0)
        # Case 2: the requested pixel holds whole map pixels: sum their probabilities.
        lo = np.searchsorted(starts, a, side="left")
        hi = np.searchsorted(starts, b, side="left")
        summed = self._cumprob_spatial[hi] - self._cumprob_spatial[lo]
        return np.where(contains, whole, summed)

    def rasterize(self, order: int) -> np.ndarray:
        """The map as a flat NESTED array of probability per pixel at ``order`` (<= 13)."""
        if not 0 <= order <= 13:
            raise ValueError(f"rasterize supports orders 0..13, got {order}")
        return self.probability_in_pixels(order, np.arange(12 * 4**order, dtype=np.int64))

    # ---------------------------------------------------------------- summaries and output
    def summary(self) -> dict[str, Any]:
        """A JSON-able summary: areas, peak, distance and header facts.

        Keys: ``object``, ``area50_deg2``, ``area90_deg2``, ``peak_ra``, ``peak_dec``,
        ``peak_density_deg2``, ``distance_mean_mpc``, ``distance_std_mpc``, ``n_pixels``,
        ``max_order``, ``date_obs``, ``creator``, ``instruments``.
        """
        ra, dec, dens = self.peak
        return {
            "object": self.object_name,
            "area50_deg2": round(self.area(0.5), 4),
            "area90_deg2": round(self.area(0.9), 4),
            "peak_ra": round(ra, 4),
            "peak_dec": round(dec, 4),
            "peak_density_deg2": dens,
            "distance_mean_mpc": self.distance_mean,
            "distance_std_mpc": self.distance_std,
            "n_pixels": int(self.uniq.size),
            "max_order": self.max_order,
            "date_obs": self.meta.get("DATE-OBS"),
            "creator": self.meta.get("CREATOR"),
            "instruments": self.meta.get("INSTRUME"),
        }

    def to_fits(
        self,
        *,
        form: Literal["multiorder", "flat"] = "multiorder",
        order: int | None = None,
        ordering: Literal["NESTED", "RING"] = "NESTED",
        compress: bool = False,
    ) -> bytes:
        """Write the map as LVK-style FITS bytes.

        Args:
            form: ``"multiorder"`` (BinTable with UNIQ, PROBDENSITY and distance layers,
                ORDERING='NUNIQ') or ``"flat"`` (PROB per pixel at one resolution).
            order: HEALPix order of a flat map (defaults to the map's deepest order, <= 12).
            ordering: Pixel ordering of a flat map.
            compress: Gzip the bytes.

        Returns:
            The FITS file as bytes.
        """
        header = _output_header(self)
        if form == "multiorder":
            cols = [
                fits.Column("UNIQ", "K", array=self.uniq),
                fits.Column("PROBDENSITY", "D", unit="sr-1", array=self.probdensity),
            ]
            if self.has_distance:
                cols += [
                    fits.Column("DISTMU", "D", unit="Mpc", array=self.distmu),
                    fits.Column("DISTSIGMA", "D", unit="Mpc", array=self.distsigma),
                    fits.Column("DISTNORM", "D", unit="Mpc-2", array=self.distnorm),
                ]
            hdu = fits.BinTableHDU.from_columns(cols)
            hdu.header.update(header)
            hdu.header["ORDERING"] = "NUNIQ"
            hdu.header["MOCORDER"] = self.max_order
            hdu.header["INDXSCHM"] = "EXPLICIT"
            hdu.header["MOC"] = True
        elif form == "flat":
            order = min(self.max_order, 12) if order is None else int(order)
            npix = 12 * 4**order
            nested = np.arange(npix, dtype=np.int64)
            prob = self.probability_in_pixels(order, nested)
            cols_data: dict[str, np.ndarray] = {"PROB": prob}
            if self.has_distance:
                lon, lat = _nested_lonlat(nested, np.full(npix, order))
                idx, found = self.lookup(lon, lat)
                cols_data["DISTMU"] = np.where(found, self.distmu[idx], np.inf)
                cols_data["DISTSIGMA"] = np.where(found, self.distsigma[idx], 1.0)
                cols_data["DISTNORM"] = np.where(found, self.distnorm[idx], 0.0)
            if ordering == "RING":
                ring = np.asarray(ah.core.nested_to_ring(nested, 2**order), dtype=np.int64)
                for key, values in cols_data.items():
                    out = np.empty_like(values)
                    out[ring] = values
                    cols_data[key] = out
            elif ordering != "NESTED":
                raise ValueError(f"ordering must be NESTED or RING, got {ordering!r}")
            units = {"PROB": "pix-1", "DISTMU": "Mpc", "DISTSIGMA": "Mpc", "DISTNORM": "Mpc-2"}
            hdu = fits.BinTableHDU.from_columns(
                [fits.Column(k, "D", unit=units[k], array=v) for k, v in cols_data.items()]
            )
            hdu.header.update(header)
            hdu.header["ORDERING"] = ordering
            hdu.header["NSIDE"] = 2**order
            hdu.header["INDXSCHM"] = "IMPLICIT"
            hdu.header["FIRSTPIX"] = 0
            hdu.header["LASTPIX"] = npix - 1
        else:
            raise ValueError(f"form must be 'multiorder' or 'flat', got {form!r}")
        buffer = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
        data = buffer.getvalue()
        return gzip.compress(data, compresslevel=6) if compress else data


def _output_header(sky: SkyMap) -> dict[str, Any]:
    header: dict[str, Any] = {"PIXTYPE": "HEALPIX", "COORDSYS": "C"}
    for key in ("OBJECT", "DATE-OBS", "MJD-OBS", "INSTRUME", "ORIGIN", "REFERENC"):
        if sky.meta.get(key) is not None:
            header[key] = sky.meta[key]
    header["CREATOR"] = str(sky.meta.get("CREATOR", "followup"))
    if sky.distance_mean is not None:
        header["DISTMEAN"] = sky.distance_mean
        header["DISTSTD"] = sky.distance_std
    return header


def _check_level(level: float) -> None:
    if not 0 < level <= 1:
        raise ValueError(f"credible level must be in (0, 1], got {level}")


def _ansatz_pdf(
    r: np.ndarray, mu: Any, sigma: Any, norm: Any, *, volume: bool
) -> np.ndarray | float:
    """``norm * N(r; mu, sigma)`` (times ``r**2`` unless ``volume``), zero for r <= 0."""
    mu = np.asarray(mu, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    norm = np.asarray(norm, dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):
        gauss = np.exp(-0.5 * ((r - mu) / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)
        value = norm * gauss * (1.0 if volume else r * r)
    value = np.where((r > 0) & np.isfinite(value), value, 0.0)
    return float(value) if np.ndim(value) == 0 else value


def _nested_lonlat(ipix: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre RA/Dec (degrees) of nested pixels at mixed orders."""
    ipix = np.asarray(ipix, dtype=np.int64)
    order = np.asarray(order, dtype=np.int64)
    lon = np.empty(ipix.shape, dtype=float)
    lat = np.empty(ipix.shape, dtype=float)
    for o in np.unique(order):
        sel = order == o
        lo, la = ah.healpix_to_lonlat(ipix[sel], 2 ** int(o), order="nested")
        lon[sel] = lo.to_value(u.deg)
        lat[sel] = la.to_value(u.deg)
    return lon, lat


def _flatten_indices(ipix: np.ndarray, order: np.ndarray, target: int) -> np.ndarray:
    """Nested indices at ``target`` covering pixels given at mixed orders (sorted, unique)."""
    parts = []
    for o in np.unique(order):
        sel = ipix[order == o]
        if o >= target:
            parts.append(np.unique(sel >> (2 * (int(o) - target))))
        else:
            k = 4 ** (target - int(o))
            base = sel << (2 * (target - int(o)))
            parts.append((base[:, None] + np.arange(k, dtype=np.int64)[None, :]).ravel())
    if not parts:
        return np.empty(0, dtype=np.int64)
    return np.unique(np.concatenate(parts))


# --------------------------------------------------------------------------------------------
# Reading FITS
# --------------------------------------------------------------------------------------------


def _load_bytes(source: SkymapSource, max_bytes: int) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            if path.stat().st_size > max_bytes:
                raise SkymapError(f"sky map file {path} is larger than {max_bytes} bytes")
            data = path.read_bytes()
        except OSError as exc:
            raise SkymapError(f"cannot read sky map file {path}: {exc}") from exc
    elif hasattr(source, "read"):
        data = source.read(max_bytes + 1)
        if not isinstance(data, bytes | bytearray):
            raise SkymapError("sky map file objects must be opened in binary mode")
        data = bytes(data)
    else:
        raise SkymapError(f"cannot read a sky map from {type(source).__name__}")
    if not data:
        raise SkymapError("the sky map is empty (0 bytes)")
    if data[:2] == b"\x1f\x8b":
        try:
            data = inflate(data, limit=max_bytes, check=_fits_check(max_bytes), what="gzip sky map")
        except DecodeLimitExceeded as exc:
            raise SkymapError(f"sky map larger than the limit: {exc}") from None
        except SkymapError:
            raise
        except ValueError as exc:
            raise SkymapError(f"corrupt gzip sky map: {exc}") from None
    elif data[:8] == b"U0lNUExF":  # base64 of "SIMPLE", as LVK JSON alerts carry it
        try:
            data = base64.b64decode(data, validate=False)
        except ValueError as exc:
            raise SkymapError(f"corrupt base64 sky map: {exc}") from exc
    if len(data) > max_bytes:
        raise SkymapError(f"the sky map has {len(data)} bytes, larger than {max_bytes}")
    _fits_check(max_bytes)(data)
    return data


def _fits_check(max_bytes: int) -> Callable[[bytes], int | None]:
    """:func:`followup.bounded.fits_declared_end` for a map's first bytes, as SkymapError."""

    def check(head: bytes) -> int | None:
        try:
            return fits_declared_end(head, limit=max_bytes, slack=_HEADER_SLACK)
        except ValueError as exc:  # DecodeLimitExceeded too: "... larger than ..."
            raise SkymapError(str(exc)) from None

    return check


def read_skymap(
    source: SkymapSource,
    *,
    tail_probability: float = 1e-4,
    max_bytes: int = MAX_SKYMAP_BYTES,
) -> SkyMap:
    """Read a HEALPix sky map from FITS bytes, a path or a binary file object.

    Accepts LVK multi-order maps (UNIQ, PROBDENSITY, DISTMU, DISTSIGMA, DISTNORM; ORDERING
    NUNIQ) and flat maps (RING or NESTED; a PROB or PROBABILITY column, vector columns too;
    optional distance layers; implicit or explicit indexing), plain, gzipped or base64.

    Args:
        source: The map.
        tail_probability: See :meth:`SkyMap.from_fits`.
        max_bytes: Largest map read, once inflated (see :data:`MAX_SKYMAP_BYTES`); a gzip
            stream is never inflated past it, nor past the size its headers declare.

    Returns:
        The sky map.

    Raises:
        SkymapError: Corrupt, truncated, empty, all-zero or NaN maps, not a HEALPix map, or
            larger than ``max_bytes`` (or a flat map finer than :data:`MAX_FLAT_NSIDE`).
    """
    data = _load_bytes(source, max_bytes)
    try:
        with fits.open(
            io.BytesIO(data), memmap=False, lazy_load_hdus=False, disable_image_compression=True
        ) as hdul:
            hdu = _find_healpix_hdu(hdul)
            header = hdu.header
            table = hdu.data
            names = {name.upper(): name for name in table.columns.names}
            columns = {key: np.asarray(table[name]) for key, name in names.items()}
            units = {c.name.upper(): (c.unit or "") for c in table.columns}
            meta = _header_meta(header)
            hdr = {k.upper(): header[k] for k in header if k}
    except SkymapError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError... on bad FITS
        raise SkymapError(f"corrupt or truncated FITS sky map: {exc}") from exc

    coordsys = str(hdr.get("COORDSYS", "C")).strip().upper()
    if coordsys not in ("C", "CELESTIAL", "EQUATORIAL", "ICRS"):
        raise SkymapError(f"sky map COORDSYS={coordsys!r}: only celestial (C) maps are supported")
    ordering = str(hdr.get("ORDERING", "")).strip().upper()

    if "UNIQ" in columns:
        uniq = columns["UNIQ"].ravel()
        if "PROBDENSITY" in columns:
            density = _to_per_sr(columns["PROBDENSITY"].ravel(), units.get("PROBDENSITY", ""))
        elif "PROB" in columns or "PROBABILITY" in columns:
            key = "PROB" if "PROB" in columns else "PROBABILITY"
            order, _ = ah.uniq_to_level_ipix(np.asarray(uniq, dtype=np.int64))
            density = columns[key].ravel().astype(float) / (4 * np.pi / (12.0 * 4.0**order))
        else:
            raise SkymapError(f"multi-order map without PROBDENSITY; columns: {sorted(columns)}")
        return SkyMap(
            uniq,
            density,
            distmu=_column(columns, "DISTMU"),
            distsigma=_column(columns, "DISTSIGMA"),
            distnorm=_column(columns, "DISTNORM"),
            meta=meta,
        )

    if ordering not in ("RING", "NESTED"):
        raise SkymapError(
            f"flat HEALPix map needs ORDERING RING or NESTED, got {ordering or 'nothing'!r}"
        )
    key = next((k for k in ("PROB", "PROBABILITY") if k in columns), None)
    if key is None:
        raise SkymapError(f"no PROB or PROBABILITY column; columns: {sorted(columns)}")
    values = {"PROB": columns[key].ravel()}
    for layer in ("DISTMU", "DISTSIGMA", "DISTNORM"):
        if layer in columns:
            values[layer] = columns[layer].ravel()
    explicit = str(hdr.get("INDXSCHM", "IMPLICIT")).strip().upper() == "EXPLICIT"
    pixel = columns["PIXEL"].ravel().astype(np.int64) if explicit and "PIXEL" in columns else None
    if explicit and pixel is None:
        raise SkymapError("explicitly indexed flat map without a PIXEL column")
    nside = hdr.get("NSIDE")
    npix_rows = values["PROB"].size
    if nside is None:
        if pixel is not None:
            raise SkymapError("explicitly indexed flat map without NSIDE")
        try:
            nside = ah.npix_to_nside(npix_rows)
        except ValueError as exc:
            raise SkymapError(f"{npix_rows} pixels is not a HEALPix map size") from exc
    try:
        nside = int(nside)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SkymapError(f"NSIDE={nside!r} is not a number") from exc
    if nside < 1 or nside & (nside - 1):
        raise SkymapError(f"NSIDE={nside} is not a power of two")
    if nside > MAX_FLAT_NSIDE:
        raise SkymapError(f"flat map NSIDE={nside} is finer than {MAX_FLAT_NSIDE}: not read")
    npix = 12 * nside * nside
    if pixel is None and npix_rows != npix:
        raise SkymapError(f"flat map has {npix_rows} pixels, NSIDE={nside} needs {npix}")
    if pixel is not None and (pixel.min() < 0 or pixel.max() >= npix):
        raise SkymapError("PIXEL indices outside the map")
    return _from_flat(values, nside, ordering, pixel, meta, tail_probability)


def _find_healpix_hdu(hdul: fits.HDUList) -> fits.BinTableHDU:
    tables = [h for h in hdul if isinstance(h, fits.BinTableHDU)]
    if not tables:
        raise SkymapError("no binary table HDU: not a HEALPix FITS map")
    for hdu in tables:
        names = {n.upper() for n in hdu.columns.names}
        if names & {"UNIQ", "PROB", "PROBABILITY", "PROBDENSITY"}:
            return hdu
    raise SkymapError(
        f"no HEALPix probability column; columns: {[h.columns.names for h in tables]}"
    )


def _header_meta(header: fits.Header) -> dict[str, Any]:
    keep = (
        "OBJECT",
        "DATE-OBS",
        "MJD-OBS",
        "DATE",
        "CREATOR",
        "ORIGIN",
        "INSTRUME",
        "REFERENC",
        "DISTMEAN",
        "DISTSTD",
        "LOGBCI",
        "LOGBSN",
        "VCSVERS",
        "RUNTIME",
    )
    meta: dict[str, Any] = {}
    for key in keep:
        if key in header:
            value = header[key]
            if isinstance(value, np.generic):
                value = value.item()
            meta[key] = value
    return meta


def _column(columns: dict[str, np.ndarray], key: str) -> np.ndarray | None:
    return columns[key].ravel() if key in columns else None


def _to_per_sr(values: np.ndarray, unit: str) -> np.ndarray:
    unit = unit.strip().lower().replace(" ", "")
    values = values.astype(float)
    if unit in ("", "sr-1", "1/sr", "sr**-1", "sr^-1", "/sr"):
        return values
    if unit in ("deg-2", "1/deg2", "deg**-2", "deg^-2", "/deg2"):
        return values / SR_PER_DEG2
    raise SkymapError(f"PROBDENSITY unit {unit!r} is not per steradian or per square degree")


def _tail_threshold(density: np.ndarray, prob: np.ndarray, tail_probability: float) -> float:
    """A density below which pixels hold at most ``tail_probability`` (conservative).

    Densities are binned by their binary exponent (one cheap pass over nside-2048 maps), so the
    threshold is within a factor two below the exact one.
    """
    if tail_probability <= 0:
        return 0.0
    # The biased binary exponent straight from the IEEE-754 bits (densities are >= 0).
    exponent = (np.ascontiguousarray(density, dtype=np.float64).view(np.int64) >> 52) & 0x7FF
    cum = np.cumsum(np.bincount(exponent, weights=prob))
    # Bins [0, k) hold cum[k-1]; every density below 2**(k - 1023) lies in them.
    k = int(np.searchsorted(cum, tail_probability, side="right"))
    return float(np.ldexp(1.0, k - 1023)) if k > 0 else 0.0


def _from_flat(
    values: dict[str, np.ndarray],
    nside: int,
    ordering: str,
    pixel: np.ndarray | None,
    meta: dict[str, Any],
    tail_probability: float,
) -> SkyMap:
    order = int(ah.nside_to_level(nside))
    npix = 12 * nside * nside
    prob_in = values["PROB"] = values["PROB"].astype(np.float64)
    if not np.isfinite(prob_in).all():
        n_nan = int(np.isnan(prob_in).sum())
        raise SkymapError(
            f"the sky map has {n_nan} NaN and {int(np.isinf(prob_in).sum())} infinite pixels"
        )
    if prob_in.min() < 0:
        raise SkymapError(f"the sky map has {int((prob_in < 0).sum())} negative pixels")
    has_distance = all(k in values for k in ("DISTMU", "DISTSIGMA", "DISTNORM"))
    keys = ["PROB", "DISTMU", "DISTSIGMA", "DISTNORM"] if has_distance else ["PROB"]
    fill = {"PROB": 0.0, "DISTMU": np.inf, "DISTSIGMA": 1.0, "DISTNORM": 0.0}

    def to_nested(arr: np.ndarray, key: str) -> np.ndarray:
        arr = arr.astype(np.float64, copy=False)
        if pixel is None and ordering == "NESTED":
            return arr
        out = np.full(npix, fill[key])
        index = pixel if pixel is not None else None
        if ordering == "RING":
            if index is None:
                if key == "PROB":
                    index = np.nonzero(arr)[0]
                    arr = arr[index]
                else:
                    index = np.arange(npix, dtype=np.int64)
            index = np.asarray(ah.core.ring_to_nested(index, nside), dtype=np.int64)
        out[index] = arr
        return out

    if ordering == "RING" and pixel is None and has_distance:
        # Distance layers need a full permutation anyway.
        index = np.asarray(ah.core.ring_to_nested(np.arange(npix), nside), dtype=np.int64)
        nested = {}
        for key in keys:
            out = np.empty(npix)
            out[index] = values[key].astype(np.float64, copy=False)
            nested[key] = out
    else:
        nested = {key: to_nested(values[key], key) for key in keys}

    total = float(nested["PROB"].sum())
    if not total > 0:
        raise SkymapError("the sky map is all zero")
    area = 4 * math.pi / npix
    density = nested["PROB"] / area
    threshold = _tail_threshold(density, nested["PROB"] / total, tail_probability)
    stack = [density] + [nested[k] for k in keys[1:]]
    uniq, cols = _merge_siblings(order, stack, threshold)
    meta = dict(meta)
    meta["flat_nside"] = nside
    meta["flat_ordering"] = ordering
    if has_distance:
        return SkyMap(uniq, cols[0], distmu=cols[1], distsigma=cols[2], distnorm=cols[3], meta=meta)
    return SkyMap(uniq, cols[0], meta=meta)


def _merge_siblings(
    order: int, columns: list[np.ndarray], tail_density: float
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Turn full-sky NESTED arrays into a multi-order map, merging groups of four siblings.

    Siblings merge when all their values are identical (lossless) or when all their densities
    (``columns[0]``) are below ``tail_density`` (the parent takes their mean density and the
    distance layers of the densest child).
    """
    out_uniq: list[np.ndarray] = []
    out_cols: list[list[np.ndarray]] = [[] for _ in columns]
    current = columns
    alive: np.ndarray | None = None  # None: every pixel at this level is a live leaf
    for level in range(order, 0, -1):
        n = current[0].size
        groups = [c.reshape(n // 4, 4) for c in current]
        equal = np.ones(n // 4, dtype=bool)
        for g in groups:
            same = g == g[:, :1]
            same |= np.isnan(g) & np.isnan(g[:, :1])
            equal &= same.all(axis=1)
        merge = equal | (groups[0] < tail_density).all(axis=1) if tail_density > 0 else equal
        if alive is not None:
            merge &= alive.reshape(n // 4, 4).all(axis=1)
        keep = ~np.repeat(merge, 4)
        if alive is not None:
            keep &= alive
        idx = np.nonzero(keep)[0]
        if idx.size:
            out_uniq.append(4 * 4**level + idx)
            for k, c in enumerate(current):
                out_cols[k].append(c[idx])
        densest = np.argmax(groups[0], axis=1)
        rows = np.arange(n // 4)
        parent = [groups[0].mean(axis=1)]
        for g in groups[1:]:
            parent.append(np.where(equal, g[:, 0], g[rows, densest]))
        parent[0] = np.where(equal, groups[0][:, 0], parent[0])
        current = parent
        alive = merge
    idx = np.arange(current[0].size) if alive is None else np.nonzero(alive)[0]
    if idx.size:
        out_uniq.append(4 + idx)
        for k, c in enumerate(current):
            out_cols[k].append(c[idx])
    uniq = np.concatenate(out_uniq).astype(np.int64)
    cols = [np.concatenate(parts) for parts in out_cols]
    return uniq, cols


# --------------------------------------------------------------------------------------------
# Synthetic maps: a Gaussian blob of known width
# --------------------------------------------------------------------------------------------


def _offsets_deg(
    ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float
) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthal-equidistant offsets (east, north) in degrees of positions from a centre."""
    r1, d1 = np.radians(ra), np.radians(dec)
    r0, d0 = math.radians(ra0), math.radians(dec0)
    cos_c = np.sin(d0) * np.sin(d1) + np.cos(d0) * np.cos(d1) * np.cos(r1 - r0)
    c = np.arccos(np.clip(cos_c, -1, 1))
    bearing = np.arctan2(
        np.cos(d1) * np.sin(r1 - r0),
        np.cos(d0) * np.sin(d1) - np.sin(d0) * np.cos(d1) * np.cos(r1 - r0),
    )
    east = np.degrees(c) * np.sin(bearing)
    north = np.degrees(c) * np.cos(bearing)
    return east, north


def _gaussian_density(
    ra: np.ndarray,
    dec: np.ndarray,
    ra0: float,
    dec0: float,
    sigma: float,
    sigma_minor: float,
    pa_deg: float,
) -> np.ndarray:
    east, north = _offsets_deg(ra, dec, ra0, dec0)
    pa = math.radians(pa_deg)
    # Major axis at position angle pa east of north.
    major = north * math.cos(pa) + east * math.sin(pa)
    minor = -north * math.sin(pa) + east * math.cos(pa)
    return np.exp(-0.5 * ((major / sigma) ** 2 + (minor / sigma_minor) ** 2))


def gaussian_skymap(
    ra: float,
    dec: float,
    sigma_deg: float,
    *,
    sigma_minor_deg: float | None = None,
    position_angle_deg: float = 0.0,
    distance_mpc: float | None = None,
    distance_sigma_mpc: float | None = None,
    max_order: int | None = None,
    object_name: str = "SYNTHETIC",
) -> SkyMap:
    """A multi-order sky map of a 2-D Gaussian blob (circular or elliptical) on the sphere.

    The density is ``exp(-(a**2/sigma**2 + b**2/sigma_minor**2)/2)`` in azimuthal-equidistant
    offsets from the centre, sampled at pixel centres and normalised. Pixels within about six
    sigma are refined down to ``max_order``; the rest of the sky stays coarse.

    Args:
        ra: Centre RA in degrees.
        dec: Centre Dec in degrees.
        sigma_deg: Gaussian width (major axis) in degrees.
        sigma_minor_deg: Minor-axis width in degrees (default: circular).
        position_angle_deg: Major-axis position angle east of north, degrees.
        distance_mpc: Mean distance in Mpc; adds uniform DISTMU/DISTSIGMA/DISTNORM layers.
        distance_sigma_mpc: Distance standard deviation in Mpc (default 20% of the distance).
        max_order: Deepest HEALPix order (default: pixels about sigma/10 wide, at most 13).
        object_name: The OBJECT header value.

    Returns:
        The sky map; 90% area of a circular blob ~ ``pi * sigma**2 * -2 ln(0.1)`` deg2.

    Raises:
        ValueError: Non-positive widths or an impossible distance spread.
    """
    if not sigma_deg > 0:
        raise ValueError(f"sigma_deg must be positive, got {sigma_deg}")
    minor = sigma_deg if sigma_minor_deg is None else float(sigma_minor_deg)
    if not minor > 0:
        raise ValueError(f"sigma_minor_deg must be positive, got {minor}")
    if not -90 <= dec <= 90:
        raise ValueError(f"dec must be within [-90, 90], got {dec}")
    smallest = min(sigma_deg, minor)
    if max_order is None:
        res = smallest / 10.0
        max_order = int(np.clip(math.ceil(math.log2(58.6 / res)), 3, 13))
    max_order = int(max_order)
    base = min(3, max_order)
    radius = 6.5 * max(sigma_deg, minor)
    ipix = np.arange(12 * 4**base, dtype=np.int64)
    done_uniq: list[np.ndarray] = []
    for o in range(base, max_order):
        lon, lat = _nested_lonlat(ipix, np.full(ipix.size, o))
        east, north = _offsets_deg(lon, lat, ra, dec)
        dist = np.hypot(east, north)
        pixel_size = float(ah.nside_to_pixel_resolution(2**o).to_value(u.deg)) * 1.5
        refine = dist < radius + pixel_size
        done_uniq.append(4 * 4**o + ipix[~refine])
        ipix = ((ipix[refine] << 2)[:, None] + np.arange(4)[None, :]).ravel()
    done_uniq.append(4 * 4**max_order + ipix)
    uniq = np.concatenate(done_uniq)
    order, nest = ah.uniq_to_level_ipix(uniq)
    lon, lat = _nested_lonlat(np.asarray(nest), np.asarray(order))
    density = _gaussian_density(lon, lat, ra, dec, sigma_deg, minor, position_angle_deg)
    area = 4 * math.pi / (12.0 * 4.0 ** np.asarray(order))
    density = density / np.sum(density * area)
    meta: dict[str, Any] = {"OBJECT": object_name, "CREATOR": "followup.skymap.gaussian_skymap"}
    if distance_mpc is None:
        return SkyMap(uniq, density, meta=meta)
    dsig = 0.2 * distance_mpc if distance_sigma_mpc is None else float(distance_sigma_mpc)
    mu, sig, norm = ansatz_parameters(float(distance_mpc), dsig)
    meta["DISTMEAN"] = float(distance_mpc)
    meta["DISTSTD"] = dsig
    n = uniq.size
    return SkyMap(
        uniq,
        density,
        distmu=np.full(n, mu),
        distsigma=np.full(n, sig),
        distnorm=np.full(n, norm),
        meta=meta,
    )


def make_gaussian_skymap(
    ra: float,
    dec: float,
    sigma_deg: float,
    *,
    distance_mpc: float | None = None,
    distance_sigma_mpc: float | None = None,
    form: Literal["multiorder", "flat"] = "multiorder",
    nside: int | None = None,
    max_order: int | None = None,
    ordering: Literal["NESTED", "RING"] = "NESTED",
    sigma_minor_deg: float | None = None,
    position_angle_deg: float = 0.0,
    object_name: str = "SYNTHETIC",
    compress: bool = False,
) -> bytes:
    """FITS bytes of a Gaussian-blob sky map, as LVK's readers expect them (for tests and drills).

    The multi-order form is a BinTable with UNIQ, PROBDENSITY (and DISTMU, DISTSIGMA, DISTNORM
    when a distance is given), header ORDERING='NUNIQ', MOC=True, OBJECT, DISTMEAN, DISTSTD.
    The flat form samples the same density at every pixel centre of one NSIDE, in RING or
    NESTED order, in a PROB column (pix-1) with per-pixel distance layers.

    Args:
        ra: Centre RA in degrees.
        dec: Centre Dec in degrees.
        sigma_deg: Gaussian width in degrees.
        distance_mpc: Mean distance in Mpc (adds the distance layers).
        distance_sigma_mpc: Distance standard deviation in Mpc (default 20%).
        form: ``"multiorder"`` or ``"flat"``.
        nside: NSIDE of a flat map (default: pixels about sigma/10 wide, at most 4096).
        max_order: Deepest order of a multi-order map (see :func:`gaussian_skymap`).
        ordering: ``"NESTED"`` or ``"RING"`` for a flat map (ignored for multi-order).
        sigma_minor_deg: Minor-axis width for an elliptical blob.
        position_angle_deg: Major-axis position angle east of north.
        object_name: OBJECT header value.
        compress: Gzip the output.

    Returns:
        FITS bytes.

    Raises:
        ValueError: Bad widths, form, ordering or NSIDE.
    """
    if form == "multiorder":
        sky = gaussian_skymap(
            ra,
            dec,
            sigma_deg,
            sigma_minor_deg=sigma_minor_deg,
            position_angle_deg=position_angle_deg,
            distance_mpc=distance_mpc,
            distance_sigma_mpc=distance_sigma_mpc,
            max_order=max_order,
            object_name=object_name,
        )
        return sky.to_fits(form="multiorder", compress=compress)
    if form != "flat":
        raise ValueError(f"form must be 'multiorder' or 'flat', got {form!r}")
    if ordering not in ("NESTED", "RING"):
        raise ValueError(f"ordering must be NESTED or RING, got {ordering!r}")
    if not sigma_deg > 0:
        raise ValueError(f"sigma_deg must be positive, got {sigma_deg}")
    minor = sigma_deg if sigma_minor_deg is None else float(sigma_minor_deg)
    if nside is None:
        res = min(sigma_deg, minor) / 10.0
        nside = 2 ** int(np.clip(math.ceil(math.log2(58.6 / res)), 3, 12))
    if nside < 1 or nside & (nside - 1):
        raise ValueError(f"nside must be a power of two, got {nside}")
    npix = 12 * nside * nside
    index = np.arange(npix, dtype=np.int64)
    lon, lat = ah.healpix_to_lonlat(index, nside, order=ordering.lower())
    density = _gaussian_density(
        lon.to_value(u.deg), lat.to_value(u.deg), ra, dec, sigma_deg, minor, position_angle_deg
    )
    prob = density / density.sum()
    cols = [fits.Column("PROB", "D", unit="pix-1", array=prob)]
    header: dict[str, Any] = {
        "PIXTYPE": "HEALPIX",
        "ORDERING": ordering,
        "COORDSYS": "C",
        "NSIDE": nside,
        "INDXSCHM": "IMPLICIT",
        "FIRSTPIX": 0,
        "LASTPIX": npix - 1,
        "OBJECT": object_name,
        "CREATOR": "followup.skymap.make_gaussian_skymap",
    }
    if distance_mpc is not None:
        dsig = 0.2 * distance_mpc if distance_sigma_mpc is None else float(distance_sigma_mpc)
        mu, sig, norm = ansatz_parameters(float(distance_mpc), dsig)
        cols += [
            fits.Column("DISTMU", "D", unit="Mpc", array=np.full(npix, mu)),
            fits.Column("DISTSIGMA", "D", unit="Mpc", array=np.full(npix, sig)),
            fits.Column("DISTNORM", "D", unit="Mpc-2", array=np.full(npix, norm)),
        ]
        header["DISTMEAN"] = float(distance_mpc)
        header["DISTSTD"] = dsig
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header.update(header)
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
    data = buffer.getvalue()
    return gzip.compress(data, compresslevel=6) if compress else data
