"""Reads of the reports' rollup (migration 0011): aggregates of the predictions no
longer active, kept by triggers on ``predictions``, plus the active rows counted as
they are.

A report's numbers come from the union of three sources, grouped as the report needs:

- the rollup's rows of the whole UTC hours of registration its filter covers;
- the settled rows (tracking other than 'active') registered in the partial hours
  at the filter's edges (``--since``/``--until`` inside an hour), read from the rows;
- the active rows (few: the daemon's working set), read from the rows.

Counts, sums and means are exact. Percentiles come from buckets: each value is
counted at itself rounded to two significant digits (``printf('%.1e')`` on SQLite,
``to_char(v, '9.9EEEE')`` on PostgreSQL), and a percentile is percentile_cont over
those rounded values (``tracker.store.rollup_percentiles``), so it is within
BUCKET_ERROR (5 %) of percentile_cont over the exact values. The expressions here are
those of the migration's triggers: the tests check that the rollup equals a recount
from the rows through them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    func,
    literal,
    literal_column,
    select,
    union_all,
)

from tracker.domain import Tracking
from tracker.store.tables import prediction_rollup, prediction_rollup_buckets, predictions

#: completed_hour of a row without completed_at (as in migration 0011)
NO_HOUR = -(2**62)
#: the largest relative error of a percentile read from the buckets
BUCKET_ERROR = 0.05
#: the metrics with buckets by registration hour, by their code
METRICS = {"predict_time": 1, "queue_seconds": 2, "run_seconds": 3}
#: run_seconds by completion hour (the dashboard's run time chart)
RUN_BY_COMPLETION = 4
#: the metrics by hour of registration: their code plus BY_HOUR
BY_HOUR = 10
_CLAMP = "1e15"
#: values are nudged up before rounding, so a value half-way between two buckets (2.25)
#: goes up on both engines (PostgreSQL's to_char rounds such ties to even, SQLite's up)
_NUDGE = "1.0000000001"
_ACTIVE = Tracking.ACTIVE.value
#: the periods of the rollup, in seconds: counts by hour, most buckets by day
HOUR, DAY = 3600, 86400


def hour_of(moment: datetime) -> int:
    """The UTC hour (since 1970) of a moment, as the triggers compute it."""
    return math.floor(moment.timestamp() // 3600)


def hour_start(hour: int) -> datetime:
    return _start(hour, HOUR)


def _start(period: int, unit: int) -> datetime:
    return datetime.fromtimestamp(period * unit, UTC)


def day_text(hour_or_day: int, *, is_day: bool = False) -> str:
    """``YYYY-MM-DD`` of an hour (or a day) since 1970, UTC."""
    days = hour_or_day if is_day else hour_or_day // 24
    return (date(1970, 1, 1) + timedelta(days=days)).isoformat()


# -- the triggers' expressions over a row of ``predictions`` -------------------------------


def _hour_sql(ts: str, dialect: str, seconds: int = HOUR) -> str:
    if dialect == "postgresql":
        return f"floor(extract(epoch from {ts}) / {seconds})::bigint"
    return f"(CAST(strftime('%s', {ts}) AS INTEGER) / {seconds})"


def _seconds_sql(later: str, earlier: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"round(extract(epoch from ({later} - {earlier}))::numeric, 3)::double precision"
    whole = f"(strftime('%s', {later}) - strftime('%s', {earlier}))"
    micros = (
        f"(CAST(substr({later}, 21, 6) AS INTEGER) - CAST(substr({earlier}, 21, 6) AS INTEGER))"
    )
    return f"round({whole} + {micros} / 1000000.0, 3)"


def _clamped_sql(value: str) -> str:
    return (
        f"CASE WHEN {value} > {_CLAMP} THEN {_CLAMP} WHEN {value} < -{_CLAMP} THEN -{_CLAMP}"
        f" ELSE {value} END"
    )


def bucket_sql(value: str, dialect: str) -> str:
    """The bucket of a value: itself to two significant digits, clamped."""
    if dialect == "postgresql":
        digits = f"to_char({value} * {_NUDGE}, '9.9EEEE')::double precision"
    else:
        digits = f"CAST(printf('%.1e', {value} * {_NUDGE}) AS REAL)"
    return (
        f"CASE WHEN {value} > {_CLAMP} THEN {_CLAMP} WHEN {value} < -{_CLAMP} THEN -{_CLAMP}"
        f" ELSE {digits} END"
    )


@dataclass(frozen=True)
class RowValues:
    """The rollup's keys and values of each row of ``predictions`` (SQL text)."""

    model: str
    status: str
    registered_hour: str
    registered_day: str
    completed_hour: str
    predict_time: str
    queue_seconds: str
    run_seconds: str

    @classmethod
    def of(cls, dialect: str) -> RowValues:
        p = "predictions"
        return cls(
            model=f"coalesce({p}.model, '')",
            status=f"coalesce({p}.status, '')",
            registered_hour=_hour_sql(f"{p}.registered_at", dialect),
            registered_day=_hour_sql(f"{p}.registered_at", dialect, DAY),
            completed_hour=_hour_sql(f"{p}.completed_at", dialect),
            predict_time=_clamped_sql(f"{p}.predict_time"),
            queue_seconds=_seconds_sql(f"{p}.started_at", f"{p}.created_at", dialect),
            run_seconds=_seconds_sql(f"{p}.completed_at", f"{p}.started_at", dialect),
        )

    def metric(self, name: str) -> str:
        value: str = getattr(self, name)
        return value


