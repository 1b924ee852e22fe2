"""What the tests that run a whole local stack share: polling, run look-ups, pointing this
process at the stack's Prefect server for as long as a module uses it, and the sandbox seed.

Deadlines are for a busy machine: every ``timeout`` given to :func:`wait_for` (and every one
passed through :func:`patient`) is multiplied by ``FOLLOWUP_TEST_PATIENCE`` (default 3). A wait
ends as soon as its condition holds, so a generous deadline costs nothing when things work; it only
decides how long a broken run takes to fail. Tests wait on conditions, never on sleeps sized for a
quiet machine.

Every stack runs its sandbox on one seed (``FOLLOWUP_SANDBOX_SEED``, else the stack's configured
one, else the fixed default), and a failing test that ran one reports it
(:func:`sandbox_seed_report`, called by ``tests/conftest.py``): rerun with that variable set to
replay the same sky.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from followup.http import client_settings

if TYPE_CHECKING:
    import pytest

    from deployments.stack import LocalStack

S = TypeVar("S", bound="LocalStack")

PATIENCE_ENV = "FOLLOWUP_TEST_PATIENCE"
DEFAULT_PATIENCE = 3.0

_serving_seeds: list[int] = []
"""Seeds of the sandboxes of the stacks serving now (module-scoped fixtures)."""

_migrated: list[Path] = []
"""The Prefect database migrated once for this test process (see :func:`seed_prefect_home`)."""


def patient(seconds: float) -> float:
    """``seconds`` (a deadline that holds on a quiet machine) stretched for a busy one.

    The factor is ``FOLLOWUP_TEST_PATIENCE`` (default 3): on two cores shared with other work, a
    stack's processes get a fraction of a core each.
    """
    raw = os.environ.get(PATIENCE_ENV, "").strip()
    factor = float(raw) if raw else DEFAULT_PATIENCE
    if factor <= 0:
        raise ValueError(f"{PATIENCE_ENV} must be positive, not {raw!r}")
    return seconds * factor


def wait_for(check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy or the deadline passes.

    Args:
        check: The condition; its first truthy value is returned.
        timeout: Seconds that suffice on a quiet machine; the deadline is :func:`patient` of it.
        interval: Seconds between polls.

    Returns:
        The first truthy value, or the value of one last call after the deadline.
    """
    deadline = time.monotonic() + patient(timeout)
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    return check()


FORM_NOT_SAVED = "Run input schema not found."
"""Prefect's refusal of an answer sent between a run's pause and the saving of its form."""


def answer_form(run_id: Any, run_input: dict[str, Any], timeout: float = 60.0) -> None:
    """Answer a paused run's form through the resume API, as a person does in the UI.

    Prefect marks the run Paused before it saves the form (its schema, then its description), and
    rejects an answer sent in between; a person never sees the form then, so the answer is sent
    again until it is accepted. Any other refusal fails at once, with its reason.
    """
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True, httpx_settings=client_settings()) as client:

        def sent() -> bool:
            result = client.resume_flow_run(run_id, run_input=run_input)
            if result.status.value == "ACCEPT":
                return True
            reason = getattr(result.details, "reason", None)
            assert reason == FORM_NOT_SAVED, f"the answer was refused: {result}"
            return False

        assert wait_for(sent, timeout, interval=0.2), f"the form of {run_id} was never saved"


def form_text(run: Any, timeout: float = 60.0) -> str:
    """The description a paused run's form shows, once Prefect has saved it."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.input.run_input import keyset_from_paused_state

    keyset = keyset_from_paused_state(run.state)
    with get_client(sync_client=True, httpx_settings=client_settings()) as client:

        def read() -> str | None:
            try:
                return json.loads(client.read_flow_run_input(run.id, keyset["description"]))
            except PrefectHTTPStatusError as error:
                if error.response.status_code != 404:
                    raise
                return None

        text = wait_for(read, timeout, interval=0.2)
    assert text is not None, f"the form of {run.name} has no description after {timeout} s"
    return text


def flow_runs(name: str) -> list[Any]:
    """Flow runs with exactly this name, on the server this process points at."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True, httpx_settings=client_settings()) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
        )


