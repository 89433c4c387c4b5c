"""reporting views: prediction_timings, model_stats, daily_stats, delivery_stats

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

Every duration is in seconds, rounded to milliseconds, and every percentile is
percentile_cont (linear interpolation between the two nearest ranks), so both
engines give the same numbers. SQLite has no percentile_cont: it is computed
from row_number() and count() windows (see _percentile_sqlite).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS = ("delivery_stats", "daily_stats", "model_stats", "prediction_timings")
TERMINAL = "('succeeded', 'failed', 'canceled', 'aborted')"


def _seconds(later: str, earlier: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"round(extract(epoch from ({later} - {earlier}))::numeric, 3)::double precision"
    # julianday() keeps only milliseconds; the stored text has microseconds
    # (YYYY-MM-DD HH:MM:SS.ffffff), so whole seconds and microseconds are
    # subtracted separately and the result is exact, as on PostgreSQL.
    whole = f"(strftime('%s', {later}) - strftime('%s', {earlier}))"
    micros = (
        f"(CAST(substr({later}, 21, 6) AS INTEGER) - CAST(substr({earlier}, 21, 6) AS INTEGER))"
    )
    return f"round({whole} + {micros} / 1000000.0, 3)"


def _day(column: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"to_char({column} at time zone 'UTC', 'YYYY-MM-DD')"
    return f"date({column})"


def _round(expression: str, digits: int, dialect: str) -> str:
    if dialect == "postgresql":
        return f"round(({expression})::numeric, {digits})::double precision"
    return f"round({expression}, {digits})"


def prediction_timings(dialect: str) -> str:
    return f"""
CREATE VIEW prediction_timings AS
SELECT
    p.id,
    p.status,
    p.tracking,
    p.model,
    p.labels,
    p.registered_at,
    p.created_at,
    p.started_at,
    p.completed_at,
    p.predict_time,
    {_seconds("p.started_at", "p.created_at", dialect)} AS queue_seconds,
    {_seconds("p.completed_at", "p.started_at", dialect)} AS run_seconds,
    {_seconds("p.completed_at", "p.created_at", dialect)} AS total_seconds,
    {_seconds("f.seen_at", "p.completed_at", dialect)} AS detect_seconds,
    f.seen_at AS finished_seen_at
FROM predictions p
LEFT JOIN (
    SELECT prediction_id, min(observed_at) AS seen_at
    FROM status_transitions
    WHERE to_status IN {TERMINAL}
    GROUP BY prediction_id
) f ON f.prediction_id = p.id
"""


def _percentile_sqlite(table: str, p: float, alias: str) -> str:
    """percentile_cont(p) over column v of ``table`` (columns model, v, i, n)."""
    pos = f"({p} * (n - 1))"
    low = f"CAST({pos} AS INTEGER)"
    frac = f"({pos} - {low})"
    return (
        f"round(sum(CASE WHEN i = {low} THEN v * (1 - {frac})"
        f" WHEN i = {low} + 1 THEN v * {frac} ELSE 0 END), 3) AS {alias}"
    )


def model_stats(dialect: str) -> str:
    metrics = ("predict_time", "queue_seconds", "run_seconds")
    if dialect == "postgresql":
        columns = []
        for m in metrics:
            columns.append(f"{_round(f'avg({m})', 3, dialect)} AS {m}_mean")
            for p, name in ((0.5, "p50"), (0.95, "p95")):
                expr = f"percentile_cont({p}) WITHIN GROUP (ORDER BY {m})"
                columns.append(f"{_round(expr, 3, dialect)} AS {m}_{name}")
        percentiles = ",\n    ".join(columns)
        return f"""
CREATE VIEW model_stats AS
SELECT
    model,
    count(*) AS predictions,
    count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
    count(*) FILTER (WHERE status = 'failed') AS failed,
    count(*) FILTER (WHERE status = 'canceled') AS canceled,
    count(*) FILTER (WHERE status = 'aborted') AS aborted,
    {
            _round(
                "count(*) FILTER (WHERE status = 'succeeded')::double precision"
                f" / nullif(count(*) FILTER (WHERE status IN {TERMINAL}), 0)",
                4,
                dialect,
            )
        }
        AS success_rate,
    {percentiles}
FROM prediction_timings
GROUP BY model
"""
    parts = []
    for m in metrics:
        parts.append(f"""
{m}_ranked AS (
    SELECT model, {m} AS v,
           row_number() OVER (PARTITION BY model ORDER BY {m}) - 1 AS i,
           count(*) OVER (PARTITION BY model) AS n
    FROM prediction_timings WHERE {m} IS NOT NULL
),
{m}_stats AS (
    SELECT model,
           round(avg(v), 3) AS {m}_mean,
           {_percentile_sqlite(f"{m}_ranked", 0.5, f"{m}_p50")},
           {_percentile_sqlite(f"{m}_ranked", 0.95, f"{m}_p95")}
    FROM {m}_ranked GROUP BY model
)""")
    selects = ", ".join(f"{m}_stats.{m}_{s}" for m in metrics for s in ("mean", "p50", "p95"))
    joins = "\n".join(f"LEFT JOIN {m}_stats ON {m}_stats.model IS counts.model" for m in metrics)
    return f"""
