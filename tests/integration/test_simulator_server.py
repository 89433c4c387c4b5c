"""The simulator as a real HTTP server on loopback, hit with httpx."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tracker.simulator import Fault, PredictionPlan, SimConfig, Simulator, SimulatorThread

FAST = SimConfig(speed=20.0, seed=3)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A running simulator, 20 times faster than real time."""
    simulator = Simulator(FAST)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client, closed after the test."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http


async def started(config: SimConfig) -> Simulator:
    """A simulator with ``config``, already listening."""
    simulator = Simulator(config)
    await simulator.start()
    return simulator


async def poll(client: httpx.AsyncClient, url: str, *, limit: float = 5.0) -> list[httpx.Response]:
    """GET ``url`` every 10 ms until the prediction ends; every response."""
    responses: list[httpx.Response] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        response = await client.get(url)
        responses.append(response)
        if _ended(response):
            return responses
        await asyncio.sleep(0.01)
    raise AssertionError(f"{url} did not finish in {limit} s")


def _status(response: httpx.Response) -> str | None:
    """The prediction status in a response, or ``None`` when it is not a prediction."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("status") if isinstance(body, dict) else None


def _ended(response: httpx.Response) -> bool:
    """True when ``response`` shows a prediction that has ended."""
    return response.status_code == 200 and _status(response) in (
        "succeeded",
        "failed",
        "canceled",
        "aborted",
    )


def distinct(items: list[object]) -> list[object]:
    """``items`` without consecutive repeats."""
    return [item for i, item in enumerate(items) if i == 0 or items[i - 1] != item]


# -- the prediction API -----------------------------------------------------------------


async def test_prediction_runs_to_success(client: httpx.AsyncClient) -> None:
    # At speed 2 the run lasts 0.25 s: long enough for polls every 10 ms to see it
    # processing even on a busy machine (at speed 20 it lasted 25 ms).
    sim = await started(SimConfig(speed=2.0, seed=3))
    try:
        await _runs_to_success(sim, client)
    finally:
        await sim.stop()


async def _runs_to_success(sim: Simulator, client: httpx.AsyncClient) -> None:
    assert sim.base_url.startswith("http://127.0.0.1:")
    assert sim.base_url.endswith("/v1")
    responses = await poll(client, f"{sim.base_url}/predictions/quick-1")
    assert {r.status_code for r in responses} == {200}
    assert distinct([_status(r) for r in responses]) == ["starting", "processing", "succeeded"]
    logs = [r.json()["logs"] for r in responses]
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(logs))
    final = responses[-1].json()
    assert responses[-1].headers["content-type"].startswith("application/json")
    assert final["id"] == "quick-1"
    assert final["output"] == f"{sim.base_url.removesuffix('/v1')}/files/quick-1/0/output.png"
    assert final["urls"]["get"] == f"{sim.base_url}/predictions/quick-1"
    assert sim.request_count("quick-1") == len(responses)
    records = sim.requests("quick-1")
    assert [r.status_code for r in records] == [200] * len(responses)
    assert records[0].at <= records[-1].at
    assert abs(records[0].at - time.time()) < 10


class SteppedClock:
    """A simulator's clock that moves only when told: what a poll sees depends on the
    simulated time between polls, not on how promptly a busy machine runs them."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def test_outcomes_by_prefix(client: httpx.AsyncClient) -> None:
    # On the real clock weird-1 shows `queued_elsewhere` for 25 ms at speed 20, which
    # polls every 10 ms miss whenever the machine is busy. Here every prediction is
    # polled once per round and the clock moves 10 ms (0.2 simulated s) between rounds:
    # each status lasting longer than that (queued_elsewhere: 0.5 s) is seen, whatever
    # the load.
    clock = SteppedClock()
    sim = Simulator(FAST, clock=clock)
    await sim.start()
    try:
        expected = {
            "fail-1": "failed",
            "cancel-1": "canceled",
            "abort-1": "aborted",
            "weird-1": "succeeded",
        }
        results: dict[str, list[httpx.Response]] = {pid: [] for pid in expected}
        for _ in range(1000):  # 10 s on the simulator's clock: 200 s simulated
            running = [pid for pid, got in results.items() if not got or not _ended(got[-1])]
            if not running:
                break
            answers = await asyncio.gather(
                *(client.get(f"{sim.base_url}/predictions/{pid}") for pid in running)
            )
            for pid, answer in zip(running, answers, strict=True):
                results[pid].append(answer)
            clock.advance(0.01)
    finally:
        await sim.stop()
    finals = {pid: responses[-1].json() for pid, responses in results.items()}
    assert {pid: body["status"] for pid, body in finals.items()} == expected
    assert finals["fail-1"]["error"]
    assert finals["abort-1"]["started_at"] is None
    weird = distinct([_status(r) for r in results["weird-1"]])
    assert weird == ["starting", "queued_elsewhere", "processing", "succeeded"]


