"""What a completed request observed: its exposures, their stable identities, seeds and names.

Identity and seeds. Every exposure has a key made of stable ids only: a digest of the request's
content (location, instrument types, targets, optical elements, exposure times and counts; never
its wall-clock-derived ids or windows), the visit (how many earlier requests of this sandbox had
the same content: epochs of a cadence), and the exposure's place in the request (configuration,
instrument configuration, exposure and channel). The frame's seed is derived from the configured
sandbox seed and that key, so the same request served by two sandboxes with the same seed gets the
same telescope, conditions and noise, whatever ids, times and frame numbers the runs gave it.

Names. A basename names one exposure as the archive's do:
``{site}{telescope code}-{camera}-{DAY-OBS}-{frame number:04d}-{type letter}{level:02d}``, e.g.
``cpt1m010-fa14-20261205-0105-e91``. DAY-OBS is the date at the local noon that began the night of
the exposure's start. Science frame numbers come from the start time (100 + the 8.7-second step of
the night it falls in, 100 to 9999), so a restarted sandbox, or another run, never gives a later
exposure an earlier one's number; calibrations take the fixed slots 1 to 99 of their night. The
raw (``e00``) and reduced (``e91``) products of an exposure share its frame number.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sandbox.lco.configdb import (
    CONFIGDB,
    FILTER_NAMES,
    MUSCAT_CHANNELS,
    SCIENCE_TYPES,
    Telescope,
)

__all__ = [
    "CALIBRATIONS",
    "LAST_FRAME_NUMBER",
    "READOUT_S",
    "Exposure",
    "basename",
    "calibration_number",
    "calibration_start",
    "content_digest",
    "day_obs",
    "derive_seed",
    "plan_exposures",
    "science_number",
]

READOUT_S = 10.0
"""Seconds between the end of one shot and the start of the next."""

_NIGHT_S = 86400.0
_FIRST_SCIENCE_NUMBER = 100
LAST_FRAME_NUMBER = 9999
_NUMBER_STEP_S = _NIGHT_S / (LAST_FRAME_NUMBER + 1 - _FIRST_SCIENCE_NUMBER)
_CALIBRATION_STEP_S = 20.0

CALIBRATIONS: tuple[tuple[str, str], ...] = (("BIAS", "b"), ("DARK", "d"), ("SKYFLAT", "f"))
"""Calibration types a night's raw frames need, with their basename letters."""

_FLAT_SLOTS = {code: 3 + index for index, code in enumerate(FILTER_NAMES)}


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from stable parts (the configured seed, ids); the same parts, the same seed."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:4], "big") % 2**31


