"""Observing strategies as data: per alert class what to observe, and when a person must approve.

A strategy book (YAML, see ``followup/strategies/default.yaml``) holds named
:class:`~followup.models.ObservingStrategy` entries, ordered selection rules that map an
:class:`~followup.models.Alert` to one of them, and the approval rules. A Prefect Block can carry
the same YAML text; :func:`load_strategies` reads either.

Example:
    >>> book = load_strategies()
    >>> strategy = choose_strategy(alert, book)  # doctest: +SKIP
    >>> needs_approval(strategy, alert, rules=book.approval)  # doctest: +SKIP
    (True, 'observation type RAPID_RESPONSE needs approval')
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from followup.exceptions import TargetingError
from followup.lco import INSTRUMENTS, estimate_request_duration_s
from followup.lco.instruments import spec_for
from followup.models import Alert, AlertKind, ObservationType, ObservingStrategy

__all__ = [
    "MAX_EXPOSURE_COUNT",
    "ApprovalRules",
    "CandidateStrategies",
    "SelectionRule",
    "StrategyBook",
    "StrategyEdit",
    "choose_strategy",
    "edit_problems",
    "estimate_hours",
    "live_until",
    "load_strategies",
    "needs_approval",
]

MAX_EXPOSURE_COUNT = 100
"""Most frames per filter per epoch an edited approval may ask for."""


class SelectionRule(BaseModel):
    """One rule mapping alerts to a strategy; every criterion given must hold.

    Attributes:
        strategy: Name of the strategy this rule picks.
        kinds: Alert kinds the rule applies to (any); empty means every kind.
        sources: Issuers (``LVK``, ``Swift``...), compared case-insensitively; empty means any.
        classes: Classification keys whose probabilities are summed (``BNS``, ``NSBH``...).
        min_class_probability: The sum over ``classes`` must reach this.
        min_properties: Source properties that must each reach a value (``HasNS: 0.5``).
    """

    model_config = ConfigDict(extra="forbid")

    strategy: str
    kinds: list[AlertKind] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    classes: list[str] = Field(default_factory=list)
    min_class_probability: float = Field(default=0.5, ge=0, le=1)
    min_properties: dict[str, float] = Field(default_factory=dict)

    def matches(self, alert: Alert) -> bool:
        """True when the alert meets every criterion of this rule."""
        if self.kinds and alert.kind not in self.kinds:
            return False
        if self.sources and alert.source.lower() not in {s.lower() for s in self.sources}:
            return False
        if self.classes:
            total = sum(alert.classification.get(name, 0.0) for name in self.classes)
            if total < self.min_class_probability:
                return False
        return all(
            alert.properties.get(name, float("-inf")) >= value
            for name, value in self.min_properties.items()
        )


class ApprovalRules(BaseModel):
    """When spending telescope time needs a person's approval.

    Attributes:
        observation_types: Types that always need approval (RAPID_RESPONSE, TIME_CRITICAL).
        max_hours: More estimated telescope time than this for one alert needs approval.
        max_far_hz: An alert with a false-alarm rate above this (in Hz) needs approval.
        require_significant: An alert flagged ``significant=False`` (LVK) needs approval.
    """

    model_config = ConfigDict(extra="forbid")

    observation_types: list[ObservationType] = Field(
        default_factory=lambda: [ObservationType.RAPID_RESPONSE, ObservationType.TIME_CRITICAL]
    )
    max_hours: float = Field(default=12.0, ge=0)
    max_far_hz: float | None = Field(default=None, ge=0)
    require_significant: bool = True


class CandidateStrategies(BaseModel):
    """What a vetted candidate gets: strategy names of the book.

    Attributes:
        cadence: Point-source photometry, sent once the candidate passes vetting.
        spectrum: A spectrum (a spectrograph's strategy), sent after a person approves.
    """

    model_config = ConfigDict(extra="forbid")

    cadence: str
    spectrum: str


class StrategyBook(BaseModel):
    """Named strategies, the rules choosing among them, and the approval rules.

    Attributes:
        version: Format version of the book (1).
        strategies: Strategies by name.
        selection: Ordered rules; the first match wins.
        approval: When a person must approve.
        candidates: The strategies of a vetted candidate; None: candidates are not followed.
    """

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    strategies: dict[str, ObservingStrategy]
    selection: list[SelectionRule] = Field(default_factory=list)
    approval: ApprovalRules = Field(default_factory=ApprovalRules)
    candidates: CandidateStrategies | None = None

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("strategies"), Mapping):
            data = dict(data)
            data["strategies"] = {
                name: {"name": name, **dict(fields or {})}
                for name, fields in data["strategies"].items()
            }
        return data

    @model_validator(mode="after")
    def _check(self) -> StrategyBook:
        for name, strategy in self.strategies.items():
            if strategy.name != name:
                raise ValueError(f"strategy {name!r} is named {strategy.name!r} inside")
            spec = INSTRUMENTS.get(strategy.instrument_type)
            if spec is None:
                raise ValueError(
                    f"strategy {name!r}: unknown instrument type {strategy.instrument_type!r}; "
                    f"expected one of {sorted(INSTRUMENTS)}"
                )
            unknown = [f for f in strategy.filters if f not in spec.elements]
            unknown += [f for f in strategy.exposure_time_per_filter_s if f not in spec.elements]
            if unknown:
                raise ValueError(
                    f"strategy {name!r}: {spec.instrument_type} has no {spec.element} {unknown}; "
                    f"expected some of {list(spec.elements)}"
                )
            # The portal refuses a RAPID_RESPONSE window that opens after the submission
            # (observation-portal requestgroups/serializers.py), so later epochs cannot be one.
            if strategy.observation_type is ObservationType.RAPID_RESPONSE and strategy.epochs > 1:
                raise ValueError(
                    f"strategy {name!r}: a RAPID_RESPONSE strategy has one epoch (its window "
                    f"opens at submission), got {strategy.epochs}"
                )
        for index, rule in enumerate(self.selection):
            if rule.strategy not in self.strategies:
                raise ValueError(
                    f"selection rule {index} names strategy {rule.strategy!r}, "
                    f"which is not among {sorted(self.strategies)}"
                )
        if self.candidates is not None:
            self._check_candidates(self.candidates)
        return self

    def _check_candidates(self, candidates: CandidateStrategies) -> None:
        for role, name in (("cadence", candidates.cadence), ("spectrum", candidates.spectrum)):
            if name not in self.strategies:
                raise ValueError(
                    f"candidates.{role} names strategy {name!r}, "
                    f"which is not among {sorted(self.strategies)}"
                )
        spectrum = self.strategies[candidates.spectrum]
        if spec_for(spectrum.instrument_type).configuration_type != "SPECTRUM":
            raise ValueError(
                f"candidates.spectrum: strategy {candidates.spectrum!r} uses "
                f"{spectrum.instrument_type}, not a spectrograph"
            )


def load_strategies(source: str | Path | Mapping[str, Any] | None = None) -> StrategyBook:
    """Read and validate a strategy book.

    Args:
        source: A path to a YAML file, YAML text (a string containing a newline), an already
            parsed mapping, or None for the packaged ``followup/strategies/default.yaml``.

    Returns:
        The validated book.

    Raises:
        ValueError: The YAML is unreadable or the book is invalid (unknown instrument or
            filter, a rule naming a missing strategy, a value out of range); the message says
            which entry.
        FileNotFoundError: ``source`` names a file that does not exist.
    """
    if source is None:
        text = resources.files("followup").joinpath("strategies/default.yaml").read_text()
        data: Any = yaml.safe_load(text)
    elif isinstance(source, Mapping):
        data = source
    elif isinstance(source, str) and "\n" in source:
        data = yaml.safe_load(source)
    else:
        data = yaml.safe_load(Path(source).read_text())
    if not isinstance(data, Mapping):
        raise ValueError(f"a strategy book is a mapping, got {type(data).__name__}")
    try:
        return StrategyBook.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"invalid strategy book: {exc}") from exc


def choose_strategy(alert: Alert, strategies: StrategyBook) -> ObservingStrategy:
    """The strategy of the first selection rule the alert matches.

    Args:
        alert: The alert to follow up (not a retraction).
        strategies: The strategy book.

    Returns:
        A copy of the chosen strategy.

    Raises:
        ValueError: The alert is a retraction (nothing to observe).
        TargetingError: No rule matches the alert.
    """
    if alert.is_retraction:
        raise ValueError(f"{alert.event_id} is retracted: there is nothing to observe")
    for rule in strategies.selection:
        if rule.matches(alert):
            return strategies.strategies[rule.strategy].model_copy(deep=True)
    raise TargetingError(
        f"no observing strategy matches {alert.event_id} ({alert.kind.value} from {alert.source})"
    )


def estimate_hours(
    strategy: ObservingStrategy,
    *,
    n_requests: int | None = None,
    duration_s: float | None = None,
) -> float:
    """Telescope hours one alert's requests would use.

    Args:
        strategy: The strategy.
        n_requests: Requests to be sent (targets x epochs); ``max_targets * epochs`` by default.
        duration_s: Duration of one request in seconds (the portal's validate answer); by
            default estimated from the instrument table.

    Returns:
        Hours of telescope time.
    """
    count = strategy.max_targets * strategy.epochs if n_requests is None else n_requests
    seconds = duration_s if duration_s is not None else estimate_request_duration_s(strategy)
    return count * seconds / 3600.0


def needs_approval(
    strategy: ObservingStrategy,
    alert: Alert,
    *,
    rules: ApprovalRules,
    n_requests: int | None = None,
    duration_s: float | None = None,
) -> tuple[bool, str]:
    """Whether a person must approve observing this alert with this strategy, and why.

    Reasons (all that apply are given): an observation type listed in the rules; more
    telescope time than ``max_hours`` (see :func:`estimate_hours`); a false-alarm rate above
    ``max_far_hz``; an alert flagged not significant when ``require_significant``.

    Args:
        strategy: The chosen strategy.
        alert: The alert.
        rules: The approval rules (``StrategyBook.approval``).
        n_requests: Requests to be sent; ``max_targets * epochs`` by default.
        duration_s: Portal duration of one request in seconds, if known.

    Returns:
        ``(True, "reason; reason")`` or ``(False, "")``.
    """
    reasons = []
    if strategy.observation_type in rules.observation_types:
        reasons.append(f"observation type {strategy.observation_type.value} needs approval")
    hours = estimate_hours(strategy, n_requests=n_requests, duration_s=duration_s)
    if hours > rules.max_hours:
        reasons.append(f"{hours:.1f} h of telescope time is more than {rules.max_hours:g} h")
    if (
        rules.max_far_hz is not None
        and alert.far_hz is not None
        and alert.far_hz > rules.max_far_hz
    ):
        reasons.append(f"false-alarm rate {alert.far_hz:.3g} Hz is above {rules.max_far_hz:.3g} Hz")
    if rules.require_significant and alert.significant is False:
        reasons.append("the alert is flagged not significant")
    return (bool(reasons), "; ".join(reasons))


class StrategyEdit(BaseModel):
    """What a person may change on the telescope-time approval form.

    Attributes:
        filters: Filters to request, in order.
        exposure_time_s: Exposure time per frame in seconds.
        exposure_count: Frames per filter per epoch.
    """

    model_config = ConfigDict(extra="forbid")

    filters: list[str]
    exposure_time_s: float
    exposure_count: int


def edit_problems(
    strategy: ObservingStrategy,
    edit: StrategyEdit,
    *,
    rules: ApprovalRules,
    n_requests: int,
) -> list[str]:
    """Why a person's edit of ``strategy`` cannot be applied; empty when it can.

    The checks: at least one filter, each one the instrument has (the instrument table), none
    twice; an exposure time above 0 s and at most the instrument's ``max_exposure_s``; between 1
    and :data:`MAX_EXPOSURE_COUNT` frames; and telescope time (:func:`estimate_hours`) of at most
    ``rules.max_hours``, or of at most what the unedited plan asked for when that was already
    more (the person was shown that plan and approves it; an edit may not ask for more).

    Args:
        strategy: The strategy the form was filled from.
        edit: The form's filters and exposures.
        rules: The approval rules (their ``max_hours``).
        n_requests: Requests the plan sends (targets times epochs).

    Returns:
        One sentence per problem.
    """
    spec = spec_for(strategy.instrument_type)
    problems = []
    if not edit.filters:
        problems.append("choose at least one filter")
    unknown = [name for name in edit.filters if name not in spec.elements]
    if unknown:
        problems.append(
            f"{spec.instrument_type} has no {spec.element} {', '.join(unknown)} "
            f"(it has {', '.join(spec.elements)})"
        )
    if len(set(edit.filters)) != len(edit.filters):
        problems.append("a filter is listed twice")
    if not 0 < edit.exposure_time_s <= spec.max_exposure_s:
        problems.append(
            f"exposure time {edit.exposure_time_s:g} s is not between 0 and "
            f"{spec.max_exposure_s:g} s"
        )
    if not 1 <= edit.exposure_count <= MAX_EXPOSURE_COUNT:
        problems.append(
            f"{edit.exposure_count} frames per filter is not between 1 and {MAX_EXPOSURE_COUNT}"
        )
    if problems:
        return problems
    edited = strategy.model_copy(update=edit.model_dump())
    hours = estimate_hours(edited, n_requests=n_requests)
    limit = max(rules.max_hours, estimate_hours(strategy, n_requests=n_requests))
    if hours > limit:
        problems.append(
            f"the edit asks for {hours:.1f} h of telescope time, more than {limit:.1f} h "
            f"(max_hours {rules.max_hours:g} h, or the plan as shown)"
        )
    return problems


def live_until(strategy: ObservingStrategy, event_time: datetime) -> datetime:
    """Until when an event followed with ``strategy`` is live: new windows may be requested.

    ``followup_hours`` after the event when the strategy sets it; otherwise the cadence's span
    (the last epoch's window end) plus one more window, room for the last epoch to be requested
    once again.
    """
    hours = strategy.followup_hours
    if hours is None:
        hours = (strategy.epochs - 1) * strategy.cadence_hours + 2 * strategy.window_hours
    return event_time + timedelta(hours=hours)
