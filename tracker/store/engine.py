"""Turning a database URL into a configured SQLAlchemy engine."""

from __future__ import annotations

import functools
import json
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from tracker.exceptions import ConfigError

#: execution option marking a transaction that only reads (SQLite: plain BEGIN)
READ_ONLY = "tracker_read_only"

#: PostgreSQL ends a session left idle inside a transaction this long (milliseconds):
#: a frozen process (SIGSTOP, a debugger, a stalled VM) must not keep its row locks
#: for longer than a lease would. Every tracker transaction takes milliseconds.
PG_IDLE_IN_TRANSACTION_MS = 30_000

#: how long SQLite waits for another writer before giving up (milliseconds)
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: bytes per page of a new SQLite database. A finished prediction's row is 2.5-4 KB
#: (its logs, the last answer, input and output): on SQLite's default 4 KB pages
#: each took a page of its own, about a third of it empty; 8 KB pages hold two or
#: three (docs/performance.md, "Database size"). A database keeps the page size it
#: was created with.
SQLITE_PAGE_SIZE = 8192


def normalise_url(url: str) -> str:
    """Use the driver the tracker installs for plain ``postgresql://`` URLs."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"cannot parse database URL: {exc}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"unsupported database {parsed.get_backend_name()!r}: use sqlite:// or postgresql://"
        )
    return parsed.render_as_string(hide_password=False)


def sqlite_file(url: str) -> str | None:
    """The file a SQLite URL names; None for PostgreSQL, in-memory databases and
    ``file:`` URIs (``?uri=true``), whose options SQLite reads itself."""
    parsed = make_url(normalise_url(url))
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or database in (None, "", ":memory:"):
        return None
    if str(parsed.query.get("uri", "")).lower() in ("true", "1"):
        return None
    return database


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": 10,
            "application_name": "tracker",
            "options": f"-c idle_in_transaction_session_timeout={PG_IDLE_IN_TRANSACTION_MS}",
        },
    )


_compact_json = functools.partial(json.dumps, separators=(",", ":"))


def _sqlite_engine(url: str) -> Engine:
    is_memory = ":memory:" in url or url.rstrip("/") in ("sqlite:", "sqlite:/")
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        # JSON text without the blanks after "," and ":" (what json_extract reads is
        # the same; a finished prediction's row is about 70 bytes shorter)
        json_serializer=_compact_json,
        # one shared connection is the only way to share an in-memory database
        **({"poolclass": StaticPool} if is_memory else {}),
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # Takes effect only while the file is new and empty: see SQLITE_PAGE_SIZE.
        cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the lock at BEGIN, so they queue on busy_timeout instead
        # of failing later with "database is locked" when upgrading a read lock.
        # Read-only transactions (READ_ONLY execution option) need no lock at all.
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine
