"""Supervised child processes: start them so they die with us, stop them within a deadline.

Every process the project starts for a stack (Prefect server, sandbox, serve, listener, workers,
Dask) is a :class:`ManagedProcess`: it runs in a process group of its own, so a signal reaches its
helpers too, and on Linux it is told to receive SIGTERM when its parent dies
(``PR_SET_PDEATHSIG``), so a killed supervisor leaves nothing behind. :func:`stop_all` stops
several at once: the polite signal to every group, one shared grace period, then SIGKILL to what
is left, including descendants that moved to sessions of their own (Prefect starts flow-run
processes that way). :func:`stop_on_signals` makes SIGTERM and SIGINT run the registered
clean-ups (:func:`on_shutdown`: a stack's ``stop``) in a thread and exit; a second signal during
the clean-up does not interrupt it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

import httpx
import psutil

from followup.http import tls_context

__all__ = [
    "SERVE_READY",
    "ManagedProcess",
    "ProcessFailed",
    "descendants",
    "die_with_parent",
    "exit_deadline",
    "free_port",
    "http_ok",
    "on_shutdown",
    "stop_all",
    "stop_on_signals",
    "stop_with_make",
    "terminate_tree",
    "wait_until",
]

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
"""``prctl`` option: the signal this process receives when the thread that created it exits."""

SERVE_READY = "serving "
"""What ``deployments.serve`` prints once its deployments are registered, as its runner starts."""

_prctl: Callable[..., int] | None = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError, AttributeError):
        _prctl = ctypes.CDLL(None, use_errno=True).prctl


class ProcessFailed(RuntimeError):
    """A supervised process exited early or never became ready; the message quotes its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when a GET of ``url`` answers 2xx."""
    try:
        return httpx.get(url, timeout=timeout, verify=tls_context()).is_success
    except httpx.HTTPError:
        return False


def wait_until(check: Callable[[], bool], *, timeout: float, interval: float = 0.1) -> bool:
    """Poll ``check`` until it returns True or ``timeout`` seconds pass; return the last result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


# ---------------------------------------------------------------------------------- processes