async def test_unknown_and_invalid_ids_get_404(sim: Simulator, client: httpx.AsyncClient) -> None:
    for pid in ("gone-1", "gone-1", "-leading-dash", "x" * 129, "bad.id"):
        response = await client.get(f"{sim.base_url}/predictions/{pid}")
        assert response.status_code == 404, pid
        assert response.json() == {"detail": "Not found."}


# -- faults -----------------------------------------------------------------------------


async def test_flaky_answers_500_502_503_then_normally(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    url = f"{sim.base_url}/predictions/flaky-1"
    responses = [await client.get(url) for _ in range(4)]
    assert [r.status_code for r in responses] == [500, 502, 503, 200]
    assert "retry-after" not in responses[2].headers
    assert "detail" in responses[0].json()
    assert responses[3].json()["id"] == "flaky-1"
    assert [r.status_code for r in sim.requests("flaky-1")] == [500, 502, 503, 200]


async def test_junk_answers_html_then_not_a_prediction(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    url = f"{sim.base_url}/predictions/junk-1"
    html, not_prediction, normal = [await client.get(url) for _ in range(3)]
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        json.loads(html.text)
    assert not_prediction.status_code == 200
    body = not_prediction.json()
    assert set(body) == {"created", "data"}
    assert body["data"][0]["url"].startswith("https://")
    assert normal.json()["id"] == "junk-1"


async def test_ratelimit_prefix_answers_429_with_retry_after_2(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    url = f"{sim.base_url}/predictions/ratelimit-1"
    first, second = await client.get(url), await client.get(url)
    assert first.status_code == 429
    assert first.headers["retry-after"] == "2"
    assert first.json()["detail"].startswith("Request was throttled.")
    assert second.status_code == 200


async def test_slow_prefix_delays_every_answer(client: httpx.AsyncClient) -> None:
    simulator = await started(SimConfig(speed=10.0))
    try:
        url = f"{simulator.base_url}/predictions/slow-1"
        for _ in range(2):
            begin = time.monotonic()
            response = await client.get(url)
            assert response.status_code == 200
            assert time.monotonic() - begin >= 0.14
    finally:
        await simulator.stop()


async def test_defined_faults_of_each_kind(sim: Simulator, client: httpx.AsyncClient) -> None:
    plan = PredictionPlan.from_json(
        {
            "queue_seconds": 100,
            "faults": [
                "pass",
                {"kind": "http", "status": 429, "retry_after": 7},
                {"kind": "delay", "seconds": 10},
                "html",
                "not_prediction",
                504,
            ],
        }
    )
    sim.define("faulty-1", plan)
    url = f"{sim.base_url}/predictions/faulty-1"
    got = []
    for _ in range(7):
        begin = time.monotonic()
        response = await client.get(url)
        got.append((response.status_code, _status(response), time.monotonic() - begin))
    assert [(code, status) for code, status, _ in got] == [
        (200, "starting"),
        (429, None),
        (200, "starting"),
        (200, None),
        (200, None),
        (504, None),
        (200, "starting"),
    ]
    assert got[2][2] >= 0.49  # 10 s at speed 20
    assert max(elapsed for i, (_, _, elapsed) in enumerate(got) if i != 2) < 0.4


async def test_fault_rate_one_fails_every_request(client: httpx.AsyncClient) -> None:
    simulator = await started(SimConfig(fault_rate=1.0))
    try:
        codes = {
            (await client.get(f"{simulator.base_url}/predictions/ok-{i}")).status_code
            for i in range(30)
        }
        assert codes == {500, 502}
        control = await client.get(f"{simulator.base_url.removesuffix('/v1')}/_sim/health")
        assert control.status_code == 200
    finally:
        await simulator.stop()


# -- auth and rate limit ----------------------------------------------------------------


async def test_api_key_is_required_when_configured(client: httpx.AsyncClient) -> None:
    simulator = await started(SimConfig(api_key="s3cret"))
    try:
        url = f"{simulator.base_url}/predictions/ok-1"
        cases = {
            None: 401,
            "Bearer wrong": 401,
            "Token s3cret": 401,
            "Bearer s3cret": 200,
        }
        for header, expected in cases.items():
            headers = {"Authorization": header} if header else {}
            response = await client.get(url, headers=headers)
            assert response.status_code == expected, header
            if expected == 401:
                assert response.json() == {"detail": "Unauthenticated"}
        created = await client.post(
            f"{simulator.base_url}/predictions", json={"version": "v", "input": {}}
        )
        assert created.status_code == 401
        assert [r.status_code for r in simulator.requests("ok-1")] == [401, 401, 401, 200]
    finally:
        await simulator.stop()


async def test_rate_limit_answers_429_with_retry_after_1(client: httpx.AsyncClient) -> None:
    simulator = await started(SimConfig(rate_limit_rps=5.0))
    try:
        url = f"{simulator.base_url}/predictions/ok-1"
        responses = [await client.get(url) for _ in range(12)]
        codes = [r.status_code for r in responses]
        assert codes[:5] == [200] * 5
        assert codes.count(429) >= 3
        assert set(codes) == {200, 429}
        throttled = next(r for r in responses if r.status_code == 429)
        assert throttled.headers["retry-after"] == "1"
        assert throttled.json() == {"detail": "Request was throttled."}
        await asyncio.sleep(0.25)
        assert (await client.get(url)).status_code == 200
    finally:
        await simulator.stop()


# -- control API and create -------------------------------------------------------------


async def test_control_api_defines_plans(sim: Simulator, client: httpx.AsyncClient) -> None:
    root = sim.base_url.removesuffix("/v1")
    plan = {
        "outcome": "failed",
        "queue_seconds": 0,
        "run_seconds": 0.4,
        "log_lines": ["one", "two"],
        "error": "custom failure",
        "model": "me/model",
    }
    defined = await client.put(f"{root}/_sim/predictions/mine-1", json=plan)
    assert defined.status_code == 200
    assert defined.json()["plan"]["error"] == "custom failure"
    final = (await poll(client, f"{sim.base_url}/predictions/mine-1"))[-1].json()
    assert final["status"] == "failed"
    assert final["error"] == "custom failure"
    assert final["logs"] == "one\ntwo\n"
    assert final["model"] == "me/model"

    bad = await client.put(f"{root}/_sim/predictions/mine-2", json={"outcome": "exploded"})
    assert bad.status_code == 400
    assert "outcome" in bad.json()["detail"]
    not_json = await client.put(f"{root}/_sim/predictions/mine-2", content=b"{nope")
    assert not_json.status_code == 400
    bad_id = await client.put(f"{root}/_sim/predictions/-x", json={})
    assert bad_id.status_code == 400

    listed = (await client.get(f"{root}/_sim/requests", params={"id": "mine-1"})).json()
    assert listed["count"] == sim.request_count("mine-1") > 0
    assert {r["prediction_id"] for r in listed["requests"]} == {"mine-1"}
    assert set(listed["requests"][0]) == {"at", "prediction_id", "status_code", "action"}
    assert {r["action"] for r in listed["requests"]} == {"get"}
    everything = (await client.get(f"{root}/_sim/requests")).json()
    assert everything["count"] == sim.request_count()
    health = (await client.get(f"{root}/_sim/health")).json()
    assert health["status"] == "ok"
    assert health["predictions"] == 1


async def test_redefining_restarts_the_clock_and_faults(
    sim: Simulator, client: httpx.AsyncClient
) -> None:
    url = f"{sim.base_url}/predictions/re-1"
    sim.define("re-1", PredictionPlan(queue_seconds=0, run_seconds=0, faults=[Fault.html()]))
    assert (await client.get(url)).headers["content-type"].startswith("text/html")
    first = (await client.get(url)).json()
    assert first["status"] == "succeeded"

    sim.define("re-1", PredictionPlan(queue_seconds=100, faults=[Fault.html()]))
    assert (await client.get(url)).headers["content-type"].startswith("text/html")
    again = (await client.get(url)).json()
    assert again["status"] == "starting"
    assert again["created_at"] > first["created_at"]
    with pytest.raises(ValueError):
        sim.define("bad id", PredictionPlan())


async def test_create_prediction(sim: Simulator, client: httpx.AsyncClient) -> None:
    payload = {"version": "abc123", "input": {"prompt": "a cat"}}
    created = await client.post(f"{sim.base_url}/predictions", json=payload)
    assert created.status_code == 201
    body = created.json()
    assert body["status"] == "starting"
    assert body["input"] == {"prompt": "a cat"}
    assert body["version"] == "abc123"
    assert body["started_at"] is None
    assert len(body["id"]) == 26
    assert body["urls"]["get"] == f"{sim.base_url}/predictions/{body['id']}"
    final = (await poll(client, body["urls"]["get"]))[-1].json()
    assert final["status"] == "succeeded"
    assert final["created_at"] == body["created_at"]
    assert sim.requests(body["id"])[0].status_code == 201

    by_model = await client.post(f"{sim.base_url}/predictions", json={"model": "me/m", "input": {}})
    assert by_model.json()["model"] == "me/m"
    assert by_model.json()["id"] != body["id"]
    bad_bodies: list[object] = [{"input": {}}, {"version": "v"}, [1], "text"]
    for bad in bad_bodies:
        response = await client.post(f"{sim.base_url}/predictions", json=bad)
        assert response.status_code == 422, bad
        assert response.json()["detail"]


async def test_data_removed_after_configured_time(client: httpx.AsyncClient) -> None:
    simulator = await started(SimConfig(data_removed_after_seconds=0.5))
    try:
        simulator.define("old-1", PredictionPlan(queue_seconds=0, run_seconds=0.05))
        url = f"{simulator.base_url}/predictions/old-1"
        await asyncio.sleep(0.1)
        done = (await client.get(url)).json()
        assert done["status"] == "succeeded"
        assert done["output"] is not None
        assert done["data_removed"] is False
        await asyncio.sleep(0.5)
        removed = (await client.get(url)).json()
        assert removed["data_removed"] is True
        assert removed["output"] is None
    finally:
        await simulator.stop()


async def test_start_twice_is_refused_and_stop_closes_the_port(
    client: httpx.AsyncClient,
) -> None:
    simulator = await started(SimConfig())
    url = f"{simulator.base_url}/predictions/ok-1"
    with pytest.raises(RuntimeError):
        await simulator.start()
    await simulator.stop()
    with pytest.raises(RuntimeError):
        _ = simulator.base_url
    with pytest.raises(httpx.ConnectError):
        await client.get(url)


# -- SimulatorThread and the command ----------------------------------------------------


def test_simulator_thread_serves_synchronous_code() -> None:
    with SimulatorThread(SimConfig(speed=20.0)) as sim, httpx.Client(timeout=5.0) as http:
        sim.define("mine-1", PredictionPlan(outcome="canceled", queue_seconds=0, run_seconds=0))
        assert http.get(f"{sim.base_url}/predictions/mine-1").json()["status"] == "canceled"
        assert http.get(f"{sim.base_url}/predictions/gone-1").status_code == 404
        assert sim.request_count() == 2
        assert sim.request_count("mine-1") == 1
        assert [r.status_code for r in sim.requests()] == [200, 404]
        url = f"{sim.base_url}/predictions/ok-1"
    with httpx.Client() as http, pytest.raises(httpx.ConnectError):
        http.get(url)
    assert sim.request_count() == 2


def test_simulate_command_serves_until_sigterm() -> None:
    code = "from tracker.cli.simulate import simulate_command; simulate_command()"
    with subprocess.Popen(
        [sys.executable, "-c", code, "--port", "0", "--speed", "50", "--api-key", "k"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("simulator listening on http://127.0.0.1:")
        base_url = line.removeprefix("simulator listening on ")
        with httpx.Client(timeout=5.0) as http:
            headers = {"Authorization": "Bearer k"}
            answer = http.get(f"{base_url}/predictions/quick-1", headers=headers)
            assert answer.json()["status"] == "starting"
            assert http.get(f"{base_url}/predictions/quick-1").status_code == 401
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
