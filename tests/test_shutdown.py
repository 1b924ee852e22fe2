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
    descendants,
    stop_all,
    terminate_tree,
)
from followup.http import client_settings

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


def test_a_restarted_process_reads_its_own_output_in_the_shared_log(tmp_path: Path) -> None:
    said = "import sys; print(sys.argv[1], flush=True)"
    first = ManagedProcess("echo", [sys.executable, "-c", said, "one"], env={}, log_dir=tmp_path)
    first.start()
    assert _wait_for(lambda: first.proc is not None and first.proc.poll() is not None, 30)
    assert first.output() == "one\n"
    second = ManagedProcess("echo", [sys.executable, "-c", said, "two"], env={}, log_dir=tmp_path)
    second.start()
    assert _wait_for(lambda: second.output() == "two\n", 30), second.output()
    assert second.log_path.read_text() == "one\ntwo\n"  # one log, appended


def test_a_child_hears_sigint_even_when_its_starter_ignores_it(tmp_path: Path) -> None:
    """A shell's background job (``make production &``) starts with SIGINT ignored."""
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        polite = ManagedProcess(
            "polite",
            [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(120)"],
            env=dict(os.environ),
            log_dir=tmp_path,
        ).start()
    finally:
        signal.signal(signal.SIGINT, ignored)
    assert _wait_for(lambda: "up" in polite.output(), 30)
    stop_all([polite], grace=8.0)
    assert polite.returncode == -signal.SIGINT and polite.stop_s is not None
    assert polite.stop_s < 2.0, polite.stop_s


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
    seen = [(p.name, p.stop_s, p.returncode, p.output()) for p in polite]
    assert took < 2.0, f"three processes that exit on SIGINT took {took:.2f} s: {seen}"
    # Each ended on the SIGINT (Python re-raises it after KeyboardInterrupt), none on a SIGKILL.
    assert all(p.returncode == -signal.SIGINT for p in polite), seen
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


def _python(script: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )


def test_a_signal_runs_the_clean_ups_to_their_end_despite_a_second_one() -> None:
    process = _python(
        """
        import time
        from deployments.processes import on_shutdown, stop_on_signals

        def clean_up():
            print("cleaning", flush=True)
            time.sleep(1.0)
            print("cleaned", flush=True)

        with stop_on_signals():
            on_shutdown(lambda: print("registered first, runs last", flush=True))
            on_shutdown(clean_up)
            print("ready", flush=True)
            time.sleep(60)
        print("the main thread went on", flush=True)
        """
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    assert process.stdout.readline().strip() == "cleaning"
    process.send_signal(signal.SIGINT)  # an impatient second Ctrl-C
    rest = process.stdout.read()
    assert process.wait(10) == 128 + signal.SIGTERM
    assert rest.splitlines() == ["cleaned", "registered first, runs last"]


def test_what_fails_in_the_main_thread_while_stopping_is_not_reported() -> None:
    process = _python(
        """
        import time
        from deployments.processes import on_shutdown, stop_on_signals

        stopped = []
        on_shutdown(lambda: (time.sleep(0.5), stopped.append(True)))
        with stop_on_signals():
            print("ready", flush=True)
            while not stopped:
                time.sleep(0.01)
            raise RuntimeError("the server went away")  # as the stack stops under the demo
        """
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 128 + signal.SIGINT
    assert "Traceback" not in stderr and "went away" not in stderr, stderr


def test_a_clean_up_that_hangs_is_cut_at_the_deadline_with_its_children() -> None:
    process = _python(
        """
        import subprocess, sys, time
        from deployments.processes import on_shutdown, stop_on_signals

        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        on_shutdown(lambda: time.sleep(60))
        with stop_on_signals(deadline_s=1.0):
            print(child.pid, flush=True)
            time.sleep(60)
        """
    )
    assert process.stdout is not None
    child = int(process.stdout.readline())
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 4.0
    assert _wait_gone([child], 3.0) is not None


# ---------------------------------------------------------------------------------- entry points

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class Command:
    """An entry point run as a process of its own session, its output collected by a thread."""

    def __init__(self, argv: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> None:
        import threading

        base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**base, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout: float) -> str:
        found = _wait_for(
            lambda: (
                next((line for line in self.lines if text in line), None)
                or (self.process.poll() is not None and "exited")
            ),
            timeout,
            interval=0.5,
        )
        assert found and found != "exited", (
            f"no line with {text!r} after {timeout:.0f} s (exit code {self.process.poll()}):\n"
            + "\n".join(self.lines[-40:])
        )
        return found

    def tree(self) -> list[int]:
        return [self.process.pid, *(p.pid for p in descendants(self.process.pid))]

    def stop(self, sig: int) -> tuple[float, list[int]]:
        """Send ``sig``; return the seconds until the whole tree was gone and its ports."""
        tree = self.tree()
        ports = _listening_ports(tree)
        started = time.monotonic()
        self.process.send_signal(sig)
        took = _wait_gone(tree, 2 * SHUTDOWN_LIMIT_S)
        survivors = [p for p in tree if not _gone([p])]
        assert took is not None, f"still alive 20 s after {sig!r}: {_describe(survivors)}"
        with_exit = time.monotonic() - started
        self.process.wait(5)
        return max(took, with_exit), ports

    def kill(self) -> None:
        """Clean-up for a failed test: nothing may outlive it."""
        tree = self.tree()
        with_suppress = [psutil.Process(p) for p in tree if psutil.pid_exists(p)]
        terminate_tree(with_suppress, sig=signal.SIGKILL, grace=2.0)


def _describe(pids: list[int]) -> list[str]:
    described = []
    for pid in pids:
        try:
            described.append(f"{pid}: {' '.join(psutil.Process(pid).cmdline())[:120]}")
        except psutil.Error:
            described.append(f"{pid}: ?")
    return described


def _listening_ports(pids: list[int]) -> set[int]:
    ports: set[int] = set()
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections("tcp")
        except psutil.Error:
            continue
        ports.update(c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN)
    return ports


def _assert_ports_free(ports: set[int]) -> None:
    import socket

    listening = {
        c.laddr.port
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port in ports
    }
    assert not listening, f"still listening after the shutdown: {sorted(listening)}"
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))  # what a restarted server does


def _ledger_consistent(url: str) -> dict[str, int]:
    """Every stored message has a final status; every accepted alert has its run."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            statuses = dict(
                conn.execute(sa.text("SELECT status, count(*) FROM messages GROUP BY status")).all()
            )
            unstarted = conn.execute(
                sa.text(
                    "SELECT count(*) FROM alerts WHERE decision = 'accepted' AND flow_run_id IS NULL"
                )
            ).scalar()
            if url.startswith("sqlite"):
                assert conn.execute(sa.text("PRAGMA integrity_check")).scalar() == "ok"
    finally:
        engine.dispose()
    assert "received" not in statuses, f"messages left half-handled: {statuses}"
    assert unstarted == 0, f"{unstarted} accepted alert(s) without a follow-up run"
    return statuses


def _flow_run_state(api_url: str, flow_run_id: str) -> str:
    import httpx

    response = httpx.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=10)
    response.raise_for_status()
    return str(response.json()["state"]["type"])


@pytest.mark.slow
@pytest.mark.timeout(1500)  # two stack start-ups: minutes each on a loaded 2-core host
def test_followup_demo_stops_on_sigterm_mid_run_and_on_ctrl_c_after_a_restart(
    tmp_path: Path,
) -> None:
    from deployments.processes import free_port
    from tests.stack_support import seed_prefect_home

    port = free_port()
    argv = [str(BIN / "followup"), "demo", "--port", str(port)]
    seed_prefect_home(tmp_path / ".prefect")  # as every stack of the suite starts
    ledger_url = f"sqlite:///{tmp_path / '.followup' / 'ledger.db'}"
    api_url = f"http://127.0.0.1:{port}/api"

    first = Command(argv, cwd=tmp_path)
    try:
        line = first.wait_for_line("follow-up run:", 420)
        run_id = line.rsplit("/", 1)[-1]
        took, ports = first.stop(signal.SIGTERM)
    finally:
        first.kill()
    print(f"\nfollowup demo, SIGTERM during a follow-up run: every process gone in {took:.1f} s")
    print(*[line for line in first.lines if "stack stopped in" in line], sep="\n")
    assert took <= SHUTDOWN_LIMIT_S, first.output
    assert first.process.returncode == 128 + signal.SIGTERM, first.output
    assert port in ports and len(ports) >= 4, ports  # Prefect, Kafka, the sandbox's stand-ins
    _assert_ports_free(ports)
    statuses = _ledger_consistent(ledger_url)
    assert statuses.get("accepted", 0) >= 1, statuses

    second = Command(argv, cwd=tmp_path)
    try:
        second.wait_for_line("follow-up run:", 420)
        # The run cut short by the first shutdown ended, it is not left Running.
        assert _flow_run_state(api_url, run_id) in {"CRASHED", "CANCELLED", "COMPLETED", "FAILED"}
        took_int, _ = second.stop(signal.SIGINT)
    finally:
        second.kill()
    print(f"followup demo restarted on port {port}, Ctrl-C: every process gone in {took_int:.1f} s")
    print(*[line for line in second.lines if "stack stopped in" in line], sep="\n")
    assert took_int <= SHUTDOWN_LIMIT_S, second.output
    _ledger_consistent(ledger_url)


# ---------------------------------------------------------------------------------- one stack


def _committed_offset(bootstrap: str, group: str, topic: str, partition: int = 0) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        (found,) = consumer.committed([TopicPartition(topic, partition)], timeout=10)
        return int(found.offset)
    finally:
        consumer.close()


def _stored_offsets(ledger_url: str) -> dict[str, tuple[int, str]]:
    """Offset and status of every stored message, by hop id."""
    import sqlalchemy as sa

    engine = sa.create_engine(ledger_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text('SELECT message_uuid, "offset", status FROM messages'))
            return {uuid: (int(offset), status) for uuid, offset, status in rows}
    finally:
        engine.dispose()


def _assert_offsets_committed(stack, hop_ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    from deployments.stack import ALERT_TOPIC

    stored = _stored_offsets(stack.ledger_url)
    missing = [h for h in hop_ids if h not in stored]
    assert not missing, f"not stored: {missing}"
    last = max(offset for offset, _ in stored.values())
    committed = _committed_offset(
        stack.broker.bootstrap, f"followup-{stack.options.settings_name}", ALERT_TOPIC
    )
    assert committed == last + 1, f"committed {committed}, last stored message at {last}"


def _quiet_alert(tag: str) -> bytes:
    """A valid alert the rules reject: stored and judged, starts no run."""
    from followup.alerts.mock import make_lvk_alert

    return make_lvk_alert(f"MS{tag}", "PRELIMINARY", far=1e-3, significant=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from deployments.demo import make_demo_alert
    from deployments.processes import free_port
    from deployments.stack import LocalStack, StackOptions
    from sandbox.server import SandboxConfig
    from tests.stack_support import serving

    demo = make_demo_alert()
    options = StackOptions(
        root=tmp_path_factory.mktemp("shutdown"),
        ui_port=free_port(),
        sandbox=SandboxConfig(completion_delay_s=3600.0, transients=[demo.transient]),
        listener_workers=1,
        alarms=False,
    )
    stack = LocalStack(options)
    stack.demo = demo  # type: ignore[attr-defined]
    with serving(stack):
        yield stack


def _replace(stack, name: str) -> None:  # type: ignore[no-untyped-def]
    stack.processes[:] = [p for p in stack.processes if p.name != name]


@pytest.mark.slow
def test_serve_stops_on_sigterm_with_a_flow_run_in_progress_and_serves_again(stack) -> None:
    from prefect.client.orchestration import get_client

    from blocks import HopCredentials, ListenerSettings, StartedBy
    from deployments.stack import ALERT_TOPIC

    # A run that lasts until it is stopped: a listener deployment run, in a consumer group of its
    # own (a killed member would hold the stack listener's partition until its session expires),
    # leaving runs to the triggers (no worker processes of its own).
    hop = HopCredentials(
        broker_url=f"kafka://{stack.broker.bootstrap}",
        topics=[ALERT_TOPIC],
        group_id="followup-shutdown-serve",
    )
    hop.save("shutdown-serve", overwrite=True)
    config = ListenerSettings.load(stack.options.settings_name)
    ListenerSettings(
        hop=hop,
        rules=config.rules,
        followup_settings=config.followup_settings,
        started_by=StartedBy.TRIGGER,
        workers=1,
    ).save("shutdown-serve", overwrite=True)
    (serve,) = [p for p in stack.processes if p.name == "serve"]
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        deployment = client.read_deployment_by_name("listen/listener")
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"listener_settings": "shutdown-serve", "name": "serve"}
        )

    def running() -> bool:
        with get_client(sync_client=True, httpx_settings=client_settings()) as client:
            state = client.read_flow_run(run.id).state
        return bool(state and state.is_running() and descendants(serve.pid))

    assert _wait_for(running, 180, interval=0.5), f"run {run.id} never ran:\n{serve.tail()}"
    pids = [serve.pid, *(p.pid for p in descendants(serve.pid))]

    started = time.monotonic()
    os.kill(serve.pid, signal.SIGTERM)
    took = _wait_gone(pids, 2 * SHUTDOWN_LIMIT_S)
    print(f"\ndeployments.serve, SIGTERM with a flow run in progress: gone in {took} s")
    assert took is not None, f"alive 20 s after SIGTERM: {_describe(pids)}\n{serve.tail()}"
    assert took <= SHUTDOWN_LIMIT_S, serve.tail()
    assert time.monotonic() - started < SHUTDOWN_LIMIT_S + 1

    def final() -> str | None:
        with get_client(sync_client=True, httpx_settings=client_settings()) as client:
            state = client.read_flow_run(run.id).state
        return state.type.value if state and state.is_final() else None

    assert _wait_for(final, 30, interval=1.0) in {"CRASHED", "CANCELLED"}, "run left running"
    _replace(stack, "serve")
    stack._start_serve()  # the same deployments, served again
    (again,) = [p for p in stack.processes if p.name == "serve"]
    assert again.running
    started = time.monotonic()
    again.stop_signal = signal.SIGINT
    again.stop(timeout=SHUTDOWN_LIMIT_S)
    print(f"deployments.serve restarted, SIGINT: gone in {time.monotonic() - started:.1f} s")
    assert again.stop_s is not None and again.stop_s <= SHUTDOWN_LIMIT_S
    _replace(stack, "serve")
    stack._start_serve()


@pytest.mark.slow
def test_the_listener_commits_what_it_stored_and_stops_its_runs_on_sigterm(stack) -> None:
    (listener,) = [p for p in stack.processes if p.name == "listener"]
    hop_ids = [stack.publish(_quiet_alert("991231sa"))]
    hop_ids.append(stack.publish(stack.demo.raw))  # accepted: a follow-up run starts
    run_id = stack.wait_for_run(stack.demo.event_id, timeout=180)
    assert run_id, listener.tail()
    assert _wait_for(lambda: len(descendants(listener.pid)) >= 1, 30)
    pids = [listener.pid, *(p.pid for p in descendants(listener.pid))]

    os.kill(listener.pid, signal.SIGTERM)
    took = _wait_gone(pids, 2 * SHUTDOWN_LIMIT_S)
    print(f"\ndeployments.listener, SIGTERM during a follow-up run: gone in {took} s")
    assert took is not None, f"alive 20 s after SIGTERM: {_describe(pids)}\n{listener.tail()}"
    assert took <= SHUTDOWN_LIMIT_S, listener.tail()
    _assert_offsets_committed(stack, hop_ids)
    _ledger_consistent(stack.ledger_url)
    _replace(stack, "listener")


@pytest.mark.slow
def test_followup_listen_stops_on_sigterm_and_on_ctrl_c_after_a_restart(stack) -> None:
    name = stack.options.settings_name
    argv = [str(BIN / "followup"), "listen", "--listener-settings", name, "--name", name]
    env = {k: v for k, v in stack._env.items() if k.startswith("PREFECT_")}
    times = {}
    for sig, tag in ((signal.SIGTERM, "991231sb"), (signal.SIGINT, "991231sc")):
        listen = Command(argv, cwd=stack.options.root, env=env)
        try:
            listen.wait_for_line("listening to", 300)
            hop_id = stack.publish(_quiet_alert(tag))
            assert _wait_for(
                lambda h=hop_id: (
                    _stored_offsets(stack.ledger_url).get(h, (0, "received"))[1] != "received"
                ),
                60,
            ), listen.output
            times[sig.name], _ = listen.stop(sig)
        finally:
            listen.kill()
        assert times[sig.name] <= SHUTDOWN_LIMIT_S, listen.output
        assert listen.process.returncode == 0, listen.output
        _assert_offsets_committed(stack, [hop_id])
    print(f"\nfollowup listen: gone in {times['SIGTERM']:.1f} s after SIGTERM, ", end="")
    print(f"{times['SIGINT']:.1f} s after Ctrl-C (restarted)")
    _ledger_consistent(stack.ledger_url)


@pytest.mark.slow
def test_the_whole_stack_stops_within_the_limit(stack) -> None:
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    stack._start_listener()
    EventsWorker.drain_all()  # while the server is up: nothing left to send at teardown
    APILogWorker.drain_all()
    pids = [p.pid for p in [*stack.processes, *stack.server.processes] if p.pid]
    pids += [d.pid for pid in list(pids) for d in descendants(pid)]
    assert stack.broker.pid is not None
    pids.append(stack.broker.pid)
    stack.stop()
    print(f"\nLocalStack.stop: {stack.stop_s:.1f} s; by process: {stack.stop_times}")
    assert stack.stop_s is not None and stack.stop_s <= SHUTDOWN_LIMIT_S
    assert _gone(pids), _describe([p for p in pids if not _gone([p])])


# ---------------------------------------------------------------------------------- production


def _services_reachable() -> bool:
    import socket

    for port in (5432, 6379):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except OSError:
            return False
    return True


@pytest.mark.slow
@pytest.mark.timeout(1500)  # two start-ups of the production profile
def test_make_production_stops_on_sigterm_and_on_ctrl_c_after_a_restart(tmp_path: Path) -> None:
    if not _services_reachable():
        pytest.skip("the production profile needs PostgreSQL on 5432 and Redis on 6379")
    import uuid

    from deployments.processes import free_port
    from deployments.production import PG_SERVER, drop_database

    tag = uuid.uuid4().hex[:8]
    prefect_db = f"postgresql+asyncpg://{PG_SERVER}/followup_shutdown_prefect_{tag}"
    ledger_db = f"postgresql+psycopg2://{PG_SERVER}/followup_shutdown_ledger_{tag}"
    port = free_port()
    env = {
        "FOLLOWUP_UI_PORT": str(port),
        "FOLLOWUP_PREFECT_DATABASE_URL": prefect_db,
        "FOLLOWUP_LEDGER_URL": ledger_db,
        "FOLLOWUP_WORKERS": "1",
        "FOLLOWUP_DASK_WORKERS": "1",
        "FOLLOWUP_DASK_THREADS": "1",
    }
    times = {}
    try:
        # SIGTERM to make itself: make does not pass it on, the recipe stops with make.
        make = Command(["make", "-s", "production", f"ROOT={tmp_path}"], cwd=REPO, env=env)
        try:
            make.wait_for_line("up in", 600)
            times["make, SIGTERM"], ports = make.stop(signal.SIGTERM)
        finally:
            make.kill()
        print(
            f"\nmake production, SIGTERM to make: every process gone in {times['make, SIGTERM']:.1f} s"
        )
        print(*[line for line in make.lines if "stack stopped in" in line], sep="\n")
        assert times["make, SIGTERM"] <= SHUTDOWN_LIMIT_S, make.output
        assert port in ports and len(ports) >= 5, ports  # Prefect, Kafka, Dask, the sandbox
        _assert_ports_free(ports)
        _ledger_consistent(ledger_db)

        # The same ports and databases again, then Ctrl-C.
        again = Command(
            [sys.executable, "-m", "deployments.production", "--root", str(tmp_path)],
            cwd=REPO,
            env=env,
        )
        try:
            again.wait_for_line("up in", 600)
            times["restarted, SIGINT"], ports = again.stop(signal.SIGINT)
        finally:
            again.kill()
        assert times["restarted, SIGINT"] <= SHUTDOWN_LIMIT_S, again.output
        assert "stopped in" in again.output, again.output
        _assert_ports_free(ports)
        _ledger_consistent(ledger_db)
    finally:
        for url in (prefect_db, ledger_db):
            drop_database(url)
    print("\nproduction profile: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))


# ---------------------------------------------------------------------------------- dispatcher


@pytest.mark.slow
def test_the_dispatcher_cuts_runs_short_after_its_grace_and_they_end_crashed(
    prefect_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This module's stack fixture points this process (settings and environment) at its own
    # server, which test_the_whole_stack_stops_within_the_limit has stopped: back to the session's.
    monkeypatch.setenv("PREFECT_API_URL", prefect_server.api_url)
    monkeypatch.setenv("PREFECT_HOME", str(prefect_server.home))
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        _dispatcher_cuts_runs_short()


def _dispatcher_cuts_runs_short() -> None:
    from prefect.client.orchestration import get_client

    from flows.dispatch import Dispatcher
    from tests.dispatch_flows import probe

    probe.to_deployment(name="probe-shutdown").apply()
    before = {p.pid for p in descendants(os.getpid())}
    dispatcher = Dispatcher(
        {"dispatch-probe/probe-shutdown": "tests.dispatch_flows:probe"}, workers=1
    ).start()
    workers = [
        p.pid
        for p in descendants(os.getpid())
        if p.pid not in before and "spawn_main" in " ".join(p.cmdline())
    ]
    run_id = dispatcher.dispatch("dispatch-probe/probe-shutdown", {"x": 1, "sleep_s": 120})

    def state() -> str | None:
        with get_client(sync_client=True, httpx_settings=client_settings()) as client:
            found = client.read_flow_run(run_id).state
        return found.type.value if found else None

    assert _wait_for(lambda: state() == "RUNNING", 60, interval=0.2), state()
    started = time.monotonic()
    cut = dispatcher.shutdown(grace_s=1.0)
    took = time.monotonic() - started
    print(f"\nDispatcher.shutdown(grace_s=1.0) with a run in progress: {took:.1f} s")
    assert cut == [run_id]
    assert took < 5.0
    assert workers and _wait_gone(workers, 2.0) is not None, _describe(workers)
    assert _wait_for(lambda: state() == "CRASHED", 30, interval=0.5), state()
