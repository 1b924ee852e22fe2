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

from __future__ import annotations

import io
import math
import threading
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle, SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS

from sandbox.specs import FrameSpec, Transient

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

BANDS: tuple[str, ...] = ("gp", "rp", "ip", "zs")
"""Filters the sky knows (LCO codes)."""

BPM_BAD = 1
BPM_SATURATED = 2
BPM_LOW_FLAT = 4
BPM_COSMIC_RAY = 8

# Catalogue band of each LCO filter, and the colour BANZAI uses for its colour term.
_CATALOG_BAND = {"gp": "g", "rp": "r", "ip": "i", "zs": "z"}
_COLOUR = {"gp": ("g", "r"), "rp": ("r", "i"), "ip": ("r", "i"), "zs": ("i", "z")}

# Photometric system of a 1 m + Sinistro: magnitude giving 1 e-/s above the atmosphere,
# extinction per airmass, dark-sky brightness (mag/arcsec^2).
_ZP_ABOVE_ATMOSPHERE = {"gp": 23.62, "rp": 23.55, "ip": 23.15, "zs": 22.30}
_EXTINCTION = {"gp": 0.20, "rp": 0.12, "ip": 0.08, "zs": 0.06}
_DARK_SKY = {"gp": 21.9, "rp": 21.0, "ip": 20.2, "zs": 19.3}

# Site longitudes (degrees east), only used for DAY-OBS.
_SITE_LONGITUDE = {
    "coj": 149.07,
    "cpt": 20.81,
    "tfn": -16.51,
    "lsc": -70.80,
    "elp": -104.02,
    "ogg": -156.26,
}

# Star catalogue: HEALPix cells of nside 2**7 (~0.21 deg^2); positions on sub-cells 2**16 finer.
_CELL_ORDER = 7
_SUB_ORDER = 16
_COUNT_SLOPE = 0.2  # d log10 N / dm
_BRIGHT_LIMIT = 12.0

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def _mix_seed(*parts: object) -> list[int]:
    """Turn strings and integers into a seed sequence for numpy (stable across runs)."""
    out: list[int] = []
    for part in parts:
        if isinstance(part, int | np.integer):
            out.append(int(part) & 0xFFFFFFFF)
        else:
            out.append(zlib.crc32(str(part).encode()))
    return out


def _exposure_key(spec: FrameSpec) -> str:
    """What a frame's conditions are drawn from: the exposure (raw and reduced alike)."""
    return spec.exposure_id or spec.basename


def _frame_key(spec: FrameSpec) -> str:
    """What a frame's own draws (noise, cosmic rays, deblending) are drawn from."""
    if spec.exposure_id is None:
        return spec.basename
    return f"{spec.exposure_id}/{spec.reduction_level}"


def _mid_exposure(spec: FrameSpec) -> datetime:
    return spec.date_obs + timedelta(seconds=spec.exposure_time_s / 2.0)


def _sexagesimal(ra_deg: float, dec_deg: float) -> tuple[str, str]:
    ra = Angle(ra_deg, u.deg).to_string(unit=u.hourangle, sep=":", precision=3, pad=True)
    dec = Angle(dec_deg, u.deg).to_string(
        unit=u.deg, sep=":", precision=2, pad=True, alwayssign=True
    )
    return ra, dec


@dataclass(frozen=True)
class FrameConditions:
    """Observing conditions of one frame, all true values.

    Attributes:
        fwhm_arcsec: Seeing FWHM in arcseconds.
        airmass: Airmass of the pointing.
        sky_mag_arcsec2: Sky brightness in mag/arcsec^2 (science frames).
        sky_e_per_s: Sky level in electrons per second per pixel at the frame centre.
        sky_gradient: Fractional sky gradient across the frame in x and y.
        zero_point: Magnitude giving 1 e-/s of total flux (colour 0) in the reduced frame.
        pointing_offset_arcsec: Offset of the true frame centre from the requested pointing (east, north).
        flat_level_e: Counts per pixel of a SKYFLAT frame (electrons), 0 otherwise.
        bias_drift_adu: Offset of this frame's bias level from the master (ADU).
    """

    fwhm_arcsec: float
    airmass: float
    sky_mag_arcsec2: float
    sky_e_per_s: float
    sky_gradient: tuple[float, float]
    zero_point: float
    pointing_offset_arcsec: tuple[float, float]
    flat_level_e: float
    bias_drift_adu: float


@dataclass(frozen=True)
class FrameTruth:
    """What is really on a frame.

    Attributes:
        basename: Frame basename.
        band: Filter code.
        mid_exposure: Middle of the exposure (UTC): transient magnitudes are evaluated there.
        conditions: The frame's observing conditions (including the true zero point).
        wcs: The frame's true WCS.
        transients: One row per transient on the frame: ``name``, ``ra``, ``dec`` (deg), ``x``,
            ``y`` (0-based pixels), ``mag`` (AB, true), ``flux_e`` (electrons in the exposure).
        depth_5sigma: AB magnitude of a point source detected at S/N 5 by an aperture of radius
            one FWHM at the frame centre (sky, read noise; aperture loss included).
    """

    basename: str
    band: str | None
    mid_exposure: datetime
    conditions: FrameConditions
    wcs: WCS
    transients: Table
    depth_5sigma: float | None


@dataclass
class _Instrument:
    """The fixed defects of one camera: bias pattern, dark current, bad columns, flats per filter."""

    bias: np.ndarray  # ADU, float32
    bias_level: float
    dark: np.ndarray  # e-/s, float32
    hot: np.ndarray  # bool, pixels with high dark current
    bad_columns: list[tuple[int, int]]  # (column, first bad row)
    bad: np.ndarray  # bool
    flats: dict[str, np.ndarray] = field(default_factory=dict)


