"""Migrations from empty on both engines, and the result matches the declared schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from tracker.exceptions import SchemaMissing
from tracker.store import migrate
from tracker.store.dashboard import DashboardQueries, PredictionFilter
from tracker.store.pushes import PushReceipt
from tracker.store.store import SCHEMA_HEAD, Store
from tracker.store.tables import deliveries, metadata


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return request.getfixturevalue("empty_pg_url")


def test_code_expects_the_newest_migration() -> None:
    assert migrate.head_revision() == SCHEMA_HEAD


def test_upgrade_from_empty_matches_declared_schema(empty_url: str) -> None:
    store = Store.from_url(empty_url)
    try:
        assert store.schema_revision() is None
        with pytest.raises(SchemaMissing, match="tracker db upgrade"):
            store.check_schema()
        migrate.upgrade(store)
        store.check_schema()
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
            tables = set(inspect(conn).get_table_names())
        assert {
            "predictions",
            "status_transitions",
            "prediction_logs",
            "callbacks",
            "deliveries",
        } <= tables
        migrate.upgrade(store)  # a second run is a no-op
        assert store.schema_revision() == SCHEMA_HEAD
    finally:
        store.close()


def test_step_by_step_upgrade_reaches_head(empty_url: str) -> None:
    """Each revision upgrades cleanly from the one before it."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    store = Store.from_url(empty_url)
    try:
        for revision in revisions:
            migrate.upgrade(store, revision)
            assert store.schema_revision() == revision
    finally:
        store.close()


def test_commands_on_unmigrated_database_say_what_to_do(empty_url: str) -> None:
    store = Store.from_url(empty_url)
    try:
        with pytest.raises(SchemaMissing, match="tracker db upgrade"):
            store.list_predictions()
    finally:
        store.close()


def test_0006_indexes_dead_deliveries_already_stored(empty_url: str) -> None:
    """Upgrading a database at 0005 that holds deliveries keeps them and indexes the
    dead ones; `tracker status` counts from that index; a downgrade drops it again."""
    store = Store.from_url(empty_url)
    try:
        migrate.upgrade(store, "0005")
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "insert into predictions (id, tracking, labels, registered_at)"
                    " values ('p', 'done', '{}', '2026-01-01 00:00:00')"
                )
            )
            conn.execute(
                text(
                    "insert into callbacks (prediction_id, kind, target, events, created_at)"
                    " values ('p', 'webhook', 'http://h/', 'completed', '2026-01-01 00:00:00')"
                )
            )
            for n, state in enumerate(["dead", "delivered", "dead", "pending"]):
                conn.execute(
                    text(
                        "insert into deliveries (callback_id, prediction_id, event, state,"
                        " attempts, created_at, payload, message_id)"
                        " select id, 'p', 'completed', :state, 1, '2026-01-01 00:00:00',"
                        " '{}', :msg from callbacks"
                    ),
                    {"state": state, "msg": f"msg_{n}"},
                )
        migrate.upgrade(store, "0006")
        assert "ix_deliveries_dead" in index_names(store, "deliveries")
        migrate.upgrade(store)  # the code reads the head schema
        health = store.health(now=datetime.now(UTC), live_within=timedelta(seconds=30))
        assert (health.dead_deliveries, health.pending_deliveries) == (2, 1)
        migrate.downgrade(store, "0005")
        assert "ix_deliveries_dead" not in index_names(store, "deliveries")
        with store.engine.connect() as conn:
            assert conn.execute(text("select count(*) from deliveries")).scalar() == 4
    finally:
        store.close()


def index_names(store: Store, table: str) -> set[str]:
    with store.engine.connect() as conn:
        return {index["name"] for index in inspect(conn).get_indexes(table)}


