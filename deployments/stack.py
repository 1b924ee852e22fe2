"""The whole local stack on one machine: Prefect server and UI, Kafka, the sandbox, serve, listener.

Used by ``followup demo``, the end-to-end test and the latency benchmark. Everything it starts it
also stops; state lives in project-local directories (``.prefect`` for Prefect, ``.followup`` for
the ledger, frames, plots and logs).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from deployments.prefect_server import PrefectServer
from deployments.processes import (
    SERVE_READY,
    ManagedProcess,
    ProcessFailed,
    free_port,
    on_shutdown,
    stop_all,
    wait_until,
)
from followup.http import client_settings
from followup.ledger import Ledger
from followup.skymap.fetch import HOSTS_ENV as SKYMAP_HOSTS_ENV
from sandbox.broker import TansuBroker
from sandbox.server import SandboxConfig, SandboxUrls
from sandbox.skybot import CONE_SEARCH_PATH
from tasks.retry import DELAY_SCALE_ENV

__all__ = ["ALERT_TOPIC", "DEMO_STRATEGIES", "LocalStack", "StackOptions"]

ALERT_TOPIC = "igwn.gwalert"

DEMO_STRATEGIES = """\
version: 1
# The demo's strategies: the production ones observe 3 filters on 3 nights on up to 10 fields;
# a demo must finish in minutes, so one night, two filters, three fields.
strategies:
  demo-gw:
    instrument_type: 1M0-SCICAM-SINISTRO
    filters: [gp, rp]
    exposure_time_s: 300
    exposure_count: 1
    max_airmass: 2.0
    min_lunar_distance_deg: 20
    ipp_value: 1.5
    observation_type: NORMAL
    epochs: 1
    cadence_hours: 24
    window_hours: 24
    max_targets: 3
  demo-point:
    instrument_type: 1M0-SCICAM-SINISTRO
    filters: [gp, rp]
    exposure_time_s: 300
    exposure_count: 1
    max_airmass: 2.0
    ipp_value: 1.5
    observation_type: NORMAL
    epochs: 1
    window_hours: 24
    max_targets: 1
selection:
  - strategy: demo-gw
    kinds: [gw]
  - strategy: demo-point
approval:
  observation_types: [RAPID_RESPONSE, TIME_CRITICAL]
  max_hours: 12
  max_far_hz: 3.17e-08
  require_significant: true
