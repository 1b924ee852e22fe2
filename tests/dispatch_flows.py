"""Tiny flows the dispatcher tests run in spawned worker processes."""

from __future__ import annotations

import os
import signal
import time

from prefect import flow, task

WARMED: list[str] = []
"""What the worker's warmers did (each worker process has its own)."""


def warm(tag: str) -> None:
    """A warmer with an argument."""
    WARMED.append(tag)


@task
def double(x: int) -> int:
    return 2 * x


@flow(name="dispatch-probe-child")
def doomed_child() -> None:
    """A subflow whose process is killed under it."""
    os.kill(os.getpid(), signal.SIGKILL)


@flow(name="dispatch-probe")
def probe(
    x: int,
    die: bool = False,
    warmed: str = "",
    sleep_s: float = 0.0,
    die_in_subflow: bool = False,
) -> int:
    time.sleep(sleep_s)
    if die:
        os.kill(os.getpid(), signal.SIGKILL)
    if die_in_subflow:
        doomed_child()
    if warmed and warmed not in WARMED:
        raise RuntimeError(f"the worker was not warmed with {warmed!r}: {WARMED}")
    return double(x) + os.getpid() * 0
