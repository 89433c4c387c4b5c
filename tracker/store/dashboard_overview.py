"""The reads of the dashboard's overview (its charts, dead deliveries, the models a
filter suggests) and of its archived files, on both engines.

- ``completions_by_hour`` and ``run_times``: predictions that finished since an
  hour, from the reports' rollup (``tracker.store.rollup_reports``): the rows of
  that many hours, whatever the number of predictions.
- ``dead_deliveries``: the newest dead deliveries, down ``ix_deliveries_dead``.
- ``model_names``: distinct models by skipping through ``ix_predictions_model``
  (a recursive query: one index probe per model, however many rows each has).
- ``artifact``: one archived file, by its unique ``(prediction_id, position)``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, text

from tracker.domain import Artifact
from tracker.store import rollup_reports
from tracker.store.reports import ReportOps, _r
from tracker.store.tables import artifacts, callbacks, deliveries

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
        (upstream ``completed_at``) in the hour of ``since`` or later, by UTC hour: from
        the rollup (the settled predictions)."""
        with self._reading() as conn:
            return rollup_reports.completions_by_hour(conn, since)

    def run_times(self, *, since: datetime, models: int) -> list[dict[str, Any]]:
        """Run seconds (``completed_at - started_at``) of the predictions that succeeded
        in the hour of ``since`` or later, for the ``models`` models with most of them:
        ``model``, ``predictions``, ``p50``, ``p95`` (from the rollup's buckets: within
        5 % of percentile_cont)."""
        with self._reading() as conn:
            return rollup_reports.run_times(conn, since, models, _r)

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