"""


@dataclass
class StackOptions:
    """Where the stack keeps its state and which ports it uses.

    Attributes:
        root: Project directory; state goes to ``root/.followup`` and ``root/.prefect``.
        ui_port: Port of the Prefect API and UI (0: a free port).
        settings_name: Name of the FollowupSettings and ListenerSettings documents it saves.
        sandbox: Configuration of the sandbox (its transients are the truth).
        ledger_url: Ledger database (default: SQLite under ``root/.followup``).
        prefect_database_url: Database of the Prefect server (``postgresql+asyncpg://...``;
            default: SQLite under ``root/.prefect``).
        refresh_interval_s: Interval of the refresh-requests schedule.
        listener_workers: Warm worker processes of the listener's dispatcher.
        settings_overrides: Fields of the FollowupSettings document to change (for example a
            ``strategies_yaml`` whose approval rules make every request wait for a person).
        alarms: Create the alarm automations, calling the sandbox's webhook receiver at
            ``/hooks/alarms``, once the listener runs.
        reporting_timeout_s: HTTP timeout of the HERMES and TNS clients (None: their default);
            saved with the Blocks, before any worker loads them.
        retry_delay_scale: Factor of the service tasks' retry delays in the processes the
            stack starts (``FOLLOWUP_RETRY_DELAY_SCALE``, :func:`tasks.retry.delay_scale`;
            None: theirs). The sandbox's faults pass after a count, not a time.
    """

    root: Path
    ui_port: int = 4200
    settings_name: str = "sandbox"
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    ledger_url: str | None = None
    prefect_database_url: str | None = None
    refresh_interval_s: float = 60.0
    listener_workers: int = 2
    settings_overrides: dict[str, Any] = field(default_factory=dict)
    alarms: bool = True
    reporting_timeout_s: float | None = None
    retry_delay_scale: float | None = None

    @property
    def state_dir(self) -> Path:
        """``root/.followup``: ledger, frames, plots, logs."""
        return self.root / ".followup"

    @property
    def log_dir(self) -> Path:
        """Logs of every process the stack starts."""
        return self.state_dir / "logs"


class LocalStack:
    """Start and stop the local stack; save the blocks that point at it.

    Example:
        >>> with LocalStack(StackOptions(root=Path("."))) as stack:  # doctest: +SKIP
        ...     stack.publish(raw_alert)
    """

    SERVICE_NAMES = frozenset({"sandbox", "dask-scheduler", "dask-workers"})
    """Processes that serve others: stopped after the listener, serve and workers."""

    HEARTBEAT_INTERVAL_S = 10.0
    """Seconds between the listener's heartbeats; the silence alarm waits three of them."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        options.state_dir.mkdir(parents=True, exist_ok=True)
        options.log_dir.mkdir(parents=True, exist_ok=True)
        self.ledger_url = (
            options.ledger_url or f"sqlite:///{(options.state_dir / 'ledger.db').resolve()}"
        )
        port = options.ui_port or free_port()
        self.server = PrefectServer(
            options.root / ".prefect",
            port=port,
            log_dir=options.log_dir,
            database_url=options.prefect_database_url,
        )
        self.broker = TansuBroker(topics=[ALERT_TOPIC], log_path=options.log_dir / "tansu.log")
        self.urls: SandboxUrls | None = None
        self.processes: list[ManagedProcess] = []
        self._env: dict[str, str] = {}
        self.stop_s: float | None = None
        """Seconds the last :meth:`stop` took."""
        self.stop_times: dict[str, float] = {}
        """Seconds each process took to stop, by name, at the last :meth:`stop`."""
        self._stop_lock = threading.Lock()
        self._stopping = False
        self._unregister: Any = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LocalStack:
        """Start everything; return when the listener is reading.

        What does not depend on another part starts beside it: the broker and the sandbox while
        the Prefect server starts, serve and the listener together once the Blocks are saved
        (the listener's warm workers take longest). Each is waited for before anything that
        uses it.
        """
        started = time.monotonic()
        self._stopping = False
        # A signal handled by deployments.processes.stop_on_signals stops what has started.
        self._unregister = on_shutdown(self._stop_on_signal)
        self._env = self._client_env()
        self.server.launch()
        sandbox = self._launch_sandbox()
        self._start_broker()
        self.server.wait_healthy()
        os.environ.update(PREFECT_API_URL=self.server.api_url, PREFECT_HOME=str(self.server.home))
        self._await_sandbox(sandbox)
        self.save_blocks()
        serve = self._launch_serve()
        listener = self._launch_listener()
        self._await_serve(serve)
        self._await_listener(listener)
        if self.options.alarms:
            self.apply_alarms()
        self.startup_s = time.monotonic() - started
        return self

    CLIENTS_STOP_S = 4.0
    """Seconds the clients of the services (listener, serve, workers) have to stop."""
    SERVICES_STOP_S = 2.0
    """Seconds the services (sandbox, Dask, the Prefect server) have to stop after them."""

    def stop(self) -> None:
        """Stop everything started, within ``CLIENTS_STOP_S + SERVICES_STOP_S`` plus a kill.

        Two steps, each stopping its processes at once: first the clients of the services (the
        listener commits the offsets of what it stored while the broker is still up; runs that
        are cut short are marked crashed while the Prefect server is), then the services and the
        broker.
        """
        self._stopping = True  # no process starts from now on
        if self._unregister is not None:
            self._unregister()
            self._unregister = None
        # Called from the main thread and from a signal's shutdown thread: one stops, the other
        # waits for it.
        with self._stop_lock:
            if (
                not self.processes
                and not self.broker.is_running
                and not any(p.running for p in self.server.processes)
            ):
                return
            started = time.monotonic()
            clients = [p for p in self.processes if p.name not in self.SERVICE_NAMES]
            services = [p for p in self.processes if p.name in self.SERVICE_NAMES]
            stop_all(clients, grace=self.CLIENTS_STOP_S)
            self.broker.stop()
            stop_all([*services, *self.server.processes], grace=self.SERVICES_STOP_S)
            self.stop_times = {p.name: p.stop_s for p in self.processes if p.stop_s is not None}
            self.stop_times.update(
                {p.name: p.stop_s for p in self.server.processes if p.stop_s is not None}
            )
            self.processes.clear()
            self.stop_s = time.monotonic() - started

    def _stop_on_signal(self) -> None:
        self.stop()
        times = ", ".join(f"{name} {s:.1f} s" for name, s in self.stop_times.items())
        print(f"stack stopped in {self.stop_s or 0:.1f} s ({times})", flush=True)

    def __enter__(self) -> LocalStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ parts

    def _client_env(self) -> dict[str, str]:
        """Environment of the processes the stack starts (needs the server's address only)."""
        env = self.server.client_env()
        if self.options.retry_delay_scale is not None:
            env[DELAY_SCALE_ENV] = str(self.options.retry_delay_scale)
        return env

    def _start_broker(self) -> None:
        if self._stopping:
            raise ProcessFailed("not starting the broker: the stack is stopping")
        self.broker.start()

    def _python(self, name: str, *args: str) -> ManagedProcess:
        if self._stopping:
            raise ProcessFailed(f"not starting {name}: the stack is stopping")
        process = ManagedProcess(
            name,
            [sys.executable, *args],
            env=self._env,
            log_dir=self.options.log_dir,
            cwd=self.options.root,
        )
        self.processes.append(process)
        return process.start()

    def _sandbox_urls_path(self) -> Path:
        return self.options.state_dir / "sandbox-urls.json"

    def _launch_sandbox(self) -> ManagedProcess:
        """Start the sandbox's process (it needs neither Prefect nor the broker)."""
        config_path = self.options.state_dir / "sandbox-config.json"
        urls_path = self._sandbox_urls_path()
        urls_path.unlink(missing_ok=True)
        config = self.options.sandbox.model_copy(
            update={"cache_dir": str(self.options.state_dir / "sandbox-frames")}
        )
        config_path.write_text(config.model_dump_json(indent=2))
        return self._python(
            "sandbox",
            "-m",
            "sandbox.server",
            "--config",
            str(config_path),
            "--urls-out",
            str(urls_path),
        )

    def _await_sandbox(self, process: ManagedProcess) -> None:
        """Wait for the sandbox's addresses; later processes may fetch sky maps from it."""
        urls_path = self._sandbox_urls_path()
        process.wait_ready(urls_path.exists, timeout=60)
        self.urls = SandboxUrls.model_validate(json.loads(urls_path.read_text()))
        # The sandbox serves sky maps for notices that carry only a URL (sandbox.skymaps): its
        # control app is an allowed sky-map host of the processes started after it.
        hosts = [h for h in self._env.get(SKYMAP_HOSTS_ENV, "").split(",") if h.strip()]
        self._env[SKYMAP_HOSTS_ENV] = ",".join([*hosts, urlsplit(self.urls.control).netloc])

    def save_blocks(self) -> None:
        """Register the block types and save documents pointing at the sandbox and the broker."""
        from blocks import (
            FollowupSettings,
            GcnCredentials,
            HermesCredentials,
            HopCredentials,
            LcoCredentials,
            ListenerSettings,
            StartedBy,
            TnsCredentials,
            TreasureMapCredentials,
            TriggerRulesBlock,
        )

        assert self.urls is not None
        u = self.urls
        name = self.options.settings_name
        for block in (FollowupSettings, ListenerSettings, TriggerRulesBlock):
            block.register_type_and_schema()
        lco = LcoCredentials(
            api_token=SecretStr(u.lco_token),
            proposal_id=u.proposal_id,
            portal_url=u.portal,
            archive_url=u.archive,
        )
        timeout = (
            {"timeout_s": self.options.reporting_timeout_s}
            if self.options.reporting_timeout_s is not None
            else {}
        )
        hermes = HermesCredentials(
            api_token=SecretStr(u.hermes_token), base_url=u.hermes, **timeout
        )
        tns = TnsCredentials(
            api_key=SecretStr(u.tns_api_key),
            bot_id=u.tns_bot_id,
            bot_name=u.tns_bot_name,
            reporting_group_id=82,
            discovery_data_source_id=48,
            reporter="followup sandbox bot (LCO)",
            base_url=f"{u.tns}/api/",
            **timeout,
        )
        gcn = GcnCredentials(
            access_token=SecretStr(u.gcn_token), base_url=u.gcn, from_address="followup@example.org"
        )
        treasuremap = (
            TreasureMapCredentials(
                api_token=SecretStr(u.treasuremap_token),
                base_url=u.treasuremap,
                instrument_ids={"Sinistro": 101, "MuSCAT3": 102, "QHY600": 103},
            )
            if u.treasuremap
            else None
        )
        for block in (lco, hermes, tns, gcn, treasuremap):
            if block is not None:
                block.save(name, overwrite=True)
        fields: dict[str, Any] = dict(
            ledger_url=SecretStr(self.ledger_url),
            state_dir=str(self.options.state_dir.resolve()),
            lco=lco,
            hermes=hermes,
            tns=tns,
            gcn=gcn,
            treasuremap=treasuremap,
            strategies_yaml=DEMO_STRATEGIES,
            reference_catalog="vizier-refcat2",
            vizier_server=u.vizier,
            max_targets=3,
            approval_timeout_s=600,
            poll_interval_s=2.0,
            max_wait_s=150.0,
            hermes_topic="hermes.test",
            # The sandbox's IRSA dust stand-in, when it runs one; never the real service.
            irsa_dust_url=f"{u.irsa}/cgi-bin/DUST/nph-dust" if getattr(u, "irsa", "") else "",
            team="the followup sandbox team",
            sandbox_endpoints=True,
            authors=["F. Ollowup (LCO)", "S. Andbox (LCO)"],
            # On the realistic sky candidates come from differences against the archive's
            # earlier frames, and minor planets are checked at the SkyBoT stand-in.
            difference_imaging=self.options.sandbox.sky == "realistic",
            skybot_url=f"{u.skybot}{CONE_SEARCH_PATH}" if u.skybot else "",
        )
        fields.update(self.options.settings_overrides)
        FollowupSettings(**fields).save(name, overwrite=True)
        hop = HopCredentials(
            broker_url=f"kafka://{self.broker.bootstrap}",
            topics=[ALERT_TOPIC],
            group_id=f"followup-{name}",
        )
        hop.save(name, overwrite=True)
        rules = TriggerRulesBlock(allow_test=True, significant_only=True, max_far_hz=1e-7)
        rules.save(name, overwrite=True)
        ListenerSettings(
            hop=hop,
            rules=rules,
            followup_settings=name,
            started_by=StartedBy.LISTENER,
            workers=self.options.listener_workers,
            heartbeat_interval_s=self.HEARTBEAT_INTERVAL_S,
        ).save(name, overwrite=True)

    def _start_serve(self) -> None:
        self._await_serve(self._launch_serve())

    def _launch_serve(self) -> ManagedProcess:
        name = self.options.settings_name
        return self._python(
            "serve",
            "-m",
            "deployments.serve",
            "--settings",
            name,
            "--listener-settings",
            name,
            "--refresh-interval",
            str(self.options.refresh_interval_s),
        )

    def _await_serve(self, process: ManagedProcess) -> None:
        # The deployments outlive a restart of serve: this process is ready once it says it
        # serves them (its runner starts then), not as soon as they exist. A signal before that
        # lands while it is still registering them.
        process.wait_ready(
            lambda: SERVE_READY in process.output() and self._deployments_ready(), timeout=300
        )

    def _deployments_ready(self) -> bool:
        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True, httpx_settings=client_settings()) as client:
                client.read_deployment_by_name("followup/followup")
                client.read_deployment_by_name("retract/retract")
        except Exception:
            return False
        return True

    def _start_listener(self) -> None:
        self._await_listener(self._launch_listener())

    def _listener_ready_path(self) -> Path:
        return self.options.state_dir / "listener.ready"

    def _launch_listener(self) -> ManagedProcess:
        ready = self._listener_ready_path()
        ready.unlink(missing_ok=True)
        return self._python(
            "listener",
            "-m",
            "deployments.listener",
            "--listener-settings",
            self.options.settings_name,
            "--name",
            self.options.settings_name,
            "--ready-file",
            str(ready),
        )

    def _await_listener(self, process: ManagedProcess) -> None:
        process.wait_ready(self._listener_ready_path().exists, timeout=300)

    def apply_alarms(self) -> list[Any]:
        """Point the alarm webhook at the sandbox's receiver and create the alarm automations."""
        from deployments.automations import AlarmOptions, apply_automations, save_alarm_webhook

        assert self.urls is not None
        save_alarm_webhook(f"{self.urls.webhook}/hooks/alarms")
        return apply_automations(
            options=AlarmOptions(heartbeat_within_s=3 * self.HEARTBEAT_INTERVAL_S)
        )

    # ------------------------------------------------------------------ use

    def ledger(self) -> Ledger:
        """A ledger client of the stack's database."""
        ledger = Ledger(self.ledger_url)
        ledger.migrate()
        return ledger

    def publish(self, raw: bytes, *, topic: str = ALERT_TOPIC) -> str:
        """Publish an alert to the local Kafka topic with hop-client; returns its hop ``_id``."""
        from followup.stream import publish

        return publish(f"kafka://{self.broker.bootstrap}", topic, raw)

    def wait_for_run(self, event_id: str, timeout: float) -> str | None:
        """The id of the follow-up run the listener started for the event's alert, once it has one."""
        ledger = self.ledger()
        found: list[str] = []

        def started() -> bool:
            for alert in ledger.alerts.for_event(event_id):
                if alert.flow_run_id:
                    found.append(alert.flow_run_id)
                    return True
            return False

        wait_until(started, timeout=timeout, interval=0.2)
        ledger.dispose()
        return found[0] if found else None
