"""A global request rate limit that can also be paused (Retry-After)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class RateLimiter:
    """Spaces requests evenly at ``rate`` per second, with a small burst.

    ``pause_until`` blocks every caller until a moment on the monotonic clock:
    a 429 with Retry-After applies to the whole API key, so no request at all
    may leave before it has passed, including ones already waiting here.
    """

    def __init__(
        self, rate: float, *, burst: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._interval = 1.0 / rate
        self._burst = max(1.0, burst) * self._interval
        self._clock = clock
        self._next_free = clock()
        self._paused_until = 0.0

    @property
    def paused_until(self) -> float:
        return self._paused_until

    def pause_until(self, moment: float) -> None:
        self._paused_until = max(self._paused_until, moment)

    def remaining_pause(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    async def acquire(self) -> None:
        while True:
            now = self._clock()
            if self._paused_until > now:
                await asyncio.sleep(self._paused_until - now)
                continue
            slot = max(self._next_free, now - self._burst + self._interval)
            self._next_free = slot + self._interval
            wait = slot - now
            if wait > 0:
                await asyncio.sleep(wait)
            if self._paused_until <= self._clock():
                return
            # A pause began while this caller slept: wait it out and queue again.
