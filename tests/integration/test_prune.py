"""Retention (`tracker prune`, the daemon's --prune-older-than) on SQLite and PostgreSQL.

A known history written through the Store API gives exact counts; a bulk one of
20,000 finished predictions, pruned in 100 batches, shows that batches walk the
finished rows by index and leave the active rows, and the due-work query, alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, event, select, text

from tests.apply import apply_one
from tests.clirun import run_tracker
from tracker.config import Settings
from tracker.domain import CallbackSpec, DeliveryState, NextPoll, PredictionState, SendResult
from tracker.exceptions import InvalidInput, StoreUnavailable
from tracker.poll import daemon as daemon_module
from tracker.poll.building import build_daemon
from tracker.poll.observe import parse_prediction, plan_observation
from tracker.store.retention import PruneResult
from tracker.store.store import Store
from tracker.store.tables import deliveries
from tracker.store.types import UTCDateTime
from tracker.timeparse import utcnow

NOW = utcnow().replace(microsecond=0)
OLD = NOW - timedelta(days=60)
CUTOFF = NOW - timedelta(days=30)
RECENT = NOW - timedelta(days=1)
HOOK = CallbackSpec("webhook", "https://example.com/hook", ("completed",))
START_HOOK = CallbackSpec("webhook", "https://example.com/start", ("start", "completed"))
OK = SendResult(ok=True, status_code=200, duration_ms=12)
BUSY = SendResult(ok=False, status_code=503, error="HTTP 503", duration_ms=30)
GONE = SendResult(ok=False, status_code=410, error="HTTP 410", permanent=True)
TABLES = (
    "predictions",
    "status_transitions",
    "prediction_logs",
    "callbacks",
    "deliveries",
    "delivery_attempts",
)


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# -- a known history, written the way the daemon writes it ------------------


class Driver:
    """Plays the daemon: claims, applies one answer or error, records delivery attempts."""

    owner = "test-daemon"

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, pid: str, when: datetime, *callbacks: CallbackSpec) -> None:
        self.store.add_predictions([pid], now=when, first_poll_at=when, callbacks_to_add=callbacks)

    def _poll(self, pid: str, when: datetime, outcome: Callable[[PredictionState], None]) -> None:
        claimed = self.store.claim_due(
            now=when, limit=1000, owner=self.owner, lease_until=when + s(60)
        )
        try:
            outcome({state.id: state for state in claimed}[pid])
        finally:
            self.store.release_claims(self.owner, now=when)

    def answer(self, pid: str, when: datetime, **body: Any) -> None:
        def apply(state: PredictionState) -> None:
            update = plan_observation(state, parse_prediction({"id": pid, **body}, pid), when)
            apply_one(self.store, update, NextPoll(when + s(1), 1.0), owner=self.owner)

        self._poll(pid, when, apply)

    def not_found(self, pid: str, when: datetime) -> None:
        def record(_state: PredictionState) -> None:
            self.store.record_not_found(
                pid,
                now=when,
                detail="HTTP 404: not found",
                next_poll=NextPoll(when + s(1), None),
                lost_after=2,
                lost_window=s(60),
                owner=self.owner,
            )

        self._poll(pid, when, record)

    def deliver(
        self,
        pid: str,
        when: datetime,
        result: SendResult,
        state: DeliveryState,
        next_attempt_at: datetime | None = None,
    ) -> None:
        jobs = self.store.claim_deliveries(
            now=when, limit=1000, owner=self.owner, lease_until=when + s(60)
        )
        try:
            (job,) = [job for job in jobs if job.prediction_id == pid]
            assert self.store.record_attempt(
                job,
                result,
                attempted_at=when,
                state=state,
                next_attempt_at=next_attempt_at,
                owner=self.owner,
            )
        finally:
            self.store.release_deliveries(self.owner, now=when)


FINISHED_OLD = (
    "old-done",
    "old-failed",
    "old-pending",
    "late-added",
    "old-lost",
    "old-forgotten",
)
ACTIVE = ("active-stale", "active-odd", "active-new")


def write_history(store: Store) -> None:
    """Six predictions that finished before CUTOFF, two that did not count as
    finished before it, and three active ones that look old in every other way."""
    up = Driver(store)
    # succeeded; its webhook failed once, then was delivered: 2 log rows, 2 attempts
    up.add("old-done", OLD, HOOK)
    up.answer("old-done", OLD + s(1), status="processing", logs="one\n")
    up.answer(
        "old-done",
        OLD + s(2),
        status="succeeded",
        logs="one\ntwo\n",
        output=["https://cdn.example.com/1.png"],
        completed_at=iso(OLD + s(2)),
    )
    up.deliver("old-done", OLD + s(3), BUSY, DeliveryState.PENDING, OLD + s(4))
    up.deliver("old-done", OLD + s(5), OK, DeliveryState.DELIVERED)
    # failed; the receiver is gone, the delivery dead: 1 log row, 1 attempt
    up.add("old-failed", OLD + s(10), HOOK)
    up.answer(
        "old-failed",
        OLD + s(11),
        status="failed",
        logs="boom\n",
        error="boom",
        completed_at=iso(OLD + s(11)),
    )
    up.deliver("old-failed", OLD + s(12), GONE, DeliveryState.DEAD)
    # succeeded, but its delivery is still pending: its one attempt stays
    up.add("old-pending", OLD + s(20), HOOK)
    up.answer(
        "old-pending", OLD + s(21), status="succeeded", logs="done\n", completed_at=iso(OLD + s(21))
    )
    up.deliver("old-pending", OLD + s(22), BUSY, DeliveryState.PENDING, NOW + s(3600))
    # lost after two 404s: no completed_at, so its last poll says when it finished
    up.add("old-lost", OLD + s(30))
    up.answer("old-lost", OLD + s(31), status="processing", logs="hm\n")
    up.not_found("old-lost", OLD + s(40))
    up.not_found("old-lost", OLD + s(120))
    # forgotten while processing
    up.add("old-forgotten", OLD + s(200))
    up.answer("old-forgotten", OLD + s(201), status="processing", logs="a\n")
    store.forget(["old-forgotten"])
    # registered and polled recently, but upstream finished it long ago
    up.add("late-added", RECENT)
    up.answer("late-added", RECENT + s(1), status="succeeded", logs="x\n", completed_at=iso(OLD))
    # finished after the cutoff: kept whole
    up.add("recent-done", RECENT + s(2), HOOK)
    up.answer(
        "recent-done", RECENT + s(3), status="succeeded", logs="new\n", completed_at=iso(RECENT)
    )
    up.deliver("recent-done", RECENT + s(4), OK, DeliveryState.DELIVERED)
    # forgotten before its first poll: no finish time at all, never pruned
    up.add("never-polled", OLD)
    store.forget(["never-polled"])
    # active: last polled long ago (the daemon was down), with a delivered `start`
    up.add("active-stale", OLD + s(300), START_HOOK)
    up.answer("active-stale", OLD + s(301), status="processing", logs="x\n")
    up.deliver("active-stale", OLD + s(302), OK, DeliveryState.DELIVERED)
    # active: an unknown status that came with an old completed_at
    up.add("active-odd", OLD + s(400))
    up.answer("active-odd", OLD + s(401), status="paused", logs="y\n", completed_at=iso(OLD))
    up.add("active-new", RECENT + s(10))
    up.answer("active-new", RECENT + s(11), status="processing", logs="z\n")


#: what a default prune of write_history at CUTOFF removes
DEFAULT_COUNTS = PruneResult(
    examined=6, affected=6, log_rows_deleted=7, raw_bodies_cleared=6, attempts_deleted=3
)
#: ... and with --all: old-pending stays (pruned as by default), the other five go
ALL_COUNTS = PruneResult(
    examined=6,
    affected=6,
    log_rows_deleted=7,
    raw_bodies_cleared=1,
    attempts_deleted=3,
    predictions_deleted=5,
    kept_pending=1,
    transitions_deleted=6,
    callbacks_deleted=2,
    deliveries_deleted=2,
)


def rows(store: Store, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def scalar(store: Store, sql: str, **params: Any) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def snapshot(store: Store, where: str = "1 = 1") -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table that belongs to the predictions matching ``where``."""
    ids = f"SELECT id FROM predictions WHERE {where}"
    queries = {
        "predictions": f"SELECT * FROM predictions WHERE id IN ({ids}) ORDER BY id",
        "status_transitions": f"SELECT * FROM status_transitions WHERE prediction_id IN ({ids})"
        " ORDER BY id",
        "prediction_logs": f"SELECT * FROM prediction_logs WHERE prediction_id IN ({ids})"
        " ORDER BY id",
        "callbacks": f"SELECT * FROM callbacks WHERE prediction_id IN ({ids}) ORDER BY id",
        "deliveries": f"SELECT * FROM deliveries WHERE prediction_id IN ({ids}) ORDER BY id",
        "delivery_attempts": "SELECT a.* FROM delivery_attempts a JOIN deliveries d"
        f" ON d.id = a.delivery_id WHERE d.prediction_id IN ({ids}) ORDER BY a.id",
    }
    return {table: rows(store, sql) for table, sql in queries.items()}