def _c(sql: str) -> Any:
    return literal_column(sql)


# -- which rows a report covers -------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """A report's filter as the rollup sees it: a model, and registration bounds split
    into whole periods (hours for the counts, days for the buckets: from the rollup)
    and the partial periods at the edges (from the rows)."""

    since: datetime | None = None
    until: datetime | None = None
    model: str | None = None

    def whole(self, unit: int) -> tuple[int | None, int | None] | None:
        """``[first, end)`` of the whole periods of ``unit`` seconds inside the bounds
        (None: unbounded); None when no whole period is inside them."""
        first = None if self.since is None else math.ceil(self.since.timestamp() / unit)
        end = None if self.until is None else math.floor(self.until.timestamp() // unit)
        if first is not None and end is not None and first >= end:
            return None
        return first, end

    def whole_hours(self, rollup: Any) -> list[ColumnElement[bool]] | None:
        """Conditions on a rollup table keyed by ``registered_hour`` and ``model``
        (``rollup`` is its ``.c``): the whole hours inside the bounds, and the model;
        None when no whole hour is inside them."""
        hours = self.whole(HOUR)
        if hours is None:
            return None
        first, end = hours
        where: list[ColumnElement[bool]] = []
        if first is not None:
            where.append(rollup.registered_hour >= first)
        if end is not None:
            where.append(rollup.registered_hour < end)
        if self.model is not None:
            where.append(rollup.model == self.model)
        return where

    def edges(self, unit: int) -> list[ColumnElement[bool]]:
        """Conditions of the settled rows read as rows: the partial periods at the
        edges (or the whole range when it holds no whole period)."""
        at = predictions.c.registered_at
        periods = self.whole(unit)
        if periods is None:
            assert self.since is not None and self.until is not None
            return [and_(at >= self.since, at < self.until)]
        first, end = periods
        found = []
        if self.since is not None and first is not None and _start(first, unit) > self.since:
            found.append(and_(at >= self.since, at < _start(first, unit)))
        if self.until is not None and end is not None and _start(end, unit) < self.until:
            found.append(and_(at >= _start(end, unit), at < self.until))
        return found

    def row_conditions(self, *, unindexed: bool = False) -> list[ColumnElement[bool]]:
        """The filter on rows; ``unindexed``: written so SQLite uses no index for it."""
        c = predictions.c
        found: list[ColumnElement[bool]] = []
        if self.since is not None:
            found.append(_plain(c.registered_at, unindexed) >= self.since)
        if self.until is not None:
            found.append(_plain(c.registered_at, unindexed) < self.until)
        if self.model is not None:
            found.append(_plain(c.model, unindexed) == self.model)
        return found

    def model_condition(self, *, unindexed: bool = False) -> list[ColumnElement[bool]]:
        if self.model is None:
            return []
        return [_plain(predictions.c.model, unindexed) == self.model]


def _plain(column: Any, unindexed: bool) -> Any:
    """``column``, or on SQLite ``+column``: the same value, which no index serves."""
    if not unindexed:
        return column
    return literal_column(f"+predictions.{column.name}", type_=column.type)


def active_rows(dialect: str, scope: Scope) -> list[ColumnElement[bool]]:
    """The active predictions ``scope`` covers, read through ix_predictions_due (a
    partial index of the active rows): 'active' is written into the statement so that
    SQLite and PostgreSQL's generic plans can use it, and on SQLite the filter's other
    columns are kept off their indexes, or it walks a wide registration range or a
    common model's rows to find the few active ones."""
    active: BindParameter[str] = bindparam("active_rows", _ACTIVE, literal_execute=True)
    return [
        predictions.c.tracking == active,
        *scope.row_conditions(unindexed=dialect == "sqlite"),
    ]


