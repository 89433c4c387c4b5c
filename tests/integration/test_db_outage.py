"""A short database outage never loses a result the daemon already paid for."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.integration.test_store import T0, add, claim, observe
from tracker.callbacks.outbox import Outbox
from tracker.callbacks.retry import RetryPolicy
from tracker.domain import DeliveryJob, SendResult
from tracker.exceptions import StoreUnavailable
from tracker.store.runner import DatabaseRunner
from tracker.store.store import CallbackSpec, Store


class Receiver:
    def __init__(self) -> None:
        self.sent: list[int] = []

    async def send(self, job: DeliveryJob) -> SendResult:
        self.sent.append(job.id)
        return SendResult(ok=True, status_code=200, duration_ms=1)


def finished_with_a_webhook(store: Store) -> None:
    add(store, "p1", callbacks_to_add=[CallbackSpec("webhook", "http://h/", ("completed",))])
    (state,) = claim(store)
    observe(store, state, {"status": "succeeded"}, T0)


def drop_the_connection(
    store: Store, monkeypatch: pytest.MonkeyPatch, *, after_commit: bool
) -> None:
    """record_attempt fails once as if the connection dropped (before or after commit)."""
    real = store.record_attempt
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            if after_commit:
                real(*args, **kwargs)
            raise StoreUnavailable("database connection lost: server closed the connection")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "record_attempt", flaky)


@pytest.mark.parametrize("after_commit", [False, True], ids=["before-commit", "after-commit"])
async def test_an_attempt_is_recorded_once_through_a_short_outage(
    store: Store, monkeypatch: pytest.MonkeyPatch, after_commit: bool
) -> None:
    finished_with_a_webhook(store)
    drop_the_connection(store, monkeypatch, after_commit=after_commit)
    receiver = Receiver()
    runner = DatabaseRunner(workers=1)
    outbox = Outbox(
        store,
        {"webhook": receiver},
        owner="me",
        db=runner,
        policy=RetryPolicy((60.0,)),
        lease_seconds=60.0,
    )
    try:
        await outbox.send_due_once()
    finally:
        runner.shutdown()
    assert len(receiver.sent) == 1
    with store.engine.connect() as conn:
        state, claimed = conn.execute(text("select state, claimed_by from deliveries")).one()
        attempts = conn.execute(text("select count(*) from delivery_attempts")).scalar()
    assert (state, claimed, attempts) == ("delivered", None, 1)