def counts(store: Store) -> dict[str, int]:
    return {t: scalar(store, f"SELECT count(*) FROM {t}") for t in TABLES}


def in_list(ids: tuple[str, ...]) -> str:
    return "id IN (" + ", ".join(f"'{i}'" for i in ids) + ")"


@pytest.fixture
def history(store: Store) -> Store:
    write_history(store)
    return store


def test_the_fixture_is_what_the_counts_assume(history: Store) -> None:
    found = dict(rows(history, "SELECT id, tracking FROM predictions"))
    assert found == {
        **dict.fromkeys(("old-done", "old-failed", "old-pending", "late-added"), "done"),
        "recent-done": "done",
        "old-lost": "lost",
        "old-forgotten": "forgotten",
        "never-polled": "forgotten",
        **dict.fromkeys(ACTIVE, "active"),
    }
    states = rows(history, "SELECT prediction_id, state, attempts FROM deliveries ORDER BY id")
    assert states == [
        ("old-done", "delivered", 2),
        ("old-failed", "dead", 1),
        ("old-pending", "pending", 1),
        ("recent-done", "delivered", 1),
        ("active-stale", "delivered", 1),
    ]


def test_default_prune_removes_logs_raw_and_settled_attempts(history: Store) -> None:
    untouched = snapshot(history, f"NOT {in_list(FINISHED_OLD)}")
    before = counts(history)

    result = history.prune(cutoff=CUTOFF)

    assert result == DEFAULT_COUNTS
    after = counts(history)
    assert before["prediction_logs"] - after["prediction_logs"] == 7
    assert before["delivery_attempts"] - after["delivery_attempts"] == 3
    for table in ("predictions", "status_transitions", "callbacks", "deliveries"):
        assert after[table] == before[table]
    # active predictions, the recent one and the one never polled: not a byte changed
    assert snapshot(history, f"NOT {in_list(FINISHED_OLD)}") == untouched
    finished = in_list(FINISHED_OLD)
    assert (
        scalar(history, f"SELECT count(*) FROM predictions WHERE {finished} AND raw IS NULL") == 6
    )
    logs_left = "SELECT count(*) FROM prediction_logs WHERE prediction_id IN ({})"
    assert scalar(history, logs_left.format(f"SELECT id FROM predictions WHERE {finished}")) == 0
    # the pending delivery keeps its attempt; the history stays readable
    detail = history.get_detail("old-pending")
    assert detail is not None
    assert [(d.state, len(d.history)) for d in detail.deliveries] == [("pending", 1)]
    done = history.get_detail("old-done")
    assert done is not None
    assert done.prediction.logs == "one\ntwo\n"
    assert done.prediction.output == ["https://cdn.example.com/1.png"]
    assert done.prediction.status == "succeeded"
    assert [t.to_status for t in done.transitions] == ["processing", "succeeded"]
    assert done.logs == []
    assert [(d.state, d.history) for d in done.deliveries] == [("delivered", [])]


