"""The production profile on one machine: PostgreSQL, Redis, a process work pool, a Dask cluster.

What changes from the embedded default (:class:`deployments.stack.LocalStack`, SQLite, one
``prefect server`` process, deployments served from one process, follow-up runs in the listener's
warm processes, per-frame work on a thread pool):

* the Prefect server keeps its database in PostgreSQL and runs ``api_processes`` API processes
  that share one event bus, lease storage and task queue in Redis (prefect-redis), with its
  background services (triggers, scheduler) in a process of their own;
* the ledger is a PostgreSQL database;
* the deployments belong to a process work pool and ``workers`` process workers run them; the
  listener leaves every run to the ``followup`` deployment's event trigger
  (``started_by="trigger"``), so any worker on any machine may take it;
* per-frame work of ``process-frames`` runs on a Dask cluster (``FollowupSettings.dask_address``):
  a local scheduler with ``dask_workers`` worker processes, or an existing cluster by address.

Every address is a setting (:class:`ProductionOptions`, filled from ``FOLLOWUP_*`` environment
variables by :func:`options_from_env`), so the same profile points at separate hosts: see the
README's "Production profile". ``python -m deployments.production`` (``make production``) brings
it up here and keeps it up until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from deployments.prefect_server import PrefectServer
from deployments.processes import (
    ManagedProcess,
    ProcessFailed,
    free_port,
    on_shutdown,
    stop_all,
    stop_on_signals,
    stop_with_make,
    wait_until,
)
from deployments.stack import LocalStack, StackOptions
from followup.http import client_settings

__all__ = [
    "BurstResult",
    "ProductionOptions",
    "ProductionStack",
    "ScaledPrefectServer",
    "claim_redis_db",
    "ensure_database",
    "followup_runs",
    "main",
    "options_from_env",
    "run_burst",
]

PG_SERVER = "postgres@127.0.0.1:5432"
DEFAULT_PREFECT_DATABASE_URL = f"postgresql+asyncpg://{PG_SERVER}/followup_prefect"
DEFAULT_LEDGER_URL = f"postgresql+psycopg2://{PG_SERVER}/followup_ledger"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
REDIS_CLAIM_KEY = "followup:claimed-by"

_PREPARE_DATABASE = """
import asyncio
from prefect.server.database import provide_database_interface
from prefect.server.database.alembic_commands import alembic_upgrade
from prefect.server.models.block_registration import run_block_auto_registration
from prefect.utilities.asyncutils import run_sync_in_worker_thread

async def prepare():
    db = provide_database_interface()
    # As ``prefect server database upgrade -y`` does, then the server's block registration.
    await run_sync_in_worker_thread(alembic_upgrade, revision="head", dry_run=False)
    print("migrations done", flush=True)
    async with await db.session() as session:
        await run_block_auto_registration(session=session)
    print("block types registered", flush=True)

asyncio.run(prepare())
"""


# ---------------------------------------------------------------------------------- resources


def _admin_engine(url: str) -> tuple[str, Any]:
    """The database named by ``url``, and an autocommit engine on its server's ``postgres``."""
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    if not parsed.database:
        raise ValueError(f"{parsed.render_as_string(hide_password=True)} names no database")
    admin = sa.create_engine(
        parsed.set(drivername="postgresql+psycopg2", database="postgres"),
        isolation_level="AUTOCOMMIT",
    )
    return parsed.database, admin


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database named by ``url`` when it does not exist.

    Args:
        url: SQLAlchemy URL of the database (any PostgreSQL driver: asyncpg or psycopg2).

    Returns:
        True when it was created now.
    """
    import sqlalchemy as sa

    name, admin = _admin_engine(url)
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).scalar()
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            return not exists
    finally:
        admin.dispose()


def drop_database(url: str) -> None:
    """Drop the PostgreSQL database named by ``url`` (closing its connections)."""
    import sqlalchemy as sa

    name, admin = _admin_engine(url)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def claim_redis_db(redis_url: str, owner: str) -> str:
    """The URL of a Redis database for one stack: ``redis_url``'s own, or an empty one claimed.

    The Redis streams of prefect-redis have fixed names, so two Prefect servers sharing a Redis
    database would read each other's events. A URL that names a database (``redis://host/3``) is
    used as it is; otherwise the first empty database is claimed with a marker key.

    Raises:
        RuntimeError: Every database of the server is in use.
    """
    import redis

    parts = urlsplit(redis_url)
    if parts.path.strip("/"):
        return redis_url
    client = redis.Redis.from_url(redis_url)
    try:
        databases = int(client.config_get("databases").get("databases", 16))
    except redis.ResponseError:  # CONFIG may be disabled on a managed Redis
        databases = 16
    finally:
        client.close()
    for db in range(1, databases):
        url = urlunsplit(parts._replace(path=f"/{db}"))
        client = redis.Redis.from_url(url)
        try:
            if client.dbsize() == 0 and client.set(REDIS_CLAIM_KEY, owner, nx=True):
                return url
        finally:
            client.close()
    raise RuntimeError(f"no empty Redis database left on {redis_url}")


def release_redis_db(url: str, owner: str) -> None:
    """Empty a database claimed by :func:`claim_redis_db` for ``owner`` (only that one)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        if client.get(REDIS_CLAIM_KEY) == owner.encode():
            client.flushdb()
    finally:
        client.close()