def migrated_prefect_database() -> Path:
    """An empty Prefect SQLite database at the newest migration, made once per test process.

    ``prefect server database upgrade`` in a scratch PREFECT_HOME, as the server itself would on
    its first start; the folder goes when the process ends.
    """
    if _migrated:
        return _migrated[0]
    from deployments.prefect_server import prefect_env

    home = Path(tempfile.mkdtemp(prefix="prefect-template-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
        env=prefect_env(home, None),
        capture_output=True,
        text=True,
        timeout=patient(300),
        check=False,
    )
    database = home / "prefect.db"
    if result.returncode != 0 or not database.is_file():
        raise RuntimeError(f"migrating a Prefect database failed:\n{result.stdout}{result.stderr}")
    _migrated.append(database)
    return database


def seed_prefect_home(home: Path) -> bool:
    """Put a copy of the migrated database in a new server's PREFECT_HOME.

    Every server of a test session starts on an empty SQLite database, and the migrations
    Prefect runs on a first start cost each one 7-10 s of CPU (a minute of wall time on two busy
    cores); a copy of one migrated database is the same empty database, and the server's own
    upgrade on start finds nothing to do. A home that has a database already keeps it.

    Returns:
        True when the copy was put there.
    """
    target = Path(home) / "prefect.db"
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(migrated_prefect_database(), target)
    return True


@contextmanager
def serving(stack: S) -> Iterator[S]:
    """Start ``stack`` with this process pointed at its server; stop it and put things back.

    The stack's sandbox runs on ``FOLLOWUP_SANDBOX_SEED`` when it is set (a replay), else on its
    configured seed. A server on SQLite starts on a copy of a migrated database
    (:func:`seed_prefect_home`).

    The stack sets PREFECT_API_URL and PREFECT_HOME in the environment and another module's
    session server may be active in the settings, so both are restored afterwards, unless another
    set them meanwhile (the session's server, started by a test of the stack's module). Before
    the stack stops, what this process queued (events, logs) is sent to its server, and the
    workers bound to it are forgotten: later modules must get workers for their own server.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from sandbox.server import sandbox_seed

    seed = sandbox_seed(default=stack.options.sandbox.seed)
    stack.options.sandbox = stack.options.sandbox.model_copy(update={"seed": seed})
    home = getattr(stack.server, "home", None)
    if home is not None and getattr(stack.server, "database_url", None) is None:
        seed_prefect_home(home)  # SQLite: start on a migrated copy
    saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME")}
    _serving_seeds.append(seed)
    try:
        with temporary_settings(updates={PREFECT_API_URL: stack.server.api_url}), stack:
            yield stack
            EventsWorker.drain_all()
            APILogWorker.drain_all()
    finally:
        _serving_seeds.remove(seed)
        ours = {"PREFECT_API_URL": stack.server.api_url, "PREFECT_HOME": home and str(home)}
        for key, value in saved.items():
            if os.environ.get(key) != ours[key]:
                # Set since by someone else, such as the session's server when a test of a stack
                # module was its first user: theirs to keep, or the processes this one spawns
                # later (a dispatcher's workers) would find no server and start one of their own.
                continue
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def sandbox_seed_report(item: pytest.Item) -> str | None:
    """How to replay the sandbox sky of a test that ran one (None when it ran none).

    The seed is the one of a stack among the test's fixtures, of the demo's summary (a dict with
    ``sandbox_seed``), or of a stack serving while it ran.
    """
    seeds = []
    for value in getattr(item, "funcargs", {}).values():
        options = getattr(value, "options", None)
        if options is not None and hasattr(options, "sandbox"):
            seeds.append(options.sandbox.seed)
        elif isinstance(value, dict) and "sandbox_seed" in value:
            seeds.append(value["sandbox_seed"])
    seeds = seeds or _serving_seeds[-1:]
    if not seeds:
        return None
    return f"sandbox seed {seeds[0]}: rerun with FOLLOWUP_SANDBOX_SEED={seeds[0]} to replay its sky"
