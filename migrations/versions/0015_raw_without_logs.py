"""raw without its logs: the last answer no longer stores its logs text a second time

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08

A finished prediction stored its log text three times: in ``logs``, inside ``raw``
(the last answer as received) and in its ``prediction_logs`` pieces. An answer's
``logs`` are nearly always the text the ``logs`` column holds once it is written, so
``raw`` now keeps ``null`` in their place and the new column ``raw_logs_moved`` says
so; the code puts the text back wherever it reads ``raw`` (tracker/store/answers.py),
and so does the view ``prediction_answers`` for SQL. The key stays where it was, so
the object reads back in its own key order.

Rows written before stay whole (``raw_logs_moved`` false) until their prediction's
next answer: rewriting every row would hold the table for the length of the upgrade,
and neither engine would give the space back without a VACUUM (``tracker prune``
clears ``raw`` of old finished predictions in any case).

The downgrade puts the logs back into ``raw`` where they were moved, then drops the
view and the column.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: ``raw`` with its logs put back, per engine
RESTORED = {
    "sqlite": "CASE WHEN raw_logs_moved THEN json_set(raw, '$.logs', logs) ELSE raw END",
    "postgresql": (
        "CASE WHEN raw_logs_moved THEN jsonb_set(raw, '{logs}', to_jsonb(logs)) ELSE raw END"
    ),
}


def upgrade() -> None:
    op.add_column(
        "predictions",
        sa.Column("raw_logs_moved", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    restored = RESTORED[op.get_bind().dialect.name]
    op.execute(f"CREATE VIEW prediction_answers AS SELECT id, {restored} AS raw FROM predictions")


def downgrade() -> None:
    restored = RESTORED[op.get_bind().dialect.name]
    op.execute("DROP VIEW prediction_answers")
    op.execute(f"UPDATE predictions SET raw = {restored} WHERE raw_logs_moved")
    op.execute("ALTER TABLE predictions DROP COLUMN raw_logs_moved")
