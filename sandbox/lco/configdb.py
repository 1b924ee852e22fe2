"""The portal's configuration database as data: instrument types and the network's telescopes.

What ``GET /api/instruments/`` says, what request validation checks against, and where a
completed request is observed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

__all__ = [
    "CONFIGDB",
    "CONFIGURATION_TYPES",
    "SCIENCE_TYPES",
    "SEMESTERS",
    "TELESCOPES",
    "InstrumentType",
    "Semester",
    "Telescope",
    "pick_telescope",
    "represent_instrument",
    "semester",
    "semester_in",
]


FILTER_NAMES = {
    "U": "Bessell-U",
    "B": "Bessell-B",
    "V": "Bessell-V",
    "R": "Bessell-R",
    "I": "Bessell-I",
    "up": "SDSS-up",
    "gp": "SDSS-gp",
    "rp": "SDSS-rp",
    "ip": "SDSS-ip",
    "zs": "PanSTARRS-Z",
    "Y": "PanSTARRS-Y",
    "w": "PanSTARRS-w",
    "OIII": "OIII",
    "SII": "SII",
    "H-Alpha": "H-Alpha",
    "Astrodon-Exo": "Astrodon-Exo",
    "opaque": "Opaque",
    "CN": "CN",
    "400um-Pinhole": "400um Pinhole",
    "150um-Pinhole": "150um Pinhole",
}

_IMAGER_TYPES = {
    "EXPOSE": True,
    "REPEAT_EXPOSE": True,
    "STANDARD": True,
    "AUTO_FOCUS": False,
    "BIAS": False,
    "DARK": False,
    "SKY_FLAT": False,
    "SCRIPT": False,
    "ENGINEERING": False,
}


@dataclass(frozen=True)
class InstrumentType:
    """One instrument type of configdb: its elements, modes, overheads and camera."""

    code: str
    telescope_class: str
    name: str
    kind: str  # IMAGE or SPECTRA
    optical_elements: Mapping[
        str, tuple[tuple[str, bool], ...]
    ]  # plural kind -> (code, schedulable)
    readout_modes: Mapping[str, float]  # code -> overhead per exposure, seconds
    default_readout: str
    configuration_types: Mapping[str, bool]  # code -> schedulable
    default_configuration_type: str
    guiding_modes: tuple[str, ...] = ("ON", "OFF")
    default_guiding: str = "ON"
    acquisition_modes: tuple[str, ...] = ("OFF",)
    default_acquisition: str = "OFF"
    rotator_modes: tuple[str, ...] = ()
    default_rotator: str = ""
    exposure_modes: tuple[str, ...] = ()
    default_exposure_mode: str = ""
    acceptability_threshold: float = 90.0
    pixel_scale: float = 0.389
    pixels: tuple[int, int] = (4096, 4096)


def _filters(*codes: str, unschedulable: Iterable[str] = ()) -> tuple[tuple[str, bool], ...]:
    off = set(unschedulable)
    return tuple((code, code not in off) for code in codes)


CONFIGDB: dict[str, InstrumentType] = {
    item.code: item
    for item in (
        InstrumentType(
            code="0M4-SCICAM-QHY600",
            telescope_class="0m4",
            name="0.4 meter QHY600",
            kind="IMAGE",
            optical_elements={
                "filters": _filters(
                    "B",
                    "V",
                    "up",
                    "gp",
                    "rp",
                    "ip",
                    "zs",
                    "w",
                    "OIII",
                    "SII",
                    "H-Alpha",
                    "Astrodon-Exo",
                    "opaque",
                    unschedulable=("opaque",),
                )
            },
            readout_modes={"full_frame": 6.0, "central30x30": 1.0},
            default_readout="full_frame",
            configuration_types=_IMAGER_TYPES,
            default_configuration_type="EXPOSE",
            pixel_scale=0.731,
            pixels=(9576, 6388),
        ),
        InstrumentType(
            code="1M0-SCICAM-SINISTRO",
            telescope_class="1m0",
            name="1.0 meter Sinistro",
            kind="IMAGE",
            optical_elements={
                "filters": _filters(
                    "U",
                    "B",
                    "V",
                    "R",
                    "I",
                    "up",
                    "gp",
                    "rp",
                    "ip",
                    "zs",
                    "Y",
                    "w",
                    "CN",
                    "400um-Pinhole",
                    "150um-Pinhole",
                    unschedulable=("CN", "400um-Pinhole", "150um-Pinhole"),
                )
            },
            readout_modes={"full_frame": 28.0, "central_2k_2x2": 12.0},
            default_readout="full_frame",
            configuration_types=_IMAGER_TYPES,
            default_configuration_type="EXPOSE",
        ),
        InstrumentType(
            code="2M0-SCICAM-MUSCAT",
            telescope_class="2m0",
            name="2.0 meter MuSCAT",
            kind="IMAGE",
            optical_elements={
                f"narrowband_{channel}_positions": _filters("in", "out")
                for channel in ("g", "r", "i", "z")
            },
            readout_modes={"MUSCAT_SLOW": 10.0, "MUSCAT_FAST": 5.0},
            default_readout="MUSCAT_SLOW",
            configuration_types=_IMAGER_TYPES,
            default_configuration_type="EXPOSE",
            exposure_modes=("SYNCHRONOUS", "ASYNCHRONOUS"),
            default_exposure_mode="SYNCHRONOUS",
            pixel_scale=0.27,
            pixels=(2048, 2048),
        ),
        InstrumentType(
            code="2M0-FLOYDS-SCICAM",
            telescope_class="2m0",
            name="2.0 meter FLOYDS",
            kind="SPECTRA",
            optical_elements={
                "slits": _filters("slit_1.2as", "slit_1.6as", "slit_2.0as", "slit_6.0as")
            },
            readout_modes={"default": 25.0},
            default_readout="default",
            configuration_types={
                "SPECTRUM": True,
                "REPEAT_SPECTRUM": True,
                "ARC": True,
                "LAMP_FLAT": True,
                "ENGINEERING": False,
                "SCRIPT": False,
            },
            default_configuration_type="SPECTRUM",
            acquisition_modes=("WCS", "BRIGHTEST"),
            default_acquisition="WCS",
            rotator_modes=("VFLOAT", "SKY"),
            default_rotator="VFLOAT",
            acceptability_threshold=100.0,
            pixel_scale=0.337,
            pixels=(2048, 512),
        ),
    )
}

CONFIGURATION_TYPES = (
    "EXPOSE",
    "REPEAT_EXPOSE",
    "SKY_FLAT",
    "SKY",
    "STANDARD",
    "ARC",
    "LAMP_FLAT",
    "SPECTRUM",
    "REPEAT_SPECTRUM",
    "AUTO_FOCUS",
    "TRIPLE",
    "NRES_TEST",
    "NRES_SPECTRUM",
    "REPEAT_NRES_SPECTRUM",
    "NRES_EXPOSE",
    "NRES_DARK",
    "NRES_BIAS",
    "ENGINEERING",
    "SCRIPT",
    "BIAS",
    "DARK",
)
TARGET_TYPES = ("ICRS", "ORBITAL_ELEMENTS", "HOUR_ANGLE", "SATELLITE")
TELESCOPE_CLASSES = ("0m4", "1m0", "2m0")
FRONT_PADDING_S = {"0m4": 90.0, "1m0": 120.0, "2m0": 180.0}
CONFIG_FRONT_PADDING_S = 16.0
ELEMENT_CHANGE_S = 2.0
ACQUIRE_OVERHEAD_S = 90.0
PROPOSAL_TIME_OVERUSE_ALLOWANCE = 1.1


class Telescope(NamedTuple):
    """One telescope of the network and the camera(s) on it.

    Attributes:
        site: Site code (``cpt``).
        enclosure: Enclosure code (``doma``).
        telescope: Telescope code (``1m0a``).
        code: The telescope's part of a basename (``1m010`` in ``cpt1m010-fa14-...``).
        cameras: Camera ids; MuSCAT's name its g, r, i and z channels.
        longitude: Degrees east (DAY-OBS starts at local noon).
        latitude: Degrees north.
        horizon_deg: Lowest altitude the telescope points at.
        ha_limit_neg_h: Most negative hour angle it reaches, in hours.
        ha_limit_pos_h: Largest hour angle it reaches, in hours.

    Positions, horizons and hour-angle limits are configdb's (LCOGT/banzai
    ``banzai/tests/data/configdb_example.json``, a dump of LCO's configdb).
    """

    site: str
    enclosure: str
    telescope: str
    code: str
    cameras: tuple[str, ...]
    longitude: float
    latitude: float = 0.0
    horizon_deg: float = 15.0
    ha_limit_neg_h: float = -4.6
    ha_limit_pos_h: float = 4.6


_HA_0M4 = (-4.533333, 4.4666667)
_HA_2M0 = (-12.0, 12.0)
TELESCOPES: dict[str, tuple[Telescope, ...]] = {
    "1m0": (
        Telescope("cpt", "doma", "1m0a", "1m010", ("fa14",), 20.81, -32.3806),
        Telescope("lsc", "domb", "1m0a", "1m004", ("fa15",), -70.80, -30.1673),
        Telescope("coj", "doma", "1m0a", "1m011", ("fa12",), 149.07, -31.2729),
        Telescope("elp", "doma", "1m0a", "1m008", ("fa05",), -104.02, 30.6799),
        Telescope("tfn", "doma", "1m0a", "1m001", ("fa20",), -16.51, 28.3003),
    ),
    "0m4": (
        Telescope("ogg", "clma", "0m4b", "0m414", ("sq34",), -156.26, 20.7069, 25.0, *_HA_0M4),
        Telescope("coj", "clma", "0m4a", "0m403", ("sq35",), 149.07, -31.2729, 25.0, *_HA_0M4),
        Telescope("tfn", "aqwa", "0m4a", "0m410", ("sq31",), -16.51, 28.3003, 15.0, *_HA_0M4),
    ),
    "2m0": (
        Telescope(
            "ogg",
            "clma",
            "2m0a",
            "2m002",
            ("ep02", "ep03", "ep04", "ep05"),
            -156.26,
            20.7069,
            25.0,
            *_HA_2M0,
        ),
        Telescope(
            "coj",
            "clma",
            "2m0a",
            "2m001",
            ("ep06", "ep07", "ep08", "ep09"),
            149.07,
            -31.2729,
            25.0,
            *_HA_2M0,
        ),
    ),
}
SITE_CODES = ("coj", "cpt", "tfn", "lsc", "elp", "ogg")
SCIENCE_TYPES = ("EXPOSE", "REPEAT_EXPOSE", "STANDARD")
MUSCAT_CHANNELS = (("g", "gp"), ("r", "rp"), ("i", "ip"), ("z", "zs"))


class Semester(NamedTuple):
    """A semester as ``GET /api/semesters/`` lists it (observation-portal ``proposals/models.py``)."""

    id: str
    start: datetime
    end: datetime


def _semesters(first_year: int, last_year: int) -> tuple[Semester, ...]:
    """LCO's semesters: A from 1 February, B from 1 August, each until the next one starts."""
    terms = []
    for year in range(first_year, last_year + 1):
        feb, aug = datetime(year, 2, 1, tzinfo=UTC), datetime(year, 8, 1, tzinfo=UTC)
        terms.append(Semester(f"{year}A", feb, aug))
        terms.append(Semester(f"{year}B", aug, datetime(year + 1, 2, 1, tzinfo=UTC)))
    return tuple(terms)


