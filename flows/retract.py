"""Flow ``retract``: a retraction cancels every pending request of its event, within seconds."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.states import Cancelling

from flows.events import REQUEST_CANCELED, emit_followup_event
from flows.observe import requests_rows
from flows.pointings import update_treasure_map
from flows.runtime import load_runtime
from followup.http import client_settings
from tasks.artifacts import publish_table
from tasks.lco import cancel_requests, refresh_states

__all__ = ["event_tag", "retract"]

_ACTIVE = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]


def event_tag(event_id: str) -> str:
    """The tag every follow-up run of an event carries, so a retraction can find them."""
    return f"event:{event_id}"


def _cancel_running_followups(event_id: str, own_run_ids: set[str]) -> list[str]:
    """Ask Prefect to cancel active runs of the event (they would submit more requests)."""
    cancelled = []
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[event_tag(event_id)]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=_ACTIVE)),
            )
        )
        for run in runs:
            if str(run.id) in own_run_ids:
                continue
            client.set_flow_run_state(run.id, Cancelling(message=f"{event_id} was retracted"))
            cancelled.append(run.name)
    return cancelled


@flow(name="retract", flow_run_name="retract-{event_id}")
def retract(event_id: str, settings: str = "default") -> list[dict]:
    """Cancel everything still planned for a retracted event.

    Marks the event retracted in the ledger (so no run submits anything more), cancels the event's
    active follow-up runs, then cancels at LCO every request that may still be observed; requests
    already finished are left alone and their state recorded.

    Returns:
        The event's requests table after cancellation.
    """
    from prefect.runtime import flow_run

    logger = get_run_logger()
    runtime = load_runtime(settings)
    runtime.ledger.events.mark_retracted(event_id)
    parents = {str(flow_run.id)} | (
        {str(flow_run.root_flow_run_id)} if flow_run.root_flow_run_id else set()
    )
    stopped = _cancel_running_followups(event_id, parents)
    if stopped:
        logger.info("cancelling runs of %s: %s", event_id, ", ".join(stopped))
    portal = runtime.settings.lco.get_portal_client()
    refresh_states(portal, runtime.ledger, event_id)
    for result in cancel_requests(portal, runtime.ledger, event_id):
        emit_followup_event(
            REQUEST_CANCELED,
            event_id,
            payload={"canceled": result.canceled, "state": result.state, "message": result.message},
            group=result.group_name,
        )
    rows = requests_rows(runtime.ledger, event_id)
    publish_table("requests", event_id, rows, f"LCO requests of {event_id} after the retraction")
    update_treasure_map(event_id, settings)  # cancels the planned pointings
    return rows
