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
