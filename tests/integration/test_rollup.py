"""The reports' rollup (migration 0011) equals a recount from the rows after any
sequence of registrations, observations (the daemon's batch write), forgets, re-adds,
prunes and a user's own SQL, on both engines; and the reports read from it agree with
the same reports read from the rows (exactly, but percentiles: within 5 %)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tracker.domain import NextPoll
from tracker.poll.observe import parse_prediction, plan_observation
from tracker.store.reports import ReportFilter
from tracker.store.rollup import BUCKET_ERROR, expected_rows
from tracker.store.store import Store

T0 = datetime(2026, 3, 1, 9, 40, 0, tzinfo=UTC)
IDS = 6
MODELS = ["acme/flux", "acme/video", None]
STATUSES = ["starting", "processing", "succeeded", "failed", "canceled", "aborted", "paused"]

observations = st.tuples(
    st.just("observe"),
    st.integers(0, IDS - 1),
    st.sampled_from(STATUSES),
    st.sampled_from(MODELS),
    st.floats(0, 30, allow_nan=False),  # queue seconds
    st.floats(0, 5000, allow_nan=False),  # run seconds
    st.none() | st.floats(-1e20, 1e20, allow_nan=False),  # predict_time
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, IDS - 1)),
        observations,
        st.tuples(st.just("forget"), st.integers(0, IDS - 1)),
        st.tuples(st.just("prune"), st.integers(0, 600)),
        st.tuples(st.just("sql_status"), st.integers(0, IDS - 1), st.sampled_from(STATUSES)),
        st.tuples(st.just("sql_delete"), st.integers(0, IDS - 1)),
        st.tuples(st.just("wait"), st.integers(1, 90)),
    ),
    max_size=25,
)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Run:
    """One example: its own IDs in a shared database, and a clock in minutes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        prefix = uuid.uuid4().hex[:8]
        self.ids = [f"r{prefix}-{i}" for i in range(IDS)]
        self.now = T0

    def apply(self, op: tuple[Any, ...]) -> None:
        kind, *args = op
        getattr(self, kind)(*args)

    def add(self, i: int) -> None:
        self.store.add_predictions([self.ids[i]], now=self.now, first_poll_at=self.now)

    def observe(
        self, i: int, status: str, model: str | None, queue: float, run: float, pt: float | None
    ) -> None:
        due = self.store.claim_due(
            now=self.now + timedelta(days=365),
            limit=1000,
            owner="prop",
            lease_until=self.now + timedelta(days=366),
        )
        state = next((s for s in due if s.id == self.ids[i]), None)
        try:
            if state is None:
                return
            created = self.now - timedelta(seconds=queue + run)
            body: dict[str, Any] = {
                "id": state.id,
                "status": status,
                "created_at": _iso(created),
                "started_at": _iso(created + timedelta(seconds=queue)),
            }
            if status in ("succeeded", "failed", "canceled", "aborted"):
                body["completed_at"] = _iso(created + timedelta(seconds=queue + run))
            if model is not None:
                body["model"] = model
            if pt is not None:
                body["metrics"] = {"predict_time": pt}
            update = plan_observation(state, parse_prediction(body, state.id), self.now)
            nxt = NextPoll(self.now + timedelta(seconds=1), 1.0)
            self.store.apply_observations([(update, nxt, "prop")])
        finally:
            self.store.release_claims("prop", now=self.now)

    def forget(self, i: int) -> None:
        self.store.forget([self.ids[i]])

    def prune(self, minutes: int) -> None:
        self.store.prune(cutoff=self.now - timedelta(minutes=minutes), delete_predictions=True)

    def sql_status(self, i: int, status: str) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(
                text("UPDATE predictions SET status = :s WHERE id = :id"),
                {"s": status, "id": self.ids[i]},
            )

    def sql_delete(self, i: int) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(text("DELETE FROM predictions WHERE id = :id"), {"id": self.ids[i]})

    def wait(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)


