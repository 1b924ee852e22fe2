"""The telescope and camera that took a measurement, named as HERMES, TNS and GCN readers name them.

A measurement carries the frame's ``INSTRUME`` (a camera id such as ``fa14``, ``ep04``, ``sq34``,
``en06``) and ``TELID`` (``1m0a``); :func:`equipment_of` turns them, or the strategy's instrument
type when the header says nothing, into the telescope aperture, the camera's name, the name HERMES
forwards to TNS and the TNS instrument id.

TNS instrument ids and names are those of TNS's ``api/get/values`` as SkyPortal keeps them
(skyportal/skyportal ``tools/populate_tns_ids/tns_instruments.json``): 208 "LCO1m - Sinistro",
108 "FTN - FLOYDS-N", 125 "FTS - FLOYDS-S". That list has no MuSCAT3, MuSCAT4 or QHY600 entry, so
their points go to TNS as 0 "Other - Other", with the camera named in the comments, unless
:class:`~followup.reporting.at_report.TnsReporter` is given their ids.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from followup.models import Measurement

__all__ = [
    "CAMERAS",
    "OTHER_INSTRUMENT_ID",
    "Camera",
    "Equipment",
    "equipment_of",
]

OTHER_INSTRUMENT_ID = "0"
"""TNS's ``instruments`` id of "Other - Other"."""


@dataclass(frozen=True)
class Camera:
    """One LCO camera family.

    Attributes:
        name: The camera's name (``Sinistro``, ``MuSCAT3``...).
        instrument_type: The portal's instrument type it serves.
        aperture: Telescope aperture as readers write it (``1-m``, ``2-m``, ``0.4-m``).
        tns_name: TNS's ``Telescope - Instrument`` name, when TNS lists the camera.
        tns_instrument_id: TNS's instrument id, when TNS lists the camera.
    """

    name: str
    instrument_type: str
    aperture: str
    tns_name: str | None = None
    tns_instrument_id: str | None = None


CAMERAS: Mapping[str, Camera] = {
    camera.name: camera
    for camera in (
        Camera("Sinistro", "1M0-SCICAM-SINISTRO", "1-m", "LCO1m - Sinistro", "208"),
        Camera("MuSCAT3", "2M0-SCICAM-MUSCAT", "2-m"),
        Camera("MuSCAT4", "2M0-SCICAM-MUSCAT", "2-m"),
        Camera("QHY600", "0M4-SCICAM-QHY600", "0.4-m"),
        Camera("FLOYDS-N", "2M0-FLOYDS-SCICAM", "2-m", "FTN - FLOYDS-N", "108"),
        Camera("FLOYDS-S", "2M0-FLOYDS-SCICAM", "2-m", "FTS - FLOYDS-S", "125"),
    )
}
"""LCO's science cameras by name."""

# Camera ids (INSTRUME) of each family: fa Sinistro; ep02-05 MuSCAT3 at FTN (ogg) and ep06-09
# MuSCAT4 at FTS (coj); sq QHY600; en06 FLOYDS at FTN, en12 at FTS.
_CAMERA_IDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"fa\d+"), "Sinistro"),
    (re.compile(r"ep0[2-5]"), "MuSCAT3"),
    (re.compile(r"ep(0[6-9]|1\d)"), "MuSCAT4"),
    (re.compile(r"sq\d+"), "QHY600"),
    (re.compile(r"en06"), "FLOYDS-N"),
    (re.compile(r"en\d+"), "FLOYDS-S"),
)
_BY_TYPE = {"2M0-SCICAM-MUSCAT": "MuSCAT3", "2M0-FLOYDS-SCICAM": "FLOYDS-N"}
_APERTURES = {"0m4": "0.4-m", "1m0": "1-m", "2m0": "2-m"}


@dataclass(frozen=True)
class Equipment:
    """What took one measurement, in the names each reader expects.

    Attributes:
        telescope: ``LCO 1-m``, ``LCO 2-m`` or ``LCO 0.4-m`` (HERMES ``telescope``, Circulars).
        camera: The camera's name, or the header's id when the camera is not LCO's.
        hermes_instrument: HERMES ``instrument``: TNS's name when TNS lists the camera (HERMES
            checks it against TNS's values before forwarding), else the camera's name.
        tns_instrument_id: TNS instrument id (``"0"``, Other, when TNS lists none).
    """

    telescope: str
    camera: str
    hermes_instrument: str
    tns_instrument_id: str

    @property
    def label(self) -> str:
        """``LCO 1-m Sinistro``: telescope and camera, for text."""
        return f"{self.telescope} {self.camera}"


def _camera(measurement: Measurement, instrument_type: str | None) -> Camera | None:
    camera_id = (measurement.instrument or "").strip().lower()
    for pattern, name in _CAMERA_IDS:
        if pattern.fullmatch(camera_id):
            return CAMERAS[name]
    if instrument_type:
        code = instrument_type.upper()
        name = _BY_TYPE.get(code) or next(
            (c.name for c in CAMERAS.values() if c.instrument_type == code), None
        )
        return CAMERAS[name] if name else None
    return None


def equipment_of(
    measurement: Measurement,
    *,
    instrument_type: str | None = None,
    tns_instrument_ids: Mapping[str, str | int] | None = None,
) -> Equipment:
    """The telescope and camera of a measurement, from its frame header, else the strategy.

    Args:
        measurement: The measurement (``instrument`` is the frame's ``INSTRUME``, ``telescope``
            its ``TELID`` or ``TELESCOP``).
        instrument_type: The strategy's instrument type, used when the header names no camera.
        tns_instrument_ids: TNS ids by camera name, overriding and completing :data:`CAMERAS`.

    Returns:
        The equipment; a camera that is not LCO's keeps its header id and TNS id 0 (Other).
    """
    camera = _camera(measurement, instrument_type)
    overrides = {k: str(v) for k, v in (tns_instrument_ids or {}).items()}
    telescope_id = (measurement.telescope or "").strip().lower()
    aperture = _APERTURES.get(telescope_id[:3]) or (camera.aperture if camera else None)
    telescope = f"LCO {aperture}" if aperture else "LCO"
    if camera is None:
        name = measurement.instrument or "unknown camera"
        return Equipment(telescope, name, name, overrides.get(name, OTHER_INSTRUMENT_ID))
    return Equipment(
        telescope=telescope,
        camera=camera.name,
        hermes_instrument=camera.tns_name or camera.name,
        tns_instrument_id=overrides.get(
            camera.name, camera.tns_instrument_id or OTHER_INSTRUMENT_ID
        ),
    )
