"""RateLimiter on virtual time: a fake monotonic clock and a fake asyncio.sleep.

``tracker.poll.ratelimit`` sees an ``asyncio`` whose ``sleep`` parks the caller until the
virtual clock reaches its wake-up time; ``VirtualTime.run`` advances the clock from
one wake-up to the next, so every test is exact and takes no real time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable
from types import SimpleNamespace
from typing import Any

import pytest

from tracker.poll import ratelimit
from tracker.poll.ratelimit import RateLimiter

START = 1000.0
_real_sleep = asyncio.sleep


class VirtualTime:
    def __init__(self, start: float = START) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, delay), next(self._seq), future))
        await future

    async def _settle(self) -> None:
        for _ in range(20):
            await _real_sleep(0)

    async def run(self, *coros: Awaitable[Any]) -> list[Any]:
        """Run coroutines to completion, jumping the clock from wake-up to wake-up."""
        tasks = [asyncio.ensure_future(c) for c in coros]
        try:
            while True:
                await self._settle()
                if all(t.done() for t in tasks):
                    return [t.result() for t in tasks]
                assert self._sleepers, "deadlock: tasks blocked but nobody is sleeping"
                wake, _, future = heapq.heappop(self._sleepers)
                self.now = max(self.now, wake)
                future.set_result(None)
        finally:
            for t in tasks:
                t.cancel()


@pytest.fixture
def vt(monkeypatch: pytest.MonkeyPatch) -> VirtualTime:
    clock = VirtualTime()
    monkeypatch.setattr(ratelimit, "asyncio", SimpleNamespace(sleep=clock.sleep))
    return clock


async def acquired_at(limiter: RateLimiter, vt: VirtualTime) -> float:
    await limiter.acquire()
    return vt.now


def offsets(times: list[float]) -> list[float]:
    return [round(t - START, 9) for t in times]


async def test_concurrent_acquires_are_spaced_one_over_rate(vt: VirtualTime) -> None:
    limiter = RateLimiter(4.0, clock=vt)
    times = await vt.run(*(acquired_at(limiter, vt) for _ in range(6)))
    assert offsets(sorted(times)) == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]


async def test_sequential_acquires_are_spaced_one_over_rate(vt: VirtualTime) -> None:
    limiter = RateLimiter(10.0, clock=vt)

    async def serial() -> list[float]:
        return [await acquired_at(limiter, vt) for _ in range(5)]

    [times] = await vt.run(serial())
    assert offsets(times) == [0.0, 0.1, 0.2, 0.3, 0.4]


async def test_first_acquire_does_not_wait(vt: VirtualTime) -> None:
    limiter = RateLimiter(1.0, clock=vt)
    [t] = await vt.run(acquired_at(limiter, vt))
    assert t == START
    assert vt.sleeps == []


async def test_idle_time_is_not_saved_up_without_burst(vt: VirtualTime) -> None:
    limiter = RateLimiter(2.0, clock=vt)
    await vt.run(acquired_at(limiter, vt))
    vt.now += 60.0  # idle for a minute
    times = await vt.run(*(acquired_at(limiter, vt) for _ in range(3)))
    assert [round(t - START - 60.0, 9) for t in sorted(times)] == [0.0, 0.5, 1.0]


async def test_burst_lets_a_few_go_at_once_after_idle_time(vt: VirtualTime) -> None:
    limiter = RateLimiter(4.0, burst=3.0, clock=vt)
    await vt.run(acquired_at(limiter, vt))
    vt.now += 10.0
    times = await vt.run(*(acquired_at(limiter, vt) for _ in range(5)))
    assert [round(t - START - 10.0, 9) for t in sorted(times)] == [0.0, 0.0, 0.0, 0.25, 0.5]


async def test_pause_until_holds_every_acquire_until_the_end(vt: VirtualTime) -> None:
    limiter = RateLimiter(10.0, clock=vt)
    limiter.pause_until(START + 5.0)
    times = await vt.run(*(acquired_at(limiter, vt) for _ in range(3)))
    assert offsets(sorted(times)) == [5.0, 5.1, 5.2]


async def test_pause_catches_callers_already_waiting_for_their_slot(vt: VirtualTime) -> None:
    limiter = RateLimiter(10.0, clock=vt)
    pause_end = START + 0.05 + 5.0

    async def pauser() -> None:
        await vt.sleep(0.05)  # B and C are now asleep, waiting for 0.1 and 0.2
        limiter.pause_until(vt.now + 5.0)

    a, b, c, _ = await vt.run(
        acquired_at(limiter, vt), acquired_at(limiter, vt), acquired_at(limiter, vt), pauser()
    )
    assert a == START
    assert b >= pause_end
    assert c >= pause_end
    assert offsets(sorted([b, c])) == [5.05, 5.15]


async def test_pause_extended_while_callers_wait_on_it(vt: VirtualTime) -> None:
    limiter = RateLimiter(10.0, clock=vt)
    limiter.pause_until(START + 3.0)

    async def extender() -> None:
        await vt.sleep(1.0)
        limiter.pause_until(START + 8.0)

    *times, _ = await vt.run(acquired_at(limiter, vt), acquired_at(limiter, vt), extender())
    assert offsets(sorted(times)) == [8.0, 8.1]


async def test_acquires_after_the_pause_are_not_delayed(vt: VirtualTime) -> None:
    limiter = RateLimiter(10.0, clock=vt)
    limiter.pause_until(START + 1.0)
    vt.now = START + 2.0
    [t] = await vt.run(acquired_at(limiter, vt))
    assert t == START + 2.0


def test_pause_until_never_shortens_a_pause() -> None:
    now = [START]
    limiter = RateLimiter(10.0, clock=lambda: now[0])
    limiter.pause_until(START + 10.0)
    limiter.pause_until(START + 4.0)
    assert limiter.paused_until == START + 10.0
    limiter.pause_until(START + 12.0)
    assert limiter.paused_until == START + 12.0


def test_remaining_pause() -> None:
    now = [START]
    limiter = RateLimiter(10.0, clock=lambda: now[0])
    assert limiter.remaining_pause() == 0.0
    limiter.pause_until(START + 7.5)
    assert limiter.remaining_pause() == 7.5
    now[0] = START + 4.0
    assert limiter.remaining_pause() == 3.5
    now[0] = START + 7.5
    assert limiter.remaining_pause() == 0.0
    now[0] = START + 100.0
    assert limiter.remaining_pause() == 0.0


@pytest.mark.parametrize("rate", [0, 0.0, -1.0, -0.001])
def test_invalid_rate_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        RateLimiter(rate)


async def test_real_clock_default_works_without_fakes() -> None:
    # a high rate keeps the real waits tiny; only checks the defaults are wired up
    limiter = RateLimiter(1000.0)
    for _ in range(3):
        await asyncio.wait_for(limiter.acquire(), timeout=5)
    assert limiter.remaining_pause() == 0.0