# ---------------------------------------------------------------------------------- options


@dataclass
class ProductionOptions(StackOptions):
    """:class:`StackOptions` plus where the production profile's shared services are.

    Attributes:
        prefect_database_url: Database of the Prefect server (``postgresql+asyncpg://...``);
            created when missing.
        redis_url: Redis of the Prefect server's messaging (prefect-redis) and task queue. A URL
            without a database number claims an empty database of that server.
        api_processes: API processes of the Prefect server (more than one needs Redis).
        workers: Process workers of the work pool started here (0: workers run elsewhere).
        work_pool: Name of the process work pool the deployments belong to.
        worker_limit: Most concurrent flow runs per worker.
        dask_address: A running Dask scheduler (``tcp://host:8786``) for per-frame work; empty
            to start a local one here with ``dask_workers`` worker processes.
        dask_workers: Worker processes of the local Dask cluster.
        dask_threads: Threads of each Dask worker process (listing and downloading frames waits
            on the archive, so more threads than cores pay).
        drop_databases: Drop the PostgreSQL databases when the stack stops (tests, benchmarks).
        ledger_url: The ledger: PostgreSQL database ``followup_ledger`` by default, created when
            missing.
    """

    prefect_database_url: str = DEFAULT_PREFECT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    api_processes: int = 2
    workers: int = 2
    work_pool: str = "followup"
    worker_limit: int = 10
    dask_address: str = ""
    dask_workers: int = 2
    dask_threads: int = 2
    drop_databases: bool = False
    ledger_url: str | None = DEFAULT_LEDGER_URL


def options_from_env(root: Path, env: Mapping[str, str] | None = None) -> ProductionOptions:
    """Production options from ``FOLLOWUP_*`` environment variables (defaults: this machine).

    ``FOLLOWUP_PREFECT_DATABASE_URL``, ``FOLLOWUP_LEDGER_URL``, ``FOLLOWUP_REDIS_URL``,
    ``FOLLOWUP_API_PROCESSES``, ``FOLLOWUP_WORKERS``, ``FOLLOWUP_WORK_POOL``,
    ``FOLLOWUP_DASK_ADDRESS``, ``FOLLOWUP_DASK_WORKERS``, ``FOLLOWUP_DASK_THREADS``,
    ``FOLLOWUP_UI_PORT``.
    """
    env = os.environ if env is None else env
    return ProductionOptions(
        root=root,
        ui_port=int(env.get("FOLLOWUP_UI_PORT", "4200")),
        prefect_database_url=env.get("FOLLOWUP_PREFECT_DATABASE_URL", DEFAULT_PREFECT_DATABASE_URL),
        ledger_url=env.get("FOLLOWUP_LEDGER_URL", DEFAULT_LEDGER_URL),
        redis_url=env.get("FOLLOWUP_REDIS_URL", DEFAULT_REDIS_URL),
        api_processes=int(env.get("FOLLOWUP_API_PROCESSES", "2")),
        workers=int(env.get("FOLLOWUP_WORKERS", "2")),
        work_pool=env.get("FOLLOWUP_WORK_POOL", "followup"),
        dask_address=env.get("FOLLOWUP_DASK_ADDRESS", ""),
        dask_workers=int(env.get("FOLLOWUP_DASK_WORKERS", "2")),
        dask_threads=int(env.get("FOLLOWUP_DASK_THREADS", "2")),
    )


# ---------------------------------------------------------------------------------- server


def redis_server_env(redis_db_url: str, docket_name: str) -> dict[str, str]:
    """Server settings that put messaging, ordering, leases and the task queue in Redis."""
    return {
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_URL": redis_db_url,
        "PREFECT_SERVER_DOCKET_URL": redis_db_url,
        "PREFECT_SERVER_DOCKET_NAME": docket_name,
        # The publisher batches 5 messages or 10 s by default: triggers would fire late.
        "PREFECT_REDIS_MESSAGING_PUBLISHER_BATCH_SIZE": "1",
    }


