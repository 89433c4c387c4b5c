"""upstream pushes: the upstream's own webhooks, each applied once

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

`tracker serve` receives the upstream's own webhooks (POST /webhooks/upstream).
Upstreams deliver them at least once, so every `webhook-id` received is kept in
`upstream_pushes` (with what became of it): a push delivered again is answered
without being applied a second time. `predictions.last_pushed_at` says when a
prediction was last pushed; the daemon then polls it only every --poll-max, as
a safety net.

Both changes only add: a nullable column (no table rewrite on either engine)
and a new table with its indexes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A nullable column without a default: added in place on both engines.
    op.add_column("predictions", sa.Column("last_pushed_at", TIMESTAMP, nullable=True))
    op.create_table(
        "upstream_pushes",
        sa.Column("webhook_id", sa.String(length=200), nullable=False),
        sa.Column("prediction_id", sa.String(length=128), nullable=False),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.Column("status", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["predictions.id"],
            name=op.f("fk_upstream_pushes_prediction_id_predictions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("webhook_id", name=op.f("pk_upstream_pushes")),
    )
    op.create_index(
        "ix_upstream_pushes_prediction", "upstream_pushes", ["prediction_id"], unique=False
    )
    op.create_index(
        "ix_upstream_pushes_received_at", "upstream_pushes", ["received_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_upstream_pushes_received_at", table_name="upstream_pushes")
    op.drop_index("ix_upstream_pushes_prediction", table_name="upstream_pushes")
    op.drop_table("upstream_pushes")
    # Dropped in place on both engines (SQLite 3.35+): a batch rebuild of
    # `predictions` on SQLite would trip over the views that read it.
    op.execute("ALTER TABLE predictions DROP COLUMN last_pushed_at")
