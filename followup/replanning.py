"""Re-planning an event without waste: each alert's plan becomes a version, diffed from the last.

:func:`record_plan_version` turns the plan of one alert into the event's next plan version
(:mod:`followup.planversions`): fields of the last version still worth the strategy's time are
kept, fields that fell below its minimum probability in the new map are dropped with the reason,
and the new map's best fields not yet planned are added. A rerun of the same alert gets the
version it made before, so rerunning never makes a second version.

:func:`current_targets` says which of the event's stored targets the latest version holds (what
``observe`` may request), and :func:`superseded_targets` which were dropped and not taken back
since, with the reason (what ``observe`` cancels at LCO). Both read only the ledger, so a rerun
reaches the same answer.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from followup.lco import RequestGroupSpec, make_group_name
from followup.ledger import Ledger
from followup.ledger.requests import attempt_of, request_filters_key
from followup.ledger.schema import PlanVersionRow, RequestRow
from followup.models import (
    Alert,
    LcoState,
    ObservationRequest,
    ObservingStrategy,
    Target,
    TargetKind,
)
from followup.planversions import PlanDiff, diff_plan, plan_fields, probability_now
from followup.skymap import SkyMap
from followup.strategies import estimate_hours
from followup.targeting import Plan, error_region_skymap

__all__ = [
    "CANCELLED_BY_PLAN",
    "PlanVersion",
    "alert_skymap",
    "current_targets",
    "record_plan_version",
    "superseded_targets",
    "version_targets",
]

logger = logging.getLogger(__name__)

CANCELLED_BY_PLAN = "cancelled: dropped by plan"
"""How the ledger's ``detail`` of a request cancelled because a plan version dropped it begins."""


class PlanVersion(BaseModel):
    """One version of an event's plan, as stored.

    Attributes:
        event_id: The event.
        version: 1 for the event's first alert, then one more per alert.
        alert_id: Ledger id of the alert that made it.
        alert_type: Its type (PRELIMINARY, UPDATE...).
        diff: What changed from the last version (``diff.fields`` is this version).
        hours: Telescope hours of the version's requests (fields times epochs).
        covered_probability: Probability the version's fields hold in its map.
        observable_probability: Probability observable in the strategy's window, when known.
        reused: True when a rerun found the version stored before.
    """

    model_config = ConfigDict(extra="forbid")

    event_id: str
    version: int
    alert_id: int | None = None
    alert_type: str = ""
    diff: PlanDiff = Field(default_factory=PlanDiff)
    hours: float = 0.0
    covered_probability: float = 0.0
    observable_probability: float | None = None
    reused: bool = False

    @classmethod
    def from_row(cls, row: PlanVersionRow, *, reused: bool = False) -> PlanVersion:
        """The version of a ledger row."""
        return cls(
            event_id=row.event_id,
            version=row.version,
            alert_id=row.alert_id,
            alert_type=row.alert_type,
            diff=PlanDiff.model_validate(row.diff),
            hours=row.hours,
            covered_probability=row.covered_probability,
            observable_probability=row.observable_probability,
            reused=reused,
        )

    def summary(self) -> str:
        """One line: version, counts, coverage and hours."""
        return (
            f"{self.event_id} plan v{self.version} ({self.alert_type or 'alert'}): "
            f"{self.diff.summary()}; covers {100 * self.covered_probability:.2f}% "
            f"in {self.hours:.1f} h"
        )

    def markdown(self) -> str:
        """The version's difference from the last as Markdown (for the approval form)."""
        return self.diff.markdown(version=self.version, hours=self.hours)


def alert_skymap(alert: Alert, *, use_combined_skymap: bool = True) -> SkyMap | None:
    """The map the planner uses for an alert: combined with a GRB's, its own, or its error circle."""
    combined = alert.external_coinc.combined_skymap if alert.external_coinc else None
    if combined and use_combined_skymap:
        return SkyMap.from_fits(combined)
    if alert.skymap:
        return SkyMap.from_fits(alert.skymap)
    if alert.position is not None and alert.position.error is not None:
        return error_region_skymap(alert.position)
    return None


def record_plan_version(
    ledger: Ledger,
    plan: Plan,
    strategy: ObservingStrategy,
    *,
    alert_id: int,
    alert: Alert | None = None,
    skymap: SkyMap | None = None,
    max_fields: int | None = None,
) -> PlanVersion:
    """Store the plan of one alert as the event's next version (or return the one it made).

    Args:
        ledger: The ledger.
        plan: The new alert's plan (:func:`followup.targeting.plan_targets`).
        strategy: The alert's strategy (its ``min_probability``, ``max_targets`` and ``epochs``).
        alert_id: Ledger id of the alert; a second call for it returns the stored version.
        alert: The alert, to read its map when fields of the last version need their
            probability in the new map (not needed when ``skymap`` is given).
        skymap: The new map, already decoded.
        max_fields: At most this many fields (default: the strategy's ``max_targets``).

    Returns:
        The version; ``reused`` when the alert had made it before.
    """
    event_id = plan.event_id
    earlier = ledger.plans.for_alert(event_id, alert_id)
    if earlier is not None:
        return PlanVersion.from_row(earlier, reused=True)
    limit = min(max_fields or strategy.max_targets, strategy.max_targets)
    candidates = plan_fields(plan.targets)
    for attempt in range(3):
        previous = ledger.plans.latest_fields(event_id)
        now: dict[str, float] = {}
        if previous:
            names = {c.name for c in candidates}
            sky = skymap
            if sky is None and alert is not None and any(f.name not in names for f in previous):
                sky = alert_skymap(alert)
            now = probability_now(previous, candidates, sky)
        diff = diff_plan(
            previous,
            candidates,
            now,
            min_probability=strategy.min_probability,
            max_fields=limit,
        )
        hours = estimate_hours(strategy, n_requests=len(diff.fields) * strategy.epochs)
        try:
            row = ledger.plans.add(
                event_id,
                diff,
                alert_id=alert_id,
                alert_type=plan.alert_type or "",
                hours=round(hours, 3),
                observable_probability=plan.observable_probability,
            )
        except IntegrityError:  # another alert of the event stored this version number first
            earlier = ledger.plans.for_alert(event_id, alert_id)
            if earlier is not None:
                return PlanVersion.from_row(earlier, reused=True)
            logger.info("%s: plan version raced (attempt %d); diffing again", event_id, attempt)
            continue
        return PlanVersion.from_row(row)
    raise RuntimeError(f"{event_id}: could not store a plan version after 3 attempts")