def settled_edge(dialect: str, scope: Scope, edge: ColumnElement[bool]) -> list[Any]:
    """The settled predictions of one edge of ``scope``: a registration range, read
    through ix_predictions_registered (not the model's index)."""
    return [
        predictions.c.tracking != _ACTIVE,
        edge,
        *scope.model_condition(unindexed=dialect == "sqlite"),
    ]


# -- the union of rollup and rows -------------------------------------------------------------


def counts_source(dialect: str, scope: Scope) -> Any:
    """A subquery with prediction_rollup's columns over everything ``scope`` covers."""
    r = prediction_rollup.c
    parts: list[Select[Any]] = []
    where = scope.whole_hours(r)
    if where is not None:
        parts.append(select(*(r[name] for name in _COUNT_COLUMNS)).where(*where))
    v = RowValues.of(dialect)
    parts.append(_rows_as_counts(v, active_rows(dialect, scope)))
    for edge in scope.edges(HOUR):
        parts.append(_rows_as_counts(v, settled_edge(dialect, scope, edge)))
    return union_all(*parts).subquery("counted")


_COUNT_COLUMNS = (
    "model",
    "status",
    "tracking",
    "registered_hour",
    "completed_hour",
    "predictions",
    "predict_time_n",
    "predict_time_sum",
    "queue_seconds_n",
    "queue_seconds_sum",
    "run_seconds_n",
    "run_seconds_sum",
)


def _rows_as_counts(v: RowValues, where: Sequence[ColumnElement[bool]]) -> Select[Any]:
    columns: list[Any] = [
        _c(v.model).label("model"),
        _c(v.status).label("status"),
        predictions.c.tracking.label("tracking"),
        _c(v.registered_hour).label("registered_hour"),
        func.coalesce(_c(v.completed_hour), NO_HOUR).label("completed_hour"),
        literal(1).label("predictions"),
    ]
    for name in METRICS:
        value = v.metric(name)
        columns.append(_c(f"CASE WHEN {value} IS NULL THEN 0 ELSE 1 END").label(f"{name}_n"))
        columns.append(_c(f"coalesce({value}, 0.0)").label(f"{name}_sum"))
    return select(*columns).where(*where)


def buckets_source(dialect: str, scope: Scope, metrics: Iterable[int]) -> Any:
    """A subquery (model, status, period, metric, bucket, n) over ``scope`` for the
    metrics by registration (``metrics``): the buckets of the whole days, those by
    hour of the whole hours of a partial day at an edge, and the rows of the partial
    hours and the active ones."""
    b = prediction_rollup_buckets.c
    wanted = list(metrics)
    parts: list[Select[Any]] = []
    for offset, first, end in _bucket_ranges(scope):
        where: list[ColumnElement[bool]] = [b.metric.in_([code + offset for code in wanted])]
        if first is not None:
            where.append(b.period >= first)
        if end is not None:
            where.append(b.period < end)
        if scope.model is not None:
            where.append(b.model == scope.model)
        metric = (b.metric - offset).label("metric") if offset else b.metric
        parts.append(select(b.model, b.status, b.period, metric, b.bucket, b.n).where(*where))
    v = RowValues.of(dialect)
    conditions = [active_rows(dialect, scope)]
    conditions += [settled_edge(dialect, scope, edge) for edge in scope.edges(HOUR)]
    names = {code: name for name, code in METRICS.items()}
    for where_rows in conditions:
        for code in wanted:
            parts.append(
                _rows_as_buckets(v, dialect, v.registered_day, code, names[code], where_rows)
            )
    return union_all(*parts).subquery("bucketed")


