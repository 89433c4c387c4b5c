"""Cancel requests: where they go (the key only to the API's own origin), what every
answer means, and how the Canceller retries, waits out rate limits and records."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.unit.test_upstream import BASE, KEY, recording, respond, upstream
from tracker.domain import CancelOutcome, CancelState, CancelTarget
from tracker.exceptions import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamTransient,
)
from tracker.poll import cancel as cancel_module
from tracker.poll.cancel import Canceller
from tracker.poll.deadlines import DEADLINE_CONCURRENCY, UNANSWERED_SECONDS, Deadlines
from tracker.poll.gate import UpstreamGate
from tracker.poll.upstream import Answer, UpstreamClient
from tracker.store.cancels import CancelRecorded, DeadlineClaim
from tracker.store.runner import DatabaseRunner

PID = "w44zs9cet5rmc0cqzp49gpkhf8"
OWN = f"{BASE}/predictions/{PID}/cancel"
FALLBACK = OWN


# -- where the request goes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "used"),
    [
        (OWN, OWN),
        (
            "https://API.example.test/v1/predictions/x/cancel",
            "https://API.example.test/v1/predictions/x/cancel",
        ),
        (
            "https://api.example.test:443/v2/p/x/cancel",
            "https://api.example.test:443/v2/p/x/cancel",
        ),
        ("https://api.example.test:8443/v1/predictions/x/cancel", FALLBACK),  # another port
        ("http://api.example.test/v1/predictions/x/cancel", FALLBACK),  # another scheme
        ("https://evil.example/v1/predictions/x/cancel", FALLBACK),  # another host
        ("https://api.example.test.evil.example/x", FALLBACK),
        ("https://api.example.test@evil.example/x", FALLBACK),  # user info, another host
        ("https://api.example.test/x\r\nHost: evil", FALLBACK),  # not printable
        ("https://api.example.test/a b", FALLBACK),
        ("ftp://api.example.test/x", FALLBACK),
        ("not a url", FALLBACK),
        (7, FALLBACK),
        (None, FALLBACK),
    ],
)
async def test_urls_cancel_is_used_only_on_the_apis_own_origin(given: object, used: str) -> None:
    async with upstream(respond(200, body={})) as client:
        assert client.cancel_url(PID, {"cancel": given}) == used
        assert client.cancel_url(PID, None) == FALLBACK
        assert client.cancel_url(PID, ["cancel"]) == FALLBACK


async def test_a_cancel_is_a_post_with_the_key_and_any_2xx_is_accepted() -> None:
    seen: list[httpx.Request] = []
    body = {"id": PID, "status": "canceled"}
    async with upstream(recording(seen, respond(200, body=body))) as client:
        answer = await client.cancel_prediction(PID, {"cancel": OWN})
    assert answer == Answer(body, 200)
    assert (seen[0].method, str(seen[0].url)) == ("POST", OWN)
    assert seen[0].headers["Authorization"] == f"Bearer {KEY}"
    huge = respond(200, content=b"{" + b" " * (2**20) + b"}")
    for reply in (respond(204), respond(200, content=b"<html>ok</html>"), respond(202, body=[1])):
        async with upstream(reply) as client:
            assert (await client.cancel_prediction(PID)).body is None
    async with httpx.AsyncClient(transport=httpx.MockTransport(huge)) as http:
        capped = UpstreamClient(http, BASE, KEY, max_answer_bytes=1024)
        assert await capped.cancel_prediction(PID) == Answer(None, 200)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, UpstreamAuthError),
        (404, UpstreamNotFound),
        (429, UpstreamRateLimited),
        (500, UpstreamTransient),
        (422, UpstreamError),
    ],
)
async def test_refusals_are_the_errors_of_a_poll(status: int, error: type[Exception]) -> None:
    async with upstream(respond(status, body={"detail": f"no {KEY}"})) as client:
        with pytest.raises(error) as caught:
            await client.cancel_prediction(PID)
    assert KEY not in str(caught.value)


# -- the Canceller ------------------------------------------------------------------------


class FakeStore:
    def __init__(self, status: str | None = "processing", registered: bool = True) -> None:
        self.status, self.registered = status, registered
        self.outcomes: list[tuple[CancelState, str, datetime | None]] = []

    def request_cancel(self, prediction_id: str, *, now: datetime) -> CancelRecorded:
        if not self.registered:
            return CancelRecorded(False)
        if self.status in ("succeeded", "canceled"):
            return CancelRecorded(True, self.status)
        return CancelRecorded(True, self.status, CancelTarget(prediction_id, None, now, "user"))

    def record_cancel_outcome(
        self, target: CancelTarget, *, state: CancelState, detail: str, poll_at: datetime | None
    ) -> None:
        self.outcomes.append((state, detail, poll_at))


class FakeUpstream:
    def __init__(self, *answers: Answer | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def cancel_prediction(self, prediction_id: str, urls: object = None) -> Answer:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def run_inline(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def canceller(store: FakeStore, up: FakeUpstream, gate: UpstreamGate | None = None) -> Canceller:
    return Canceller(store, run_inline, up, gate or UpstreamGate(1000), follow_up=1.0)


async def test_an_accepted_cancel_is_recorded_and_polled_soon() -> None:
    store, up = FakeStore(), FakeUpstream(Answer({"status": "canceled"}, 200))
    result = await canceller(store, up).cancel(PID)
    assert (result.outcome, result.ok, result.upstream_status) == ("requested", True, "canceled")
    assert result.message == f"{PID}: cancel requested (the upstream says 'canceled')"
    ((state, detail, poll_at),) = store.outcomes
    assert (state, detail) == (CancelState.REQUESTED, "HTTP 200, status 'canceled'")
    assert poll_at is not None and 0 < (poll_at - datetime.now(UTC)).total_seconds() <= 1.0


async def test_unknown_and_ended_predictions_send_nothing() -> None:
    up = FakeUpstream()
    unknown = await canceller(FakeStore(registered=False), up).cancel(PID)
    ended = await canceller(FakeStore(status="succeeded"), up).cancel(PID)
    assert (unknown.outcome, unknown.ok) == (CancelOutcome.NOT_REGISTERED, False)
    assert (ended.outcome, ended.ok, ended.status) == (CancelOutcome.TERMINAL, True, "succeeded")
    assert ended.message == f"{PID}: already succeeded, nothing to cancel"
    assert up.calls == 0


async def test_passing_failures_are_tried_again_three_times_in_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cancel_module, "TRANSIENT_PAUSE", 0.01)
    flaky = UpstreamTransient("HTTP 502: Bad Gateway", status_code=502)
    store, up = FakeStore(), FakeUpstream(flaky, flaky, Answer(None, 200))
    result = await canceller(store, up).cancel(PID)
    assert (result.outcome, up.calls) == ("requested", 3)
    assert result.message == f"{PID}: cancel requested (the next poll shows its status)"
    store, up = FakeStore(), FakeUpstream(flaky, flaky, flaky)
    result = await canceller(store, up).cancel(PID)
    assert (result.outcome, up.calls) == ("failed", 3)
    assert store.outcomes[0][:2] == (CancelState.FAILED, "HTTP 502: Bad Gateway")


async def test_a_refusal_is_not_tried_again() -> None:
    store = FakeStore()
    up = FakeUpstream(UpstreamNotFound("HTTP 404: Not found.", status_code=404))
    result = await canceller(store, up).cancel(PID)
    assert (result.outcome, up.calls) == ("failed", 1)
    assert result.message == (
        f"{PID}: cancel failed: the upstream does not know it (HTTP 404: Not found.)"
    )
    assert store.outcomes[0][2] is None  # nothing to poll for


async def test_a_rate_limit_pauses_the_whole_gate_and_is_waited_out() -> None:
    gate = UpstreamGate(1000)
    limited = UpstreamRateLimited("HTTP 429: slow down", status_code=429, retry_after=0.3)
    store, up = FakeStore(), FakeUpstream(limited, Answer(None, 200))
    started = asyncio.get_running_loop().time()
    result = await canceller(store, up, gate).cancel(PID)
    assert result.outcome == "requested" and up.calls == 2
    assert asyncio.get_running_loop().time() - started >= 0.29  # the pause was waited out


async def test_a_rate_limit_longer_than_a_minute_fails_the_cancel() -> None:
    limited = UpstreamRateLimited("HTTP 429: slow down", status_code=429, retry_after=600)
    store, up = FakeStore(), FakeUpstream(limited)
    result = await canceller(store, up).cancel(PID)
    assert (result.outcome, up.calls) == ("failed", 1)
    assert "rate limited, try again in 600 s" in result.message


async def test_a_rejected_key_fails_and_tells_the_gate() -> None:
    gate = UpstreamGate(1000)
    store, up = FakeStore(), FakeUpstream(UpstreamAuthError("HTTP 401: no", status_code=401))
    result = await canceller(store, up, gate).cancel(PID)
    assert result.outcome == "failed" and gate.auth_error == "HTTP 401: no"


# -- the daemon's deadlines ----------------------------------------------------------------


class FakeDeadlines(FakeStore):
    """Deadlines due at ``due``; each claim hands out what is left."""

    def __init__(self, due: datetime | None, ids: list[str]) -> None:
        super().__init__()
        self.due, self.ids, self.claims = due, list(ids), 0
        self.unanswered: list[str] = []  #: claimed by a daemon that died
        self.reclaims: list[timedelta] = []

    def next_deadline(self) -> datetime | None:
        return self.due if self.ids else None

    def claim_deadlines(self, *, now: datetime, limit: int, default_callbacks: Any = ()) -> Any:
        self.claims += 1
        taken, self.ids = self.ids[:limit], self.ids[limit:]
        targets = [CancelTarget(pid, None, now, "deadline") for pid in taken]
        return DeadlineClaim(targets, deliveries=len(targets))

    def reclaim_deadline_cancels(
        self, *, now: datetime, unanswered_since: datetime, limit: int
    ) -> list[CancelTarget]:
        self.reclaims.append(now - unanswered_since)
        taken, self.unanswered = self.unanswered[:limit], self.unanswered[limit:]
        return [CancelTarget(pid, None, now, "deadline") for pid in taken]


def deadlines(queue: FakeDeadlines, up: FakeUpstream, ready: bool = True) -> Deadlines:
    runner = DatabaseRunner(workers=1)
    canceller = Canceller(queue, runner.write, up, UpstreamGate(1000), follow_up=1.0)
    return Deadlines(queue, runner, canceller, ready=lambda: ready)


async def test_deadlines_claim_only_when_one_has_passed_and_the_gate_is_open() -> None:
    later = datetime.now(UTC).replace(year=2100)
    future = FakeDeadlines(later, ["p1"])
    await deadlines(future, FakeUpstream()).sweep_once()
    assert future.claims == 0  # nothing due: only read
    closed = FakeDeadlines(datetime(2000, 1, 1, tzinfo=UTC), ["p1"])
    await deadlines(closed, FakeUpstream(), ready=False).sweep_once()
    assert closed.claims == 0  # a 429 pause or a rejected key: not spent now


async def test_deadlines_cancel_each_claimed_prediction_once() -> None:
    ids = [f"p{i}" for i in range(DEADLINE_CONCURRENCY + 3)]
    queue = FakeDeadlines(datetime(2000, 1, 1, tzinfo=UTC), ids)
    up = FakeUpstream(*[Answer({"status": "canceled"}, 200) for _ in ids])
    worker = deadlines(queue, up)
    await worker.sweep_once()
    assert (up.calls, worker.sent, worker.failed) == (len(ids), len(ids), 0)
    assert [state for state, _, _ in queue.outcomes] == [CancelState.REQUESTED] * len(ids)
    await worker.stop(timeout=1)
    assert await worker.sweep() == 0  # stopped: claims nothing more


async def test_unanswered_deadline_cancels_are_sent_again_checked_twice_a_minute() -> None:
    queue = FakeDeadlines(None, [])
    queue.unanswered = ["orphan"]
    up = FakeUpstream(Answer({"status": "canceled"}, 200))
    worker = deadlines(queue, up)
    await worker.sweep_once()
    assert (up.calls, worker.sent) == (1, 1)
    assert queue.reclaims == [timedelta(seconds=UNANSWERED_SECONDS)]
    await worker.sweep_once()
    assert len(queue.reclaims) == 1  # not again before RECLAIM_SECONDS
