"""Shared fixtures: the samples folder, ledgers on SQLite and PostgreSQL, free ports, the
difference-imaging scene and its frame pair."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from followup.ledger import Ledger

REPO = Path(__file__).resolve().parents[1]
SAMPLES = Path(os.environ.get("FOLLOWUP_SAMPLES", REPO.parent / "shared" / "samples"))
PG_ADMIN_URL = os.environ.get("FOLLOWUP_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--remote-data",
        action="store_true",
        default=False,
        help="run tests marked remote_data, which talk to the real LCO, HERMES, TNS or GCN",
    )


SLOW_TIMEOUT_S = 400.0
"""Hang guard of a ``slow`` test (setup included: a module's stack starts in its first test's
setup) on a quiet machine; stretched by ``FOLLOWUP_TEST_PATIENCE`` like every stack deadline."""


STACK_MODULES = frozenset(
    {
        "test_end_to_end.py",
        "test_faults.py",
        "test_observatory.py",
        "test_requests_stack.py",
        "test_scale.py",
        "test_shutdown.py",
    }
)
"""Modules that start whole stacks (Prefect server, Kafka, the sandbox, serve, the listener, workers)
or the demo. Under ``make test``'s two xdist workers they run first (:func:`pytest_xdist_make_scheduler`)."""

ALONE_STACK_MODULES = {"test_end_to_end.py": 0, "test_scale.py": 2}
"""Stack modules that are units of their own, with their place in line (:func:`_unit_rank`): the
demo (142 CPU-s on a quiet machine, most of it searching 4k frames) starts on one worker while the
other stack modules run one after the other on the second, and the production profile's burst
(its asserts count runs, requests and frames, not seconds) follows the demo. With all six stack
modules on one worker, that worker was the suite's critical path."""


LONG_MODULES = (
    "test_automations.py",
    "test_flow_approvals.py",
    "test_candidate_flow.py",
    "test_stream.py",
    "test_replan_flow.py",
    "test_photometry.py",
    "test_claims.py",
    "test_prefect_yaml.py",
    "test_sandbox_server.py",
    "test_ledger.py",
    "test_blocks_standard.py",
    "test_task_retries.py",
)
"""The other modules that take longest (10 to 64 s each on a worker, ``--durations=0`` of a
quiet run), longest first: handed out before the short ones, so that the suite does not end with
one worker in a long module while the other has nothing left to do."""


