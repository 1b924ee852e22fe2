"""Clients of the LCO Observation Portal and Science Archive, and the request-group payloads.

One concern per module:

* :mod:`~followup.lco.models`: what the portal answers (request groups, states, profile).
* :mod:`~followup.lco.portal`: :class:`PortalClient` (validate, submit, read, list, cancel, and the
  batched status query of a polling cycle).
* :mod:`~followup.lco.archive`: :class:`ArchiveClient` (frame listings, downloads that cannot
  collide).
* :mod:`~followup.lco.instruments`: the instrument table :data:`INSTRUMENTS`.
* :mod:`~followup.lco.payloads`: :func:`build_request_group` from a :class:`RequestGroupSpec`,
  :func:`epoch_windows` and :func:`at_submission` (windows inside one semester, rapid-response
  windows timed at submission), and the exactly-once group names :func:`make_group_name`.

Both clients are built on :class:`followup.http.ServiceClient`: one error table, no retries.

Example:
    >>> spec = RequestGroupSpec(target=target, strategy=strategy, proposal="LCO2025A-001",
    ...     group_name=make_group_name("S250101ab", target.name, epoch=0, filters=["rp"]),
    ...     window_start=start, window_end=end)  # doctest: +SKIP
    >>> group = PortalClient("my-token").submit_request_group(build_request_group(spec))  # doctest: +SKIP
"""

from __future__ import annotations

from followup.http import TokenAuth, flatten_errors
from followup.lco.archive import (
    CALIBRATION_TYPES,
    DEFAULT_ARCHIVE_URL,
    ArchiveClient,
    ChecksumMismatch,
    frame_from_record,
)
from followup.lco.instruments import INSTRUMENTS, InstrumentSpec, estimate_request_duration_s
from followup.lco.models import (
    AcquisitionConfig,
    CancelOutcome,
    Configuration,
    Constraints,
    GuidingConfig,
    InstrumentConfig,
    InstrumentType,
    Location,
    ObservationBlock,
    PortalTarget,
    Profile,
    ProfileProposal,
    Request,
    RequestGroup,
    RequestStatus,
    Semester,
    ValidationResult,
    Window,
)
from followup.lco.payloads import (
    RequestGroupSpec,
    at_submission,
    build_request_group,
    clip_to_semester,
    epoch_windows,
    group_name_prefix,
    make_group_name,
)
from followup.lco.portal import DEFAULT_PORTAL_URL, PortalClient

__all__ = [
    "CALIBRATION_TYPES",
    "DEFAULT_ARCHIVE_URL",
    "DEFAULT_PORTAL_URL",
    "INSTRUMENTS",
    "AcquisitionConfig",
    "ArchiveClient",
    "CancelOutcome",
    "ChecksumMismatch",
    "Configuration",
    "Constraints",
    "GuidingConfig",
    "InstrumentConfig",
    "InstrumentSpec",
    "InstrumentType",
    "Location",
    "ObservationBlock",
    "PortalClient",
    "PortalTarget",
    "Profile",
    "ProfileProposal",
    "Request",
    "RequestGroup",
    "RequestGroupSpec",
    "RequestStatus",
    "Semester",
    "TokenAuth",
    "ValidationResult",
    "Window",
    "at_submission",
    "build_request_group",
    "clip_to_semester",
    "epoch_windows",
    "estimate_request_duration_s",
    "flatten_errors",
    "frame_from_record",
    "group_name_prefix",
    "make_group_name",
]
