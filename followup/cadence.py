"""A cadence that reacts: expired epochs requested again; a vetted candidate's cadence and spectrum.

An epoch's request that ends ``WINDOW_EXPIRED`` with no frame taken is requested once more with a
new window (opening now, the strategy's ``window_hours`` long) while the event is live: not
retracted, and before :func:`followup.strategies.live_until`. Each new request is attempt ``n`` of
its epoch: the attempt goes into the group name (``..._e1a1_<hash>``) and into the ledger's key
(:func:`followup.ledger.requests.request_filters_key`), so submitting it goes through the same
exactly-once path (:func:`followup.observing.submit_once`) as every request, and a rerun plans the
same name again and finds it sent. At most ``strategy.rerequests`` attempts per epoch.

A candidate that passed vetting (:func:`plan_candidate_cadence`) is followed with the book's
``candidates.cadence`` strategy (MuSCAT's g, r, i and z at once); its spectrum
(:func:`plan_candidate_spectrum`, ``candidates.spectrum``, FLOYDS with its arcs and lamp flats)
is planned for the caller to put before a person.

Example:
    >>> for plan in plan_rerequests(ledger, "S250101ab", book, proposal="P", now=utcnow()):
    ...     note_rerequest(ledger, plan)  # before sending: why, on the expired request
    ...     submit_once(portal, ledger, plan.request, build_request_group(plan.spec))
    ...     record_rerequest(ledger, plan)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from followup.exceptions import TargetingError
from followup.lco import (
    RequestGroupSpec,
    Semester,
    clip_to_semester,
    epoch_windows,
    make_group_name,
)
from followup.ledger import ApprovalRow, FrameRow, Ledger, RequestRow
from followup.ledger.requests import attempt_of, base_filters
from followup.models import (
    Alert,
    AlertDecision,
    LcoState,
    ObservationRequest,
    ObservingStrategy,
    RequestStatus,
    Target,
    TargetKind,
)
from followup.replanning import superseded_targets
from followup.strategies import StrategyBook, choose_strategy, live_until

__all__ = [
    "PlannedRequest",
    "Rerequest",
    "candidate_strategies",
    "events_with_expired_requests",
    "note_rerequest",
    "plan_candidate_cadence",
    "plan_candidate_spectrum",
    "plan_epochs",
    "plan_rerequests",
    "record_rerequest",
]

PlannedRequest = tuple[ObservationRequest, RequestGroupSpec]
"""A request as the ledger keys it, and what its payload is built from."""

logger = logging.getLogger(__name__)


class Rerequest(BaseModel):
    """One epoch to request again.

    Attributes:
        request: The new request as the ledger keys it (its ``attempt`` above the expired one's).
        spec: What to build its payload from (time it with ``at_submission`` before sending).
        replaces: Group name of the request whose window closed without frames.
        reason: Why, in a sentence, for the ledger's ``detail`` of both requests.
    """

    model_config = ConfigDict(frozen=True)

    request: ObservationRequest
    spec: RequestGroupSpec
    replaces: str
    reason: str


def events_with_expired_requests(ledger: Ledger) -> list[str]:
    """Events with a submitted request whose window closed (``WINDOW_EXPIRED``), sorted."""
    with ledger.session() as s:
        return sorted(
            set(
                s.scalars(
                    select(RequestRow.event_id).where(
                        RequestRow.local_status == RequestStatus.SUBMITTED,
                        RequestRow.state == LcoState.WINDOW_EXPIRED,
                    )
                )
            )
        )


def _rows_with_frames(ledger: Ledger, event_id: str) -> set[int]:
    with ledger.session() as s:
        return set(
            s.scalars(
                select(FrameRow.request_row_id)
                .join(RequestRow, FrameRow.request_row_id == RequestRow.id)
                .where(RequestRow.event_id == event_id)
            )
        )


def _approved_forms(ledger: Ledger, event_id: str, target: str) -> list[dict]:
    """The approval forms of the event's telescope time, newest first.

    The subjects the flows ask on: ``requests:<event>:<alert type>`` (flows/observe.py) and
    ``spectrum:<event>:<candidate>`` (flows/candidate.py).
    """
    subjects = (ApprovalRow.subject.like(f"requests:{event_id}:%")) | (
        ApprovalRow.subject == f"spectrum:{event_id}:{target}"
    )
    with ledger.session() as s:
        rows = s.scalars(
            select(ApprovalRow)
            .where(subjects, ApprovalRow.approved.is_(True))
            .order_by(ApprovalRow.id.desc())
        )
        return [dict((row.data or {}).get("form") or {}) for row in rows]


def _as_approved(
    strategy: ObservingStrategy, filters: list[str], forms: list[dict]
) -> ObservingStrategy:
    """The strategy with the row's filters and the exposures a person approved for them.

    The attempt asks for no more than the person approved: the latest approved form with these
    filters gives the exposure time and count (as the observe flow applied the edit).
    """
    update: dict[str, object] = {"filters": filters}
    for form in forms:
        if form.get("filters") == filters:
            update |= {k: form[k] for k in ("exposure_time_s", "exposure_count") if k in form}
            break
    return strategy.model_copy(update=update)


def _latest_alert(ledger: Ledger, event_id: str) -> Alert | None:
    accepted = [
        a for a in ledger.alerts.for_event(event_id) if a.decision == AlertDecision.ACCEPTED
    ]
    return Alert.model_validate(accepted[-1].summary) if accepted else None


def _strategy_of(
    row: RequestRow, event_id: str, target: str, book: StrategyBook, alert: Alert | None
) -> ObservingStrategy | None:
    """The strategy a stored request was planned with: the one whose group name it carries.

    The name is a hash of (event, target, epoch, filters, strategy name, attempt), so trying each
    strategy of the book finds it; a name no strategy gives (a plan named otherwise) falls back
    to the strategy the event's latest alert chooses.
    """
    filters = base_filters(row)
    for name, strategy in book.strategies.items():
        candidate = make_group_name(
            event_id, target, epoch=row.epoch, filters=filters, plan=name, attempt=attempt_of(row)
        )
        if candidate == row.group_name:
            return strategy
    if alert is None or alert.is_retraction:
        return None
    try:
        return choose_strategy(alert, book)
    except TargetingError:
        return None


def _latest_attempts(rows: Sequence[RequestRow]) -> list[RequestRow]:
    """The latest attempt of each (target, filters, epoch)."""
    latest: dict[tuple[int, str, int], RequestRow] = {}
    for row in rows:
        key = (row.target_id, ",".join(base_filters(row)), row.epoch)
        if key not in latest or attempt_of(row) > attempt_of(latest[key]):
            latest[key] = row
    return list(latest.values())


def plan_rerequests(
    ledger: Ledger,
    event_id: str,
    book: StrategyBook,
    *,
    proposal: str,
    now: datetime,
    semesters: Sequence[Semester] = (),
) -> list[Rerequest]:
    """The epochs of an event to request again now, each with a new window.

    An epoch is requested again when its latest request is submitted, ``WINDOW_EXPIRED`` and has
    no frame, its field was not dropped by a later plan version
    (:func:`followup.replanning.superseded_targets`), its strategy allows another attempt
    (``rerequests``), and the event is live: not
    retracted and ``now`` before :func:`~followup.strategies.live_until` from the event time (the
    first alert's arrival when the alerts give none). A later attempt left ``claimed`` (a crash
    mid-submission) is planned again under its own name, so the caller's exactly-once submission
    looks it up before sending anything.

    Args:
        ledger: The ledger.
        event_id: The event.
        book: The strategy book the requests were planned with.
        proposal: LCO proposal id.
        now: The time of the decision (the new windows open then).
        semesters: The portal's semesters, to keep the new windows inside one.

    Returns:
        What to submit, in the ledger's order.
    """
    event = ledger.events.get(event_id)
    if event is None or event.retracted:
        return []
    alert = _latest_alert(ledger, event_id)
    event_time = (alert.event_time if alert else None) or event.first_alert_at
    targets = {t.id: Target.model_validate(t.data) for t in ledger.events.targets(event_id)}
    observed = _rows_with_frames(ledger, event_id)
    dropped = superseded_targets(ledger, event_id)
    plans = []
    for row in _latest_attempts(ledger.requests.for_event(event_id)):
        target = targets.get(row.target_id)
        if target is not None and target.name in dropped:
            continue  # a later plan version dropped the field: not requested again
        resume = row.local_status == RequestStatus.CLAIMED and attempt_of(row) > 0
        expired = (
            row.local_status == RequestStatus.SUBMITTED
            and row.state == LcoState.WINDOW_EXPIRED
            and row.id not in observed
        )
        if target is None or not (resume or expired):
            continue
        strategy = _strategy_of(row, event_id, target.name, book, alert)
        if strategy is None:
            logger.warning("%s: no strategy of the book planned it; not requested again", row)
            continue
        attempt = attempt_of(row) if resume else attempt_of(row) + 1
        until = live_until(strategy, event_time)
        if attempt > strategy.rerequests or now >= until:
            continue
        strategy = _as_approved(
            strategy, base_filters(row), _approved_forms(ledger, event_id, target.name)
        )
        plans.append(_plan(ledger, row, target, strategy, attempt, until, proposal, now, semesters))
    return plans


def _plan(
    ledger: Ledger,
    row: RequestRow,
    target: Target,
    strategy: ObservingStrategy,
    attempt: int,
    until: datetime,
    proposal: str,
    now: datetime,
    semesters: Sequence[Semester],
) -> Rerequest:
    filters = strategy.filters
    start, end = clip_to_semester(now, now + timedelta(hours=strategy.window_hours), semesters)
    name = make_group_name(
        row.event_id,
        target.name,
        epoch=row.epoch,
        filters=filters,
        plan=strategy.name,
        attempt=attempt,
    )
    replaces, closed_at = row.group_name, row.window_end
    if attempt == attempt_of(row):  # resuming a lost submission: ``row`` is the new attempt
        replaces = make_group_name(
            row.event_id,
            target.name,
            epoch=row.epoch,
            filters=filters,
            plan=strategy.name,
            attempt=attempt - 1,
        )
        previous = ledger.requests.find(replaces)
        closed_at = previous.window_end if previous is not None else None
    closed = f"{closed_at:%Y-%m-%d %H:%M} UTC" if closed_at else "its end"
    reason = (
        f"epoch {row.epoch} of {target.name}: the window of {replaces} closed at {closed} "
        f"without frames; requested again as {name} (attempt {attempt}) while "
        f"{row.event_id} is live, until {until:%Y-%m-%d %H:%M} UTC"
    )
    request, spec = _planned(
        row.event_id,
        target,
        strategy,
        proposal=proposal,
        name=name,
        epoch=row.epoch,
        window=(start, end),
        now=now,
        attempt=attempt,
        filters=filters,
        note=f"requested again: {replaces} closed unobserved",
    )
    return Rerequest(request=request, spec=spec, replaces=replaces, reason=reason)


def note_rerequest(ledger: Ledger, plan: Rerequest) -> None:
    """Record on the expired request why, and as what, it is requested again (before sending)."""
    if ledger.requests.find(plan.replaces) is not None:
        ledger.requests.update(plan.replaces, detail=plan.reason)


def record_rerequest(ledger: Ledger, plan: Rerequest) -> None:
    """Record on the new request why it was sent (after it reached the portal)."""
    ledger.requests.update(plan.request.group_name, detail=plan.reason)


# --- A vetted candidate's own cadence and spectrum ---------------------------------------------


def plan_epochs(
    event_id: str,
    target: Target,
    strategy: ObservingStrategy,
    *,
    proposal: str,
    now: datetime,
    semesters: Sequence[Semester] = (),
) -> list[PlannedRequest]:
    """One request per epoch of ``strategy``'s cadence for one target, windows from ``now``.

    Group names carry the strategy's name (``plan``), so a candidate's cadence and its spectrum
    never share a name or a ledger key with the event's own requests of the same target.
    """
    planned = []
    for epoch, (start, end) in enumerate(epoch_windows(strategy, now, semesters=semesters)):
        name = make_group_name(
            event_id, target.name, epoch=epoch, filters=strategy.filters, plan=strategy.name
        )
        planned.append(
            _planned(
                event_id,
                target,
                strategy,
                proposal=proposal,
                name=name,
                epoch=epoch,
                window=(start, end),
                now=now,
            )
        )
    return planned


def _planned(
    event_id: str,
    target: Target,
    strategy: ObservingStrategy,
    *,
    proposal: str,
    name: str,
    epoch: int,
    window: tuple[datetime, datetime],
    now: datetime,
    attempt: int = 0,
    filters: list[str] | None = None,
    note: str = "",
) -> PlannedRequest:
    """The ledger's request and the portal's group spec of one epoch (one attempt) of a target."""
    start, end = window
    request = ObservationRequest(
        event_id=event_id,
        target_name=target.name,
        epoch=epoch,
        attempt=attempt,
        group_name=name,
        filters=strategy.filters if filters is None else filters,
        observation_type=strategy.observation_type,
        window_start=start,
        window_end=end,
    )
    spec = RequestGroupSpec(
        target=target,
        strategy=strategy,
        proposal=proposal,
        group_name=name,
        window_start=start,
        window_end=end,
        planned_at=now,
        observation_note=note,
    )
    return request, spec


def candidate_strategies(
    candidate: Target, *, vetted: bool, book: StrategyBook
) -> tuple[ObservingStrategy, ObservingStrategy]:
    """The cadence and spectrum strategies of a candidate that passed vetting.

    Raises:
        ValueError: The target is not a candidate, it did not pass vetting, or the book names no
            candidate strategies.
    """
    if candidate.kind is not TargetKind.CANDIDATE:
        raise ValueError(f"{candidate.name} is a {candidate.kind.value}, not a candidate")
    if not vetted:
        raise ValueError(f"{candidate.name} did not pass vetting: it gets no telescope time")
    if book.candidates is None:
        raise ValueError("the strategy book names no candidate strategies (candidates:)")
    strategies = book.strategies
    return strategies[book.candidates.cadence], strategies[book.candidates.spectrum]


def plan_candidate_cadence(
    event_id: str,
    candidate: Target,
    *,
    vetted: bool,
    book: StrategyBook,
    proposal: str,
    now: datetime,
    semesters: Sequence[Semester] = (),
) -> list[PlannedRequest]:
    """The point-source cadence of a vetted candidate (the book's ``candidates.cadence``).

    Raises:
        ValueError: See :func:`candidate_strategies`.
    """
    cadence, _ = candidate_strategies(candidate, vetted=vetted, book=book)
    return plan_epochs(
        event_id, candidate, cadence, proposal=proposal, now=now, semesters=semesters
    )


def plan_candidate_spectrum(
    event_id: str,
    candidate: Target,
    *,
    vetted: bool,
    book: StrategyBook,
    proposal: str,
    now: datetime,
    semesters: Sequence[Semester] = (),
    strategy: ObservingStrategy | None = None,
) -> PlannedRequest:
    """The spectrum of a vetted candidate, to be sent once a person approves.

    Args:
        event_id: The event.
        candidate: The candidate (a stored target of kind ``candidate``).
        vetted: Whether it passed vetting.
        book: The strategy book (its ``candidates.spectrum``).
        proposal: LCO proposal id.
        now: When the window opens.
        semesters: The portal's semesters.
        strategy: The spectrum strategy as the person approved it (edited slit or exposure);
            the book's by default.

    Raises:
        ValueError: See :func:`candidate_strategies`.
    """
    _, spectrum = candidate_strategies(candidate, vetted=vetted, book=book)
    [planned] = plan_epochs(
        event_id,
        candidate,
        (strategy or spectrum).model_copy(update={"epochs": 1}),
        proposal=proposal,
        now=now,
        semesters=semesters,
    )
    return planned