def test_a_second_prune_finds_nothing_left(history: Store) -> None:
    history.prune(cutoff=CUTOFF)
    assert history.prune(cutoff=CUTOFF) == PruneResult(examined=6)


def test_keep_logs(history: Store) -> None:
    logs_before = counts(history)["prediction_logs"]
    result = history.prune(cutoff=CUTOFF, keep_logs=True)
    assert result == replace(DEFAULT_COUNTS, log_rows_deleted=0)
    assert counts(history)["prediction_logs"] == logs_before


def test_all_deletes_predictions_with_everything_they_own(history: Store) -> None:
    untouched = snapshot(history, f"NOT {in_list(FINISHED_OLD)}")
    before = counts(history)

    result = history.prune(cutoff=CUTOFF, delete_predictions=True)

    assert result == ALL_COUNTS
    after = counts(history)
    removed = {t: before[t] - after[t] for t in TABLES}
    assert removed == {
        "predictions": 5,
        "status_transitions": 6,
        "prediction_logs": 7,
        "callbacks": 2,
        "deliveries": 2,
        "delivery_attempts": 3,
    }
    remaining = {r[0] for r in rows(history, "SELECT id FROM predictions")}
    assert remaining == {"old-pending", "recent-done", "never-polled", *ACTIVE}
    assert snapshot(history, f"NOT {in_list(FINISHED_OLD)}") == untouched
    # the prediction with a pending delivery stays, pruned like by default
    kept = history.get_detail("old-pending")
    assert kept is not None
    assert kept.logs == [] and kept.prediction.logs == "done\n"
    assert [(d.state, len(d.history)) for d in kept.deliveries] == [("pending", 1)]
    assert scalar(history, "SELECT raw FROM predictions WHERE id = 'old-pending'") is None