SERVER_DATABASE_TIMEOUTS = {
    "PREFECT_SERVER_DATABASE_TIMEOUT": "60",
    "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "30",
}
"""Database timeouts (s) of the production profile's API processes."""


class ScaledPrefectServer(PrefectServer):
    """A Prefect server on PostgreSQL with several API processes and a services process.

    ``prefect server start --workers N`` runs no background services, and its processes cannot
    prepare an empty database together (each migrates and registers the block types at once, and
    all but one fail on unique keys), so :meth:`start` migrates and registers once, then starts
    the API processes with neither step, then ``prefect server services start`` (triggers,
    scheduler, ...).

    Args:
        home: PREFECT_HOME.
        port: Port of the API and UI.
        log_dir: Where the logs go.
        database_url: ``postgresql+asyncpg://...``.
        api_processes: API processes (uvicorn workers).
        extra_env: More server settings (the Redis ones, when ``api_processes > 1``).
    """

    def __init__(
        self,
        home: Path,
        *,
        port: int,
        log_dir: Path,
        database_url: str,
        api_processes: int = 1,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            home, port=port, log_dir=log_dir, database_url=database_url, extra_env=extra_env
        )
        self.api_processes = api_processes
        self.log_dir = log_dir
        # Prefect's 10 s query and 5 s connect timeouts answer 500 to a worker when a busy host
        # (a burst of alerts, frames reduced beside the database) is slow, failing the run.
        for key, value in SERVER_DATABASE_TIMEOUTS.items():
            self.process.env.setdefault(key, value)
        if api_processes > 1:
            self.process.argv += ["--workers", str(api_processes)]
            self.process.env.update(
                PREFECT_API_DATABASE_MIGRATE_ON_START="false",
                PREFECT_SERVER_REGISTER_BLOCKS_ON_START="false",
            )
        self.services = ManagedProcess(
            "prefect-services",
            [sys.executable, "-m", "prefect", "server", "services", "start"],
            env={**self.process.env, "PREFECT_API_URL": self.api_url},
            log_dir=log_dir,
        )

    def migrate(self) -> None:
        """Migrate the server's database and register the block types, once, in one process.

        One Python process for both steps: each would otherwise import Prefect's server anew
        (seconds of CPU per start of the profile).
        """
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / "prefect-migrate.log"
        with log.open("ab") as out:
            result = subprocess.run(
                [sys.executable, "-c", _PREPARE_DATABASE],
                env=self.process.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=300,
                check=False,
            )
        if result.returncode != 0:
            raise ProcessFailed(f"preparing the Prefect database failed; see {log}")

    def start(self, timeout: float = 180.0) -> ScaledPrefectServer:
        """Migrate, start the API processes and wait for health, then start the services."""
        if self.api_processes > 1:
            self.migrate()
        super().start(timeout=timeout)
        if self.api_processes > 1:
            self.services.start()
        return self

    @property
    def processes(self) -> list[ManagedProcess]:
        """The services process and the API processes."""
        return [self.services, self.process]

    def stop(self) -> None:
        """Stop the services and the API processes together."""
        stop_all(self.processes)


# ---------------------------------------------------------------------------------- the stack


