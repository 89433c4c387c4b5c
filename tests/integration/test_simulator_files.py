"""The simulator's output files: real PNG images and large streamed files on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from tracker.simulator import (
    PredictionPlan,
    SimConfig,
    Simulator,
    SimulatorThread,
    expected_sha256,
    file_bytes,
    png_image,
)
from tracker.simulator.files import CHUNK_BYTES

T0 = 1_752_305_274.0
#: a plan that succeeds at once, for simulators on a real clock
AT_ONCE = PredictionPlan(queue_seconds=0, run_seconds=0)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client, closed after the test."""
    async with httpx.AsyncClient(timeout=10.0) as http:
        yield http


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


async def started(config: SimConfig, clock: Callable[[], float] = time.time) -> Simulator:
    """A simulator with ``config`` (and ``clock``), already listening."""
    simulator = Simulator(config, clock=clock)
    await simulator.start()
    return simulator


def root(sim: Simulator) -> str:
    """The simulator's origin, e.g. ``http://127.0.0.1:PORT``."""
    return sim.base_url.removesuffix("/v1")


async def wait_for(condition: Callable[[], Awaitable[bool]], limit: float = 10.0) -> None:
    """Check ``condition`` every 10 ms until it holds; fail after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not await condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.01)


async def finished(client: httpx.AsyncClient, sim: Simulator, prediction_id: str) -> dict[str, Any]:
    """The prediction object once it shows ``succeeded`` (polling the API)."""
    url = f"{sim.base_url}/predictions/{prediction_id}"
    body: dict[str, Any] = {}

    async def succeeded() -> bool:
        nonlocal body
        response = await client.get(url)
        body = response.json() if response.status_code == 200 else {}
        return body.get("status") == "succeeded"

    await wait_for(succeeded)
    return body


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The ``(type, data)`` chunks of a PNG file, checking the signature and every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks: list[tuple[bytes, bytes]] = []
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        offset += 12 + length
    assert offset == len(data)
    return chunks


def check_png(data: bytes) -> tuple[int, int]:
    """Check that ``data`` is a valid 8-bit RGB PNG; its ``(width, height)``."""
    chunks = png_chunks(data)
    kinds = [kind for kind, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", chunks[0][1]
    )
    assert (depth, colour, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = 1 + 3 * width
    assert len(raw) == height * stride
    assert all(raw[row * stride] == 0 for row in range(height))  # filter type: none
    return width, height


# -- the content of files ----------------------------------------------------------------


def test_png_images_are_deterministic_and_differ_per_prediction() -> None:
    image = png_image("ok-1")
    assert 200 <= len(image) <= 4096
    assert check_png(image) == (96, 64)
    assert png_image("ok-1", index=0, seed=0) == image
    others = {png_image("ok-2"), png_image("ok-1", index=1), png_image("ok-1", seed=1)}
    assert image not in others and len(others) == 3
    # different colours, not only different bytes: the first pixels differ
    pixels = {zlib.decompress(png_chunks(png_image(f"p-{k}"))[1][1])[1:4] for k in range(6)}
    assert len(pixels) == 6


def test_file_bytes_are_deterministic_chunks() -> None:
    size = 3 * CHUNK_BYTES + 1000
    chunks = list(file_bytes("big-1", size))
    assert [len(chunk) for chunk in chunks] == [CHUNK_BYTES] * 3 + [1000]
    assert len(set(chunks)) == 4  # every chunk differs (a repeated chunk would show)
    assert b"".join(file_bytes("big-1", size)) == b"".join(chunks)
    assert expected_sha256("big-1", size) == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert expected_sha256("big-1", size, seed=1) != expected_sha256("big-1", size)
    assert expected_sha256("big-1", size, index=1) != expected_sha256("big-1", size)
    assert b"".join(file_bytes("big-1", 10)) == chunks[0][:10]
    assert list(file_bytes("big-1", 0)) == []


# -- serving them ----------------------------------------------------------------------------


async def test_generated_output_is_a_png_served_by_the_simulator(
    client: httpx.AsyncClient,
) -> None:
    sim = await started(SimConfig(seed=5, speed=20.0))
    try:
        done = await finished(client, sim, "quick-1")
        url = done["output"]
        assert url == f"{root(sim)}/files/quick-1/0/output.png"
        assert done["metrics"]["image_count"] == 1
        response = await client.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert int(response.headers["content-length"]) == len(response.content)
        assert response.content == png_image("quick-1", seed=5)
        assert check_png(response.content) == (96, 64)
        head = await client.head(url)
        assert head.status_code == 200
        assert head.headers["content-length"] == response.headers["content-length"]
        assert head.content == b""
        assert [(r.index, r.status_code) for r in sim.file_requests("quick-1")] == [(0, 200)] * 2
        assert sim.file_request_count() == 2
        api_requests = sim.request_count("quick-1")
        assert all(r.prediction_id == "quick-1" for r in sim.requests())
        assert sim.request_count() == api_requests  # file requests are not API requests
    finally:
        await sim.stop()


async def test_several_outputs_give_several_files(client: httpx.AsyncClient) -> None:
    sim = await started(SimConfig(speed=20.0))
    try:
        sim.define("three-1", PredictionPlan(queue_seconds=0, run_seconds=0, output_files=3))
        done = await finished(client, sim, "three-1")
        assert done["output"] == [f"{root(sim)}/files/three-1/{i}/output.png" for i in range(3)]
        assert done["metrics"]["image_count"] == 3
        images = [(await client.get(url)).content for url in done["output"]]
        assert [check_png(image) for image in images] == [(96, 64)] * 3
        assert len(set(images)) == 3
        multi = await finished(client, sim, "multi-1")
        assert len(multi["output"]) == 4
        for url in multi["output"]:
            assert (await client.get(url)).status_code == 200
        assert sorted(r.index or 0 for r in sim.file_requests("multi-1")) == [0, 1, 2, 3]
    finally:
        await sim.stop()


async def test_files_answer_404_before_success_and_from_data_removal(
    client: httpx.AsyncClient,
) -> None:
    clock = FakeClock()
    sim = await started(SimConfig(speed=2.0, data_removed_after_seconds=10.0), clock)
    try:
        # speed 2: queue until T0 + 0.5, run until T0 + 1.5, data removed at T0 + 6.5
        sim.define("p-1", PredictionPlan(queue_seconds=1, run_seconds=2))
        url = f"{root(sim)}/files/p-1/0/output.png"
        api = f"{sim.base_url}/predictions/p-1"
        statuses = []
        for at in (0.0, 1.0, 1.4999, 1.5, 6.4999, 6.5, 100.0):
            clock.now = T0 + at
            statuses.append((await client.get(url)).status_code)
            if at == 1.5:
                assert (await client.get(api)).json()["output"] == url
            if at == 6.5:
                removed = (await client.get(api)).json()
                assert removed["data_removed"] is True
                assert removed["output"] is None
        assert statuses == [404, 404, 404, 200, 200, 404, 404]
        response = await client.get(url)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/plain")
        assert [r.status_code for r in sim.file_requests("p-1")] == [*statuses, 404]
    finally:
        await sim.stop()


async def test_files_of_other_outcomes_outputs_and_paths_are_404(
    client: httpx.AsyncClient,
) -> None:
    clock = FakeClock()
    sim = await started(SimConfig(), clock)
    try:
        sim.define("failed-1", PredictionPlan(outcome="failed", queue_seconds=0, run_seconds=0))
        sim.define("mine-1", PredictionPlan(queue_seconds=0, run_seconds=0, output="hi"))
        sim.define("ok-1", AT_ONCE)
        sim.define("gone-1", PredictionPlan(queue_seconds=0, run_seconds=0, not_found=True))
        clock.now += 1
        assert (await client.get(f"{root(sim)}/files/ok-1/0/output.png")).status_code == 200
        for path in (
            "failed-1/0/output.png",
            "mine-1/0/output.png",
            "gone-1/0/output.png",
            "never-seen-1/0/output.png",
            "ok-1/1/output.png",
            "ok-1/00/output.png",
            "ok-1/x/output.png",
            "ok-1/0/output.bin",
            "ok-1/0/output.jpg",
        ):
            assert (await client.get(f"{root(sim)}/files/{path}")).status_code == 404, path
        assert (await client.get(f"{root(sim)}/files/ok-1/0")).status_code == 404
        records = [(r.index, r.status_code) for r in sim.file_requests("ok-1")]
        assert records == [(0, 200), (1, 404), (0, 404), (None, 404), (0, 404), (0, 404)]
        assert sim.request_count() == 0  # nothing created "never-seen-1"
    finally:
        await sim.stop()


async def test_files_need_no_key_and_escape_rate_limit_and_faults(
    client: httpx.AsyncClient,
) -> None:
    clock = FakeClock()
    config = SimConfig(api_key="secret", rate_limit_rps=1.0, fault_rate=1.0)
    sim = await started(config, clock)
    try:
        sim.define("ok-1", AT_ONCE)
        clock.now += 1
        url = f"{root(sim)}/files/ok-1/0/output.png"
        answers = [await client.get(url) for _ in range(20)]
        assert {answer.status_code for answer in answers} == {200}
        assert (await client.get(f"{sim.base_url}/predictions/ok-1")).status_code == 401
        assert sim.request_count() == 1
        assert sim.file_request_count("ok-1") == 20
        listed = (await client.get(f"{root(sim)}/_sim/files?id=ok-1")).json()
        assert listed["count"] == 20
        assert listed["requests"][0] == {
            "at": T0 + 1,
            "prediction_id": "ok-1",
            "index": 0,
            "status_code": 200,
            "cut": False,
        }
    finally:
        await sim.stop()


async def test_flaky_file_answers_503_then_cuts_the_body_then_serves(
    client: httpx.AsyncClient,
) -> None:
    clock = FakeClock()
    sim = await started(SimConfig(), clock)
    try:
        sim.define("flakyfile-1", PredictionPlan(queue_seconds=0, run_seconds=0, file_faults=[]))
        clock.now += 1
        url = f"{root(sim)}/files/flakyfile-1/0/output.png"
        assert (await client.get(url)).status_code == 200  # a defined plan has no faults
        await client.get(f"{sim.base_url}/predictions/flakyfile-2")
        clock.now += 100
        url = f"{root(sim)}/files/flakyfile-2/0/output.png"
        first = await client.get(url)
        assert first.status_code == 503
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(url)
        third = await client.get(url)
        assert third.status_code == 200
        assert third.content == png_image("flakyfile-2")
        records = sim.file_requests("flakyfile-2")
        assert [(r.status_code, r.cut) for r in records] == [
            (503, False),
            (200, True),
            (200, False),
        ]
    finally:
        await sim.stop()


async def test_cut_body_stops_halfway_through_a_large_file(client: httpx.AsyncClient) -> None:
    clock = FakeClock()
    sim = await started(SimConfig(), clock)
    try:
        size = 1_000_000
        plan = PredictionPlan(
            queue_seconds=0, run_seconds=0, output_files=2, output_bytes=size, file_faults=["cut"]
        )
        sim.define("cut-1", plan)
        clock.now += 1
        for index in (0, 1):  # each file gets its own faults
            received = bytearray()
            url = f"{root(sim)}/files/cut-1/{index}/output.bin"
            with pytest.raises(httpx.RemoteProtocolError):
                async with client.stream("GET", url) as response:
                    assert response.headers["content-length"] == str(size)
                    async for chunk in response.aiter_raw():
                        received += chunk
            assert bytes(received) == b"".join(file_bytes("cut-1", size, index=index))[: size // 2]
            whole = await client.get(url)
            assert hashlib.sha256(whole.content).hexdigest() == expected_sha256(
                "cut-1", size, index=index
            )
    finally:
        await sim.stop()


async def test_big_file_streams_with_its_length_and_sha256(client: httpx.AsyncClient) -> None:
    size = 5 * 1024 * 1024 + 123
    sim = await started(SimConfig(seed=9, speed=50.0, bigfile_bytes=size))
    try:
        done = await finished(client, sim, "bigfile-1")
        assert done["output"] == f"{root(sim)}/files/bigfile-1/0/output.bin"
        assert "image_count" not in done["metrics"]
        digest = hashlib.sha256()
        reads = 0
        async with client.stream("GET", done["output"]) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/octet-stream"
            assert response.headers["content-length"] == str(size)
            async for chunk in response.aiter_bytes():
                digest.update(chunk)
                reads += 1
        assert reads > 1
        assert digest.hexdigest() == expected_sha256("bigfile-1", size, seed=9)
    finally:
        await sim.stop()


async def test_big_file_is_never_held_in_memory(client: httpx.AsyncClient) -> None:
    size = 50 * 1024 * 1024
    clock = FakeClock()
    sim = await started(SimConfig(), clock)
    try:
        sim.define("big-1", PredictionPlan(queue_seconds=0, run_seconds=0, output_bytes=size))
        sim.define("warm-1", PredictionPlan(queue_seconds=0, run_seconds=0, output_bytes=200_000))
        clock.now += 1
        # a first download imports and caches what the client needs, outside the count
        assert len((await client.get(f"{root(sim)}/files/warm-1/0/output.bin")).content) == 200_000
        url = f"{root(sim)}/files/big-1/0/output.bin"
        digest = hashlib.sha256()
        received = 0
        tracemalloc.start()
        try:
            async with client.stream("GET", url) as response:
                async for chunk in response.aiter_raw():
                    digest.update(chunk)
                    received += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert received == size
        # server and client together, in this process (about 1 MB): far below the file's size
        assert peak < size // 10, f"peak traced memory {peak} bytes"
        assert digest.hexdigest() == expected_sha256("big-1", size)
    finally:
        await sim.stop()


# -- from synchronous code and the command line --------------------------------------------


def test_simulator_thread_reports_file_requests() -> None:
    with SimulatorThread(SimConfig(speed=50.0)) as sim, httpx.Client(timeout=5.0) as http:
        sim.define("ok-1", AT_ONCE)
        output = http.get(f"{sim.base_url}/predictions/ok-1").json()["output"]
        assert http.get(output).status_code == 200
        assert sim.file_request_count() == 1
        assert [r.status_code for r in sim.file_requests("ok-1")] == [200]


def test_simulate_command_serves_big_files_until_their_removal() -> None:
    code = "from tracker.cli.simulate import simulate_command; simulate_command()"
    args = ["--port", "0", "--speed", "50", "--bigfile-size", "1K", "--data-removed-after", "5"]
    with subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().strip().removeprefix("simulator listening on ")
            with httpx.Client(timeout=5.0) as http:
                deadline = time.monotonic() + 10
                body = http.get(f"{base_url}/predictions/bigfile-1").json()
                while body["status"] != "succeeded":
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
                    body = http.get(f"{base_url}/predictions/bigfile-1").json()
                url = body["output"]
                assert url.endswith("/files/bigfile-1/0/output.bin")
                content = http.get(url).content
                assert hashlib.sha256(content).hexdigest() == expected_sha256("bigfile-1", 1024)
                # data removal 5 s / 50 = 0.1 s after the end
                while not http.get(f"{base_url}/predictions/bigfile-1").json()["data_removed"]:
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
                assert http.get(url).status_code == 404
        finally:
            process.terminate()
            process.wait(timeout=10)
