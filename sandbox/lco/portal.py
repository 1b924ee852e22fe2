"""The Observation Portal stand-in's state: request groups, their requests and scheduled blocks.

Groups are validated with the portal's own rules and messages (:mod:`sandbox.lco.validation`),
stored, and moved through the portal's state machine on the simulated clock: a request completes
``completion_delay_s`` after the later of its submission and its window's start (or ends in a
queued outcome), unless its window expires first or it is cancelled. When a request completes,
the portal hands the archive an :class:`sandbox.lco.archive.Observation` of it.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sandbox.lco.archive import Observation
from sandbox.lco.clock import Clock
from sandbox.lco.configdb import (
    CONFIGDB,
    SEMESTERS,
    Telescope,
    pick_telescope,
    represent_instrument,
    semester_in,
)
from sandbox.lco.exposures import content_digest, derive_seed
from sandbox.lco.states import BLOCK_STATE, RequestState, aggregate_states
from sandbox.lco.validation import read_group
from sandbox.times import drf_time, parse_datetime

__all__ = ["PortalState"]


@dataclass
class _Scheduled:
    """How the simulation will treat one stored request."""

    request_id: int
    group_id: int
    window_start: datetime
    window_end: datetime
    complete_at: datetime
    duration_s: float
    outcome: RequestState
    block_id: int
    telescope: Telescope | None
    identity: str
    observe_from: datetime | None = None
    observed: bool = False


class PortalState:
    """What the portal stand-in knows (thread-safe, on the sandbox's lock).

    Args:
        clock: The sandbox's clock.
        lock: The sandbox's lock, shared with the archive.
        on_completed: Called (under the lock) once per request that completes.
        seed: The configured sandbox seed; the telescope of a request derives from it.
        username: The user the token belongs to.
        token: The API token (shown by ``/api/profile/``).
        proposals: Proposal ids the user belongs to.
        time_allocation_hours: Hours per observation type, proposal and semester.
        ipp_time_hours: The IPP time available per proposal, semester and instrument type
            (``ipp_time_available``: an ipp_value above 1 spends ``(ipp - 1) x duration``).
        completion_delay_s: Simulated seconds from the later of submission and window start
            until a request completes.
        first_id: First id handed out (groups, requests, configurations, blocks, faults).
    """

    def __init__(
        self,
        clock: Clock,
        lock: threading.RLock,
        on_completed: Callable[[Observation], None],
        *,
        seed: int,
        username: str,
        token: str,
        proposals: Iterable[str],
        time_allocation_hours: Mapping[str, float],
        completion_delay_s: float,
        first_id: int,
        ipp_time_hours: float = 50.0,
    ) -> None:
        self.clock = clock
        self.on_completed = on_completed
        self.seed = seed
        self.username = username
        self.token = token
        self.proposals = list(proposals)
        if not self.proposals:
            raise ValueError("the sandbox needs at least one proposal")
        self.time_allocation_hours = dict(time_allocation_hours)
        self.ipp_time_hours = ipp_time_hours
        self.completion_delay_s = completion_delay_s
        self.first_id = first_id
        self._lock = lock
        self.reset()

    def reset(self) -> None:
        """Forget every group, request, block, queued outcome and counter."""
        with self._lock:
            self.groups: dict[int, dict[str, Any]] = {}
            self.requests: dict[int, dict[str, Any]] = {}
            self.scheduled: dict[int, _Scheduled] = {}
            self.received_at: dict[int, float] = {}
            self._blocks: dict[int, dict[str, Any]] = {}
            self._time_used: dict[tuple[str, str, str], float] = {}
            self._ipp_used: dict[tuple[str, str, str], float] = {}
            self._visits: Counter[str] = Counter()
            self._next_outcomes: list[RequestState] = []
            self._ids = itertools.count(self.first_id)
            self.create_calls = 0
            self.validate_calls = 0

    def next_id(self) -> int:
        """A fresh id from the portal's one counter."""
        with self._lock:
            return next(self._ids)

    def queue_outcomes(self, states: Iterable[RequestState | str]) -> None:
        """Make the next submitted requests end in these states (e.g. FAILURE_LIMIT_REACHED)."""
        with self._lock:
            self._next_outcomes += [RequestState(state) for state in states]

    # ------------------------------------------------------------------ validation

    def _hours_left(self, proposal: str, term: str, kind: str) -> float:
        used = self._time_used.get((proposal, term, kind), 0.0)
        return self.time_allocation_hours.get(kind, 0.0) - used

    def _ipp_hours_left(self, proposal: str, term: str, instrument_type: str) -> float:
        return self.ipp_time_hours - self._ipp_used.get((proposal, term, instrument_type), 0.0)

    def _read(self, raw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        return read_group(
            copy.deepcopy(raw),
            self.clock.now(),
            self.proposals,
            self._hours_left,
            self._ipp_hours_left,
        )

    def semesters(self, query: Mapping[str, list[str]]) -> list[dict[str, str]]:
        """``GET /api/semesters/``: newest first, with the portal's ``SemesterFilter``.

        Raises:
            ValueError: A date filter is malformed; ``args[0]`` is the DRF error body.
        """
        bounds: dict[str, datetime] = {}
        for key in ("semester_contains", "start", "start_lte", "end", "end_gt"):
            if query.get(key):
                try:
                    bounds[key] = parse_datetime(query[key][-1])
                except ValueError:
                    raise ValueError({key: ["Enter a valid date/time."]}) from None
        text = query.get("id", [""])[-1].lower()
        selected = [
            term
            for term in SEMESTERS
            if text in term.id.lower()
            and term.start <= bounds.get("semester_contains", term.start)
            and term.end >= bounds.get("semester_contains", term.end)
            and term.start >= bounds.get("start", term.start)
            and term.start <= bounds.get("start_lte", term.start)
            and ("end" not in bounds or term.end < bounds["end"])
            and ("end_gt" not in bounds or term.end > bounds["end_gt"])
        ]
        return [
            {"id": term.id, "start": drf_time(term.start), "end": drf_time(term.end)}
            for term in sorted(selected, key=lambda term: term.start, reverse=True)
        ]

    def validate(self, raw: Any) -> dict[str, Any]:
        """The answer of ``POST /api/requestgroups/validate/`` (always HTTP 200)."""
        with self._lock:
            self.validate_calls += 1
            errors, data = self._read(raw)
            if errors:
                return {"request_durations": {}, "errors": errors}
            requests = [request["_durations"] for request in data["requests"]]
            return {
                "request_durations": {
                    "requests": requests,
                    "duration": sum(item["duration"] for item in requests),
                },
                "errors": {},
            }

    # ------------------------------------------------------------------ create

    def submit(
        self, raw: Any, *, user: str, received_at: float | None = None
    ) -> tuple[int, dict[str, Any]]:
        """``POST /api/requestgroups/``: (201, stored group) or (400, nested errors).

        Args:
            raw: The request body.
            user: The authenticated user.
            received_at: Wall-clock time (Unix seconds) the POST arrived; now when omitted.
                Kept for drills and the latency benchmark, never shown to portal clients.
        """
        received_at = time.time() if received_at is None else received_at
        with self._lock:
            self.create_calls += 1
            errors, data = self._read(raw)
            if errors:
                return 400, errors
            now = self.clock.now()
            group_id = next(self._ids)
            group = {
                "id": group_id,
                "submitter": user,
                "requests": [self._store_request(r, group_id, data, now) for r in data["requests"]],
                "created": drf_time(now),
                "state": RequestState.PENDING.value,
                "modified": drf_time(now),
                "name": data["name"],
                "observation_type": data["observation_type"],
                "operator": data["operator"],
                "ipp_value": data["ipp_value"],
                "proposal": data["proposal"],
            }
            self.groups[group_id] = group
            self.received_at[group_id] = received_at
            return 201, copy.deepcopy(group)

    def _store_request(
        self, request: dict[str, Any], group_id: int, data: dict[str, Any], now: datetime
    ) -> dict[str, Any]:
        """Store one validated request, schedule its simulated fate; return its representation."""
        request_id = next(self._ids)
        durations = request.pop("_durations")
        configurations = [
            _represent_configuration({"id": next(self._ids), "priority": k + 1, **configuration})
            for k, configuration in enumerate(request["configurations"])
        ]
        location = {k: v for k, v in request["location"].items() if v}
        representation = {
            "id": request_id,
            "location": location,
            "configurations": configurations,
            "windows": [
                {"start": drf_time(w["start"]), "end": drf_time(w["end"])}
                for w in request["windows"]
            ],
            "duration": durations["duration"],
            "state": RequestState.PENDING.value,
            "modified": drf_time(now),
            "created": drf_time(now),
            "acceptability_threshold": request["acceptability_threshold"],
            "configuration_repeats": request["configuration_repeats"],
            "optimization_type": request["optimization_type"],
            "observation_note": request["observation_note"],
            "extra_params": request["extra_params"],
        }
        self.requests[request_id] = representation
        # The same content observed again (an epoch of a cadence) is another visit.
        digest = content_digest(representation)
        identity = f"{digest}-v{self._visits[digest]}"
        self._visits[digest] += 1
        start = min(w["start"] for w in request["windows"])
        scheduled = _Scheduled(
            request_id=request_id,
            group_id=group_id,
            window_start=start,
            window_end=max(w["end"] for w in request["windows"]),
            complete_at=max(now, start) + timedelta(seconds=self.completion_delay_s),
            duration_s=float(durations["duration"]),
            outcome=self._next_outcomes.pop(0) if self._next_outcomes else RequestState.COMPLETED,
            block_id=next(self._ids),
            telescope=pick_telescope(location, derive_seed(self.seed, "telescope", identity)),
            identity=identity,
            observe_from=max(now, start),
        )
        self.scheduled[request_id] = scheduled
        self._blocks[scheduled.block_id] = _new_block(scheduled, now)
        term = semester_in(start, scheduled.window_end) or ""
        key = (data["proposal"], term, data["observation_type"])
        hours = durations["duration"] / 3600.0
        self._time_used[key] = self._time_used.get(key, 0.0) + hours
        if data["observation_type"] == "NORMAL" and data["ipp_value"] > 1:
            # common/state_changes.py debit_ipp_time, on the request's first instrument type.
            ipp_key = (data["proposal"], term, request["configurations"][0]["instrument_type"])
            spent = hours * (data["ipp_value"] - 1)
            self._ipp_used[ipp_key] = self._ipp_used.get(ipp_key, 0.0) + spent
        return representation

    # ------------------------------------------------------------------ state machine

    def refresh(self) -> None:
        """Apply every transition due at the current simulated time."""
        with self._lock:
            now = self.clock.now()
            for scheduled in self.scheduled.values():
                if self.requests[scheduled.request_id]["state"] != RequestState.PENDING.value:
                    continue
                if now >= scheduled.complete_at and scheduled.complete_at <= scheduled.window_end:
                    self._set_state(scheduled, scheduled.outcome, scheduled.complete_at)
                elif now >= scheduled.window_end:
                    self._set_state(scheduled, RequestState.WINDOW_EXPIRED, scheduled.window_end)

    def _set_state(self, scheduled: _Scheduled, state: RequestState, when: datetime) -> None:
        request = self.requests[scheduled.request_id]
        request["state"] = state.value
        request["modified"] = drf_time(when)
        block = self._blocks[scheduled.block_id]
        block["state"] = BLOCK_STATE[state]
        block["modified"] = drf_time(when)
        group = self.groups[scheduled.group_id]
        if state is RequestState.COMPLETED:
            block["end"] = drf_time(when)
            block["start"] = drf_time(when - timedelta(seconds=scheduled.duration_s))
            if not scheduled.observed:
                scheduled.observed = True
                self.on_completed(
                    Observation(
                        request=copy.deepcopy(request),
                        group_id=group["id"],
                        group_name=group["name"],
                        proposal=group["proposal"],
                        block_id=scheduled.block_id,
                        telescope=scheduled.telescope,
                        identity=scheduled.identity,
                        completed_at=when,
                        started_at=(
                            scheduled.observe_from
                            if scheduled.observe_from is not None and scheduled.observe_from <= when
                            else None
                        ),
                    )
                )
        new_state = aggregate_states(
            [self.requests[r["id"]]["state"] for r in group["requests"]], group["operator"]
        )
        if new_state != group["state"]:
            group["state"] = new_state
            group["modified"] = drf_time(when)

    def complete_request(self, request_id: int) -> dict[str, Any]:
        """Complete a request now (also a late COMPLETED after expiry, cancel or failure).

        Raises:
            KeyError: No such request.
        """
        with self._lock:
            self.refresh()
            scheduled = self.scheduled[request_id]
            if self.requests[request_id]["state"] != RequestState.COMPLETED.value:
                self._set_state(scheduled, RequestState.COMPLETED, self.clock.now())
            return copy.deepcopy(self.requests[request_id])

    def force_request_state(self, request_id: int, state: RequestState | str) -> dict[str, Any]:
        """Move a request to any state now (drills: FAILURE_LIMIT_REACHED, WINDOW_EXPIRED...).

        Raises:
            KeyError: No such request.
        """
        with self._lock:
            self.refresh()
            self._set_state(self.scheduled[request_id], RequestState(state), self.clock.now())
            return copy.deepcopy(self.requests[request_id])

    def cancel(self, group_id: int) -> tuple[int, dict[str, Any]]:
        """``POST /api/requestgroups/{id}/cancel/`` as the portal answers it.

        Raises:
            KeyError: No such group.
        """
        with self._lock:
            self.refresh()
            group = self.groups[group_id]
            state = group["state"]
            if state == RequestState.CANCELED.value:
                return 200, copy.deepcopy(group)
            if state != RequestState.PENDING.value:
                message = f"Cannot transition from request state {state} to CANCELED for {group_id}"
                return 400, {"errors": [message]}
            now = self.clock.now()
            for request in group["requests"]:
                if self.requests[request["id"]]["state"] == RequestState.PENDING.value:
                    self._set_state(self.scheduled[request["id"]], RequestState.CANCELED, now)
            group["state"] = RequestState.CANCELED.value
            group["modified"] = drf_time(now)
            return 200, copy.deepcopy(group)

    # ------------------------------------------------------------------ reads

    def get_group(self, group_id: int) -> dict[str, Any]:
        """One stored group as the portal returns it.

        Raises:
            KeyError: No such group.
        """
        with self._lock:
            self.refresh()
            return copy.deepcopy(self.groups[group_id])

    def get_request(self, request_id: int) -> dict[str, Any]:
        """One stored request.

        Raises:
            KeyError: No such request.
        """
        with self._lock:
            self.refresh()
            return copy.deepcopy(self.requests[request_id])

    def observations(self, request_id: int, *, exclude_canceled: bool = False) -> list[dict]:
        """Scheduled blocks of a request.

        Raises:
            KeyError: No such request.
        """
        with self._lock:
            self.refresh()
            block = copy.deepcopy(self._blocks[self.scheduled[request_id].block_id])
            if exclude_canceled and block["state"] == "CANCELED":
                return []
            return [block]

    def list_groups(self, query: Mapping[str, list[str]]) -> list[dict[str, Any]]:
        """Groups matching the portal's filters, newest first.

        Raises:
            ValueError: A filter value is malformed; ``args[0]`` is the DRF error body.
        """
        errors: dict[str, list[str]] = {}
        states = query.get("state", [])
        excluded = query.get("exclude_state", [])
        for key, values in (("state", states), ("exclude_state", excluded)):
            for value in values:
                if value not in RequestState.__members__:
                    errors[key] = [
                        f"Select a valid choice. {value} is not one of the available choices."
                    ]
        bounds: dict[str, datetime] = {}
        for key in ("created_after", "created_before", "modified_after", "modified_before"):
            if query.get(key):
                try:
                    bounds[key] = parse_datetime(query[key][-1])
                except ValueError:
                    errors[key] = ["Enter a valid date/time."]
        request_id = None
        if query.get("request_id"):
            try:
                request_id = int(query["request_id"][-1])
            except ValueError:
                errors["request_id"] = ["Enter a number."]
        if errors:
            raise ValueError(errors)
        name = (query.get("name") or [None])[-1]
        proposal = (query.get("proposal") or [None])[-1]
        user = (query.get("user") or [None])[-1]
        with self._lock:
            self.refresh()
            selected = []
            for group in sorted(self.groups.values(), key=lambda g: -g["id"]):
                created = parse_datetime(group["created"])
                modified = parse_datetime(group["modified"])
                if states and group["state"] not in states:
                    continue
                if group["state"] in excluded:
                    continue
                if name and name.lower() not in group["name"].lower():
                    continue
                if proposal and group["proposal"] != proposal:
                    continue
                if user and group["submitter"] != user:
                    continue
                if request_id is not None and request_id not in [
                    r["id"] for r in group["requests"]
                ]:
                    continue
                if "created_after" in bounds and created < bounds["created_after"]:
                    continue
                if "created_before" in bounds and created > bounds["created_before"]:
                    continue
                if "modified_after" in bounds and modified < bounds["modified_after"]:
                    continue
                if "modified_before" in bounds and modified > bounds["modified_before"]:
                    continue
                selected.append(copy.deepcopy(group))
            return selected

    def instruments(self) -> dict[str, Any]:
        """``GET /api/instruments/``: the configdb view of every schedulable instrument type."""
        return {code: represent_instrument(item) for code, item in CONFIGDB.items()}

    def profile(self) -> dict[str, Any]:
        """``GET /api/profile/`` for the token's user."""
        return {
            "username": self.username,
            "first_name": "Sandbox",
            "last_name": "User",
            "email": f"{self.username}@sandbox.invalid",
            "profile": {
                "education_user": False,
                "notifications_enabled": False,
                "notifications_on_authored_only": False,
                "simple_interface": False,
                "view_authored_requests_only": False,
                "title": "",
                "staff_view": False,
                "institution": "followup sandbox",
                "api_quota": {"used": self.create_calls, "limit": 5000},
            },
            "is_staff": False,
            "is_superuser": False,
            "proposals": [
                {"id": proposal, "title": f"Sandbox proposal {proposal}", "current": True}
                for proposal in self.proposals
            ],
            "available_instrument_types": list(CONFIGDB),
            "tokens": {"archive": None, "api_token": self.token},
            "proposal_notifications": [],
        }


def _new_block(scheduled: _Scheduled, now: datetime) -> dict[str, Any]:
    """The scheduled block of a request (``/api/requests/{id}/observations/``)."""
    telescope = scheduled.telescope
    return {
        "id": scheduled.block_id,
        "request": scheduled.request_id,
        "site": telescope.site if telescope else "",
        "enclosure": telescope.enclosure if telescope else "",
        "telescope": telescope.telescope if telescope else "",
        "start": drf_time(scheduled.complete_at - timedelta(seconds=scheduled.duration_s)),
        "end": drf_time(scheduled.complete_at),
        "priority": 10,
        "state": "PENDING",
        "created": drf_time(now),
        "modified": drf_time(now),
    }


def _represent_configuration(configuration: dict[str, Any]) -> dict[str, Any]:
    """A validated configuration as the portal returns it."""
    target = {k: v for k, v in configuration["target"].items() if v is not None}
    constraints = {
        "max_airmass": configuration["constraints"]["max_airmass"],
        "min_lunar_distance": configuration["constraints"]["min_lunar_distance"],
        "max_lunar_phase": configuration["constraints"]["max_lunar_phase"],
        "max_seeing": configuration["constraints"].get("max_seeing"),
        "min_transparency": configuration["constraints"].get("min_transparency"),
        "extra_params": configuration["constraints"]["extra_params"],
    }
    guiding = configuration["guiding_config"]
    acquisition = configuration["acquisition_config"]
    representation = {
        "id": configuration["id"],
        "instrument_type": configuration["instrument_type"],
        "type": configuration["type"],
        "extra_params": configuration["extra_params"],
        "priority": configuration["priority"],
        "instrument_configs": [
            {
                "optical_elements": config["optical_elements"],
                "mode": config["mode"],
                "exposure_time": config["exposure_time"],
                "exposure_count": config["exposure_count"],
                "rotator_mode": config.get("rotator_mode", ""),
                "extra_params": config["extra_params"],
                "rois": config["rois"] if isinstance(config["rois"], list) else [],
            }
            for config in configuration["instrument_configs"]
        ],
        "constraints": constraints,
        "acquisition_config": {
            "mode": acquisition["mode"],
            "exposure_time": acquisition.get("exposure_time"),
            "extra_params": acquisition.get("extra_params", {}),
        },
        "guiding_config": {
            "optional": bool(guiding.get("optional", True)),
            "mode": guiding["mode"],
            "optical_elements": guiding.get("optical_elements", {}),
            "exposure_time": guiding.get("exposure_time"),
            "extra_params": guiding.get("extra_params", {}),
        },
        "target": target,
    }
    if "REPEAT" in configuration["type"]:
        representation["repeat_duration"] = configuration.get("repeat_duration")
    return representation