class ProductionStack(LocalStack):
    """The local stack in the production profile (see the module's docstring).

    Example:
        >>> with ProductionStack(ProductionOptions(root=Path("."))) as stack:  # doctest: +SKIP
        ...     stack.publish(raw_alert)
    """

    options: ProductionOptions

    def __init__(self, options: ProductionOptions) -> None:
        super().__init__(options)
        self.options = options
        self.owner = f"followup-{uuid.uuid4().hex[:12]}"
        self.redis_db_url = ""
        self.dask_address = options.dask_address

    def _client_env(self) -> dict[str, str]:
        """The stack's client environment; a 500 (a database timeout) is retried like a 503."""
        env = super()._client_env()
        env.setdefault("PREFECT_CLIENT_RETRY_EXTRA_CODES", "500")
        return env

    def start(self) -> ProductionStack:
        """Start everything; return when the listener is reading."""
        started = time.monotonic()
        self._stopping = False
        self._unregister = on_shutdown(self._stop_on_signal)
        o = self.options
        ensure_database(o.prefect_database_url)
        ensure_database(self.ledger_url)
        extra: dict[str, str] = {}
        if o.api_processes > 1:
            self.redis_db_url = claim_redis_db(o.redis_url, self.owner)
            extra = redis_server_env(self.redis_db_url, docket_name=self.owner)
        self.server = ScaledPrefectServer(
            o.root / ".prefect",
            port=self.server.port,
            log_dir=o.log_dir,
            database_url=o.prefect_database_url,
            api_processes=o.api_processes,
            extra_env=extra,
        )
        # What needs no Prefect server (the sandbox, the broker, the Dask cluster) starts while
        # the server's database is prepared and its processes start; the workers and the
        # listener start together once the deployments are registered.
        self._env = self._client_env()
        sandbox = self._launch_sandbox()
        self._start_broker()
        dask = None if self.dask_address else self._launch_dask()
        self.server.start()
        os.environ.update(PREFECT_API_URL=self.server.api_url, PREFECT_HOME=str(self.server.home))
        self._await_sandbox(sandbox)
        if dask is not None:
            self._await_dask(dask)
        self.save_blocks()
        self.deploy()
        workers = [self._launch_worker(i) for i in range(o.workers)]
        listener = self._launch_listener()
        for i, worker in enumerate(workers):
            self._await_worker(i, worker)
        self._await_listener(listener)
        if o.alarms:
            self.apply_alarms()
        self.startup_s = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Stop everything; release the Redis database; drop the databases when asked."""
        super().stop()
        if self.redis_db_url:
            release_redis_db(self.redis_db_url, self.owner)
        if self.options.drop_databases:
            drop_database(self.options.prefect_database_url)
            drop_database(self.ledger_url)

    # ------------------------------------------------------------------ parts

    def _launch_dask(self) -> ManagedProcess:
        """A Dask scheduler and its workers as processes of their own, as on separate hosts.

        Returns:
            The scheduler's process (:meth:`_await_dask` waits for the workers to join it).
        """
        port = free_port()
        self.dask_address = f"tcp://127.0.0.1:{port}"
        scheduler = self._python(
            "dask-scheduler",
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-dashboard",
        )
        self._python(
            "dask-workers",
            "-m",
            "distributed.cli.dask_worker",
            self.dask_address,
            "--nworkers",
            str(self.options.dask_workers),
            "--nthreads",
            str(self.options.dask_threads),
            "--no-dashboard",
            "--local-directory",
            str(self.options.state_dir / "dask"),
        )
        return scheduler

    def _await_dask(self, scheduler: ManagedProcess) -> None:
        """Wait until every Dask worker has joined the scheduler."""
        scheduler.wait_ready(
            lambda: len(dask_workers(self.dask_address)) >= self.options.dask_workers,
            timeout=120,
        )

    def save_blocks(self) -> None:
        """The blocks of :class:`LocalStack`, with the Dask cluster and trigger-started runs."""
        from blocks import FollowupSettings, ListenerSettings, StartedBy

        self.options.settings_overrides = {
            **self.options.settings_overrides,
            "dask_address": self.dask_address,
        }
        super().save_blocks()
        name = self.options.settings_name
        listener = ListenerSettings.load(name)
        listener.started_by = StartedBy.TRIGGER
        listener.save(name, overwrite=True)
        assert FollowupSettings.load(name).dask_address == self.dask_address

    def deploy(self) -> list[Any]:
        """Create the process work pool and register the deployments in it."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.exceptions import ObjectAlreadyExists

        from deployments.serve import build_deployments

        name = self.options.settings_name
        with (
            get_client(sync_client=True, httpx_settings=client_settings()) as client,
            contextlib.suppress(ObjectAlreadyExists),
        ):
            client.create_work_pool(WorkPoolCreate(name=self.options.work_pool, type="process"))
        deployments = build_deployments(
            name, name, refresh_interval_s=self.options.refresh_interval_s
        )
        return [d.apply(work_pool_name=self.options.work_pool) for d in deployments]

    def _launch_worker(self, index: int) -> ManagedProcess:
        return self._python(
            f"worker-{index}",
            "-m",
            "prefect",
            "worker",
            "start",
            "--pool",
            self.options.work_pool,
            "--type",
            "process",
            "--name",
            f"{self.owner}-worker-{index}",
            "--limit",
            str(self.options.worker_limit),
        )

    def _await_worker(self, index: int, process: ManagedProcess) -> ManagedProcess:
        process.wait_ready(lambda: self._worker_online(f"{self.owner}-worker-{index}"), timeout=120)
        return process

    def _worker_online(self, worker: str) -> bool:
        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True, httpx_settings=client_settings()) as client:
                workers = client.read_workers_for_work_pool(self.options.work_pool)
        except Exception:
            return False
        return any(w.name == worker for w in workers)

    def logs(self) -> dict[str, str]:
        """Text of every log file of the stack, by file name."""
        return {
            p.name: p.read_text(errors="replace")
            for p in sorted(self.options.log_dir.glob("*.log"))
        }


