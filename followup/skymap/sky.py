"""The :class:`SkyMap`: a HEALPix probability map in multi-order (NUNIQ) form."""

from __future__ import annotations

import gzip
import io
import logging
import math
import os
from collections.abc import Mapping
from typing import IO, Any, Literal

import astropy_healpix as ah
import numpy as np
from astropy import units as u
from astropy.io import fits

from followup.exceptions import SkymapError
from followup.skymap.distance import DistanceAlongSight, _ansatz_pdf, ansatz_moments
from followup.skymap.pixels import MAX_ORDER, SR_PER_DEG2, _flatten_indices, _nested_lonlat

__all__ = ["SkyMap", "SkymapSource"]

logger = logging.getLogger("followup.skymap")

SkymapSource = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes]


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
        from followup.skymap.reading import read_skymap

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
        if order >= self.max_order:
            return whole  # no map pixel is finer: a pixel is inside one, or outside the map
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