def test_all_after_a_default_prune(history: Store) -> None:
    history.prune(cutoff=CUTOFF)
    result = history.prune(cutoff=CUTOFF, delete_predictions=True)
    assert result == PruneResult(
        examined=6,
        affected=5,
        predictions_deleted=5,
        kept_pending=1,
        transitions_deleted=6,
        callbacks_deleted=2,
        deliveries_deleted=2,
    )


@pytest.mark.parametrize("delete_predictions", [False, True], ids=["default", "all"])
def test_dry_run_changes_nothing_and_counts_what_a_real_run_removes(
    history: Store, delete_predictions: bool
) -> None:
    everything = snapshot(history)
    planned = history.prune(cutoff=CUTOFF, delete_predictions=delete_predictions, dry_run=True)
    assert snapshot(history) == everything
    done = history.prune(cutoff=CUTOFF, delete_predictions=delete_predictions)
    assert planned == done == (ALL_COUNTS if delete_predictions else DEFAULT_COUNTS)


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_small_batches_give_the_same_result(history: Store, batch_size: int) -> None:
    batches = list(history.prune_batches(cutoff=CUTOFF, batch_size=batch_size))
    assert len(batches) >= 6 // batch_size
    assert all(b.examined <= batch_size for b in batches)
    assert sum(batches, PruneResult()) == DEFAULT_COUNTS


def test_the_cutoff_decides(history: Store) -> None:
    # before any of them finished: nothing; after the recent one finished: it too
    assert history.prune(cutoff=OLD, dry_run=True) == PruneResult()
    assert history.prune(cutoff=NOW, dry_run=True).examined == 7


