"""Cancel and deadlines through the Python API, in its sync and async forms, on both
engines, with the real simulator upstream and a daemon running in this event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest

from tracker import AsyncTracker, Tracker
from tracker.config import Settings
from tracker.poll.assembly import open_daemon
from tracker.simulator import PredictionPlan, SimConfig, SimulatorThread
from tracker.store.store import Store

KEY = "sk-api-cancel-DO-NOT-LEAK"
QUIET = PredictionPlan(outcome=None, queue_seconds=0, log_lines=[])  #: runs, never changes


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    config = SimConfig(api_key=KEY, queue_seconds=0.1, run_median_seconds=0.3)
    with SimulatorThread(config) as simulator:
        yield simulator


@pytest.fixture
def settings(db_url: str, sim: SimulatorThread) -> Settings:
    variables = {
        "TRACKER_DATABASE_URL": db_url,
        "TRACKER_API_BASE": sim.base_url,
        "TRACKER_API_KEY": KEY,
        "TRACKER_POLL_MIN": "0.1",
        "TRACKER_POLL_MAX": "30",
        "TRACKER_LEASE": "5",
    }
    return Settings.build(env=variables)


@contextlib.asynccontextmanager
async def daemon_running(settings: Settings) -> AsyncIterator[None]:
    """`tracker daemon`, in this event loop, until the block ends."""
    store = Store.open_checked(settings.database_url)
    try:
        async with open_daemon(store, settings) as daemon:
            run = asyncio.create_task(daemon.run(handle_signals=False))
            try:
                yield
            finally:
                daemon.stop()
                assert await run == 0
    finally:
        store.close()


def test_sync_cancel_of_each_kind_of_prediction(settings: Settings, sim: SimulatorThread) -> None:
    sim.define("quiet-a", QUIET)
    with Tracker(settings=settings) as tracker:
        tracker.add(["quiet-a", "gone-b"])
        requested = tracker.cancel("quiet-a")
        refused = tracker.cancel("gone-b")
        unknown = tracker.cancel("never-c")
        p = tracker.get("quiet-a")
    assert (requested.outcome, requested.upstream_status, requested.ok) == (
        "requested",
        "canceled",
        True,
    )
    assert requested.requested_at == p.cancel_requested_at
    assert (p.cancel_reason, p.cancel_outcome, p.cancel_detail) == (
        "user",
        "requested",
        "HTTP 200, status 'canceled'",
    )
    assert (refused.outcome, refused.ok) == ("failed", False)
    assert "HTTP 404" in refused.message
    assert (unknown.outcome, unknown.requested_at) == ("not_registered", None)
    assert [r.prediction_id for r in sim.cancels()] == ["quiet-a", "gone-b"]


async def test_async_cancel_is_seen_by_the_daemon_at_once(
    settings: Settings, sim: SimulatorThread
) -> None:
    for pid in ("quiet-d", "quiet-e"):
        sim.define(pid, QUIET)
    async with AsyncTracker(settings=settings) as tracker, daemon_running(settings):
        await tracker.add(["quiet-d", "quiet-e"])
        for _ in range(100):
            if (await tracker.get("quiet-e")).status == "processing":
                break
            await asyncio.sleep(0.05)
        results = await asyncio.gather(tracker.cancel("quiet-d"), tracker.cancel("quiet-e"))
        assert [r.outcome for r in results] == ["requested", "requested"]
        # --poll-max is 30 s: the cancel made them due at once
        ended = await asyncio.wait_for(
            asyncio.gather(tracker.wait("quiet-d"), tracker.wait("quiet-e")), 10
        )
        again = await tracker.cancel("quiet-d")
    assert [p.status for p in ended] == ["canceled", "canceled"]
    assert (again.outcome, again.status, again.ok) == ("terminal", "canceled", True)
    assert len(sim.cancels()) == 2


async def test_deadlines_through_the_python_api(settings: Settings, sim: SimulatorThread) -> None:
    """add(deadline=...) from sync and async code; the daemon cancels each once, counting
    from the upstream's created_at; 'none' removes a deadline."""
    for pid in ("quiet-s", "quiet-t", "quiet-u"):
        sim.define(pid, QUIET)
    with Tracker(settings=settings) as sync:
        sync.add("quiet-s", deadline=1)
        sync.add("quiet-u", deadline="1s")
        sync.add("quiet-u", deadline="none")
    async with AsyncTracker(settings=settings) as tracker, daemon_running(settings):
        await tracker.add("quiet-t", deadline="1s")
        ended = await asyncio.wait_for(
            asyncio.gather(tracker.wait("quiet-s"), tracker.wait("quiet-t")), 30
        )
        untouched = await tracker.get("quiet-u")
    for p in ended:
        assert (p.status, p.cancel_reason, p.cancel_outcome) == (
            "canceled",
            "deadline",
            "requested",
        )
        assert p.created_at is not None and p.deadline_at is not None
        assert p.deadline_at - p.created_at == timedelta(seconds=1)
        assert p.cancel_requested_at is not None and p.cancel_requested_at >= p.deadline_at
    assert (untouched.status, untouched.deadline_at, untouched.cancel_requested_at) == (
        "processing",
        None,
        None,
    )
    assert sorted(r.prediction_id for r in sim.cancels()) == ["quiet-s", "quiet-t"]
