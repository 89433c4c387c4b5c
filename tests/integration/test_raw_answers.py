"""``predictions.raw`` keeps no second copy of an answer's logs (migration 0015), and
everything that reads it gets the answer back as received, on both engines."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from tests.apply import apply_one
from tracker.domain import CallbackSpec, NextPoll
from tracker.poll.observe import parse_prediction, plan_observation
from tracker.store.enqueue import payload_text, prediction_object
from tracker.store.store import Store

T0 = datetime(2026, 12, 8, 4, 0, tzinfo=UTC)
HOOK = CallbackSpec("webhook", "https://hooks.example.com/h", ("completed",))
LATE_HOOK = CallbackSpec("webhook", "https://hooks.example.com/late", ("completed",))
LOGS = "loading\n" + "".join(f"step {i}/20 | {i * 5}% | 4.5 it/s\n" for i in range(1, 21))


def answer(pid: str, status: str, **fields: Any) -> dict[str, Any]:
    """An answer in Replicate's key order, with ``logs`` in the middle."""
    return {
        "id": pid,
        "model": "acme/flux",
        "status": status,
        "input": {"prompt": "ä poster", "steps": 20},
        "logs": fields.pop("logs", LOGS),
        "output": fields.pop("output", None),
        "error": None,
        "metrics": {"predict_time": 10.25},
        "created_at": "2026-12-08T03:59:59Z",
        **fields,
    }


def observe(store: Store, pid: str, body: dict[str, Any], when: datetime) -> None:
    (state,) = [
        s
        for s in store.claim_due(
            now=when, limit=100, owner="o", lease_until=when + timedelta(seconds=30)
        )
        if s.id == pid
    ]
    update = plan_observation(state, parse_prediction(body, pid), when)
    apply_one(store, update, NextPoll(when + timedelta(seconds=1), 1.0), owner="o")


def stored(store: Store, pid: str) -> tuple[dict[str, Any] | None, bool, str]:
    """``raw`` (parsed), ``raw_logs_moved`` and ``logs`` as SQL sees them."""
    with store.engine.connect() as conn:
        raw, moved, logs = conn.execute(
            text("select raw, raw_logs_moved, logs from predictions where id = :p"), {"p": pid}
        ).one()
    return (json.loads(raw) if isinstance(raw, str) else raw), bool(moved), logs


def view_answer(store: Store, pid: str) -> Any:
    with store.engine.connect() as conn:
        raw = conn.execute(
            text("select raw from prediction_answers where id = :p"), {"p": pid}
        ).scalar_one()
    return json.loads(raw) if isinstance(raw, str) else raw


def as_stored(store: Store, body: dict[str, Any]) -> str:
    """The text a payload made from ``raw`` had before 0015: the body as the engine's
    JSON column gives it back (PostgreSQL's jsonb orders keys its own way)."""
    if store.engine.dialect.name != "postgresql":
        return payload_text(body)
    with store.engine.connect() as conn:
        value = conn.execute(text("select cast(:b as jsonb)"), {"b": json.dumps(body)}).scalar_one()
    return payload_text(value)


def test_raw_keeps_null_for_logs_the_logs_column_holds(store: Store) -> None:
    store.add_predictions(["p1"], now=T0, first_poll_at=T0, callbacks_to_add=[HOOK])
    observe(store, "p1", answer("p1", "processing", logs="loading\n"), T0)
    raw, moved, logs = stored(store, "p1")
    assert moved and logs == "loading\n"
    assert raw is not None and "logs" in raw and raw["logs"] is None
    assert raw["input"] == {"prompt": "ä poster", "steps": 20}

    final = answer("p1", "succeeded", output=["https://files.example.com/a.png"])
    observe(store, "p1", final, T0 + timedelta(seconds=20))
    raw, moved, logs = stored(store, "p1")
    assert moved and logs == LOGS and raw is not None and raw["logs"] is None
    assert {**raw, "logs": LOGS} == final
    assert view_answer(store, "p1") == final
    (job,) = store.claim_deliveries(
        now=T0 + timedelta(seconds=21), limit=5, owner="o", lease_until=T0 + timedelta(hours=1)
    )
    assert job.payload == payload_text(final)  # sent from the answer in hand, as before


def test_a_callback_added_after_the_end_sends_the_answer_byte_for_byte(store: Store) -> None:
    store.add_predictions(["p2"], now=T0, first_poll_at=T0)
    final = answer("p2", "succeeded", output=["https://files.example.com/b.png"])
    observe(store, "p2", final, T0)
    later = T0 + timedelta(minutes=5)
    store.add_predictions(["p2"], now=later, first_poll_at=later, callbacks_to_add=[LATE_HOOK])
    (job,) = store.claim_deliveries(
        now=T0 + timedelta(minutes=5), limit=5, owner="o", lease_until=T0 + timedelta(hours=1)
    )
    assert json.loads(job.payload) == final
    assert job.payload == as_stored(store, final)
    with store.engine.connect() as conn:
        assert prediction_object(conn, "p2") == final  # the archived and deadline bodies


@pytest.mark.parametrize(
    "logs",
    [
        pytest.param("", id="empty while earlier logs are kept"),
        pytest.param(None, id="null"),
        pytest.param(["not", "text"], id="not text"),
    ],
)
def test_an_answer_whose_logs_are_not_the_column_is_kept_whole(store: Store, logs: Any) -> None:
    store.add_predictions(["p3"], now=T0, first_poll_at=T0)
    observe(store, "p3", answer("p3", "processing"), T0)
    final = answer("p3", "succeeded", logs=logs)
    observe(store, "p3", final, T0 + timedelta(seconds=5))
    raw, moved, kept = stored(store, "p3")
    assert not moved and raw == final and kept == LOGS
    assert view_answer(store, "p3") == final
    with store.engine.connect() as conn:
        assert prediction_object(conn, "p3") == final


def test_an_answer_without_logs_is_kept_whole(store: Store) -> None:
    store.add_predictions(["p4"], now=T0, first_poll_at=T0)
    body = answer("p4", "starting")
    del body["logs"]
    observe(store, "p4", body, T0)
    raw, moved, _ = stored(store, "p4")
    assert not moved and raw == body and "logs" not in raw


def test_a_body_that_is_no_prediction_replaces_a_moved_answer_whole(store: Store) -> None:
    """The bad body is stored as it came, and the flag of the answer before it goes."""
    store.add_predictions(["p5"], now=T0, first_poll_at=T0)
    observe(store, "p5", answer("p5", "processing"), T0)
    assert stored(store, "p5")[1]
    bad = {"detail": "upstream hiccup", "logs": LOGS}
    store.record_poll_error(
        "p5", now=T0, detail="answer is not a prediction", next_poll=NextPoll(T0, 1.0), raw=bad
    )
    raw, moved, _ = stored(store, "p5")
    assert not moved and raw == bad and view_answer(store, "p5") == bad
