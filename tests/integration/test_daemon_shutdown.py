"""Stopping the daemon while a scheduled job waits for the database."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
from sqlalchemy import text

from tracker.config import Settings
from tracker.exceptions import StoreUnavailable
from tracker.poll.building import build_daemon
from tracker.store.store import Store
from tracker.timeparse import utcnow


async def test_a_stop_during_a_claim_waits_for_it_and_releases_what_it_took(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGTERM lands while the tick's claim is inside the database. The claim
    finishes, nothing is polled after the stop, its rows are released, and nothing
    is logged as a crash (APScheduler used to log the cancelled job's traceback)."""
    store.add_predictions(["a", "b", "c"], now=utcnow(), first_poll_at=utcnow())
    entered, gate = threading.Event(), threading.Event()
    real_claim = store.claim_due

    def slow_claim(**kwargs: Any) -> Any:
        entered.set()
        gate.wait(10)
        return real_claim(**kwargs)

    monkeypatch.setattr(store, "claim_due", slow_claim)
    # No upstream client: a poll started after the stop would fail loudly.
    daemon = build_daemon(store, None, Settings(name="stopper"))  # type: ignore[arg-type]
    caplog.set_level(logging.INFO)
    run = asyncio.create_task(daemon.run())
    try:
        assert await asyncio.to_thread(entered.wait, 10)
        daemon.stop()
        await asyncio.sleep(0.3)  # the scheduler shuts down while the claim waits
    finally:
        gate.set()
        assert await asyncio.wait_for(run, 30) == 0
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not problems, [r.getMessage() for r in problems]
    with store.engine.connect() as conn:
        held = conn.execute(
            text("select count(*) from predictions where claimed_by is not null")
        ).scalar()
        polled = conn.execute(
            text("select count(*) from predictions where poll_count > 0")
        ).scalar()
    assert (held, polled) == (0, 0)


@pytest.mark.parametrize(("lease", "heartbeat"), [(60.0, 5.0), (15.0, 5.0), (6.0, 2.0), (1.5, 0.5)])
def test_leases_are_renewed_well_before_they_run_out(
    store: Store, lease: float, heartbeat: float
) -> None:
    daemon = build_daemon(store, None, Settings(name="short", lease_seconds=lease))  # type: ignore[arg-type]
    try:
        assert daemon.heartbeat_seconds == heartbeat
    finally:
        daemon.db.shutdown()


async def test_a_daemon_says_it_stopped_even_when_releasing_its_claims_fails(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"release": 0}
    real_release = store.release_claims

    def failing_release(owner: str | None, *, now: Any) -> int:
        calls["release"] += 1
        if calls["release"] == 2:  # the release on the way out (the first is at start)
            raise StoreUnavailable("database unavailable: connection reset")
        return real_release(owner, now=now)

    monkeypatch.setattr(store, "release_claims", failing_release)
    daemon = build_daemon(store, None, Settings(name="quitter"))  # type: ignore[arg-type]
    assert await daemon.run(once=True) == 0
    assert calls["release"] == 2
    with store.engine.connect() as conn:
        stopped = conn.execute(
            text("select stopped_at from daemons where name = 'quitter'")
        ).scalar()
    assert stopped is not None
