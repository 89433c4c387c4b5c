"""Plumbing every store operation shares: the engine, transactions, error mapping."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Self

from sqlalchemy import Connection, Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from tracker.exceptions import SchemaMissing, StoreError, StoreUnavailable
from tracker.store.engine import READ_ONLY, make_engine

SCHEMA_HINT = "the database has no tracker tables yet: run `tracker db upgrade`"


class StoreBase:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 5) -> Self:
        return cls(make_engine(url, pool_size=pool_size))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One transaction; driver errors become the project's own."""
        with self._mapped_errors(), self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A transaction that only reads. On SQLite it does not take the write lock,
        so reports and listings never wait behind a running daemon (WAL lets readers
        and a writer work side by side)."""
        with (
            self._mapped_errors(),
            self.engine.connect() as conn,
            conn.execution_options(**{READ_ONLY: True}).begin(),
        ):
            yield conn

    @staticmethod
    @contextlib.contextmanager
    def _mapped_errors() -> Iterator[None]:
        """Driver errors become the project's own."""
        try:
            yield
        except StoreError:
            raise
        except OperationalError as exc:
            if _is_missing_table(exc):
                raise SchemaMissing(SCHEMA_HINT) from exc
            if _is_data_limit(exc):
                raise StoreError(f"database error: {_short(exc)}") from exc
            raise StoreUnavailable(f"database unavailable: {_short(exc)}") from exc
        except DBAPIError as exc:
            if _is_missing_table(exc):
                raise SchemaMissing(SCHEMA_HINT) from exc
            if exc.connection_invalidated:
                raise StoreUnavailable(f"database connection lost: {_short(exc)}") from exc
            raise StoreError(f"database error: {_short(exc)}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"database error: {_short(exc)}") from exc

    def _insert_ignore(self, table: Any) -> Any:
        return insert_ignore(self.dialect, table)


def insert_ignore(dialect: str, table: Any) -> Any:
    """INSERT that skips rows whose unique key exists (both engines)."""
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing()


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _is_missing_table(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)


def _is_data_limit(exc: DBAPIError) -> bool:
    """A value beyond one of the engine's limits (SQLSTATE class 54, say an index
    entry too large): psycopg calls it operational, but it belongs to the row being
    written, not to the database's health, so a batch retries its rows one by one."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("54")


def _short(exc: Exception) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0][:300]
