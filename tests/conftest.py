"""Shared fixtures: the samples folder, ledgers on SQLite and PostgreSQL, free ports."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--remote-data"):
        return
    skip = pytest.mark.skip(reason="talks to a real service; run with --remote-data")
    for item in items:
        if "remote_data" in item.keywords:
            item.add_marker(skip)


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