def _unit_rank(path: str | Path) -> tuple[int, int]:
    """Where a module's unit stands: the demo 0, the other stacks 1, the burst 2, the rest 3.

    Within the rest, :data:`LONG_MODULES` in their order, then the others in collection order.
    """
    name = Path(path).name
    if name in STACK_MODULES:
        return ALONE_STACK_MODULES.get(name, 1), 0
    if name in LONG_MODULES:
        return 3, LONG_MODULES.index(name)
    return 3, len(LONG_MODULES)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` with the stack modules in three units, handed out first.

    Every module goes to one worker whole (its module fixtures are built once), in collection
    order (:func:`_unit_rank`). The stack modules that restart servers and time their shutdowns
    form one unit, which starts on one worker; the demo starts on the other, and the burst, next
    in line, goes to the worker that finishes first (the demo's), before any unit test. (xdist's
    own ``loadgroup`` cannot do it here: it renames items in a way pytest 9 no longer honours.)
    """
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class StacksFirst(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "stack modules" if _unit_rank(path)[0] == 1 else path

    # Units in collection order, where the workers put the stack modules first.
    config.option.loadscopereorder = False
    return StacksFirst(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from tests.stack_support import patient

    if hasattr(config, "workerinput"):  # an xdist worker: the stack modules' units first
        items.sort(key=lambda item: _unit_rank(item.path))

    slow_timeout = pytest.mark.timeout(patient(SLOW_TIMEOUT_S))
    for item in items:
        if "slow" in item.keywords and item.get_closest_marker("timeout") is None:
            item.add_marker(slow_timeout)
    if config.getoption("--remote-data"):
        return
    skip = pytest.mark.skip(reason="talks to a real service; run with --remote-data")
    for item in items:
        if "remote_data" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """An xdist worker sends its summary sections (tests/summary.py) to the controller."""
    from tests.summary import SECTIONS

    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["summary_sections"] = SECTIONS


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """The controller keeps the summary sections a finished xdist worker sent."""
    from tests.summary import merge

    merge(getattr(node, "workeroutput", {}).get("summary_sections", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.summary import SECTIONS

    for title, lines in SECTIONS.items():
        terminalreporter.section(title)
        for line in lines:
            terminalreporter.write_line(line)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test that ran the sandbox says which seed replays its sky."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        from tests.stack_support import sandbox_seed_report

        if (line := sandbox_seed_report(item)) is not None:
            report.sections.append(("sandbox seed", line))


@pytest.fixture(scope="module")
def scene() -> Any:
    """The difference-imaging tests' sky (``benchmarks/transient_scenes.py``: stars, two hosts,
    a transient on one, a minor planet, a star fainter than the reference catalogue)."""
    from benchmarks.transient_scenes import standard_scene

    return standard_scene(1)


@pytest.fixture(scope="module")
def frames(scene: Any) -> Any:
    """The scene's science frame and its reference of another night (``pair``)."""
    from benchmarks.transient_scenes import pair

    return pair(scene, 1)


@pytest.fixture(scope="session")
def samples() -> Path:
    """The shared folder of real alerts and sky maps written by others; skip when absent."""
    if not SAMPLES.is_dir():
        pytest.skip(f"samples folder {SAMPLES} is absent")
    return SAMPLES


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A migrated ledger in a fresh SQLite file."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    yield ledger
    ledger.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the machine's server, dropped afterwards."""
    import sqlalchemy as sa

    name = f"followup_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(f"{PG_ADMIN_URL}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_ADMIN_URL}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """A migrated ledger, once on SQLite and once on PostgreSQL: the same code must pass both."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    ledger = Ledger(url)
    ledger.migrate()
    yield ledger
    ledger.dispose()


SESSION_SERVER_SERVICES = {
    # Nothing on the session's server runs on a schedule or reads a worker's health: scheduled
    # runs (``deploy --all`` puts an every-5-min schedule on it), their Late marks and the
    # foreman's worker checks are work no test asks for.
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
    # Events a test reads back (``/events/filter``) are written within 1 s, not 5 s.
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "1",
}
"""The session server's services that differ from Prefect's defaults, in tests only."""


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real Prefect server (SQLite) for the session; this process and its children use it.

    Its settings are also the process-global ones while it runs, as ``prefect_test_harness`` does:
    a thread started without a copy of this context (a flow run in a plain ``threading.Thread``)
    talks to it too. A stack test's ``serving`` points this context at its own server meanwhile.
    """
    from prefect.context import _temporary_global_settings_context, get_settings_context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.prefect_server import PrefectServer
    from tests.stack_support import seed_prefect_home

    home = tmp_path_factory.mktemp("prefect-home")
    seed_prefect_home(home)
    server = PrefectServer(
        home, port=free_port(), log_dir=home / "logs", extra_env=SESSION_SERVER_SERVICES
    )
    server.start()
    saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME")}
    os.environ.update(PREFECT_API_URL=server.api_url, PREFECT_HOME=str(home))
    try:
        with (
            temporary_settings(updates={PREFECT_API_URL: server.api_url}),
            _temporary_global_settings_context(get_settings_context()),
        ):
            yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def prefect_api(prefect_server: object) -> Iterator[object]:
    """The middle layer's Prefect API: the session's server, shared by every module that runs flows.

    In place of one ``prefect_test_harness`` per module: each harness migrated a fresh database
    and started a server of its own, 15-75 s apiece on two busy cores, for the same API. Modules
    keep apart by the names they give their runs and Blocks. What a module queued (events, logs)
    is sent before the next one starts.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    # A paused run here goes on within 0.5 s of the test's answer (2 s in production, where a
    # person answers): the flows in this process ask again and again (tests/test_flow_approvals).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("flows.approvals.PAUSE_POLL_S", 0.5)
        yield prefect_server
    EventsWorker.drain_all()
    APILogWorker.drain_all()
