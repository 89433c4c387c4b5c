"""The upstream client against a hostile server on loopback: answers that never
end, come one byte a second, or are huge (TRACKER_MAX_ANSWER_BYTES, TRACKER_POLL_TIMEOUT)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.hostile import HostileServer
from tracker.exceptions import UpstreamBadAnswer, UpstreamTransient
from tracker.poll.upstream import DEFAULT_MAX_ANSWER_BYTES, UpstreamClient, make_http_client

MiB = 1024 * 1024


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


class LoopLag:
    """The longest the event loop went without running a 10 ms ticker, busy: each time
    the ticker runs late, the lesser of how late and the CPU time the loop's thread
    spent meanwhile. Work done on the loop counts whole; a process that waited for a
    CPU on a loaded machine (its thread ran nothing) does not."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before, cpu_before = time.monotonic(), time.thread_time()
            await asyncio.sleep(0.01)
            late = time.monotonic() - before - 0.01
            self.worst = max(self.worst, min(late, time.thread_time() - cpu_before))

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def client(base: str, **kwargs: float) -> AsyncIterator[UpstreamClient]:
    async with make_http_client(max_connections=4) as http:
        yield UpstreamClient(http, base, "key", **kwargs)  # type: ignore[arg-type]


async def poll(base: str, prediction_id: str = "p1", **kwargs: float) -> object:
    async for upstream in client(base, **kwargs):
        return await upstream.get_prediction(prediction_id)
    raise AssertionError


async def test_an_endless_answer_is_read_up_to_the_cap_then_dropped(
    hostile: HostileServer,
) -> None:
    started = time.monotonic()
    with pytest.raises(UpstreamBadAnswer, match=r"answer longer than 1 MiB; not read further"):
        await poll(hostile.url("endless"), max_answer_bytes=MiB)
    assert time.monotonic() - started < 5
    for _ in range(50):  # the connection is closed, not drained
        if hostile.closed_early("endless"):
            break
        await asyncio.sleep(0.05)
    assert hostile.closed_early("endless") == 1
    assert hostile.sent("endless") < 16 * MiB


async def test_a_declared_length_past_the_cap_is_refused_before_reading(
    hostile: HostileServer,
) -> None:
    with pytest.raises(UpstreamBadAnswer, match="answer longer than 64 KiB"):
        await poll(hostile.url(f"giant-{64 * MiB}"), max_answer_bytes=64 * 1024)
    # What the server could write before the refusal: the kernel's buffers on both ends
    # (a send buffer grows to 4 MiB here, more on a slow CI runner), never the answer
    assert hostile.sent(f"giant-{64 * MiB}") < 16 * MiB


@pytest.mark.parametrize("framing", ["giant", "giantchunked"])
async def test_a_200_mb_answer_neither_fills_memory_nor_blocks_the_loop(
    hostile: HostileServer, framing: str
) -> None:
    started = time.monotonic()
    async with LoopLag() as lag:
        with pytest.raises(UpstreamBadAnswer, match="answer longer than 16 MiB"):
            await poll(hostile.url(f"{framing}-{200 * MiB}"))
    assert time.monotonic() - started < 10
    print(f"worst loop lag {lag.worst:.3f} s")
    assert lag.worst < 0.25, f"the event loop stalled for {lag.worst:.3f} s"


async def test_an_answer_just_under_the_cap_is_parsed_without_blocking_the_loop(
    hostile: HostileServer,
) -> None:
    size = DEFAULT_MAX_ANSWER_BYTES - 1024
    async with LoopLag() as lag:
        answer = await poll(hostile.url(f"giantchunked-{size}"))
    assert answer.body["id"] == "p1"  # type: ignore[attr-defined]
    assert len(answer.body["logs"]) > size - 100  # type: ignore[attr-defined]
    print(f"worst loop lag {lag.worst:.3f} s")
    assert lag.worst < 0.25, f"the event loop stalled for {lag.worst:.3f} s"


async def test_a_slowloris_answer_times_out_as_a_whole(hostile: HostileServer) -> None:
    started = time.monotonic()
    with pytest.raises(UpstreamTransient, match=r"^timeout after 1.5 s \(answer incomplete\)$"):
        await poll(hostile.url("slowloris"), timeout=1.5)
    assert 1.4 < time.monotonic() - started < 3


async def test_headers_sent_one_byte_a_second_time_out_too(hostile: HostileServer) -> None:
    started = time.monotonic()
    with pytest.raises(UpstreamTransient, match="timeout"):
        await poll(hostile.url("dribble"), timeout=1.5)
    assert time.monotonic() - started < 3


async def test_an_endless_error_answer_is_read_only_for_its_snippet(
    hostile: HostileServer,
) -> None:
    with pytest.raises(UpstreamTransient, match=r"HTTP 500: …|HTTP 500") as caught:
        await poll(hostile.url("endless-500"))
    assert caught.value.status_code == 500
    assert len(caught.value.detail) < 200
    assert hostile.sent("endless-500") < 16 * MiB


async def test_ordinary_answers_still_come_through(hostile: HostileServer) -> None:
    answer = await poll(hostile.url("ok"), "abc")
    assert answer.body == {"id": "abc", "status": "processing"}  # type: ignore[attr-defined]