CREATE VIEW model_stats AS
WITH counts AS (
    SELECT
        model,
        count(*) AS predictions,
        sum(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) AS succeeded,
        sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed,
        sum(CASE WHEN status = 'canceled' THEN 1 ELSE 0 END) AS canceled,
        sum(CASE WHEN status = 'aborted' THEN 1 ELSE 0 END) AS aborted,
        round(CAST(sum(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) AS REAL)
              / nullif(sum(CASE WHEN status IN {TERMINAL} THEN 1 ELSE 0 END), 0), 4)
            AS success_rate
    FROM prediction_timings GROUP BY model
),{",".join(parts)}
SELECT counts.model, counts.predictions, counts.succeeded, counts.failed, counts.canceled,
       counts.aborted, counts.success_rate, {selects}
FROM counts
{joins}
"""


def daily_stats(dialect: str) -> str:
    registered = _day("registered_at", dialect)
    completed = _day("completed_at", dialect)
    count_if = (
        (lambda cond: f"count(*) FILTER (WHERE {cond})")
        if dialect == "postgresql"
        else (lambda cond: f"sum(CASE WHEN {cond} THEN 1 ELSE 0 END)")
    )
    return f"""
CREATE VIEW daily_stats AS
WITH days AS (
    SELECT {registered} AS day FROM predictions
    UNION
    SELECT {completed} AS day FROM predictions
    WHERE completed_at IS NOT NULL AND status IN {TERMINAL}
),
registered AS (
    SELECT {registered} AS day, count(*) AS registered FROM predictions GROUP BY 1
),
completed AS (
    SELECT {_day("completed_at", dialect)} AS day,
           {count_if("status = 'succeeded'")} AS succeeded,
           {count_if("status = 'failed'")} AS failed,
           {count_if("status = 'canceled'")} AS canceled,
           {count_if("status = 'aborted'")} AS aborted,
           {_round("avg(run_seconds)", 3, dialect)} AS mean_run_seconds
    FROM prediction_timings
    WHERE completed_at IS NOT NULL AND status IN {TERMINAL}
    GROUP BY 1
)
SELECT days.day,
       coalesce(registered.registered, 0) AS registered,
       coalesce(completed.succeeded, 0) AS succeeded,
       coalesce(completed.failed, 0) AS failed,
       coalesce(completed.canceled, 0) AS canceled,
       coalesce(completed.aborted, 0) AS aborted,
       completed.mean_run_seconds
FROM days
LEFT JOIN registered ON registered.day = days.day
LEFT JOIN completed ON completed.day = days.day
"""


def delivery_stats(dialect: str) -> str:
    latency = _seconds("d.delivered_at", "d.created_at", dialect)
    if dialect == "postgresql":
        p95 = _round(f"percentile_cont(0.95) WITHIN GROUP (ORDER BY {latency})", 3, dialect)
        return f"""
CREATE VIEW delivery_stats AS
SELECT
    c.kind,
    c.target,
    count(*) AS deliveries,
    count(*) FILTER (WHERE d.state = 'delivered') AS delivered,
    count(*) FILTER (WHERE d.state = 'dead') AS dead,
    count(*) FILTER (WHERE d.state = 'pending') AS pending,
    {_round("avg(d.attempts)", 3, dialect)} AS mean_attempts,
    {p95} AS p95_delivery_seconds
FROM deliveries d JOIN callbacks c ON c.id = d.callback_id
GROUP BY c.kind, c.target
"""
    return f"""
CREATE VIEW delivery_stats AS
WITH base AS (
    SELECT c.kind, c.target, d.state, d.attempts,
           CASE WHEN d.delivered_at IS NOT NULL THEN {latency} END AS latency
    FROM deliveries d JOIN callbacks c ON c.id = d.callback_id
),
ranked AS (
    SELECT kind, target, latency AS v,
           row_number() OVER (PARTITION BY kind, target ORDER BY latency) - 1 AS i,
           count(*) OVER (PARTITION BY kind, target) AS n
    FROM base WHERE latency IS NOT NULL
),
p95 AS (
    SELECT kind, target, {_percentile_sqlite("ranked", 0.95, "p95_delivery_seconds")}
    FROM ranked GROUP BY kind, target
)
SELECT base.kind, base.target,
       count(*) AS deliveries,
       sum(CASE WHEN base.state = 'delivered' THEN 1 ELSE 0 END) AS delivered,
       sum(CASE WHEN base.state = 'dead' THEN 1 ELSE 0 END) AS dead,
       sum(CASE WHEN base.state = 'pending' THEN 1 ELSE 0 END) AS pending,
       round(avg(base.attempts), 3) AS mean_attempts,
       p95.p95_delivery_seconds
FROM base
LEFT JOIN p95 ON p95.kind = base.kind AND p95.target = base.target
GROUP BY base.kind, base.target
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for build in (prediction_timings, model_stats, daily_stats, delivery_stats):
        op.execute(build(dialect))


def downgrade() -> None:
    for view in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