def current_targets(ledger: Ledger, event_id: str) -> list[str] | None:
    """Names of the targets the event's latest plan version holds, best first.

    Returns:
        None when the event has no plan version (its stored targets are all current).
    """
    row = ledger.plans.latest(event_id)
    if row is None:
        return None
    return [str(f["name"]) for f in row.fields]


def superseded_targets(ledger: Ledger, event_id: str) -> dict[str, str]:
    """Targets a plan version dropped and no later version took back, with the reason.

    Their requests still pending at LCO are to be cancelled. Targets no plan version ever held
    (a candidate's requests) are never listed.
    """
    versions = ledger.plans.versions(event_id)
    if not versions:
        return {}
    reasons: dict[str, str] = {}
    for row in versions:
        diff = PlanDiff.model_validate(row.diff)
        for field in diff.dropped:
            reasons[field.name] = (
                f"dropped by plan v{row.version} ({row.alert_type or 'alert'}): "
                f"{diff.reasons.get(field.name, 'not in the new plan')}"
            )
    current = {str(f["name"]) for f in versions[-1].fields}
    return {name: why for name, why in reasons.items() if name not in current}


def version_targets(plan: Plan, version: PlanVersion) -> list[Target]:
    """The targets a version adds, to be stored: the plan's own, else built from the version.

    A rerun may plan at a later time than the run that stored the version; the version's fields
    are what counts, so a field the new run did not choose is built from the version.
    """
    chosen = {t.name: t for t in plan.targets}
    targets = []
    for field in version.diff.added:
        target = chosen.get(field.name)
        if target is None:
            target = Target(
                name=field.name,
                ra=field.ra % 360.0,
                dec=field.dec,
                kind=TargetKind(field.kind),
                rank=len(targets) + 1,
                probability=min(max(field.probability, 0.0), 1.0),
                instrument_type=field.instrument_type,
            )
        targets.append(target)
    return targets


def _cancelled_by_plan(row: RequestRow) -> bool:
    return row.state == LcoState.CANCELED and (row.detail or "").startswith(CANCELLED_BY_PLAN)


def again_after_cancel(
    ledger: Ledger,
    planned: list[tuple[ObservationRequest, RequestGroupSpec]],
    *,
    plan: str,
) -> list[tuple[ObservationRequest, RequestGroupSpec]]:
    """The planned requests, each re-added field's as a new attempt of its cancelled request.

    A field a plan version dropped (its requests cancelled) and a later one takes back must be
    requested again, not found cancelled in the ledger. Its request becomes attempt ``n + 1``
    of the same (target, filters, epoch) when the latest attempt was cancelled by a plan, with a
    deterministic name; when a later attempt exists already, the request is that one, so a
    rerun finds it and sends nothing twice.

    Args:
        ledger: The ledger.
        planned: The requests of the current version (first attempts).
        plan: The strategy's name (part of the group name).

    Returns:
        ``planned`` with the re-added fields' requests renamed.
    """
    if not planned:
        return planned
    event_id = planned[0][0].event_id
    names = {t.id: t.name for t in ledger.events.targets(event_id)}
    latest: dict[tuple[str, str, int], RequestRow] = {}
    for row in ledger.requests.for_event(event_id):
        key = (names.get(row.target_id, ""), row.filters_key.partition(";a")[0], row.epoch)
        if key not in latest or attempt_of(row) > attempt_of(latest[key]):
            latest[key] = row
    out = []
    for request, spec in planned:
        row = latest.get((request.target_name, request_filters_key(request), request.epoch))
        if row is not None and _cancelled_by_plan(row):
            attempt = attempt_of(row) + 1
            name = make_group_name(
                event_id,
                request.target_name,
                epoch=request.epoch,
                filters=request.filters,
                plan=plan,
                attempt=attempt,
            )
            request = request.model_copy(update={"attempt": attempt, "group_name": name})
            spec = spec.model_copy(update={"group_name": name})
        elif row is not None and attempt_of(row) > request.attempt:
            # Asked again before (after a cancellation or an expired window): that is the one.
            name = row.group_name
            request = request.model_copy(update={"attempt": attempt_of(row), "group_name": name})
            spec = spec.model_copy(update={"group_name": name})
        out.append((request, spec))
    return out
