"""The report of deadlines (`tracker report deadlines`): per model, how many predictions
had a deadline, how many the daemon cancelled at it, and how those ended."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, bindparam, case, func, or_, select

from tracker.domain import CancelReason, CancelState, Status
from tracker.store.reports import TERMINAL, ReportFilter, ReportOps, Row, _r
from tracker.store.tables import predictions

c = predictions.c
#: the columns of the report, in order
DEADLINE_COLUMNS = (
    "model",
    "predictions",
    "cancelled",
    "canceled",
    "ended_first",
    "not_ended",
    "failed_requests",
    "mean_overrun_seconds",
    "max_overrun_seconds",
)


#: the predicate of ix_predictions_deadlines (migration 0011), written as the index is:
#: 'deadline' in the statement, not bound, so SQLite (and PostgreSQL's generic plans) can
#: prove the partial index covers the query
_WITH_DEADLINE = or_(
    c.deadline_at.is_not(None),
    c.cancel_reason
    == bindparam("deadline_reason", CancelReason.DEADLINE.value, literal_execute=True),
)


class CancelReportOps(ReportOps):
    """Reports of cancels (mixed into ``Store`` in place of ``ReportOps``)."""

    def report_deadlines(self, flt: ReportFilter) -> list[Row]:
        """Per model, over the predictions with a deadline (or cancelled at one):
        ``cancelled`` by the daemon at their deadline, of those ``canceled`` (the
        upstream stopped them), ``ended_first`` (they ended otherwise before the cancel
        took effect), ``not_ended`` (still running or no longer polled),
        ``failed_requests`` (the upstream refused or could not be reached), and how
        long past its deadline a cancelled one ran (``completed_at - deadline_at``)."""
        at_deadline = c.cancel_reason == CancelReason.DEADLINE.value

        def count(condition: Any) -> Any:
            """How many were cancelled at their deadline and meet ``condition``."""
            return func.sum(case((and_(at_deadline, condition), 1), else_=0))

        canceled = c.status == Status.CANCELED.value
        overrun = case((at_deadline & canceled, self._seconds(c.completed_at, c.deadline_at)))
        ended_otherwise = c.status.in_([s for s in TERMINAL if s != Status.CANCELED.value])
        stmt = (
            select(
                c.model,
                func.count().label("predictions"),
                count(at_deadline).label("cancelled"),
                count(canceled).label("canceled"),
                count(ended_otherwise).label("ended_first"),
                count(c.status.is_(None) | c.status.not_in(TERMINAL)).label("not_ended"),
                count(c.cancel_outcome == CancelState.FAILED.value).label("failed_requests"),
                func.avg(overrun).label("mean_overrun_seconds"),
                func.max(overrun).label("max_overrun_seconds"),
            )
            .where(_WITH_DEADLINE, *flt.conditions(predictions))
            .group_by(c.model)
            .order_by(count(at_deadline).desc(), func.count().desc(), c.model.nulls_last())
        )
        with self._reading() as conn:
            rows = [dict(r) for r in conn.execute(stmt).mappings()]
        for row in rows:
            for name in ("cancelled", "canceled", "ended_first", "not_ended", "failed_requests"):
                row[name] = int(row[name] or 0)  # numeric on PostgreSQL
            for name in ("mean_overrun_seconds", "max_overrun_seconds"):
                row[name] = _r(row[name])
        return rows
