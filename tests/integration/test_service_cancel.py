"""`tracker serve`'s ``POST /api/predictions/{id}/cancel`` against the real simulator,
and the ``deadline`` of a registration: each outcome of a cancel is its own JSON answer
(200, 404, 409, 502), the token is required, and the request goes to the upstream with
the API key."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from tests.serving import Running, rows, running_service, settings_for
from tracker.api import Tracker
from tracker.simulator import SimConfig, SimulatorThread
from tracker.store.store import Store

KEY = "sk-service-cancel-DO-NOT-LEAK"


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    config = SimConfig(api_key=KEY, queue_seconds=0.1, run_median_seconds=0.3)
    with SimulatorThread(config) as simulator:
        yield simulator


@pytest.fixture
async def service(db_url: str, sim: SimulatorThread) -> Any:
    settings = settings_for(db_url, TRACKER_API_BASE=sim.base_url, TRACKER_API_KEY=KEY)
    async with running_service(settings) as running:
        yield running


def execute(url: str, sql: str) -> None:
    store = Store.from_url(url)
    try:
        with store.engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        store.close()


async def register(service: Running, *ids: str) -> None:
    async with service.client() as http:
        for pid in ids:
            assert (await http.post("/api/predictions", json={"id": pid})).status_code == 201


async def test_cancel_asks_the_upstream_and_records_it(
    service: Running, sim: SimulatorThread, db_url: str
) -> None:
    await register(service, "forever-s1")
    async with service.client() as http:
        answer = await http.post("/api/predictions/forever-s1/cancel")
        shown = (await http.get("/api/predictions/forever-s1")).json()
    assert answer.status_code == 200
    body = answer.json()
    assert body["prediction_id"] == "forever-s1"
    assert (body["outcome"], body["ok"], body["upstream_status"]) == ("requested", True, "canceled")
    assert body["message"] == "forever-s1: cancel requested (the upstream says 'canceled')"
    assert body["requested_at"] is not None and "error" not in body
    assert [r.status_code for r in sim.cancels("forever-s1")] == [200]  # the key was accepted
    prediction = shown["prediction"]
    assert prediction["cancel_requested_at"] == body["requested_at"]
    assert (prediction["cancel_reason"], prediction["cancel_outcome"]) == ("user", "requested")
    assert prediction["cancel_detail"] == "HTTP 200, status 'canceled'"
    assert KEY not in str(rows(db_url, "select * from predictions"))


async def test_unknown_ended_and_refused_are_json_errors(
    service: Running, sim: SimulatorThread, db_url: str
) -> None:
    await register(service, "quick-s2")
    execute(db_url, "update predictions set status = 'succeeded', tracking = 'done'")
    await register(service, "gone-s3")
    async with service.client() as http:
        unknown = await http.post("/api/predictions/never-added/cancel")
        ended = await http.post("/api/predictions/quick-s2/cancel")
        refused = await http.post("/api/predictions/gone-s3/cancel")
        bad = await http.post("/api/predictions/-bad/cancel")
        long = await http.post(f"/api/predictions/{'x' * 500}/cancel")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "never-added: not registered"
    assert unknown.json()["outcome"] == "not_registered"
    assert ended.status_code == 409
    assert ended.json()["error"] == "quick-s2: already succeeded, nothing to cancel"
    assert (ended.json()["outcome"], ended.json()["status"]) == ("terminal", "succeeded")
    assert refused.status_code == 502
    assert refused.json()["error"].startswith("gone-s3: cancel failed: the upstream does not know")
    assert refused.json()["outcome"] == "failed"
    assert bad.status_code == 400 and "invalid prediction ID" in bad.json()["error"]
    assert long.status_code == 400 and "invalid prediction ID" in long.json()["error"]
    assert sim.cancels("quick-s2") == [] and sim.cancels("never-added") == []
    assert [r.status_code for r in sim.cancels("gone-s3")] == [404]
    outcome = rows(
        db_url, "select cancel_outcome, cancel_detail from predictions where id = 'gone-s3'"
    )
    assert outcome[0][0] == "failed" and "HTTP 404" in outcome[0][1]


async def test_the_token_is_required(service: Running, sim: SimulatorThread) -> None:
    await register(service, "forever-s4")
    async with service.client(token=None) as http:
        answer = await http.post("/api/predictions/forever-s4/cancel")
    assert answer.status_code == 401 and "bearer token" in answer.json()["error"]
    assert sim.cancels() == []


async def test_without_an_api_key_for_a_remote_upstream_it_is_503(db_url: str) -> None:
    settings = settings_for(db_url, TRACKER_API_BASE="https://api.example.invalid/v1")
    async with running_service(settings) as service:
        await register(service, "forever-s5")
        async with service.client() as http:
            answer = await http.post("/api/predictions/forever-s5/cancel")
    assert answer.status_code == 503
    assert "TRACKER_API_KEY" in answer.json()["error"]


async def test_a_registration_with_a_deadline_sets_deadline_at(
    service: Running, db_url: str
) -> None:
    async with service.client() as http:
        one = await http.post("/api/predictions", json={"id": "forever-s6", "deadline": "30m"})
        many = await http.post(
            "/api/predictions",
            json=[{"id": "forever-s7", "deadline": 90}, {"id": "forever-s8"}],
        )
    assert one.status_code == 201 and many.status_code == 201
    with Tracker(db_url) as tracker:
        found = [tracker.get(pid) for pid in ("forever-s6", "forever-s7", "forever-s8")]
    given = dict(rows(db_url, "select id, deadline_seconds from predictions"))
    seconds = {
        p.id: (p.deadline_at - p.registered_at if p.deadline_at else None, given[p.id])
        for p in found
    }
    assert seconds == {
        "forever-s6": (timedelta(minutes=30), 1800.0),
        "forever-s7": (timedelta(seconds=90), 90.0),
        "forever-s8": (None, None),
    }


async def test_with_the_daemon_the_cancel_is_seen_at_once(
    db_url: str, sim: SimulatorThread
) -> None:
    settings = settings_for(
        db_url,
        TRACKER_API_BASE=sim.base_url,
        TRACKER_API_KEY=KEY,
        TRACKER_POLL_MIN="0.2",
        TRACKER_POLL_MAX="30",
    )
    async with running_service(settings, with_daemon=True) as service:
        await register(service, "forever-s9")
        async with service.client() as http:
            for _ in range(100):
                shown = (await http.get("/api/predictions/forever-s9")).json()["prediction"]
                if shown["status"] == "processing":
                    break
                await asyncio.sleep(0.1)
            assert (await http.post("/api/predictions/forever-s9/cancel")).status_code == 200
            for _ in range(50):  # well before the 30 s of --poll-max
                shown = (await http.get("/api/predictions/forever-s9")).json()["prediction"]
                if shown["status"] == "canceled":
                    break
                await asyncio.sleep(0.1)
    assert (shown["status"], shown["tracking"]) == ("canceled", "done")
