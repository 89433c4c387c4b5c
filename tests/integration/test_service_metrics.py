"""`/metrics` and `/healthz` of `tracker serve`, parsed with prometheus_client's own
parser and checked against the database and the simulator after a real daemon run."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.clirun import run_tracker
from tests.receiver import Receiver
from tests.serving import rows, running_service, settings_for
from tracker.api import Tracker
from tracker.asyncapi import AsyncTracker
from tracker.exceptions import StoreUnavailable
from tracker.service.app import build_app
from tracker.service.context import Service
from tracker.service.metrics import DatabaseCollector, DatabaseState, Metrics
from tracker.simulator import SimConfig, SimulatorThread

#: seconds a daemon run against the fast simulator may take
RUN_TIMEOUT = 60.0


def samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the text format: (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def by_label(found: dict[Any, float], name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for (n, labels), value in found.items() if n == name}


async def wait_until_settled(http: httpx.AsyncClient) -> None:
    """Until no prediction is active and no delivery is pending (the health report says)."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        health = (await http.get("/healthz")).json()
        if health["active_predictions"] == 0 and health["pending_deliveries"] == 0:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"still busy after {RUN_TIMEOUT} s: {health}")


async def test_metrics_after_a_daemon_run_match_the_database(db_url: str) -> None:
    config = SimConfig(queue_seconds=0.2, run_median_seconds=0.5, log_interval_seconds=0.1)
    with SimulatorThread(config) as sim, Receiver() as receiver:
        settings = settings_for(
            db_url,
            TRACKER_API_BASE=sim.base_url,
            TRACKER_POLL_MIN="0.05",
            TRACKER_POLL_MAX="0.3",
            TRACKER_LOST_AFTER="2",
            TRACKER_LOST_WINDOW="0",
            TRACKER_LOG_INTERVAL="3600",
        )
        ids = [f"quick-{i}" for i in range(6)] + ["fail-1", "gone-1", "flaky-1", "abort-1"]
        hook = receiver.url("/ok/metrics")
        async with running_service(settings, with_daemon=True) as service, service.client() as http:
            answer = await http.post(
                "/api/predictions",
                json=[{"id": i, "webhooks": [hook], "events": ["start", "completed"]} for i in ids],
            )
            assert answer.status_code == 201
            await wait_until_settled(http)
            found = samples((await http.get("/metrics")).text)
            health = await http.get("/healthz")
        requests = sim.requests()

    # Counted in the process: every request the simulator answered, by outcome.
    polls = by_label(found, "tracker_polls_total", "outcome")
    assert sum(polls.values()) == len(requests) > len(ids)
    assert polls["not_found"] == sum(1 for r in requests if r.status_code == 404) >= 2
    assert polls["error"] == sum(1 for r in requests if r.status_code >= 500) >= 3
    assert polls["answered"] == sum(1 for r in requests if r.status_code == 200)
    assert found[("tracker_poll_duration_seconds_count", ())] == len(requests)
    assert 0 < found[("tracker_poll_duration_seconds_sum", ())] < len(requests) * 2
    transitions = by_label(found, "tracker_transitions_total", "to_status")
    written = dict(
        rows(db_url, "select to_status, count(*) from status_transitions group by to_status")
    )
    assert {k: v for k, v in transitions.items() if v} == written
    assert written["succeeded"] == 7 and written["failed"] == 1 and written["aborted"] == 1

    # Read from the database at the scrape.
    predictions = {
        (dict(labels)["tracking"], dict(labels)["status"]): value
        for (name, labels), value in found.items()
        if name == "tracker_predictions"
    }
    stored = rows(
        db_url,
        "select tracking, coalesce(status, 'none'), count(*) from predictions"
        " group by tracking, status",
    )
    assert predictions == {(t, s): n for t, s, n in stored}
    assert predictions[("lost", "none")] == 1
    deliveries = by_label(found, "tracker_deliveries", "state")
    assert deliveries == {"pending": 0, "dead": 0, "delivered": len(receiver.received())}
    assert deliveries["delivered"] == 2 * 9  # start and completed of all but the lost one
    assert found[("tracker_schedule_lag_seconds", ())] == 0
    assert found[("tracker_live_daemons", ())] == 1
    assert found[("tracker_database_up", ())] == 1

    # Each delivery's latency: from its event (the delivery row) to the receiver's 2xx.
    latency = by_label(found, "tracker_callback_latency_seconds_count", "kind")
    assert latency == {"webhook": deliveries["delivered"], "email": 0}
    with Tracker(db_url) as tracker:
        delivered = tracker.list_deliveries(state="delivered")
    longest = max(
        (d.delivered_at - d.created_at).total_seconds() for d in delivered if d.delivered_at
    )
    total = found[("tracker_callback_latency_seconds_sum", (("kind", "webhook"),))]
    assert 0 < total <= deliveries["delivered"] * (longest + 0.5)

    assert health.status_code == 200 and health.json()["status"] == "ok"


async def test_without_the_daemon_the_counters_are_there_at_zero(db_url: str) -> None:
    async with running_service(settings_for(db_url)) as service, service.client() as http:
        await http.post("/api/predictions", json=[{"id": "zero-1"}, {"id": "zero-2"}])
        found = samples((await http.get("/metrics")).text)
    polls = by_label(found, "tracker_polls_total", "outcome")
    assert set(polls) == {
        "answered",
        "not_found",
        "rate_limited",
        "auth_error",
        "bad_answer",
        "error",
    }
    assert set(polls.values()) == {0}
    transitions = by_label(found, "tracker_transitions_total", "to_status")
    assert set(transitions) >= {
        "starting",
        "processing",
        "succeeded",
        "failed",
        "canceled",
        "aborted",
    }
    assert set(transitions.values()) == {0}
    assert found[("tracker_poll_duration_seconds_count", ())] == 0
    assert found[("tracker_predictions", (("status", "none"), ("tracking", "active")))] == 2
    assert found[("tracker_live_daemons", ())] == 0


