"""The simulator's webhook pushes, received by a real receiver on loopback."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from standardwebhooks.webhooks import Webhook

from tests.receiver import Received, Receiver
from tracker.cli.simulate import simulate_command
from tracker.simulator import Outcome, PredictionPlan, PushRecord, SimConfig, Simulator

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TERMINAL = {"succeeded", "failed", "canceled", "aborted"}
#: a prediction that runs long enough for a few log pushes, quickly at speed 10
QUICK = PredictionPlan(queue_seconds=0.5, run_seconds=4.0)


def config(**changes: Any) -> SimConfig:
    """A fast simulator configuration that signs pushes with :data:`SECRET`."""
    values: dict[str, Any] = {"speed": 10.0, "seed": 11, "webhook_secret": SECRET}
    values.update(changes)
    return SimConfig(**values)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback verifying signatures with :data:`SECRET`."""
    with Receiver(SECRET) as rx:
        yield rx


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as http:
        yield http


async def started(cfg: SimConfig) -> Simulator:
    simulator = Simulator(cfg)
    await simulator.start()
    return simulator


async def until(condition: Callable[[], bool], limit: float = 15.0) -> None:
    """Wait until ``condition()`` holds, checking every 10 ms."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {limit} s")
        await asyncio.sleep(0.01)


def settled(sim: Simulator, ids: list[str]) -> Callable[[], bool]:
    """True once every prediction's ``completed`` push exists and no push is unsent."""

    def check() -> bool:
        pushes = sim.pushes()
        done = {p.prediction_id for p in pushes if p.event == "completed"}
        owed = [p for p in pushes if p.fate != "dropped" and not p.attempts]
        return done >= set(ids) and not owed and all(p.delivered == _expected(p) for p in pushes)

    return check


def _expected(push: PushRecord) -> int:
    return {"dropped": 0, "repeated": 2}.get(push.fate, 1)


async def create(
    client: httpx.AsyncClient, sim: Simulator, webhook: str, **extra: Any
) -> httpx.Response:
    body = {"version": "v1", "input": {"prompt": "a cat"}, "webhook": webhook, **extra}
    return await client.post(f"{sim.base_url}/predictions", json=body)


def verified(item: Received) -> dict[str, Any]:
    """The body of a push, verified by the standardwebhooks library itself."""
    data = Webhook(SECRET).verify(item.body, item.headers)
    assert isinstance(data, dict)
    return data


# -- what is pushed ----------------------------------------------------------------------


