"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types, so later changes to the code cannot change
# what this migration creates. Timestamps: timestamptz on PostgreSQL, UTC text on
# SQLite. JSON: jsonb on PostgreSQL, JSON text on SQLite.
TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGINT_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=64), nullable=True),
        sa.Column("tracking", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("version", sa.Text(), nullable=True),
        sa.Column("input", JSON, nullable=True),
        sa.Column("output", JSON, nullable=True),
        sa.Column("error", JSON, nullable=True),
        sa.Column("logs", sa.Text(), server_default="", nullable=False),
        sa.Column("metrics", JSON, nullable=True),
        sa.Column("predict_time", sa.Float(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=True),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("completed_at", TIMESTAMP, nullable=True),
        sa.Column("data_removed", sa.Boolean(), nullable=True),
        sa.Column("urls", JSON, nullable=True),
        sa.Column("labels", JSON, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("registered_at", TIMESTAMP, nullable=False),
        sa.Column("last_polled_at", TIMESTAMP, nullable=True),
        sa.Column("next_poll_at", TIMESTAMP, nullable=True),
        sa.Column("poll_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("raw", JSON, nullable=True),
        sa.Column("consecutive_errors", sa.Integer(), server_default="0", nullable=False),
        sa.Column("poll_interval", sa.Float(), nullable=True),
        sa.Column("not_found_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("not_found_since", TIMESTAMP, nullable=True),
        sa.Column("log_seq", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictions")),
    )
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_predictions_due",
            ["next_poll_at"],
            unique=False,
            postgresql_where=sa.text("tracking = 'active'"),
            sqlite_where=sa.text("tracking = 'active'"),
        )
        batch_op.create_index("ix_predictions_model", ["model"], unique=False)
        batch_op.create_index("ix_predictions_registered_at", ["registered_at"], unique=False)
        batch_op.create_index("ix_predictions_status", ["status"], unique=False)

    op.create_table(
        "callbacks",
        sa.Column("id", BIGINT_KEY, autoincrement=True, nullable=False),
        sa.Column("prediction_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("events", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["predictions.id"],
            name=op.f("fk_callbacks_prediction_id_predictions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callbacks")),
        sa.UniqueConstraint(
            "prediction_id", "kind", "target", name=op.f("uq_callbacks_prediction_id_kind_target")
        ),
    )
    op.create_table(
        "prediction_logs",
        sa.Column("id", BIGINT_KEY, autoincrement=True, nullable=False),
        sa.Column("prediction_id", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("observed_at", TIMESTAMP, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("restarted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["predictions.id"],
            name=op.f("fk_prediction_logs_prediction_id_predictions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prediction_logs")),
        sa.UniqueConstraint(
            "prediction_id", "seq", name=op.f("uq_prediction_logs_prediction_id_seq")
        ),
    )
    op.create_table(
        "status_transitions",
        sa.Column("id", BIGINT_KEY, autoincrement=True, nullable=False),
        sa.Column("prediction_id", sa.String(length=128), nullable=False),
        sa.Column("from_status", sa.String(length=64), nullable=True),
        sa.Column("to_status", sa.String(length=64), nullable=False),
        sa.Column("observed_at", TIMESTAMP, nullable=False),
        sa.Column("upstream_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["predictions.id"],
            name=op.f("fk_status_transitions_prediction_id_predictions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_transitions")),
    )
    with op.batch_alter_table("status_transitions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_status_transitions_prediction", ["prediction_id", "id"], unique=False
        )

    op.create_table(
        "deliveries",
        sa.Column("id", BIGINT_KEY, autoincrement=True, nullable=False),
        sa.Column("callback_id", BIGINT_KEY, nullable=False),
        sa.Column("prediction_id", sa.String(length=128), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("delivered_at", TIMESTAMP, nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["callback_id"],
            ["callbacks.id"],
            name=op.f("fk_deliveries_callback_id_callbacks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["predictions.id"],
            name=op.f("fk_deliveries_prediction_id_predictions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_callback", ["callback_id"], unique=False)
        batch_op.create_index(
            "ix_deliveries_due",
            ["next_attempt_at"],
            unique=False,
            postgresql_where=sa.text("state = 'pending'"),
            sqlite_where=sa.text("state = 'pending'"),
        )
        batch_op.create_index("ix_deliveries_prediction", ["prediction_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_prediction")
        batch_op.drop_index(
            "ix_deliveries_due",
            postgresql_where=sa.text("state = 'pending'"),
            sqlite_where=sa.text("state = 'pending'"),
        )
        batch_op.drop_index("ix_deliveries_callback")

    op.drop_table("deliveries")
    with op.batch_alter_table("status_transitions", schema=None) as batch_op:
        batch_op.drop_index("ix_status_transitions_prediction")

    op.drop_table("status_transitions")
    op.drop_table("prediction_logs")
    op.drop_table("callbacks")
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_index("ix_predictions_status")
        batch_op.drop_index("ix_predictions_registered_at")
        batch_op.drop_index("ix_predictions_model")
        batch_op.drop_index(
            "ix_predictions_due",
            postgresql_where=sa.text("tracking = 'active'"),
            sqlite_where=sa.text("tracking = 'active'"),
        )

    op.drop_table("predictions")
