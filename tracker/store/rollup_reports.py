"""The reports and the dashboard's overview numbers read from the rollup
(``tracker.store.rollup``): `tracker report status|models|daily` without ``--label``,
the overview's counts, completions per hour and run time percentiles.

Each returns what the row-reading query it replaces returned, but percentiles, which
come from the buckets (within ``rollup.BUCKET_ERROR``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, func, literal_column, select

from tracker.domain import Status
from tracker.store.report_sql import TERMINAL, Row
from tracker.store.rollup import (
    METRICS,
    NO_HOUR,
    RUN_BY_COMPLETION,
    Scope,
    buckets_source,
    counts_source,
    day_text,
    hour_of,
    hour_start,
)
from tracker.store.rollup_percentiles import group_buckets, percentile
from tracker.store.tables import prediction_rollup, prediction_rollup_buckets

Rounder = Callable[..., float | None]


def _none(key: str) -> str | None:
    """A key as the reports show it: '' (a missing model or status) is None."""
    return None if key == "" else key


def status_counts(conn: Connection, scope: Scope) -> list[Row]:
    src = counts_source(conn.dialect.name, scope)
    n = func.sum(src.c.predictions)
    stmt = select(src.c.status, src.c.tracking, n).group_by(src.c.status, src.c.tracking)
    rows = [
        {"status": _none(status), "tracking": tracking, "predictions": int(count)}
        for status, tracking, count in conn.execute(stmt)
        if count
    ]
    # as the row query orders them: most first, a missing status last, then tracking
    rows.sort(
        key=lambda r: (-r["predictions"], r["status"] is None, r["status"] or "", r["tracking"])
    )
    return rows


def model_rows(conn: Connection, scope: Scope, r: Rounder) -> list[Row]:
    """`tracker report models`: counts, success rate, mean / p50 / p95 of each metric."""
    dialect = conn.dialect.name
    src = counts_source(dialect, scope)

    def count_status(status: str) -> Any:
        return func.sum(case((src.c.status == status, src.c.predictions), else_=0))

    sums = [func.sum(src.c[f"{m}_{part}"]) for m in METRICS for part in ("n", "sum")]
    stmt = select(
        src.c.model, func.sum(src.c.predictions), *(count_status(s) for s in TERMINAL), *sums
    ).group_by(src.c.model)
    buckets = buckets_source(dialect, scope, METRICS.values())
    per_bucket = select(
        buckets.c.model, buckets.c.metric, buckets.c.bucket, func.sum(buckets.c.n)
    ).group_by(buckets.c.model, buckets.c.metric, buckets.c.bucket)
    counted = conn.execute(stmt).all()
    grouped = group_buckets(conn.execute(per_bucket))
    rows = []
    for row in counted:
        model, total, *rest = row
        if not total:
            continue
        statuses = [int(x or 0) for x in rest[: len(TERMINAL)]]
        out: Row = {"model": _none(model), "predictions": int(total)}
        out.update(zip(TERMINAL, statuses, strict=True))
        finished = sum(statuses)
        out["success_rate"] = r(statuses[0] / finished, 4) if finished else None
        sums_row = rest[len(TERMINAL) :]
        for i, (name, code) in enumerate(METRICS.items()):
            n, total_value = int(sums_row[2 * i] or 0), float(sums_row[2 * i + 1] or 0)
            values = grouped.get((model, code), [])
            out[f"{name}_mean"] = r(total_value / n) if n else None
            out[f"{name}_p50"] = r(percentile(values, 0.5))
            out[f"{name}_p95"] = r(percentile(values, 0.95))
        rows.append(out)
    rows.sort(key=lambda x: (-x["predictions"], x["model"] is None, x["model"] or ""))
    return rows


def daily_rows(conn: Connection, scope: Scope, r: Rounder) -> list[Row]:
    """`tracker report daily`: registered per UTC day, and per day of completion the
    terminal statuses and the mean run time."""
    src = counts_source(conn.dialect.name, scope)
    registered_day = src.c.registered_hour // literal_column("24")
    registered: dict[Any, Any] = dict(
        conn.execute(
            select(registered_day, func.sum(src.c.predictions)).group_by(registered_day)
        ).all()
    )
    finished = (src.c.completed_hour != NO_HOUR) & src.c.status.in_(TERMINAL)
    day = src.c.completed_hour // literal_column("24")
    completed = {
        int(row[0]): row
        for row in conn.execute(
            select(
                day,
                *(
                    func.sum(case((src.c.status == s, src.c.predictions), else_=0))
                    for s in TERMINAL
                ),
                func.sum(src.c.run_seconds_n),
                func.sum(src.c.run_seconds_sum),
            )
            .where(finished)
            .group_by(day)
        )
    }
    days = {int(d) for d, n in registered.items() if n} | set(completed)
    rows = []
    for d in sorted(days):
        done = completed.get(d)
        n = int(done[-2] or 0) if done else 0
        rows.append(
            {
                "day": day_text(d, is_day=True),
                "registered": int(registered.get(d, 0) or 0),
                **{s: int(done[i + 1] or 0) if done else 0 for i, s in enumerate(TERMINAL)},
                "mean_run_seconds": r(float(done[-1]) / n) if done and n else None,
            }
        )
    return rows


def completions_by_hour(conn: Connection, since: datetime) -> list[tuple[datetime, str, int]]:
    """``(hour, final status, predictions)`` of the settled predictions that completed
    in the hour of ``since`` or later."""
    c = prediction_rollup.c
    stmt = (
        select(c.completed_hour, c.status, func.sum(c.predictions))
        .where(c.completed_hour >= hour_of(since), c.status.in_(TERMINAL))
        .group_by(c.completed_hour, c.status)
    )
    return [(hour_start(int(h)), status, int(n)) for h, status, n in conn.execute(stmt) if n]


def run_times(conn: Connection, since: datetime, models: int, r: Rounder) -> list[Row]:
    """Run time p50 / p95 of the settled predictions that succeeded in the hour of
    ``since`` or later, for the ``models`` models with most of them."""
    c = prediction_rollup.c
    first = hour_of(since)
    succeeded = Status.SUCCEEDED.value
    n = func.sum(c.run_seconds_n)
    top = [
        (model, int(count))
        for model, count in conn.execute(
            select(c.model, n)
            .where(c.status == succeeded, c.completed_hour >= first)
            .group_by(c.model)
            .having(n > 0)
            .order_by(n.desc(), c.model)
            .limit(models)
        )
    ]
    if not top:
        return []
    b = prediction_rollup_buckets.c
    grouped = group_buckets(
        conn.execute(
            select(b.model, b.metric, b.bucket, func.sum(b.n))
            .where(
                b.metric == RUN_BY_COMPLETION,
                b.status == succeeded,
                b.period >= first,
                b.model.in_([m for m, _ in top]),
            )
            .group_by(b.model, b.metric, b.bucket)
        )
    )
    found = []
    for model, count in top:
        values = grouped.get((model, RUN_BY_COMPLETION), [])
        found.append(
            {
                "model": _none(model),
                "predictions": count,
                "p50": r(percentile(values, 0.5)),
                "p95": r(percentile(values, 0.95)),
            }
        )
    return found
