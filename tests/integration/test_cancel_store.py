"""The store's cancels and deadlines on both engines: a deadline is claimed once however
many claim it at once, its ``deadline`` event queued once with the claim, ``deadline_at``
counted from ``created_at`` as soon as a poll stores it, outcomes never overwrite a
later request."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from tests.apply import apply_one
from tracker.domain import CallbackSpec, CancelState, NextPoll
from tracker.poll.observe import parse_prediction, plan_observation
from tracker.store.store import Store
from tracker.store.tables import deliveries, predictions

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
HOOK = "https://hooks.example.com/h"


def add(store: Store, *ids: str, deadline: float | None = 60.0, **kwargs: object) -> None:
    store.add_predictions(list(ids), now=T0, first_poll_at=T0, deadline=deadline, **kwargs)  # type: ignore[arg-type]


def column(store: Store, pid: str, name: str) -> object:
    with store.engine.connect() as conn:
        return conn.execute(select(predictions.c[name]).where(predictions.c.id == pid)).scalar()


def test_many_claimers_at_once_claim_each_deadline_once(store: Store) -> None:
    ids = [f"p{i:03d}" for i in range(120)]
    add(store, *ids)
    spec = CallbackSpec("webhook", HOOK, ("completed", "deadline"))
    store.add_predictions(ids, now=T0, first_poll_at=T0, callbacks_to_add=[spec])
    claimed: list[list[str]] = []
    start = threading.Barrier(6)

    def claimer() -> None:
        start.wait()
        mine: list[str] = []
        while targets := store.claim_deadlines(now=T0 + timedelta(minutes=2), limit=7).targets:
            mine += [t.prediction_id for t in targets]
        claimed.append(mine)

    threads = [threading.Thread(target=claimer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [pid for mine in claimed for pid in mine]
    assert sorted(every) == ids  # each exactly once
    with store.engine.connect() as conn:
        events = conn.execute(select(deliveries.c.prediction_id, deliveries.c.event)).all()
        reasons = conn.execute(select(predictions.c.cancel_reason).distinct()).scalars().all()
    assert sorted(events) == [(pid, "deadline") for pid in ids]
    assert reasons == ["deadline"]
    assert store.claim_deadlines(now=T0 + timedelta(days=1), limit=500).targets == []


def test_only_passed_deadlines_of_active_predictions_not_cancelled_are_claimed(
    store: Store,
) -> None:
    add(store, "due", "later", "done", "forgotten", "asked")
    add(store, "none", deadline=None)
    store.add_predictions(
        ["later"], now=T0, first_poll_at=T0, deadline=3600.0, deadline_for_known=True
    )
    with store.engine.begin() as conn:
        conn.execute(
            update(predictions)
            .where(predictions.c.id == "done")
            .values(tracking="done", status="succeeded")
        )
    store.forget(["forgotten"])
    store.request_cancel("asked", now=T0)  # a user asked first: no deadline cancel
    claim = store.claim_deadlines(now=T0 + timedelta(seconds=61), limit=10)
    assert [t.prediction_id for t in claim.targets] == ["due"]
    assert claim.deliveries == 0  # no callback wants it
    (target,) = claim.targets
    assert (target.reason, target.requested_at) == ("deadline", T0 + timedelta(seconds=61))
    assert store.next_deadline() == T0 + timedelta(seconds=3600)


def test_a_deadline_cancel_its_daemon_never_answered_is_claimed_again_without_an_event(
    store: Store,
) -> None:
    add(store, "lost", "answered", "ended")
    spec = CallbackSpec("webhook", HOOK, ("deadline",))
    fired = T0 + timedelta(seconds=61)
    first = store.claim_deadlines(now=fired, limit=10, default_callbacks=[spec])
    assert first.deliveries == 3
    target = {t.prediction_id: t for t in first.targets}
    store.record_cancel_outcome(
        target["answered"], state=CancelState.REQUESTED, detail="", poll_at=None
    )
    with store.engine.begin() as conn:
        conn.execute(
            update(predictions)
            .where(predictions.c.id == "ended")
            .values(tracking="done", status="canceled")
        )

    def reclaim(minutes: float) -> list[str]:
        now = fired + timedelta(minutes=minutes)
        since = now - timedelta(minutes=10)
        taken = store.reclaim_deadline_cancels(now=now, unanswered_since=since, limit=10)
        return [t.prediction_id for t in taken]

    assert reclaim(5) == []  # its daemon may still be waiting for the answer
    assert reclaim(11) == ["lost"]
    assert column(store, "lost", "cancel_requested_at") == fired + timedelta(minutes=11)
    assert reclaim(12) == []  # sent again once; the next try in another 10 minutes
    # the old request's late outcome changes nothing; the event stayed one per prediction
    store.record_cancel_outcome(
        target["lost"], state=CancelState.FAILED, detail="late", poll_at=None
    )
    assert column(store, "lost", "cancel_outcome") == "sending"
    with store.engine.connect() as conn:
        assert conn.execute(select(deliveries.c.prediction_id)).scalars().all().count("lost") == 1


def test_the_deadline_event_carries_the_prediction_and_its_deadline(store: Store) -> None:
    add(store, "ev")
    body = {"id": "ev", "status": "processing", "created_at": "2026-11-20T09:59:00Z"}
    claimed = store.claim_due(now=T0, limit=1, owner="o", lease_until=T0 + timedelta(seconds=9))
    update_ = plan_observation(claimed[0], parse_prediction(body, "ev"), T0)
    apply_one(store, update_, NextPoll(T0 + timedelta(seconds=1), 1.0), owner="o")
    spec = CallbackSpec("webhook", HOOK, ("deadline",))
    claim = store.claim_deadlines(now=T0, limit=5, default_callbacks=[spec])
    assert claim.deliveries == 1
    with store.engine.connect() as conn:
        (payload,) = conn.execute(select(deliveries.c.payload)).scalars().all()
    sent = json.loads(payload)
    assert (sent["id"], sent["status"]) == ("ev", "processing")
    assert sent["deadline_at"] == "2026-11-20T10:00:00Z"  # created 09:59 + 60 s
    assert sent["cancel_requested_at"] == "2026-11-20T10:00:00Z"


def test_deadline_counts_from_created_at_once_a_poll_stores_it(store: Store) -> None:
    add(store, "c1", deadline=120.0)
    assert column(store, "c1", "deadline_at") is not None
    created = "2026-11-20T09:58:30Z"  # created upstream before it was registered
    for answer in ({"status": "starting", "created_at": created}, {"status": "processing"}):
        (state,) = store.claim_due(
            now=T0, limit=1, owner="o", lease_until=T0 + timedelta(seconds=9)
        )
        update_ = plan_observation(state, parse_prediction({"id": "c1", **answer}, "c1"), T0)
        apply_one(store, update_, NextPoll(T0, 1.0), owner="o")
    detail = store.get_detail("c1")
    assert detail is not None
    assert detail.prediction.deadline_at == datetime(2026, 11, 20, 10, 0, 30, tzinfo=UTC)
    add(store, "c1", deadline=60.0, deadline_for_known=True)  # again: from created_at
    assert store.get_detail("c1").prediction.deadline_at == datetime(  # type: ignore[union-attr]
        2026, 11, 20, 9, 59, 30, tzinfo=UTC
    )
    add(store, "c1", deadline=None, deadline_for_known=True)  # "none": no deadline
    assert column(store, "c1", "deadline_at") is None
    add(store, "c1", deadline=30.0)  # a default deadline leaves a known ID alone
    assert column(store, "c1", "deadline_at") is None


def test_a_deadline_acted_on_keeps_its_time_when_created_at_arrives_later(store: Store) -> None:
    """An upstream that creates a prediction when it first hears of it (the cancel
    came first) reports a created_at after the deadline fired; the recorded
    deadline stays the one the daemon acted on."""
    add(store, "late", deadline=1.0)
    fired_at = T0 + timedelta(seconds=5)
    (claimed,) = store.claim_deadlines(now=fired_at, limit=5).targets
    assert claimed.prediction_id == "late"
    (state,) = store.claim_due(
        now=fired_at, limit=1, owner="o", lease_until=fired_at + timedelta(seconds=9)
    )
    answer = {"id": "late", "status": "canceled", "created_at": "2026-11-20T10:00:04Z"}
    update_ = plan_observation(state, parse_prediction(answer, "late"), fired_at)
    apply_one(store, update_, NextPoll(fired_at, 1.0), owner="o")
    assert column(store, "late", "deadline_at") == T0 + timedelta(seconds=1)
    assert column(store, "late", "created_at") == T0 + timedelta(seconds=4)


def test_an_outcome_never_overwrites_a_later_request(store: Store) -> None:
    add(store, "o1", deadline=None)
    first = store.request_cancel("o1", now=T0).target
    second = store.request_cancel("o1", now=T0 + timedelta(seconds=5)).target
    assert first is not None and second is not None
    store.record_cancel_outcome(
        second, state=CancelState.REQUESTED, detail="HTTP 200", poll_at=None
    )
    store.record_cancel_outcome(first, state=CancelState.FAILED, detail="late", poll_at=None)
    p = store.get_detail("o1").prediction  # type: ignore[union-attr]
    assert (p.cancel_outcome, p.cancel_detail) == ("requested", "HTTP 200")
    assert p.cancel_requested_at == T0 + timedelta(seconds=5) and p.cancel_reason == "user"


def test_an_accepted_cancel_hurries_the_next_poll_unless_a_daemon_polls_it(store: Store) -> None:
    add(store, "h1", "h2", deadline=None)
    later = T0 + timedelta(hours=1)
    with store.engine.begin() as conn:
        conn.execute(update(predictions).values(next_poll_at=later))
        conn.execute(update(predictions).where(predictions.c.id == "h1").values(next_poll_at=T0))
    (polled,) = store.claim_due(now=T0, limit=1, owner="busy", lease_until=later)
    assert polled.id == "h1"
    soon = T0 + timedelta(seconds=1)
    for pid in ("h1", "h2"):
        target = store.request_cancel(pid, now=T0).target
        assert target is not None
        store.record_cancel_outcome(target, state=CancelState.REQUESTED, detail="", poll_at=soon)
    assert column(store, "h2", "next_poll_at") == soon
    assert column(store, "h1", "next_poll_at") == later  # its claim (lease) is left alone
    assert column(store, "h1", "claimed_by") == "busy"


def test_ended_and_unknown_predictions_record_nothing(store: Store) -> None:
    add(store, "e1", deadline=None)
    with store.engine.begin() as conn:
        conn.execute(update(predictions).values(status="failed", tracking="done"))
    ended = store.request_cancel("e1", now=T0)
    assert (ended.registered, ended.status, ended.target) == (True, "failed", None)
    assert column(store, "e1", "cancel_requested_at") is None
    assert store.request_cancel("nobody", now=T0).registered is False


def test_a_prediction_a_push_registers_gets_the_default_deadline(store: Store) -> None:
    state = store.register_pushed("pushed-1", now=T0, first_poll_at=T0, deadline=300.0)
    assert state.created_at is None
    assert column(store, "pushed-1", "deadline_at") == T0 + timedelta(seconds=300)
    store.register_pushed("plain-2", now=T0, first_poll_at=T0)
    assert column(store, "plain-2", "deadline_at") is None
