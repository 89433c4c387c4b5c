"""The queries of `tracker serve`'s dashboard, on both engines, each one or two
indexed reads however many predictions there are.

- ``page``: one page of the predictions list, newest registration first, by keyset
  on ``(registered_at, id)``: the page after a cursor reads ``registered_at <= t AND
  (registered_at < t OR id < i)`` down ``ix_predictions_registered_at`` (ties of one
  registration batch are ordered by ``id``), and asks for one row more than it shows
  to learn whether there is a further page. No ``COUNT(*)``: the pages say "about
  N" from the overview's cached counts. An ID prefix is a range on the primary key
  where the collation sorts IDs byte by byte (SQLite; PostgreSQL with a ``C``
  collation), else a plain ``LIKE``.
- ``completions_by_hour`` and ``run_times``: the overview's two charts, over
  predictions that finished since a time: a range of the partial index
  ``ix_predictions_finished_completed`` (finished rows by ``completed_at``).
- ``dead_deliveries``: the newest dead deliveries, down ``ix_deliveries_dead``.
- ``artifact``: one archived file, by its unique ``(prediction_id, position)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, or_, select

from tracker.domain import Artifact, Status, Tracking
from tracker.store.reports import TERMINAL, ReportOps
from tracker.store.tables import artifacts, callbacks, deliveries, predictions

#: the columns a row of the list has (never the logs, the raw body, input or output)
LIST_COLUMNS = (
    "id",
    "status",
    "tracking",
    "model",
    "labels",
    "registered_at",
    "created_at",
    "started_at",
    "completed_at",
    "predict_time",
    "last_error",
)
#: the status filter for predictions not polled successfully yet (status NULL)
NO_STATUS = "none"
#: collations (PostgreSQL's datcollate) that sort IDs byte by byte
_BYTE_ORDER = ("C", "POSIX")


@dataclass(frozen=True, slots=True)
class Cursor:
    """A place in the list: the registration time and ID of one row."""

    registered_at: datetime
    id: str


@dataclass(frozen=True, slots=True)
class PredictionFilter:
    """Which predictions the list shows; every field optional."""

    status: str | None = None  #: an upstream status, or NO_STATUS
    tracking: str | None = None
    model: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    id_prefix: str | None = None

    @property
    def only_counted(self) -> bool:
        """Whether the overview's counts (by status and tracking) say how many match."""
        return not (self.model or self.labels or self.id_prefix)


@dataclass(frozen=True, slots=True)
class PredictionPage:
    """Rows of LIST_COLUMNS, newest first; ``newer``: the cursor of a page before
    this one (None on the first page), ``older``: of the page after it (None on the
    last)."""

    rows: list[dict[str, Any]]
    newer: Cursor | None
    older: Cursor | None


