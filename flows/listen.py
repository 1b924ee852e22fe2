"""Flow ``listen``: the alert listener as a long-running deployment run, until it is cancelled.

The run reads the Kafka streams of a :class:`blocks.ListenerSettings` document with
:func:`flows.listener.run_listener` and emits a ``followup.listener.heartbeat`` event every
``heartbeat_interval_s`` seconds (the automations in :mod:`deployments.automations` alarm when
they stop). It ends when its run is cancelled in the UI (or with ``prefect flow-run cancel``): a
watcher thread sees the run enter Cancelling, the streams stop reading and the run ends
Cancelled. A runner or worker that kills the process on cancellation ends it the same way.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from typing import Any

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import StateType
from prefect.runtime import flow_run
from prefect.states import Cancelled, State

from flows.listener import run_listener
from followup.http import client_settings

__all__ = ["listen", "watch_for_cancellation"]

_logger = logging.getLogger(__name__)
_STOPPING = {
    StateType.CANCELLING,
    StateType.CANCELLED,
    StateType.FAILED,
    StateType.CRASHED,
    StateType.COMPLETED,
}


def watch_for_cancellation(
    flow_run_id: str,
    stop: threading.Event,
    cancelled: threading.Event,
    interval_s: float,
    logger: logging.Logger | logging.LoggerAdapter = _logger,
) -> None:
    """Set ``stop`` (and ``cancelled``) once the run leaves Running for Cancelling or an end state.

    Runs in a daemon thread until ``stop`` is set by anyone. Errors reading the run (the API may
    be restarting) are retried at the next interval: a listener must not stop because the
    server blinked.
    """
    from prefect.client.orchestration import get_client

    while not stop.wait(interval_s):
        try:
            with get_client(sync_client=True, httpx_settings=client_settings()) as client:
                run = client.read_flow_run(flow_run_id)
        except Exception as exc:  # the API is down for a moment; the listener keeps reading
            logger.warning("could not read this run's state (%s); still listening", exc)
            continue
        if run.state is not None and run.state.type in _STOPPING:
            logger.info("this run is %s: stopping the listener", run.state.name)
            cancelled.set()
            stop.set()


@flow(name="listen", flow_run_name="listener-{name}")
def listen(
    listener_settings: str = "default", name: str = "default", check_interval_s: float = 5.0
) -> dict[str, Any] | State:
    """Run the alert listener until this run is cancelled.

    Args:
        listener_settings: Name of the :class:`blocks.ListenerSettings` document (streams, rules,
            who starts the follow-up runs, heartbeat interval).
        name: Name of this listener: its heartbeat resource is ``followup.listener.<name>``.
        check_interval_s: Seconds between looks at this run's state.

    Returns:
        The listener's counts by ingest outcome; a Cancelled state when it was cancelled.
    """
    logger = get_run_logger()
    stop, cancelled = threading.Event(), threading.Event()
    if flow_run.id:
        # A new thread starts with empty context variables: run the watcher in a copy of this
        # run's context (Prefect settings, API client configuration), and give it the logger.
        context = contextvars.copy_context()
        threading.Thread(
            target=context.run,
            args=(
                watch_for_cancellation,
                str(flow_run.id),
                stop,
                cancelled,
                check_interval_s,
                logger,
            ),
            name="cancellation-watcher",
            daemon=True,
        ).start()
    listener = run_listener(
        listener_settings,
        stop=stop,
        name=name,
        on_ready=lambda: logger.info("listener %s is reading its streams", name),
    )
    stop.set()
    counts = dict(listener.counts)
    logger.info("listener %s stopped; messages by outcome: %s", name, counts)
    if cancelled.is_set():
        return Cancelled(message=f"listener {name} stopped on request; handled {counts}")
    return counts