def test_0007_adds_pushes_to_a_database_holding_predictions(empty_url: str) -> None:
    """Upgrading a database at 0006 that holds predictions, transitions, logs and
    callbacks keeps every row, adds `predictions.last_pushed_at` (NULL: never pushed)
    and the empty `upstream_pushes` table, whose rows go with their prediction; the
    store then reads and writes pushes; a downgrade to 0006 keeps the data and the
    indexes of `predictions`."""
    store = Store.from_url(empty_url)
    try:
        migrate.upgrade(store, "0006")
        indexes_before = index_names(store, "predictions")
        with store.engine.begin() as conn:
            for pid, tracking in (("p", "active"), ("q", "done")):
                conn.execute(
                    text(
                        "insert into predictions (id, tracking, status, logs, log_seq, labels,"
                        " registered_at) values (:id, :tracking, 'processing', 'a\n', 1, '{}',"
                        " '2026-01-01 00:00:00')"
                    ),
                    {"id": pid, "tracking": tracking},
                )
            conn.execute(
                text(
                    "insert into prediction_logs (prediction_id, seq, observed_at, text, restarted)"
                    " values ('p', 1, '2026-01-01 00:00:00', 'a\n', false)"
                )
            )
            conn.execute(
                text(
                    "insert into callbacks (prediction_id, kind, target, events, created_at)"
                    " values ('p', 'webhook', 'http://h/', 'completed', '2026-01-01 00:00:00')"
                )
            )
        migrate.upgrade(store, "0007")
        assert store.schema_revision() == "0007"
        with store.engine.connect() as conn:
            rows = conn.execute(
                text("select id, tracking, logs, last_pushed_at from predictions order by id")
            ).all()
            assert [tuple(r) for r in rows] == [
                ("p", "active", "a\n", None),
                ("q", "done", "a\n", None),
            ]
            assert conn.execute(text("select count(*) from upstream_pushes")).scalar() == 0
            assert conn.execute(text("select count(*) from prediction_logs")).scalar() == 1
        assert {"ix_upstream_pushes_prediction", "ix_upstream_pushes_received_at"} <= index_names(
            store, "upstream_pushes"
        )
        at = datetime(2026, 1, 2, tzinfo=UTC)
        assert store.record_push(PushReceipt("msg_1", "p", at, "processing", "applied"))
        assert not store.record_push(PushReceipt("msg_1", "p", at, "processing", "applied"))
        lookup = store.push_lookup("p", "msg_1")
        assert lookup.seen == "applied"
        assert lookup.state is not None and lookup.state.logs == "a\n"
        assert lookup.state.last_pushed_at is None
        with store.engine.begin() as conn:
            conn.execute(text("delete from predictions where id = 'p'"))
        assert store.push_receipts() == []  # cascaded with its prediction
        migrate.downgrade(store, "0006")
        assert "upstream_pushes" not in set(inspect(store.engine).get_table_names())
        assert index_names(store, "predictions") == indexes_before
        with store.engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("predictions")}
            assert "last_pushed_at" not in columns
            assert conn.execute(text("select id, logs from predictions")).all() == [("q", "a\n")]
    finally:
        store.close()


def test_0008_adds_artifacts_to_a_database_holding_predictions(empty_url: str) -> None:
    """Upgrading a database at 0007 that holds predictions keeps them and adds the
    empty `artifacts` table (its due index, one row per prediction and position,
    rows going with their prediction); a downgrade to 0007 drops only it."""
    store = Store.from_url(empty_url)
    try:
        migrate.upgrade(store, "0007")
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "insert into predictions (id, tracking, status, logs, log_seq, labels,"
                    " registered_at, output) values ('p', 'done', 'succeeded', '', 0, '{}',"
                    " '2026-01-01 00:00:00', '\"https://f.example/x.png\"')"
                )
            )
        migrate.upgrade(store, "0008")
        assert store.schema_revision() == "0008"
        assert {"ix_artifacts_due", "ix_artifacts_failed"} <= index_names(store, "artifacts")
        assert [pid for pid, _ in store.succeeded_outputs(None)] == ["p"]
        at = datetime(2026, 1, 2, tzinfo=UTC)
        assert store.add_artifacts([("p", [(0, "https://f.example/x.png")], at)]) == 1
        assert store.add_artifacts([("p", [(0, "https://f.example/x.png")], at)]) == 0
        (job,) = store.claim_artifacts(
            now=at, limit=5, owner="me", lease_until=at + timedelta(seconds=60)
        )
        assert (job.prediction_id, job.position, job.attempts) == ("p", 0, 0)
        migrate.downgrade(store, "0007")
        assert "artifacts" not in set(inspect(store.engine).get_table_names())
        with store.engine.connect() as conn:
            assert conn.execute(text("select id from predictions")).scalars().all() == ["p"]
        migrate.upgrade(store)
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "insert into artifacts (prediction_id, position, source_url, created_at)"
                    " values ('p', 0, 'https://f.example/x.png', '2026-01-01 00:00:00')"
                )
            )
            conn.execute(text("delete from predictions where id = 'p'"))
            assert conn.execute(text("select count(*) from artifacts")).scalar() == 0
    finally:
        store.close()


