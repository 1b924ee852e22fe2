"""The ledger's database: engine, sessions, migrations, and the bulk-write helpers the stores share.

Every store of the ledger (:mod:`followup.ledger.alerts`, ``events``, ``requests``...) works
through one :class:`Database`: each of its calls opens and closes its own transaction, so one
Database (and the :class:`~followup.ledger.Ledger` built on it) can be shared by threads.
"""

from __future__ import annotations

import json
import operator
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import Insert

from followup.exceptions import LedgerError
from followup.ledger.schema import Base, StatusText

__all__ = ["Database", "JsonText", "chunks", "executemany", "set_columns"]

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class JsonText(str):
    """A JSON document already serialised: JSON columns store it as it is."""


def _json_serializer(value: Any) -> str:
    if isinstance(value, JsonText):
        return str(value)
    return json.dumps(value)


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Database:
    """The ledger's engine and sessions.

    Args:
        url: SQLAlchemy URL, ``sqlite:///path.db`` (default embedded) or
            ``postgresql+psycopg2://user@host/db``.
        echo: Log SQL statements.
    """

    _migrate_lock = threading.Lock()

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        kwargs: dict[str, Any] = {
            "echo": echo,
            "future": True,
            "json_serializer": _json_serializer,
        }
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
            if url.startswith(("postgresql://", "postgresql+psycopg2://")):
                # Batched UPDATEs too (psycopg2 otherwise sends one statement per row).
                kwargs["executemany_mode"] = "values_plus_batch"
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}({self.engine.url.render_as_string(hide_password=True)!r})"

    def migrate(self, revision: str = "head") -> None:
        """Bring the database schema to ``revision`` with alembic (idempotent)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self._migrate_lock, self.engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session


def set_columns(row: Base, fields: Mapping[str, Any]) -> None:
    """Set columns of a mapped row by name; a status column takes its enum (validated here).

    Raises:
        LedgerError: The table has no such column, or a status is not one of its enum's values.
    """
    table = row.__table__
    for key, value in fields.items():
        column = table.columns.get(key)
        if column is None:
            raise LedgerError(f"{table.name} has no column {key!r}")
        if value is not None and isinstance(column.type, StatusText):
            try:
                value = column.type.enum_class(value)
            except ValueError as exc:
                raise LedgerError(f"{table.name}.{key} cannot be {value!r}") from exc
        setattr(row, key, value)


def chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    """``items`` in slices of at most ``size`` (one ``IN (...)`` list each)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def executemany(conn: Connection, name: str, statement: Any, rows: list[dict[str, Any]]) -> None:
    """Execute one statement for many rows, without SQLAlchemy's per-row overhead on SQLite.

    SQLAlchemy spends several microseconds per row and statement building parameters, more than
    SQLite spends storing the row: on the listener's hot path that halves throughput. On SQLite the
    statement is compiled once, each value goes through the same bind processor SQLAlchemy would
    use (so stored values are identical), and the rows go to the driver's ``executemany``. Other
    databases use SQLAlchemy's own executemany (psycopg2 batches inserts itself).

    Args:
        conn: A connection in a transaction.
        name: The statement's name, its cache key together with the columns of ``rows``.
        statement: An insert or update statement whose parameters are the keys of ``rows``.
        rows: One dict of parameters per row, all with the same keys.
    """
    if not rows:
        return
    dialect = conn.dialect
    if dialect.name != "sqlite" or dialect.paramstyle != "qmark":
        conn.execute(statement, rows)
        return
    keys = tuple(rows[0])
    cache_key = (name, keys)
    plan = _EXECUTEMANY_PLANS.get(cache_key)
    if plan is None:
        if isinstance(statement, Insert):
            statement = statement.values({k: bindparam(k) for k in keys})
        compiled = statement.compile(dialect=dialect)
        order = tuple(compiled.positiontup or ())
        processors = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in order
        )
        plan = (
            compiled.string,
            operator.itemgetter(*order) if len(order) > 1 else (lambda row: (row[order[0]],)),
            tuple((i, proc) for i, proc in enumerate(processors) if proc is not None),
        )
        _EXECUTEMANY_PLANS[cache_key] = plan
    sql, getter, converters = plan
    params = []
    for row in rows:
        values = list(getter(row))
        for i, convert in converters:
            values[i] = convert(values[i])
        params.append(tuple(values))
    conn.exec_driver_sql(sql, params)


# Compiled statements by (statement name, columns): a handful, built once per process.
_EXECUTEMANY_PLANS: dict[tuple[str, tuple[str, ...]], tuple[str, Any, tuple[Any, ...]]] = {}