async def test_pushes_follow_the_prediction_signed(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    sim = await started(config())
    try:
        sim.define("push-1", PredictionPlan(**{**QUICK.to_json(), "webhook": receiver.url("ok/1")}))
        await until(settled(sim, ["push-1"]))
        final = (await client.get(f"{sim.base_url}/predictions/push-1")).json()
    finally:
        await sim.stop()

    pushes = sim.pushes("push-1")
    events = [p.event for p in pushes]
    assert events[0] == "start" and events[-2:] == ["output", "completed"]
    assert set(events[1:-2]) == {"logs"} and len(events) >= 4
    received = receiver.received("ok/1")
    assert [r.webhook_id for r in received] == [p.webhook_id for p in pushes]
    assert len({r.webhook_id for r in received}) == len(received)
    assert all(r.webhook_id.startswith("msg_") for r in received)
    bodies = [verified(r) for r in received]
    assert all(r.verified for r in received)
    assert [b["status"] for b in bodies[:-2]] == ["processing"] * (len(bodies) - 2)
    assert bodies[-1] == final and final["status"] == "succeeded"
    logs = [b["logs"] for b in bodies]
    assert all(
        later.startswith(earlier) and later != earlier
        for earlier, later in itertools.pairwise(logs[:-1])
    )
    # logs pushes at most one per 0.5 s / speed (allowing for timer rounding)
    times = [p.due_at for p in pushes if p.event == "logs"]
    assert all(b - a >= 0.05 - 0.005 for a, b in itertools.pairwise(times))
    assert all(int(r.headers["webhook-timestamp"]) <= time.time() for r in received)


async def test_events_filter_is_honoured(receiver: Receiver, client: httpx.AsyncClient) -> None:
    filters = {"c": ["completed"], "sc": ["start", "completed"], "lc": ["logs", "completed"]}
    sim = await started(config())
    try:
        ids = {}
        for name, events in filters.items():
            answer = await create(
                client, sim, receiver.url(f"ok/{name}"), webhook_events_filter=events
            )
            assert answer.status_code == 201
            ids[name] = answer.json()["id"]
        failing = await create(client, sim, receiver.url("ok/x"), webhook_events_filter=["done"])
        assert failing.status_code == 422
        assert "done" in failing.json()["detail"]
        await until(settled(sim, list(ids.values())))
    finally:
        await sim.stop()

    for name, events in filters.items():
        got = [p.event for p in sim.pushes(ids[name])]
        assert set(got) <= set(events) and got[-1] == "completed" and got.count("completed") == 1
        received = receiver.received(f"ok/{name}")
        assert len(received) == len(got)
        assert [verified(r)["status"] for r in received][-1] == "succeeded"
    assert [p.event for p in sim.pushes(ids["sc"])] == ["start", "completed"]
    assert "logs" in [p.event for p in sim.pushes(ids["lc"])]


async def test_aborted_and_failed_predictions_complete_once(receiver: Receiver) -> None:
    outcomes: tuple[Outcome, ...] = ("aborted", "failed", "canceled")
    sim = await started(config())
    try:
        for outcome in outcomes:
            plan = PredictionPlan(
                outcome=outcome, queue_seconds=0.2, run_seconds=1, webhook=receiver.url(outcome)
            )
            sim.define(f"end-{outcome}", plan)
        await until(settled(sim, [f"end-{o}" for o in outcomes]))
    finally:
        await sim.stop()
    assert [p.event for p in sim.pushes("end-aborted")] == ["completed"]
    for outcome in outcomes:
        bodies = [verified(r) for r in receiver.received(outcome)]
        assert [b["status"] for b in bodies].count(outcome) == 1
        assert bodies[-1]["status"] == outcome
        assert "output" not in [p.event for p in sim.pushes(f"end-{outcome}")]


async def test_retries_keep_the_webhook_id(receiver: Receiver) -> None:
    sim = await started(config(speed=20.0))
    try:
        plan = PredictionPlan(queue_seconds=0, run_seconds=0.2, webhook=receiver.url("fail2/r"))
        sim.define("retry-1", replace_filter(plan, ["completed"]))
        await until(lambda: any(p.delivered for p in sim.pushes("retry-1")))
    finally:
        await sim.stop()
    (push,) = sim.pushes("retry-1")
    assert [a.status_code for a in push.attempts] == [500, 500, 200]
    received = receiver.received("fail2/r")
    assert [r.webhook_id for r in received] == [push.webhook_id] * 3
    assert all(verified(r)["status"] == "succeeded" for r in received)


def replace_filter(plan: PredictionPlan, events: list[str]) -> PredictionPlan:
    return PredictionPlan(**{**plan.to_json(), "webhook_events_filter": events})


# -- faults ------------------------------------------------------------------------------


async def run_faulty(receiver: Receiver, path: str, **faults: Any) -> Simulator:
    """Six predictions pushing start and completed under ``faults``, until all settled."""
    sim = await started(config(**faults))
    ids = [f"fault-{k}" for k in range(6)]
    try:
        for prediction_id in ids:
            plan = PredictionPlan(queue_seconds=0.2, run_seconds=0.5, webhook=receiver.url(path))
            sim.define(prediction_id, replace_filter(plan, ["start", "completed"]))
        await until(settled(sim, ids))
    finally:
        await sim.stop()
    return sim


async def test_dropped_pushes_are_never_sent_and_fates_repeat_under_a_seed(
    receiver: Receiver,
) -> None:
    mixed = {"push_drop": 0.3, "push_repeat": 0.3, "push_late": 0.3, "seed": 13}
    first = await run_faulty(receiver, "ok/a", **mixed)
    second = await run_faulty(receiver, "ok/b", **mixed)
    fates = [(p.prediction_id, p.event, p.fate) for p in first.pushes()]
    assert sorted(fates) == sorted((p.prediction_id, p.event, p.fate) for p in second.pushes())
    assert {fate for *_, fate in fates} == {"sent", "dropped", "repeated", "late"}
    other_seed = await run_faulty(receiver, "ok/c", **{**mixed, "seed": 14})
    assert sorted(fates) != sorted((p.prediction_id, p.event, p.fate) for p in other_seed.pushes())

    arrived = [r.webhook_id for r in receiver.received("ok/a")]
    for push in first.pushes():
        assert arrived.count(push.webhook_id) == _expected(push), push
        completed = next(p for p in first.pushes(push.prediction_id) if p.event == "completed")
        if push.fate == "late" and completed.fate != "dropped":
            assert arrived.index(push.webhook_id) > arrived.index(completed.webhook_id)
    assert all(r.verified for r in receiver.received())


async def test_all_dropped_means_nothing_arrives(receiver: Receiver) -> None:
    sim = await run_faulty(receiver, "ok/none", push_drop=1.0)
    assert len(sim.pushes()) == 12
    assert {p.fate for p in sim.pushes()} == {"dropped"}
    assert receiver.received() == []


async def test_repeated_pushes_arrive_twice_with_one_webhook_id(receiver: Receiver) -> None:
    sim = await run_faulty(receiver, "ok/twice", push_repeat=1.0)
    received = receiver.received("ok/twice")
    assert len(received) == 24
    for push in sim.pushes():
        copies = [r for r in received if r.webhook_id == push.webhook_id]
        assert len(copies) == 2 and copies[0].body == copies[1].body
        assert all(verified(r)["id"] == push.prediction_id for r in copies)
    completed = [p for p in sim.pushes() if p.event == "completed"]
    assert len(completed) == 6 and all(p.delivered == 2 for p in completed)


async def test_late_pushes_arrive_after_completed_with_their_old_body(
    receiver: Receiver,
) -> None:
    sim = await started(config(push_late=1.0))
    try:
        sim.define("late-1", PredictionPlan(**{**QUICK.to_json(), "webhook": receiver.url("ok/l")}))
        await until(settled(sim, ["late-1"]))
    finally:
        await sim.stop()
    pushes = sim.pushes("late-1")
    assert {p.fate for p in pushes if p.event != "completed"} == {"late"}
    assert [p.fate for p in pushes if p.event == "completed"] == ["sent"]
    order = [r.webhook_id for r in receiver.received("ok/l")]
    completed = next(p for p in pushes if p.event == "completed")
    assert order[0] == completed.webhook_id
    by_id = {r.webhook_id: verified(r) for r in receiver.received("ok/l")}
    start = next(p for p in pushes if p.event == "start")
    assert by_id[start.webhook_id]["status"] == "processing"
    assert by_id[completed.webhook_id]["status"] == "succeeded"


# -- safety ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "https://10.0.0.1/hook",
        "http://127.0.0.1@example.com/hook",
        "http://example.com#@127.0.0.1/",
        "http://127.0.0.1\\@example.com/",
        "http://[::2]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0:9/hook",
        "http://2130706433/hook",
        "http://localhost.example.com/hook",
        "ftp://127.0.0.1/hook",
        "127.0.0.1:9/hook",
        "",
    ],
)
async def test_a_webhook_off_this_machine_is_refused(client: httpx.AsyncClient, url: str) -> None:
    sim = await started(config())
    try:
        answer = await create(client, sim, url)
        assert answer.status_code == 422
        assert answer.json()["detail"]
        assert [r.status_code for r in sim.requests()] == [422]
        root = sim.base_url.removesuffix("/v1")
        defined = await client.put(f"{root}/_sim/predictions/x-1", json={"webhook": url})
        assert defined.status_code == 400
    finally:
        await sim.stop()
    assert sim.pushes() == []


