"""Request-group payloads from data, the epochs of a cadence, and exactly-once group names.

:func:`build_request_group` turns a :class:`RequestGroupSpec` (a :class:`~followup.models.Target`,
an :class:`~followup.models.ObservingStrategy`, a proposal, a name and a window) into the portal's
RequestGroup JSON, driven by the instrument table. :func:`make_group_name` gives the deterministic
group name that makes submission exactly-once.

Windows follow the portal's rules (observatorycontrolsystem/observation-portal,
``observation_portal/requestgroups/serializers.py``): each fits inside one semester
(``WindowSerializer``: "The observation window does not fit within any defined semester"), so
:func:`epoch_windows` and :func:`at_submission` clip them with :func:`clip_to_semester`; a
RAPID_RESPONSE window starts no later than the submission and ends within 24 h of it
(``RequestGroupSerializer.validate``), so rapid-response and time-critical windows are timed by
:func:`at_submission` when the group is sent, after any approval, not when it was planned.

Example:
    >>> spec = RequestGroupSpec(target=target, strategy=strategy, proposal="LCO2025A-001",
    ...     group_name=make_group_name("S250101ab", target.name, epoch=0, filters=["rp"]),
    ...     window_start=start, window_end=end)  # doctest: +SKIP
    >>> final = at_submission(spec, now=utcnow(), semesters=portal.list_semesters())  # doctest: +SKIP
    >>> group = portal.submit_request_group(build_request_group(final))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from followup.lco.instruments import (
    InstrumentSpec,
    calibration_configs,
    instrument_configs,
    spec_for,
)
from followup.lco.models import Semester, portal_time
from followup.models import ObservationType, ObservingStrategy, Target, UtcDatetime

__all__ = [
    "RAPID_RESPONSE_HORIZON",
    "RequestGroupSpec",
    "at_submission",
    "build_request_group",
    "clip_to_semester",
    "epoch_windows",
    "group_name_prefix",
    "make_group_name",
]

RAPID_RESPONSE_HORIZON = timedelta(hours=24)
"""A RAPID_RESPONSE window ends at most this long after submission (the portal allows 24 h plus
the request's duration; the duration is left as margin)."""

_TIMED_AT_SUBMISSION = frozenset({ObservationType.RAPID_RESPONSE, ObservationType.TIME_CRITICAL})


class RequestGroupSpec(BaseModel):
    """Everything one request group is built from: one target, one epoch of a strategy.

    Attributes:
        target: What to observe (ICRS ra/dec in degrees).
        strategy: Instrument, filters, exposures, constraints, ipp and observation type.
        proposal: LCO proposal id.
        group_name: The group name (see :func:`make_group_name`), 1 to 50 characters.
        window_start: Window start (naive is read as UTC).
        window_end: Window end, after the start.
        site: Pin the request to one site (``coj``, ``cpt``...), else any site of the class.
        observation_note: Free text stored with the request (cut to 255 characters).
        max_lunar_phase: Moon illumination limit, 0 to 1.
        planned_at: When the windows were computed (default ``window_start``, right for the
            first epoch); :func:`at_submission` moves rapid-response and time-critical windows
            by the time passed since.
    """

    model_config = ConfigDict(frozen=True)

    target: Target
    strategy: ObservingStrategy
    proposal: str = Field(min_length=1)
    group_name: str = Field(min_length=1, max_length=50)
    window_start: UtcDatetime
    window_end: UtcDatetime
    site: str | None = None
    observation_note: str = ""
    max_lunar_phase: float = Field(default=1.0, ge=0.0, le=1.0)
    planned_at: UtcDatetime | None = None

    @model_validator(mode="after")
    def _window_is_ordered(self) -> RequestGroupSpec:
        if self.window_end <= self.window_start:
            raise ValueError(
                f"window_end {self.window_end.isoformat()} is not after "
                f"window_start {self.window_start.isoformat()}"
            )
        return self


def _configuration(
    spec: RequestGroupSpec, instrument: InstrumentSpec, kind: str | None = None
) -> dict[str, Any]:
    """One configuration of the request: target, constraints, exposures, guiding.

    ``kind`` None is the science configuration; a calibration type (``LAMP_FLAT``, ``ARC``)
    gives that calibration at the same pointing and slit with guiding optional (the only types
    a spectrograph may leave unguided). Its acquisition mode stays the instrument's: the portal
    sets calibrations to OFF itself, and configdb's schema (aeonlib's models) has no OFF mode
    for FLOYDS.
    """
    target, strategy = spec.target, spec.strategy
    if kind is None:
        configs = instrument_configs(strategy, instrument)
        optional = instrument.guiding_optional
    else:
        configs = calibration_configs(strategy, instrument, kind)
        optional = True
    return {
        "type": kind or instrument.configuration_type,
        "instrument_type": instrument.instrument_type,
        "extra_params": {},
        "target": {
            "name": target.name,
            "type": "ICRS",
            "ra": target.ra,
            "dec": target.dec,
            "proper_motion_ra": 0.0,
            "proper_motion_dec": 0.0,
            "epoch": 2000.0,
            "parallax": 0.0,
            "extra_params": {},
        },
        "constraints": {
            "max_airmass": strategy.max_airmass,
            "min_lunar_distance": strategy.min_lunar_distance_deg,
            "max_lunar_phase": spec.max_lunar_phase,
            "extra_params": {},
        },
        "instrument_configs": configs,
        "acquisition_config": {"mode": instrument.acquisition_mode, "extra_params": {}},
        "guiding_config": {
            "mode": instrument.guiding_mode,
            "optional": optional,
            "extra_params": {},
        },
    }


def _configurations(spec: RequestGroupSpec, instrument: InstrumentSpec) -> list[dict[str, Any]]:
    """The science configuration with the instrument's calibrations on both sides.

    FLOYDS: LAMP_FLAT, ARC, SPECTRUM, ARC, LAMP_FLAT, the order the portal's request form builds
    (observation-portal ``generateCalibs``) and LCO's own clients send: the instrument flexes as
    it tracks, so the arcs and flats are taken at the target, right before and after.
    """
    before = [_configuration(spec, instrument, kind) for kind in instrument.calibrations]
    after = [_configuration(spec, instrument, kind) for kind in reversed(instrument.calibrations)]
    return [*before, _configuration(spec, instrument), *after]


def build_request_group(spec: RequestGroupSpec) -> dict[str, Any]:
    """The portal's RequestGroup JSON for one target and one epoch of a strategy.

    One function driven by :data:`~followup.lco.instruments.INSTRUMENTS`: imagers get one
    instrument config per filter, MuSCAT one config with per-channel times, FLOYDS a guided
    SPECTRUM configuration with its slit and rotator mode between lamp flats and arcs
    (LAMP_FLAT, ARC, SPECTRUM, ARC, LAMP_FLAT). The group is SINGLE with one request and one
    window.

    Args:
        spec: The target, strategy, proposal, group name and window.

    Returns:
        A JSON-able dict for :meth:`~followup.lco.PortalClient.validate_request_group` and
        :meth:`~followup.lco.PortalClient.submit_request_group`.

    Raises:
        ValueError: Unknown instrument type, or a filter the instrument does not have.
    """
    instrument = spec_for(spec.strategy.instrument_type)
    location: dict[str, Any] = {"telescope_class": instrument.telescope_class}
    if spec.site:
        location["site"] = spec.site
    request: dict[str, Any] = {
        "configuration_repeats": 1,
        "optimization_type": "TIME",
        "observation_note": spec.observation_note[:255],
        "extra_params": {},
        "location": location,
        "windows": [{"start": portal_time(spec.window_start), "end": portal_time(spec.window_end)}],
        "configurations": _configurations(spec, instrument),
    }
    # Left out, the portal applies the instrument's default (RequestSerializer.validate:
    # configdb's default_acceptability_threshold, 100 for FLOYDS, 90 otherwise).
    if spec.strategy.acceptability_threshold is not None:
        request["acceptability_threshold"] = spec.strategy.acceptability_threshold
    return {
        "name": spec.group_name,
        "proposal": spec.proposal,
        "ipp_value": spec.strategy.ipp_value,
        "operator": "SINGLE",
        "observation_type": spec.strategy.observation_type.value,
        "requests": [request],
    }


def clip_to_semester(
    start: datetime, end: datetime, semesters: Sequence[Semester]
) -> tuple[datetime, datetime]:
    """The part of a window inside one semester: the semester holding most of it.

    The portal refuses a window that does not fit inside one semester (``WindowSerializer``,
    "The observation window does not fit within any defined semester."). A window across a
    boundary keeps its larger side: a 24 h window opening an hour before a semester ends moves
    to the next semester rather than keep one hour.

    Args:
        start: Window start (naive is read as UTC).
        end: Window end.
        semesters: The portal's semesters (:meth:`PortalClient.list_semesters`); empty leaves the
            window as it is.

    Returns:
        ``(start, end)`` inside one semester, aware UTC.

    Raises:
        ValueError: The window overlaps no semester.
    """
    start, end = _utc(start), _utc(end)
    if not semesters:
        return start, end
    best: tuple[timedelta, datetime, datetime] | None = None
    for semester in semesters:
        low, high = max(start, semester.start), min(end, semester.end)
        if high > low and (best is None or high - low > best[0]):
            best = (high - low, low, high)
    if best is None:
        raise ValueError(
            f"the window {start.isoformat()} - {end.isoformat()} overlaps no semester of the "
            f"portal ({', '.join(s.id for s in semesters)})"
        )
    return best[1], best[2]


def at_submission(
    spec: RequestGroupSpec, *, now: datetime, semesters: Sequence[Semester] = ()
) -> RequestGroupSpec:
    """The spec with the windows it must carry when sent now.

    RAPID_RESPONSE and TIME_CRITICAL windows move by the time since they were planned (an
    approval hours later still gets the full window); a RAPID_RESPONSE window then opens at
    ``now`` at the latest and closes within :data:`RAPID_RESPONSE_HORIZON`. NORMAL windows are
    kept. Every window is then clipped to one semester (:func:`clip_to_semester`).

    Args:
        spec: The planned spec.
        now: The submission time.
        semesters: The portal's semesters; empty skips the clipping.

    Returns:
        A new spec (the input is not changed).

    Raises:
        ValueError: A rapid-response window would open after ``now`` (a later epoch of a
            rapid-response strategy), or the window overlaps no semester.
    """
    now = _utc(now)
    start, end = spec.window_start, spec.window_end
    kind = spec.strategy.observation_type
    if kind in _TIMED_AT_SUBMISSION:
        delay = now - (spec.planned_at or spec.window_start)
        if delay > timedelta(0):
            start, end = start + delay, end + delay
        if kind is ObservationType.RAPID_RESPONSE:
            if start > now:
                raise ValueError(
                    f"{spec.group_name}: a RAPID_RESPONSE window must open by the submission "
                    f"({now.isoformat()}), not at {start.isoformat()}"
                )
            end = min(end, now + RAPID_RESPONSE_HORIZON)
    start, end = clip_to_semester(start, end, semesters)
    return spec.model_copy(update={"window_start": start, "window_end": end, "planned_at": now})


def _utc(value: datetime) -> datetime:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def epoch_windows(
    strategy: ObservingStrategy, start: datetime, *, semesters: Sequence[Semester] = ()
) -> list[tuple[datetime, datetime]]:
    """The observing window of each epoch of a strategy's cadence.

    Epoch ``k`` opens at ``start + k * cadence_hours`` and lasts ``window_hours``, clipped to
    one semester when ``semesters`` are given (:func:`clip_to_semester`).

    Returns:
        ``[(window_start, window_end), ...]``, one per epoch, aware UTC.

    Raises:
        ValueError: An epoch's window overlaps no semester.
    """
    first = _utc(start)
    return [
        clip_to_semester(
            first + timedelta(hours=k * strategy.cadence_hours),
            first + timedelta(hours=k * strategy.cadence_hours + strategy.window_hours),
            semesters,
        )
        for k in range(strategy.epochs)
    ]


_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def make_group_name(
    event_id: str,
    target_name: str,
    *,
    epoch: int = 0,
    filters: Sequence[str] = (),
    plan: str = "",
    attempt: int = 0,
    max_length: int = 50,
) -> str:
    """The deterministic request-group name of one (event, target, filters, epoch, plan).

    ``<event>_<target>_e<epoch>_<hash>`` (``e<epoch>a<attempt>`` for an epoch requested again
    after its window closed unobserved): the readable part is the event id, target name and
    epoch with every character outside ``A-Z a-z 0-9 . -`` replaced by ``-`` (shortened when
    needed), and ``<hash>`` is 10 hex digits of the SHA-256 of all inputs, so two different
    inputs never share a name in practice, and the same inputs always give the same name (the
    key of exactly-once submission). Names of one event all start with its sanitised id and
    ``_``, which batched status queries can filter on.

    Args:
        event_id: The event (superevent id, GRB trigger...).
        target_name: The target.
        epoch: 0-based epoch of the cadence.
        filters: Filters of the request, in order.
        plan: Anything else that distinguishes requests (strategy name, plan version).
        attempt: 0 for the epoch's first request (the name is then as it always was), n for
            its n-th request again.
        max_length: The portal's limit is 50.

    Returns:
        A name of at most ``max_length`` characters.

    Raises:
        ValueError: Empty event id or target name, negative epoch, or ``max_length`` < 24.
    """
    if not event_id or not target_name:
        raise ValueError("make_group_name needs an event id and a target name")
    if epoch < 0 or attempt < 0:
        raise ValueError(f"epoch and attempt must be >= 0, got {epoch} and {attempt}")
    if max_length < 24:
        raise ValueError(f"max_length must be >= 24, got {max_length}")
    inputs: list[Any] = [event_id, target_name, int(epoch), list(filters), plan]
    if attempt:
        inputs.append(int(attempt))
    key = json.dumps(inputs)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    prefix = group_name_prefix(event_id)
    target = _UNSAFE.sub("-", target_name).strip("-") or "target"
    tail = f"_e{int(epoch)}{f'a{int(attempt)}' if attempt else ''}_{digest}"
    readable = f"{prefix}{target}"[: max(len(prefix) + 1, max_length - len(tail))]
    return f"{readable}{tail}"


def group_name_prefix(event_id: str) -> str:
    """The prefix every :func:`make_group_name` name of this event starts with.

    The sanitised event id (at most 20 characters) and ``_``; pass it as ``name`` to
    :meth:`PortalClient.get_request_states` to poll one event's groups.
    """
    return f"{(_UNSAFE.sub('-', event_id).strip('-') or 'event')[:20]}_"
