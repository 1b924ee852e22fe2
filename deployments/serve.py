"""Every deployment of followup, served from one process (small setups, the demo, drills).

``python -m deployments.serve --settings sandbox`` registers the deployments with their triggers
and schedules and runs their flows here. Bigger setups use ``prefect.yaml`` with a process work
pool and workers instead; the deployments are the same (``tests/test_prefect_yaml.py`` keeps the
two in step).

SIGTERM and SIGINT stop it within seconds: the flow-run processes get SIGTERM, are killed after
``FLOW_RUNS_STOP_S`` and their runs end Crashed (they can be retried); whatever still runs after
``SERVE_STOP_S`` (Prefect's own shutdown gives each flow-run process 30 s, and retries a server that
is gone) is cut short.

Triggers fire only for events labelled ``followup.started-by: trigger``: a listener that starts
runs itself (the default, for speed) labels its events ``listener``, so no alert gets two runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import threading
from typing import Any

import psutil
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import EntrypointType
from prefect.events import DeploymentEventTrigger
from prefect.runner import Runner
from prefect.schedules import Cron, Interval

from blocks import StartedBy
from deployments.processes import SERVE_READY, descendants, exit_deadline, terminate_tree
from flows.candidate import follow_candidate
from flows.drill import drill
from flows.events import ALERT_ACCEPTED, ALERT_RETRACTED
from flows.followup import followup
from flows.frames import process_frames
from flows.listen import listen
from flows.maintenance import refresh_requests, rerun_photometry
from flows.observe import observe
from flows.report import report
from flows.retract import retract
from flows.targets import select_targets
from followup.http import client_settings

__all__ = ["RERUN_PHOTOMETRY_CRON", "QuickRunner", "build_deployments", "main", "stop_flow_runs"]

logger = logging.getLogger("deployments.serve")

# Entrypoints name modules (``flows.followup:followup``), not files: Prefect puts a script's folder
# first on sys.path, where ``flows/followup.py`` would shadow the ``followup`` package.
MODULE = EntrypointType.MODULE_PATH

RERUN_PHOTOMETRY_CRON = "0 12 * * *"
"""``rerun-photometry`` runs daily at 12:00 UTC, after the nights at Tololo and McDonald."""

FLOW_RUNS_STOP_S = 1.5
"""Seconds the flow-run processes have after SIGTERM before they are killed."""
SERVE_STOP_S = 3.0
"""Seconds after SIGTERM or SIGINT when the serving process exits, whatever is still running."""


class QuickRunner(Runner):
    """Prefect's runner, stopping within seconds on SIGTERM and SIGINT.

    Prefect's own shutdown gives each flow-run process 30 s in turn; this one gives all of them
    ``FLOW_RUNS_STOP_S`` together, kills what is left, marks their runs Crashed (unless they
    ended), and lets the runner finish until ``SERVE_STOP_S``.
    """

    def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
        """Stop the flow-run processes and the runner; exit by ``SERVE_STOP_S`` at the latest."""
        if not getattr(self, "_quick_stop", False):
            self._quick_stop = True
            exit_deadline(SERVE_STOP_S, code=0)
            threading.Thread(
                target=stop_flow_runs,
                args=(descendants(os.getpid()),),
                name="stop-flow-runs",
                daemon=True,
            ).start()
        super().handle_sigterm(*args, **kwargs)


def stop_flow_runs(processes: list[psutil.Process]) -> list[str]:
    """Stop flow-run processes (SIGTERM, SIGKILL after ``FLOW_RUNS_STOP_S``); crash their runs.

    A process's run is the ``PREFECT__FLOW_RUN_ID`` of its environment (Prefect sets it for the
    engine). A run killed before it could say so itself is marked Crashed: it would otherwise stay
    Running, and its retry would wait for a run that never ends.

    Returns:
        Ids of the runs marked Crashed here.
    """
    runs = set()
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if run := process.environ().get("PREFECT__FLOW_RUN_ID"):
                runs.add(run)
    terminate_tree(processes, grace=FLOW_RUNS_STOP_S)
    if not runs:
        return []
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    crashed = []
    try:
        with get_client(sync_client=True, httpx_settings=client_settings()) as client:
            for run in sorted(runs):
                state = client.read_flow_run(run).state
                if state is None or not state.is_final():
                    client.set_flow_run_state(
                        run, Crashed(message="deployments.serve stopped while it ran"), force=True
                    )
                    crashed.append(run)
    except Exception:  # the server may be stopping too; the runs stay as they are
        logger.exception("could not mark the stopped flow runs crashed")
    return crashed


def _event_trigger(name: str, event: str, parameters: dict[str, Any]) -> DeploymentEventTrigger:
    return DeploymentEventTrigger(
        name=name,
        expect={event},
        match={
            "prefect.resource.id": "followup.event.*",
            "followup.started-by": StartedBy.TRIGGER.value,
        },
        parameters=parameters,
    )


def build_deployments(
    settings: str = "default",
    listener_settings: str = "default",
    *,
    refresh_interval_s: float = 300,
) -> list[Any]:
    """The deployments, bound to the settings documents they use.

    ``prefect.yaml`` declares the same deployments for a work pool (with the ``default``
    documents and a 300 s refresh interval).
    """
    stage = {"settings": settings}
    return [
        followup.to_deployment(
            entrypoint_type=MODULE,
            name="followup",
            description="The whole loop for one accepted alert.",
            parameters=stage,
            triggers=[
                _event_trigger(
                    "followup-on-accepted-alert",
                    ALERT_ACCEPTED,
                    {
                        # A resource label is a string; the payload keeps the alert id an integer.
                        "alert_id": "{{ event.payload.alert_id }}",
                        "event_id": "{{ event.resource['prefect.resource.name'] }}",
                        "alert_type": "{{ event.resource['followup.alert-type'] }}",
                        "settings": settings,
                    },
                )
            ],
        ),
        retract.to_deployment(
            entrypoint_type=MODULE,
            name="retract",
            description="Cancel everything planned for a retracted event.",
            parameters=stage,
            triggers=[
                _event_trigger(
                    "retract-on-retraction",
                    ALERT_RETRACTED,
                    {
                        "event_id": "{{ event.resource['prefect.resource.name'] }}",
                        "settings": settings,
                    },
                )
            ],
        ),
        refresh_requests.to_deployment(
            entrypoint_type=MODULE,
            name="refresh-requests",
            description="One batched LCO status query; move completed requests on.",
            parameters=stage,
            schedules=[Interval(refresh_interval_s, timezone="UTC")],
        ),
        rerun_photometry.to_deployment(
            entrypoint_type=MODULE,
            name="rerun-photometry",
            description="Nightly: measure new frames and report what changed.",
            parameters=stage,
            schedules=[Cron(RERUN_PHOTOMETRY_CRON, timezone="UTC")],
        ),
        drill.to_deployment(
            entrypoint_type=MODULE,
            name="drill",
            description="Replay a mock alert through the whole loop (test alerts only).",
            parameters={"listener_settings": listener_settings},
        ),
        listen.to_deployment(
            entrypoint_type=MODULE,
            name="listener",
            description="The alert listener: runs until cancelled; start one run of it.",
            parameters={"listener_settings": listener_settings, "name": listener_settings},
            # One listener per deployment: a second run is cancelled rather than queued.
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
        ),
        select_targets.to_deployment(
            name="select-targets", parameters=stage, entrypoint_type=MODULE
        ),
        observe.to_deployment(name="observe", parameters=stage, entrypoint_type=MODULE),
        process_frames.to_deployment(
            name="process-frames", parameters=stage, entrypoint_type=MODULE
        ),
        report.to_deployment(name="report", parameters=stage, entrypoint_type=MODULE),
        follow_candidate.to_deployment(
            entrypoint_type=MODULE,
            name="follow-candidate",
            description=(
                "A vetted candidate: its MuSCAT cadence, then a FLOYDS spectrum once approved."
            ),
            parameters=stage,
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    """Serve every deployment until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m deployments.serve", description=__doc__)
    parser.add_argument("--settings", default="default", help="FollowupSettings document name")
    parser.add_argument("--listener-settings", default="default", help="ListenerSettings name")
    parser.add_argument("--refresh-interval", type=float, default=300.0, help="seconds")
    parser.add_argument("--limit", type=int, default=4, help="most concurrent runs")
    args = parser.parse_args(argv)
    # Schedules stay active while serve is down: their runs wait (Late) and run when it is back,
    # and stopping does not spend a request per deployment on pausing them.
    runner = QuickRunner(limit=args.limit, pause_on_shutdown=False)
    # Before the runner starts (it sets its own SIGTERM handler then), Ctrl-C is handled alike.
    signal.signal(signal.SIGINT, runner.handle_sigterm)
    signal.signal(signal.SIGTERM, runner.handle_sigterm)
    deployments = build_deployments(
        args.settings, args.listener_settings, refresh_interval_s=args.refresh_interval
    )
    for deployment in deployments:
        runner.add_deployment(deployment)
    print(f"{SERVE_READY}{len(deployments)} deployments; Ctrl-C or SIGTERM stops", flush=True)
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        asyncio.run(runner.start())


if __name__ == "__main__":
    main()
