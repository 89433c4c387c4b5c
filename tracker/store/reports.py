"""Canned report queries. Aggregation happens in the database; percentiles are
percentile_cont (linear interpolation) on both engines, as in the views.

``status``, ``models`` and ``daily`` read the rollup (``tracker.store.rollup``) unless a
label filter asks for the rows themselves; their percentiles are then within 5 % (the
rollup's buckets). The ``*_from_rows`` methods are the same reports read from the rows
(exact), for label filters."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Integer,
    Select,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
)

from tracker.domain import Status, Tracking
from tracker.store import rollup_reports
from tracker.store.base import StoreBase
from tracker.store.rollup import Scope
from tracker.store.tables import callbacks, deliveries, predictions
from tracker.store.types import UTCDateTime
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
        for key, value in self.labels.items():
            conditions.append(table.c.labels[key].as_string() == value)
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


def _scope(flt: ReportFilter) -> Scope:
    return Scope(since=flt.since, until=flt.until, model=flt.model)


def utc_day(dialect: str, column: Any) -> Any:
    """The UTC day of a timestamp column as ``YYYY-MM-DD`` text, on either engine."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.date(column)


class ReportOps(StoreBase):
    """Report queries (mixed into ``Store``)."""

    def report_status(self, flt: ReportFilter) -> list[Row]:
        if flt.labels:
            return self.report_status_from_rows(flt)
        with self._reading() as conn:
            return rollup_reports.status_counts(conn, _scope(flt))

    def report_models(self, flt: ReportFilter) -> list[Row]:
        if flt.labels:
            return self.report_models_from_rows(flt)
        with self._reading() as conn:
            return rollup_reports.model_rows(conn, _scope(flt), _r)

    def report_daily(self, flt: ReportFilter) -> list[Row]:
        if flt.labels:
            return self.report_daily_from_rows(flt)
        with self._reading() as conn:
            return rollup_reports.daily_rows(conn, _scope(flt), _r)

    def report_status_from_rows(self, flt: ReportFilter) -> list[Row]:
        stmt = (
            select(pt.c.status, pt.c.tracking, func.count().label("predictions"))
            .where(*flt.conditions(pt))
            .group_by(pt.c.status, pt.c.tracking)
            .order_by(func.count().desc(), pt.c.status.nulls_last(), pt.c.tracking)
        )
        with self._reading() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    def report_models_from_rows(self, flt: ReportFilter) -> list[Row]:
        where = flt.conditions(pt)

        def count_status(status: str) -> Any:
            return func.sum(case((pt.c.status == status, 1), else_=0))

        terminal = func.sum(case((pt.c.status.in_(TERMINAL), 1), else_=0))
        counts = (
            select(
                pt.c.model,
                func.count().label("predictions"),
                *(count_status(s).label(s) for s in TERMINAL),
                (cast(count_status("succeeded"), Float) / func.nullif(terminal, 0)).label(
                    "success_rate"
                ),
            )
            .where(*where)
            .group_by(pt.c.model)
            .order_by(func.count().desc(), pt.c.model.nulls_last())
        )
        metrics = ("predict_time", "queue_seconds", "run_seconds")
        with self._reading() as conn:
            rows = [dict(r) for r in conn.execute(counts).mappings()]
            stats = {m: self._stats(conn, pt.c[m], [pt.c.model], where) for m in metrics}
        for row in rows:
            row["success_rate"] = _r(row["success_rate"], 4)
            for s in TERMINAL:
                row[s] = int(row[s] or 0)
            for m in metrics:
                mean, p50, p95 = stats[m].get((row["model"],), (None, None, None))
                row.update({f"{m}_mean": mean, f"{m}_p50": p50, f"{m}_p95": p95})
        return rows

    def run_time_samples(
        self, flt: ReportFilter, *, per_model: int = 1000
    ) -> dict[str | None, list[float]]:
        """Run seconds of each model's latest ``per_model`` succeeded predictions (for
        a picture of the distribution): bounded, however many predictions there are."""
        latest = func.row_number().over(
            partition_by=pt.c.model, order_by=(pt.c.completed_at.desc(), pt.c.id.desc())
        )
        ranked = (
            select(pt.c.model, pt.c.run_seconds, latest.label("n"))
            .where(
                pt.c.status == Status.SUCCEEDED.value,
                pt.c.run_seconds.is_not(None),
                *flt.conditions(pt),
            )
            .subquery()
        )
        stmt = select(ranked.c.model, ranked.c.run_seconds).where(ranked.c.n <= per_model)
        samples: dict[str | None, list[float]] = {}
        with self._reading() as conn:
            for model, seconds in conn.execute(stmt):
                samples.setdefault(model, []).append(float(seconds))
        return samples

    def report_daily_from_rows(self, flt: ReportFilter) -> list[Row]:
        where = flt.conditions(pt)
        registered_day = self._day(pt.c.registered_at)
        completed_day = self._day(pt.c.completed_at)
        finished = and_(pt.c.completed_at.is_not(None), pt.c.status.in_(TERMINAL))
        with self._reading() as conn:
            registered: dict[Any, int] = dict(
                conn.execute(
                    select(registered_day, func.count()).where(*where).group_by(registered_day)
                ).all()
            )
            completed = {
                row[0]: row
                for row in conn.execute(
                    select(
                        completed_day,
                        *(func.sum(case((pt.c.status == s, 1), else_=0)) for s in TERMINAL),
                        func.avg(pt.c.run_seconds),
                    )
                    .where(finished, *where)
                    .group_by(completed_day)
                )
            }
        rows = []
        for day in sorted(set(registered) | set(completed)):
            done = completed.get(day)
            rows.append(
                {
                    "day": day,
                    "registered": registered.get(day, 0),
                    **{s: int(done[i + 1]) if done else 0 for i, s in enumerate(TERMINAL)},
                    "mean_run_seconds": _r(done[-1]) if done else None,
                }
            )
        return rows

    def report_failures(self, flt: ReportFilter, *, limit: int | None = None) -> list[Row]:
        text = self._json_text(predictions.c.error)
        stmt = (
            select(
                text.label("error"),
                func.count().label("predictions"),
                func.min(predictions.c.id).label("example_id"),
                func.max(predictions.c.completed_at).label("last_seen"),
            )
            .where(predictions.c.status == "failed", *flt.conditions(predictions))
            .group_by(text)
            .order_by(func.count().desc(), text)
        )
        if limit:
            stmt = stmt.limit(limit)
        with self._reading() as conn:
            rows = [dict(r) for r in conn.execute(stmt).mappings()]
        for row in rows:
            row["error"] = _compact_json_text(row["error"])
        return rows

    def report_deliveries(self, flt: ReportFilter) -> list[Row]:
        """Per callback target; the filter applies to the predictions delivered about."""
        joined = deliveries.join(callbacks, callbacks.c.id == deliveries.c.callback_id)
        where = flt.conditions(predictions)
        if where:  # every delivery has its prediction: join it only to filter
            joined = joined.join(predictions, predictions.c.id == deliveries.c.prediction_id)

        def count_state(state: str) -> Any:
            return func.sum(case((deliveries.c.state == state, 1), else_=0))

        stmt = (
            select(
                callbacks.c.kind,
                callbacks.c.target,
                func.count().label("deliveries"),
                *(count_state(s).label(s) for s in ("delivered", "dead", "pending")),
                func.avg(deliveries.c.attempts).label("mean_attempts"),
            )
            .select_from(joined)
            .where(*where)
            .group_by(callbacks.c.kind, callbacks.c.target)
            .order_by(func.count().desc(), callbacks.c.target)
        )
        latency = self._seconds(deliveries.c.delivered_at, deliveries.c.created_at)
        with self._reading() as conn:
            rows = [dict(r) for r in conn.execute(stmt).mappings()]
            p95 = self._stats(
                conn,
                latency,
                [callbacks.c.kind, callbacks.c.target],
                [*where, deliveries.c.delivered_at.is_not(None)],
                from_=joined,
            )
        for row in rows:
            row["mean_attempts"] = _r(row["mean_attempts"])
            for state in ("delivered", "dead", "pending"):
                row[state] = int(row[state] or 0)
            row["p95_delivery_seconds"] = p95.get((row["kind"], row["target"]), (None,) * 3)[2]
        return rows

    def report_slow(self, flt: ReportFilter, *, now: datetime, limit: int = 20) -> list[Row]:
        since = func.coalesce(predictions.c.started_at, predictions.c.created_at)
        since = func.coalesce(since, predictions.c.registered_at)
        running = self._seconds(literal(now, UTCDateTime()), since)
        stmt = (
            select(
                predictions.c.id,
                predictions.c.status,
                predictions.c.model,
                since.label("since"),
                running.label("running_seconds"),
                predictions.c.poll_count,
                predictions.c.last_polled_at,
            )
            .where(predictions.c.tracking == Tracking.ACTIVE.value, *flt.conditions(predictions))
            .order_by(since, predictions.c.id)
            .limit(limit)
        )
        with self._reading() as conn:
            rows = [dict(r) for r in conn.execute(stmt).mappings()]
        for row in rows:
            row["running_seconds"] = _r(row["running_seconds"], 1)
        return rows

    # -- dialect helpers ---------------------------------------------------

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
            stmt = self._sqlite_percentiles(base, keys)
        width = len(keys)
        return {
            tuple(row[:width]): (_r(row[width]), _r(row[width + 1]), _r(row[width + 2]))
            for row in conn.execute(stmt)
        }

    @staticmethod
    def _sqlite_percentiles(base: Select[Any], keys: Sequence[Any]) -> Select[Any]:
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
