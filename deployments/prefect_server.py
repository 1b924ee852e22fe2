"""A Prefect server of our own: SQLite in a project-local PREFECT_HOME, or PostgreSQL by URL."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from deployments.processes import ManagedProcess, http_ok

__all__ = ["PrefectServer", "prefect_env"]


def prefect_env(
    home: Path,
    api_url: str | None,
    *,
    base: Mapping[str, str] | None = None,
    database_url: str | None = None,
) -> dict[str, str]:
    """Environment for a Prefect server or client process of this project.

    Args:
        home: PREFECT_HOME (profiles, the SQLite database, local results).
        api_url: PREFECT_API_URL of the server to talk to (None for the server itself).
        base: Environment to start from (default: this process's).
        database_url: Server database (``postgresql+asyncpg://...``); SQLite under ``home`` if None.
    """
    env = dict(os.environ if base is None else base)
    # A user's own Prefect profile or API key must never leak into the project's processes.
    for key in [k for k in env if k.startswith("PREFECT_")]:
        del env[key]
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW="ignore",
        # Runs triggered by events or schedules start within ~1 s instead of ~10 s.
        PREFECT_RUNNER_POLL_FREQUENCY="1",
        PREFECT_WORKER_QUERY_SECONDS="1",
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    return env


class PrefectServer:
    """``prefect server start`` as a supervised child process, with its UI.

    Args:
        home: PREFECT_HOME of the server (created if missing).
        port: Port of the API and UI on 127.0.0.1.
        log_dir: Where ``prefect-server.log`` goes.
        database_url: PostgreSQL URL (``postgresql+asyncpg://...``), or None for SQLite in ``home``.
        host: Interface to bind.

    Example:
        >>> with PrefectServer(Path(".prefect"), port=4200, log_dir=Path(".followup/logs")) as s:
        ...     print(s.api_url)
    """

    def __init__(
        self,
        home: Path,
        *,
        port: int = 4200,
        log_dir: Path,
        database_url: str | None = None,
        host: str = "127.0.0.1",
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.home = Path(home).resolve()
        self.host = host
        self.port = port
        self.database_url = database_url
        env = prefect_env(self.home, None, database_url=database_url)
        # The UI asks the server where its API is; left alone, that is built from the *setting*
        # PREFECT_SERVER_API_PORT (4200), not from --port, and a UI on any other port is blank.
        env.update(
            PREFECT_SERVER_API_HOST=host,
            PREFECT_SERVER_API_PORT=str(port),
            PREFECT_SERVER_UI_API_URL=f"http://{host}:{port}/api",
            # Links in automation messages (``flow_run|ui_url``) point at this UI.
            PREFECT_UI_URL=f"http://{host}:{port}",
        )
        env.update(extra_env or {})
        self.process = ManagedProcess(
            "prefect-server",
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                host,
                "--port",
                str(port),
            ],
            env=env,
            log_dir=log_dir,
        )

    @property
    def api_url(self) -> str:
        """PREFECT_API_URL of this server."""
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        """Base URL of the Prefect UI."""
        return f"http://{self.host}:{self.port}"

    def flow_run_url(self, flow_run_id: str) -> str:
        """Link to a flow run's page in the UI."""
        return f"{self.ui_url}/runs/flow-run/{flow_run_id}"

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a client process (listener, serve, worker) of this server.

        Unless the server protects against CSRF, clients do not ask it for a token: each client
        Prefect makes (one per flow and subflow run) would otherwise spend a request on it, three
        of them on the alert-to-telescope path.
        """
        env = prefect_env(self.home, self.api_url, base=base)
        protected = self.process.env.get("PREFECT_SERVER_CSRF_PROTECTION_ENABLED", "")
        if protected.lower() not in ("1", "true"):
            env["PREFECT_CLIENT_CSRF_SUPPORT_ENABLED"] = "false"
        return env

    @property
    def processes(self) -> list[ManagedProcess]:
        """The server's processes (stopped together by :func:`deployments.processes.stop_all`)."""
        return [self.process]

    def healthy(self) -> bool:
        """True when ``/api/health`` answers."""
        return http_ok(f"{self.api_url}/health")

    def start(self, timeout: float = 300.0) -> PrefectServer:
        """Start the server and wait for ``/api/health`` (migrations run on first start)."""
        self.launch()
        return self.wait_healthy(timeout)

    def launch(self) -> PrefectServer:
        """Start the server's process and return at once (:meth:`wait_healthy` waits for it).

        What does not need the server (the broker, the sandbox) starts meanwhile.
        """
        self.home.mkdir(parents=True, exist_ok=True)
        self.process.start()
        return self

    def wait_healthy(self, timeout: float = 300.0) -> PrefectServer:
        """Wait for ``/api/health`` of a launched server.

        Raises:
            ProcessFailed: The server exited first, or ``timeout`` passed.
        """
        self.process.wait_ready(self.healthy, timeout=timeout)
        return self

    def stop(self) -> None:
        """Stop the server (SIGINT first: Prefect processes may ignore SIGTERM for minutes)."""
        self.process.stop()

    def __enter__(self) -> PrefectServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
