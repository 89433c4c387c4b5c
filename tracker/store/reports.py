"""Canned report queries. Aggregation happens in the database; percentiles are
percentile_cont (linear interpolation) on both engines, as in the views.

``status``, ``models`` and ``daily`` read the rollup (``tracker.store.rollup``) unless a
label filter asks for the rows themselves; their percentiles are then within 5 % (the
rollup's buckets). The ``*_from_rows`` methods are the same reports read from the rows
(exact), for label filters.

One module per family of reports: these (predictions), ``delivery_reports``,
``archive_reports``, ``cancel_reports``; ``report_sql`` holds what they share."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Float,
    and_,
    case,
    cast,
    func,
    literal,
    select,
)

from tracker.domain import Status, Tracking
from tracker.store import rollup_reports
from tracker.store.report_sql import (
    TERMINAL,
    ReportBase,
    ReportFilter,
    Row,
    _compact_json_text,
    _r,
    utc_day,
)
from tracker.store.rollup import Scope
from tracker.store.tables import predictions
from tracker.store.types import UTCDateTime
from tracker.store.views import prediction_timings as pt

# named here too, where the report modules and their callers have imported them from
__all__ = ["TERMINAL", "ReportFilter", "ReportOps", "Row", "_r", "utc_day"]


#: the metrics of ``models``, in the order of its columns
METRICS = ("predict_time", "queue_seconds", "run_seconds")


def _model_counts(src: Any) -> list[Any]:
    """``models``' columns before the metrics: predictions, each final status, success."""

    def count_status(status: str) -> Any:
        return func.sum(case((src.c.status == status, 1), else_=0))

    terminal = func.sum(case((src.c.status.in_(TERMINAL), 1), else_=0))
    success = cast(count_status("succeeded"), Float) / func.nullif(terminal, 0)
    return [
        src.c.model,
        func.count().label("predictions"),
        *(count_status(s).label(s) for s in TERMINAL),
        success.label("success_rate"),
    ]


def _metric_stats(src: Any) -> list[Any]:
    """Mean, p50 and p95 of every metric as aggregates of one GROUP BY (PostgreSQL)."""
    return [
        aggregate.label(f"{m}_{name}")
        for m in METRICS
        for name, aggregate in (
            ("mean", func.avg(src.c[m])),
            ("p50", func.percentile_cont(0.5).within_group(src.c[m])),
            ("p95", func.percentile_cont(0.95).within_group(src.c[m])),
        )
    ]


def _scope(flt: ReportFilter) -> Scope:
    return Scope(since=flt.since, until=flt.until, model=flt.model)


class ReportOps(ReportBase):
    """Report queries on predictions (mixed into ``Store``): counts, times and failures;
    deliveries are ``DeliveryReportOps``'s."""

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
        """``models`` from the rows that match ``flt``: on PostgreSQL one statement (its
        percentile_cont goes in the same GROUP BY), on SQLite the counts and a ranking
        statement per metric over the matching rows, copied once."""
        with self._reading() as conn, self._matching_rows(conn, flt) as (src, where):
            in_one = self.dialect == "postgresql"
            counts = (
                select(*_model_counts(src), *(_metric_stats(src) if in_one else ()))
                .where(*where)
                .group_by(src.c.model)
                .order_by(func.count().desc(), src.c.model.nulls_last())
            )
            rows = [dict(r) for r in conn.execute(counts).mappings()]
            stats = (
                {}
                if in_one
                else {
                    m: self._stats(conn, src.c[m], [src.c.model], where, from_=src) for m in METRICS
                }
            )
        for row in rows:
            row["success_rate"] = _r(row["success_rate"], 4)
            for s in TERMINAL:
                row[s] = int(row[s] or 0)
            for m in METRICS:
                names = (f"{m}_mean", f"{m}_p50", f"{m}_p95")
                if in_one:
                    row.update({n: _r(row[n]) for n in names})
                else:
                    found = stats[m].get((row["model"],), (None, None, None))
                    row.update(zip(names, found, strict=True))
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
        with self._reading() as conn, self._matching_rows(conn, flt) as (src, where):
            registered_day = self._day(src.c.registered_at)
            completed_day = self._day(src.c.completed_at)
            finished = and_(src.c.completed_at.is_not(None), src.c.status.in_(TERMINAL))
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
                        *(func.sum(case((src.c.status == s, 1), else_=0)) for s in TERMINAL),
                        func.avg(src.c.run_seconds),
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