def test_bad_arguments_are_refused(store: Store) -> None:
    with pytest.raises(InvalidInput, match="naive"):
        store.prune(cutoff=CUTOFF.replace(tzinfo=None))
    with pytest.raises(InvalidInput, match="batch size"):
        store.prune(cutoff=CUTOFF, batch_size=0)
    with pytest.raises(InvalidInput, match="logs"):
        store.prune(cutoff=CUTOFF, keep_logs=True, delete_predictions=True)


def test_an_empty_database(store: Store) -> None:
    assert store.prune(cutoff=NOW, delete_predictions=True) == PruneResult()


# -- 20,000 finished predictions, in 100 batches -----------------------------------

BULK_FINISHED = 20_000
BULK_ACTIVE = 300
#: a fifth of the default (1,000): as many batches, and the same plans, as 100,000 rows
#: make with the default, in a fifth of the time
BULK_BATCH = 200


def bulk_history(store: Store) -> None:
    """BULK_FINISHED finished predictions ('f1', 'f2', ...: half of them completed
    upstream, the rest lost or forgotten) and BULK_ACTIVE active ones ('a1', ...),
    each with two log rows and a raw body; every tenth with a delivered webhook and
    two attempts, every hundredth with a pending one instead. Their times take only
    five values, so batches end in the middle of runs of equal times."""
    pg = store.dialect == "postgresql"
    raw = """'{"status": "succeeded", "output": ["https://cdn.example.com/x.png"]}'"""
    raw = f"CAST({raw} AS jsonb)" if pg else raw
    moment = (
        "CASE i % 5 WHEN 0 THEN :t0 WHEN 1 THEN :t1 WHEN 2 THEN :t2 WHEN 3 THEN :t3 ELSE :t4 END"
    )
    numbers = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)"
    columns = (
        "id, status, tracking, logs, log_seq, poll_count, raw, registered_at,"
        " last_polled_at, completed_at, next_poll_at"
    )
    statements = [
        (
            f"{numbers} INSERT INTO predictions ({columns})"
            f" SELECT 'f' || i, CASE WHEN i % 4 < 2 THEN 'succeeded' ELSE 'processing' END,"
            f" CASE i % 4 WHEN 2 THEN 'lost' WHEN 3 THEN 'forgotten' ELSE 'done' END,"
            f" 'a\nb\n', 2, 2, {raw}, :t0, {moment},"
            f" CASE WHEN i % 4 < 2 THEN {moment} END, NULL FROM n",
            {"count": BULK_FINISHED},
        ),
        (
            # active ones: a third last polled long ago, a tenth with an old completed_at
            f"{numbers} INSERT INTO predictions ({columns})"
            f" SELECT 'a' || i, 'processing', 'active', 'a\nb\n', 2, 2, {raw}, :t0,"
            f" CASE WHEN i % 3 = 0 THEN :t0 ELSE :recent END,"
            f" CASE WHEN i % 10 = 0 THEN :t1 END, {moment.replace(':t', ':due')} FROM n",
            {"count": BULK_ACTIVE},
        ),
        (
            "INSERT INTO prediction_logs (prediction_id, seq, observed_at, text)"
            " SELECT id, 1, :t0, 'a\n' FROM predictions",
            {},
        ),
        (
            "INSERT INTO prediction_logs (prediction_id, seq, observed_at, text)"
            " SELECT id, 2, :t0, 'b\n' FROM predictions",
            {},
        ),
        (
            "INSERT INTO status_transitions (prediction_id, from_status, to_status, observed_at)"
            " SELECT id, NULL, status, :t0 FROM predictions",
            {},
        ),
        (
            "INSERT INTO callbacks (prediction_id, kind, target, events, created_at)"
            " SELECT id, 'webhook', 'https://example.com/hook', 'completed', :t0"
            " FROM predictions WHERE id LIKE '%0'",
            {},
        ),
        (
            "INSERT INTO deliveries (callback_id, prediction_id, event, state, attempts,"
            " next_attempt_at, created_at, delivered_at, payload, message_id)"
            " SELECT id, prediction_id, 'completed',"
            " CASE WHEN prediction_id LIKE '%00' THEN 'pending' ELSE 'delivered' END, 2,"
            " CASE WHEN prediction_id LIKE '%00' THEN :recent END, :t0,"
            " CASE WHEN prediction_id LIKE '%00' THEN NULL ELSE :t1 END, '{}', 'msg_' || id"
            " FROM callbacks",
            {},
        ),
        (
            "INSERT INTO delivery_attempts (delivery_id, attempted_at, status_code)"
            " SELECT id, :t0, 503 FROM deliveries",
            {},
        ),
        (
            "INSERT INTO delivery_attempts (delivery_id, attempted_at, status_code)"
            " SELECT id, :t1, 200 FROM deliveries",
            {},
        ),
    ]
    times = {f"t{k}": OLD + s(k * 3600) for k in range(5)}
    times.update({f"due{k}": NOW + s(k * 7) for k in range(5)})
    times["recent"] = RECENT
    with store.engine.begin() as conn:
        for sql, params in statements:
            used = {name: value for name, value in times.items() if re.search(rf":{name}\b", sql)}
            stmt = text(sql).bindparams(*(bindparam(n, type_=UTCDateTime()) for n in used))
            conn.execute(stmt, {**params, **used})
        if pg:
            conn.execute(text("ANALYZE"))


