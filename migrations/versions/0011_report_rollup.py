"""report rollup: prediction_rollup and prediction_rollup_buckets, kept by triggers

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

`tracker report status|models|daily` and the dashboard's overview grouped every
prediction at each read (16-18 s at 1M rows on SQLite, 4.8-5.6 s on PostgreSQL).
They now read aggregates of the predictions no longer active (tracking other than
'active': the rows that rarely change), and count the active rows themselves:

- ``prediction_rollup``: per model, status, tracking, registration hour and
  completion hour, how many, and the count and sum of predict_time, queue_seconds
  and run_seconds (the values of the ``prediction_timings`` view).
- ``prediction_rollup_buckets``: per metric, model, status and UTC day of
  registration, how many values fall in each bucket (the value to two significant
  digits, so within 5 %): the percentiles. The same by hour of registration (metrics
  11-13), read only for the partial days at the edges of --since/--until (by hour
  there are about as many rows as predictions: 967,118 at 1M, by day 100,000), and
  the run time by hour of completion (metric 4, the dashboard's chart).

Triggers on ``predictions`` keep both in the transaction that writes a row:
the terminal transition (the daemon's batch), ``tracker forget``, ``tracker add``
tracking a forgotten prediction again, pruning, and any user's SQL. On PostgreSQL
the trigger first takes a transaction-level advisory lock (ROLLUP_LOCK), so
transactions that settle rows of the same keys in different orders (two daemons)
wait for each other instead of deadlocking on the rollup's rows. Upgrading fills
both tables from the rows already stored.

Both tables are clustered by their key: WITHOUT ROWID on SQLite, and on PostgreSQL
the backfilled buckets are put in key order once (CLUSTER). Two indexes serve the
other reports: ``ix_predictions_id_model`` (``tracker report
archive`` finds each file's model in the index, not in the wide prediction row) and
``ix_predictions_deadlines``, partial, on the predictions with a deadline (``tracker
report deadlines`` read every row).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: completed_hour of a row without completed_at
NO_HOUR = -(2**62)
#: pg_advisory_xact_lock key of the rollup's writers
ROLLUP_LOCK = 18_001_011
#: predict_time beyond this (either sign) is counted as this (hostile upstream values)
CLAMP = "1e15"
#: values are nudged up before rounding, so a value half-way between two buckets (2.25)
#: goes up on both engines (PostgreSQL's to_char rounds such ties to even, SQLite's up)
_NUDGE = "1.0000000001"
#: the columns whose change moves a row in the rollup
WATCHED = (
    "status",
    "tracking",
    "model",
    "registered_at",
    "created_at",
    "started_at",
    "completed_at",
    "predict_time",
)
COUNTS = (
    "predictions",
    "predict_time_n",
    "predict_time_sum",
    "queue_seconds_n",
    "queue_seconds_sum",
    "run_seconds_n",
    "run_seconds_sum",
)
#: the predictions `tracker report deadlines` reads (ix_predictions_deadlines)
DEADLINES = "deadline_at IS NOT NULL OR cancel_reason = 'deadline'"
ROLLUP_KEY = "model, status, tracking, registered_hour, completed_hour"
#: every metric of the buckets (listed so deletes seek the primary key, metric first)
METRIC_CODES = "(1, 2, 3, 4, 11, 12, 13)"
BUCKETS_KEY = "metric, model, status, period, bucket"
#: the buckets' primary key: a metric's periods are one range (a day's, an hour's)
BUCKETS_PK = "metric, period, model, status, bucket"


# -- expressions over one row (``r`` is NEW, OLD or a table alias) -------------------


def _hour(ts: str, dialect: str, seconds: int = 3600) -> str:
    """The UTC hour (or day, ``seconds`` 86400) since 1970 of a timestamp."""
    if dialect == "postgresql":
        return f"floor(extract(epoch from {ts}) / {seconds})::bigint"
    return f"(CAST(strftime('%s', {ts}) AS INTEGER) / {seconds})"


def _seconds(later: str, earlier: str, dialect: str) -> str:
    """As the prediction_timings view (migration 0004): exact, rounded to ms."""
    if dialect == "postgresql":
        return f"round(extract(epoch from ({later} - {earlier}))::numeric, 3)::double precision"
    whole = f"(strftime('%s', {later}) - strftime('%s', {earlier}))"
    micros = (
        f"(CAST(substr({later}, 21, 6) AS INTEGER) - CAST(substr({earlier}, 21, 6) AS INTEGER))"
    )
    return f"round({whole} + {micros} / 1000000.0, 3)"


def _clamped(value: str) -> str:
    return (
        f"CASE WHEN {value} > {CLAMP} THEN {CLAMP} WHEN {value} < -{CLAMP} THEN -{CLAMP}"
        f" ELSE {value} END"
    )


def _bucket(value: str, dialect: str) -> str:
    """The value to two significant digits (its bucket), clamped."""
    if dialect == "postgresql":
        digits = f"to_char({value} * {_NUDGE}, '9.9EEEE')::double precision"
    else:
        digits = f"CAST(printf('%.1e', {value} * {_NUDGE}) AS REAL)"
    return (
        f"CASE WHEN {value} > {CLAMP} THEN {CLAMP} WHEN {value} < -{CLAMP} THEN -{CLAMP}"
        f" ELSE {digits} END"
    )


def _values(r: str, dialect: str) -> dict[str, str]:
    return {
        "model": f"coalesce({r}.model, '')",
        "status": f"coalesce({r}.status, '')",
        "rh": _hour(f"{r}.registered_at", dialect),
        "ch": _hour(f"{r}.completed_at", dialect),
        "rd": _hour(f"{r}.registered_at", dialect, 86400),
        "pt": _clamped(f"{r}.predict_time"),
        "q": _seconds(f"{r}.started_at", f"{r}.created_at", dialect),
        "rs": _seconds(f"{r}.completed_at", f"{r}.started_at", dialect),
    }


# -- SQLite: the trigger bodies --------------------------------------------------------


def _sqlite_apply(r: str, sign: int) -> str:
    """The statements adding (``sign`` 1) or removing (-1) row ``r`` if it is settled."""
    v = _values(r, "sqlite")
    counts = (
        f"{sign}, {sign} * (v.pt IS NOT NULL), {sign} * coalesce(v.pt, 0),"
        f" {sign} * (v.q IS NOT NULL), {sign} * coalesce(v.q, 0),"
        f" {sign} * (v.rs IS NOT NULL), {sign} * coalesce(v.rs, 0)"
    )
    add = ", ".join(f"{c} = {c} + excluded.{c}" for c in COUNTS)
    ch = f"coalesce({v['ch']}, {NO_HOUR})"
    statements = [
        f"""INSERT INTO prediction_rollup ({ROLLUP_KEY}, {", ".join(COUNTS)})
    SELECT {v["model"]}, {v["status"]}, {r}.tracking, {v["rh"]}, {ch}, {counts}
    FROM (SELECT {v["pt"]} AS pt, {v["q"]} AS q, {v["rs"]} AS rs) AS v
    WHERE {r}.tracking <> 'active'
    ON CONFLICT ({ROLLUP_KEY}) DO UPDATE SET {add};""",
        f"""INSERT INTO prediction_rollup_buckets ({BUCKETS_KEY}, n)
    SELECT m.metric, {v["model"]}, {v["status"]}, m.period, {_bucket("m.v", "sqlite")}, {sign}
    FROM (SELECT 1 AS metric, {v["rd"]} AS period, {v["pt"]} AS v
          UNION ALL SELECT 2, {v["rd"]}, {v["q"]}
          UNION ALL SELECT 3, {v["rd"]}, {v["rs"]}
          UNION ALL SELECT 4, {v["ch"]}, {v["rs"]}
          UNION ALL SELECT 11, {v["rh"]}, {v["pt"]}
          UNION ALL SELECT 12, {v["rh"]}, {v["q"]}
          UNION ALL SELECT 13, {v["rh"]}, {v["rs"]}) AS m
    WHERE {r}.tracking <> 'active' AND m.v IS NOT NULL AND m.period IS NOT NULL
    ON CONFLICT ({BUCKETS_PK}) DO UPDATE SET n = n + excluded.n;""",
    ]
    if sign < 0:
        statements += [
            f"""DELETE FROM prediction_rollup WHERE predictions = 0
    AND model = {v["model"]} AND status = {v["status"]} AND tracking = {r}.tracking
    AND registered_hour = {v["rh"]} AND completed_hour = {ch};""",
            f"""DELETE FROM prediction_rollup_buckets WHERE n = 0 AND metric IN {METRIC_CODES}
    AND model = {v["model"]} AND status = {v["status"]}
    AND period IN ({v["rd"]}, {v["rh"]}, {ch});""",
        ]
    return "\n".join(statements)


def _changed(dialect: str) -> str:
    differs = "IS DISTINCT FROM" if dialect == "postgresql" else "IS NOT"
    changed = " OR ".join(f"OLD.{c} {differs} NEW.{c}" for c in WATCHED)
    return f"(OLD.tracking <> 'active' OR NEW.tracking <> 'active') AND ({changed})"


def _sqlite_triggers() -> list[str]:
    watched = ", ".join(WATCHED)
    return [
        f"""CREATE TRIGGER tr_predictions_rollup_insert AFTER INSERT ON predictions
