"""The synthetic sky: deterministic stars and transients, rendered as LCO frames with known truth."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle, SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from sandbox.sky import realism
from sandbox.sky.catalog import ReducedPixels, measure_catalog
from sandbox.sky.files import frame_header, image_hdu, reduced_hdul, serialise
from sandbox.sky.galaxies import GALAXY_COLUMNS, cell_galaxies, glade_table, host_rows
from sandbox.sky.instrument import Instrument, make_flat, make_instrument
from sandbox.sky.model import (
    BANDS,
    BPM_BAD,
    BPM_COSMIC_RAY,
    BPM_SATURATED,
    BRIGHT_LIMIT,
    CATALOG_BAND,
    CELL_ORDER,
    COLOUR,
    COUNT_SLOPE,
    DARK_SKY,
    EXTINCTION,
    FWHM_TO_SIGMA,
    SITE_LONGITUDE,
    SUB_ORDER,
    ZP_ABOVE_ATMOSPHERE,
    FrameConditions,
    FrameTruth,
    angular_separation_deg,
    exposure_key,
    frame_key,
    mid_exposure,
    mix_seed,
    transient_colour,
)
from sandbox.specs import FrameSpec, Transient

__all__ = ["SkyReferenceCatalog", "SyntheticSky"]

ZERO_DAYS = timedelta(0)
DARK_BEFORE = timedelta(days=30)
"""The plain sky shows a transient at its peak brightness from this long before its peak."""


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
        realistic: A sky no kinder than the real one: Sérsic galaxies (the GLADE+-like
            catalogue's and faint field galaxies), a Moffat PSF whose beta changes per frame,
            moonlight from the Moon's real position at mid-exposure, a satellite trail on some
            frames, a minor planet near each transient, hosts from :attr:`Transient.host`,
            transients dark before their peak, and ``CAT`` rows with a nonzero flag written
            with ``fwhm = NaN`` as BANZAI 1.40 does. Off: stars and transients only, Gaussian PSF.
        trail_probability: Chance that a realistic science frame crosses a satellite trail.

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
        realistic: bool = False,
        trail_probability: float = 0.3,
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
        self.realistic = bool(realistic)
        self.trail_probability = float(trail_probability)
        self.minor_planets: tuple[realism.MinorPlanet, ...] = (
            tuple(realism.minor_planets_for(self.seed, self.transients)) if realistic else ()
        )
        self._hosts = host_rows(self.transients) if realistic else None
        self._galaxy_cells: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._cells: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._instruments: dict[str, Instrument] = {}
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

        nside = 2**CELL_ORDER
        lon, lat = healpix_to_lonlat(np.array([cell]), nside, order="nested")
        b = SkyCoord(lon, lat, frame="icrs").galactic.b.deg[0]
        # Stars per deg^2 brighter than r = 21: ~1200 at the galactic pole, rising to ~13000
        # in the plane.
        per_deg2_r21 = self.star_density * (1200.0 + 12000.0 * math.exp(-abs(b) / 12.0))
        cell_area_deg2 = 41252.96 / (12 * nside**2)
        lo = 10 ** (COUNT_SLOPE * (BRIGHT_LIMIT - 21.0))
        hi = 10 ** (COUNT_SLOPE * (self.faint_limit - 21.0))
        rng = np.random.default_rng(mix_seed(self.seed, "stars", cell))
        n = int(rng.poisson(per_deg2_r21 * cell_area_deg2 * (hi - lo)))
        sub_per_cell = 4**SUB_ORDER
        sub = cell * sub_per_cell + rng.integers(0, sub_per_cell, n, dtype=np.int64)
        ra, dec = healpix_to_lonlat(
            sub, 2 ** (CELL_ORDER + SUB_ORDER), dx=rng.random(n), dy=rng.random(n), order="nested"
        )
        r = 21.0 + np.log10(lo + rng.random(n) * (hi - lo)) / COUNT_SLOPE
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

        hp = HEALPix(nside=2**CELL_ORDER, order="nested")
        cells = hp.cone_search_lonlat(ra * u.deg, dec * u.deg, radius_deg * u.deg)
        parts = [self._cell_stars(int(c)) for c in np.sort(cells)]
        cols = list(parts[0]) if parts else []
        merged = {c: np.concatenate([p[c] for p in parts]) for c in cols}
        if not merged:
            return Table(names=["id", "ra", "dec", "gmag", "rmag", "imag", "zmag"])
        sep = angular_separation_deg(ra, dec, merged["ra"], merged["dec"])
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
    # Galaxies (realistic sky)
    # ------------------------------------------------------------------------------------------

    def _cell_galaxies(self, cell: int) -> dict[str, np.ndarray]:
        with self._lock:
            cached = self._galaxy_cells.get(cell)
            if cached is None:
                cached = cell_galaxies(self.seed, cell)
                self._galaxy_cells[cell] = cached
                while len(self._galaxy_cells) > 256:
                    self._galaxy_cells.popitem(last=False)
            else:
                self._galaxy_cells.move_to_end(cell)
            return cached

    def galaxies(self, ra: float, dec: float, radius_deg: float) -> Table:
        """The true galaxies within a cone (none unless the sky is realistic).

        Returns:
            Table with the columns of :data:`sandbox.sky.galaxies.GALAXY_COLUMNS`: ``id``,
            ``ra``, ``dec`` (deg), total AB magnitudes ``gmag`` ... ``zmag``, ``Bmag``,
            ``Kmag``, ``dist``/``e_dist`` (Mpc), ``mstar`` (solMass), Sérsic ``n``, ``r_eff``
            (arcsec), axis ratio ``q``, ``pa`` (deg east of north) and ``in_glade``.
        """
        if not self.realistic:
            return Table(names=GALAXY_COLUMNS, dtype=[str] + [float] * 15 + [bool])
        from astropy_healpix import HEALPix

        hp = HEALPix(nside=2**CELL_ORDER, order="nested")
        cells = hp.cone_search_lonlat(ra * u.deg, dec * u.deg, radius_deg * u.deg)
        parts = [self._cell_galaxies(int(c)) for c in np.sort(cells)]
        assert self._hosts is not None
        parts.append(self._hosts)
        merged = {c: np.concatenate([p[c] for p in parts]) for c in GALAXY_COLUMNS}
        sep = angular_separation_deg(ra, dec, merged["ra"], merged["dec"])
        keep = sep <= radius_deg
        return Table({c: v[keep] for c, v in merged.items()})

    def glade_catalog(self, ra: float, dec: float, radius_deg: float) -> Table:
        """The GLADE+-like catalogue (Vizier ``VII/291/gladep`` columns) of a cone."""
        return glade_table(self.galaxies(ra, dec, radius_deg), ra, dec, radius_deg)

    def minor_planets_at(
        self, ra: float, dec: float, radius_deg: float, when: datetime
    ) -> list[tuple[realism.MinorPlanet, float, float]]:
        """The minor planets within a cone at ``when``, with their (ra, dec) then."""
        found = []
        for planet in self.minor_planets:
            pra, pdec = planet.position(when)
            if angular_separation_deg(ra, dec, np.array([pra]), np.array([pdec]))[0] <= radius_deg:
                found.append((planet, pra, pdec))
        return found

    def trail(self, spec: FrameSpec) -> realism.SatelliteTrail | None:
        """The satellite trail crossing a realistic science frame, if one does."""
        if not self.realistic or spec.configuration_type != "EXPOSE":
            return None
        rng = np.random.default_rng(mix_seed(self.seed, "trail", exposure_key(spec)))
        if rng.random() >= self.trail_probability:
            return None
        cond = self.conditions(spec)
        return realism.satellite_trail(rng, self.shape, cond.zero_point, self.pixel_scale_arcsec)

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
        rng = np.random.default_rng(mix_seed(self.seed, "conditions", exposure_key(spec)))
        band = spec.filter if spec.filter in ZP_ABOVE_ATMOSPHERE else "rp"
        fwhm = float(np.clip(self.fwhm_arcsec * math.exp(rng.normal(0.0, 0.12)), 1.2, 3.5))
        airmass = float(1.0 + rng.gamma(2.0, 0.12))
        transparency = float(-abs(rng.normal(0.0, 0.03)))  # thin cloud only dims
        zp = ZP_ABOVE_ATMOSPHERE[band] - EXTINCTION[band] * airmass + transparency
        sky_mag = DARK_SKY[band] - float(rng.uniform(0.0, 1.2))  # moonlight brightens the sky
        sky_rate = 10 ** (-0.4 * (sky_mag - zp)) * self.pixel_scale_arcsec**2
        gradient = (float(rng.normal(0, 0.01)), float(rng.normal(0, 0.01)))
        offset = (float(rng.normal(0, 3.0)), float(rng.normal(0, 3.0)))
        flat_level = (
            float(rng.uniform(15_000, 35_000)) if spec.configuration_type == "SKYFLAT" else 0.0
        )
        bias_drift = float(rng.normal(0.0, 0.5))
        extra: dict[str, float | None] = {}
        if self.realistic:
            psf = np.random.default_rng(mix_seed(self.seed, "psf", exposure_key(spec)))
            moon = realism.moonlight(
                mid_exposure(spec),
                spec.site_id,
                SITE_LONGITUDE.get(spec.site_id, 0.0),
                spec.ra,
                spec.dec,
                airmass,
            )
            airglow = (DARK_SKY[band] - sky_mag) / 4.0  # the same draw, 0 to 0.3 mag
            sky_mag = DARK_SKY[band] - airglow + moon.delta_mag * realism.MOON_BAND_FACTOR[band]
            sky_rate = 10 ** (-0.4 * (sky_mag - zp)) * self.pixel_scale_arcsec**2
            extra = {
                "psf_beta": float(psf.uniform(2.5, 4.5)),
                "moon_illumination": round(moon.illumination, 4),
                "moon_altitude_deg": round(moon.altitude_deg, 3),
                "moon_distance_deg": round(moon.distance_deg, 3),
            }
        return FrameConditions(
            fwhm_arcsec=fwhm,
            airmass=airmass,
            sky_mag_arcsec2=sky_mag,
            sky_e_per_s=sky_rate,
            sky_gradient=gradient,
            zero_point=zp,
            pointing_offset_arcsec=offset,
            flat_level_e=flat_level,
            bias_drift_adu=bias_drift,
            **extra,  # type: ignore[arg-type]
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
        mid = mid_exposure(spec)
        rows = self._transients_on_frame(spec, cond, wcs, mid)
        depth = None
        if spec.configuration_type == "EXPOSE" and spec.filter in ZP_ABOVE_ATMOSPHERE:
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
        fraction = 1.0 - math.exp(-(radius**2) / (2 * (fwhm_px * FWHM_TO_SIGMA) ** 2))
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
            if mid < transient.peak_time - (ZERO_DAYS if self.realistic else DARK_BEFORE):
                continue  # no light before the event (the model does not rise)
            mag = transient.magnitude(spec.filter, mid)
            colour = transient_colour(transient, spec.filter, mid)
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
        if spec.configuration_type == "EXPOSE" and spec.filter not in ZP_ABOVE_ATMOSPHERE:
            raise ValueError(f"science frames need one of the filters {BANDS}, got {spec.filter!r}")
        if spec.configuration_type == "SKYFLAT" and spec.filter not in ZP_ABOVE_ATMOSPHERE:
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
        return serialise(hdul)

    # -- shared pieces -------------------------------------------------------------------------

    def _instrument(self, instrument_id: str) -> Instrument:
        with self._lock:
            inst = self._instruments.get(instrument_id)
            if inst is None:
                inst = make_instrument(self.seed, instrument_id, self.shape)
                self._instruments[instrument_id] = inst
            return inst

    def _flat(self, inst: Instrument, instrument_id: str, band: str) -> np.ndarray:
        with self._lock:
            flat = inst.flats.get(band)
            if flat is None:
                flat = make_flat(self.seed, inst, instrument_id, band)
                inst.flats[band] = flat
            return flat

    def _sources(self, spec: FrameSpec, cond: FrameConditions, wcs: WCS) -> dict[str, np.ndarray]:
        """Everything on the frame with pixel positions and electrons.

        ``kind``: 0 star, 1 transient, 2 galaxy, 3 minor planet, 4 knot of a satellite trail.
        Galaxies carry their Sérsic ``n``, ``r_eff_px``, axis ratio ``q`` and ``theta`` (rad).
        """
        ny, nx = self.shape
        band = spec.filter
        assert band is not None
        centre = wcs.wcs.crval
        radius = math.hypot(nx, ny) / 2 * self.pixel_scale_arcsec / 3600.0 + 0.01
        t = spec.exposure_time_s
        cb = CATALOG_BAND[band]
        c1, c2 = COLOUR[band]
        parts: list[dict[str, np.ndarray]] = []

        def part(
            kind: int,
            ids: object,
            ra: object,
            dec: object,
            mag: object,
            flux: object,
            **more: object,
        ) -> None:
            ra_a, dec_a = np.asarray(ra, float), np.asarray(dec, float)
            n = len(ra_a)
            if n == 0:
                return
            xy = wcs.all_world2pix(np.column_stack([ra_a, dec_a]), 0)
            nan = np.full(n, np.nan)
            row = {
                "id": np.asarray(ids, str),
                "x": xy[:, 0],
                "y": xy[:, 1],
                "ra": ra_a,
                "dec": dec_a,
                "mag": np.asarray(mag, float),
                "flux": np.asarray(flux, float),
                "kind": np.full(n, kind, np.int8),
                "in_ref": np.zeros(n, bool),
                "ref_mag": nan,
                "ref_err": nan,
                "ref_colour": nan,
                "n": nan,
                "r_eff_px": nan,
                "q": nan,
                "theta": nan,
                "motion_x": np.zeros(n),
                "motion_y": np.zeros(n),
            }
            row.update({k: np.asarray(v) for k, v in more.items()})
            parts.append(row)

        stars = self.stars(float(centre[0]), float(centre[1]), radius)
        if len(stars):
            mag = np.asarray(stars[f"{cb}mag"])
            colour = np.asarray(stars[f"{c1}mag"]) - np.asarray(stars[f"{c2}mag"])
            part(
                0,
                stars["id"],
                stars["ra"],
                stars["dec"],
                mag,
                self._flux_e(mag, colour, band, cond, t),
                in_ref=np.asarray(stars["rmag_cat"]) < self.catalog_depth,
                ref_mag=np.asarray(stars[f"{cb}mag_cat"], float),
                ref_err=np.asarray(stars[f"e_{cb}mag"], float),
                ref_colour=np.asarray(stars[f"{c1}mag_cat"]) - np.asarray(stars[f"{c2}mag_cat"]),
            )
        rows = self._transients_on_frame(spec, cond, wcs, mid_exposure(spec))
        if rows:
            part(1, *zip(*[(r[0], r[1], r[2], r[5], r[6]) for r in rows], strict=True))
        if self.realistic:
            galaxies = self.galaxies(float(centre[0]), float(centre[1]), radius)
            if len(galaxies):
                mag = np.asarray(galaxies[f"{cb}mag"])
                colour = np.asarray(galaxies[f"{c1}mag"]) - np.asarray(galaxies[f"{c2}mag"])
                part(
                    2,
                    galaxies["id"],
                    galaxies["ra"],
                    galaxies["dec"],
                    mag,
                    self._flux_e(mag, colour, band, cond, t),
                    n=np.asarray(galaxies["n"], float),
                    r_eff_px=np.asarray(galaxies["r_eff"], float) / self.pixel_scale_arcsec,
                    q=np.asarray(galaxies["q"], float),
                    theta=np.radians(np.asarray(galaxies["pa"], float)),
                )
            planets = self.minor_planets_at(
                float(centre[0]), float(centre[1]), radius, mid_exposure(spec)
            )
            if planets:
                mags = [p.magnitude(band) for p, _, _ in planets]
                end = spec.date_obs + timedelta(seconds=t)
                ends = [
                    wcs.all_world2pix(np.array([p.position(spec.date_obs), p.position(end)]), 0)
                    for p, _, _ in planets
                ]
                part(
                    3,
                    [p.name for p, _, _ in planets],
                    [a for _, a, _ in planets],
                    [d for _, _, d in planets],
                    mags,
                    [float(self._flux_e(m, 0.0, band, cond, t)) for m in mags],
                    motion_x=np.array([e[1, 0] - e[0, 0] for e in ends]),
                    motion_y=np.array([e[1, 1] - e[0, 1] for e in ends]),
                )
            trail = self.trail(spec)
            if trail is not None:
                knots = realism.trail_points(trail, self.shape, 40.0)
                if len(knots):
                    world = wcs.all_pix2world(knots, 0)
                    part(
                        4,
                        [f"trail-{k}" for k in range(len(knots))],
                        world[:, 0],
                        world[:, 1],
                        np.full(len(knots), np.nan),
                        np.full(
                            len(knots),
                            trail.e_per_px * 4.0 * cond.fwhm_arcsec / self.pixel_scale_arcsec,
                        ),
                    )
        if not parts:
            empty = {k: np.zeros(0) for k in ("x", "y", "ra", "dec", "mag", "flux")}
            return empty | {
                "id": np.zeros(0, str),
                "kind": np.zeros(0, np.int8),
                "in_ref": np.zeros(0, bool),
                **{
                    k: np.zeros(0)
                    for k in (
                        *("ref_mag", "ref_err", "ref_colour", "n", "r_eff_px", "q", "theta"),
                        *("motion_x", "motion_y"),
                    )
                },
            }
        merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        margin = 30
        x, y = merged["x"], merged["y"]
        keep = (x > -margin) & (x < nx + margin) & (y > -margin) & (y < ny + margin)
        # Galaxies are big: keep those whose light reaches the frame.
        reach = np.where(np.isfinite(merged["r_eff_px"]), 8 * merged["r_eff_px"], 0.0)
        keep |= (x > -reach) & (x < nx + reach) & (y > -reach) & (y < ny + reach)
        return {k: v[keep] for k, v in merged.items()}

    def _render_light(
        self, image: np.ndarray, spec: FrameSpec, cond: FrameConditions, sources: dict
    ) -> None:
        """Add every source's light (and a satellite trail) to ``image`` in place."""
        fwhm_px = cond.fwhm_arcsec / self.pixel_scale_arcsec
        point = sources["kind"] != 2
        point &= sources["kind"] != 4
        if cond.psf_beta is None:
            sel = np.nonzero(point)[0]
            self._render_sources(
                image,
                sources["x"][sel],
                sources["y"][sel],
                sources["flux"][sel],
                fwhm_px * FWHM_TO_SIGMA,
            )
            return
        beta = cond.psf_beta
        sel = np.nonzero(point & (sources["kind"] != 3))[0]
        x, y, flux = sources["x"][sel], sources["y"][sel], sources["flux"][sel]
        # Minor planets trail during the exposure: nine points along their path.
        steps = np.linspace(-0.5, 0.5, 9)
        for k in np.nonzero(sources["kind"] == 3)[0]:
            x = np.concatenate([x, sources["x"][k] + steps * sources["motion_x"][k]])
            y = np.concatenate([y, sources["y"][k] + steps * sources["motion_y"][k]])
            flux = np.concatenate([flux, np.full(9, sources["flux"][k] / 9.0)])
        realism.moffat_points(image, x, y, flux, fwhm_px, beta)
        kernel = realism.moffat_kernel(fwhm_px, beta)
        for k in np.nonzero(sources["kind"] == 2)[0]:
            realism.add_sersic(
                image,
                float(sources["x"][k]),
                float(sources["y"][k]),
                float(sources["flux"][k]),
                n=float(sources["n"][k]),
                r_eff_px=float(sources["r_eff_px"][k]),
                q=float(sources["q"][k]),
                theta_rad=float(sources["theta"][k]),
                kernel=kernel,
            )
        trail = self.trail(spec)
        if trail is not None:
            realism.add_trail(image, trail, fwhm_px, beta)

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
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        seconds: float,
        hits: list[tuple[float, float, float]] | None = None,
    ) -> np.ndarray:
        """Add cosmic-ray tracks (electrons) in place; return the mask of hit pixels.

        ``hits``, when given, receives each track's centre (x, y) and electrons.
        """
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
            if hits is not None:
                hits.append((float(xx.mean()), float(yy.mean()), float(deposit.sum())))
        return mask

    def _noise_rng(self, spec: FrameSpec) -> np.random.Generator:
        return np.random.default_rng(mix_seed(self.seed, "noise", frame_key(spec), spec.seed))

    # -- reduced (level 91) --------------------------------------------------------------------

    def _render_reduced(self, spec: FrameSpec) -> fits.HDUList:
        import numexpr as ne

        cond = self.conditions(spec)
        wcs = self.wcs(spec)
        t = spec.exposure_time_s
        inst = self._instrument(spec.instrument_id)
        model = self._sky_image(cond, t)
        sources = self._sources(spec, cond, wcs)
        self._render_light(model, spec, cond, sources)
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
        hits: list[tuple[float, float, float]] | None = [] if self.realistic else None
        cr = self._cosmic_rays(sci, rng, t + 30.0, hits)
        bpm[cr] |= BPM_COSMIC_RAY
        if hits:
            # BANZAI flags cosmic rays without replacing them: the strong ones are detected.
            sources = realism.append_sources(sources, 5, "cosmic-ray", np.array(hits), wcs)
        saturated = sci >= np.float32(self.saturation_e)
        sci[saturated] = np.float32(self.saturation_e)
        bpm[saturated] |= BPM_SATURATED
        err = ne.evaluate("sqrt(where(sci > 0, sci, 0) + rn2)", local_dict={"sci": sci, "rn2": rn2})

        pixels = ReducedPixels(
            sci=sci,
            err=err,
            bpm=bpm,
            fwhm_px=cond.fwhm_arcsec / self.pixel_scale_arcsec,
            exptime=t,
            sky_e=cond.sky_e_per_s * t,
            read_noise_e=self.read_noise_e,
            pixel_scale=self.pixel_scale_arcsec,
            band=spec.filter or "",
            psf_beta=cond.psf_beta,
            nan_flagged_fwhm=self.realistic,
        )
        catalog, l1 = measure_catalog(
            pixels,
            sources,
            wcs,
            lambda name: np.random.default_rng(mix_seed(self.seed, name, frame_key(spec))),
        )
        header = frame_header(self, spec, cond, wcs, level=91)
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
        return reduced_hdul(header, sci, err, bpm, catalog, compress=self.compress)

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
            light = self._sky_image(cond, t)
            self._render_light(light, spec, cond, self._sources(spec, cond, wcs))
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
        header = frame_header(self, spec, cond, wcs, level=0)
        header["BIASLVL"] = (round(inst.bias_level, 2), "[ADU] Nominal bias level")
        for key in ("NAXIS1", "NAXIS2"):
            header.remove(key, ignore_missing=True)
        return fits.HDUList(
            [fits.PrimaryHDU(), image_hdu(raw, header, "SCI", compress=self.compress)]
        )


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