@pytest.fixture
def captured_selections(store: Store) -> Iterator[list[tuple[str, Any]]]:
    """The batch selections a prune sends, with their parameters."""
    found: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT predictions.id, predictions.tracking"):
            found.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", grab)
    yield found
    event.remove(store.engine, "before_cursor_execute", grab)


def explain(store: Store, statement: str, parameters: Any = None) -> str:
    prefix = "EXPLAIN " if store.dialect == "postgresql" else "EXPLAIN QUERY PLAN "
    with store.engine.connect() as conn:
        result = conn.exec_driver_sql(prefix + statement, parameters or ())
        return "\n".join(str(r[0] if store.dialect == "postgresql" else r[-1]) for r in result)


DUE_QUERY = (
    "SELECT id FROM predictions WHERE tracking = 'active' AND next_poll_at <= {now}"
    " ORDER BY next_poll_at LIMIT 50"
)


@pytest.mark.slow
def test_pruning_20k_finished_predictions_leaves_the_active_ones_alone(
    store: Store, captured_selections: list[tuple[str, Any]]
) -> None:
    bulk_history(store)
    active = "tracking = 'active'"
    untouched = snapshot(store, active)
    due_at = rows(store, f"SELECT id, next_poll_at FROM predictions WHERE {active} ORDER BY id")
    assert len(due_at) == BULK_ACTIVE

    pruned = store.prune(cutoff=CUTOFF, batch_size=BULK_BATCH)

    delivered = BULK_FINISHED // 10 - BULK_FINISHED // 100
    assert pruned == PruneResult(
        examined=BULK_FINISHED,
        affected=BULK_FINISHED,
        log_rows_deleted=2 * BULK_FINISHED,
        raw_bodies_cleared=BULK_FINISHED,
        attempts_deleted=2 * delivered,
    )
    assert snapshot(store, active) == untouched
    assert scalar(store, "SELECT count(*) FROM prediction_logs") == 2 * BULK_ACTIVE

    # Every batch read one of the finished-row indexes from where the last one stopped
    # (the row comparison is an index condition), never the whole table.
    assert len(captured_selections) == BULK_FINISHED // BULK_BATCH + 2
    for k, index, key in ((25, "completed", "completed_at"), (75, "polled", "last_polled_at")):
        plan = explain(store, *captured_selections[k])
        assert f"ix_predictions_finished_{index}" in plan
        assert "Seq Scan on predictions" not in plan and "SCAN predictions" not in plan
        if store.dialect == "postgresql":
            assert f"Index Cond: (({key} < " in plan and f"(ROW({key}, (id)::text) > ROW(" in plan
        else:
            assert f"({key},id)>(?,?) AND {key}<?" in plan

    deleted = store.prune(cutoff=CUTOFF, delete_predictions=True, batch_size=BULK_BATCH)
    assert deleted == PruneResult(
        examined=BULK_FINISHED,
        affected=BULK_FINISHED - BULK_FINISHED // 100,
        predictions_deleted=BULK_FINISHED - BULK_FINISHED // 100,
        kept_pending=BULK_FINISHED // 100,
        transitions_deleted=BULK_FINISHED - BULK_FINISHED // 100,
        callbacks_deleted=delivered,
        deliveries_deleted=delivered,
    )
    assert scalar(store, "SELECT count(*) FROM predictions") == BULK_ACTIVE + BULK_FINISHED // 100
    assert snapshot(store, active) == untouched
    assert (
        rows(store, f"SELECT id, next_poll_at FROM predictions WHERE {active} ORDER BY id")
        == due_at
    )

    # The daemon's due-work query still reads the partial index, and finds the due rows.
    if store.dialect == "postgresql":
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE predictions"))
        plan = explain(store, DUE_QUERY.format(now="now() + interval '1 hour'"))
    else:
        plan = explain(store, DUE_QUERY.format(now="'2999-01-01'"))
    assert "ix_predictions_due" in plan
    claimed = store.claim_due(now=NOW + s(60), limit=1000, owner="x", lease_until=NOW + s(120))
    assert len(claimed) == BULK_ACTIVE


