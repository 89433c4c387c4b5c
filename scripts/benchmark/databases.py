"""Throwaway SQLite and PostgreSQL databases for the benchmarks, and read-only queries
beside a running daemon.

PostgreSQL is administered through ``PG_ADMIN`` (TRACKER_TEST_PG_URL, as the tests):
``pg_admin`` runs a statement there, ``pg_url`` names a database on the same server."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from tracker.store import migrate
from tracker.store.store import Store

PG_ADMIN = os.environ.get("TRACKER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
TERMINAL = ("succeeded", "failed", "canceled", "aborted")
#: the tables whose bytes the benchmarks report
TABLES = (
    "predictions",
    "status_transitions",
    "prediction_logs",
    "callbacks",
    "deliveries",
    "delivery_attempts",
)


# -- PostgreSQL administration -------------------------------------------------------------


def pg_url(dbname: str) -> str:
    """The URL of database ``dbname`` on the admin URL's server."""
    return PG_ADMIN.rpartition("/")[0] + f"/{dbname}"


def pg_admin(sql: str, connect_timeout: int = 10) -> None:
    """Run one statement (CREATE / DROP DATABASE) on the admin connection."""
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=connect_timeout) as conn:
        conn.execute(sql)


def pg_create(dbname: str, template: str | None = None) -> str:
    """Create database ``dbname`` (a copy of ``template``); its URL."""
    pg_admin(f'CREATE DATABASE "{dbname}"' + (f' TEMPLATE "{template}"' if template else ""))
    return pg_url(dbname)


def pg_drop(dbname: str) -> None:
    pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def pg_reachable(connect_timeout: int = 5) -> str | None:
    """None if the admin URL answers, else why not."""
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=connect_timeout):
            return None
    except psycopg.OperationalError as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN}: {exc}"


def pg_version() -> str:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]


def pg_backends(url: str) -> list[int]:
    """The process ids of the tracker's connections to this database."""
    dbname = url.rpartition("/")[2]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = 'tracker'",
            [dbname],
        ).fetchall()
    return [int(r[0]) for r in rows]


# -- one database per run ------------------------------------------------------------------


def new_database(engine: str, sqlite_path: Path) -> tuple[str, str | None]:
    """An empty database URL for one run, and the PostgreSQL database to drop after it
    (None for SQLite, whose file is ``sqlite_path``)."""
    if engine == "sqlite":
        return f"sqlite:///{sqlite_path}", None
    dbname = f"tracker_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    return pg_url(dbname), dbname


def drop_database(dbname: str | None) -> None:
    if dbname:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


class Databases:
    """Throwaway databases cloned from one migrated template per engine."""

    def __init__(self, workdir: Path, keep: bool) -> None:
        self.workdir = workdir
        self.keep = keep
        self._templates: dict[str, str] = {}
        self._pg: list[str] = []
        self._lock = threading.Lock()
        self.empty_bytes: dict[str, int] = {}

    def template(self, engine: str) -> str:
        with self._lock:
            if engine not in self._templates:
                if engine == "sqlite":
                    path = self.workdir / "template.db"
                    url = f"sqlite:///{path}"
                    name = str(path)
                else:
                    name = f"tracker_bench_tpl_{uuid.uuid4().hex[:8]}"
                    url = pg_create(name)
                    self._pg.append(name)
                store = Store.from_url(url)
                try:
                    migrate.upgrade(store)
                finally:
                    store.close()
                self._templates[engine] = name
                self.empty_bytes[engine] = database_size(url)
            return self._templates[engine]

    def new(self, engine: str, label: str) -> str:
        template = self.template(engine)
        if engine == "sqlite":
            path = self.workdir / f"{label}.db"
            shutil.copyfile(template, path)
            return f"sqlite:///{path}"
        name = f"tracker_bench_{label.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
        url = pg_create(name, template)
        with self._lock:
            self._pg.append(name)
        return url

    def drop_all(self) -> None:
        """Drop the PostgreSQL databases made here; with ``keep``, only the templates
        (nothing is measured in them, and they would stay behind unnamed)."""
        templates = {self._templates.get("postgresql")}
        for name in reversed(self._pg):
            if self.keep and name not in templates:
                continue
            with contextlib.suppress(psycopg.Error):
                pg_drop(name)
        self._pg = [name for name in self._pg if self.keep and name not in templates]


# -- sizes ---------------------------------------------------------------------------------


def database_size(url: str) -> int:
    """Bytes on disk: the SQLite file (and its WAL), or pg_database_size."""
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        wal = Path(f"{path}-wal")
        return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    dbname = url.rpartition("/")[2]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        row = conn.execute("SELECT pg_database_size(%s)", [dbname]).fetchone()
        assert row is not None
        return int(row[0])


