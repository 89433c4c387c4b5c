"""The reads of the dashboard's overview (its charts, dead deliveries, the models a
filter suggests) and of its archived files, on both engines.

- ``completions_by_hour`` and ``run_times``: predictions that finished since a
  time: a range of the partial index ``ix_predictions_finished_completed``
  (finished rows by ``completed_at``), grouped.
- ``dead_deliveries``: the newest dead deliveries, down ``ix_deliveries_dead``.
- ``model_names``: distinct models by skipping through ``ix_predictions_model``
  (a recursive query: one index probe per model, however many rows each has).
- ``artifact``: one archived file, by its unique ``(prediction_id, position)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, bindparam, func, select, text

from tracker.domain import Artifact, Status, Tracking
from tracker.store.reports import TERMINAL, ReportOps
from tracker.store.tables import artifacts, callbacks, deliveries, predictions

#: distinct models, one probe of ix_predictions_model each (both engines)
_MODELS = text(
    """
    WITH RECURSIVE models(model) AS (
        SELECT min(model) FROM predictions
        UNION ALL
        SELECT (SELECT min(model) FROM predictions WHERE model > models.model)
        FROM models WHERE models.model IS NOT NULL
    )
    SELECT model FROM models WHERE model IS NOT NULL LIMIT :limit
    """
)


class OverviewReads(ReportOps):
    """The overview's reads (mixed into ``DashboardQueries``)."""

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
        empty = (None, None, None)
        return [
            {
                "model": model,
                "predictions": n,
                "p50": stats.get((model,), empty)[1],
                "p95": stats.get((model,), empty)[2],
            }
            for model, n in top
        ]

    def _hour(self, column: Any) -> Any:
        if self.dialect == "postgresql":
            return func.date_trunc("hour", func.timezone("UTC", column))
        return func.strftime("%Y-%m-%d %H:00:00", column)

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

    def model_names(self, *, limit: int) -> list[str]:
        """The first ``limit`` models in name order (the list's filter suggests them)."""
        with self._reading() as conn:
            return [str(model) for (model,) in conn.execute(_MODELS, {"limit": limit})]

    def artifact(self, prediction_id: str, position: int) -> Artifact | None:
        """One archived file of a prediction, or None."""
        a = artifacts.c
        names = Artifact.__slots__
        stmt = select(*(a[name] for name in names)).where(
            a.prediction_id == prediction_id, a.position == position
        )
        with self._reading() as conn:
            row = conn.execute(stmt).mappings().first()
        return None if row is None else Artifact(**{name: row[name] for name in names})


def _finished_since(since: datetime) -> Sequence[ColumnElement[bool]]:
    """Finished since ``since``: the conditions of ix_predictions_finished_completed.

    ``'active'`` is written into the statement, not bound: psycopg prepares a statement
    after a few runs and PostgreSQL's generic plan for ``tracking != $1`` cannot use
    that partial index (measured 1.3 s instead of 0.56 s at 1M rows)."""
    c = predictions.c
    active: BindParameter[str] = bindparam(
        "active_tracking", Tracking.ACTIVE.value, literal_execute=True
    )
    return (c.tracking != active, c.completed_at >= since)


def _hour_value(value: Any) -> datetime:
    """An hour as either engine returns it: a naive UTC timestamp or text."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
