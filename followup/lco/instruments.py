"""The instrument table: what the payload builder knows about each LCO instrument type.

Payloads are built from this data by one function (:func:`followup.lco.payloads.build_request_group`),
not by a class per instrument.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from followup.models import ObservingStrategy

__all__ = [
    "INSTRUMENTS",
    "InstrumentSpec",
    "calibration_configs",
    "estimate_request_duration_s",
    "instrument_configs",
    "spec_for",
]


@dataclass(frozen=True)
class InstrumentSpec:
    """What the payload builder needs to know about one LCO instrument type.

    Attributes:
        instrument_type: Portal instrument type code.
        telescope_class: ``0m4``, ``1m0`` or ``2m0`` (the request's ``location``).
        readout_mode: Default readout ``mode`` of each instrument config.
        element: Optical element kind strategies choose (``filter`` or ``slit``); for MuSCAT,
            ``channels`` (all four channels expose at once).
        elements: Schedulable element codes (filters, slits, or MuSCAT channel filters).
        configuration_type: Configuration type of a science exposure.
        acquisition_mode: Acquisition mode.
        guiding_mode: Guiding mode (``optional`` is always true).
        rotator_mode: Rotator mode for spectrographs, else None.
        readout_s: Readout overhead per exposure in seconds (for estimates only).
        front_padding_s: Overhead per request in seconds (slew, settle; estimates only).
        element_change_s: Overhead per instrument config in seconds (estimates only).
        max_exposure_s: Longest single exposure this project asks for, in seconds: the bound an
            edited approval form is held to. It is the project's sanity limit (an hour, longer
            than any follow-up exposure), not a portal rule; the portal's own limits are not
            in the reference.
        channel_filters: MuSCAT's channel letter -> filter code.
        guiding_optional: Whether a science configuration may run unguided. The portal refuses
            optional guiding on a spectrograph's science types ("Guiding cannot be optional on
            spectrograph instruments for types that are not ARC or LAMP_FLAT",
            observation-portal ``requestgroups/serializers.py``).
        calibrations: Calibration configuration types taken before the science configuration,
            in order, and after it in reverse order, at the same pointing and slit (FLOYDS:
            lamp flat and arc on each side, as the portal's request form adds them).
        calibration_exposure_s: Exposure time of each calibration type by slit (``"*"``: any
            slit), in seconds: the portal form's defaults (observation-portal
            ``static/js/utils.js``: lamp flats 70/50/40/15 s for the 1.2/1.6/2.0/6.0" slits,
            arcs 60 s).
    """

    instrument_type: str
    telescope_class: str
    readout_mode: str
    element: str
    elements: tuple[str, ...]
    configuration_type: str = "EXPOSE"
    acquisition_mode: str = "OFF"
    guiding_mode: str = "ON"
    rotator_mode: str | None = None
    readout_s: float = 0.0
    front_padding_s: float = 90.0
    element_change_s: float = 2.0
    max_exposure_s: float = 3600.0
    channel_filters: Mapping[str, str] = field(default_factory=dict)
    guiding_optional: bool = True
    calibrations: tuple[str, ...] = ()
    calibration_exposure_s: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def calibration_time_s(self, kind: str, element: str) -> float:
        """Exposure time of one calibration type with one slit, in seconds.

        Raises:
            ValueError: The instrument takes no such calibration.
        """
        times = self.calibration_exposure_s.get(kind)
        if times is None:
            raise ValueError(f"{self.instrument_type} takes no {kind} calibration")
        return float(times.get(element, times["*"]))


INSTRUMENTS: dict[str, InstrumentSpec] = {
    spec.instrument_type: spec
    for spec in (
        InstrumentSpec(
            instrument_type="0M4-SCICAM-QHY600",
            telescope_class="0m4",
            readout_mode="full_frame",
            element="filter",
            elements=("B", "V", "up", "gp", "rp", "ip", "zs", "w", "OIII", "SII", "H-Alpha"),
            readout_s=6.0,
        ),
        InstrumentSpec(
            instrument_type="1M0-SCICAM-SINISTRO",
            telescope_class="1m0",
            readout_mode="full_frame",
            element="filter",
            elements=("U", "B", "V", "R", "I", "up", "gp", "rp", "ip", "zs", "Y", "w"),
            readout_s=28.0,
            front_padding_s=120.0,
        ),
        InstrumentSpec(
            instrument_type="2M0-SCICAM-MUSCAT",
            telescope_class="2m0",
            readout_mode="MUSCAT_SLOW",
            element="channels",
            elements=("gp", "rp", "ip", "zs"),
            readout_s=10.0,
            front_padding_s=120.0,
            channel_filters={"g": "gp", "r": "rp", "i": "ip", "z": "zs"},
        ),
        InstrumentSpec(
            instrument_type="2M0-FLOYDS-SCICAM",
            telescope_class="2m0",
            readout_mode="default",
            element="slit",
            elements=("slit_1.2as", "slit_1.6as", "slit_2.0as", "slit_6.0as"),
            configuration_type="SPECTRUM",
            acquisition_mode="WCS",
            rotator_mode="VFLOAT",
            readout_s=25.0,
            front_padding_s=300.0,
            guiding_optional=False,
            calibrations=("LAMP_FLAT", "ARC"),
            calibration_exposure_s={
                "LAMP_FLAT": {
                    "slit_1.2as": 70.0,
                    "slit_1.6as": 50.0,
                    "slit_2.0as": 40.0,
                    "slit_6.0as": 15.0,
                    "*": 60.0,
                },
                "ARC": {"*": 60.0},
            },
        ),
    )
}
"""The instrument types the builder knows (from the live configdb, apis.md 1.7)."""


def spec_for(instrument_type: str) -> InstrumentSpec:
    """The table entry of an instrument type (case-insensitive).

    Raises:
        ValueError: The type is not in :data:`INSTRUMENTS`.
    """
    try:
        return INSTRUMENTS[instrument_type.upper()]
    except KeyError:
        raise ValueError(
            f"unknown instrument type {instrument_type!r}; expected one of {sorted(INSTRUMENTS)}"
        ) from None


def _exposure_time(strategy: ObservingStrategy, element: str) -> float:
    return float(strategy.exposure_time_per_filter_s.get(element, strategy.exposure_time_s))


def instrument_configs(strategy: ObservingStrategy, spec: InstrumentSpec) -> list[dict[str, Any]]:
    """The portal's ``instrument_configs`` of one configuration of a strategy.

    Imagers get one config per filter (``exposure_time_per_filter_s`` overriding
    ``exposure_time_s``); MuSCAT gets one config whose ``extra_params`` carry the per-channel
    times; spectrographs carry their rotator mode.

    Raises:
        ValueError: A filter (or slit) the instrument does not have.
    """
    unknown = [name for name in strategy.filters if name not in spec.elements]
    if unknown:
        raise ValueError(
            f"{spec.instrument_type} has no {spec.element} {unknown}; "
            f"expected some of {list(spec.elements)}"
        )
    if spec.element == "channels":
        # MuSCAT exposes g, r, i and z at once: one instrument config, per-channel times.
        times = {
            channel: _exposure_time(strategy, code)
            for channel, code in spec.channel_filters.items()
        }
        synchronous = len(set(times.values())) == 1
        extra = {
            "exposure_mode": "SYNCHRONOUS" if synchronous else "ASYNCHRONOUS",
            **{f"exposure_time_{channel}": value for channel, value in times.items()},
        }
        config: dict[str, Any] = {
            "exposure_time": max(times.values()),
            "exposure_count": strategy.exposure_count,
            "mode": spec.readout_mode,
            "optical_elements": {
                f"narrowband_{channel}_position": "out" for channel in spec.channel_filters
            },
            "extra_params": extra,
        }
        return [config]
    configs = []
    for element in strategy.filters:
        config = {
            "exposure_time": _exposure_time(strategy, element),
            "exposure_count": strategy.exposure_count,
            "mode": spec.readout_mode,
            "optical_elements": {spec.element: element},
            "extra_params": {},
        }
        if spec.rotator_mode:
            config["rotator_mode"] = spec.rotator_mode
        configs.append(config)
    return configs


def estimate_request_duration_s(strategy: ObservingStrategy) -> float:
    """Rough duration of one epoch's request in seconds, from the instrument table.

    Exposure time plus readout per exposure, a small overhead per filter, the request's front
    padding, and the calibrations taken beside a spectrum (:func:`calibration_configs`). The portal's validate answer is authoritative; this is for planning and for
    approval rules before anything is sent.

    Raises:
        ValueError: Unknown instrument type or filter.
    """
    spec = spec_for(strategy.instrument_type)
    total = spec.front_padding_s
    configs = instrument_configs(strategy, spec)
    for kind in spec.calibrations:
        configs += 2 * calibration_configs(strategy, spec, kind)
    for config in configs:
        total += config["exposure_count"] * (config["exposure_time"] + spec.readout_s)
        total += spec.element_change_s
    return total


def calibration_configs(
    strategy: ObservingStrategy, spec: InstrumentSpec, kind: str
) -> list[dict[str, Any]]:
    """The ``instrument_configs`` of one calibration configuration beside a spectrum.

    One exposure per slit of the strategy, with the same slit and rotator mode as the spectrum
    (a calibration through another slit would not calibrate it) and the instrument's exposure
    time for that calibration and slit.

    Raises:
        ValueError: A slit the instrument does not have, or a calibration it does not take.
    """
    configs = instrument_configs(strategy, spec)
    for config in configs:
        element = config["optical_elements"][spec.element]
        config["exposure_time"] = spec.calibration_time_s(kind, element)
        config["exposure_count"] = 1
    return configs