def test_0009_adds_deadlines_and_cancels_to_a_database_holding_predictions(
    empty_url: str,
) -> None:
    """Upgrading a database at 0008 that holds predictions keeps every row, adds the
    cancel and deadline columns (NULL: no deadline, never cancelled) and the partial
    index the deadline sweep reads; the store then sets, claims and records them; a
    downgrade to 0008 (through every later revision) drops only those and keeps the
    rows."""
    store = Store.from_url(empty_url)
    try:
        migrate.upgrade(store, "0008")
        indexes_before = index_names(store, "predictions")
        with store.engine.begin() as conn:
            for pid, tracking, status in (("p", "active", "processing"), ("q", "done", "failed")):
                conn.execute(
                    text(
                        "insert into predictions (id, tracking, status, logs, log_seq, labels,"
                        " registered_at) values (:id, :tracking, :status, '', 0, '{}',"
                        " '2026-01-01 00:00:00')"
                    ),
                    {"id": pid, "tracking": tracking, "status": status},
                )
        migrate.upgrade(store, "0009")
        assert store.schema_revision() == "0009"
        assert "ix_predictions_deadline" in index_names(store, "predictions")
        with store.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "select id, status, deadline_at, cancel_requested_at, cancel_reason,"
                    " cancel_outcome, cancel_detail, deadline_seconds from predictions order by id"
                )
            ).all()
        assert [tuple(r) for r in rows] == [
            ("p", "processing", None, None, None, None, None, None),
            ("q", "failed", None, None, None, None, None, None),
        ]
        migrate.upgrade(store)  # the store's code reads the newest schema
        at = datetime(2026, 1, 2, tzinfo=UTC)
        store.add_predictions(
            ["p", "q"], now=at, first_poll_at=at, deadline=60.0, deadline_for_known=True
        )
        detail = store.get_detail("p")
        assert detail is not None  # counted from registered_at: created_at is not known
        assert detail.prediction.deadline_at == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
        claim = store.claim_deadlines(now=at, limit=10)
        assert [t.prediction_id for t in claim.targets] == ["p"]  # q is done
        assert store.claim_deadlines(now=at, limit=10).targets == []  # once
        assert store.request_cancel("q", now=at).status == "failed"
        migrate.downgrade(store, "0008")
        assert index_names(store, "predictions") == indexes_before
        with store.engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("predictions")}
            assert not columns & {"deadline_at", "cancel_requested_at", "deadline_seconds"}
            assert conn.execute(text("select id from predictions order by id")).scalars().all() == [
                "p",
                "q",
            ]
        migrate.upgrade(store)
        assert store.schema_revision() == SCHEMA_HEAD
    finally:
        store.close()