FOR EACH ROW WHEN NEW.tracking <> 'active' BEGIN
{_sqlite_apply("NEW", 1)}
END""",
        f"""CREATE TRIGGER tr_predictions_rollup_update AFTER UPDATE OF {watched} ON predictions
FOR EACH ROW WHEN {_changed("sqlite")} BEGIN
{_sqlite_apply("OLD", -1)}
{_sqlite_apply("NEW", 1)}
END""",
        f"""CREATE TRIGGER tr_predictions_rollup_delete AFTER DELETE ON predictions
FOR EACH ROW WHEN OLD.tracking <> 'active' BEGIN
{_sqlite_apply("OLD", -1)}
END""",
    ]


# -- PostgreSQL: one function, three triggers -------------------------------------------


def _pg_functions() -> list[str]:
    v = _values("r", "postgresql")
    add_counts = ", ".join(f"{c} = prediction_rollup.{c} + excluded.{c}" for c in COUNTS)
    apply = f"""CREATE FUNCTION tracker_rollup_apply(r predictions, s integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m text := {v["model"]};
    st text := {v["status"]};
    rh bigint := {v["rh"]};
    ch bigint := {v["ch"]};
    rd bigint := {v["rd"]};
    pt double precision := {v["pt"]};
    q double precision := {v["q"]};
    rs double precision := {v["rs"]};
BEGIN
    IF r.tracking = 'active' THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock({ROLLUP_LOCK});
    INSERT INTO prediction_rollup ({ROLLUP_KEY}, {", ".join(COUNTS)})
    VALUES (m, st, r.tracking, rh, coalesce(ch, {NO_HOUR}), s,
            s * (pt IS NOT NULL)::int, s * coalesce(pt, 0),
            s * (q IS NOT NULL)::int, s * coalesce(q, 0),
            s * (rs IS NOT NULL)::int, s * coalesce(rs, 0))
    ON CONFLICT ({ROLLUP_KEY}) DO UPDATE SET {add_counts};
    INSERT INTO prediction_rollup_buckets ({BUCKETS_KEY}, n)
    SELECT x.metric, m, st, x.period, {_bucket("x.value", "postgresql")}, s
    FROM (VALUES (1, rd, pt), (2, rd, q), (3, rd, rs), (4, ch, rs),
                 (11, rh, pt), (12, rh, q), (13, rh, rs)) AS x(metric, period, value)
    WHERE x.value IS NOT NULL AND x.period IS NOT NULL
    ON CONFLICT ({BUCKETS_PK}) DO UPDATE SET n = prediction_rollup_buckets.n + excluded.n;
    IF s < 0 THEN
        DELETE FROM prediction_rollup AS p WHERE p.predictions = 0
            AND p.model = m AND p.status = st AND p.tracking = r.tracking
            AND p.registered_hour = rh AND p.completed_hour = coalesce(ch, {NO_HOUR});
        DELETE FROM prediction_rollup_buckets AS b WHERE b.n = 0 AND b.metric IN {METRIC_CODES}
            AND b.model = m AND b.status = st AND b.period IN (rd, rh, coalesce(ch, {NO_HOUR}));
    END IF;
END
$$"""
    trigger = """CREATE FUNCTION tracker_rollup_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM tracker_rollup_apply(OLD, -1);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        PERFORM tracker_rollup_apply(NEW, 1);
    END IF;
    RETURN NULL;
END
$$"""
    return [apply, trigger]


def _pg_triggers() -> list[str]:
    run = "EXECUTE FUNCTION tracker_rollup_trigger()"
    return [
        "CREATE TRIGGER tr_predictions_rollup_insert AFTER INSERT ON predictions"
        " REFERENCING NEW TABLE AS changed FOR EACH STATEMENT"
        " EXECUTE FUNCTION tracker_rollup_insert()",
        f"CREATE TRIGGER tr_predictions_rollup_update AFTER UPDATE OF {', '.join(WATCHED)}"
        f" ON predictions FOR EACH ROW WHEN ({_changed('postgresql')}) {run}",
        "CREATE TRIGGER tr_predictions_rollup_delete AFTER DELETE ON predictions"
        " REFERENCING OLD TABLE AS changed FOR EACH STATEMENT"
        " EXECUTE FUNCTION tracker_rollup_delete()",
    ]


# -- backfill ------------------------------------------------------------------------------


def _backfill(dialect: str, source: str = "predictions", sign: int = 1) -> list[str]:
    upsert = source != "predictions"  # the upgrade's backfill writes empty tables
    """The rollup of the settled rows of ``source`` (the table, or a trigger's
    transition table), added (``sign`` 1) or taken away (-1)."""
    v = _values("p", dialect)
    rows = f"""SELECT {v["model"]} AS model, {v["status"]} AS status, p.tracking AS tracking,
        {v["rh"]} AS rh, {v["ch"]} AS ch, {v["rd"]} AS rd,
        {v["pt"]} AS pt, {v["q"]} AS q, {v["rs"]} AS rs
    FROM {source} p WHERE p.tracking <> 'active'"""
    add = ", ".join(f"{c} = prediction_rollup.{c} + excluded.{c}" for c in COUNTS)
    counts = f"""INSERT INTO prediction_rollup ({ROLLUP_KEY}, {", ".join(COUNTS)})
SELECT model, status, tracking, rh, coalesce(ch, {NO_HOUR}), {sign} * count(*),
       {sign} * count(pt), {sign} * coalesce(sum(pt), 0), {sign} * count(q),
       {sign} * coalesce(sum(q), 0), {sign} * count(rs), {sign} * coalesce(sum(rs), 0)
FROM ({rows}) AS v
GROUP BY model, status, tracking, rh, coalesce(ch, {NO_HOUR})"""
    if upsert:
        counts += f" ON CONFLICT ({ROLLUP_KEY}) DO UPDATE SET {add}"
    buckets = f"""INSERT INTO prediction_rollup_buckets ({BUCKETS_KEY}, n)
SELECT metric, model, status, period, bucket, {sign} * count(*)
FROM (
    SELECT metric, model, status, period, {_bucket("value", dialect)} AS bucket
    FROM (
        SELECT model, status, rd AS period, 1 AS metric, pt AS value FROM v
        UNION ALL SELECT model, status, rd, 2, q FROM v
        UNION ALL SELECT model, status, rd, 3, rs FROM v
        UNION ALL SELECT model, status, ch, 4, rs FROM v
        UNION ALL SELECT model, status, rh, 11, pt FROM v
        UNION ALL SELECT model, status, rh, 12, q FROM v
        UNION ALL SELECT model, status, rh, 13, rs FROM v
    ) AS x
    WHERE value IS NOT NULL AND period IS NOT NULL
) AS b
GROUP BY metric, model, status, period, bucket"""
    if upsert:
        more = "n = prediction_rollup_buckets.n + excluded.n"
        buckets += f" ON CONFLICT ({BUCKETS_PK}) DO UPDATE SET {more}"
    return [counts, f"WITH v AS ({rows}) {buckets}"]


def _pg_statement_functions() -> list[str]:
    """INSERT and DELETE on PostgreSQL: one aggregated upsert per statement, from its
    transition table (a bulk write of settled rows pays per statement, not per row)."""
    found = []
    for name, sign in (("insert", 1), ("delete", -1)):
        upserts = ";\n    ".join(_backfill("postgresql", "changed", sign))
        cleanup = ""
        if sign < 0:
            cleanup = """
    DELETE FROM prediction_rollup WHERE predictions = 0;
    DELETE FROM prediction_rollup_buckets WHERE n = 0;"""
        found.append(f"""CREATE FUNCTION tracker_rollup_{name}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM changed WHERE tracking <> 'active') THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock({ROLLUP_LOCK});
    {upserts};{cleanup}
    RETURN NULL;