def content_digest(request: Mapping[str, Any]) -> str:
    """A digest of what a stored request asks to observe (never its ids, times or windows)."""
    content = {
        "location": request["location"],
        "configuration_repeats": request.get("configuration_repeats", 1),
        "configurations": [
            {
                "instrument_type": configuration["instrument_type"],
                "type": configuration["type"],
                "target": configuration["target"],
                "instrument_configs": configuration["instrument_configs"],
            }
            for configuration in request["configurations"]
        ],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def day_obs(when: datetime, longitude_deg: float) -> date:
    """LCO's DAY-OBS: the date at local noon before the observation (noon-to-noon nights)."""
    local = when + timedelta(hours=longitude_deg / 15.0)
    return (local - timedelta(hours=12)).date()


def _night_start(day: date, longitude_deg: float) -> datetime:
    """Local noon of DAY-OBS ``day`` (UTC): the night's first instant."""
    return datetime.combine(day, time(12), UTC) - timedelta(hours=longitude_deg / 15.0)


def science_number(start: datetime, longitude_deg: float) -> int:
    """The frame number of a science exposure starting at ``start`` (100 to 9999)."""
    seconds = (start - _night_start(day_obs(start, longitude_deg), longitude_deg)).total_seconds()
    step = min(int(seconds // _NUMBER_STEP_S), LAST_FRAME_NUMBER - _FIRST_SCIENCE_NUMBER)
    return _FIRST_SCIENCE_NUMBER + step


def calibration_number(kind: str, band: str | None) -> int:
    """The fixed frame number (1 to 99) of a night's calibration of ``kind`` (and flat band)."""
    if kind == "SKYFLAT":
        return _FLAT_SLOTS.get(band or "", 99)
    return 1 + [k for k, _ in CALIBRATIONS].index(kind)


def calibration_start(day: date, longitude_deg: float, number: int) -> datetime:
    """When a night's calibration frame ``number`` starts: just after the night begins."""
    return _night_start(day, longitude_deg) + timedelta(seconds=_CALIBRATION_STEP_S * number)


def basename(telescope: Telescope, camera: str, day: date, number: int, suffix: str) -> str:
    """An archive basename, e.g. ``cpt1m010-fa14-20261205-0105-e91`` (``suffix`` is ``e91``)."""
    return f"{telescope.site}{telescope.code}-{camera}-{day:%Y%m%d}-{number:04d}-{suffix}"


@dataclass(frozen=True)
class Exposure:
    """One exposure of one camera.

    Attributes:
        key: Stable identity: the request's identity and the exposure's place in it.
        target: The configuration's target as stored by the portal.
        instrument_type: Instrument type code.
        camera: Camera id (``fa14``; a MuSCAT channel's own camera).
        band: Filter code.
        exposure_time_s: Exposure time in seconds.
        start: Start of the exposure (UTC).
    """

    key: str
    target: Mapping[str, Any]
    instrument_type: str
    camera: str
    band: str
    exposure_time_s: float
    start: datetime


def _channels(
    config: Mapping[str, Any], cameras: tuple[str, ...], muscat: bool
) -> list[tuple[str, str, float]]:
    """(camera, band, exposure time) of each camera that opens in one shot."""
    if not muscat:
        band = config["optical_elements"].get("filter", "")
        return [(cameras[0], band, float(config["exposure_time"]))]
    extra = config["extra_params"]
    return [
        (camera, code, float(extra.get(f"exposure_time_{band}", config["exposure_time"])))
        for camera, (band, code) in zip(cameras, MUSCAT_CHANNELS, strict=False)
    ]


def plan_exposures(
    request: Mapping[str, Any],
    telescope: Telescope,
    identity: str,
    completed_at: datetime,
    *,
    started_at: datetime | None = None,
) -> list[Exposure]:
    """The imaging exposures of a completed request, back to back.

    The first starts at ``started_at`` when given (the block's start: inside the window, after
    the submission); otherwise the last ends at ``completed_at``.

    A shot is one exposure of every camera that opens at once (MuSCAT: four channels); shots are
    separated by :data:`READOUT_S`. Spectra (FLOYDS tarballs at level 90) are not simulated.
    """
    shots: list[tuple[str, Mapping[str, Any], str, list[tuple[str, str, float]]]] = []
    for c, configuration in enumerate(request["configurations"]):
        instrument = CONFIGDB[configuration["instrument_type"]]
        if instrument.kind != "IMAGE" or configuration["type"] not in SCIENCE_TYPES:
            continue
        muscat = bool(instrument.exposure_modes)
        for i, config in enumerate(configuration["instrument_configs"]):
            channels = _channels(config, telescope.cameras, muscat)
            for n in range(config["exposure_count"]):
                key = f"{identity}/c{c}/i{i}/x{n}"
                shots.append((key, configuration["target"], instrument.code, channels))
    span = sum(max(e for _, _, e in channels) + READOUT_S for *_, channels in shots)
    cursor = started_at if started_at is not None else completed_at - timedelta(seconds=span)
    exposures = []
    for key, target, instrument_type, channels in shots:
        exposures += [
            Exposure(f"{key}/{band}", target, instrument_type, camera, band, seconds, cursor)
            for camera, band, seconds in channels
        ]
        cursor += timedelta(seconds=max(e for _, _, e in channels) + READOUT_S)
    return exposures