def die_with_parent(parent_pid: int | None = None, sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (no-op elsewhere).

    Called in the child (``preexec_fn``, or a pool initializer). Linux delivers the signal when
    the *thread* that started the child ends, so supervisors start children from their main
    thread. When the parent is already gone (``parent_pid`` given and no longer the parent), the
    process exits at once.
    """
    if _prctl is None:
        return
    _prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def _child_setup(parent_pid: int) -> None:
    """In a managed child after fork: stop signals act by default, and it dies with its parent.

    A shell starts background jobs with SIGINT ignored (``make production &``, ``nohup``), and an
    ignored signal stays ignored across exec: the child would never see the SIGINT that
    :func:`stop_all` sends first, and would be killed after the grace instead of stopping.
    """
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    die_with_parent(parent_pid)


def stop_with_make() -> None:
    """Under ``make`` (``MAKELEVEL`` is set), receive SIGTERM when make ends.

    GNU make does not pass SIGTERM on to the recipe it runs: ``make production`` would end and
    leave the stack running. A recipe run directly by make has make as its parent, so asking for
    the parent's death signal carries the SIGTERM over (Linux). Outside make nothing changes: a
    service started from a shell must outlive that shell.
    """
    if os.environ.get("MAKELEVEL"):
        die_with_parent(os.getppid())


def descendants(pid: int) -> list[psutil.Process]:
    """Every living descendant of ``pid`` (children, grandchildren...), whatever their group."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal(process: psutil.Process, sig: int) -> None:
    with contextlib.suppress(psutil.Error):
        process.send_signal(sig)


def terminate_tree(
    processes: Sequence[psutil.Process], *, sig: int = signal.SIGTERM, grace: float = 3.0
) -> list[int]:
    """Send ``sig`` to ``processes``, wait up to ``grace`` seconds, SIGKILL the rest.

    Returns:
        Pids that had to be killed.
    """
    for process in processes:
        _signal(process, sig)
    alive = _wait_dead(processes, timeout=grace)
    for process in alive:
        _signal(process, signal.SIGKILL)
    _wait_dead(alive, timeout=2.0)
    return [p.pid for p in alive]


def _wait_dead(processes: Sequence[psutil.Process], *, timeout: float) -> list[psutil.Process]:
    """Wait until none of ``processes`` lives (zombies count as dead); return those alive.

    Children of this process are reaped on the way; orphans may stay zombies where the init
    process does not reap them, which is why zombies do not count.
    """
    deadline = time.monotonic() + timeout
    while True:
        for process in processes:
            with contextlib.suppress(psutil.Error, ChildProcessError):
                process.wait(timeout=0)
        alive = [p for p in processes if _alive(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


class ManagedProcess:
    """A child process in its own process group, with its output in a log file.

    Args:
        name: Short name used in messages and the log file name.
        argv: The command.
        env: Environment of the child (the parent's environment is not inherited implicitly).
        log_dir: Directory of the log file ``<name>.log``.
        cwd: Working directory.
        stop_signal: First signal sent by :meth:`stop` (SIGINT suits Prefect processes, which
            keep running after SIGTERM).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_dir: Path,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGINT,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = Path(log_dir) / f"{name}.log"
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_start = 0
        """Size of the log file when the child last started: what follows is its own output."""
        self.stop_s: float | None = None
        """Seconds the last :meth:`stop` (or :func:`stop_all`) took for this process."""
        self.returncode: int | None = None
        """The exit status the last :meth:`stop` saw (negative: the signal that ended it)."""

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        """True while the child is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> ManagedProcess:
        """Start the child; its stdout and stderr go to the log file (appended).

        The child leads a new session (its own process group) and receives SIGTERM if this
        process dies without stopping it (Linux).
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.log_start = log.seek(0, os.SEEK_END)
        parent = os.getpid()
        try:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=lambda: _child_setup(parent),
            )
        finally:
            log.close()
        return self

    def tail(self, lines: int = 30) -> str:
        """The last lines of the log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def output(self) -> str:
        """What the child wrote since it last started (the log is appended to across restarts)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self.log_start)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, check: Callable[[], bool], *, timeout: float) -> None:
        """Wait until ``check`` passes.

        Raises:
            ProcessFailed: The process exited first, or ``timeout`` passed.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise ProcessFailed(
                    f"{self.name} exited with code {self.proc.returncode if self.proc else '?'}; "
                    f"last lines of {self.log_path}:\n{self.tail()}"
                )
            if check():
                return
            time.sleep(0.1)
        raise ProcessFailed(
            f"{self.name} was not ready after {timeout:.0f} s; last lines of {self.log_path}:\n"
            f"{self.tail()}"
        )

    def stop(self, timeout: float = 6.0) -> None:
        """Stop the process, its group and its descendants (see :func:`stop_all`)."""
        stop_all([self], grace=timeout)


def stop_all(processes: Sequence[ManagedProcess], *, grace: float = 6.0) -> None:
    """Stop several managed processes at once, within ``grace`` seconds plus a kill.

    Each one's group gets its ``stop_signal`` at the same moment; after ``grace`` seconds, or as
    soon as every group is empty, SIGKILL goes to the groups and to every descendant seen at the
    start that is still alive (flow-run processes run in sessions of their own).
    Each process's :attr:`ManagedProcess.stop_s` records how long it took.
    """
    started = time.monotonic()
    running = [p for p in processes if p.proc is not None]
    tree: dict[int, list[psutil.Process]] = {}
    for process in running:
        assert process.proc is not None
        tree[process.proc.pid] = descendants(process.proc.pid)
        if process.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.proc.pid, process.stop_signal)
    deadline = started + grace
    pending = list(running)
    while pending:
        for process in list(pending):
            assert process.proc is not None
            pid = process.proc.pid
            if (
                process.proc.poll() is not None
                and not _group_alive(pid)
                and not any(_alive(d) for d in tree[pid])
            ):
                process.stop_s = time.monotonic() - started
                pending.remove(process)
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    for process in pending:
        assert process.proc is not None
        pid = process.proc.pid
        logger.warning("%s did not stop within %.1f s: killing it", process.name, grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        for child in tree[pid]:
            _signal(child, signal.SIGKILL)
    # SIGKILL ends a process at once; the waits only reap it (and stop at one second together).
    reap_by = time.monotonic() + 1.0
    for process in pending:
        assert process.proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.proc.wait(max(0.01, reap_by - time.monotonic()))
        _wait_dead(tree[process.proc.pid], timeout=max(0.0, reap_by - time.monotonic()))
        process.stop_s = time.monotonic() - started
    for process in running:
        assert process.proc is not None
        process.returncode = process.proc.poll()
        process.proc = None


# ---------------------------------------------------------------------------------- signals

_cleanups: list[Callable[[], None]] = []
_cleanups_lock = threading.Lock()


def on_shutdown(callback: Callable[[], None]) -> Callable[[], None]:
    """Have :func:`stop_on_signals` call ``callback`` when a signal stops the process.

    Callbacks run in the reverse order of registration. Returns a function that unregisters it
    (a stack unregisters its ``stop`` once stopped).
    """
    with _cleanups_lock:
        _cleanups.append(callback)

    def unregister() -> None:
        with _cleanups_lock, contextlib.suppress(ValueError):
            _cleanups.remove(callback)

    return unregister


def _run_cleanups_and_exit(signum: int) -> None:
    code = 128 + signum
    try:
        while True:
            with _cleanups_lock:
                if not _cleanups:
                    break
                callback = _cleanups.pop()
            try:
                callback()
            except Exception:
                logger.exception("clean-up %r failed", callback)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


@contextlib.contextmanager
def stop_on_signals(
    *,
    deadline_s: float = 9.0,
    signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT),
) -> Iterator[threading.Event]:
    """Within the block, the first of ``signals`` stops the process cleanly, in a thread.

    The handler raises nothing in the main thread (an exception raised from a signal handler
    lands in whatever code runs then, and a weakref callback or ``__del__`` swallows it): it
    starts a thread that runs the :func:`on_shutdown` callbacks (a stack's ``stop``) and exits
    with ``128 + signum``. Later signals only log. An exception leaving the block after a signal
    is not raised (the block's work fails as the stack stops under it): the thread exits the
    process. ``deadline_s`` after the signal, whatever still runs is killed with everything
    under it (:func:`exit_deadline`).

    Yields:
        An event set when a signal arrived.
    """
    received = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if received.is_set():
            logger.warning("%s again: still stopping", name)
            return
        received.set()
        logger.warning("%s: stopping", name)
        exit_deadline(deadline_s, code=128 + signum)
        threading.Thread(
            target=_run_cleanups_and_exit, args=(signum,), name="shutdown", daemon=False
        ).start()

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield received
    except BaseException:
        if received.is_set():
            # What fails while the stack stops under it is expected: no traceback, the shutdown
            # thread ends the process.
            threading.Event().wait()
        raise
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def exit_deadline(seconds: float, *, code: int = 1) -> threading.Timer:
    """Start a timer that, after ``seconds``, kills this process's descendants and exits.

    A backstop for a shutdown that hangs (a client retrying a server that is gone, a library
    waiting for its own grace period): whatever runs then, the process and its children end.
    Cancel the returned timer if the shutdown finishes in time (a daemon timer does not keep
    the process alive anyway).
    """

    def expire() -> None:
        logger.error("shutdown took longer than %.0f s: killing what is left", seconds)
        terminate_tree(descendants(os.getpid()), sig=signal.SIGKILL, grace=1.0)
        os._exit(code)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer
