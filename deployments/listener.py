"""``python -m deployments.listener``: the alert listener as a process of its own.

The listener itself (:class:`flows.listener.Listener`, :func:`flows.listener.run_listener`) lives
with the flows it starts; this is its process entry point for the local stack and for
``followup listen``. The ``listener`` deployment (:func:`flows.listen.listen`) runs the same loop
as a long-running flow run instead.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from pathlib import Path

from deployments.processes import exit_deadline
from flows.listener import run_listener

__all__ = ["LISTENER_STOP_S", "RUNS_GRACE_S", "main"]

logger = logging.getLogger("deployments.listener")  # also when run as __main__

RUNS_GRACE_S = 1.0
"""Seconds running follow-up runs have after SIGTERM or SIGINT before their processes are stopped
(SIGINT: the engine marks them Crashed; SIGKILL as long again later)."""
LISTENER_STOP_S = 3.0
"""Seconds after SIGTERM or SIGINT when the process exits, whatever is still running."""


def main(argv: list[str] | None = None) -> None:
    """Run the listener until SIGINT or SIGTERM; then stop within ``LISTENER_STOP_S``.

    The streams finish their batch and commit its offsets (at most a poll interval), running
    follow-up runs get ``RUNS_GRACE_S``, and a shutdown that still hangs ends the process (and
    its worker processes) at ``LISTENER_STOP_S``.
    """
    parser = argparse.ArgumentParser(prog="python -m deployments.listener", description=__doc__)
    parser.add_argument("--listener-settings", default="default", help="ListenerSettings name")
    parser.add_argument("--name", default="default", help="name in heartbeat events")
    parser.add_argument("--ready-file", type=Path, help="touched once the listener is reading")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Prefect's logging configuration (set up on import) shows warnings only; the listener says
    # what it reads, starts and stops.
    for name in ("flows", "deployments"):
        logging.getLogger(name).setLevel(logging.INFO)
    stop = threading.Event()
    stopping: list[float] = []

    def on_signal(signum: int, frame: object) -> None:
        if not stop.is_set():
            stopping.append(time.monotonic())
            logger.info("%s: stopping", signal.Signals(signum).name)
            stop.set()
            exit_deadline(LISTENER_STOP_S)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    ready = args.ready_file.touch if args.ready_file else None
    listener = run_listener(
        args.listener_settings,
        stop=stop,
        name=args.name,
        on_ready=ready,
        runs_grace_s=RUNS_GRACE_S,
    )
    took = time.monotonic() - stopping[0] if stopping else 0.0
    logger.info("stopped in %.1f s; messages by outcome: %s", took, listener.counts)


if __name__ == "__main__":
    main()
