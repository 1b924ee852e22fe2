"""Pydantic models of what the LCO Observation Portal answers (request groups, states, profile).

Models read from the portal keep unknown fields (``extra="allow"``) so that a new portal field is
never a validation error; :class:`Profile` drops them instead, because the portal's profile carries
the user's API tokens.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from followup.http import flatten_errors
from followup.models import LcoState, UtcDatetime

__all__ = [
    "AcquisitionConfig",
    "CancelOutcome",
    "Configuration",
    "Constraints",
    "GuidingConfig",
    "InstrumentConfig",
    "InstrumentType",
    "Location",
    "ObservationBlock",
    "PortalTarget",
    "Profile",
    "ProfileProposal",
    "Request",
    "RequestGroup",
    "RequestStatus",
    "Semester",
    "ValidationResult",
    "Window",
    "portal_time",
]


def portal_time(value: datetime) -> str:
    """A time as the portal writes it: ISO 8601 UTC with ``Z`` (naive input is read as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _Remote(BaseModel):
    """Base of models read from a service: unknown fields are kept, not rejected."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Window(_Remote):
    """An observing window (UTC)."""

    start: UtcDatetime | None = None
    end: UtcDatetime


class Semester(_Remote):
    """A semester of the portal (``GET /api/semesters/``): a window must fit inside one.

    Attributes:
        id: Semester code (``2026A``).
        start: First instant of the semester (UTC).
        end: Last instant of the semester (UTC).
    """

    id: str
    start: UtcDatetime
    end: UtcDatetime


class Location(_Remote):
    """Where a request may run: a telescope class, optionally pinned to a site/enclosure/telescope."""

    telescope_class: str
    site: str | None = None
    enclosure: str | None = None
    telescope: str | None = None


class Constraints(_Remote):
    """Observing constraints of a configuration."""

    max_airmass: float = 1.6
    min_lunar_distance: float = 30.0
    max_lunar_phase: float | None = None
    max_seeing: float | None = None
    min_transparency: float | None = None
    extra_params: dict[str, Any] = Field(default_factory=dict)


class PortalTarget(_Remote):
    """The target of a configuration (ICRS: ra/dec in degrees; other types keep their fields)."""

    name: str
    type: str = "ICRS"
    ra: float | None = None
    dec: float | None = None
    proper_motion_ra: float | None = None
    proper_motion_dec: float | None = None
    epoch: float | None = None
    parallax: float | None = None
    extra_params: dict[str, Any] = Field(default_factory=dict)


class InstrumentConfig(_Remote):
    """Exposures of one configuration: time in seconds, count, readout mode, optical elements."""

    exposure_time: float
    exposure_count: int
    mode: str | None = None
    optical_elements: dict[str, str] = Field(default_factory=dict)
    rotator_mode: str | None = None
    extra_params: dict[str, Any] = Field(default_factory=dict)
    rois: list[dict[str, Any]] = Field(default_factory=list)


class AcquisitionConfig(_Remote):
    """Acquisition settings of a configuration."""

    mode: str = "OFF"
    exposure_time: float | None = None
    extra_params: dict[str, Any] = Field(default_factory=dict)


class GuidingConfig(_Remote):
    """Guiding settings of a configuration."""

    mode: str = "ON"
    optional: bool = True
    exposure_time: float | None = None
    optical_elements: dict[str, str] = Field(default_factory=dict)
    extra_params: dict[str, Any] = Field(default_factory=dict)


class Configuration(_Remote):
    """One configuration of a request: type, instrument, target, constraints and exposures."""

    id: int | None = None
    type: str
    instrument_type: str
    priority: int | None = None
    repeat_duration: float | None = None
    extra_params: dict[str, Any] = Field(default_factory=dict)
    target: PortalTarget
    constraints: Constraints = Field(default_factory=Constraints)
    instrument_configs: list[InstrumentConfig] = Field(default_factory=list)
    acquisition_config: AcquisitionConfig = Field(default_factory=AcquisitionConfig)
    guiding_config: GuidingConfig = Field(default_factory=GuidingConfig)


class Request(_Remote):
    """One request of a group, as the portal returns it.

    Attributes:
        id: Request id (the archive's ``request_id``/``REQNUM``).
        state: Portal state; terminal states can still turn COMPLETED later.
        duration: Estimated duration in seconds.
    """

    id: int
    state: LcoState
    duration: float | None = None
    acceptability_threshold: float | None = None
    configuration_repeats: int = 1
    optimization_type: str | None = None
    observation_note: str = ""
    extra_params: dict[str, Any] = Field(default_factory=dict)
    location: Location | None = None
    windows: list[Window] = Field(default_factory=list)
    configurations: list[Configuration] = Field(default_factory=list)
    created: UtcDatetime | None = None
    modified: UtcDatetime | None = None


class RequestGroup(_Remote):
    """A request group as the portal stores it (``POST/GET /api/requestgroups/``).

    Attributes:
        id: Request group id (``TRACKNUM`` in FITS headers).
        name: Group name (``GROUPID``), at most 50 characters.
        state: Aggregate state of the group's requests.
        observation_type: NORMAL, RAPID_RESPONSE, TIME_CRITICAL (or DIRECT/REAL_TIME for staff).
    """

    id: int
    name: str
    proposal: str
    state: LcoState
    observation_type: str
    operator: str = "SINGLE"
    ipp_value: float | None = None
    submitter: str | None = None
    created: UtcDatetime | None = None
    modified: UtcDatetime | None = None
    requests: list[Request] = Field(default_factory=list)

    @property
    def request_ids(self) -> list[int]:
        """Ids of the group's requests, in order."""
        return [request.id for request in self.requests]


class ValidationResult(_Remote):
    """The answer of ``POST /api/requestgroups/validate/`` (always HTTP 200).

    Attributes:
        request_durations: ``{"duration": s, "requests": [...]}`` when valid, ``{}`` otherwise.
        errors: The nested DRF errors, ``{}`` when valid.
    """

    request_durations: dict[str, Any] = Field(default_factory=dict)
    errors: dict[str, Any] | list[Any] | str = Field(default_factory=dict)

    @property
    def is_valid(self) -> bool:
        """True when the portal found no error (and so gave durations)."""
        return not self.errors

    @property
    def duration_s(self) -> float | None:
        """Total duration of the group in seconds, when valid."""
        value = self.request_durations.get("duration")
        return float(value) if value is not None else None

    @property
    def messages(self) -> list[str]:
        """The errors as ``path: message`` lines (see :func:`flatten_errors`)."""
        return flatten_errors(self.errors)


class CancelOutcome(_Remote):
    """What a cancel call achieved.

    Attributes:
        group: The group as the portal holds it after the call.
        canceled: True when the group is CANCELED now (by this call or an earlier one).
        message: The portal's refusal when the group had already finished (COMPLETED,
            WINDOW_EXPIRED or FAILURE_LIMIT_REACHED cannot be canceled), else None.
    """

    group: RequestGroup
    canceled: bool
    message: str | None = None


class RequestStatus(_Remote):
    """The state of one request as read by a batched status query.

    Attributes:
        request_id: Request id.
        group_id: Its request group id.
        group_name: Its request group name.
        state: The request's own state.
        group_state: The group's aggregate state.
        modified: When the request last changed at the portal.
    """

    request_id: int
    group_id: int
    group_name: str
    state: LcoState
    group_state: LcoState
    modified: UtcDatetime | None = None


class ObservationBlock(_Remote):
    """A scheduled block of a request (``GET /api/requests/{id}/observations/``)."""

    id: int
    state: str
    start: UtcDatetime | None = None
    end: UtcDatetime | None = None
    site: str | None = None
    enclosure: str | None = None
    telescope: str | None = None


class InstrumentType(_Remote):
    """One entry of ``GET /api/instruments/`` (keyed there by instrument type)."""

    type: str | None = None
    telescope_class: str = Field(alias="class")
    name: str | None = None
    optical_elements: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    modes: dict[str, Any] = Field(default_factory=dict)
    default_configuration_type: str | None = None
    configuration_types: dict[str, Any] = Field(default_factory=dict)
    camera_type: dict[str, Any] = Field(default_factory=dict)

    def schedulable_elements(self, kind: str = "filters") -> list[str]:
        """Codes of the schedulable optical elements of one kind (``filters``, ``slits``...)."""
        return [
            str(element["code"])
            for element in self.optical_elements.get(kind, [])
            if str(element.get("schedulable", True)).lower() == "true"
        ]


class ProfileProposal(_Remote):
    """A proposal the user belongs to."""

    id: str
    title: str = ""
    current: bool = True


class Profile(_Remote):
    """``GET /api/profile/``: the token owner and their proposals.

    Unknown fields are dropped here (not kept as elsewhere): the portal's profile carries the
    user's API tokens, which must not ride along in reprs, logs or artifacts.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    username: str
    email: str | None = None
    is_staff: bool = False
    proposals: list[ProfileProposal] = Field(default_factory=list)
    available_instrument_types: list[str] = Field(default_factory=list)