def table_bytes(url: str) -> dict[str, int]:
    """Bytes per table, its indexes included (dbstat / pg_total_relation_size)."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            index_of = dict(
                conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'")
            )
            sizes: Counter[str] = Counter()
            for name, size in conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
                sizes[index_of.get(name, name)] += size
        finally:
            conn.close()
        return {n: int(sizes[n]) for n in TABLES}
    with psycopg.connect(url, autocommit=True) as pg:
        return {
            n: int(pg.execute("SELECT pg_total_relation_size(%s)", [n]).fetchone()[0])  # type: ignore[index]
            for n in TABLES
        }


# -- reading beside a daemon ---------------------------------------------------------------


def sqlite_text(moment: datetime) -> str:
    """A UTC time as the tracker stores it in SQLite."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class Reader:
    """Plain read-only queries beside a running daemon, without the tracker's engine
    (which starts every SQLite transaction with BEGIN IMMEDIATE, i.e. takes the write
    lock): a reader must not slow the daemon it measures."""

    def __init__(self, url: str) -> None:
        self.sqlite = url.startswith("sqlite")
        self._conn: Any
        if self.sqlite:
            path = url.removeprefix("sqlite:///")
            self._conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=30
            )
        else:
            self._conn = psycopg.connect(url, autocommit=True)
        self._lock = threading.Lock()

    def scalar(self, sql: str, *params: Any) -> Any:
        if self.sqlite:
            sql = sql.replace("%s", "?")
            params = tuple(sqlite_text(p) if isinstance(p, datetime) else p for p in params)
        with self._lock:
            row = self._conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def overdue(self, now: datetime) -> datetime | None:
        """The most overdue poll, the way `tracker status` finds it (the due index)."""
        value = self.scalar(
            "SELECT next_poll_at FROM predictions WHERE tracking = 'active'"
            " AND next_poll_at <= %s ORDER BY next_poll_at LIMIT 1",
            now,
        )
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        return value

    def schedules(self) -> list[tuple[str, float, float]]:
        """(id, last answer or registration, next poll) of active rows nobody has claimed:
        what the scheduler decided after each answer, as epoch seconds."""
        sql = (
            "SELECT id, coalesce(last_polled_at, registered_at), next_poll_at FROM predictions"
            " WHERE tracking = 'active' AND claimed_by IS NULL AND next_poll_at IS NOT NULL"
        )
        with self._lock:
            rows = self._conn.execute(sql).fetchall()
        return [(pid, _epoch(base), _epoch(due)) for pid, base, due in rows]

    def active_and_pending(self) -> tuple[int, int]:
        active = self.scalar("SELECT count(*) FROM predictions WHERE tracking = 'active'")
        pending = self.scalar("SELECT count(*) FROM deliveries WHERE state = 'pending'")
        return int(active), int(pending)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()


def _epoch(value: Any) -> float:
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()
    return value.timestamp()


# -- what a run left in the database -------------------------------------------------------


def read_database(url: str) -> dict[str, Any]:
    """Terminal transitions with upstream completion times, and delivery bookkeeping."""
    from sqlalchemy import func, select

    from tracker.store.engine import make_engine
    from tracker.store.tables import deliveries, delivery_attempts, predictions, status_transitions

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            first_terminal = (
                select(func.min(status_transitions.c.id))
                .where(status_transitions.c.to_status.in_(TERMINAL))
                .group_by(status_transitions.c.prediction_id)
            )
            rows = conn.execute(
                select(
                    status_transitions.c.prediction_id,
                    status_transitions.c.from_status,
                    status_transitions.c.to_status,
                    status_transitions.c.observed_at,
                    predictions.c.completed_at,
                )
                .join(predictions, predictions.c.id == status_transitions.c.prediction_id)
                .where(status_transitions.c.id.in_(first_terminal))
            ).all()
            states: dict[str, int] = dict(
                conn.execute(
                    select(deliveries.c.state, func.count()).group_by(deliveries.c.state)
                ).all()
            )
            attempts = conn.execute(select(func.count()).select_from(delivery_attempts)).scalar()
            failed_attempts = conn.execute(
                select(func.count())
                .select_from(delivery_attempts)
                .where(delivery_attempts.c.error.is_not(None))
            ).scalar()
            durations = [
                float(d)
                for d in conn.execute(
                    select(delivery_attempts.c.duration_ms).where(
                        delivery_attempts.c.duration_ms.is_not(None)
                    )
                ).scalars()
            ]
    finally:
        engine.dispose()
    return {
        "terminal": {
            r.prediction_id: {
                "from_status": r.from_status,
                "to_status": r.to_status,
                "observed_at": r.observed_at.timestamp(),
                "completed_at": r.completed_at.timestamp() if r.completed_at else None,
            }
            for r in rows
        },
        "delivery_states": states,
        "attempts": attempts,
        "failed_attempts": failed_attempts,
        "attempt_durations": durations,
    }
