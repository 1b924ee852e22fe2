"""Supervised child processes: start with logs to a file, wait until ready, stop gently then firmly."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

__all__ = ["ManagedProcess", "ProcessFailed", "free_port", "http_ok", "wait_until"]


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
        return httpx.get(url, timeout=timeout).is_success
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
        """Start the child; its stdout and stderr go to the log file (appended)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
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

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the whole process group: the first signal, then SIGTERM, then SIGKILL."""
        if self.proc is None:
            return
        for sig, wait in (
            (self.stop_signal, timeout),
            (signal.SIGTERM, 5.0),
            (signal.SIGKILL, 5.0),
        ):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        # Reap stragglers of the group (for example uvicorn workers) even if the leader exited.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None
