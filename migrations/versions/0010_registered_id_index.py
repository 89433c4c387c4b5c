"""registered index: predictions by (registered_at, id), the list's keyset order

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

The dashboard's predictions list (and `tracker list`) is ordered by
`(registered_at, id)` and paged by keyset on that pair. The rows one `tracker add`
call writes share one `registered_at`, so `ix_predictions_registered_at`, on the
time alone, made a page inside such a batch read the whole tie group and sort it by
`id` (342 ms for a batch of 100,000 at 1M rows on PostgreSQL). `ix_predictions_registered`
on `(registered_at, id)` replaces it: a page is an index range from the cursor
(`(registered_at, id) < (:t, :i)`), whatever the ties. Every query that read the
old index (reports' and `tracker list`'s registration-time bounds) reads this one
by its first column. Both engines build it by reading `predictions` once.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_predictions_registered", "predictions", ["registered_at", "id"], unique=False
    )
    op.drop_index("ix_predictions_registered_at", table_name="predictions")


def downgrade() -> None:
    op.create_index("ix_predictions_registered_at", "predictions", ["registered_at"], unique=False)
    op.drop_index("ix_predictions_registered", table_name="predictions")