SEMESTERS: tuple[Semester, ...] = _semesters(2014, 2045)
"""The semesters the portal stand-in defines."""


def semester(when: datetime) -> str:
    """LCO semester code of an instant: A is February to July, B is August to January."""
    if when.month >= 8:
        return f"{when.year}B"
    if when.month == 1:
        return f"{when.year - 1}B"
    return f"{when.year}A"


def semester_in(start: datetime, end: datetime) -> str | None:
    """The semester a window fits in, or None (the portal's ``duration_utils.get_semester_in``)."""
    for term in SEMESTERS:
        if start >= term.start and end <= term.end:
            return term.id
    return None


def pick_telescope(location: Mapping[str, Any], draw: int) -> Telescope | None:
    """The telescope a request's location allows, chosen by ``draw`` (None when none fits)."""
    options = TELESCOPES.get(location.get("telescope_class", ""), ())
    if location.get("site"):
        options = tuple(option for option in options if option.site == location["site"])
    if not options:
        return None
    return options[draw % len(options)]


def represent_instrument(item: InstrumentType) -> dict[str, Any]:
    """The configdb view of one instrument type, as ``GET /api/instruments/`` lists it."""

    def modes(
        kind: str, codes: Iterable[str], default: str, overheads: Mapping[str, float] | None = None
    ) -> dict[str, Any]:
        return {
            "type": kind,
            "modes": [
                {
                    "name": code,
                    "overhead": (overheads or {}).get(code, 0.0),
                    "code": code,
                    "schedulable": True,
                    "validation_schema": {},
                }
                for code in codes
            ],
            "default": default,
        }

    mode_groups = {
        "readout": modes("readout", item.readout_modes, item.default_readout, item.readout_modes),
        "guiding": modes("guiding", item.guiding_modes, item.default_guiding),
        "acquisition": modes("acquisition", item.acquisition_modes, item.default_acquisition),
    }
    if item.rotator_modes:
        mode_groups["rotator"] = modes("rotator", item.rotator_modes, item.default_rotator)
    if item.exposure_modes:
        mode_groups["exposure"] = modes("exposure", item.exposure_modes, item.default_exposure_mode)
    return {
        "type": item.kind,
        "class": item.telescope_class,
        "name": item.name,
        "optical_elements": {
            plural: [
                {
                    "name": FILTER_NAMES.get(code, code),
                    "code": code,
                    "schedulable": schedulable,
                    "default": index == 0,
                }
                for index, (code, schedulable) in enumerate(elements)
            ]
            for plural, elements in item.optical_elements.items()
        },
        "modes": mode_groups,
        "default_acceptability_threshold": item.acceptability_threshold,
        "default_configuration_type": item.default_configuration_type,
        "configuration_types": {
            code: {"name": code, "code": code, "schedulable": schedulable}
            for code, schedulable in item.configuration_types.items()
        },
        "camera_type": {
            "science_field_of_view": item.pixel_scale * item.pixels[0] / 60.0,
            "autoguider_field_of_view": item.pixel_scale * item.pixels[0] / 60.0,
            "pixel_scale": item.pixel_scale,
            "pixels_x": item.pixels[0],
            "pixels_y": item.pixels[1],
            "orientation": 0.0,
        },
    }