async def test_a_webhook_needs_a_secret(client: httpx.AsyncClient, receiver: Receiver) -> None:
    sim = await started(config(webhook_secret=None))
    try:
        answer = await create(client, sim, receiver.url("ok/s"))
        assert answer.status_code == 422
        assert "--webhook-secret" in answer.json()["detail"]
        with pytest.raises(ValueError, match="secret"):
            sim.define("s-1", PredictionPlan(webhook=receiver.url("ok/s")))
    finally:
        await sim.stop()


async def test_localhost_and_the_models_route(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    sim = await started(config())
    try:
        url = receiver.url("ok/m").replace("127.0.0.1", "localhost")
        body = {"input": {"prompt": "x"}, "webhook": url, "webhook_events_filter": ["completed"]}
        answer = await client.post(f"{sim.base_url}/models/me/my-model/predictions", json=body)
        assert answer.status_code == 201
        created = answer.json()
        assert created["model"] == "me/my-model"
        await until(settled(sim, [created["id"]]))
        listed = (await client.get(f"{sim.base_url.removesuffix('/v1')}/_sim/pushes")).json()
    finally:
        await sim.stop()
    (item,) = receiver.received("ok/m")
    assert verified(item)["id"] == created["id"]
    assert listed["count"] == 1
    assert listed["pushes"][0]["event"] == "completed"
    assert listed["pushes"][0]["attempts"][0]["status_code"] == 200


async def test_a_hanging_receiver_never_slows_the_api(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    sim = await started(config(push_timeout_seconds=5.0, push_retries=0, push_concurrency=2))
    try:
        ids = []
        for k in range(4):
            answer = await create(client, sim, receiver.url(f"hang/{k}"))
            ids.append(answer.json()["id"])
        await until(lambda: len(receiver.received()) >= 2)
        slowest = 0.0
        for prediction_id in ids * 5:
            began = time.monotonic()
            answer = await client.get(f"{sim.base_url}/predictions/{prediction_id}")
            slowest = max(slowest, time.monotonic() - began)
            assert answer.status_code == 200
        assert slowest < 1.0
        # two POSTs hang, the others wait for a slot
        assert len(receiver.received()) == 2
    finally:
        began = time.monotonic()
        await sim.stop()
    assert time.monotonic() - began < 2.0


async def test_each_post_is_bounded_by_the_timeout(receiver: Receiver) -> None:
    sim = await started(config(push_timeout_seconds=0.3, push_retries=0, push_concurrency=1))
    try:
        for k in range(3):
            plan = PredictionPlan(queue_seconds=0, run_seconds=0, webhook=receiver.url(f"hang/{k}"))
            sim.define(f"hang-{k}", replace_filter(plan, ["completed"]))
        await until(lambda: sum(len(p.attempts) for p in sim.pushes()) == 3)
    finally:
        await sim.stop()
    attempts = [a for p in sim.pushes() for a in p.attempts]
    assert {a.error for a in attempts} == {"timeout"}
    starts = sorted(a.at for a in attempts)
    assert all(b - a >= 0.29 for a, b in itertools.pairwise(starts))


# -- the command -------------------------------------------------------------------------


def test_simulate_refuses_impossible_push_shares() -> None:
    result = CliRunner().invoke(simulate_command, ["--push-drop", "0.6", "--push-late", "0.6"])
    assert result.exit_code == 2
    assert "at most 1" in result.output


def test_simulate_command_pushes_with_its_secret(receiver: Receiver) -> None:
    code = "from tracker.cli.simulate import simulate_command; simulate_command()"
    env = {**os.environ, "TRACKER_SIM_WEBHOOK_SECRET": SECRET}
    with subprocess.Popen(
        [sys.executable, "-c", code, "--port", "0", "--speed", "50", "--push-repeat", "1"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as process:
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().strip().removeprefix("simulator listening on ")
            body = {
                "version": "v",
                "input": {},
                "webhook": receiver.url("ok/cli"),
                "webhook_events_filter": ["completed"],
            }
            created = httpx.post(f"{base_url}/predictions", json=body, timeout=5.0)
            assert created.status_code == 201
            deadline = time.monotonic() + 15
            while len(receiver.received("ok/cli")) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            process.terminate()
            process.wait(timeout=10)
    first, second = receiver.received("ok/cli")
    assert first.webhook_id == second.webhook_id
    assert verified(first)["id"] == created.json()["id"]
    assert verified(second)["status"] == "succeeded"
