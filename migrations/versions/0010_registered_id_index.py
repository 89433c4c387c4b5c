"""list indexes: predictions in the list's keyset order, (registered_at, id)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

The dashboard's predictions list (and `tracker list`) is ordered by
`(registered_at, id)` and paged by keyset on that pair. The rows one `tracker add`
call writes share one `registered_at`, so `ix_predictions_registered_at`, on the
time alone, made a page inside such a batch read the whole tie group and sort it by
`id` (342 ms for a batch of 100,000 at 1M rows on PostgreSQL); and a filtered page
read down it skipping what did not match, the whole batch when it was at the top
(2 s for `status=failed`), or the whole table on the last page of a filter whose
rows are all recent (4 s for `tracking=active`). Each list filter an index serves
now has one in list order, so a page is an index range from its cursor
(`(registered_at, id) < (:t, :i)`) whatever the ties and however deep:

- `ix_predictions_registered` `(registered_at, id)` replaces
  `ix_predictions_registered_at` (registration-time bounds of reports and
  `tracker list` read it by its first column);
- `ix_predictions_status` and `ix_predictions_model` become `(status,
  registered_at, id)` and `(model, registered_at, id)` (what read them by status or
  model still does, by their first column): the same number of index entries per
  write, wider;
- `ix_predictions_active` `(registered_at, id)` of `active` rows is new: one more
  entry per write of an active row (none once it has ended).

Both engines build each by reading `predictions` once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = "tracking = 'active'"


def upgrade() -> None:
    op.create_index("ix_predictions_registered", "predictions", ["registered_at", "id"])
    op.drop_index("ix_predictions_registered_at", table_name="predictions")
    for column in ("status", "model"):
        op.drop_index(f"ix_predictions_{column}", table_name="predictions")
        op.create_index(f"ix_predictions_{column}", "predictions", [column, "registered_at", "id"])
    op.create_index(
        "ix_predictions_active",
        "predictions",
        ["registered_at", "id"],
        postgresql_where=sa.text(ACTIVE),
        sqlite_where=sa.text(ACTIVE),
    )


def downgrade() -> None:
    op.drop_index("ix_predictions_active", table_name="predictions")
    for column in ("status", "model"):
        op.drop_index(f"ix_predictions_{column}", table_name="predictions")
        op.create_index(f"ix_predictions_{column}", "predictions", [column])
    op.create_index("ix_predictions_registered_at", "predictions", ["registered_at"])
    op.drop_index("ix_predictions_registered", table_name="predictions")
