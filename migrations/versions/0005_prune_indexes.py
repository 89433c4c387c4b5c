"""prune indexes: finished predictions in the order they finished

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27

`tracker prune` walks the finished predictions older than a cutoff in batches,
by completed_at, or by last_polled_at where upstream never reported one. These
partial indexes hold only rows that are no longer polled, so the daemon's
updates of active rows never touch them, and they do not overlap, so neither
engine's planner mistakes one for the other.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMPLETED = "tracking <> 'active' AND completed_at IS NOT NULL"
NOT_COMPLETED = "tracking <> 'active' AND completed_at IS NULL"


def upgrade() -> None:
    op.create_index(
        "ix_predictions_finished_completed",
        "predictions",
        ["completed_at", "id"],
        unique=False,
        postgresql_where=sa.text(COMPLETED),
        sqlite_where=sa.text(COMPLETED),
    )
    op.create_index(
        "ix_predictions_finished_polled",
        "predictions",
        ["last_polled_at", "id"],
        unique=False,
        postgresql_where=sa.text(NOT_COMPLETED),
        sqlite_where=sa.text(NOT_COMPLETED),
    )


def downgrade() -> None:
    op.drop_index("ix_predictions_finished_polled", table_name="predictions")
    op.drop_index("ix_predictions_finished_completed", table_name="predictions")
