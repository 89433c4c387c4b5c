"""The report of callback deliveries (`tracker report deliveries`): per callback
target, how many deliveries, in which state, after how many attempts, and how long the
delivered ones took (95th percentile)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select

from tracker.store.report_sql import ReportBase, ReportFilter, Row, _r
from tracker.store.tables import callbacks, deliveries, predictions


class DeliveryReportOps(ReportBase):
    """Reports of deliveries (mixed into ``Store``)."""

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