def dask_workers(address: str) -> list[str]:
    """Addresses of the workers of the Dask scheduler at ``address`` (empty when unreachable)."""
    from distributed import Client

    try:
        with Client(address, timeout=2) as client:
            return list(client.scheduler_info(n_workers=-1)["workers"])
    except OSError:
        return []


def dask_task_counts(address: str) -> dict[str, int]:
    """How many tasks of each name (key prefix) the Dask scheduler at ``address`` has run."""
    from distributed import Client

    def counts(dask_scheduler: Any) -> dict[str, int]:
        return {
            name: int(sum(prefix.state_counts.values()))
            for name, prefix in dask_scheduler.task_prefixes.items()
        }

    with Client(address, timeout=10) as client:
        return client.run_on_scheduler(counts)


# ---------------------------------------------------------------------------------- bursts


def followup_runs() -> dict[str, list[Any]]:
    """Every run of the ``followup/followup`` deployment, by the ``event_id`` it was given."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    runs: dict[str, list[Any]] = {}
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        found = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["followup"])),
            limit=200,
        )
    for run in found:
        if run.parent_task_run_id is None:
            runs.setdefault(str(run.parameters.get("event_id", "")), []).append(run)
    return runs


@dataclass
class BurstResult:
    """What a burst of alerts did.

    Attributes:
        event_ids: The events published.
        runs: Follow-up runs by event id (every run seen, final or not).
        wall_s: Seconds from the first publish until every event's run was final (or timeout).
        timed_out: True when some run was not final in time.
    """

    event_ids: list[str]
    runs: dict[str, list[Any]]
    wall_s: float
    timed_out: bool

    @property
    def completed(self) -> int:
        """Events whose runs all completed."""
        return sum(
            1
            for e in self.event_ids
            if self.runs.get(e) and all(r.state and r.state.is_completed() for r in self.runs[e])
        )

    @property
    def alerts_per_minute(self) -> float:
        """Completed alerts per minute of wall time."""
        return 60.0 * self.completed / self.wall_s if self.wall_s else 0.0


def run_burst(stack: LocalStack, alerts: Iterable[Any], *, timeout: float) -> BurstResult:
    """Publish every alert at once, approve what waits, and wait for each event's run to end.

    Args:
        stack: A started stack (embedded or production).
        alerts: :class:`deployments.demo.DemoAlert` values (``raw``, ``event_id``).
        timeout: Most seconds to wait for all runs to be final.
    """
    from deployments.demo import AutoApprover

    alerts = list(alerts)
    event_ids = [a.event_id for a in alerts]
    approver = AutoApprover()
    # Its loop runs in a copy of this context: the Prefect settings (API URL) of the stack.
    approving = threading.Thread(
        target=contextvars.copy_context().run, args=(approver.run,), daemon=True
    )
    approving.start()
    started = time.monotonic()
    for alert in alerts:
        stack.publish(alert.raw)
    runs: dict[str, list[Any]] = {}

    def all_final() -> bool:
        nonlocal runs
        runs = followup_runs()
        return all(
            runs.get(e) and all(r.state and r.state.is_final() for r in runs[e]) for e in event_ids
        )

    done = wait_until(all_final, timeout=timeout, interval=1.0)
    wall_s = time.monotonic() - started
    approver.stop.set()
    approving.join(timeout=5)
    return BurstResult(event_ids=event_ids, runs=runs, wall_s=wall_s, timed_out=not done)


# ---------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    """Bring the production profile up on this machine and keep it up until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m deployments.production", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project directory")
    args = parser.parse_args(argv)
    options = options_from_env(args.root.resolve())
    stop_with_make()
    print(f"starting the production profile (Prefect UI on http://127.0.0.1:{options.ui_port}) ...")
    stack = ProductionStack(options)
    # SIGTERM or Ctrl-C, even during start-up, stops everything started (in a thread) and exits.
    with stop_on_signals(deadline_s=9.0), stack:
        assert stack.urls is not None
        print(
            f"up in {stack.startup_s:.0f} s: Prefect {stack.server.api_url} on "
            f"{urlsplit(options.prefect_database_url).hostname} ({options.api_processes} API "
            f"processes, Redis {stack.redis_db_url or '-'}), {options.workers} worker(s) on pool "
            f"{options.work_pool!r}, Dask {stack.dask_address}, Kafka {stack.broker.bootstrap}, "
            f"sandbox portal {stack.urls.portal}; logs in {options.log_dir}. Ctrl-C stops it.",
            flush=True,
        )
        threading.Event().wait()


if __name__ == "__main__":
    main()