class DashboardQueries(ReportOps):
    """The dashboard's reads (on the engine of the service's ``Store``)."""

    _byte_order_ids: bool | None = None

    # -- the list ------------------------------------------------------------------

    def page(
        self,
        flt: PredictionFilter,
        *,
        size: int,
        after: Cursor | None = None,
        before: Cursor | None = None,
    ) -> PredictionPage:
        """``size`` rows: the newest, those just older than ``after``, or those just
        newer than ``before`` (the newest page when fewer than ``size`` are)."""
        with self._reading() as conn:
            where = self._conditions(conn, flt)
            if before is not None:
                rows = _read(conn, [*where, _newer_than(before)], size + 1, newest_first=False)
                if len(rows) > size:
                    shown = list(reversed(rows[:size]))
                    return PredictionPage(shown, _cursor(shown[0]), _cursor(shown[-1]))
                after = None  # at the top: the newest page
            older = [] if after is None else [_older_than(after)]
            rows = _read(conn, [*where, *older], size + 1, newest_first=True)
        shown = rows[:size]
        newer = _cursor(shown[0]) if after is not None and shown else None
        last = _cursor(shown[-1]) if len(rows) > size else None
        return PredictionPage(shown, newer, last)

    def _conditions(self, conn: Connection, flt: PredictionFilter) -> list[ColumnElement[bool]]:
        c = predictions.c
        where: list[ColumnElement[bool]] = []
        if flt.status == NO_STATUS:
            where.append(c.status.is_(None))
        elif flt.status:
            where.append(c.status == flt.status)
        if flt.tracking:
            where.append(c.tracking == flt.tracking)
        if flt.model:
            where.append(c.model == flt.model)
        for key, value in flt.labels.items():
            where.append(c.labels[key].as_string() == value)
        if flt.id_prefix:
            where.extend(self._prefix(conn, flt.id_prefix))
        return where

    def _prefix(self, conn: Connection, prefix: str) -> list[ColumnElement[bool]]:
        """IDs starting with ``prefix``: a range of the primary key when the collation
        sorts byte by byte (then the range alone is exact), else ``LIKE``."""
        like = predictions.c.id.startswith(prefix, autoescape=True)
        if not self._ids_in_byte_order(conn):
            return [like]
        following = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return [predictions.c.id >= prefix, predictions.c.id < following, like]

    def _ids_in_byte_order(self, conn: Connection) -> bool:
        if self._byte_order_ids is None:
            if self.dialect != "postgresql":
                self._byte_order_ids = True
            else:
                collation = conn.exec_driver_sql(
                    "SELECT datcollate FROM pg_database WHERE datname = current_database()"
                ).scalar()
                name = str(collation or "")
                self._byte_order_ids = name in _BYTE_ORDER or name.startswith("C.")
        return self._byte_order_ids

    # -- the overview's charts -------------------------------------------------------

    def completions_by_hour(self, *, since: datetime) -> list[tuple[datetime, str, int]]:
        """``(hour, final status, predictions)`` of the predictions that finished
        (upstream ``completed_at``) since ``since``, by UTC hour."""
        hour = self._hour(predictions.c.completed_at).label("hour")
        stmt = (
            select(hour, predictions.c.status, func.count())
            .where(*_finished_since(since), predictions.c.status.in_(TERMINAL))
            .group_by(hour, predictions.c.status)
        )
        with self._reading() as conn:
            return [(_hour_value(h), status, int(n)) for h, status, n in conn.execute(stmt)]

    def run_times(self, *, since: datetime, models: int) -> list[dict[str, Any]]:
        """Run seconds (``completed_at - started_at``) of the predictions that succeeded
        since ``since``, for the ``models`` models with most of them: ``model``,
        ``predictions``, ``p50``, ``p95`` (percentile_cont, as the reports)."""
        c = predictions.c
        where = [
            *_finished_since(since),
            c.status == Status.SUCCEEDED.value,
            c.started_at.is_not(None),
        ]
        counted = (
            select(c.model, func.count().label("n"))
            .where(*where)
            .group_by(c.model)
            .order_by(func.count().desc(), c.model)
            .limit(models)
        )
        seconds = self._seconds(c.completed_at, c.started_at)
        with self._reading() as conn:
            top = [(model, int(n)) for model, n in conn.execute(counted)]
            if not top:
                return []
            wanted = [m for m, _ in top if m is not None]
            by_model = [c.model.in_(wanted)] if len(wanted) == len(top) else []
            stats = self._stats(conn, seconds, [c.model], [*where, *by_model], from_=predictions)
        return [
            {
                "model": model,
                "predictions": n,
                "p50": stats.get((model,), (None, None, None))[1],
                "p95": stats.get((model,), (None, None, None))[2],
            }
            for model, n in top
        ]

    def _hour(self, column: Any) -> Any:
        if self.dialect == "postgresql":
            return func.date_trunc("hour", func.timezone("UTC", column))
        return func.strftime("%Y-%m-%d %H:00:00", column)

    # -- deliveries and files ----------------------------------------------------------

    def dead_deliveries(self, *, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` dead deliveries with their callback's kind and target."""
        d = deliveries.c
        stmt = (
            select(
                d.id,
                d.prediction_id,
                d.event,
                d.attempts,
                d.last_status_code,
                d.last_error,
                d.created_at,
                callbacks.c.kind,
                callbacks.c.target,
            )
            .join_from(deliveries, callbacks, callbacks.c.id == d.callback_id)
            .where(d.state == "dead")
            .order_by(d.id.desc())
            .limit(limit)
        )
        with self._reading() as conn:
            return [dict(row) for row in conn.execute(stmt).mappings()]

    def artifact(self, prediction_id: str, position: int) -> Artifact | None:
        """One archived file of a prediction, or None."""
        a = artifacts.c
        stmt = select(*(a[name] for name in Artifact.__slots__)).where(
            a.prediction_id == prediction_id, a.position == position
        )
        with self._reading() as conn:
            row = conn.execute(stmt).mappings().first()
        return None if row is None else Artifact(**{name: row[name] for name in Artifact.__slots__})

    def model_names(self, *, since: datetime, limit: int) -> list[str]:
        """Models of the predictions registered since ``since`` (for the filter's list
        of suggestions), most used first."""
        c = predictions.c
        stmt = (
            select(c.model)
            .where(c.registered_at >= since, c.model.is_not(None))
            .group_by(c.model)
            .order_by(func.count().desc(), c.model)
            .limit(limit)
        )
        with self._reading() as conn:
            return [str(model) for (model,) in conn.execute(stmt)]


def _read(
    conn: Connection, where: list[ColumnElement[bool]], limit: int, *, newest_first: bool
) -> list[dict[str, Any]]:
    c = predictions.c
    order = (c.registered_at.desc(), c.id.desc()) if newest_first else (c.registered_at, c.id)
    columns = (c[name] for name in LIST_COLUMNS)
    stmt = select(*columns).where(*where).order_by(*order).limit(limit)
    return [dict(row) for row in conn.execute(stmt).mappings()]


def _finished_since(since: datetime) -> Sequence[ColumnElement[bool]]:
    """Finished since ``since``: the conditions of ix_predictions_finished_completed."""
    c = predictions.c
    return (c.tracking != Tracking.ACTIVE.value, c.completed_at >= since)


def _older_than(cursor: Cursor) -> ColumnElement[bool]:
    at, c = cursor.registered_at, predictions.c
    return and_(c.registered_at <= at, or_(c.registered_at < at, c.id < cursor.id))


def _newer_than(cursor: Cursor) -> ColumnElement[bool]:
    at, c = cursor.registered_at, predictions.c
    return and_(c.registered_at >= at, or_(c.registered_at > at, c.id > cursor.id))


def _cursor(row: Mapping[str, Any]) -> Cursor:
    return Cursor(row["registered_at"], row["id"])


def _hour_value(value: Any) -> datetime:
    """An hour as either engine returns it: a naive UTC timestamp or text."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