END
$$""")
    return found


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "prediction_rollup",
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=64), nullable=False),
        sa.Column("tracking", sa.String(length=16), nullable=False),
        sa.Column("registered_hour", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("completed_hour", sa.BigInteger(), autoincrement=False, nullable=False),
        *(
            sa.Column(c, sa.Float() if c.endswith("_sum") else sa.BigInteger(), nullable=False)
            for c in COUNTS
        ),
        sa.PrimaryKeyConstraint(
            "model",
            "status",
            "tracking",
            "registered_hour",
            "completed_hour",
            name=op.f("pk_prediction_rollup"),
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "prediction_rollup_buckets",
        sa.Column("metric", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("period", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=64), nullable=False),
        sa.Column("bucket", sa.Float(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "metric",
            "period",
            "model",
            "status",
            "bucket",
            name=op.f("pk_prediction_rollup_buckets"),
        ),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_predictions_id_model", "predictions", ["id", "model"], unique=False)
    op.create_index(
        "ix_predictions_deadlines",
        "predictions",
        ["model"],
        unique=False,
        postgresql_where=sa.text(DEADLINES),
        sqlite_where=sa.text(DEADLINES),
    )
    if dialect == "postgresql":  # no write may slip between the backfill and the triggers
        op.execute("LOCK TABLE predictions IN SHARE ROW EXCLUSIVE MODE")
    for statement in _backfill(dialect):
        op.execute(statement)
    if dialect == "postgresql":
        # The backfill wrote the buckets in hash order: put them in key order, so a
        # metric's days (or the dashboard's hours) are neighbouring pages, not one page
        # each (the run time chart read 14,533 pages for 20,000 buckets at 1M rows).
        op.execute("CLUSTER prediction_rollup_buckets USING pk_prediction_rollup_buckets")
        op.execute("ANALYZE prediction_rollup, prediction_rollup_buckets")
    if dialect == "postgresql":
        for statement in (*_pg_functions(), *_pg_statement_functions(), *_pg_triggers()):
            op.execute(statement)
    else:
        for statement in _sqlite_triggers():
            op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in ("insert", "update", "delete"):
        on = " ON predictions" if postgresql else ""
        op.execute(f"DROP TRIGGER IF EXISTS tr_predictions_rollup_{name}{on}")
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS tracker_rollup_trigger()")
        op.execute("DROP FUNCTION IF EXISTS tracker_rollup_insert()")
        op.execute("DROP FUNCTION IF EXISTS tracker_rollup_delete()")
        op.execute("DROP FUNCTION IF EXISTS tracker_rollup_apply(predictions, integer)")
    op.drop_index("ix_predictions_deadlines", table_name="predictions")
    op.drop_index("ix_predictions_id_model", table_name="predictions")
    op.drop_table("prediction_rollup_buckets")
    op.drop_table("prediction_rollup")
