"""The views (created by migrations 0004 and 0015), described for queries.

They live in their own MetaData so the schema comparison of migrations, which
knows only tables, never tries to create them as tables.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text

from tracker.store.types import JSONValue, UTCDateTime

view_metadata = MetaData()

prediction_timings = Table(
    "prediction_timings",
    view_metadata,
    Column("id", String(128)),
    Column("status", String(64)),
    Column("tracking", String(16)),
    Column("model", Text),
    Column("labels", JSONValue),
    Column("registered_at", UTCDateTime),
    Column("created_at", UTCDateTime),
    Column("started_at", UTCDateTime),
    Column("completed_at", UTCDateTime),
    Column("predict_time", Float),
    Column("queue_seconds", Float),
    Column("run_seconds", Float),
    Column("total_seconds", Float),
    Column("detect_seconds", Float),
    Column("finished_seen_at", UTCDateTime),
)

delivery_stats = Table(
    "delivery_stats",
    view_metadata,
    Column("kind", String(16)),
    Column("target", Text),
    Column("deliveries", Integer),
    Column("delivered", Integer),
    Column("dead", Integer),
    Column("pending", Integer),
    Column("mean_attempts", Float),
    Column("p95_delivery_seconds", Float),
)

#: the latest answer whole: ``raw`` with its logs put back (migration 0015)
prediction_answers = Table(
    "prediction_answers",
    view_metadata,
    Column("id", String(128)),
    Column("raw", JSONValue),
)
