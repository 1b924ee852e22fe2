"""Stage flow ``follow-candidate``: a vetted candidate's own cadence, then its spectrum if approved.

A candidate that passed vetting gets the book's point-source cadence (MuSCAT's g, r, i and z at
once), submitted exactly once; the run then pauses for a person to approve (or edit, or decline)
a FLOYDS spectrum, which carries the arcs and lamp flats LCO takes beside it. The question shows
the candidate's cutouts, light curve, score and vetting reasons (:mod:`flows.evidence`).

``process-frames`` starts one run per new vetted candidate (:func:`start_candidate_followups`):
a run of the ``follow-candidate`` deployment that it does not wait for (the spectrum's question
may stay open for hours), or, where nothing is deployed (a flow run in a notebook or a test), a
subflow. The ledger keeps the run started for each candidate, so each gets exactly one, whatever
reruns and retries do.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from flows.approvals import ask_for_strategy
from flows.evidence import candidate_evidence
from flows.observe import requests_rows, submit_planned
from flows.retract import event_tag
from flows.runtime import Runtime, load_runtime
from followup.cadence import (
    candidate_strategies,
    plan_candidate_cadence,
    plan_candidate_spectrum,
)
from followup.ledger.claims import holder_is_dead, new_owner
from followup.models import Alert, AlertDecision, ObservingStrategy, Target, utcnow
from tasks.artifacts import publish_table
from tasks.lco import decline_request

__all__ = ["FOLLOW_CANDIDATE", "follow_candidate", "start_candidate_followups"]

FOLLOW_CANDIDATE = "follow-candidate/follow-candidate"
"""The deployment ``process-frames`` starts for each new vetted candidate."""


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
    subject = f"spectrum:{event_id}:{candidate.name}"
    description = _describe(event_id, candidate, strategy)
    if not runtime.ledger.approvals.for_subject(subject):  # a person is to be asked: show why
        measurements = runtime.ledger.frames.measurements(event_id)
        evidence = candidate_evidence(runtime, event_id, candidate.name, measurements)
        description += f"\n\n---\n\n{evidence}" if evidence else ""
    decision, approved = ask_for_strategy(
        runtime.ledger,
        subject=subject,
        event_id=event_id,
        description=description,
        strategy=strategy,
        rules=runtime.strategies.approval,
        n_requests=1,
        timeout_s=runtime.settings.approval_timeout_s,
    )
    return decision.decided_by, approved


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
    submit_planned(portal, runtime.ledger, cadence, semesters)
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
        submit_planned(portal, runtime.ledger, [planned], semesters)
    rows = requests_rows(ledger, event_id)
    publish_table("requests", event_id, rows, f"LCO requests of {event_id}")
    return rows


def _start(event_id: str, name: str, settings: str) -> str | None:
    """Start the candidate's run: the deployment's without waiting, else a subflow.

    Returns:
        The run's id; None when the subflow fallback did not complete (a later run tries again).
    """
    logger = get_run_logger()
    parameters = {
        "event_id": event_id,
        "candidate_name": name,
        "vetted": True,
        "settings": settings,
    }
    try:
        run = run_deployment(
            FOLLOW_CANDIDATE,
            parameters=parameters,
            flow_run_name=f"candidate-{event_id}-{name}",
            tags=[event_tag(event_id)],
            # Should the ledger lose the answer (a crash between start and record), the next
            # start of the same candidate gets this run back instead of a second one.
            idempotency_key=f"follow-candidate:{settings}:{event_id}:{name}",
            timeout=0,
        )
    except ObjectNotFound:
        logger.info("%s: follow-candidate is not deployed; following %s here", event_id, name)
        state = follow_candidate(**parameters, return_state=True)
        if not state.is_completed():
            logger.warning("%s: follow-candidate of %s ended %s", event_id, name, state.name)
            return None
        return str(state.state_details.flow_run_id)
    logger.info("%s: started follow-candidate run %s for %s", event_id, run.name, name)
    return str(run.id)


def start_candidate_followups(runtime: Runtime, event_id: str) -> dict[str, str]:
    """Start ``follow-candidate`` once for each vetted candidate of the event that has no run.

    Each start is claimed in the ledger first (one compare-and-set on the target), and the run
    is recorded on the target with the claim released in one update; a candidate someone else
    is starting is left to them. A start that fails is released and logged, not raised: the
    frames' photometry goes on, and the next ``process-frames`` run tries again. Nothing starts
    while the strategy book names no candidate strategies (the runs could only fail).

    Returns:
        The run id started by this call for each candidate, by name.
    """
    logger = get_run_logger()
    ledger = runtime.ledger
    started: dict[str, str] = {}
    waiting = ledger.events.to_follow(event_id)
    if waiting and runtime.strategies.candidates is None:
        logger.info(
            "%s: the strategy book names no candidate strategies (candidates:): %d vetted "
            "candidate(s) not followed",
            event_id,
            len(waiting),
        )
        return started
    for row in waiting:
        owner = new_owner()
        dead = row.claimed_by if holder_is_dead(row.claimed_by) else None
        if not ledger.events.claim_follow(event_id, row.name, owner, take_from=dead):
            logger.info("%s: %s is being followed by %s", event_id, row.name, row.claimed_by)
            continue
        try:
            run_id = _start(event_id, row.name, runtime.name)
        except Exception:
            ledger.events.release_follow(event_id, row.name, owner)
            logger.exception("%s: could not start follow-candidate for %s", event_id, row.name)
            continue
        if run_id is None:
            ledger.events.release_follow(event_id, row.name, owner)
            continue
        ledger.events.set_follow_run(event_id, row.name, run_id, owner)
        started[row.name] = run_id
    return started
