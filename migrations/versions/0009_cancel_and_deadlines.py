"""cancel and deadlines: predictions.deadline_at, cancel_requested_at and the outcome

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08

`tracker cancel ID` (and the service's cancel endpoint, and `Tracker.cancel`) asks
the upstream to cancel a prediction; `tracker add --deadline 30m` gives one a
deadline, past which the daemon cancels it once. `predictions` gains:

- `deadline_at`: when the daemon cancels it if it has not ended (from the
  upstream `created_at` when known, else from `registered_at`);
- `deadline_seconds`: the deadline as given, so it is counted again from
  `created_at` when that first becomes known;
- `cancel_requested_at`, `cancel_reason` (`user`, `deadline`), `cancel_outcome`
  (`sending`, `requested`, `failed`) and `cancel_detail` (the upstream's answer
  in words): the last cancel request and what became of it. Setting
  `cancel_requested_at` with a conditional UPDATE is how one daemon claims a
  deadline: no other daemon, and no restart, cancels it again.

Every column is nullable without a default: added in place on both engines, no
table rewrite. The partial index `ix_predictions_deadline` (active rows no cancel
was asked for yet, by `deadline_at`) is what the daemon's deadline sweep reads;
existing rows have no deadline, so it starts out covering nothing but still has
to read `predictions` once to be built.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
NOT_ACTED_ON = "tracking = 'active' AND cancel_requested_at IS NULL"
#: the new columns of `predictions`, each nullable without a default
COLUMNS: tuple[tuple[str, Any], ...] = (
    ("deadline_at", TIMESTAMP),
    ("cancel_requested_at", TIMESTAMP),
    ("cancel_reason", sa.String(length=16)),
    ("cancel_outcome", sa.String(length=16)),
    ("cancel_detail", sa.Text()),
    ("deadline_seconds", sa.Float()),
)


def upgrade() -> None:
    for name, type_ in COLUMNS:
        op.add_column("predictions", sa.Column(name, type_, nullable=True))
    op.create_index(
        "ix_predictions_deadline",
        "predictions",
        ["deadline_at"],
        unique=False,
        postgresql_where=sa.text(NOT_ACTED_ON),
        sqlite_where=sa.text(NOT_ACTED_ON),
    )


def downgrade() -> None:
    op.drop_index("ix_predictions_deadline", table_name="predictions")
    # Dropped in place on both engines (SQLite 3.35+), as 0007 does: a batch rebuild
    # of `predictions` on SQLite would trip over the views that read it.
    for name, _ in reversed(COLUMNS):
        op.execute(f"ALTER TABLE predictions DROP COLUMN {name}")
