"""What the tests that run a whole local stack share: polling, run look-ups, and pointing this
process at the stack's Prefect server for as long as a module uses it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from deployments.stack import LocalStack

S = TypeVar("S", bound=LocalStack)


def wait_for(check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy or ``timeout`` seconds pass.

    Returns:
        The first truthy value, or the value of one last call after the timeout.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    return check()


def flow_runs(name: str) -> list[Any]:
    """Flow runs with exactly this name, on the server this process points at."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
        )


@contextmanager
def serving(stack: S) -> Iterator[S]:
    """Start ``stack`` with this process pointed at its server; stop it and put things back.

    The stack sets PREFECT_API_URL and PREFECT_HOME in the environment and another module's
    session server may be active in the settings, so both are restored afterwards. Before the
    stack stops, what this process queued (events, logs) is sent to its server, and the workers
    bound to it are forgotten: later modules must get workers for their own server.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME")}
    try:
        with temporary_settings(updates={PREFECT_API_URL: stack.server.api_url}), stack:
            yield stack
            EventsWorker.drain_all()
            APILogWorker.drain_all()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
