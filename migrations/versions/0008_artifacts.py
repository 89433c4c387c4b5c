"""artifacts: output files archived before the upstream deletes them

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

With TRACKER_ARCHIVE_URL set, every http(s) URL in a succeeded prediction's
output becomes a row of `artifacts` (one per position in the output) in the
same transaction as the answer that revealed it; the daemon downloads it into
the archive and records its size, sha256 and content type. `claimed_by` and
`next_attempt_at` are the claim and lease, as for deliveries.

Only adds a table and its indexes; nothing existing is rewritten.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
BIGINT_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PENDING = "state = 'pending'"
FAILED = "state = 'failed'"


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("id", BIGINT_KEY, autoincrement=True, nullable=False),
        sa.Column("prediction_id", sa.String(length=128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=False),
        sa.Column("stored_url", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("content_type", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("stored_at", TIMESTAMP, nullable=True),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=True),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["predictions.id"],
            name=op.f("fk_artifacts_prediction_id_predictions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        sa.UniqueConstraint(
            "prediction_id", "position", name=op.f("uq_artifacts_prediction_id_position")
        ),
    )
    op.create_index(
        "ix_artifacts_due",
        "artifacts",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text(PENDING),
        sqlite_where=sa.text(PENDING),
    )
    # `tracker status` and /metrics count failed files without a table scan
    op.create_index(
        "ix_artifacts_failed",
        "artifacts",
        ["id"],
        unique=False,
        postgresql_where=sa.text(FAILED),
        sqlite_where=sa.text(FAILED),
    )


def downgrade() -> None:
    op.drop_index("ix_artifacts_failed", table_name="artifacts")
    op.drop_index("ix_artifacts_due", table_name="artifacts")
    op.drop_table("artifacts")
