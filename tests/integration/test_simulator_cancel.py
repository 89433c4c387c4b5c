"""The simulator's cancel route, as Replicate's: ``POST {base}/predictions/{id}/cancel``
ends a prediction ``canceled`` and answers the prediction object; one that has ended is
answered unchanged. Also what the official ``replicate`` client does against it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import replicate

from tests.receiver import Receiver
from tracker.simulator import PredictionPlan, SimConfig, Simulator, SimulatorThread
from tracker.simulator.scenarios import LONG_RUN_SECONDS, plan_for_id, scenario_of_model

CONFIG = SimConfig(queue_seconds=0.1, run_median_seconds=0.3, log_interval_seconds=0.05)
SECRET = "whsec_dGVzdC1zZWNyZXQtb2YtMzItYnl0ZXMtZm9yLXB1c2g="


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(CONFIG)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http


async def cancel(client: httpx.AsyncClient, sim: Simulator, pid: str) -> httpx.Response:
    return await client.post(f"{sim.base_url}/predictions/{pid}/cancel")


async def test_cancel_ends_a_running_prediction_canceled(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    url = f"{sim.base_url}/predictions/forever-1"
    await client.get(url)
    await asyncio.sleep(0.5)  # processing, with some log lines
    running = (await client.get(url)).json()
    assert running["status"] == "processing" and running["logs"]
    answer = await cancel(client, sim, "forever-1")
    assert answer.status_code == 200
    body = answer.json()
    assert body["id"] == "forever-1"
    assert body["status"] == "canceled"
    assert body["completed_at"] is not None and body["started_at"] == running["started_at"]
    assert body["logs"].startswith(running["logs"])  # the lines so far, no more after
    assert body["output"] is None and body["metrics"]["predict_time"] > 0
    assert body["urls"]["cancel"] == f"{url}/cancel"
    await asyncio.sleep(0.2)
    later = (await client.get(url)).json()
    assert later == body  # it stays as it was cancelled: logs stop growing
    again = await cancel(client, sim, "forever-1")
    assert again.status_code == 200 and again.json() == body  # unchanged
    assert [r.action for r in sim.cancels("forever-1")] == ["cancel", "cancel"]
    assert [r.status_code for r in sim.cancels()] == [200, 200]


async def test_a_prediction_still_starting_never_starts(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.define("slowstart-1", PredictionPlan(queue_seconds=30, run_seconds=1))
    body = (await cancel(client, sim, "slowstart-1")).json()
    assert (body["status"], body["started_at"], body["logs"]) == ("canceled", None, "")
    assert body["completed_at"] is not None and body["metrics"] == {}


async def test_an_ended_prediction_is_answered_unchanged(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    sim.define("done-1", PredictionPlan(queue_seconds=0, run_seconds=0.05))
    await asyncio.sleep(0.2)
    before = (await client.get(f"{sim.base_url}/predictions/done-1")).json()
    assert before["status"] == "succeeded"
    after = await cancel(client, sim, "done-1")
    assert after.status_code == 200 and after.json() == before


async def test_unknown_ids_are_created_then_cancelled_and_bad_ones_are_404(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    fresh = await cancel(client, sim, "ok-never-seen")
    assert fresh.json()["status"] == "canceled"  # every ID exists, as for GET
    assert (await cancel(client, sim, "gone-1")).status_code == 404
    assert (await cancel(client, sim, "-bad")).status_code == 404
    wrong_method = await client.get(f"{sim.base_url}/predictions/ok-1/cancel")
    assert wrong_method.status_code in (404, 405)


async def test_auth_and_rate_limit_apply(client: httpx.AsyncClient) -> None:
    sim = Simulator(SimConfig(api_key="k-1", rate_limit_rps=1))
    await sim.start()
    try:
        refused = await cancel(client, sim, "forever-2")
        assert refused.status_code == 401
        headers = {"Authorization": "Bearer k-1"}
        url = f"{sim.base_url}/predictions/forever-2/cancel"
        answers = [(await client.post(url, headers=headers)).status_code for _ in range(3)]
        assert answers[0] == 200 and 429 in answers
    finally:
        await sim.stop()


async def test_a_cancel_is_pushed_to_the_webhook() -> None:
    with Receiver() as receiver:
        sim = Simulator(SimConfig(webhook_secret=SECRET, log_interval_seconds=60))
        await sim.start()
        try:
            hook = receiver.url("ok/pushes")
            sim.define("pushed-1", PredictionPlan(outcome=None, queue_seconds=0, webhook=hook))
            async with httpx.AsyncClient() as client:
                await asyncio.sleep(0.2)
                await cancel(client, sim, "pushed-1")
            for _ in range(100):
                if any(p.event == "completed" for p in sim.pushes("pushed-1")):
                    break
                await asyncio.sleep(0.05)
            completed = [p for p in sim.pushes("pushed-1") if p.event == "completed"]
            assert [p.status for p in completed] == ["canceled"]
        finally:
            await sim.stop()


def test_models_named_after_a_scenario_pick_it_at_create() -> None:
    assert scenario_of_model("acme/long") == "long"
    assert scenario_of_model("someone/FOREVER") == "forever"
    assert scenario_of_model("acme/flux") is None
    assert scenario_of_model(None) is None
    plan = plan_for_id("w44zs9cet5rmc0cqzp49gpkhf8", SimConfig(), "long")
    assert (plan.outcome, plan.run_seconds) == ("succeeded", LONG_RUN_SECONDS)


def test_the_official_client_creates_and_cancels() -> None:
    """``replicate.Client`` pointed at the simulator: create (by model and by
    version), get, cancel and wait work as against Replicate."""
    with SimulatorThread(CONFIG) as sim, httpx.HTTPTransport() as transport:
        client = replicate.Client(
            api_token="r8_test", base_url=sim.base_url.removesuffix("/v1"), transport=transport
        )
        film = client.predictions.create(model="acme/long", input={"prompt": "a film"})
        assert (film.model, film.status) == ("acme/long", "starting")
        film.cancel()
        assert film.status == "canceled" and film.completed_at
        assert client.predictions.get(film.id).status == "canceled"
        assert [r.status_code for r in sim.cancels(film.id)] == [200]
        quick = client.predictions.create(version="v1", input={"prompt": "a portrait"})
        quick.wait()
        assert quick.status == "succeeded" and quick.output
