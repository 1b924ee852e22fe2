"""Tiny flows the dispatcher tests run in spawned worker processes."""

from __future__ import annotations

import os
import signal

from prefect import flow, task


@task
def double(x: int) -> int:
    return 2 * x


@flow(name="dispatch-probe")
def probe(x: int, die: bool = False) -> int:
    if die:
        os.kill(os.getpid(), signal.SIGKILL)
    return double(x) + os.getpid() * 0
