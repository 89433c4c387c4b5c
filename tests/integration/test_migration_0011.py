"""Migration 0011 (the reports' rollup) on a database at 0010 that holds predictions:
the upgrade backfills the rollup from the rows, the triggers keep it from then on,
and a downgrade drops both and leaves the rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from tracker.store import migrate
from tracker.store.rollup import Scope, expected_rows
from tracker.store.rollup_reports import status_counts
from tracker.store.store import Store

ROWS = [
    # id, status, tracking, model, registered, created, started, completed, predict_time
    ("a", "succeeded", "done", "m/x", "10:00:00", "10:00:01", "10:00:02.5", "10:00:22.75", 20.1),
    ("b", "succeeded", "done", "m/x", "10:30:00", "10:30:01", "10:30:03", "11:10:00.125", 2300.0),
    ("c", "failed", "done", None, "11:05:00", "11:05:00", None, "11:06:00", None),
    ("d", "processing", "active", "m/y", "11:20:00", "11:20:01", "11:20:04", None, None),
    ("e", "starting", "forgotten", "m/y", "12:00:00", "12:00:02", None, None, None),
    ("f", None, "lost", None, "12:10:00", None, None, None, None),
    ("g", None, "active", None, "12:20:00", None, None, None, None),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'at-0010.db'}"
    return str(request.getfixturevalue("empty_pg_url"))


def _at(clock: str | None) -> str | None:
    return None if clock is None else f"2026-11-30 {clock}+00:00"


def _insert(store: Store, rows: list[tuple[object, ...]]) -> None:
    sqlite = store.dialect == "sqlite"

    def stamp(clock: object) -> str | None:
        value = _at(clock)  # type: ignore[arg-type]
        if value is None or not sqlite:
            return value
        whole, _, frac = value.removesuffix("+00:00").partition(".")
        return f"{whole}.{(frac or '0').ljust(6, '0')}"

    with store.engine.begin() as conn:
        for pid, status, tracking, model, reg, created, started, completed, pt in rows:
            conn.execute(
                text(
                    "INSERT INTO predictions (id, status, tracking, model, registered_at,"
                    " created_at, started_at, completed_at, predict_time, logs, labels,"
                    " poll_count, error_count, consecutive_errors, not_found_count, log_seq)"
                    " VALUES (:id, :status, :tracking, :model, :reg, :created, :started,"
                    " :completed, :pt, '', '{}', 0, 0, 0, 0, 0)"
                ),
                {
                    "id": pid,
                    "status": status,
                    "tracking": tracking,
                    "model": model,
                    "reg": stamp(reg),
                    "created": stamp(created),
                    "started": stamp(started),
                    "completed": stamp(completed),
                    "pt": pt,
                },
            )


def _tables(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def test_0011_backfills_the_rollup_from_the_rows_and_keeps_it(empty_url: str) -> None:
    store = Store.from_url(empty_url)
    try:
        migrate.upgrade(store, "0010")
        _insert(store, ROWS)
        migrate.upgrade(store, "0011")
        assert store.schema_revision() == "0011"
        with store.engine.connect() as conn:
            found = expected_rows(conn)
            counted = status_counts(conn, Scope())
        assert found["counts"] == found["expected_counts"]
        assert found["buckets"] == found["expected_buckets"]
        # the settled rows a-c, e, f are in the rollup; d and g (active) are not
        settled: dict[tuple[str, str], int] = {}
        for row in found["counts"]:
            settled[(row[1], row[2])] = settled.get((row[1], row[2]), 0) + row[5]
        assert settled == {
            ("", "lost"): 1,
            ("failed", "done"): 1,
            ("starting", "forgotten"): 1,
            ("succeeded", "done"): 2,  # a and b: one registration hour, two of completion
        }
        assert {(r["status"], r["tracking"]): r["predictions"] for r in counted} == {
            ("succeeded", "done"): 2,
            ("failed", "done"): 1,
            ("processing", "active"): 1,
            ("starting", "forgotten"): 1,
            (None, "lost"): 1,
            (None, "active"): 1,
        }
        # from now on the triggers keep it: a new row, an active one ending, a delete
        _insert(store, [("h", "canceled", "done", "m/x", "13:00:00", None, None, None, 1.0)])
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE predictions SET status = 'succeeded', tracking = 'done',"
                    " completed_at = started_at WHERE id = 'd'"
                )
            )
            conn.execute(text("DELETE FROM predictions WHERE id = 'a'"))
        with store.engine.connect() as conn:
            found = expected_rows(conn)
        assert found["counts"] == found["expected_counts"]
        assert found["buckets"] == found["expected_buckets"]
        assert sum(r[5] for r in found["counts"]) == 6

        migrate.downgrade(store, "0010")
        assert store.schema_revision() == "0010"
        assert not {"prediction_rollup", "prediction_rollup_buckets"} & _tables(store)
        _insert(store, [("i", "failed", "done", None, "14:00:00", None, None, None, None)])
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM predictions")).scalar() == 8
        migrate.upgrade(store, "0011")  # and back, backfilled again with the new rows
        with store.engine.connect() as conn:
            found = expected_rows(conn)
        assert found["counts"] == found["expected_counts"]
        assert sum(r[5] for r in found["counts"]) == 7  # all but g, active
    finally:
        store.close()