def test_0010_indexes_predictions_by_registration_and_id(empty_url: str) -> None:
    """Upgrading a database at 0009 that holds predictions keeps every row and puts the
    list's indexes in its keyset order: `ix_predictions_registered` on `(registered_at,
    id)` replaces `ix_predictions_registered_at`, the status and model indexes gain
    `(registered_at, id)`, and `ix_predictions_active` holds the active rows in that
    order; the dashboard's list then pages through one batch's ties; a downgrade to
    0009 puts the old indexes back and keeps the rows."""
    store = Store.from_url(empty_url)
    try:
        migrate.upgrade(store, "0009")
        before = index_columns(store)
        assert before["ix_predictions_registered_at"] == ["registered_at"]
        with store.engine.begin() as conn:
            for n in range(5):  # one batch: the same registration time
                conn.execute(
                    text(
                        "insert into predictions (id, tracking, logs, log_seq, labels,"
                        " registered_at) values (:id, 'active', '', 0, '{}',"
                        " '2026-01-01 00:00:00.000000')"  # as the store writes it on SQLite
                    ),
                    {"id": f"p{n}"},
                )
        migrate.upgrade(store, "0010")
        assert store.schema_revision() == "0010"
        after = index_columns(store)
        order = ["registered_at", "id"]
        assert {name: after[name] for name in set(after) - set(before)} == {
            "ix_predictions_registered": order,
            "ix_predictions_active": order,
        }
        assert set(before) - set(after) == {"ix_predictions_registered_at"}
        assert after["ix_predictions_status"] == ["status", *order]
        assert after["ix_predictions_model"] == ["model", *order]
        migrate.upgrade(store)  # the code reads the head schema
        queries = DashboardQueries(store.engine)
        first = queries.page(PredictionFilter(), size=2)
        assert [r["id"] for r in first.rows] == ["p4", "p3"]
        assert first.older is not None
        second = queries.page(PredictionFilter(), size=2, after=first.older)
        assert [r["id"] for r in second.rows] == ["p2", "p1"]
        assert second.newer is not None
        back = queries.page(PredictionFilter(), size=2, before=second.newer)
        assert [r["id"] for r in back.rows] == ["p4", "p3"]
        for flt in (PredictionFilter(status="none"), PredictionFilter(tracking="active")):
            page = queries.page(flt, size=2, after=first.older)
            assert [r["id"] for r in page.rows] == ["p2", "p1"], flt
        migrate.downgrade(store, "0009")
        assert index_columns(store) == before
        with store.engine.connect() as conn:
            ids = conn.execute(text("select id from predictions order by id")).scalars().all()
        assert ids == [f"p{n}" for n in range(5)]
        migrate.upgrade(store)
        assert store.schema_revision() == SCHEMA_HEAD
    finally:
        store.close()


def index_columns(store: Store) -> dict[str, list[str]]:
    with store.engine.connect() as conn:
        return {i["name"]: i["column_names"] for i in inspect(conn).get_indexes("predictions")}


