"""Stack test support: the sandbox seed (chosen by FOLLOWUP_SANDBOX_SEED, reported when a test
fails), deadlines stretched for a busy machine, and servers started on a migrated database."""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sandbox.server import DEFAULT_SEED, SEED_ENV, SandboxConfig, sandbox_seed
from tests.conftest import pytest_runtest_makereport
from tests.stack_support import (
    DEFAULT_PATIENCE,
    PATIENCE_ENV,
    patient,
    sandbox_seed_report,
    seed_prefect_home,
    serving,
    wait_for,
)


class FakeStack(nullcontext):
    """What ``serving`` needs of a stack, without starting anything."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.options = SimpleNamespace(sandbox=SandboxConfig(seed=seed))
        self.server = SimpleNamespace(api_url="http://127.0.0.1:9/api")


def test_the_seed_comes_from_the_environment_else_the_default() -> None:
    assert sandbox_seed({}) == DEFAULT_SEED
    assert sandbox_seed({SEED_ENV: " 42 "}) == 42
    assert sandbox_seed({SEED_ENV: ""}, default=7) == 7
    with pytest.raises(ValueError, match=SEED_ENV):
        sandbox_seed({SEED_ENV: "forty-two"})
    assert SandboxConfig().seed == DEFAULT_SEED


def test_serving_replays_the_seed_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    item = SimpleNamespace(funcargs={})
    monkeypatch.setenv(SEED_ENV, "1234")
    stack = FakeStack(seed=5)
    with serving(stack):  # type: ignore[type-var]
        assert stack.options.sandbox.seed == 1234
        assert "FOLLOWUP_SANDBOX_SEED=1234" in str(sandbox_seed_report(item))  # type: ignore[arg-type]
    assert sandbox_seed_report(item) is None  # type: ignore[arg-type]
    monkeypatch.delenv(SEED_ENV)
    kept = FakeStack(seed=5)
    with serving(kept):  # type: ignore[type-var]
        assert kept.options.sandbox.seed == 5


class EnvironmentStack(FakeStack):
    """A fake stack that points the environment at its server, as a started stack does."""

    def __init__(self, home: Path) -> None:
        super().__init__(seed=5)
        self.server.home = home
        self.server.database_url = "postgresql+asyncpg://unused"  # no migrated copy to make

    def __enter__(self) -> EnvironmentStack:
        os.environ.update(PREFECT_API_URL=self.server.api_url, PREFECT_HOME=str(self.server.home))
        return self


def test_serving_puts_back_the_environment_unless_another_server_took_it_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:7/api")
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    with serving(EnvironmentStack(tmp_path / "a")):  # type: ignore[type-var]
        assert os.environ["PREFECT_API_URL"] == "http://127.0.0.1:9/api"
    assert os.environ["PREFECT_API_URL"] == "http://127.0.0.1:7/api"
    assert "PREFECT_HOME" not in os.environ
    # The session's server, started by a test of the stack's module, sets both while it serves.
    with serving(EnvironmentStack(tmp_path / "b")):  # type: ignore[type-var]
        os.environ.update(PREFECT_API_URL="http://127.0.0.1:8/api", PREFECT_HOME="session")
    assert os.environ["PREFECT_API_URL"] == "http://127.0.0.1:8/api"
    assert os.environ["PREFECT_HOME"] == "session"


@pytest.mark.parametrize(
    ("funcargs", "expected"),
    [
        pytest.param({"stack": FakeStack(seed=77), "n": 1}, 77, id="stack-fixture"),
        pytest.param({"demo": {"sandbox_seed": 88, "event_id": "MS1"}}, 88, id="demo-summary"),
        pytest.param({"tmp_path": "/tmp", "n": 1}, None, id="no-sandbox"),
    ],
)
def test_a_failing_test_reports_the_seed_of_its_sandbox(
    funcargs: dict[str, Any], expected: int | None
) -> None:
    item = SimpleNamespace(funcargs=funcargs)
    report = SimpleNamespace(failed=True, sections=[])
    hook = pytest_runtest_makereport(item, None)  # type: ignore[arg-type]
    next(hook)
    with pytest.raises(StopIteration):
        hook.send(SimpleNamespace(get_result=lambda: report))
    if expected is None:
        assert report.sections == []
    else:
        assert report.sections == [
            (
                "sandbox seed",
                f"sandbox seed {expected}: rerun with FOLLOWUP_SANDBOX_SEED={expected} "
                "to replay its sky",
            )
        ]
    passed = SimpleNamespace(failed=False, sections=[])
    hook = pytest_runtest_makereport(item, None)  # type: ignore[arg-type]
    next(hook)
    with pytest.raises(StopIteration):
        hook.send(SimpleNamespace(get_result=lambda: passed))
    assert passed.sections == []


def test_deadlines_stretch_by_the_patience_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(PATIENCE_ENV, raising=False)
    assert patient(10) == 10 * DEFAULT_PATIENCE
    monkeypatch.setenv(PATIENCE_ENV, "1.5")
    assert patient(10) == 15
    calls = []
    assert wait_for(lambda: calls.append(1) or len(calls) >= 2, timeout=5, interval=0.01)
    monkeypatch.setenv(PATIENCE_ENV, "0")
    with pytest.raises(ValueError, match=PATIENCE_ENV):
        patient(10)


def test_a_new_prefect_home_gets_a_migrated_database_and_an_old_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    import sqlite3

    assert seed_prefect_home(tmp_path / "new")
    with sqlite3.connect(tmp_path / "new" / "prefect.db") as db:
        (version,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    assert version
    kept = tmp_path / "old" / "prefect.db"
    kept.parent.mkdir()
    kept.write_bytes(b"runs of a server that stopped")
    assert not seed_prefect_home(kept.parent)
    assert kept.read_bytes() == b"runs of a server that stopped"
