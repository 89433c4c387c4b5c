"""The gate every request to the upstream passes: the request budget, the pause a
rate limit imposes on the whole key, and the pause while the key is rejected."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tracker.exceptions import UpstreamAuthError, UpstreamError, UpstreamRateLimited
from tracker.poll.ratelimit import RateLimiter

log = logging.getLogger(__name__)

#: while the API key is rejected, one probe request this often (seconds)
AUTH_RECHECK_SECONDS = 60.0


class UpstreamGate:
    def __init__(self, max_rps: float, *, on_auth_error: Callable[[], None] = lambda: None):
        self._limiter = RateLimiter(max_rps)
        self._on_auth_error = on_auth_error
        #: why the upstream rejects the API key, while it does
        self.auth_error: str | None = None
        self._next_auth_probe = 0.0

    async def acquire(self) -> None:
        """Wait for the request budget (and any rate-limit pause)."""
        await self._limiter.acquire()

    def remaining_pause(self) -> float:
        """Seconds until requests may go out again after a rate limit (0: now)."""
        return self._limiter.remaining_pause()

    def paused(self, *, probe: bool) -> bool:
        """Whether a request must not go out: the key is rejected, and this is not
        the one probe request that checks whether it is accepted again."""
        return self.auth_error is not None and not probe

    def claim_limit(self, limit: int) -> int:
        """How many predictions to claim now: while the key is rejected, one probe
        every AUTH_RECHECK_SECONDS, else ``limit``."""
        if self.auth_error is None:
            return limit
        if time.monotonic() < self._next_auth_probe:
            return 0
        self._next_auth_probe = time.monotonic() + AUTH_RECHECK_SECONDS
        return min(limit, 1)

    def failed(self, error: UpstreamError) -> bool:
        """Take note of an error; True when it was a rate limit (every request waits)."""
        if isinstance(error, UpstreamAuthError):
            self._rejected(error)
        elif isinstance(error, UpstreamRateLimited):
            self._slow_down(error)
            return True
        return False

    def answered(self) -> None:
        """An accepted answer: the key works (again)."""
        if self.auth_error is not None:
            log.warning("upstream accepts the API key again: polling resumed")
            self.auth_error = None

    def _rejected(self, exc: UpstreamAuthError) -> None:
        if self.auth_error is None:
            log.error(
                "UPSTREAM REJECTED THE API KEY (%s): polling is paused for all predictions;"
                " checking again every %g s. Set TRACKER_API_KEY to a valid key.",
                exc.detail,
                AUTH_RECHECK_SECONDS,
            )
            self._next_auth_probe = time.monotonic() + AUTH_RECHECK_SECONDS
        self.auth_error = exc.detail
        self._on_auth_error()

    def _slow_down(self, exc: UpstreamRateLimited) -> None:
        if self._limiter.remaining_pause() < 0.5:
            log.warning(
                "upstream asks to slow down (%s): no requests for %.1f s",
                exc.detail[:60],
                exc.retry_after,
            )
        self._limiter.pause_until(time.monotonic() + exc.retry_after)
