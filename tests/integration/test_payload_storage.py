"""Delivery payloads are stored compressed and sent exactly as they were written
(migration 0012, ``CompressedText``), on both engines."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select, text
from sqlalchemy.dialects import postgresql, sqlite

from tests.apply import apply_one
from tracker.domain import CallbackSpec, NextPoll
from tracker.poll.observe import parse_prediction, plan_observation
from tracker.store.enqueue import payload_text
from tracker.store.store import Store
from tracker.store.tables import deliveries
from tracker.store.types import CompressedText

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
HOOK = "https://hooks.example.com/h"
#: text as the store may hold it: any character but a lone surrogate
TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=3000)


@settings(max_examples=300, deadline=None)
@given(value=TEXT | TEXT.map(lambda t: "x" + t) | TEXT.map(lambda t: t * 20))
def test_any_text_reads_back_exactly_on_both_dialects(value: str) -> None:
    kind = CompressedText()
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        stored = kind.process_bind_param(value, dialect)
        assert isinstance(stored, bytes)
        assert kind.process_result_value(stored, dialect) == value


def test_a_long_payload_is_stored_compressed_and_sent_byte_for_byte(store: Store) -> None:
    logs = "".join(f"step {i}/200 |{'#' * (i // 10):<20}| {i / 2:.0f}%\n" for i in range(200))
    body = {
        "id": "p1",
        "status": "succeeded",
        "logs": logs,
        "output": ["https://files.example.com/ä.png"],
        "metrics": {"predict_time": 20.5},
        "completed_at": "2026-12-07T10:00:20Z",
    }
    store.add_predictions(
        ["p1"],
        now=T0,
        first_poll_at=T0,
        callbacks_to_add=[CallbackSpec("webhook", HOOK, ("completed",))],
    )
    (state,) = store.claim_due(now=T0, limit=1, owner="o", lease_until=T0 + timedelta(seconds=9))
    update = plan_observation(state, parse_prediction(body, "p1"), T0)
    assert apply_one(store, update, NextPoll(T0, 1.0), owner="o") == 1
    (job,) = store.claim_deliveries(
        now=T0, limit=5, owner="o", lease_until=T0 + timedelta(seconds=30)
    )
    sent = job.payload.encode("utf-8")
    assert json.loads(sent)["logs"] == logs
    assert job.payload == payload_text(json.loads(job.payload))  # the text as written
    length = "octet_length" if store.engine.dialect.name == "postgresql" else "length"
    with store.engine.connect() as conn:
        stored = conn.execute(text(f"select {length}(payload) from deliveries")).scalar_one()
    assert stored < len(sent) / 4  # progress bars compress well


def test_payloads_written_before_the_migration_read_back_as_they_were(store: Store) -> None:
    """Rows of an older schema: text on SQLite, UTF-8 bytes on PostgreSQL (what
    0012's conversion leaves); both read back as the text."""
    store.add_predictions(
        ["old"],
        now=T0,
        first_poll_at=T0,
        callbacks_to_add=[CallbackSpec("webhook", HOOK, ("completed",))],
    )
    payload = '{"id":"old","status":"succeeded","logs":"' + "é" * 400 + '"}'
    postgres = store.engine.dialect.name == "postgresql"
    with store.engine.begin() as conn:
        callback_id = conn.execute(text("select id from callbacks")).scalar_one()
        conn.execute(
            insert(deliveries).values(
                callback_id=callback_id,
                prediction_id="old",
                event="completed",
                state="pending",
                attempts=0,
                next_attempt_at=T0,
                created_at=T0,
                payload="",
                message_id="msg_old",
            )
        )
        conn.execute(
            text("update deliveries set payload = :p"),
            {"p": payload.encode("utf-8") if postgres else payload},
        )
    with store.engine.connect() as conn:
        assert conn.execute(select(deliveries.c.payload)).scalar_one() == payload