def test_0012_compresses_payloads_and_reads_the_old_ones_as_they_were(empty_url: str) -> None:
    """A delivery queued before 0012 is sent with the same text after it; one queued
    after is stored compressed; a downgrade to 0011 gives both back as text."""
    store = Store.from_url(empty_url)
    at = datetime(2026, 12, 7, tzinfo=UTC)
    old = '{"id":"p","status":"succeeded","logs":"' + "step 1/2\\n" * 300 + '"}'
    try:
        migrate.upgrade(store, "0011")
        store.add_predictions(["p"], now=at, first_poll_at=at)
        with store.engine.begin() as conn:  # SQL: the store's own reads need the newest schema
            conn.execute(
                text(
                    "insert into callbacks (prediction_id, kind, target, events, created_at)"
                    " values ('p', 'webhook', 'https://h.example.com/', 'completed', :at)"
                ),
                {"at": at.replace(tzinfo=None)},
            )
            conn.execute(
                text(
                    "insert into deliveries (callback_id, prediction_id, event, state, attempts,"
                    " next_attempt_at, created_at, payload, message_id)"
                    " select id, 'p', 'completed', 'pending', 0, :at, :at, :payload, 'msg_old'"
                    " from callbacks"
                ),
                {"at": at.replace(tzinfo=None), "payload": old},
            )
        migrate.upgrade(store, "0012")
        (job,) = store.claim_deliveries(
            now=at, limit=5, owner="o", lease_until=at + timedelta(seconds=30)
        )
        assert job.payload == old
        with store.engine.begin() as conn:
            new_id = conn.execute(
                deliveries.insert()
                .values(
                    callback_id=conn.execute(text("select id from callbacks")).scalar_one(),
                    prediction_id="p",
                    event="logs",
                    state="delivered",
                    attempts=1,
                    created_at=at,
                    payload=old.replace("1/2", "2/2"),
                    message_id="msg_new",
                )
                .returning(deliveries.c.id)
            ).scalar_one()
            stored = conn.execute(
                text("select payload from deliveries where id = :id"), {"id": new_id}
            ).scalar_one()
        assert isinstance(stored, bytes) and stored[:1] == b"x" and len(stored) < 200
        migrate.downgrade(store, "0011")
        with store.engine.connect() as conn:
            payloads = conn.execute(text("select payload from deliveries order by id")).all()
        assert [p for (p,) in payloads] == [old, old.replace("1/2", "2/2")]
        migrate.upgrade(store)
        assert store.schema_revision() == SCHEMA_HEAD
    finally:
        store.close()