class SyntheticSky:
    """A deterministic sky of stars and transients that renders LCO Sinistro frames.

    Args:
        seed: Seed of the whole sky: stars, instrument defects, conditions and noise.
        transients: Transients with their light curves (the truth).
        shape: Frame shape (ny, nx) in pixels; Sinistro is (4096, 4096). Smaller frames keep the
            same pixel scale (a smaller field), for fast tests.
        pixel_scale_arcsec: Pixel scale in arcsec/pixel.
        gain_raw: Gain of raw frames in e-/ADU (reduced frames are in electrons, GAIN = 1).
        read_noise_e: Read noise in electrons.
        saturation_e: Full well in electrons.
        fwhm_arcsec: Median seeing FWHM in arcseconds (each frame varies around it).
        star_density: Scale factor on the star counts.
        faint_limit: Faintest r magnitude of the rendered stars.
        catalog_depth: Faintest r magnitude listed in :meth:`reference_catalog`.
        colour_terms: Instrument colour term per filter (``m_cat = ZP - 2.5 log10(f/t) + C * colour``
            with BANZAI's colours g-r, r-i, r-i, i-z); zero by default.
        cosmic_rays_per_s: Cosmic-ray hits per second on a full 4096x4096 frame (scaled by area).
        compress: Write SCI, ERR and BPM (and raw images) as RICE-compressed image HDUs, as the
            archive serves ``.fits.fz`` files. Off gives plain images (bigger, faster to write).

    Example:
        >>> sky = SyntheticSky(seed=1, transients=[kilonova], shape=(1024, 1024))
        >>> data = sky.render(spec)  # bytes of a FITS file
        >>> sky.truth("rp", spec.date_obs)["AT2025abc"]
    """

    def __init__(
        self,
        seed: int = 0,
        transients: Sequence[Transient] = (),
        *,
        shape: tuple[int, int] = (4096, 4096),
        pixel_scale_arcsec: float = 0.389,
        gain_raw: float = 1.2,
        read_noise_e: float = 7.5,
        saturation_e: float = 130_000.0,
        fwhm_arcsec: float = 2.0,
        star_density: float = 1.0,
        faint_limit: float = 23.5,
        catalog_depth: float = 22.5,
        colour_terms: Mapping[str, float] | None = None,
        cosmic_rays_per_s: float = 2.0,
        compress: bool = True,
    ) -> None:
        if len(shape) != 2 or min(shape) < 64:
            raise ValueError(f"shape must be (ny, nx) with both >= 64, got {shape!r}")
        if gain_raw <= 0 or read_noise_e < 0 or saturation_e <= 0:
            raise ValueError("gain_raw and saturation_e must be positive, read_noise_e >= 0")
        names = [t.name for t in transients]
        if len(set(names)) != len(names):
            raise ValueError(f"transient names must be unique, got {names}")
        self.seed = int(seed)
        self.transients: tuple[Transient, ...] = tuple(transients)
        self.shape = (int(shape[0]), int(shape[1]))
        self.pixel_scale_arcsec = float(pixel_scale_arcsec)
        self.gain_raw = float(gain_raw)
        self.read_noise_e = float(read_noise_e)
        self.saturation_e = float(saturation_e)
        self.fwhm_arcsec = float(fwhm_arcsec)
        self.star_density = float(star_density)
        self.faint_limit = float(faint_limit)
        self.catalog_depth = float(catalog_depth)
        self.colour_terms = {b: 0.0 for b in BANDS} | dict(colour_terms or {})
        self.cosmic_rays_per_s = float(cosmic_rays_per_s)
        self.compress = bool(compress)
        self._cells: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._instruments: dict[str, _Instrument] = {}
        # The archive stand-in may render frames from several threads at once.
        self._lock = threading.RLock()

    # ------------------------------------------------------------------------------------------
    # Stars
    # ------------------------------------------------------------------------------------------

    def _cell_stars(self, cell: int) -> dict[str, np.ndarray]:
        """All stars of one HEALPix cell (nested, order 7), generated from the seed and cached."""
        with self._lock:
            return self._cell_stars_locked(cell)

    def _cell_stars_locked(self, cell: int) -> dict[str, np.ndarray]:
        cached = self._cells.get(cell)
        if cached is not None:
            self._cells.move_to_end(cell)
            return cached
        from astropy_healpix import healpix_to_lonlat

        nside = 2**_CELL_ORDER
        lon, lat = healpix_to_lonlat(np.array([cell]), nside, order="nested")
        b = SkyCoord(lon, lat, frame="icrs").galactic.b.deg[0]
        # Stars per deg^2 brighter than r = 21: ~1200 at the galactic pole, rising to ~13000
        # in the plane.
        per_deg2_r21 = self.star_density * (1200.0 + 12000.0 * math.exp(-abs(b) / 12.0))
        cell_area_deg2 = 41252.96 / (12 * nside**2)
        lo = 10 ** (_COUNT_SLOPE * (_BRIGHT_LIMIT - 21.0))
        hi = 10 ** (_COUNT_SLOPE * (self.faint_limit - 21.0))
        rng = np.random.default_rng(_mix_seed(self.seed, "stars", cell))
        n = int(rng.poisson(per_deg2_r21 * cell_area_deg2 * (hi - lo)))
        sub_per_cell = 4**_SUB_ORDER
        sub = cell * sub_per_cell + rng.integers(0, sub_per_cell, n, dtype=np.int64)
        ra, dec = healpix_to_lonlat(
            sub, 2 ** (_CELL_ORDER + _SUB_ORDER), dx=rng.random(n), dy=rng.random(n), order="nested"
        )
        r = 21.0 + np.log10(lo + rng.random(n) * (hi - lo)) / _COUNT_SLOPE
        # Colours along the stellar locus: mostly F/G/K stars, a tail of M dwarfs.
        g_r = np.where(rng.random(n) < 0.8, rng.normal(0.55, 0.25, n), rng.normal(1.40, 0.08, n))
        g_r = np.clip(g_r, -0.3, 1.7)
        r_i = np.where(g_r < 1.3, 0.38 * g_r - 0.07, 0.424 + 3.0 * (g_r - 1.3))
        r_i = r_i + rng.normal(0, 0.03, n)
        i_z = 0.53 * r_i + rng.normal(0, 0.03, n)
        mags = {"g": r + g_r, "r": r, "i": r - r_i, "z": r - r_i - i_z}
        # Catalogue errors (REFCAT2-like): ~0.008 mag floor, growing for faint stars.
        cat: dict[str, np.ndarray] = {}
        for band, m in mags.items():
            err = np.hypot(0.008, 0.012 * 10 ** (0.4 * (m - 18.5)))
            cat[f"{band}mag_cat"] = m + rng.normal(0, 1, n) * err
            cat[f"e_{band}mag"] = err
        stars = {
            "id": np.array([f"S{cell:06d}-{k:05d}" for k in range(n)]),
            "ra": ra.deg,
            "dec": dec.deg,
            **{f"{band}mag": m for band, m in mags.items()},
            **cat,
        }
        self._cells[cell] = stars
        while len(self._cells) > 256:
            self._cells.popitem(last=False)
        return stars

    def stars(self, ra: float, dec: float, radius_deg: float) -> Table:
        """The true stars within a cone.

        Args:
            ra: Centre right ascension, ICRS, degrees.
            dec: Centre declination, ICRS, degrees.
            radius_deg: Cone radius in degrees.

        Returns:
            Table with ``id``, ``ra``, ``dec`` (deg) and true AB magnitudes ``gmag``, ``rmag``,
            ``imag``, ``zmag``, plus the catalogue's noisy values ``<b>mag_cat`` and errors
            ``e_<b>mag``.
        """
        from astropy_healpix import HEALPix

        hp = HEALPix(nside=2**_CELL_ORDER, order="nested")
        cells = hp.cone_search_lonlat(ra * u.deg, dec * u.deg, radius_deg * u.deg)
        parts = [self._cell_stars(int(c)) for c in np.sort(cells)]
        cols = list(parts[0]) if parts else []
        merged = {c: np.concatenate([p[c] for p in parts]) for c in cols}
        if not merged:
            return Table(names=["id", "ra", "dec", "gmag", "rmag", "imag", "zmag"])
        sep = _angular_separation_deg(ra, dec, merged["ra"], merged["dec"])
        keep = sep <= radius_deg
        table = Table({c: v[keep] for c, v in merged.items()})
        for col in ("ra", "dec"):
            table[col].unit = u.deg
        return table

    def reference_catalog(self, ra: float, dec: float, radius_deg: float) -> Table:
        """An ATLAS-REFCAT2-like catalogue of the stars in a cone, as Vizier returns it.

        Magnitudes carry realistic errors (about 0.01 mag for bright stars, 0.02-0.03 at 19,
        more for fainter ones) and are drawn once per star, so repeated queries agree. Stars
        fainter than ``catalog_depth`` in r are not listed; transients never are.

        Args:
            ra: Centre right ascension, ICRS, degrees.
            dec: Centre declination, ICRS, degrees.
            radius_deg: Cone radius in degrees.

        Returns:
            Table with the columns of ``J/ApJ/867/105/refcat2``: ``RA_ICRS``, ``DE_ICRS`` (deg),
            ``gmag``, ``e_gmag``, ``rmag``, ``e_rmag``, ``imag``, ``e_imag``, ``zmag``,
            ``e_zmag`` (mag).
        """
        stars = self.stars(ra, dec, radius_deg)
        out = Table(meta={"name": "J/ApJ/867/105/refcat2", "description": "synthetic REFCAT2"})
        if len(stars) == 0:
            for col in ("RA_ICRS", "DE_ICRS", "gmag", "e_gmag", "rmag", "e_rmag"):
                out[col] = np.zeros(0)
            for col in ("imag", "e_imag", "zmag", "e_zmag"):
                out[col] = np.zeros(0)
            return out
        keep = stars["rmag_cat"] < self.catalog_depth
        stars = stars[keep]
        out["RA_ICRS"] = np.round(np.asarray(stars["ra"]), 8) * u.deg
        out["DE_ICRS"] = np.round(np.asarray(stars["dec"]), 8) * u.deg
        for band in "griz":
            out[f"{band}mag"] = np.round(np.asarray(stars[f"{band}mag_cat"]), 3) * u.mag
            out[f"e_{band}mag"] = np.round(np.asarray(stars[f"e_{band}mag"]), 3) * u.mag
        return out

    # ------------------------------------------------------------------------------------------
    # Truth
    # ------------------------------------------------------------------------------------------

    def transient_magnitude(self, name: str, band: str, when: datetime) -> float:
        """True AB magnitude of one transient in ``band`` at ``when``.

        Raises:
            KeyError: No transient of that name, or none with that band.
        """
        for transient in self.transients:
            if transient.name == name:
                return transient.magnitude(band, when)
        raise KeyError(f"no transient named {name!r}")

    def truth(self, band: str, when: datetime) -> dict[str, float]:
        """True AB magnitude of every transient that has ``band``, at ``when`` (name -> mag)."""
        return {t.name: t.magnitude(band, when) for t in self.transients if band in t.peak_mag}

    def conditions(self, spec: FrameSpec) -> FrameConditions:
        """The (deterministic) observing conditions of a frame."""
        rng = np.random.default_rng(_mix_seed(self.seed, "conditions", _exposure_key(spec)))
        band = spec.filter if spec.filter in _ZP_ABOVE_ATMOSPHERE else "rp"
        fwhm = float(np.clip(self.fwhm_arcsec * math.exp(rng.normal(0.0, 0.12)), 1.2, 3.5))
        airmass = float(1.0 + rng.gamma(2.0, 0.12))
        transparency = float(-abs(rng.normal(0.0, 0.03)))  # thin cloud only dims
        zp = _ZP_ABOVE_ATMOSPHERE[band] - _EXTINCTION[band] * airmass + transparency
        sky_mag = _DARK_SKY[band] - float(rng.uniform(0.0, 1.2))  # moonlight brightens the sky
        sky_rate = 10 ** (-0.4 * (sky_mag - zp)) * self.pixel_scale_arcsec**2
        gradient = (float(rng.normal(0, 0.01)), float(rng.normal(0, 0.01)))
        offset = (float(rng.normal(0, 3.0)), float(rng.normal(0, 3.0)))
        flat_level = (
            float(rng.uniform(15_000, 35_000)) if spec.configuration_type == "SKYFLAT" else 0.0
        )
        return FrameConditions(
            fwhm_arcsec=fwhm,
            airmass=airmass,
            sky_mag_arcsec2=sky_mag,
            sky_e_per_s=sky_rate,
            sky_gradient=gradient,
            zero_point=zp,
            pointing_offset_arcsec=offset,
            flat_level_e=flat_level,
            bias_drift_adu=float(rng.normal(0.0, 0.5)),
        )

    def zero_point(self, spec: FrameSpec) -> float:
        """True zero point of a science frame: AB magnitude of 1 e-/s of total flux at colour 0.

        For raw frames this is the zero point after the gain (electrons) and flat field.
        """
        return self.conditions(spec).zero_point

    def wcs(self, spec: FrameSpec) -> WCS:
        """The true TAN WCS of a frame (north up, east left, centred on the pointing + its error)."""
        cond = self.conditions(spec)
        ny, nx = self.shape
        dra, ddec = cond.pointing_offset_arcsec
        centre = SkyCoord(spec.ra * u.deg, spec.dec * u.deg).spherical_offsets_by(
            dra * u.arcsec, ddec * u.arcsec
        )
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [centre.ra.deg, centre.dec.deg]
        w.wcs.crpix = [nx / 2.0 + 0.5, ny / 2.0 + 0.5]
        scale = self.pixel_scale_arcsec / 3600.0
        w.wcs.cd = np.array([[-scale, 0.0], [0.0, scale]])
        w.wcs.radesys = "ICRS"
        w.wcs.equinox = 2000.0
        return w

    def frame_truth(self, spec: FrameSpec) -> FrameTruth:
        """Conditions, WCS, transients (with true magnitudes and positions) and depth of a frame."""
        cond = self.conditions(spec)
        wcs = self.wcs(spec)
        mid = _mid_exposure(spec)
        rows = self._transients_on_frame(spec, cond, wcs, mid)
        depth = None
        if spec.configuration_type == "EXPOSE" and spec.filter in _ZP_ABOVE_ATMOSPHERE:
            depth = self._depth(cond, spec.exposure_time_s)
        table = Table(
            rows=rows,
            names=["name", "ra", "dec", "x", "y", "mag", "flux_e"],
            dtype=[str, float, float, float, float, float, float],
        )
        return FrameTruth(
            basename=spec.basename,
            band=spec.filter,
            mid_exposure=mid,
            conditions=cond,
            wcs=wcs,
            transients=table,
            depth_5sigma=depth,
        )

    def _depth(self, cond: FrameConditions, exptime: float) -> float:
        if exptime <= 0:
            return float("nan")
        fwhm_px = cond.fwhm_arcsec / self.pixel_scale_arcsec
        radius = fwhm_px
        area = math.pi * radius**2
        fraction = 1.0 - math.exp(-(radius**2) / (2 * (fwhm_px * _FWHM_TO_SIGMA) ** 2))
        noise = math.sqrt(area * (cond.sky_e_per_s * exptime + self.read_noise_e**2))
        return cond.zero_point - 2.5 * math.log10(5.0 * noise / fraction / exptime)

    def _transients_on_frame(
        self, spec: FrameSpec, cond: FrameConditions, wcs: WCS, mid: datetime
    ) -> list[tuple[str, float, float, float, float, float, float]]:
        rows = []
        if spec.configuration_type != "EXPOSE" or spec.filter is None:
            return rows
        ny, nx = self.shape
        for transient in self.transients:
            if spec.filter not in transient.peak_mag:
                continue
            x, y = wcs.all_world2pix([[transient.ra, transient.dec]], 0)[0]
            if not (-0.5 <= x < nx - 0.5 and -0.5 <= y < ny - 0.5):
                continue
            mag = transient.magnitude(spec.filter, mid)
            colour = _transient_colour(transient, spec.filter, mid)
            flux = self._flux_e(mag, colour, spec.filter, cond, spec.exposure_time_s)
            rows.append(
                (transient.name, transient.ra, transient.dec, float(x), float(y), mag, flux)
            )
        return rows

    def _flux_e(
        self,
        mag: np.ndarray | float,
        colour: np.ndarray | float,
        band: str,
        cond: FrameConditions,
        exptime: float,
    ) -> np.ndarray | float:
        term = self.colour_terms.get(band, 0.0)
        return exptime * 10 ** (
            -0.4 * (np.asarray(mag) - cond.zero_point - term * np.asarray(colour))
        )

    # ------------------------------------------------------------------------------------------
    # Rendering
    # ------------------------------------------------------------------------------------------

    def render(self, spec: FrameSpec) -> bytes:
        """Render a frame spec to the bytes of a FITS file (see the module docstring).

        Raises:
            ValueError: A reduced (91) frame of a calibration type, or a science frame without a
                filter the sky knows.
        """
        if spec.configuration_type == "EXPOSE" and spec.filter not in _ZP_ABOVE_ATMOSPHERE:
            raise ValueError(f"science frames need one of the filters {BANDS}, got {spec.filter!r}")
        if spec.configuration_type == "SKYFLAT" and spec.filter not in _ZP_ABOVE_ATMOSPHERE:
            raise ValueError(f"sky flats need one of the filters {BANDS}, got {spec.filter!r}")
        if spec.reduction_level == 91:
            if spec.configuration_type != "EXPOSE":
                raise ValueError(
                    "the sandbox renders calibration frames only raw (reduction_level=0), "
                    f"got {spec.configuration_type} at level 91"
                )
            hdul = self._render_reduced(spec)
        else:
            hdul = self._render_raw(spec)
        return _serialise(hdul)

    # -- shared pieces -------------------------------------------------------------------------

    def _instrument(self, instrument_id: str) -> _Instrument:
        with self._lock:
            return self._instrument_locked(instrument_id)

    def _instrument_locked(self, instrument_id: str) -> _Instrument:
        inst = self._instruments.get(instrument_id)
        if inst is not None:
            return inst
        ny, nx = self.shape
        rng = np.random.default_rng(_mix_seed(self.seed, "instrument", instrument_id))
        # Bias: four amplifiers with their own level, a fixed column pattern and a gentle ramp.
        level = float(rng.uniform(480.0, 520.0))
        bias = np.empty(self.shape, np.float32)
        hy, hx = ny // 2, nx // 2
        for qy, qx in ((0, 0), (0, 1), (1, 0), (1, 1)):
            sy = slice(qy * hy, ny if qy else hy)
            sx = slice(qx * hx, nx if qx else hx)
            columns = rng.normal(0.0, 1.5, sx.stop - sx.start).astype(np.float32)
            bias[sy, sx] = level + rng.uniform(-8.0, 8.0) + columns[None, :]
        bias += np.linspace(-1.5, 1.5, ny, dtype=np.float32)[:, None]
        # Dark current: tiny everywhere, a few hot pixels.
        dark = np.full(self.shape, 0.002, np.float32)
        hot = rng.random(self.shape, dtype=np.float32) < 2e-4
        dark[hot] = rng.lognormal(math.log(0.5), 1.2, int(hot.sum())).astype(np.float32)
        # Dead columns from some row to the top (a few on a full frame).
        n_cols = max(1, round(3 * nx / 4096))
        bad_columns = [
            (int(rng.integers(10, nx - 10)), int(rng.integers(0, ny // 2))) for _ in range(n_cols)
        ]
        bad = np.zeros(self.shape, bool)
        for col, row in bad_columns:
            bad[row:, col] = True
        inst = _Instrument(
            bias=bias, bias_level=level, dark=dark, hot=hot, bad_columns=bad_columns, bad=bad
        )
        self._instruments[instrument_id] = inst
        return inst

    def _flat(self, inst: _Instrument, instrument_id: str, band: str) -> np.ndarray:
        with self._lock:
            return self._flat_locked(inst, instrument_id, band)

    def _flat_locked(self, inst: _Instrument, instrument_id: str, band: str) -> np.ndarray:
        flat = inst.flats.get(band)
        if flat is not None:
            return flat
        ny, nx = self.shape
        rng = np.random.default_rng(_mix_seed(self.seed, "flat", instrument_id, band))
        y = (np.arange(ny, dtype=np.float32) - ny / 2) / (4096 / 2)
        x = (np.arange(nx, dtype=np.float32) - nx / 2) / (4096 / 2)
        r2 = y[:, None] ** 2 + x[None, :] ** 2
        flat = (1.0 - 0.06 * r2).astype(np.float32)  # vignetting, ~12 % at the corners
        flat *= 1.0 + rng.normal(0.0, 0.006, self.shape).astype(np.float32)  # pixel response
        # Dust donuts (out-of-focus shadows), a few percent deep.
        for _ in range(max(1, round(6 * nx * ny / 4096**2))):
            cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
            radius = rng.uniform(15, 45)
            depth = rng.uniform(0.01, 0.04)
            y0, y1 = int(max(cy - 2 * radius, 0)), int(min(cy + 2 * radius, ny))
            x0, x1 = int(max(cx - 2 * radius, 0)), int(min(cx + 2 * radius, nx))
            yy, xx = np.mgrid[y0:y1, x0:x1]
            rr = np.hypot(yy - cy, xx - cx)
            ring = np.exp(-(((rr - 0.7 * radius) / (0.3 * radius)) ** 2))
            flat[y0:y1, x0:x1] *= (1.0 - depth * ring).astype(np.float32)
        flat[inst.bad] *= 0.05  # dead columns barely respond
        flat /= np.float32(np.median(flat[:: max(1, ny // 512), :: max(1, nx // 512)]))
        inst.flats[band] = flat
        return flat

    def _sources(self, spec: FrameSpec, cond: FrameConditions, wcs: WCS) -> dict[str, np.ndarray]:
        """Stars and transients on the frame with pixel positions and electrons."""
        ny, nx = self.shape
        band = spec.filter
        assert band is not None
        centre = wcs.wcs.crval
        radius = math.hypot(nx, ny) / 2 * self.pixel_scale_arcsec / 3600.0 + 0.01
        stars = self.stars(float(centre[0]), float(centre[1]), radius)
        t = spec.exposure_time_s
        cb = _CATALOG_BAND[band]
        c1, c2 = _COLOUR[band]
        ids: list[np.ndarray] = []
        if len(stars):
            xy = wcs.all_world2pix(np.column_stack([stars["ra"], stars["dec"]]), 0)
            mag = np.asarray(stars[f"{cb}mag"])
            colour = np.asarray(stars[f"{c1}mag"]) - np.asarray(stars[f"{c2}mag"])
            flux = self._flux_e(mag, colour, band, cond, t)
            ids.append(np.asarray(stars["id"]))
            x, y = xy[:, 0], xy[:, 1]
            ra, dec = np.asarray(stars["ra"]), np.asarray(stars["dec"])
            kind = np.zeros(len(stars), np.int8)
            in_ref = np.asarray(stars["rmag_cat"]) < self.catalog_depth
            ref_mag = np.asarray(stars[f"{cb}mag_cat"])
            ref_err = np.asarray(stars[f"e_{cb}mag"])
            ref_colour = np.asarray(stars[f"{c1}mag_cat"]) - np.asarray(stars[f"{c2}mag_cat"])
        else:
            x = y = ra = dec = mag = flux = ref_mag = ref_err = ref_colour = np.zeros(0)
            kind = np.zeros(0, np.int8)
            in_ref = np.zeros(0, bool)
        rows = self._transients_on_frame(spec, cond, wcs, _mid_exposure(spec))
        if rows:
            ids.append(np.array([r[0] for r in rows]))
            x = np.concatenate([x, [r[3] for r in rows]])
            y = np.concatenate([y, [r[4] for r in rows]])
            ra = np.concatenate([ra, [r[1] for r in rows]])
            dec = np.concatenate([dec, [r[2] for r in rows]])
            mag = np.concatenate([mag, [r[5] for r in rows]])
            flux = np.concatenate([flux, [r[6] for r in rows]])
            kind = np.concatenate([kind, np.ones(len(rows), np.int8)])
            in_ref = np.concatenate([in_ref, np.zeros(len(rows), bool)])
            nan = np.full(len(rows), np.nan)
            ref_mag = np.concatenate([ref_mag, nan])
            ref_err = np.concatenate([ref_err, nan])
            ref_colour = np.concatenate([ref_colour, nan])
        margin = 30
        keep = (x > -margin) & (x < nx + margin) & (y > -margin) & (y < ny + margin)
        out = {
            "id": np.concatenate(ids)[keep] if ids else np.zeros(0, str),
            "x": np.asarray(x, float)[keep],
            "y": np.asarray(y, float)[keep],
            "ra": np.asarray(ra, float)[keep],
            "dec": np.asarray(dec, float)[keep],
            "mag": np.asarray(mag, float)[keep],
            "flux": np.asarray(flux, float)[keep],
            "kind": kind[keep],
            "in_ref": in_ref[keep],
            "ref_mag": np.asarray(ref_mag, float)[keep],
            "ref_err": np.asarray(ref_err, float)[keep],
            "ref_colour": np.asarray(ref_colour, float)[keep],
        }
        return out

    def _render_sources(
        self, image: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray, sigma: float
    ) -> None:
        """Add pixel-integrated circular Gaussians to ``image`` in place."""
        from scipy.special import erf

        ny, nx = image.shape
        if len(x) == 0:
            return
        s2 = math.sqrt(2.0) * sigma
        peak = flux / (2 * math.pi * sigma**2)
        half = np.ceil(sigma * np.sqrt(2.0 * np.log(np.maximum(peak / 0.02, 1.0)))) + 1
        half = np.clip(half, 2, 25 * sigma).astype(int)
        for h in np.unique(half):
            sel = np.nonzero(half == h)[0]
            ix = np.rint(x[sel]).astype(int)
            iy = np.rint(y[sel]).astype(int)
            offsets = np.arange(-h, h + 1)
            px = ix[:, None] + offsets[None, :]
            py = iy[:, None] + offsets[None, :]
            ex = 0.5 * (erf((px + 0.5 - x[sel, None]) / s2) - erf((px - 0.5 - x[sel, None]) / s2))
            ey = 0.5 * (erf((py + 0.5 - y[sel, None]) / s2) - erf((py - 0.5 - y[sel, None]) / s2))
            ey *= flux[sel, None]
            for k in range(len(sel)):
                x0, x1 = ix[k] - h, ix[k] + h + 1
                y0, y1 = iy[k] - h, iy[k] + h + 1
                if x1 <= 0 or y1 <= 0 or x0 >= nx or y0 >= ny:
                    continue
                cx0, cy0 = max(x0, 0), max(y0, 0)
                cx1, cy1 = min(x1, nx), min(y1, ny)
                stamp = np.outer(ey[k, cy0 - y0 : cy1 - y0], ex[k, cx0 - x0 : cx1 - x0])
                image[cy0:cy1, cx0:cx1] += stamp.astype(np.float32)

    def _sky_image(self, cond: FrameConditions, exptime: float) -> np.ndarray:
        ny, nx = self.shape
        level = cond.sky_e_per_s * exptime
        gx, gy = cond.sky_gradient
        rows = (level * gy * (np.arange(ny, dtype=np.float32) / ny - 0.5)).astype(np.float32)
        cols = (level * (1.0 + gx * (np.arange(nx, dtype=np.float32) / nx - 0.5))).astype(
            np.float32
        )
        return rows[:, None] + cols[None, :]

    def _cosmic_rays(
        self, image: np.ndarray, rng: np.random.Generator, seconds: float
    ) -> np.ndarray:
        """Add cosmic-ray tracks (electrons) in place; return the mask of hit pixels."""
        ny, nx = image.shape
        mask = np.zeros(image.shape, bool)
        n = int(rng.poisson(self.cosmic_rays_per_s * seconds * nx * ny / 4096**2))
        if n == 0:
            return mask
        x0 = rng.uniform(0, nx, n)
        y0 = rng.uniform(0, ny, n)
        length = rng.exponential(2.0, n) + 0.5
        angle = rng.uniform(0, math.pi, n)
        energy = rng.lognormal(math.log(2500.0), 0.6, n)
        for k in range(n):
            steps = max(1, math.ceil(length[k] / 0.5))
            s = np.linspace(0.0, length[k], steps)
            px = np.clip(np.rint(x0[k] + s * math.cos(angle[k])).astype(int), 0, nx - 1)
            py = np.clip(np.rint(y0[k] + s * math.sin(angle[k])).astype(int), 0, ny - 1)
            flat_idx = np.unique(py * nx + px)
            yy, xx = np.divmod(flat_idx, nx)
            deposit = energy[k] / len(flat_idx) * rng.uniform(0.6, 1.4, len(flat_idx))
            image[yy, xx] += deposit.astype(np.float32)
            mask[yy, xx] = True
        return mask

    def _noise_rng(self, spec: FrameSpec) -> np.random.Generator:
        return np.random.default_rng(_mix_seed(self.seed, "noise", _frame_key(spec), spec.seed))

    # -- reduced (level 91) --------------------------------------------------------------------

    def _render_reduced(self, spec: FrameSpec) -> fits.HDUList:
        import numexpr as ne

        cond = self.conditions(spec)
        wcs = self.wcs(spec)
        t = spec.exposure_time_s
        inst = self._instrument(spec.instrument_id)
        sigma = cond.fwhm_arcsec / self.pixel_scale_arcsec * _FWHM_TO_SIGMA
        model = self._sky_image(cond, t)
        sources = self._sources(spec, cond, wcs)
        self._render_sources(model, sources["x"], sources["y"], sources["flux"], sigma)
        rng = self._noise_rng(spec)
        z = rng.standard_normal(self.shape, dtype=np.float32)
        rn2 = np.float32(self.read_noise_e**2)
        sci = ne.evaluate(
            "model + sqrt(model + rn2) * z", local_dict={"model": model, "rn2": rn2, "z": z}
        )
        del z
        bpm = np.zeros(self.shape, np.uint8)
        # Residual hot pixels after dark subtraction, and dead columns: flagged as bad.
        hot_noise = inst.dark[inst.hot] * np.float32(t)
        sci[inst.hot] += rng.normal(0.0, 1.0, hot_noise.size).astype(np.float32) * np.sqrt(
            hot_noise
        )
        very_hot = inst.hot & (inst.dark > 1.0)
        bpm[very_hot] |= BPM_BAD
        bad_values = model[inst.bad] * np.float32(0.05)
        sci[inst.bad] = bad_values + rng.normal(0.0, 1.0, bad_values.size).astype(
            np.float32
        ) * np.sqrt(bad_values + rn2)
        bpm[inst.bad] |= BPM_BAD
        del model
        cr = self._cosmic_rays(sci, rng, t + 30.0)
        bpm[cr] |= BPM_COSMIC_RAY
        saturated = sci >= np.float32(self.saturation_e)
        sci[saturated] = np.float32(self.saturation_e)
        bpm[saturated] |= BPM_SATURATED
        err = ne.evaluate("sqrt(where(sci > 0, sci, 0) + rn2)", local_dict={"sci": sci, "rn2": rn2})

        catalog, l1 = self._measure_catalog(sci, err, bpm, sources, cond, wcs, spec)
        header = self._header(spec, cond, wcs, level=91)
        for key, (value, comment) in l1.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise RuntimeError(f"{key} is not finite: {l1}")
            header[key] = (value, comment)
        sample = sci[:: max(1, self.shape[0] // 256), :: max(1, self.shape[1] // 256)]
        good = sample[sample < np.percentile(sample, 90)]
        header["L1MEAN"] = (
            round(float(np.mean(good)), 3),
            "[e-] Sigma clipped mean of frame background",
        )
        header["L1MEDIAN"] = (round(float(np.median(sample)), 3), "[e-] Median of frame background")
        header["L1SIGMA"] = (
            round(float(1.4826 * np.median(np.abs(sample - np.median(sample)))), 3),
            "[e-] Robust std dev of frame background",
        )
        return self._reduced_hdul(header, sci, err, bpm, catalog)

    def _measure_catalog(
        self,
        sci: np.ndarray,
        err: np.ndarray,
        bpm: np.ndarray,
        sources: dict[str, np.ndarray],
        cond: FrameConditions,
        wcs: WCS,
        spec: FrameSpec,
    ) -> tuple[Table, dict[str, tuple[object, str]]]:
        """Measure every source on the frame like BANZAI's SourceDetector and fit the zero point."""
        ny, nx = sci.shape
        fwhm = cond.fwhm_arcsec / self.pixel_scale_arcsec
        sigma = fwhm * _FWHM_TO_SIGMA
        t = spec.exposure_time_s
        inside = (
            (sources["x"] >= 0)
            & (sources["x"] <= nx - 1)
            & (sources["y"] >= 0)
            & (sources["y"] <= ny - 1)
        )
        # Only sources that could reach the detection threshold are measured (a cheap
        # prediction from the true flux; the detection itself is decided on the pixels).
        sky = cond.sky_e_per_s * t
        expected = (
            0.937
            * sources["flux"]
            / np.sqrt(math.pi * fwhm**2 * (sky + self.read_noise_e**2) + 0.937 * sources["flux"])
        )
        idx = np.nonzero(inside & (expected >= 1.5))[0]
        r_kron = 2.5 * sigma * math.sqrt(math.pi / 2.0)
        radii = [r_kron, fwhm] + [0.5 * d / self.pixel_scale_arcsec for d in (1, 2, 3, 4, 5, 6)]
        r_in, r_out = max(3.0 * fwhm, r_kron + 2), max(5.0 * fwhm, r_kron + 8)
        half = math.ceil(r_out) + 1
        padded = (
            np.pad(sci, half, mode="constant", constant_values=np.nan),
            np.pad(err, half, mode="constant", constant_values=np.nan),
            np.pad(bpm, half, mode="constant", constant_values=BPM_BAD),
        )
        chunks = [
            _measure_sources(
                padded,
                half,
                sources["x"][idx[k : k + 400]],
                sources["y"][idx[k : k + 400]],
                sigma=sigma,
                radii=radii,
                annulus=(r_in, r_out),
            )
            for k in range(0, len(idx), 400)
        ]
        m = {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]} if chunks else {}
        if not m:
            m = {
                key: np.zeros((0, len(radii)))
                if key in ("flux", "flux_err", "flags")
                else np.zeros(0)
                for key in (
                    "flux",
                    "flux_err",
                    "flags",
                    "bkg",
                    "mx",
                    "my",
                    "x2",
                    "y2",
                    "xy",
                    "peak",
                )
            }
        flux, flux_err, pix_flags = (
            m["flux"][:, 0],
            m["flux_err"][:, 0],
            m["flags"][:, 0].astype(int),
        )
        det_flux, det_err = m["flux"][:, 1], m["flux_err"][:, 1]
        apers = [(m["flux"][:, k], m["flux_err"][:, k]) for k in range(2, len(radii))]
        # Measuring at known positions adds a close neighbour's light to a faint source; BANZAI's
        # deblender splits it. Sources with a neighbour within 3 FWHM get what a deblender
        # reports: their own flux in each aperture (the PSF's enclosed fraction of their true
        # flux) plus the measured noise. Without this, faint neighbours of bright stars would
        # pass for bright uncatalogued sources (false transient candidates).
        if len(idx) > 1:
            from scipy.spatial import cKDTree

            close = cKDTree(np.column_stack([sources["x"][idx], sources["y"][idx]])).query_pairs(
                3.0 * fwhm, output_type="ndarray"
            )
            near = np.zeros(len(idx), bool)
            near[np.unique(close.ravel())] = True
            if near.any():
                noise = np.random.default_rng(
                    _mix_seed(self.seed, "deblend-flux", _frame_key(spec))
                )
                own = sources["flux"][idx][near]
                for col, radius in enumerate(radii):
                    enclosed = own * (1.0 - np.exp(-(radius**2) / (2.0 * sigma**2)))
                    m["flux"][near, col] = (
                        enclosed + noise.normal(0, 1, near.sum()) * m["flux_err"][near, col]
                    )
        bkg, mx, my, x2, y2, xy, peak = (
            m[k] for k in ("bkg", "mx", "my", "x2", "y2", "xy", "peak")
        )
        ix = np.rint(sources["x"][idx]).astype(int)
        iy = np.rint(sources["y"][idx]).astype(int)
        # For a Gaussian source of sigma s seen through a Gaussian window of sigma w, the
        # measured second moment is s^2 w^2 / (s^2 + w^2): invert it.
        w2 = (2 * sigma) ** 2
        m2 = np.clip(0.5 * (x2 + y2), 0.05, 0.99 * w2)
        s2 = m2 * w2 / (w2 - m2)
        fwhm_meas = 2.0 * np.sqrt(2.0 * np.log(2.0) * s2)
        common = np.sqrt(np.maximum(((x2 - y2) / 2) ** 2 + xy**2, 0))
        a = np.sqrt(np.maximum((x2 + y2) / 2 + common, 1e-6))
        b = np.sqrt(np.maximum((x2 + y2) / 2 - common, 1e-6))
        theta = 0.5 * np.degrees(np.arctan2(2 * xy, x2 - y2))

        detected = (det_flux / det_err >= 3.0) & (flux > 0)
        flag = np.zeros(len(idx), np.int16)
        flag[(pix_flags & BPM_BAD) > 0] |= 1
        flag[(pix_flags & BPM_SATURATED) > 0] |= 4
        flag[(pix_flags & BPM_COSMIC_RAY) > 0] |= 16
        edge = (
            (sources["x"][idx] < r_kron)
            | (sources["y"][idx] < r_kron)
            | (sources["x"][idx] > nx - 1 - r_kron)
            | (sources["y"][idx] > ny - 1 - r_kron)
        )
        flag[edge] |= 8
        # Blended: another detected source within 3 FWHM. A deblender separates them; the
        # windowed centroid would be pulled towards the neighbour, so blended sources get the
        # centroid a deblended fit would give: the true position plus its statistical error.
        sel = np.nonzero(detected)[0]
        blended = np.zeros(len(idx), bool)
        if len(sel) > 1:
            from scipy.spatial import cKDTree

            tree = cKDTree(np.column_stack([sources["x"][idx][sel], sources["y"][idx][sel]]))
            pairs = tree.query_pairs(3.0 * fwhm, output_type="ndarray")
            if len(pairs):
                blended[sel[np.unique(pairs.ravel())]] = True
                flag[blended] |= 2
        with np.errstate(invalid="ignore", divide="ignore"):
            centroid_err = np.clip(sigma / np.maximum(det_flux / det_err, 1.0), 0.01, sigma)
        jitter = np.random.default_rng(_mix_seed(self.seed, "deblend", _frame_key(spec)))
        mx = np.where(blended, jitter.normal(0, 1, len(idx)) * centroid_err, mx)
        my = np.where(blended, jitter.normal(0, 1, len(idx)) * centroid_err, my)

        # Zero point like BANZAI: reference stars matched, flag 0, clipped weighted fit with a
        # colour term (kept only when significant), magnitude of 1 e-/s of the Kron flux. Stars
        # near the detection limit are left out: selected on their measured flux they would
        # bias the fit (and fake a colour term, faint stars being redder).
        ref = idx[detected & (flag == 0)]
        pos = np.nonzero(detected & (flag == 0))[0]
        usable = (
            sources["in_ref"][ref]
            & np.isfinite(sources["ref_mag"][ref])
            & (flux[pos] / flux_err[pos] > 30)
        )
        ref, pos = ref[usable], pos[usable]
        l1: dict[str, tuple[object, str]] = {}
        band = spec.filter
        assert band is not None
        c1, c2 = _COLOUR[band]
        if len(ref) >= 3:
            inst_mag = -2.5 * np.log10(flux[pos] / t)
            dm = sources["ref_mag"][ref] - inst_mag
            sig = np.hypot(sources["ref_err"][ref], 1.0857 * flux_err[pos] / flux[pos])
            colour = sources["ref_colour"][ref]
            zp, zp_err, coef, coef_err = _fit_line(dm, sig, colour)
            if abs(coef) < 3 * coef_err:
                zp, zp_err, coef, coef_err = _fit_line(dm, sig, np.zeros_like(colour))
            l1 = {
                "L1ZP": (round(zp, 4), "Instrumental zeropoint [mag]"),
                "L1ZPERR": (round(zp_err, 4), "Error on Instrumental zeropoint [mag]"),
                "L1COLORU": (f"{c1}-{c2}", "Color used for calibration"),
                "L1COLOR": (round(coef, 4), "Color coefficient [mag]"),
                "L1COLERR": (round(coef_err, 4), "Error on color coefficient [mag]"),
            }
        good_fwhm = fwhm_meas[detected & (flag == 0) & (flux / flux_err > 20)]
        l1_fwhm_px = float(np.median(good_fwhm)) if len(good_fwhm) >= 3 else fwhm
        l1["L1FWHM"] = (
            round(l1_fwhm_px * self.pixel_scale_arcsec, 3),
            "[arcsec] Frame FWHM in arcsec",
        )
        l1["L1FWTM"] = (
            round(l1_fwhm_px * self.pixel_scale_arcsec * 1.8226, 3),
            "[arcsec] Frame FWTM in arcsec",
        )
        ell = 1.0 - b / a
        good_ell = ell[detected & (flag == 0) & (flux / flux_err > 20)]
        l1["L1ELLIP"] = (
            round(float(np.median(good_ell)) if len(good_ell) else 0.0, 3),
            "Mean image ellipticity (1-B/A)",
        )
        good_theta = theta[detected & (flag == 0) & (flux / flux_err > 20)]
        l1["L1ELLIPA"] = (
            round(float(np.median(good_theta)) if len(good_theta) else 0.0, 3),
            "[deg] PA of mean image ellipticity",
        )

        keep = np.nonzero(detected)[0]
        xs = sources["x"][idx][keep] + mx[keep]
        ys = sources["y"][idx][keep] + my[keep]
        world = wcs.all_pix2world(np.column_stack([xs, ys]), 0) if len(keep) else np.zeros((0, 2))
        cat = Table()
        cat["x"] = (xs + 1.0).astype(np.float64)  # BANZAI's CAT uses 1-based pixels
        cat["y"] = (ys + 1.0).astype(np.float64)
        cat["xwin"] = cat["x"]
        cat["ywin"] = cat["y"]
        cat["xpeak"] = (ix[keep] + 1).astype(np.int32)
        cat["ypeak"] = (iy[keep] + 1).astype(np.int32)
        cat["ra"] = world[:, 0]
        cat["dec"] = world[:, 1]
        cat["flux"] = flux[keep]
        cat["fluxerr"] = flux_err[keep]
        cat["peak"] = peak[keep]
        for k, (f, fe) in enumerate(apers, start=1):
            cat[f"fluxaper{k}"] = f[keep]
            cat[f"fluxerr{k}"] = fe[keep]
        cat["background"] = bkg[keep]
        cat["fwhm"] = fwhm_meas[keep]
        cat["fwtm"] = fwhm_meas[keep] * 1.8226
        cat["a"] = a[keep]
        cat["b"] = b[keep]
        cat["theta"] = theta[keep]
        cat["kronrad"] = np.full(len(keep), 2.5)
        cat["ellipticity"] = ell[keep]
        for frac, name in ((0.25, "fluxrad25"), (0.5, "fluxrad50"), (0.75, "fluxrad75")):
            cat[name] = np.sqrt(-2.0 * np.log(1.0 - frac)) * np.sqrt(s2[keep])
        cat["x2"] = x2[keep]
        cat["y2"] = y2[keep]
        cat["xy"] = xy[keep]
        cat["flag"] = flag[keep]
        if "L1ZP" in l1:
            zp = float(l1["L1ZP"][0])  # type: ignore[arg-type]
            with np.errstate(invalid="ignore", divide="ignore"):
                cat["mag"] = zp - 2.5 * np.log10(cat["flux"] / t)
                cat["magerr"] = 1.0857 * cat["fluxerr"] / cat["flux"]
        for col in ("ra", "dec"):
            cat[col].unit = u.deg
        return cat, l1

    def _header(
        self, spec: FrameSpec, cond: FrameConditions, wcs: WCS, *, level: int
    ) -> fits.Header:
        ny, nx = self.shape
        start = Time(spec.date_obs)
        t = spec.exposure_time_s
        ra_str, dec_str = _sexagesimal(spec.ra, spec.dec)
        longitude = _SITE_LONGITUDE.get(spec.site_id, 0.0)
        day_obs = (spec.date_obs + timedelta(hours=longitude / 15.0 - 12.0)).strftime("%Y%m%d")
        obstype = {"EXPOSE": "EXPOSE", "BIAS": "BIAS", "DARK": "DARK", "SKYFLAT": "SKYFLAT"}[
            spec.configuration_type
        ]
        raw_name = (
            spec.basename[:-3] + f"{spec.basename[-3]}00"
            if spec.basename[-2:].isdigit()
            else spec.basename
        )
        gain = 1.0 if level == 91 else self.gain_raw
        saturate = self.saturation_e if level == 91 else None
        h = fits.Header()
        cards: list[tuple[str, object, str]] = [
            ("ORIGIN", "LCOGT", "Organization responsible for the data"),
            ("SITEID", spec.site_id, "ID code of the Observatory site"),
            ("ENCID", spec.enclosure_id, "ID code of the Enclosure"),
            ("TELID", spec.telescope_id, "ID code of the Telescope"),
            (
                "TELESCOP",
                f"{spec.telescope_id[:3]}-{zlib.crc32((spec.site_id + spec.enclosure_id + spec.telescope_id).encode()) % 14 + 1:02d}",
                "Telescope used",
            ),
            ("INSTRUME", spec.instrument_id, "Instrument used"),
            ("OBSTYPE", obstype, "Observation type"),
            (
                "OBJECT",
                spec.target_name if spec.configuration_type == "EXPOSE" else "N/A",
                "Object name",
            ),
            ("FILTER", spec.filter or "air", "Filter used"),
            ("FILTER1", spec.filter or "air", "Filter in wheel 1"),
            ("EXPTIME", round(t, 3), "[s] Exposure length"),
            ("DATE-OBS", start.isot, "[UTC] Start of the observation"),
            ("DAY-OBS", day_obs, "[UTC] Date at start of local observing night"),
            ("UTSTART", start.isot[11:], "[UTC] The start time of the observation"),
            ("UTSTOP", (start + t * u.s).isot[11:], "[UTC] The finish time of the observation"),
            ("MJD-OBS", round(start.mjd, 8), "[UTC days] Start date/time (MJD)"),
            ("RA", ra_str, "[HH:MM:SS.sss] Telescope pointing RA"),
            ("DEC", dec_str, "[sDD:MM:SS.ss] Telescope pointing Dec"),
            ("CAT-RA", ra_str, "[HH:MM:SS.sss] Catalog RA of the object"),
            ("CAT-DEC", dec_str, "[sDD:MM:SS.ss] Catalog Dec of the object"),
            (
                "AIRMASS",
                round(cond.airmass, 4) if spec.configuration_type == "EXPOSE" else 1.0,
                "Effective mean airmass",
            ),
            ("PIXSCALE", self.pixel_scale_arcsec, "[arcsec/pixel] Nominal pixel scale on sky"),
            ("GAIN", gain, "[electrons/count] Pixel gain"),
            ("RDNOISE", self.read_noise_e, "[electrons/pixel] Read noise"),
            (
                "SATURATE",
                round(saturate if saturate is not None else self._raw_saturate(), 1),
                "[ADU] Saturation level used" if level == 0 else "[e-] Saturation level used",
            ),
            (
                "MAXLIN",
                round(0.95 * (saturate if saturate is not None else self._raw_saturate()), 1),
                "Non-linearity level",
            ),
            ("PROPID", spec.proposal_id, "Proposal ID"),
            ("GROUPID", spec.group_name or "N/A", "Group identification"),
            (
                "TRACKNUM",
                f"{spec.group_id:010d}" if spec.group_id is not None else "N/A",
                "Request group id",
            ),
            (
                "REQNUM",
                f"{spec.request_id:010d}" if spec.request_id is not None else "N/A",
                "Request number",
            ),
            ("BLKUID", (spec.request_id or 0) * 10 + 1, "Block unique ID"),
            ("MOLUID", f"{spec.frame_number:08d}", "Molecule unique ID"),
            ("FRAMENUM", spec.frame_number, "Running frame number"),
            ("RLEVEL", level, "Reduction level"),
            ("ORIGNAME", raw_name, "Fname written by ICS"),
            ("PIPEVER", "sandbox" if level == 91 else "N/A", "Pipeline version"),
            ("L1PUBDAT", (start + 365 * u.day).isot, "[UTC] Date the frame becomes public"),
        ]
        for key, value, comment in cards:
            h[key] = (value, comment)
        if spec.configuration_type in ("EXPOSE", "SKYFLAT"):
            # BANZAI writes a CD matrix (astropy would write PC + CDELT).
            for key, value, comment in (
                ("CTYPE1", "RA---TAN", "Type of WCS Projection"),
                ("CTYPE2", "DEC--TAN", "Type of WCS Projection"),
                (
                    "CRPIX1",
                    float(wcs.wcs.crpix[0]),
                    "[pixel] Coordinate of reference point (axis 1)",
                ),
                (
                    "CRPIX2",
                    float(wcs.wcs.crpix[1]),
                    "[pixel] Coordinate of reference point (axis 2)",
                ),
                ("CRVAL1", float(wcs.wcs.crval[0]), "[deg] RA at the reference pixel"),
                ("CRVAL2", float(wcs.wcs.crval[1]), "[deg] Dec at the reference pixel"),
                ("CUNIT1", "deg", "Units of RA"),
                ("CUNIT2", "deg", "Units of Dec"),
                ("CD1_1", float(wcs.wcs.cd[0, 0]), "Coordinate transformation matrix element"),
                ("CD1_2", float(wcs.wcs.cd[0, 1]), "Coordinate transformation matrix element"),
                ("CD2_1", float(wcs.wcs.cd[1, 0]), "Coordinate transformation matrix element"),
                ("CD2_2", float(wcs.wcs.cd[1, 1]), "Coordinate transformation matrix element"),
                ("RADESYS", "ICRS", "Equatorial coordinate system"),
            ):
                h[key] = (value, comment)
            h["WCSERR"] = (0, "Error status of WCS fit. 0 for no error")
        h["NAXIS1"] = nx
        h["NAXIS2"] = ny
        return h

    def _raw_saturate(self) -> float:
        inst_bias = 480.0 - 8.0 - 10.0  # lowest possible bias level in ADU (see _instrument)
        return math.floor(inst_bias + self.saturation_e / self.gain_raw)

    def _image_hdu(
        self, data: np.ndarray, header: fits.Header | None, name: str, *, quantize: float = 16.0
    ) -> fits.ImageHDU | fits.CompImageHDU:
        if not self.compress:
            return fits.ImageHDU(data, header=header, name=name)
        rows = min(64, data.shape[0])
        if data.dtype.kind == "f":
            return fits.CompImageHDU(
                data,
                header=header,
                name=name,
                compression_type="RICE_1",
                tile_shape=(rows, data.shape[1]),
                quantize_level=quantize,
                # A fixed dither seed (the default uses the clock) keeps the pixels reproducible.
                dither_seed=1 + zlib.crc32(name.encode()) % 10000,
            )
        return fits.CompImageHDU(
            data,
            header=header,
            name=name,
            compression_type="RICE_1",
            tile_shape=(rows, data.shape[1]),
        )

    def _reduced_hdul(
        self, header: fits.Header, sci: np.ndarray, err: np.ndarray, bpm: np.ndarray, catalog: Table
    ) -> fits.HDUList:
        for key in ("NAXIS1", "NAXIS2"):
            header.remove(key, ignore_missing=True)
        sci_hdu = self._image_hdu(sci, header, "SCI")
        cat_hdu = fits.BinTableHDU(catalog, name="CAT")
        bpm_hdu = self._image_hdu(bpm, None, "BPM")
        err_hdu = self._image_hdu(err, None, "ERR", quantize=4.0)
        for hdu in (bpm_hdu, err_hdu):
            hdu.header["EXTVER"] = 1
        return fits.HDUList([fits.PrimaryHDU(), sci_hdu, cat_hdu, bpm_hdu, err_hdu])

    # -- raw (level 0) -------------------------------------------------------------------------

    def _render_raw(self, spec: FrameSpec) -> fits.HDUList:
        import numexpr as ne

        cond = self.conditions(spec)
        wcs = self.wcs(spec)
        t = spec.exposure_time_s
        inst = self._instrument(spec.instrument_id)
        rng = self._noise_rng(spec)
        kind = spec.configuration_type
        if kind == "EXPOSE":
            assert spec.filter is not None
            sigma = cond.fwhm_arcsec / self.pixel_scale_arcsec * _FWHM_TO_SIGMA
            light = self._sky_image(cond, t)
            self._render_sources(light, *self._source_arrays(spec, cond, wcs), sigma)
            light *= self._flat(inst, spec.instrument_id, spec.filter)
        elif kind == "SKYFLAT":
            assert spec.filter is not None
            light = self._flat(inst, spec.instrument_id, spec.filter) * np.float32(
                cond.flat_level_e
            )
        else:
            light = np.zeros(self.shape, np.float32)
        rn2 = np.float32(self.read_noise_e**2)
        signal = ne.evaluate(
            "light + dark * t", local_dict={"light": light, "dark": inst.dark, "t": np.float32(t)}
        )
        del light
        z = rng.standard_normal(self.shape, dtype=np.float32)
        electrons = ne.evaluate(
            "signal + sqrt(signal + rn2) * z", local_dict={"signal": signal, "rn2": rn2, "z": z}
        )
        del z, signal
        self._cosmic_rays(electrons, rng, t + 30.0)
        adu = ne.evaluate(
            "bias + drift + where(electrons < full_well, electrons, full_well) / gain",
            local_dict={
                "bias": inst.bias,
                "drift": np.float32(cond.bias_drift_adu),
                "electrons": electrons,
                "full_well": np.float32(self.saturation_e),
                "gain": np.float32(self.gain_raw),
            },
        )
        raw = np.rint(adu).astype(np.int32)
        header = self._header(spec, cond, wcs, level=0)
        header["BIASLVL"] = (round(inst.bias_level, 2), "[ADU] Nominal bias level")
        for key in ("NAXIS1", "NAXIS2"):
            header.remove(key, ignore_missing=True)
        return fits.HDUList([fits.PrimaryHDU(), self._image_hdu(raw, header, "SCI")])

    def _source_arrays(
        self, spec: FrameSpec, cond: FrameConditions, wcs: WCS
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sources = self._sources(spec, cond, wcs)
        return sources["x"], sources["y"], sources["flux"]


def _serialise(hdul: fits.HDUList) -> bytes:
    """Write an HDU list to bytes, compressing its image extensions in parallel threads.

    Tile compression (quantisation + RICE) is most of the writing time and releases the GIL, so
    each extension is written on its own (after a throw-away primary) and the pieces are
    concatenated: a FITS file is the sequence of its HDUs, each padded to 2880 bytes.
    """
    from concurrent.futures import ThreadPoolExecutor

    primary = io.BytesIO()
    fits.HDUList([hdul[0]]).writeto(primary)
    head = primary.getvalue()
    empty = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU()]).writeto(empty)
    skip = len(empty.getvalue())

    def one(hdu: fits.hdu.base.ExtensionHDU) -> bytes:
        buffer = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
        return buffer.getvalue()[skip:]

    with ThreadPoolExecutor(max_workers=2) as pool:
        parts = list(pool.map(one, hdul[1:]))
    return head + b"".join(parts)


def _transient_colour(transient: Transient, band: str, when: datetime) -> float:
    c1, c2 = _COLOUR[band]
    lco = {v: k for k, v in _CATALOG_BAND.items()}
    b1, b2 = lco[c1], lco[c2]
    if b1 in transient.peak_mag and b2 in transient.peak_mag:
        return transient.magnitude(b1, when) - transient.magnitude(b2, when)
    return 0.0


def _angular_separation_deg(ra0: float, dec0: float, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    ra0r, dec0r = math.radians(ra0), math.radians(dec0)
    rar, decr = np.radians(ra), np.radians(dec)
    s = (
        np.sin((decr - dec0r) / 2) ** 2
        + math.cos(dec0r) * np.cos(decr) * np.sin((rar - ra0r) / 2) ** 2
    )
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(s, 0, 1))))


def _fit_line(
    y: np.ndarray, sigma: np.ndarray, colour: np.ndarray, *, clip: float = 3.0, iterations: int = 8
) -> tuple[float, float, float, float]:
    """Clipped weighted fit ``y = a + b * colour``; returns a, its error, b, its error."""
    ok = np.isfinite(y) & np.isfinite(sigma) & np.isfinite(colour) & (sigma > 0)
    a = b = 0.0
    cov = np.zeros((2, 2))
    fit_colour = bool(np.any(colour[ok] != 0))
    for _ in range(iterations):
        w = 1.0 / sigma[ok] ** 2
        if fit_colour:
            design = np.column_stack([np.ones(ok.sum()), colour[ok]])
            normal = design.T @ (design * w[:, None])
            cov = np.linalg.inv(normal)
            a, b = cov @ (design.T @ (w * y[ok]))
        else:
            cov = np.array([[1.0 / w.sum(), 0.0], [0.0, 0.0]])
            a, b = float(np.sum(w * y[ok]) / w.sum()), 0.0
        resid = (y - a - b * colour) / sigma
        scale = max(1.4826 * float(np.median(np.abs(resid[ok]))), 1.0)
        new_ok = np.isfinite(resid) & (np.abs(resid) < clip * scale)
        if new_ok.sum() < 3 or np.array_equal(new_ok, ok):
            break
        ok = new_ok
    chi2 = float(np.sum(((y[ok] - a - b * colour[ok]) / sigma[ok]) ** 2) / max(ok.sum() - 2, 1))
    inflate = math.sqrt(max(chi2, 1.0))
    return (
        float(a),
        float(math.sqrt(cov[0, 0]) * inflate),
        float(b),
        float(math.sqrt(cov[1, 1]) * inflate),
    )


def _measure_sources(
    padded: tuple[np.ndarray, np.ndarray, np.ndarray],
    half: int,
    x: np.ndarray,
    y: np.ndarray,
    *,
    sigma: float,
    radii: Sequence[float],
    annulus: tuple[float, float],
) -> dict[str, np.ndarray]:
    """Aperture fluxes, local background and windowed moments of sources at known positions.

    Apertures use an anti-aliased edge (weight ``clip(r + 0.5 - d, 0, 1)``); the background is
    the median of unflagged annulus pixels; errors add the background's uncertainty. ``padded``
    holds the science, error and mask images padded by ``half`` pixels on every side.
    """
    import bottleneck as bn

    n = len(x)
    r_in, r_out = annulus
    pad_sci, pad_err, pad_bpm = padded
    ix = np.rint(x).astype(int)
    iy = np.rint(y).astype(int)
    offsets = np.arange(-half, half + 1)
    yy = iy[:, None, None] + offsets[None, :, None] + half
    xx = ix[:, None, None] + offsets[None, None, :] + half
    stamps = pad_sci[yy, xx]
    var_stamps = pad_err[yy, xx] ** 2
    bstamps = pad_bpm[yy, xx]
    dx = (ix[:, None, None] + offsets[None, None, :] - x[:, None, None]).astype(np.float32)
    dy = (iy[:, None, None] + offsets[None, :, None] - y[:, None, None]).astype(np.float32)
    rr = np.sqrt(dx**2 + dy**2)
    in_annulus = (rr >= r_in) & (rr <= r_out) & (bstamps == 0)
    ann = np.where(in_annulus, stamps, np.nan).reshape(n, -1)
    bkg = bn.nanmedian(ann, axis=1)
    bkg_std = 1.4826 * bn.nanmedian(np.abs(ann - bkg[:, None]), axis=1)
    n_ann = np.maximum(np.sum(np.isfinite(ann), axis=1), 1)
    sub = stamps - bkg[:, None, None]
    good = np.isfinite(sub) & np.isfinite(var_stamps)
    sub = np.where(good, sub, 0.0)
    var_stamps = np.where(good, var_stamps, 0.0)
    fluxes = np.empty((n, len(radii)))
    errors = np.empty((n, len(radii)))
    flags = np.empty((n, len(radii)), np.int64)
    for k, radius in enumerate(radii):
        weight = np.where(good, np.clip(radius + 0.5 - rr, 0.0, 1.0), 0.0)
        area = weight.sum(axis=(1, 2))
        fluxes[:, k] = (weight * sub).sum(axis=(1, 2))
        errors[:, k] = np.sqrt(
            (weight * var_stamps).sum(axis=(1, 2)) + (area * 1.2533 * bkg_std) ** 2 / n_ann
        )
        flags[:, k] = np.bitwise_or.reduce(np.where(weight > 0, bstamps, 0).reshape(n, -1), axis=1)
    window = np.exp(-(rr**2) / (2 * (2 * sigma) ** 2)) * (rr <= 6 * sigma)
    wsub = sub * window
    norm = wsub.sum(axis=(1, 2))
    norm = np.where(norm > 0, norm, np.nan)
    mx = (wsub * dx).sum(axis=(1, 2)) / norm
    my = (wsub * dy).sum(axis=(1, 2)) / norm
    ddx = dx - mx[:, None, None]
    ddy = dy - my[:, None, None]
    x2 = (wsub * ddx**2).sum(axis=(1, 2)) / norm
    y2 = (wsub * ddy**2).sum(axis=(1, 2)) / norm
    xy = (wsub * ddx * ddy).sum(axis=(1, 2)) / norm
    peak = np.max(np.where(rr <= 2 * sigma, sub, -np.inf), axis=(1, 2))
    # Sources too faint for moments get the moments of the PSF seen through the window.
    fallback = (sigma**2 * 4 * sigma**2) / (sigma**2 + 4 * sigma**2)
    bad = ~(np.isfinite(x2) & np.isfinite(y2) & np.isfinite(xy) & (x2 > 0) & (y2 > 0))
    x2 = np.where(bad, fallback, x2)
    y2 = np.where(bad, fallback, y2)
    xy = np.where(bad, 0.0, xy)
    return {
        "flux": fluxes,
        "flux_err": errors,
        "flags": flags,
        "bkg": bkg,
        "mx": np.nan_to_num(mx),
        "my": np.nan_to_num(my),
        "x2": x2,
        "y2": y2,
        "xy": xy,
        "peak": peak,
    }


class SkyReferenceCatalog:
    """The sky's REFCAT2-like catalogue behind ``query(center, radius)``, like a Vizier provider.

    It answers with the columns Vizier gives for ``J/ApJ/867/105/refcat2`` (RA_ICRS, DE_ICRS,
    gmag, e_gmag, ...); :mod:`followup.photometry` normalises them.

    Args:
        sky: The synthetic sky.
    """

    name = "synthetic ATLAS-REFCAT2"

    def __init__(self, sky: SyntheticSky) -> None:
        self.sky = sky

    def query(self, center: SkyCoord, radius: Angle | u.Quantity) -> Table:
        """Stars within ``radius`` of ``center`` (Vizier REFCAT2 columns)."""
        icrs = center.icrs
        return self.sky.reference_catalog(
            float(icrs.ra.deg), float(icrs.dec.deg), float(Angle(radius).deg)
        )
