"""What the report queries share (``tracker.store.reports`` and the other
``*_reports`` modules, the dashboard's overview): the filter of the predictions a report
covers, rounding as the views round, and the SQL that differs between the engines
(percentile_cont, exact seconds between timestamps, UTC days, JSON as text)."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Integer,
    MetaData,
    Select,
    Table,
    case,
    cast,
    func,
    literal_column,
    select,
)

from tracker.domain import Status
from tracker.store.base import StoreBase
from tracker.store.label_filter import carrying
from tracker.store.tables import predictions
from tracker.store.views import prediction_timings as pt

Row = dict[str, Any]
TERMINAL = [s.value for s in (Status.SUCCEEDED, Status.FAILED, Status.CANCELED, Status.ABORTED)]


@dataclass(frozen=True)
class ReportFilter:
    """Which predictions a report covers (by registration time, model and labels)."""

    since: datetime | None = None
    until: datetime | None = None
    model: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def conditions(self, table: Any) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if self.since is not None:
            conditions.append(table.c.registered_at >= self.since)
        if self.until is not None:
            conditions.append(table.c.registered_at < self.until)
        if self.model is not None:
            conditions.append(table.c.model == self.model)
        conditions.extend(carrying(table.c.id, self.labels))
        return conditions


def _r(value: Any, digits: int = 3) -> float | None:
    """Rounded half away from zero, as SQL's round() does in the views."""
    if value is None:
        return None
    if not math.isfinite(value) or abs(value) >= 1e15:
        return float(value)  # no digits after the point to round at this size
    exact = Decimal(repr(float(value)))
    return float(exact.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def _compact_json_text(text: str | None) -> str | None:
    """The same JSON value reads the same on both engines (jsonb adds spaces)."""
    if text is None or text[:1] not in ("{", "["):
        return text
    try:
        return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))
    except ValueError:
        return text


def utc_day(dialect: str, column: Any) -> Any:
    """The UTC day of a timestamp column as ``YYYY-MM-DD`` text, on either engine."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.date(column)


#: the rows of ``prediction_timings`` a label-filtered report reads, copied once per report
#: into a temporary table of this connection (``ReportBase._matching_rows``)
matching_rows = Table(
    "tracker_report_rows",
    MetaData(),
    *(
        Column(name, pt.c[name].type)
        for name in (
            "id",
            "status",
            "tracking",
            "model",
            "registered_at",
            "completed_at",
            "predict_time",
            "queue_seconds",
            "run_seconds",
        )
    ),
    prefixes=["TEMPORARY"],
)


class ReportBase(StoreBase):
    """The engine-dependent pieces of report queries, for the report mixins of ``Store``."""

    @contextlib.contextmanager
    def _matching_rows(
        self, conn: Connection, flt: ReportFilter
    ) -> Iterator[tuple[Any, list[Any]]]:
        """What a report of several statements reads, and its conditions: with a label
        filter, the rows of ``prediction_timings`` that match copied once into a
        temporary table (each statement would otherwise find them again in the wide
        prediction rows: about a second each for 137,000 rows of 1M on SQLite); without
        one, the view itself."""
        if not flt.labels or self.dialect == "postgresql":  # see ReportOps: one statement
            yield pt, flt.conditions(pt)
            return
        matching_rows.drop(conn, checkfirst=True)  # left by a report that failed
        matching_rows.create(conn)
        # From the table, with the view's own expressions: the view would also join every
        # prediction's first terminal transition, which none of these columns needs.
        row = predictions.c
        computed = {
            "queue_seconds": self._seconds(row.started_at, row.created_at),
            "run_seconds": self._seconds(row.completed_at, row.started_at),
        }
        names = [column.name for column in matching_rows.columns]
        columns = [computed[name] if name in computed else row[name] for name in names]
        conn.execute(
            matching_rows.insert().from_select(
                names, select(*columns).where(*flt.conditions(predictions))
            )
        )
        try:
            yield matching_rows, []
        finally:
            matching_rows.drop(conn)

    def _stats(
        self,
        conn: Connection,
        value: Any,
        keys: Sequence[Any],
        where: Sequence[Any],
        *,
        from_: Any = None,
    ) -> dict[tuple[Any, ...], tuple[float | None, float | None, float | None]]:
        """Mean, 50th and 95th percentile (percentile_cont) of ``value`` per group."""
        source = from_ if from_ is not None else pt
        base = select(*keys, value.label("v")).select_from(source).where(value.is_not(None), *where)
        if self.dialect == "postgresql":
            sub = base.subquery()
            group = [sub.c[k.name] for k in keys]
            stmt: Select[Any] = select(
                *group,
                func.avg(sub.c.v),
                func.percentile_cont(0.5).within_group(sub.c.v),
                func.percentile_cont(0.95).within_group(sub.c.v),
            ).group_by(*group)
        else:
            stmt = sqlite_percentiles(base, keys)
        width = len(keys)
        return {
            tuple(row[:width]): (_r(row[width]), _r(row[width + 1]), _r(row[width + 2]))
            for row in conn.execute(stmt)
        }

    def _seconds(self, later: Any, earlier: Any) -> Any:
        """Exact seconds between two timestamps (as the views compute them)."""
        if self.dialect == "postgresql":
            return func.extract("epoch", later - earlier)
        # julianday() keeps only milliseconds: subtract seconds and microseconds apart.
        whole = cast(func.strftime("%s", later), Integer) - cast(
            func.strftime("%s", earlier), Integer
        )
        micros = cast(func.substr(later, 21, 6), Integer) - cast(
            func.substr(earlier, 21, 6), Integer
        )
        return whole + micros / 1_000_000.0

    def _day(self, column: Any) -> Any:
        return utc_day(self.dialect, column)

    def _json_text(self, column: Any) -> Any:
        """A JSON value as text: strings without quotes, anything else as JSON text."""
        if self.dialect == "postgresql":
            return column.op("#>>")(literal_column("'{}'"))
        return case(
            (func.json_type(column) == "text", func.json_extract(column, "$")),
            else_=func.json(column),
        )


def sqlite_percentiles(base: Select[Any], keys: Sequence[Any]) -> Select[Any]:
    """percentile_cont from row_number() and count() windows (SQLite has no
    percentile functions): the value at rank p*(n-1), interpolated."""
    inner = base.subquery()
    group = [inner.c[k.name] for k in keys]
    ranked = select(
        *group,
        inner.c.v,
        (func.row_number().over(partition_by=group, order_by=inner.c.v) - 1).label("i"),
        func.count().over(partition_by=group).label("n"),
    ).subquery()
    rgroup = [ranked.c[k.name] for k in keys]

    def percentile(p: float) -> Any:
        position = p * (ranked.c.n - 1)
        low = cast(position, Integer)  # truncation is floor for these positive values
        frac = position - low
        return func.sum(
            case(
                (ranked.c.i == low, ranked.c.v * (1 - frac)),
                (ranked.c.i == low + 1, ranked.c.v * frac),
                else_=0,
            )
        )

    return select(*rgroup, func.avg(ranked.c.v), percentile(0.5), percentile(0.95)).group_by(
        *rgroup
    )
