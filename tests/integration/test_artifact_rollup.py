"""The archive's rollup (migration 0014) equals a recount from the rows after any
sequence of writes to files and predictions: files found, stored (through the store,
as the daemon records them), failed, moved to another day, deleted; predictions whose
model or registration time changes, forgotten and pruned, deleted by hand; on both
engines. And `tracker report archive` read from it equals the same report counted from
the rows, for any window."""

from __future__ import annotations

import math
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from tracker.domain import ArtifactJob
from tracker.store.reports import ReportFilter
from tracker.store.store import Store
from tracker.store.tables import artifact_rollup, artifacts, predictions

T0 = datetime(2026, 3, 1, 22, 40, 0, tzinfo=UTC)
IDS = 4
MODELS = ["acme/flux", "acme/video", None]
COUNTS = ("predictions", "files", "stored", "failed", "pending", "stored_bytes")

index = st.integers(0, IDS - 1)
position = st.integers(0, 2)
nth = st.integers(0, 20)  #: the nth file of the example (modulo how many there are)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), index),
        st.tuples(st.just("files"), index, st.lists(position, min_size=1, max_size=3)),
        st.tuples(st.just("stored"), nth, st.integers(0, 10**12)),
        st.tuples(st.just("fail"), nth),
        st.tuples(st.just("sql_day"), nth, st.integers(-2, 2)),
        st.tuples(st.just("sql_model"), index, st.sampled_from([*MODELS, ""])),
        st.tuples(st.just("sql_registered"), index, st.integers(-3000, 3000)),
        st.tuples(st.just("sql_delete_file"), nth),
        st.tuples(st.just("sql_delete"), index),
        st.tuples(st.just("forget_and_prune"), index),
        st.tuples(st.just("wait"), st.integers(1, 1500)),
    ),
    max_size=30,
)


class Run:
    """One example: its own IDs in a shared database, and a clock."""

    def __init__(self, store: Store) -> None:
        self.store = store
        prefix = uuid.uuid4().hex[:8]
        self.ids = [f"a{prefix}-{i}" for i in range(IDS)]
        self.now = T0

    def apply(self, op: tuple[Any, ...]) -> None:
        kind, *args = op
        getattr(self, kind)(*args)

    def add(self, i: int) -> None:
        self.store.add_predictions([self.ids[i]], now=self.now, first_poll_at=self.now)

    def files(self, i: int, positions: list[int]) -> None:
        found = [(p, f"https://files.example/{self.ids[i]}/{p}.png") for p in positions]
        if not self._known(i):
            self.add(i)
        self.store.add_artifacts([(self.ids[i], found, self.now)])

    def stored(self, n: int, size: int) -> None:
        row = self._file(n)
        if row is None or row.state != "pending":
            return
        owner = "prop"
        with self.store.engine.begin() as conn:  # claimed, as the archiver holds it
            conn.execute(
                artifacts.update().where(artifacts.c.id == row.id).values(claimed_by=owner)
            )
        job = ArtifactJob(
            row.id, row.prediction_id, row.position, row.source_url, 0, row.created_at
        )
        kept, _ = self.store.artifact_stored(
            job,
            owner=owner,
            now=self.now,
            stored_url=f"file:///archive/{row.id}",
            size=size,
            sha256="0" * 64,
            content_type="image/png",
        )
        assert kept

    def fail(self, n: int) -> None:
        self._sql("UPDATE artifacts SET state = 'failed' WHERE id = :a", n)

    def sql_day(self, n: int, days: int) -> None:
        row = self._file(n)
        if row is not None:
            with self.store.engine.begin() as conn:
                conn.execute(
                    artifacts.update()
                    .where(artifacts.c.id == row.id)
                    .values(created_at=row.created_at + timedelta(days=days))
                )

    def sql_model(self, i: int, model: str | None) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(
                predictions.update().where(predictions.c.id == self.ids[i]).values(model=model)
            )

    def sql_registered(self, i: int, minutes: int) -> None:
        moved = self.now + timedelta(minutes=minutes)
        with self.store.engine.begin() as conn:
            conn.execute(
                predictions.update()
                .where(predictions.c.id == self.ids[i])
                .values(registered_at=moved)
            )

    def sql_delete_file(self, n: int) -> None:
        self._sql("DELETE FROM artifacts WHERE id = :a", n)

    def sql_delete(self, i: int) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(text("DELETE FROM predictions WHERE id = :id"), {"id": self.ids[i]})

    def forget_and_prune(self, i: int) -> None:
        self.store.forget([self.ids[i]])
        with self.store.engine.begin() as conn:  # finished long ago: the prune takes it
            conn.execute(
                predictions.update()
                .where(predictions.c.id == self.ids[i])
                .values(status="succeeded", completed_at=T0 - timedelta(days=30))
            )
        self.store.prune(cutoff=T0 - timedelta(days=29), delete_predictions=True)

    def wait(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    def _known(self, i: int) -> bool:
        with self.store.engine.connect() as conn:
            found = conn.execute(select(predictions.c.id).where(predictions.c.id == self.ids[i]))
            return found.first() is not None

    def _file(self, n: int) -> Any:
        """The nth file of this example's predictions (modulo their number), or None."""
        query = select(artifacts).where(artifacts.c.prediction_id.in_(self.ids))
        with self.store.engine.connect() as conn:
            rows = conn.execute(query.order_by(artifacts.c.id)).all()
        return rows[n % len(rows)] if rows else None

    def _sql(self, statement: str, n: int) -> None:
        row = self._file(n)
        if row is not None:
            with self.store.engine.begin() as conn:
                conn.execute(text(statement), {"a": row.id})


def counts(*values: int) -> dict[str, int]:
    """A row of counts: predictions, files, stored, failed, pending, stored_bytes."""
    return dict(zip(COUNTS, values, strict=True))


def _period(moment: datetime, seconds: int) -> int:
    return math.floor(moment.timestamp() / seconds)


def recount(store: Store) -> dict[tuple[Any, ...], dict[str, int]]:
    """The rollup as it should be, counted in Python from the rows."""
    query = select(
        artifacts.c.prediction_id,
        artifacts.c.state,
        artifacts.c.bytes,
        artifacts.c.created_at,
        predictions.c.model,
        predictions.c.registered_at,
    ).join_from(artifacts, predictions, predictions.c.id == artifacts.c.prediction_id)
    found: dict[tuple[Any, ...], Counter[str]] = {}
    seen: set[tuple[Any, ...]] = set()
    with store.engine.connect() as conn:
        for row in conn.execute(query):
            key = (
                _period(row.registered_at, 3600),
                row.model or "",
                _period(row.created_at, 86400),
            )
            counts = found.setdefault(key, Counter())
            counts["files"] += 1
            counts[row.state] += 1
            counts["stored_bytes"] += row.bytes or 0 if row.state == "stored" else 0
            if (key, row.prediction_id) not in seen:
                seen.add((key, row.prediction_id))
                counts["predictions"] += 1
    return {key: {c: counts[c] for c in COUNTS} for key, counts in found.items()}


def rollup(store: Store) -> dict[tuple[Any, ...], dict[str, int]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(artifact_rollup)).mappings().all()
    return {
        (row["registered_hour"], row["model"], row["day"]): {c: int(row[c]) for c in COUNTS}
        for row in rows  # empty rows included: none may stay
    }


def assert_rollup_is_a_recount(store: Store) -> None:
    assert rollup(store) == recount(store)


def assert_report_agrees(store: Store, flt: ReportFilter) -> None:
    assert store.report_archive(flt) == store.report_archive_from_rows(flt)


@pytest.fixture
def store(db_url: str) -> Any:
    s = Store.from_url(db_url)
    with s.engine.begin() as conn:  # examples share the database: start from none
        conn.execute(text("DELETE FROM predictions"))
    yield s
    s.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations, since=st.integers(-120, 3000), span=st.integers(1, 4000))
