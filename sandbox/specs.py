"""What the sandbox's LCO stand-in asks the synthetic sky for, and what the sky says is true.

The portal/archive stand-in decides *which* frames exist (one per exposure of a completed request,
plus calibration frames); the synthetic sky decides *what is in them*. This module is the contract
between the two, so either side can be tested alone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox.times import UtcDatetime

__all__ = ["FrameRenderer", "FrameSpec", "HostGalaxy", "Transient"]


class HostGalaxy(BaseModel):
    """The galaxy a transient sits in (the realistic sky renders it and lists it in GLADE+).

    Attributes:
        offset_arcsec: Position of the galaxy's nucleus from the transient, (east, north) in
            arcseconds: (1.0, 0.8) puts the nucleus 1.3 arcsec away.
        r_mag: Total AB magnitude in r (other bands from a typical galaxy colour).
        sersic_n: Sérsic index (1 disc to 4 de Vaucouleurs).
        r_eff_arcsec: Half-light radius along the major axis in arcseconds.
        axis_ratio: Minor over major axis.
        position_angle_deg: Major axis, degrees east of north.
        distance_mpc: Luminosity distance listed in the galaxy catalogue.
        name: Catalogue name; ``<transient>-host`` when empty.
    """

    model_config = ConfigDict(extra="forbid")

    offset_arcsec: tuple[float, float] = (1.0, 0.8)
    r_mag: float = 15.5
    sersic_n: float = Field(default=2.0, ge=0.5, le=6.0)
    r_eff_arcsec: float = Field(default=4.0, gt=0)
    axis_ratio: float = Field(default=0.6, gt=0, le=1)
    position_angle_deg: float = 35.0
    distance_mpc: float = Field(default=40.0, gt=0)
    name: str = ""

    def position(self, transient: Transient) -> tuple[float, float]:
        """ICRS (ra, dec) of the nucleus, in degrees."""
        import math

        east, north = self.offset_arcsec
        dec = transient.dec + north / 3600.0
        ra = transient.ra + east / 3600.0 / max(math.cos(math.radians(transient.dec)), 1e-6)
        return ra % 360.0, max(-90.0, min(90.0, dec))


class Transient(BaseModel):
    """A synthetic transient with a simple light curve, the truth every measurement is checked against.

    The AB magnitude in band ``b`` at time ``t`` is
    ``peak_mag[b] + decline_mag_per_day * max(0, days since peak_time)``
    (rising is ignored: follow-up starts after the peak in this model).

    Attributes:
        name: Name of the transient (for truth look-ups).
        ra: Right ascension, ICRS, degrees.
        dec: Declination, ICRS, degrees.
        peak_mag: AB magnitude at peak per filter code (gp, rp, ip, zs...).
        peak_time: Time of the peak (UTC).
        decline_mag_per_day: Fading rate after the peak in magnitudes per day.
        host: Its host galaxy, rendered and catalogued by the realistic sky; None: no host.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    ra: float = Field(ge=0, lt=360)
    dec: float = Field(ge=-90, le=90)
    peak_mag: dict[str, float]
    peak_time: UtcDatetime
    decline_mag_per_day: float = 0.0
    host: HostGalaxy | None = None

    def magnitude(self, band: str, when: datetime) -> float:
        """True AB magnitude in ``band`` at ``when``.

        Raises:
            KeyError: The transient has no brightness defined in that band.
        """
        days = max(0.0, (when - self.peak_time).total_seconds() / 86400.0)
        return self.peak_mag[band] + self.decline_mag_per_day * days


class FrameSpec(BaseModel):
    """Everything needed to render one frame of an LCO request in the synthetic sky.

    Attributes:
        basename: Archive basename, e.g. ``cpt1m010-fa16-20250101-0042-e91``.
        frame_number: Running frame number of the night (the ``0042`` above).
        reduction_level: 0 for a raw frame, 91 for a BANZAI-like reduced frame.
        configuration_type: EXPOSE for science; BIAS, DARK or SKYFLAT for calibrations.
        ra: Pointing right ascension, ICRS, degrees (ignored for BIAS and DARK).
        dec: Pointing declination, ICRS, degrees.
        filter: Filter code (gp, rp, ip, zs); None for BIAS and DARK.
        exposure_time_s: Exposure time in seconds (0 for BIAS).
        date_obs: Exposure start (UTC).
        site_id: LCO site code.
        telescope_id: e.g. ``1m0a``.
        enclosure_id: e.g. ``doma``.
        instrument_id: e.g. ``fa16``.
        instrument_type: e.g. ``1M0-SCICAM-SINISTRO``.
        request_id: LCO request id (REQNUM), None for calibrations.
        group_id: LCO request group id (TRACKNUM).
        group_name: Request group name (GROUPID).
        proposal_id: Proposal id (PROPID).
        target_name: OBJECT keyword.
        seed: Seed of the exposure's random draws (with the sky's own seed): the same spec always
            gives the same pixels.
        exposure_id: Stable identity of the exposure, shared by its raw and reduced frames (the
            archive stand-in derives it from the request's content and the exposure's place in
            it). When given, the sky draws the frame's conditions and noise from it instead of
            from the basename, so a run replayed with other frame numbers and dates renders the
            same pixels; None keys them on the basename.
    """

    model_config = ConfigDict(extra="forbid")

    basename: str
    frame_number: int = Field(ge=0)
    reduction_level: Literal[0, 91] = 91
    configuration_type: Literal["EXPOSE", "BIAS", "DARK", "SKYFLAT"] = "EXPOSE"
    ra: float = Field(default=0.0, ge=0, lt=360)
    dec: float = Field(default=0.0, ge=-90, le=90)
    filter: str | None = None
    exposure_time_s: float = Field(default=0.0, ge=0)
    date_obs: UtcDatetime
    site_id: str = "cpt"
    telescope_id: str = "1m0a"
    enclosure_id: str = "doma"
    instrument_id: str = "fa16"
    instrument_type: str = "1M0-SCICAM-SINISTRO"
    request_id: int | None = None
    group_id: int | None = None
    group_name: str | None = None
    proposal_id: str = "SANDBOX-001"
    target_name: str = ""
    seed: int = 0
    exposure_id: str | None = None


FrameRenderer = Callable[[FrameSpec], bytes]
"""Renders a frame spec to the bytes of a FITS file (what the archive serves at the frame's url)."""
