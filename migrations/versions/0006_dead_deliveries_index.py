"""dead deliveries index: `tracker status` counts them without a table scan

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

`tracker status` (and the daemon's health check) reports how many deliveries
are dead. Delivered rows pile up for as long as they are kept, so counting
dead ones by scanning `deliveries` grows with the table's history. This partial
index holds only dead rows: few, and never touched by the hot path.

Building it reads the whole `deliveries` table, and on PostgreSQL a plain
CREATE INDEX blocks writes to that table meanwhile: run `tracker db upgrade`
with the daemons stopped (as for every migration).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEAD = "state = 'dead'"


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_dead",
        "deliveries",
        ["id"],
        unique=False,
        postgresql_where=sa.text(DEAD),
        sqlite_where=sa.text(DEAD),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_dead", table_name="deliveries")
