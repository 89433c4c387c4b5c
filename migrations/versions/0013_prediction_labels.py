"""prediction labels: one row per text label of a prediction, kept by triggers

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

A report filtered by ``--label KEY=VALUE`` read every prediction and took each
row's ``labels`` JSON apart, once per statement of the report (four for ``models``):
3.1 s at 1M predictions on PostgreSQL, 13.1 s on SQLite. ``prediction_labels`` holds
each text label of each prediction as a row, indexed by (key, value), so such a
report reads only the predictions that carry the label.

Triggers on ``predictions`` keep it in the transaction that writes the row (``tracker
add`` and the labels it merges, pruning, and any user's SQL): an insert adds the row's
labels, an update of ``labels`` (or ``id``) replaces them, a delete removes them. Only
text values are rows (``tracker`` writes no other kind); a ``labels`` that is not a
JSON object has none; a key written twice (by hand) counts once, with its last value.
Upgrading fills the table from the rows already stored; on PostgreSQL the trigger
exists, holding its lock on ``predictions``, before the fill starts, so no write
slips between them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _labels_of(row: str, dialect: str) -> str:
    """The FROM item listing the text labels of ``row`` (``l.key``, ``l.value``)."""
    if dialect == "postgresql":
        labels = f"CASE WHEN jsonb_typeof({row}.labels) = 'object' THEN {row}.labels END"
        return f"jsonb_each({labels}) AS l"
    labels = (
        f"CASE WHEN json_valid({row}.labels) THEN"
        f" CASE WHEN json_type({row}.labels) = 'object' THEN {row}.labels END END"
    )
    return f"json_each({labels}) AS l"


def _select_labels(row: str, dialect: str, source: str = "") -> str:
    """SELECT of the (prediction_id, key, value) rows of ``row``'s text labels."""
    if dialect == "postgresql":
        value, text_only = "l.value #>> '{}'", "jsonb_typeof(l.value) = 'string'"
    else:
        value, text_only = "l.value", "l.type = 'text'"
    return (
        f"SELECT {row}.id, l.key, {value} FROM {source}{_labels_of(row, dialect)} WHERE {text_only}"
    )


_INSERT = "INSERT INTO prediction_labels (prediction_id, key, value) "
#: SQLite's json_each lists a key written twice twice: the last is kept, as jsonb does
_INSERT_SQLITE = "INSERT OR REPLACE INTO prediction_labels (prediction_id, key, value) "
_DELETE = "DELETE FROM prediction_labels WHERE prediction_id = OLD.id"


def _insert(dialect: str) -> str:
    return _INSERT if dialect == "postgresql" else _INSERT_SQLITE


def _sqlite_triggers() -> list[str]:
    fill = _INSERT_SQLITE + _select_labels("NEW", "sqlite")
    return [
        "CREATE TRIGGER tr_predictions_labels_insert AFTER INSERT ON predictions"
        f" WHEN NEW.labels IS NOT '{{}}' BEGIN {fill}; END",
        "CREATE TRIGGER tr_predictions_labels_update AFTER UPDATE OF labels, id ON predictions"
        " WHEN OLD.labels IS NOT NEW.labels OR OLD.id IS NOT NEW.id"
        f" BEGIN {_DELETE}; {fill}; END",
        f"CREATE TRIGGER tr_predictions_labels_delete AFTER DELETE ON predictions"
        f" BEGIN {_DELETE}; END",
    ]


def _postgresql_triggers() -> list[str]:
    function = f"""CREATE FUNCTION tracker_labels_trigger() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'INSERT' THEN
                {_DELETE};
            END IF;
            IF TG_OP <> 'DELETE' THEN
                {_INSERT}{_select_labels("NEW", "postgresql")};
            END IF;
            RETURN NULL;
        END $$"""
    run = "FOR EACH ROW EXECUTE FUNCTION tracker_labels_trigger()"
    return [
        function,
        "CREATE TRIGGER tr_predictions_labels_insert AFTER INSERT ON predictions"
        " FOR EACH ROW WHEN (NEW.labels <> '{}'::jsonb)"
        " EXECUTE FUNCTION tracker_labels_trigger()",
        "CREATE TRIGGER tr_predictions_labels_update AFTER UPDATE OF labels, id ON predictions"
        " FOR EACH ROW WHEN (OLD.labels IS DISTINCT FROM NEW.labels OR OLD.id <> NEW.id)"
        " EXECUTE FUNCTION tracker_labels_trigger()",
        f"CREATE TRIGGER tr_predictions_labels_delete AFTER DELETE ON predictions {run}",
    ]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "prediction_labels",
        sa.Column("prediction_id", sa.String(128), primary_key=True),
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index(
        "ix_prediction_labels_key_value", "prediction_labels", ["key", "value", "prediction_id"]
    )
    triggers = _postgresql_triggers() if dialect == "postgresql" else _sqlite_triggers()
    for statement in triggers:
        op.execute(statement)
    op.execute(_insert(dialect) + _select_labels("p", dialect, source="predictions AS p, "))


def downgrade() -> None:
    for name in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS tr_predictions_labels_{name}" + _on_table())
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS tracker_labels_trigger()")
    op.drop_index("ix_prediction_labels_key_value", table_name="prediction_labels")
    op.drop_table("prediction_labels")


def _on_table() -> str:
    return " ON predictions" if op.get_bind().dialect.name == "postgresql" else ""