def assert_rollup_is_a_recount(store: Store) -> None:
    with store.engine.connect() as conn:
        found = expected_rows(conn)
    assert found["counts"] == found["expected_counts"]
    assert found["buckets"] == found["expected_buckets"]


def approx_models(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            k: pytest.approx(v, rel=BUCKET_ERROR, abs=1e-3)
            if v is not None and k.endswith(("_p50", "_p95"))
            else v
            for k, v in row.items()
        }
        for row in rows
    ]


def assert_reports_agree(store: Store, flt: ReportFilter) -> None:
    assert store.report_status(flt) == store.report_status_from_rows(flt)
    assert store.report_daily(flt) == store.report_daily_from_rows(flt)
    by_model = {r["model"]: r for r in store.report_models(flt)}
    exact = store.report_models_from_rows(flt)
    assert set(by_model) == {r["model"] for r in exact}
    for row in exact:
        assert by_model[row["model"]] == approx_models([row])[0]


@pytest.fixture
def store(db_url: str) -> Any:
    s = Store.from_url(db_url)
    yield s
    s.close()


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations, since=st.integers(-30, 300), span=st.integers(1, 400))
def test_rollup_equals_a_recount_after_any_writes(
    store: Store, ops: list[tuple[Any, ...]], since: int, span: int
) -> None:
    run = Run(store)
    for op in ops:
        run.apply(op)
        if op[0] in ("observe", "prune", "sql_delete"):
            assert_rollup_is_a_recount(store)
    assert_rollup_is_a_recount(store)
    assert_reports_agree(store, ReportFilter())
    start = T0 + timedelta(minutes=since)
    assert_reports_agree(store, ReportFilter(since=start, until=start + timedelta(minutes=span)))
    assert_reports_agree(store, ReportFilter(since=start, model="acme/flux"))


def rollup_rows(store: Store) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT model, status, tracking, predictions, run_seconds_n, run_seconds_sum"
                " FROM prediction_rollup ORDER BY tracking"
            )
        ).all()
    return [tuple(r) for r in rows]


def test_the_terminal_transition_moves_a_prediction_into_the_rollup(store: Store) -> None:
    run = Run(store)
    run.add(0)
    assert rollup_rows(store) == []  # active: counted from the row
    run.forget(0)  # active -> forgotten: settled
    assert rollup_rows(store) == [("", "", "forgotten", 1, 0, 0.0)]
    run.add(0)  # tracked again: active, out of the rollup
    assert rollup_rows(store) == []
    run.wait(5)
    run.observe(0, "succeeded", "acme/flux", 2.0, 20.0, 19.5)
    assert rollup_rows(store) == [("acme/flux", "succeeded", "done", 1, 1, 20.0)]
    run.wait(1)
    run.prune(0)  # deleted with --all: out of the rollup
    assert rollup_rows(store) == []
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM prediction_rollup_buckets")).scalar() == 0


def test_hostile_predict_times_are_clamped_and_the_rollup_stays_exact(store: Store) -> None:
    run = Run(store)
    for i, pt in enumerate((1e300, -1e300, 5e-324)):
        run.add(i)
        run.observe(i, "succeeded", "acme/flux", 1.0, 2.0, 1.0)
        with store.engine.begin() as conn:  # past what the daemon keeps of an answer
            conn.execute(
                text("UPDATE predictions SET predict_time = :pt WHERE id = :id"),
                {"pt": pt, "id": run.ids[i]},
            )
    assert_rollup_is_a_recount(store)
    (row,) = store.report_models(ReportFilter(model="acme/flux"))
    assert row["predictions"] == 3 and row["predict_time_p95"] == pytest.approx(9e14)
    run.sql_delete(0)
    run.sql_delete(1)
    assert_rollup_is_a_recount(store)
    (row,) = store.report_models(ReportFilter(model="acme/flux"))
    assert row["predict_time_mean"] == 0.0
