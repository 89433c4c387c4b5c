"""Cancel requests: ``POST`` to the upstream with the polls' key, request budget and
429 handling (an ``UpstreamGate``: the daemon shares its poller's), and what became
of each recorded on the prediction.

``Canceller`` does it for a user (`tracker cancel`, the service, ``Tracker.cancel``:
``cancel``) and for the daemon's deadlines (``send``, for a prediction already
claimed). ``cancel_with_settings`` is the application layer's one call: a client of
its own for one request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from tracker.config import Settings, require_api_key
from tracker.domain import (
    CancelOutcome,
    CancelResult,
    CancelState,
    CancelTarget,
    validate_id,
)
from tracker.exceptions import (
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamTransient,
)
from tracker.poll.gate import UpstreamGate
from tracker.poll.upstream import Answer, UpstreamClient, make_http_client
from tracker.store.cancels import CancelRecorded
from tracker.text.display import escape_line
from tracker.timeparse import utcnow

#: requests one cancel may make: a rate limit or a passing failure is tried again
CANCEL_ATTEMPTS = 3
#: a cancel waits out a rate limit's pause up to this long, then fails (seconds)
MAX_CANCEL_WAIT = 60.0
#: after a refused connection, a timeout or a 5xx, the next attempt waits this long
#: times the attempts made (seconds)
TRANSIENT_PAUSE = 1.0
#: characters of the upstream's status repeated in a message
STATUS_SHOWN = 40

#: runs a blocking store call off the event loop (``asyncio.to_thread``, a DatabaseRunner)
Run = Callable[..., Awaitable[Any]]


class CancelStore(Protocol):
    """What cancelling reads and writes (``tracker.store.cancels.CancelOps``)."""

    def request_cancel(self, prediction_id: str, *, now: datetime) -> CancelRecorded: ...

    def record_cancel_outcome(
        self, target: CancelTarget, *, state: CancelState, detail: str, poll_at: datetime | None
    ) -> None: ...


@runtime_checkable
class CancelUpstream(Protocol):
    async def cancel_prediction(self, prediction_id: str, urls: object = None) -> Answer: ...


class Canceller:
    """Sends cancel requests through ``gate`` and records their outcome; a request the
    upstream accepted makes the prediction due for a poll ``follow_up`` seconds later."""

    def __init__(
        self,
        store: CancelStore,
        run: Run,
        upstream: CancelUpstream,
        gate: UpstreamGate,
        *,
        follow_up: float,
    ) -> None:
        self._store = store
        self._run = run
        self._upstream = upstream
        self._gate = gate
        self._follow_up = follow_up

    async def cancel(self, prediction_id: str) -> CancelResult:
        """A user's cancel: recorded first (reason ``user``), then sent; nothing is sent
        for an unknown or ended prediction."""
        recorded = await self._run(self._store.request_cancel, prediction_id, now=utcnow())
        if not recorded.registered:
            return CancelResult(
                prediction_id,
                CancelOutcome.NOT_REGISTERED.value,
                f"{prediction_id}: not registered",
            )
        if recorded.target is None:
            message = f"{prediction_id}: already {recorded.status}, nothing to cancel"
            return CancelResult(
                prediction_id, CancelOutcome.TERMINAL.value, message, status=recorded.status
            )
        return await self.send(recorded.target)

    async def send(self, target: CancelTarget) -> CancelResult:
        """Send the request ``target`` stands for (already recorded) and record what
        became of it."""
        pid = target.prediction_id
        try:
            answer = await self._request(target)
        except UpstreamError as exc:
            detail = _failure(exc)
            await self._record(target, CancelState.FAILED, detail, poll_at=None)
            message = f"{pid}: cancel failed: {detail}"
            return CancelResult(pid, CancelOutcome.FAILED.value, message, target.requested_at)
        status = _status(answer)
        detail = f"HTTP {answer.status_code}" + (f", status {status!r}" if status else "")
        poll_at = utcnow() + timedelta(seconds=self._follow_up)
        await self._record(target, CancelState.REQUESTED, detail, poll_at=poll_at)
        says = f"the upstream says {status!r}" if status else "the next poll shows its status"
        message = f"{pid}: cancel requested ({says})"
        return CancelResult(
            pid, CancelOutcome.REQUESTED.value, message, target.requested_at, status
        )

    async def _request(self, target: CancelTarget) -> Answer:
        """The upstream's answer, through the gate: a rate limit pauses every request
        of the key (polls too) and is waited out, up to MAX_CANCEL_WAIT; a passing
        failure is tried again; CANCEL_ATTEMPTS in all."""
        attempt = 0
        while True:
            attempt += 1
            await self._gate.acquire()
            try:
                answer = await self._upstream.cancel_prediction(target.prediction_id, target.urls)
            except UpstreamError as exc:
                rate_limited = self._gate.failed(exc)
                if not self._again(exc, rate_limited, attempt):
                    raise
                if not rate_limited:
                    await asyncio.sleep(TRANSIENT_PAUSE * attempt)
                continue
            self._gate.answered()
            return answer

    def _again(self, exc: UpstreamError, rate_limited: bool, attempt: int) -> bool:
        if attempt >= CANCEL_ATTEMPTS:
            return False
        if rate_limited:
            return self._gate.remaining_pause() <= MAX_CANCEL_WAIT
        return isinstance(exc, UpstreamTransient)

    async def _record(
        self, target: CancelTarget, state: CancelState, detail: str, *, poll_at: datetime | None
    ) -> None:
        await self._run(
            self._store.record_cancel_outcome, target, state=state, detail=detail, poll_at=poll_at
        )


def _status(answer: Answer) -> str | None:
    """The status in the upstream's answer, when it is a prediction object."""
    body = answer.body
    status = body.get("status") if isinstance(body, dict) else None
    return escape_line(status[:STATUS_SHOWN]) if isinstance(status, str) and status else None


def _failure(exc: UpstreamError) -> str:
    """Why a request failed, in words (stored, printed, answered by the service)."""
    detail = escape_line(exc.detail)
    if isinstance(exc, UpstreamNotFound):
        return f"the upstream does not know it ({detail})"
    if isinstance(exc, UpstreamRateLimited):
        return f"rate limited, try again in {exc.retry_after:.0f} s ({detail})"
    return detail


@contextlib.asynccontextmanager
async def opened_canceller(
    store: CancelStore, settings: Settings, gate: UpstreamGate, run: Run = asyncio.to_thread
) -> AsyncIterator[Canceller]:
    """A Canceller with an HTTP client of its own, open until the block ends;
    SettingError (exit 2) without an API key for an upstream not on this machine."""
    require_api_key(settings)
    async with make_http_client(max_connections=2) as http:
        upstream = UpstreamClient(
            http,
            settings.api_base,
            settings.api_key,
            max_answer_bytes=settings.max_answer_bytes,
            timeout=settings.poll_timeout,
        )
        yield Canceller(store, run, upstream, gate, follow_up=settings.poll_min)


async def cancel_with_settings(
    store: CancelStore, settings: Settings, gate: UpstreamGate, prediction_id: str
) -> CancelResult:
    """``Tracker.cancel``: one prediction, its ID checked first (InvalidInput)."""
    validate_id(prediction_id)
    async with opened_canceller(store, settings, gate) as canceller:
        return await canceller.cancel(prediction_id)