def _bucket_ranges(scope: Scope) -> list[tuple[int, int | None, int | None]]:
    """``(metric offset, first, end)``: the periods read from the buckets, the whole
    days (offset 0) and the whole hours of a partial day at an edge (BY_HOUR)."""
    hours = scope.whole(HOUR)
    if hours is None:
        return []
    first_hour, end_hour = hours
    days = scope.whole(DAY)
    if days is None:
        return [(BY_HOUR, first_hour, end_hour)]
    first_day, end_day = days
    ranges: list[tuple[int, int | None, int | None]] = [(0, first_day, end_day)]
    per_day = DAY // HOUR
    if first_hour is not None and first_day is not None and first_hour < first_day * per_day:
        ranges.append((BY_HOUR, first_hour, first_day * per_day))
    if end_hour is not None and end_day is not None and end_day * per_day < end_hour:
        ranges.append((BY_HOUR, end_day * per_day, end_hour))
    return ranges


def _rows_as_buckets(
    v: RowValues,
    dialect: str,
    period: str,
    code: int,
    name: str,
    where: Sequence[ColumnElement[bool]],
) -> Select[Any]:
    value = v.metric(name)
    return select(
        _c(v.model).label("model"),
        _c(v.status).label("status"),
        _c(period).label("period"),
        literal(code).label("metric"),
        _c(bucket_sql(value, dialect)).label("bucket"),
        literal(1).label("n"),
    ).where(_c(value).is_not(None), *where)


# -- a recount from the rows (tests, and checking a database by hand) ---------------------


def expected_rows(conn: Connection) -> dict[str, set[tuple[Any, ...]]]:
    """The rollup's two tables recounted from the settled rows, and as stored, each row
    with its sums rounded to 6 digits: ``{"expected_counts", "counts", "expected_buckets",
    "buckets"}``."""
    dialect = conn.dialect.name
    v = RowValues.of(dialect)
    settled = [predictions.c.tracking != _ACTIVE]
    per_row = _rows_as_counts(v, settled).subquery()
    keys = [per_row.c[k] for k in _COUNT_COLUMNS[:5]]
    sums = [func.sum(per_row.c[k]) for k in _COUNT_COLUMNS[5:]]
    counted = conn.execute(select(*keys, *sums).group_by(*keys)).all()
    stored = conn.execute(select(*(prediction_rollup.c[k] for k in _COUNT_COLUMNS))).all()
    parts = [
        _rows_as_buckets(v, dialect, v.registered_day, code, name, settled)
        for name, code in METRICS.items()
    ]
    parts.append(
        _rows_as_buckets(v, dialect, v.completed_hour, RUN_BY_COMPLETION, "run_seconds", settled)
    )
    parts += [
        _rows_as_buckets(v, dialect, v.registered_hour, code + BY_HOUR, name, settled)
        for name, code in METRICS.items()
    ]
    each = union_all(*parts).subquery()
    bkeys = [each.c[k] for k in ("model", "status", "period", "metric", "bucket")]
    bucketed = conn.execute(
        select(*bkeys, func.sum(each.c.n)).where(each.c.period.is_not(None)).group_by(*bkeys)
    ).all()
    b = prediction_rollup_buckets.c
    stored_buckets = conn.execute(
        select(b.model, b.status, b.period, b.metric, b.bucket, b.n)
    ).all()

    def norm(rows: Iterable[Any]) -> set[tuple[Any, ...]]:
        return {
            tuple(round(float(x), 6) if isinstance(x, float) else x for x in row) for row in rows
        }

    return {
        "expected_counts": norm(counted),
        "counts": norm(stored),
        "expected_buckets": norm(bucketed),
        "buckets": norm(stored_buckets),
    }
