"""Listing predictions: the filters ``tracker list`` and ``Tracker.list`` share, read
either whole or streamed row by row (a server-side cursor on PostgreSQL, the
cursor stepped as rows are taken on SQLite), and counted with the same filters."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, RowMapping, Select, func, select

from tracker.domain import Prediction, Tracking
from tracker.store.base import StoreBase
from tracker.store.label_filter import carrying, scan_first
from tracker.store.tables import predictions

#: rows fetched from the database at a time when a listing is streamed
STREAM_BATCH = 500

#: how long a streamed listing on PostgreSQL may wait for its reader (a pager, a
#: slow pipe) between two batches before the server ends it; the session default
#: (engine.PG_IDLE_IN_TRANSACTION_MS) is for transactions that hold row locks,
#: which a listing never takes
STREAM_IDLE_TIMEOUT = "15min"


@dataclass(frozen=True, slots=True)
class PredictionQuery:
    """Which predictions a listing covers, and in which order.

    ``since`` and ``until`` bound the registration time (since inclusive, until
    exclusive, as reports do); ``labels`` must all match."""

    statuses: Sequence[str] = ()
    active_only: bool = False
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    limit: int | None = None
    newest_first: bool = False

    def conditions(self, *, scan_labels: bool = False) -> list[ColumnElement[bool]]:
        """The filters (``scan_labels``: labels written for a scan in the listing's
        order, ``tracker.store.label_filter``)."""
        c = predictions.c
        conditions: list[ColumnElement[bool]] = []
        if self.statuses:
            conditions.append(c.status.in_(self.statuses))
        if self.active_only:
            conditions.append(c.tracking == Tracking.ACTIVE.value)
        if self.model:
            conditions.append(c.model == self.model)
        if self.since is not None:
            conditions.append(c.registered_at >= self.since)
        if self.until is not None:
            conditions.append(c.registered_at < self.until)
        conditions.extend(carrying(c.id, self.labels, scan=scan_labels))
        return conditions

    def select(self, stmt: Select[Any], conn: Connection) -> Select[Any]:
        """``stmt`` with these filters, this order and this limit (for ``conn``)."""
        scan = scan_first(conn, self.labels, self.limit)
        c = predictions.c
        order = (
            (c.registered_at.desc(), c.id.desc())
            if self.newest_first
            else (
                c.registered_at,
                c.id,
            )
        )
        stmt = stmt.where(*self.conditions(scan_labels=scan)).order_by(*order)
        return stmt if self.limit is None else stmt.limit(self.limit)


class ListingOps(StoreBase):
    """Prediction listings (mixed into ``Store``)."""

    def list_predictions(
        self,
        *,
        statuses: Sequence[str] = (),
        active_only: bool = False,
        model: str | None = None,
        limit: int | None = None,
        query: PredictionQuery | None = None,
    ) -> list[Prediction]:
        """Whole predictions, logs included: for a few rows; listings use ``list_columns``.
        ``query`` (every filter and the order) replaces the keyword filters."""
        query = query or PredictionQuery(statuses, active_only, model, limit=limit)
        with self._reading() as conn:
            rows = conn.execute(query.select(_whole, conn)).mappings()
            return [prediction_record(row) for row in rows]

    def list_columns(
        self,
        columns: Sequence[str],
        *,
        statuses: Sequence[str] = (),
        active_only: bool = False,
        model: str | None = None,
        limit: int | None = None,
        query: PredictionQuery | None = None,
    ) -> list[dict[str, Any]]:
        """These columns of the predictions, oldest registration first unless ``query``
        says otherwise: a listing reads only what it prints, never the logs or raw
        bodies (they can be huge)."""
        query = query or PredictionQuery(statuses, active_only, model, limit=limit)
        return list(self.iter_columns(columns, query))

    def iter_columns(
        self, columns: Sequence[str], query: PredictionQuery
    ) -> Iterator[dict[str, Any]]:
        """``list_columns`` a row at a time, as the database hands them over: the
        first row comes before the last is read, and memory stays flat however
        many rows there are. The read transaction lasts until the iterator is
        exhausted or closed (``contextlib.closing`` it when stopping early)."""
        listed = select(*(predictions.c[name] for name in columns))
        with self._streaming() as conn, conn.execute(query.select(listed, conn)) as result:
            for row in result.mappings():
                yield dict(row)

    def iter_predictions(self, query: PredictionQuery) -> Iterator[Prediction]:
        """Whole predictions, logs included, a row at a time (see ``iter_columns``)."""
        with self._streaming() as conn, conn.execute(query.select(_whole, conn)) as result:
            for row in result.mappings():
                yield prediction_record(row)

    def count_predictions(self, query: PredictionQuery) -> int:
        """How many predictions ``query`` covers, its limit aside."""
        stmt = select(func.count()).select_from(predictions).where(*query.conditions())
        with self._reading() as conn:
            return int(conn.execute(stmt).scalar_one())

    @contextlib.contextmanager
    def _streaming(self) -> Iterator[Connection]:
        """A read transaction whose results are fetched in batches as they are used."""
        with self._reading() as conn:
            yield streaming(conn)


def streaming(conn: Connection) -> Connection:
    """``conn`` (in a read transaction) set to hand results over STREAM_BATCH rows
    at a time: a server-side cursor on PostgreSQL, allowed to wait for its reader,
    and planned for all of its rows. (PostgreSQL plans a cursor for its first tenth
    by default; a listing is read to its end, and a limit is in its statement. Every
    row of a label carried by 137,000 of 1M predictions: 2.5-3.5 s instead of 6-7.5.)"""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            f"SET LOCAL idle_in_transaction_session_timeout = '{STREAM_IDLE_TIMEOUT}'"
        )
        conn.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
    return conn.execution_options(yield_per=STREAM_BATCH)


#: the columns a ``Prediction`` is made of (not ``raw``, the last body as received)
PREDICTION_COLUMNS = tuple(predictions.c[f.name] for f in fields(Prediction))
_whole = select(*PREDICTION_COLUMNS)


def prediction_record(row: RowMapping) -> Prediction:
    """A ``Prediction`` from a row of PREDICTION_COLUMNS."""
    return Prediction(
        id=row["id"],
        status=row["status"],
        tracking=row["tracking"],
        model=row["model"],
        version=row["version"],
        input=row["input"],
        output=row["output"],
        error=row["error"],
        logs=row["logs"] or "",
        metrics=row["metrics"],
        predict_time=row["predict_time"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        data_removed=row["data_removed"],
        urls=row["urls"],
        labels=row["labels"] or {},
        registered_at=row["registered_at"],
        last_polled_at=row["last_polled_at"],
        next_poll_at=row["next_poll_at"],
        poll_count=row["poll_count"],
        error_count=row["error_count"],
        last_error=row["last_error"],
        deadline_at=row["deadline_at"],
        cancel_requested_at=row["cancel_requested_at"],
        cancel_reason=row["cancel_reason"],
        cancel_outcome=row["cancel_outcome"],
        cancel_detail=row["cancel_detail"],
    )
