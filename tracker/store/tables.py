"""The tables of the public contract (see docs/schema.md). Names here are stable."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    false,
    text,
)

from tracker.store.types import BigIntKey, CompressedText, JSONValue, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

predictions = Table(
    "predictions",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("status", String(64)),
    Column("tracking", String(16), nullable=False, server_default="active"),
    Column("model", Text),
    Column("version", Text),
    Column("input", JSONValue),
    Column("output", JSONValue),
    Column("error", JSONValue),
    Column("logs", Text, nullable=False, server_default=""),
    Column("metrics", JSONValue),
    Column("predict_time", Float),
    Column("created_at", UTCDateTime),
    Column("started_at", UTCDateTime),
    Column("completed_at", UTCDateTime),
    Column("data_removed", Boolean),
    Column("urls", JSONValue),
    Column("labels", JSONValue, nullable=False, server_default=text("'{}'")),
    Column("registered_at", UTCDateTime, nullable=False),
    Column("last_polled_at", UTCDateTime),
    Column("next_poll_at", UTCDateTime),
    Column("poll_count", Integer, nullable=False, server_default="0"),
    Column("error_count", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("raw", JSONValue),
    # raw's logs are the logs column's text (raw holds null there): tracker/store/answers.py
    Column("raw_logs_moved", Boolean, nullable=False, server_default=false()),
    # Bookkeeping beyond the contract: scheduling, error streaks, claims.
    Column("consecutive_errors", Integer, nullable=False, server_default="0"),
    Column("poll_interval", Float),
    Column("not_found_count", Integer, nullable=False, server_default="0"),
    Column("not_found_since", UTCDateTime),
    Column("log_seq", Integer, nullable=False, server_default="0"),
    Column("claimed_by", String(200)),
    # When the upstream last pushed it (its own webhook): polled at poll-max since.
    Column("last_pushed_at", UTCDateTime),
    # Cancelling (`tracker cancel`, deadlines): see docs/schema.md.
    Column("deadline_at", UTCDateTime),
    Column("cancel_requested_at", UTCDateTime),
    Column("cancel_reason", String(16)),
    Column("cancel_outcome", String(16)),
    Column("cancel_detail", Text),
    # The deadline as given (seconds), so it can count from created_at once that is known.
    Column("deadline_seconds", Float),
)

# The due-work query reads only active rows in next_poll_at order.
Index(
    "ix_predictions_due",
    predictions.c.next_poll_at,
    postgresql_where=predictions.c.tracking == "active",
    sqlite_where=predictions.c.tracking == "active",
)
# The daemon's deadline sweep reads active rows with a deadline not yet acted on.
Index(
    "ix_predictions_deadline",
    predictions.c.deadline_at,
    postgresql_where=and_(
        predictions.c.tracking == "active", predictions.c.cancel_requested_at.is_(None)
    ),
    sqlite_where=and_(
        predictions.c.tracking == "active", predictions.c.cancel_requested_at.is_(None)
    ),
)
# The list's order and keyset (tracker/store/dashboard.py), and registration-time
# bounds; the list's filters an index serves, each in that order.
_LIST_ORDER = (predictions.c.registered_at, predictions.c.id)
Index("ix_predictions_registered", *_LIST_ORDER)
Index("ix_predictions_status", predictions.c.status, *_LIST_ORDER)
Index("ix_predictions_model", predictions.c.model, *_LIST_ORDER)
Index(
    "ix_predictions_active",
    *_LIST_ORDER,
    postgresql_where=predictions.c.tracking == "active",
    sqlite_where=predictions.c.tracking == "active",
)
# Pruning (tracker/store/retention.py) reads finished rows in the order they
# finished: by completed_at, or by last_polled_at when upstream never said.
Index(
    "ix_predictions_finished_completed",
    predictions.c.completed_at,
    predictions.c.id,
    postgresql_where=and_(
        predictions.c.tracking != "active", predictions.c.completed_at.is_not(None)
    ),
    sqlite_where=and_(predictions.c.tracking != "active", predictions.c.completed_at.is_not(None)),
)
Index(
    "ix_predictions_finished_polled",
    predictions.c.last_polled_at,
    predictions.c.id,
    postgresql_where=and_(predictions.c.tracking != "active", predictions.c.completed_at.is_(None)),
    sqlite_where=and_(predictions.c.tracking != "active", predictions.c.completed_at.is_(None)),
)

status_transitions = Table(
    "status_transitions",
    metadata,
    Column("id", BigIntKey, primary_key=True, autoincrement=True),
    Column(
        "prediction_id",
        String(128),
        ForeignKey("predictions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("from_status", String(64)),
    Column("to_status", String(64), nullable=False),
    Column("observed_at", UTCDateTime, nullable=False),
    Column("upstream_at", UTCDateTime),
)
Index(
    "ix_status_transitions_prediction", status_transitions.c.prediction_id, status_transitions.c.id
)

prediction_logs = Table(
    "prediction_logs",
    metadata,
    Column("id", BigIntKey, primary_key=True, autoincrement=True),
    Column(
        "prediction_id",
        String(128),
        ForeignKey("predictions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("seq", Integer, nullable=False),
    Column("observed_at", UTCDateTime, nullable=False),
    Column("text", Text, nullable=False),
    # True when the upstream text did not extend the previous one and was stored whole.
    Column("restarted", Boolean, nullable=False, server_default=text("false")),
    UniqueConstraint("prediction_id", "seq"),
)

callbacks = Table(
    "callbacks",
    metadata,
    Column("id", BigIntKey, primary_key=True, autoincrement=True),
    Column(
        "prediction_id",
        String(128),
        ForeignKey("predictions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("kind", String(16), nullable=False),
    Column("target", Text, nullable=False),
    Column("events", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("prediction_id", "kind", "target"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigIntKey, primary_key=True, autoincrement=True),
    Column(
        "callback_id",
        BigIntKey,
        ForeignKey("callbacks.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column(
        "prediction_id",
        String(128),
        ForeignKey("predictions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("event", String(16), nullable=False),
    Column("state", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime),
    # The exact text every attempt sends (the prediction as it was at the event),
    # stored compressed (migration 0012).
    Column("payload", CompressedText, nullable=False),
    # Standard Webhooks `webhook-id`: the same on every retry of this delivery.
    Column("message_id", String(64), nullable=False),
    Column("claimed_by", String(200)),
    UniqueConstraint("message_id"),
)
Index(
    "ix_deliveries_due",
    deliveries.c.next_attempt_at,
    postgresql_where=deliveries.c.state == "pending",
    sqlite_where=deliveries.c.state == "pending",
)
Index("ix_deliveries_prediction", deliveries.c.prediction_id)
Index(
    "ix_deliveries_dead",
    deliveries.c.id,
    postgresql_where=deliveries.c.state == "dead",
    sqlite_where=deliveries.c.state == "dead",
)
Index("ix_deliveries_callback", deliveries.c.callback_id)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", BigIntKey, primary_key=True, autoincrement=True),
    Column(
        "delivery_id",
        BigIntKey,
        ForeignKey("deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("attempted_at", UTCDateTime, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Column("duration_ms", Integer),
)
Index("ix_delivery_attempts_delivery", delivery_attempts.c.delivery_id, delivery_attempts.c.id)

daemons = Table(
    "daemons",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", String(40), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("stopped_at", UTCDateTime),
    Column("polls", BigInteger, nullable=False, server_default="0"),
)

# The upstream's own webhooks (`tracker serve`'s POST /webhooks/upstream): one row per
# webhook-id, so that a push delivered again is applied once.
upstream_pushes = Table(
    "upstream_pushes",
    metadata,
    Column("webhook_id", String(200), primary_key=True),
    Column(
        "prediction_id",
        String(128),
        ForeignKey("predictions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("received_at", UTCDateTime, nullable=False),
    Column("status", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("detail", Text),
)
Index("ix_upstream_pushes_prediction", upstream_pushes.c.prediction_id)
Index("ix_upstream_pushes_received_at", upstream_pushes.c.received_at)

# Output files archived before the upstream deletes them (TRACKER_ARCHIVE_URL): one row
# per http(s) URL of a succeeded output, by its position in the output. The claim
# columns work as for deliveries: ``next_attempt_at`` is the lease while
# ``claimed_by`` is set.
artifacts = Table(
    "artifacts",
    metadata,
    Column("id", BigIntKey, primary_key=True, autoincrement=True),
    Column(
        "prediction_id",
        String(128),
        ForeignKey("predictions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("position", Integer, nullable=False),
    Column("source_url", Text, nullable=False),
    Column("stored_url", Text),
    Column("state", String(16), nullable=False, server_default="pending"),
    Column("bytes", BigInteger),
    Column("sha256", String(64)),
    Column("content_type", String(200)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("stored_at", UTCDateTime),
    Column("next_attempt_at", UTCDateTime),
    Column("claimed_by", String(200)),
    UniqueConstraint("prediction_id", "position"),
)
Index(
    "ix_artifacts_due",
    artifacts.c.next_attempt_at,
    postgresql_where=artifacts.c.state == "pending",
    sqlite_where=artifacts.c.state == "pending",
)
Index(
    "ix_artifacts_failed",
    artifacts.c.id,
    postgresql_where=artifacts.c.state == "failed",
    sqlite_where=artifacts.c.state == "failed",
)

# The reports' rollup (migration 0011, tracker/store/rollup.py): aggregates of the
# predictions no longer active, kept by triggers on ``predictions`` in the writing
# transaction. Keys are never NULL: '' stands for a missing model or status, NO_HOUR
# (tracker/store/rollup.py) for a missing completed_at. Hours are UTC hours since 1970.
prediction_rollup = Table(
    "prediction_rollup",
    metadata,
    Column("model", Text, primary_key=True),
    Column("status", String(64), primary_key=True),
    Column("tracking", String(16), primary_key=True),
    Column("registered_hour", BigInteger, primary_key=True, autoincrement=False),
    Column("completed_hour", BigInteger, primary_key=True, autoincrement=False),
    Column("predictions", BigInteger, nullable=False),
    Column("predict_time_n", BigInteger, nullable=False),
    Column("predict_time_sum", Float, nullable=False),
    Column("queue_seconds_n", BigInteger, nullable=False),
    Column("queue_seconds_sum", Float, nullable=False),
    Column("run_seconds_n", BigInteger, nullable=False),
    Column("run_seconds_sum", Float, nullable=False),
    sqlite_with_rowid=False,
)
# `tracker report archive` groups files by their prediction's model: an index-only
# lookup instead of a read of each (wide) prediction row.
Index("ix_predictions_id_model", predictions.c.id, predictions.c.model)
# `tracker report deadlines` reads only the predictions with a deadline (or cancelled
# at one); the predicate is written as in CancelReportOps.
Index(
    "ix_predictions_deadlines",
    predictions.c.model,
    postgresql_where=text("deadline_at IS NOT NULL OR cancel_reason = 'deadline'"),
    sqlite_where=text("deadline_at IS NOT NULL OR cancel_reason = 'deadline'"),
)
# Each text label of each prediction (migration 0013), kept by triggers on
# ``predictions``: reports filtered by label read only the predictions that carry it.
prediction_labels = Table(
    "prediction_labels",
    metadata,
    Column("prediction_id", String(128), primary_key=True),
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
    sqlite_with_rowid=False,
)
Index(
    "ix_prediction_labels_key_value",
    prediction_labels.c.key,
    prediction_labels.c.value,
    prediction_labels.c.prediction_id,
)
# The archive per model, UTC hour of the prediction's registration and UTC day the file
# was found (migration 0014), kept by triggers on ``artifacts`` and ``predictions``:
# `tracker report archive` reads it for whole hours instead of joining every file.
# ``model`` '' stands for a missing model; hours and days are counted since 1970.
artifact_rollup = Table(
    "artifact_rollup",
    metadata,
    Column("registered_hour", BigInteger, primary_key=True, autoincrement=False),
    Column("model", Text, primary_key=True),
    Column("day", BigInteger, primary_key=True, autoincrement=False),
    Column("predictions", BigInteger, nullable=False),
    Column("files", BigInteger, nullable=False),
    Column("stored", BigInteger, nullable=False),
    Column("failed", BigInteger, nullable=False),
    Column("pending", BigInteger, nullable=False),
    Column("stored_bytes", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)
# Counts of values by bucket (the value to two significant digits): metric 1
# predict_time, 2 queue_seconds, 3 run_seconds by UTC day of registration (period);
# 11-13 the same by UTC hour of registration; 4 run_seconds by UTC hour of completion.
prediction_rollup_buckets = Table(
    "prediction_rollup_buckets",
    metadata,
    Column("metric", Integer, primary_key=True, autoincrement=False),
    Column("period", BigInteger, primary_key=True, autoincrement=False),
    Column("model", Text, primary_key=True),
    Column("status", String(64), primary_key=True),
    Column("bucket", Float, primary_key=True),
    Column("n", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)
