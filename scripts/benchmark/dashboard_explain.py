"""The dashboard's query plans: run each read of a page once through the product's own
code (``DashboardQueries``, the overview's reads, ``Store.get_detail``), capture the
SQL it sends (``explain._Capture``) and explain every statement with its parameters:
``EXPLAIN (ANALYZE, BUFFERS)`` on PostgreSQL, ``EXPLAIN QUERY PLAN`` (and the best of
three runs) on SQLite."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection

from tracker.health import judge
from tracker.service.dashboard.charts import hour_start
from tracker.service.dashboard.overview import CHART_HOURS, CHART_MODELS, DEAD_LISTED
from tracker.service.dashboard.overview import SUGGESTED_MODELS as MODELS_LISTED
from tracker.service.dashboard.pages import PAGE_SIZE
from tracker.store.dashboard import Cursor, DashboardQueries, PredictionFilter
from tracker.store.reports import ReportFilter
from tracker.store.store import Store
from tracker.timeparse import utcnow

from .explain import _Capture, _full_scans, _sqlite_tree

#: a list read: (name, filter, after)
ListRead = tuple[str, PredictionFilter, Cursor | None]
_EXECUTION = re.compile(r"Execution Time: ([\d.]+) ms")


def explain_dashboard(
    url: str, lists: Sequence[ListRead], *, detail_id: str | None, overview: bool
) -> list[dict[str, Any]]:
    """The plans of these list pages, and of the overview's reads and one prediction's
    page when asked: ``[{operation, statements: [{sql, plan, ms, full_scans}]}]``."""
    store = Store.from_url(url, pool_size=1)
    queries = DashboardQueries(store.engine)
    capture = _Capture()
    listener = capture.listen
    event.listen(store.engine, "before_cursor_execute", listener)
    try:
        queries.page(PredictionFilter(), size=1)  # the collation check, once, uncaptured
        for name, flt, after in lists:
            capture.op(name, partial(queries.page, flt, size=PAGE_SIZE, after=after))
        if overview:
            _overview_reads(store, queries, capture.op)
        if detail_id is not None:
            capture.op("prediction page (Store.get_detail)", lambda: store.get_detail(detail_id))
    finally:
        event.remove(store.engine, "before_cursor_execute", listener)
    sqlite = url.startswith("sqlite")
    try:
        with store.engine.connect() as conn:
            plans = _analyze(conn, capture.captured, sqlite)
            conn.rollback()
    finally:
        store.close()
    return plans


def _overview_reads(
    store: Store, queries: DashboardQueries, op: Callable[[str, Callable[[], Any]], Any]
) -> None:
    """What ``overview.read_overview`` reads, one operation per call."""
    now = utcnow()
    op("overview: health (Store.health via judge)", lambda: judge(store, now=now))
    op("overview: counts (Store.report_status)", lambda: store.report_status(ReportFilter()))
    op("overview: files (Store.count_artifacts)", store.count_artifacts)
    op(
        "overview: completions per hour (completions_by_hour)",
        lambda: queries.completions_by_hour(since=hour_start(now)),
    )
    op(
        "overview: run time percentiles (run_times)",
        lambda: queries.run_times(since=now - timedelta(hours=CHART_HOURS), models=CHART_MODELS),
    )
    op("overview: dead deliveries", lambda: queries.dead_deliveries(limit=DEAD_LISTED))
    op("overview: models (model_names)", lambda: queries.model_names(limit=MODELS_LISTED))


def _analyze(
    conn: Connection, captured: list[tuple[str, str, Any]], sqlite: bool
) -> list[dict[str, Any]]:
    by_op: dict[str, list[dict[str, Any]]] = {}
    for name, statement, parameters in captured:
        params = parameters[0] if isinstance(parameters, list) and parameters else parameters
        if sqlite:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
            lines = _sqlite_tree(rows)
            ms = None
            for _ in range(3):
                began = time.perf_counter()
                conn.exec_driver_sql(statement, params).all()
                took = (time.perf_counter() - began) * 1000
                ms = took if ms is None else min(ms, took)
        else:
            rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params).all()
            lines = [r[0] for r in rows]
            found = [_EXECUTION.search(line) for line in lines]
            ms = next((float(m.group(1)) for m in found if m), None)
        by_op.setdefault(name, []).append(
            {
                "sql": " ".join(statement.split()),
                "plan": lines,
                "ms": None if ms is None else round(ms, 3),
                "full_scans": _full_scans(lines, sqlite),
            }
        )
    return [{"operation": name, "statements": s} for name, s in by_op.items()]
