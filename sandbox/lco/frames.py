"""The archive's frame records and the filters of ``GET /frames/``, read as the archive reads them."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sandbox.specs import FrameSpec
from sandbox.times import parse_datetime

__all__ = ["FIELD_HALF_WIDTH_DEG", "FrameEntry", "FrameQuery", "covers"]

FIELD_HALF_WIDTH_DEG = {
    "1M0-SCICAM-SINISTRO": (0.2208, 0.2208),
    "2M0-SCICAM-MUSCAT": (0.0758, 0.0758),
    "0M4-SCICAM-QHY600": (0.95, 0.65),
}
"""Half the field of view (ra, dec) of each imager, degrees: Sinistro 26.5', MuSCAT3 9.1',
QHY600 1.9 x 1.3 deg. Other instruments are taken as Sinistro-sized."""

_POINT = re.compile(r"^\s*POINT\s*\(\s*([-+0-9.eE]+)[\s,]+([-+0-9.eE]+)\s*\)\s*$", re.IGNORECASE)


def covers(spec: FrameSpec, ra: float, dec: float) -> bool:
    """True when a science frame's field (centred on its pointing) contains (ra, dec)."""
    if spec.configuration_type != "EXPOSE":
        return False
    half_ra, half_dec = FIELD_HALF_WIDTH_DEG.get(spec.instrument_type, (0.2208, 0.2208))
    d_ra = ((ra - spec.ra + 180.0) % 360.0 - 180.0) * math.cos(math.radians(dec))
    return abs(d_ra) <= half_ra and abs(dec - spec.dec) <= half_dec


@dataclass
class FrameEntry:
    """One frame the archive holds.

    Attributes:
        frame_id: Archive frame id.
        spec: What the frame shows (the renderer's input).
        observation_id: The scheduled block that took it (None for calibrations).
        version_id: Id of the frame's one version.
        version_key: The version's key.
        created: When the archive ingested it (listed only from then on).
        public_date: When it leaves the proprietary period.
        observation_day: DAY-OBS.
        related: Frame ids of the other products of the same exposure.
    """

    frame_id: int
    spec: FrameSpec
    observation_id: int | None
    version_id: int
    version_key: str
    created: datetime
    public_date: datetime
    observation_day: date
    related: list[int] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        """The values the exact-match filters compare against."""
        spec = self.spec
        return {
            "request_id": spec.request_id,
            "reduction_level": spec.reduction_level,
            "observation_id": self.observation_id,
            "proposal_id": spec.proposal_id,
            "instrument_id": spec.instrument_id,
            "site_id": spec.site_id,
            "telescope_id": spec.telescope_id,
            "configuration_type": spec.configuration_type,
            "primary_optical_element": spec.filter,
            "basename_exact": spec.basename,
            "target_name_exact": spec.target_name,
        }


_NUMBERS = (
    ("request_id", ("request_id", "REQNUM")),
    ("reduction_level", ("reduction_level", "RLEVEL")),
    ("observation_id", ("observation_id", "BLKUID")),
)
_EXACT = (
    ("proposal_id", ("proposal_id", "PROPID")),
    ("instrument_id", ("instrument_id", "INSTRUME")),
    ("site_id", ("site_id", "SITEID")),
    ("telescope_id", ("telescope_id", "TELID")),
    ("configuration_type", ("configuration_type", "OBSTYPE")),
    ("primary_optical_element", ("primary_optical_element", "FILTER")),
    ("basename_exact", ("basename_exact",)),
    ("target_name_exact", ("target_name_exact",)),
)


@dataclass
class FrameQuery:
    """The filters of one ``GET /frames/`` (new names and the legacy header names alike)."""

    numbers: dict[str, int]
    exact: dict[str, str]
    basename: str | None
    target_name: str | None
    day: date | None
    bounds: dict[str, datetime]
    include: list[str]
    exclude: list[str]
    exclude_calibrations: bool
    point: tuple[float, float] | None = None

    @classmethod
    def parse(cls, query: Mapping[str, list[str]]) -> FrameQuery:
        """Read the query string (each key with all its values).

        Raises:
            ValueError: A filter value is malformed; ``args[0]`` is the DRF error body.
        """

        def last(*keys: str) -> str | None:
            for key in keys:
                if query.get(key):
                    return query[key][-1]
            return None

        errors: dict[str, list[str]] = {}
        numbers: dict[str, int] = {}
        for name, keys in _NUMBERS:
            value = last(*keys)
            if value is not None:
                try:
                    numbers[name] = int(float(value))
                except ValueError:
                    errors[keys[0]] = ["Enter a number."]
        day = last("dayobs", "DAY_OBS")
        day_value = None
        if day is not None:
            try:
                day_value = date.fromisoformat(day)
            except ValueError:
                errors["dayobs"] = ["Enter a valid date."]
        bounds: dict[str, datetime] = {}
        for key in ("start", "end"):
            if query.get(key):
                try:
                    bounds[key] = parse_datetime(query[key][-1])
                except ValueError:
                    errors[key] = ["Enter a valid date/time."]
        point = None
        wkt = last("covers")
        if wkt is not None:
            match = _POINT.match(wkt)
            if match is None:
                errors["covers"] = ["Enter a WKT POINT(ra dec) in degrees."]
            else:
                point = (float(match.group(1)) % 360.0, float(match.group(2)))
        if errors:
            raise ValueError(errors)
        exact = {name: value for name, keys in _EXACT if (value := last(*keys)) is not None}
        return cls(
            numbers=numbers,
            exact=exact,
            basename=last("basename"),
            target_name=last("target_name", "OBJECT"),
            day=day_value,
            bounds=bounds,
            include=list(query.get("include_configuration_type", [])),
            exclude=list(query.get("exclude_configuration_type", []))
            + list(query.get("exclude_OBSTYPE", [])),
            exclude_calibrations=(last("exclude_calibrations") or "").lower() in ("true", "1"),
            point=point,
        )

    def matches(self, entry: FrameEntry) -> bool:
        """True when the frame passes every filter."""
        spec = entry.spec
        values = entry.fields()
        kind = spec.configuration_type
        return (
            all(values[key] == value for key, value in self.numbers.items())
            and all(values[key] == value for key, value in self.exact.items())
            and (not self.basename or self.basename.lower() in spec.basename.lower())
            and (not self.target_name or self.target_name.lower() in spec.target_name.lower())
            and (self.day is None or entry.observation_day == self.day)
            and ("start" not in self.bounds or spec.date_obs >= self.bounds["start"])
            and ("end" not in self.bounds or spec.date_obs <= self.bounds["end"])
            and (not self.include or kind in self.include)
            and kind not in self.exclude
            and not (self.exclude_calibrations and kind != "EXPOSE")
            and (self.point is None or covers(spec, *self.point))
        )
