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
from pathlib import Path

from flows.listener import run_listener

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Run the listener until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m deployments.listener", description=__doc__)
    parser.add_argument("--listener-settings", default="default", help="ListenerSettings name")
    parser.add_argument("--name", default="default", help="name in heartbeat events")
    parser.add_argument("--ready-file", type=Path, help="touched once the listener is reading")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ready = args.ready_file.touch if args.ready_file else None
    run_listener(args.listener_settings, stop=stop, name=args.name, on_ready=ready)


if __name__ == "__main__":
    main()
