"""Stage flow ``follow-candidate``: a vetted candidate's own cadence, then its spectrum if approved.

A candidate that passed vetting gets the book's point-source cadence (MuSCAT's g, r, i and z at
once), submitted exactly once; the run then pauses for a person to approve (or edit, or decline)
a FLOYDS spectrum, which carries the arcs and lamp flats LCO takes beside it.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.approvals import RequestApproval, ask
from flows.events import REQUEST_SUBMITTED, emit_followup_event
from flows.observe import requests_rows
from flows.runtime import Runtime, load_runtime
from followup.cadence import (
    PlannedRequest,
    candidate_strategies,
    plan_candidate_cadence,
    plan_candidate_spectrum,
)
from followup.lco import PortalClient, Semester, at_submission, build_request_group
from followup.models import Alert, AlertDecision, ObservingStrategy, Target, utcnow
from followup.observing import SubmitOutcome
from followup.strategies import StrategyEdit, edit_problems
from tasks.artifacts import publish_table
from tasks.lco import decline_request, submit_request

__all__ = ["follow_candidate"]


def _send(
    runtime: Runtime, portal: PortalClient, planned: list[PlannedRequest], semesters: list[Semester]
) -> None:
    for request, spec in planned:
        spec = at_submission(spec, now=utcnow(), semesters=semesters)
        request = request.model_copy(
            update={"window_start": spec.window_start, "window_end": spec.window_end}
        )
        result = submit_request(portal, runtime.ledger, request, build_request_group(spec))
        if result.outcome in {SubmitOutcome.SUBMITTED, SubmitOutcome.FOUND}:
            emit_followup_event(
                REQUEST_SUBMITTED,
                request.event_id,
                payload={"request_id": result.request_id, "group_id": result.group_id},
                group=request.group_name,
            )


def _describe(event_id: str, candidate: Target, strategy: ObservingStrategy) -> str:
    return "\n".join(
        [
            f"### Spectrum of candidate {candidate.name} ({event_id})",
            f"RA {candidate.ra:.5f}, Dec {candidate.dec:+.5f} (deg). It passed vetting and its "
            "MuSCAT cadence is requested.",
            "",
            f"Strategy **{strategy.name}**: {strategy.instrument_type}, slit "
            f"{', '.join(strategy.filters)}, {strategy.exposure_count} x "
            f"{strategy.exposure_time_s:.0f} s, {strategy.window_hours:g} h window; lamp flats "
            "and arcs before and after the spectrum.",
        ]
    )


def _approved_spectrum(
    runtime: Runtime, event_id: str, candidate: Target, strategy: ObservingStrategy
) -> tuple[str, ObservingStrategy | None]:
    """Who decided, and the spectrum strategy as approved (None: declined or timed out)."""
    decision, answer = ask(
        runtime.ledger,
        subject=f"spectrum:{event_id}:{candidate.name}",
        event_id=event_id,
        description=_describe(event_id, candidate, strategy),
        form=RequestApproval(
            filters=strategy.filters,
            exposure_time_s=strategy.exposure_time_s,
            exposure_count=strategy.exposure_count,
        ),
        timeout_s=runtime.settings.approval_timeout_s,
        check=lambda form: edit_problems(
            strategy,
            StrategyEdit(
                filters=form.filters,
                exposure_time_s=form.exposure_time_s,
                exposure_count=form.exposure_count,
            ),
            rules=runtime.strategies.approval,
            n_requests=1,
        ),
    )
    if not decision.approved:
        return decision.decided_by, None
    edit = {
        "filters": answer.filters,
        "exposure_time_s": answer.exposure_time_s,
        "exposure_count": answer.exposure_count,
    }
    return decision.decided_by, strategy.model_copy(update=edit)


@flow(name="follow-candidate", flow_run_name="candidate-{event_id}-{candidate_name}")
def follow_candidate(
    event_id: str, candidate_name: str, vetted: bool, settings: str = "default"
) -> list[dict]:
    """Follow a candidate that passed vetting: its cadence now, its spectrum once approved.

    Args:
        event_id: The event.
        candidate_name: A stored target of the event, of kind ``candidate``.
        vetted: Whether it passed vetting; a candidate that did not gets nothing.
        settings: The settings document.

    Returns:
        The requests table of the event.
    """
    logger = get_run_logger()
    runtime = load_runtime(settings)
    ledger = runtime.ledger
    row = ledger.events.get_target(event_id, candidate_name)
    if row is None:
        raise ValueError(f"{event_id} has no target {candidate_name!r}")
    candidate = Target.model_validate(row.data)
    if not vetted:
        logger.info("%s did not pass vetting: no telescope time", candidate_name)
        return requests_rows(ledger, event_id)
    _, spectrum = candidate_strategies(candidate, vetted=vetted, book=runtime.strategies)
    event = ledger.events.get(event_id)
    alerts = [a for a in ledger.alerts.for_event(event_id) if a.decision == AlertDecision.ACCEPTED]
    if event is None or event.retracted or not alerts:
        logger.warning("%s is retracted or has no accepted alert: not following", event_id)
        return requests_rows(ledger, event_id)
    portal = runtime.settings.lco.get_portal_client()
    semesters = portal.list_semesters(ending_after=utcnow())
    proposal = runtime.settings.lco.proposal_id
    runtime.fence(Alert.model_validate(alerts[-1].summary), "LCO")
    cadence = plan_candidate_cadence(
        event_id,
        candidate,
        vetted=vetted,
        book=runtime.strategies,
        proposal=proposal,
        now=utcnow(),
        semesters=semesters,
    )
    _send(runtime, portal, cadence, semesters)
    decided_by, approved = _approved_spectrum(runtime, event_id, candidate, spectrum)
    planned = plan_candidate_spectrum(
        event_id,
        candidate,
        vetted=vetted,
        book=runtime.strategies,
        proposal=proposal,
        now=utcnow(),
        semesters=semesters,
        strategy=approved,
    )
    if approved is None:
        decline_request(ledger, planned[0], f"spectrum declined by {decided_by}")
    else:
        _send(runtime, portal, [planned], semesters)
    rows = requests_rows(ledger, event_id)
    publish_table("requests", event_id, rows, f"LCO requests of {event_id}")
    return rows
