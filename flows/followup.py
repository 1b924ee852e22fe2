"""The parent flow ``followup``: one alert through the whole loop.

select targets -> observe (approve, submit, share planned pointings on the Treasure Map, wait) ->
sky plot -> process frames (download, reduce, find candidates, measure) -> share pointings
(completed, cancelled) -> report (HERMES, TNS, GCN). Each stage is a flow of its own
that reads and writes the ledger, so each can also be rerun alone from the UI; rerunning the
parent, or any stage, submits and sends nothing twice.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.runtime import flow_run

from flows.frames import frames_task_runner, process_frames
from flows.observe import observe
from flows.pointings import update_treasure_map
from flows.report import report
from flows.retract import event_tag
from flows.runtime import load_runtime
from flows.targets import select_targets
from followup.http import client_settings
from followup.replanning import superseded_targets
from followup.summary import event_summary, summary_markdown
from tasks.alerts import load_alert
from tasks.artifacts import publish_markdown, publish_plot
from tasks.targets import plot_targets

__all__ = ["followup", "run_name"]


def run_name() -> str:
    """``followup-<event>-<alert type>``, e.g. ``followup-S250101ab-preliminary``."""
    parameters = flow_run.parameters
    event_id, alert_type = parameters.get("event_id"), parameters.get("alert_type")
    if event_id:
        return f"followup-{event_id}-{(alert_type or 'alert').lower()}"
    return f"followup-alert-{parameters.get('alert_id')}"


def _tag_run(event_id: str) -> None:
    """Tag this run with its event, so that a retraction can find and cancel it.

    Runs the listener starts carry the tag from their creation: the run context says so, and no
    API call is spent on the alert-to-telescope path.
    """
    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    if run is None:
        return
    tag = event_tag(event_id)
    if tag not in run.tags:
        with get_client(sync_client=True, httpx_settings=client_settings()) as client:
            client.update_flow_run(run.id, tags=[*run.tags, tag])


@flow(name="followup", flow_run_name=run_name)
def followup(
    alert_id: int, event_id: str = "", alert_type: str = "", settings: str = "default"
) -> dict[str, Any]:
    """Follow one accepted alert up: targets, telescope time, frames, photometry, reports.

    Args:
        alert_id: Ledger id of the alert (the listener passes it; so does a rerun).
        event_id: The event, for the run's name (read from the ledger when empty).
        alert_type: The alert type, for the run's name.
        settings: Name of the :class:`blocks.FollowupSettings` document to use.

    Returns:
        The event's summary (targets, requests, frames, measurements, reports).
    """
    logger = get_run_logger()
    runtime = load_runtime(settings)
    row, _ = runtime.ledger.alerts.get(alert_id)
    event_id = row.event_id
    _tag_run(event_id)
    event = runtime.ledger.events.get(event_id)
    if event is not None and event.retracted:
        logger.warning("%s was retracted: nothing to follow up", event_id)
        return event_summary(runtime.ledger, event_id).model_dump(mode="json")

    plan = select_targets(alert_id, event_id, settings)
    if plan.targets:
        observe(alert_id, event_id, settings)  # shares the planned pointings
        alert = load_alert(runtime.ledger, alert_id)
        publish_plot(
            "sky-plot",
            event_id,
            plot_targets(alert, plan),
            f"{event_id}: the credible region and the {plan.strategy} targets",
            plots_dir=runtime.settings.plots_dir,
            plots_base_url=runtime.settings.plots_base_url,
        )
        runner = frames_task_runner(runtime.settings.dask_address)
        process_frames.with_options(task_runner=runner)(alert_id, event_id, settings)
        update_treasure_map(event_id, settings)  # completed with their depths, or cancelled
        report(alert_id, event_id, settings)
    else:
        logger.warning("%s: no observable target (%d dropped)", event_id, len(plan.dropped))
        if superseded_targets(runtime.ledger, event_id):
            # The new map dropped every field: its pending requests are cancelled all the same.
            observe(alert_id, event_id, settings, wait=False)

    summary = event_summary(runtime.ledger, event_id)
    publish_markdown("summary", event_id, summary_markdown(summary), f"follow-up of {event_id}")
    return summary.model_dump(mode="json")