# -- the daemon's schedule ----------------------------------------------------


async def test_the_daemon_prunes_on_its_schedule(
    history: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(daemon_module, "PRUNE_FIRST_DELAY", 0.0)
    settings = Settings(
        database_url=str(history.engine.url),
        name="pruner",
        prune_older_than=30 * 86400.0,
    )
    daemon = build_daemon(history, None, settings)  # type: ignore[arg-type]  # nothing to poll
    caplog.set_level(logging.INFO, logger="tracker.poll.daemon")
    run = asyncio.create_task(daemon.run())
    try:
        for _ in range(200):
            if "pruned predictions finished before" in caplog.text:
                break
            await asyncio.sleep(0.05)
    finally:
        daemon.stop()
        assert await asyncio.wait_for(run, 30) == 0
    line = next(r.getMessage() for r in caplog.records if "pruned" in r.getMessage())
    assert DEFAULT_COUNTS.summary() in line
    assert scalar(history, "SELECT count(*) FROM predictions WHERE raw IS NULL") >= 6
    assert scalar(history, "SELECT count(*) FROM predictions WHERE tracking = 'active'") == 3


async def test_a_failing_prune_is_logged_and_never_stops_the_daemon(
    history: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def failing(**_options: Any) -> Iterator[PruneResult]:
        yield PruneResult(examined=2, affected=1, raw_bodies_cleared=1)
        raise StoreUnavailable("database unavailable: connection refused")

    monkeypatch.setattr(history, "prune_batches", failing)
    daemon = build_daemon(history, None, Settings(name="pruner", prune_older_than=60.0))  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, logger="tracker.poll.daemon")
    try:
        await daemon._prune()  # returns: nothing raised
    finally:
        daemon.db.shutdown()
    assert "pruning stopped: database unavailable: connection refused" in caplog.text
    assert "1 of 2 finished predictions affected: 1 raw bodies cleared" in caplog.text


# -- the command ----------------------------------------------------------------


def tracker(db_url: str, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env.update(TRACKER_DATABASE_URL=db_url, **variables)
    return run_tracker(args, env)  # stdin is not a terminal: `prune --all` needs --yes


def test_prune_command_reports_what_it_removed(history: Store, db_url: str) -> None:
    everything = snapshot(history)
    dry = tracker(db_url, "prune", "--older-than", "30d", "--dry-run", "--format", "json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report.pop("dry_run") is True
    assert datetime.fromisoformat(report.pop("cutoff")) >= CUTOFF
    assert report == DEFAULT_COUNTS.counts()
    assert snapshot(history) == everything

    done = tracker(db_url, "prune", "--older-than", "30d")
    assert done.returncode == 0, done.stderr
    lines = [" ".join(line.split()) for line in done.stdout.splitlines()]
    assert lines == [
        "finished predictions examined 6",
        "predictions affected 6",
        "log rows deleted 7",
        "raw bodies cleared 6",
        "delivery attempts deleted 3",
    ]

    cutoff = CUTOFF.date().isoformat()
    gone = tracker(db_url, "prune", "--older-than", cutoff, "--all", "--yes", "--batch-size", "2")
    assert gone.returncode == 0, gone.stderr
    lines = [" ".join(line.split()) for line in gone.stdout.splitlines()]
    assert "predictions deleted 5" in lines
    assert "predictions kept (delivery pending) 1" in lines
    assert scalar(history, "SELECT count(*) FROM predictions") == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--older-than", "soon"), "Error: cannot read --older-than 'soon'"),
        (("--older-than", "2999-01-01"), "Error: --older-than '2999-01-01' is in the future"),
        (("--older-than", "30d", "--all", "--keep-logs"), "Error: --keep-logs cannot be"),
        ((), "Error: Missing option '--older-than'"),
    ],
    ids=["unreadable", "future", "keep-logs-with-all", "missing"],
)
def test_prune_command_refuses_bad_input(
    history: Store, db_url: str, args: tuple[str, ...], message: str
) -> None:
    everything = snapshot(history)
    result = tracker(db_url, "prune", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert snapshot(history) == everything


@pytest.mark.parametrize("value", ["soon", "0d", "-5d", "30", "2026-01-01"])
def test_daemon_refuses_a_bad_prune_age(tmp_path: Path, value: str) -> None:
    """Refused before the database is opened, whether given as a flag or a variable."""
    url = f"sqlite:///{tmp_path / 'never-created.db'}"
    flag = tracker(url, "daemon", "--once", f"--prune-older-than={value}")
    runs = [flag]
    if value == "soon":
        runs.append(tracker(url, "daemon", "--once", TRACKER_PRUNE_OLDER_THAN=value))
    for result in runs:
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("Error: Invalid value for '--prune-older-than'")
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "never-created.db").exists()


def test_a_callback_added_after_pruning_still_sends_the_prediction(store: Store) -> None:
    """`raw` is gone after a prune; the `completed` payload is rebuilt from the columns."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    store.add_predictions(["late-1"], now=t0, first_poll_at=t0)
    (state,) = store.claim_due(now=t0, limit=1, owner="me", lease_until=t0 + timedelta(minutes=1))
    body = {
        "id": "late-1",
        "status": "succeeded",
        "model": "acme/m",
        "output": ["https://x/o.png"],
        "created_at": "2026-01-01T00:00:00Z",
        "completed_at": "2026-01-01T00:00:05Z",
    }
    update = plan_observation(state, parse_prediction(body, "late-1"), t0)
    apply_one(store, update, NextPoll(None, None), owner="me")
    with store.engine.begin() as conn:
        conn.execute(text("update predictions set raw = null"))
    store.add_predictions(
        ["late-1"],
        now=t0,
        first_poll_at=t0,
        callbacks_to_add=[CallbackSpec("webhook", "https://example.com/h", ("completed",))],
    )
    (delivery,) = store.list_deliveries()
    with store.engine.connect() as conn:
        payload = json.loads(conn.execute(select(deliveries.c.payload)).scalar_one())
    assert delivery.event == "completed"
    assert payload["id"] == "late-1" and payload["status"] == "succeeded"
    assert payload["output"] == ["https://x/o.png"]
    assert payload["completed_at"] == "2026-01-01T00:00:05Z"