def _labels(store: Store) -> list[tuple[str, str, str]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            text("select prediction_id, key, value from prediction_labels order by 1, 2")
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_0013_indexes_the_labels_stored_and_keeps_them(empty_url: str) -> None:
    """The upgrade fills prediction_labels from the rows (text values of an object
    only); the triggers follow tracker add, a merge, anyone's SQL and a delete; a
    downgrade drops the table and leaves the labels in their column."""
    store = Store.from_url(empty_url)
    at = datetime(2026, 12, 7, tzinfo=UTC)
    try:
        migrate.upgrade(store, "0012")
        store.add_predictions(["a", "b"], now=at, first_poll_at=at, labels={"team": "x"})
        store.add_predictions(["c"], now=at, first_poll_at=at)
        with store.engine.begin() as conn:  # what only hand-written SQL could store
            conn.execute(
                text("""update predictions set labels = '{"n": 5, "t": "y"}' where id = 'b'""")
            )
            conn.execute(text("update predictions set labels = '[1, 2]' where id = 'c'"))
        migrate.upgrade(store, "0013")
        assert _labels(store) == [("a", "team", "x"), ("b", "t", "y")]
        store.add_predictions(
            ["a", "d"], now=at, first_poll_at=at, labels={"team": "z", "env": "p"}
        )
        assert _labels(store) == [
            ("a", "env", "p"),
            ("a", "team", "z"),
            ("b", "t", "y"),
            ("d", "env", "p"),
            ("d", "team", "z"),
        ]
        with store.engine.begin() as conn:
            conn.execute(text("""update predictions set labels = '{"k": "v"}' where id = 'c'"""))
            twice = """update predictions set labels = '{"k": "1", "k": "2"}' where id = 'b'"""
            conn.execute(text(twice))  # only by hand; the last value counts, as in jsonb
        assert [row for row in _labels(store) if row[0] == "b"] == [("b", "k", "2")]
        with store.engine.begin() as conn:
            conn.execute(text("update predictions set id = 'd2' where id = 'd'"))
            conn.execute(text("delete from predictions where id in ('a', 'b')"))
        assert _labels(store) == [("c", "k", "v"), ("d2", "env", "p"), ("d2", "team", "z")]
        migrate.downgrade(store, "0012")
        assert "prediction_labels" not in inspect(store.engine).get_table_names()
        store.add_predictions(["e"], now=at, first_poll_at=at, labels={"team": "x"})
        migrate.upgrade(store)
        assert store.schema_revision() == SCHEMA_HEAD
        assert ("e", "team", "x") in _labels(store)
    finally:
        store.close()


def test_0014_rolls_up_the_files_stored_and_keeps_the_rollup(empty_url: str) -> None:
    """The upgrade fills artifact_rollup from the files already stored (a prediction
    once per day it has files on); its triggers follow new files, a stored one and a
    delete; a downgrade drops it and leaves the files; upgrading again refills it."""
    from tests.integration.test_artifact_rollup import counts, recount, rollup

    store = Store.from_url(empty_url)
    at = datetime(2026, 12, 7, 23, 30, tzinfo=UTC)
    try:
        migrate.upgrade(store, "0013")
        store.add_predictions(["a", "b"], now=at, first_poll_at=at)
        store.add_artifacts(
            [
                ("a", [(0, "https://f.example/a0.png"), (1, "https://f.example/a1.png")], at),
                ("b", [(0, "https://f.example/b0.png")], at + timedelta(hours=1)),
            ]
        )
        with store.engine.begin() as conn:
            conn.execute(text("update predictions set model = 'acme/flux' where id = 'a'"))
            conn.execute(
                text(
                    "update artifacts set state = 'stored', bytes = 100"
                    " where prediction_id = 'a' and position = 0"
                )
            )
        migrate.upgrade(store, "0014")
        expected = recount(store)
        assert rollup(store) == expected
        assert sorted(expected.values(), key=lambda c: c["files"]) == [
            counts(1, 1, 0, 0, 1, 0),
            counts(1, 2, 1, 0, 1, 100),
        ]
        store.add_artifacts([("b", [(1, "https://f.example/b1.png")], at)])
        with store.engine.begin() as conn:
            conn.execute(text("delete from artifacts where prediction_id = 'a'"))
        assert rollup(store) == recount(store)
        assert len(rollup(store)) == 2  # b's files on two days; a's row is gone
        migrate.downgrade(store, "0013")
        assert "artifact_rollup" not in inspect(store.engine).get_table_names()
        store.add_artifacts([("a", [(5, "https://f.example/a5.png")], at)])
        migrate.upgrade(store)
        assert store.schema_revision() == SCHEMA_HEAD
        assert rollup(store) == recount(store)
        assert len(rollup(store)) == 3
    finally:
        store.close()


def test_0015_keeps_the_answers_stored_and_moves_the_logs_of_new_ones(empty_url: str) -> None:
    """Rows written before 0015 keep their answer whole (``raw_logs_moved`` false) and
    the view gives it as it is; an answer written after keeps null for its logs; a
    downgrade puts those logs back into ``raw`` and drops the column and the view."""
    from tests.integration.test_raw_answers import answer, observe, stored, view_answer

    store = Store.from_url(empty_url)
    at = datetime(2026, 12, 8, tzinfo=UTC)
    old = answer("old", "succeeded")
    try:
        migrate.upgrade(store, "0014")
        store.add_predictions(["old", "new"], now=at, first_poll_at=at)
        with store.engine.begin() as conn:
            conn.execute(
                text("update predictions set raw = :raw, logs = :logs where id = 'old'"),
                {"raw": json.dumps(old), "logs": old["logs"]},
            )
        migrate.upgrade(store, "0015")
        assert stored(store, "old") == (old, False, old["logs"])
        assert view_answer(store, "old") == old
        new = answer("new", "succeeded")
        observe(store, "new", new, at)
        raw, moved, _ = stored(store, "new")
        assert moved and raw == {**new, "logs": None}
        assert view_answer(store, "new") == new
        migrate.downgrade(store, "0014")
        with store.engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("predictions")}
            raws = dict(conn.execute(text("select id, raw from predictions")).all())
            assert "prediction_answers" not in inspect(conn).get_view_names()
        assert "raw_logs_moved" not in columns
        assert {k: json.loads(v) if isinstance(v, str) else v for k, v in raws.items()} == {
            "old": old,
            "new": new,
        }
        migrate.upgrade(store)
        assert store.schema_revision() == SCHEMA_HEAD
    finally:
        store.close()