def test_archive_rollup_equals_a_recount_after_any_writes(
    store: Store, ops: list[tuple[Any, ...]], since: int, span: int
) -> None:
    run = Run(store)
    for op in ops:
        run.apply(op)
        assert_rollup_is_a_recount(store)
    assert_report_agrees(store, ReportFilter())
    start = T0 + timedelta(minutes=since)
    assert_report_agrees(store, ReportFilter(since=start, until=start + timedelta(minutes=span)))
    assert_report_agrees(store, ReportFilter(since=start, model="acme/flux"))
    assert_report_agrees(store, ReportFilter(until=start))


def test_files_of_one_prediction_on_two_days_count_it_on_each(store: Store) -> None:
    run = Run(store)
    run.add(0)
    run.files(0, [0, 1])
    run.sql_day(1, 1)
    rows = store.report_archive(ReportFilter())
    assert [(r["day"], r["predictions"], r["files"]) for r in rows] == [
        ("2026-03-01", 1, 1),
        ("2026-03-02", 1, 1),
    ]
    run.sql_day(1, -1)  # both on the first day again: one prediction, two files
    rows = store.report_archive(ReportFilter())
    assert [(r["day"], r["predictions"], r["files"]) for r in rows] == [("2026-03-01", 1, 2)]
    assert_rollup_is_a_recount(store)


def test_deleting_a_prediction_takes_its_files_out_of_the_rollup(store: Store) -> None:
    run = Run(store)
    run.add(0)
    run.add(1)
    run.files(0, [0, 1, 2])
    run.files(1, [0])
    run.stored(0, 500)
    run.sql_delete(0)
    assert rollup(store) == {(_period(T0, 3600), "", _period(T0, 86400)): counts(1, 1, 0, 0, 1, 0)}
    run.sql_delete(1)
    assert rollup(store) == {}


def test_a_model_named_empty_counts_as_none_in_both_reports(store: Store) -> None:
    run = Run(store)
    run.files(0, [0])
    run.files(1, [0])
    run.sql_model(0, "")  # only by hand: counted with the predictions without a model
    assert store.report_archive(ReportFilter()) == store.report_archive_from_rows(ReportFilter())
    assert [(r["model"], r["predictions"]) for r in store.report_archive(ReportFilter())] == [
        (None, 2)
    ]