async def test_healthz_judges_as_tracker_status_does(db_url: str) -> None:
    async with running_service(settings_for(db_url)) as service, service.client() as http:
        healthy = await http.get("/healthz")
        await http.post("/api/predictions", json={"id": "waiting-1"})
        unhealthy = await http.get("/healthz")
    assert healthy.status_code == 200
    assert healthy.json()["status"] == "ok" and healthy.json()["problems"] == []
    assert unhealthy.status_code == 503
    report = unhealthy.json()
    assert report["status"] == "unhealthy" and report["healthy"] is False
    assert report["problems"] == ["no live daemon, 1 predictions waiting"]
    status = run_tracker(["status", "--format", "json"], {"TRACKER_DATABASE_URL": db_url})
    assert status.returncode == 1
    cli = json.loads(status.stdout)
    assert cli["problems"] == report["problems"]
    assert set(report) == {*cli, "status"}
    for key in ("healthy", "reachable", "error", "daemons", "active_predictions"):
        assert report[key] == cli[key], key


class UnreachableStore:
    """A store whose database does not answer (what Store raises when it cannot connect)."""

    dialect = "postgresql"  # a server: no file for the service to watch

    def health(self, **_: object) -> Any:
        raise StoreUnavailable("database unavailable: connection refused to 127.0.0.1:1")

    def report_status(self, *_: object) -> Any:
        raise StoreUnavailable("database unavailable: connection refused to 127.0.0.1:1")


async def test_an_unreachable_database_is_503_and_database_up_0(sqlite_url: str) -> None:
    store: Any = UnreachableStore()
    tracker = AsyncTracker(sqlite_url)
    service = Service(settings_for(sqlite_url), tracker, store, Metrics(store))
    runner = web.AppRunner(build_app(service))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            health = await http.get("/healthz")
            found = samples((await http.get("/metrics")).text)
    finally:
        await runner.cleanup()
        await tracker.close()
    assert health.status_code == 503
    assert health.json()["status"] == "unknown"
    assert health.json()["reachable"] is False
    assert health.json()["problems"] == ["database unavailable: connection refused to 127.0.0.1:1"]
    assert found[("tracker_database_up", ())] == 0
    assert not any(name == "tracker_predictions" for name, _ in found)


def test_a_scrape_reads_the_database_at_most_once_per_cache_period() -> None:
    reads: list[float] = []
    now = [100.0]  # seconds on the collector's clock

    def read(_store: Any) -> DatabaseState:
        reads.append(now[0])
        return DatabaseState({("active", "none"): len(reads)}, {"pending": 0}, 0.0, 1)

    collector = DatabaseCollector(None, cache_seconds=5, read=read, clock=lambda: now[0])  # type: ignore[arg-type]

    def predictions() -> float:
        family = next(f for f in collector.collect() if f.name == "tracker_predictions")
        return family.samples[0].value

    assert predictions() == 1
    now[0] += 4.9
    assert predictions() == 1
    now[0] += 0.2
    assert predictions() == 2
    assert len(reads) == 2


def test_scrapes_behind_a_hung_database_read_answer_from_the_last_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read that hangs holds the lock; the scrapes behind it do not pile up on it."""
    monkeypatch.setattr("tracker.service.metrics.LOCK_WAIT_SECONDS", 0.2)
    release, hanging = threading.Event(), threading.Event()
    now = [100.0]

    def read(_store: Any) -> DatabaseState:
        if now[0] > 100:  # the second read hangs until released
            hanging.set()
            release.wait(10)
        return DatabaseState({("active", "none"): 7}, {"pending": 0}, 0.0, 1)

    collector = DatabaseCollector(None, cache_seconds=5, read=read, clock=lambda: now[0])  # type: ignore[arg-type]

    def up_and_count() -> tuple[float, float | None]:
        families = {f.name: f for f in collector.collect()}
        up = families["tracker_database_up"].samples[0].value
        counted = families.get("tracker_predictions")
        return up, counted.samples[0].value if counted else None

    assert up_and_count() == (1, 7)
    now[0] += 10  # the cache is stale: the next scrape reads, and hangs
    stuck = threading.Thread(target=collector.collect().__next__)
    stuck.start()
    assert hanging.wait(5)
    started = time.monotonic()
    assert up_and_count() == (1, 7)  # the last result, after waiting LOCK_WAIT_SECONDS
    assert time.monotonic() - started < 2
    release.set()
    stuck.join(5)


def test_two_apps_have_registries_of_their_own() -> None:
    first, second = Metrics(), Metrics()
    first.poll_done("answered", 0.1)
    first.transition("succeeded")
    first.callback_sent("webhook", 0.2)
    one = samples(first.exposition().decode())
    other = samples(second.exposition().decode())
    assert one[("tracker_polls_total", (("outcome", "answered"),))] == 1
    assert other[("tracker_polls_total", (("outcome", "answered"),))] == 0
    assert one[("tracker_callback_latency_seconds_count", (("kind", "webhook"),))] == 1
    assert Counter(name for name, _ in one) == Counter(name for name, _ in other)
