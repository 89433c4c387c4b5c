"""The store's operations on real SQLite files and real PostgreSQL databases."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests.apply import apply_one
from tracker.domain import NextPoll, PredictionState
from tracker.exceptions import StaleObservation
from tracker.poll.observe import parse_prediction, plan_observation
from tracker.poll.runtimes import RunTimes
from tracker.store.enqueue import EventBatch, Handoff, enqueue_deliveries
from tracker.store.reports import ReportFilter
from tracker.store.store import CallbackSpec, Store
from tracker.timeparse import utcnow

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def add(store: Store, *ids: str, at: datetime = T0, **kwargs: object) -> None:
    store.add_predictions(list(ids), now=at, first_poll_at=at, **kwargs)  # type: ignore[arg-type]


def claim(
    store: Store, now: datetime = T0, limit: int = 100, owner: str = "me"
) -> list[PredictionState]:
    return store.claim_due(
        now=now, limit=limit, owner=owner, lease_until=now + timedelta(seconds=60)
    )


def observe(store: Store, st: PredictionState, body: dict, at: datetime, owner: str | None = "me"):  # type: ignore[no-untyped-def]
    update = plan_observation(st, parse_prediction(body, st.id), at)
    apply_one(store, update, NextPoll(at + timedelta(seconds=1), 1.0), owner=owner)
    return update


def scalar(store: Store, sql: str, **params: object) -> object:
    with store.engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def test_add_is_idempotent_and_merges_labels_and_callbacks(store: Store) -> None:
    first = store.add_predictions(
        ["a", "b", "a"],
        now=T0,
        first_poll_at=T0,
        labels={"team": "x"},
        callbacks_to_add=[CallbackSpec("webhook", "http://h/1", ("completed",))],
    )
    assert (first.added, first.already_known, first.callbacks_added) == (2, 0, 2)
    second = store.add_predictions(
        ["a", "c"],
        now=T0,
        first_poll_at=T0,
        labels={"env": "prod"},
        callbacks_to_add=[CallbackSpec("webhook", "http://h/1", ("start",))],
    )
    assert (second.added, second.already_known, second.callbacks_added) == (1, 1, 1)
    assert scalar(store, "select count(*) from predictions") == 3
    detail = store.get_detail("a")
    assert detail is not None
    assert detail.prediction.labels == {"team": "x", "env": "prod"}
    assert [(c.kind, c.target, c.events) for c in detail.callbacks] == [
        ("webhook", "http://h/1", "start,completed")
    ]


def test_full_lifecycle_is_recorded(store: Store) -> None:
    add(store, "p1")
    (st,) = claim(store)
    assert st.status is None and st.log_seq == 0
    observe(store, st, {"id": "p1", "status": "starting", "created_at": "2026-03-01T11:59:59Z"}, T0)
    (st,) = claim(store, T0 + timedelta(seconds=2))
    observe(
        store,
        st,
        {"status": "processing", "logs": "one\n", "started_at": "2026-03-01T12:00:01.5Z"},
        T0 + timedelta(seconds=2),
    )
    (st,) = claim(store, T0 + timedelta(seconds=4))
    assert st.logs == "one\n" and st.log_seq == 1
    observe(
        store,
        st,
        {
            "status": "succeeded",
            "logs": "one\ntwo ✓\n",
            "output": ["https://x/out.png"],
            "metrics": {"predict_time": 2.5, "image_count": 1},
            "completed_at": "2026-03-01T12:00:04Z",
            "data_removed": False,
            "model": "acme/model",
            "input": {"prompt": "hi"},
            "urls": {"get": "https://x/p1"},
        },
        T0 + timedelta(seconds=4),
    )
    detail = store.get_detail("p1")
    assert detail is not None
    p = detail.prediction
    assert (p.status, p.tracking, p.model, p.predict_time) == (
        "succeeded",
        "done",
        "acme/model",
        2.5,
    )
    assert p.output == ["https://x/out.png"]
    assert p.metrics == {"predict_time": 2.5, "image_count": 1}
    assert p.input == {"prompt": "hi"} and p.urls == {"get": "https://x/p1"}
    assert p.next_poll_at is None and p.poll_count == 3
    assert p.started_at == datetime(2026, 3, 1, 12, 0, 1, 500000, tzinfo=UTC)
    assert p.completed_at is not None and p.completed_at.tzinfo is not None
    assert [(t.from_status, t.to_status) for t in detail.transitions] == [
        (None, "starting"),
        ("starting", "processing"),
        ("processing", "succeeded"),
    ]
    assert detail.transitions[2].upstream_at == datetime(2026, 3, 1, 12, 0, 4, tzinfo=UTC)
    assert "".join(c.text for c in detail.logs) == p.logs == "one\ntwo ✓\n"
    assert [c.seq for c in detail.logs] == [1, 2]
    assert claim(store, T0 + timedelta(days=1)) == []  # done: never due again


def test_json_columns_hold_real_json(store: Store) -> None:
    add(store, "j1")
    (st,) = claim(store)
    observe(store, st, {"status": "succeeded", "metrics": {"predict_time": 1.25}}, T0)
    if store.dialect == "postgresql":
        sql = "select (metrics->>'predict_time')::float from predictions where id = 'j1'"
    else:
        sql = "select json_extract(metrics, '$.predict_time') from predictions where id = 'j1'"
    assert scalar(store, sql) == 1.25


def test_timestamps_are_utc_in_sql(store: Store) -> None:
    add(store, "t1", at=datetime(2026, 3, 1, 14, 0, tzinfo=UTC))
    if store.dialect == "postgresql":
        sql = "select to_char(registered_at at time zone 'UTC', 'HH24:MI') from predictions"
    else:
        sql = "select strftime('%H:%M', registered_at) from predictions"
    assert scalar(store, sql) == "14:00"


def test_the_same_answer_twice_adds_nothing(store: Store) -> None:
    add(store, "p1")
    (st,) = claim(store)
    body = {"status": "processing", "logs": "x\n"}
    update = plan_observation(st, parse_prediction(body, "p1"), T0)
    apply_one(store, update, NextPoll(T0, 1.0), owner="me")
    with pytest.raises(StaleObservation):
        apply_one(store, update, NextPoll(T0, 1.0))
    assert scalar(store, "select count(*) from status_transitions") == 1
    assert scalar(store, "select count(*) from prediction_logs") == 1


def test_an_answer_from_a_lost_claim_is_dropped(store: Store) -> None:
    add(store, "p1")
    (st,) = claim(store, owner="old")
    store.release_claims(None, now=T0)
    (_,) = claim(store, owner="new")
    with pytest.raises(StaleObservation):
        observe(store, st, {"status": "starting"}, T0, owner="old")
    assert scalar(store, "select count(*) from status_transitions") == 0


def test_claim_takes_due_rows_earliest_first_and_only_once(store: Store) -> None:
    for i in range(5):
        add(store, f"p{i}", at=T0 + timedelta(seconds=i))
    add(store, "later", at=T0 + timedelta(hours=1))
    now = T0 + timedelta(seconds=10)
    first = claim(store, now, limit=3)
    assert [s.id for s in first] == ["p0", "p1", "p2"] or sorted(s.id for s in first) == [
        "p0",
        "p1",
        "p2",
    ]
    rest = claim(store, now, limit=10, owner="other")
    assert sorted(s.id for s in rest) == ["p3", "p4"]
    assert claim(store, now) == []
    # A dead owner's lease runs out and the rows become due again.
    assert len(claim(store, now + timedelta(seconds=61))) == 5


def test_release_claims_of_one_owner(store: Store) -> None:
    add(store, "a", "b")
    claim(store, limit=1, owner="x")
    claim(store, limit=1, owner="y")
    assert store.release_claims("x", now=T0) == 1
    assert [s.id for s in claim(store, owner="z")] != []


def test_forgotten_and_lost_rows_are_not_polled(store: Store) -> None:
    add(store, "f", "g")
    assert store.forget(["f", "nope"]) == ["f"]
    assert [s.id for s in claim(store)] == ["g"]
    detail = store.get_detail("f")
    assert detail is not None and detail.prediction.tracking == "forgotten"


def test_not_found_becomes_lost_after_count_and_window(store: Store) -> None:
    add(store, "gone")
    now = T0
    results = []
    for step in range(7):
        now = T0 + timedelta(seconds=15 * step)
        claim(store, now)
        results.append(
            store.record_not_found(
                "gone",
                now=now,
                detail="HTTP 404",
                next_poll=NextPoll(now, None),
                lost_after=3,
                lost_window=timedelta(seconds=60),
                owner="me",
            )
        )
        if results[-1]:
            break
    # the 3rd 404 comes 30 s after the first: too soon; the 5th is 60 s after it
    assert results == [False, False, False, False, True]
    detail = store.get_detail("gone")
    assert detail is not None
    assert detail.prediction.tracking == "lost"
    assert detail.prediction.error_count == 5
    assert claim(store, now + timedelta(hours=1)) == []


def test_a_good_answer_resets_the_not_found_streak(store: Store) -> None:
    add(store, "p")
    (st,) = claim(store)
    store.record_not_found(
        "p",
        now=T0,
        detail="404",
        next_poll=NextPoll(T0, None),
        lost_after=2,
        lost_window=timedelta(0),
        owner="me",
    )
    (st,) = claim(store, T0)
    assert st.not_found_count == 1
    observe(store, st, {"status": "starting"}, T0)
    (st,) = claim(store, T0 + timedelta(seconds=5))
    assert st.not_found_count == 0 and st.not_found_since is None


def test_poll_errors_are_counted_and_kept(store: Store) -> None:
    add(store, "e")
    (st,) = claim(store)
    store.record_poll_error(
        "e",
        now=T0,
        detail="HTTP 502: bad gateway",
        next_poll=NextPoll(T0, None),
        owner="me",
        raw={"created": 1, "data": []},
    )
    (st,) = claim(store)
    assert st.consecutive_errors == 1 and st.error_count == 1
    detail = store.get_detail("e")
    assert detail is not None and detail.prediction.last_error == "HTTP 502: bad gateway"
    assert scalar(store, "select count(*) from predictions where raw is not null") == 1


def test_list_filters(store: Store) -> None:
    add(store, "a", "b", "c")
    for st in claim(store):
        status = {"a": "succeeded", "b": "processing", "c": "failed"}[st.id]
        observe(store, st, {"status": status, "model": f"m/{st.id}"}, T0)
    assert [p.id for p in store.list_predictions(statuses=["failed", "succeeded"])] == ["a", "c"]
    assert [p.id for p in store.list_predictions(active_only=True)] == ["b"]
    assert [p.id for p in store.list_predictions(model="m/c")] == ["c"]
    assert len(store.list_predictions(limit=2)) == 2
    assert store.count_active() == 1


def test_add_many_ids_in_batches(store: Store) -> None:
    ids = [f"bulk-{i}" for i in range(12_000)]
    result = store.add_predictions(ids, now=T0, first_poll_at=T0)
    assert result.added == 12_000
    assert store.count_active() == 12_000


def test_due_query_uses_the_partial_index(store: Store) -> None:
    ids = [f"p{i}" for i in range(2000)]
    store.add_predictions(ids, now=T0, first_poll_at=T0)
    with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            conn.execute(text("analyze predictions"))
            conn.execute(text("set enable_seqscan = off"))
            plan = "\n".join(
                r[0]
                for r in conn.execute(
                    text(
                        "explain select id from predictions where tracking = 'active'"
                        " and next_poll_at <= now() order by next_poll_at limit 10"
                    )
                )
            )
        else:
            plan = "\n".join(
                str(r[-1])
                for r in conn.execute(
                    text(
                        "explain query plan select id from predictions where tracking = 'active'"
                        " and next_poll_at <= '2030-01-01' order by next_poll_at limit 10"
                    )
                )
            )
    assert "ix_predictions_due" in plan


def test_delivery_claims_cap_each_receiver_and_pass_over_busy_ones(store: Store) -> None:
    """A receiver with a backlog gets at most ``per_target`` per claim, the others still
    get theirs, busy receivers and other kinds are left out, nothing is taken twice."""
    owners = {"a": 10, "b": 3}
    for receiver, count in owners.items():
        hook = [CallbackSpec("webhook", f"http://{receiver}/", ("completed",))]
        for i in range(count):
            add(store, f"{receiver}{i}", callbacks_to_add=hook)
    add(store, "m0", callbacks_to_add=[CallbackSpec("email", "ops@example.com", ("completed",))])
    with store.engine.begin() as conn:
        for i, pid in enumerate([*(f"a{i}" for i in range(10)), "b0", "b1", "b2", "m0"]):
            batch = [EventBatch(pid, ["completed"], {"id": pid}, T0 + timedelta(seconds=i))]
            enqueue_deliveries(conn, batch)

    def claim_hooks(limit: int, skip: tuple[str, ...] = ()) -> list[str]:
        now = T0 + timedelta(minutes=1)
        jobs = store.claim_deliveries(
            now=now,
            limit=limit,
            owner="me",
            lease_until=now + timedelta(minutes=5),
            kinds=("webhook",),
            skip_targets=skip,
            per_target=2,
        )
        return [job.prediction_id for job in jobs]

    assert claim_hooks(5) == ["a0", "a1", "b0", "b1"]
    assert claim_hooks(5, skip=("http://a/",)) == ["b2"]
    assert claim_hooks(1) == ["a2"]
    assert claim_hooks(100) == ["a3", "a4"]
    assert claim_hooks(100) == ["a5", "a6"]
    assert scalar(store, "select count(*) from deliveries where claimed_by = 'me'") == 10


def test_learned_run_times_keep_the_newest_when_the_window_is_full(store: Store) -> None:
    """Run times come back oldest first, so a bounded window fed in order ends up
    holding the most recent completions, not the first ones ever stored."""
    ids = [f"r{i}" for i in range(60)]
    add(store, *ids)
    with store.engine.begin() as conn:
        for i, pid in enumerate(ids):
            seconds = 10 if i < 30 else 100  # the model got slower
            conn.execute(
                text(
                    "update predictions set status = 'succeeded', model = 'm',"
                    " created_at = :created, completed_at = :completed where id = :id"
                ),
                {
                    "id": pid,
                    "created": T0 + timedelta(minutes=i),
                    "completed": T0 + timedelta(minutes=i, seconds=seconds),
                },
            )
    samples = store.recent_run_times()
    assert samples["m"] == [10.0] * 30 + [100.0] * 30
    times = RunTimes(window=25, min_samples=20)
    times.load(samples)
    assert times.likely_window("m") == (100.0, 100.0, 100.0)


def test_sqlite_reads_do_not_wait_for_a_writer(sqlite_url: str) -> None:
    """While a daemon holds SQLite's write lock, listings, status and reports still
    answer at once (WAL readers need no lock); writers queue behind it."""
    store = Store.from_url(sqlite_url)
    add(store, "a", "b")
    writer = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    answers: list[object] = []

    def read() -> None:
        answers.append(len(store.list_predictions()))
        answers.append(store.health(now=T0, live_within=timedelta(seconds=30)).active_predictions)
        answers.append(store.report_status(ReportFilter()))
        answers.append(store.get_detail("a") is not None)

    reader = threading.Thread(target=read)
    try:
        reader.start()
        reader.join(5)
        assert not reader.is_alive(), "a read waited for the write lock"
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        reader.join()
        store.close()
    assert answers[:2] == [2, 2]
    assert answers[3] is True


def test_postgresql_sessions_cannot_sit_in_a_transaction_forever(pg_url: str) -> None:
    """A frozen process must not hold row locks past its leases: the server ends a
    tracker session idle inside a transaction after 30 s."""
    store = Store.from_url(pg_url)
    try:
        with store.engine.connect() as conn:
            setting = conn.execute(text("show idle_in_transaction_session_timeout")).scalar()
    finally:
        store.close()
    assert setting == "30s"


def plan(st: PredictionState, body: dict, at: datetime = T0) -> tuple:  # type: ignore[type-arg]
    update = plan_observation(st, parse_prediction(body, st.id), at)
    return (update, NextPoll(at + timedelta(seconds=1), 1.0), "me")


def test_a_batch_of_observations_is_written_together(store: Store) -> None:
    """Different changed columns, transitions, log chunks and callbacks in one batch:
    each observation lands whole and queues its own deliveries."""
    hook = [CallbackSpec("webhook", "http://h/", ("start", "completed"))]
    add(store, "a", "b", callbacks_to_add=hook)
    add(store, "c")
    states = {st.id: st for st in claim(store)}
    results = store.apply_observations(
        [
            plan(states["a"], {"status": "processing", "logs": "x\n"}),
            plan(states["b"], {"status": "succeeded", "output": "o", "logs": "y\n"}),
            plan(states["c"], {"status": "starting"}),
        ]
    ).results
    assert results == [1, 2, 0]  # a: start; b: start and completed; c: no callbacks
    transitions = "select prediction_id, to_status from status_transitions order by 1"
    with store.engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(text(transitions))] == [
            ("a", "processing"),
            ("b", "succeeded"),
            ("c", "starting"),
        ]
        logs = conn.execute(text("select prediction_id, text from prediction_logs order by 1"))
        assert [tuple(r) for r in logs] == [("a", "x\n"), ("b", "y\n")]
        events = conn.execute(text("select prediction_id, event from deliveries order by 1, 2"))
        assert [tuple(r) for r in events] == [("a", "start"), ("b", "completed"), ("b", "start")]
    assert store.get_detail("b").prediction.tracking == "done"  # type: ignore[union-attr]


def test_a_stale_observation_in_a_batch_is_dropped_alone(store: Store) -> None:
    """One row of a batch changed since it was read: that answer is dropped, the
    others are written once, and nothing of the stale one leaks in."""
    add(store, "a", "b", "c")
    states = {st.id: st for st in claim(store)}
    observe(store, states["b"], {"status": "processing"}, T0)  # b moved on meanwhile
    (fresh_b,) = claim(store, T0 + timedelta(seconds=5))
    results = store.apply_observations(
        [
            plan(states["a"], {"status": "starting"}),
            plan(states["b"], {"status": "starting", "logs": "old\n"}),
            plan(states["c"], {"status": "starting"}),
        ]
    ).results
    assert results[0] == 0 and results[2] == 0
    assert isinstance(results[1], StaleObservation)
    assert fresh_b.status == "processing"
    with store.engine.connect() as conn:
        rows = conn.execute(
            text("select prediction_id, to_status from status_transitions order by 1, id")
        )
        assert [tuple(r) for r in rows] == [
            ("a", "starting"),
            ("b", "processing"),
            ("c", "starting"),
        ]
        assert conn.execute(text("select count(*) from prediction_logs")).scalar() == 0


def test_deliveries_can_be_handed_to_the_writer_as_they_are_queued(store: Store) -> None:
    """With a hand-off, the write claims the deliveries the outbox has room for (per
    receiver and in all, its kinds only) and returns them ready to send; the rest
    stay pending for the usual claim."""
    hooks = [
        CallbackSpec("webhook", "http://a/", ("completed",)),
        CallbackSpec("webhook", "http://b/", ("completed",)),
        CallbackSpec("email", "ops@example.com", ("completed",)),
    ]
    add(store, "p1", "p2", "p3", callbacks_to_add=hooks)
    handoff = Handoff(
        owner="me",
        lease=timedelta(minutes=1),
        kinds=frozenset({"webhook"}),
        total=3,
        default_room=2,
        room={"http://b/": 1},
    )
    states = {st.id: st for st in claim(store)}
    applied = store.apply_observations(
        [plan(states[pid], {"status": "succeeded", "output": pid}) for pid in ("p1", "p2", "p3")],
        handoff=handoff,
    )
    handed = sorted((job.prediction_id, job.target) for job in applied.handed_off)
    assert handed == [("p1", "http://a/"), ("p1", "http://b/"), ("p2", "http://a/")]
    assert applied.results == [1, 2, 3]  # left pending: the email, and what had no room
    with store.engine.connect() as conn:
        claimed = conn.execute(
            text("select id, message_id from deliveries where claimed_by = 'me' order by id")
        ).all()
        pending = conn.execute(
            text("select count(*) from deliveries where claimed_by is null and state = 'pending'")
        ).scalar()
    assert sorted((j.id, j.message_id) for j in applied.handed_off) == [tuple(r) for r in claimed]
    assert pending == 6
    job = applied.handed_off[0]
    assert (job.kind, job.event, job.attempts) == ("webhook", "completed", 0)
    assert json.loads(job.payload)["status"] == "succeeded"
    # The pending ones are claimed as usual; the handed-off ones are leased from the
    # moment they were written, so they are not due again for a minute.
    later = utcnow() + timedelta(seconds=30)
    rest = store.claim_deliveries(
        now=later, limit=100, owner="other", lease_until=later + timedelta(minutes=1)
    )
    assert len(rest) == 6


def test_start_fires_once_even_when_upstream_goes_back_to_starting(store: Store) -> None:
    add(store, "p1", callbacks_to_add=[CallbackSpec("webhook", "http://h/", ("start",))])
    running = {"status": "processing", "started_at": "2026-03-01T12:00:01Z"}
    for step, body in enumerate([running, {"status": "starting"}, running]):
        at = T0 + timedelta(seconds=2 * step)
        (st,) = claim(store, at + timedelta(seconds=1))
        observe(store, st, body, at + timedelta(seconds=1))
    assert scalar(store, "select count(*) from status_transitions") == 3
    assert scalar(store, "select count(*) from deliveries where event = 'start'") == 1


def test_counting_dead_deliveries_uses_their_partial_index(store: Store) -> None:
    """`tracker status` counts dead deliveries without reading the whole table."""
    query = "select count(*) from deliveries where state = :state"
    with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            conn.execute(text("set enable_seqscan = off"))
            rows = conn.execute(text("explain " + query), {"state": "dead"})
            plan = "\n".join(r[0] for r in rows)
        else:
            rows = conn.execute(text("explain query plan " + query), {"state": "dead"})
            plan = "\n".join(str(r[-1]) for r in rows)
    assert "ix_deliveries_dead" in plan
