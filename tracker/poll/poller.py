"""The poller: claim due predictions, poll each once, carry out what the answer asks.

Each claimed prediction becomes one asyncio task: wait for a concurrency slot
and the request budget, GET the prediction, then write what
``tracker.poll.outcomes`` decided. A rejected key pauses every poll; a rate limit
pauses every request for the key.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from tracker.config import Settings
from tracker.domain import NextPoll, PredictionState, Tracking
from tracker.exceptions import (
    StaleObservation,
    StoreError,
    UnstorableObservation,
    UpstreamAuthError,
    UpstreamBadAnswer,
    UpstreamError,
    UpstreamRateLimited,
)
from tracker.poll.outcomes import (
    AnswerWrite,
    FailureWrite,
    RecordError,
    RecordNotFound,
    Reschedule,
    plan_answer,
    plan_failure,
)
from tracker.poll.ratelimit import RateLimiter
from tracker.poll.runtimes import RunTimes
from tracker.poll.schedule import PollPolicy
from tracker.poll.upstream import Answer
from tracker.poll.writer import ObservationWriter
from tracker.store.interfaces import PollQueue
from tracker.store.runner import DatabaseRunner
from tracker.timeparse import utcnow

log = logging.getLogger(__name__)

#: claim enough work for this many seconds of the request budget (seconds)
CLAIM_LOOKAHEAD = 1.0
#: never hold more than this many claimed predictions per concurrency slot
CLAIM_CAP_PER_SLOT = 8
#: while the API key is rejected, one probe request this often (seconds)
AUTH_RECHECK_SECONDS = 60.0
#: on shutdown, how long in-flight polls may take to finish (seconds) ...
DRAIN_SECONDS = 8.0
#: ... of which this long waiting for the upstream's answer (seconds)
FETCH_GRACE_SECONDS = 2.0


class Upstream(Protocol):
    async def get_prediction(self, prediction_id: str) -> Answer: ...


@dataclass
class PollStats:
    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    answers: int = 0
    changes: int = 0
    finished: int = 0
    errors: int = 0
    rate_limited: int = 0

    def summary(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (
            f"{self.requests} requests in {elapsed:.1f} s ({self.requests / elapsed:.1f}/s):"
            f" {self.answers} answers, {self.changes} with changes, {self.finished} finished,"
            f" {self.errors} errors, {self.rate_limited} rate-limited"
        )


class Poller:
    def __init__(
        self,
        queue: PollQueue,
        upstream: Upstream,
        db: DatabaseRunner,
        writer: ObservationWriter,
        settings: Settings,
        *,
        owner: str,
        policy: PollPolicy,
        on_deliveries: Callable[[], None] = lambda: None,
    ) -> None:
        self.queue = queue
        self.upstream = upstream
        self.db = db
        self.writer = writer
        self.settings = settings
        self.owner = owner
        self.policy = policy
        self.stats = PollStats()
        self.run_times = RunTimes()
        #: in --once mode, a rejected key ends the sweep
        self.stop_on_auth_error = False
        self._on_deliveries = on_deliveries
        self._adaptive = settings.scheduler == "adaptive"
        self._limiter = RateLimiter(settings.max_rps)
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._follow_ups: set[str] = set()
        self._fetching: set[str] = set()  #: predictions whose request is in flight
        self._stopping = False
        self.auth_error: str | None = None
        self._next_auth_probe = 0.0

    @property
    def in_flight(self) -> list[str]:
        return list(self._in_flight)

    def stop(self) -> None:
        self._stopping = True

    async def load_run_times(self) -> None:
        if self._adaptive:
            self.run_times.load(await self.db.read(self.queue.recent_run_times))

    # -- driving -----------------------------------------------------------

    async def tick(self) -> None:
        """Claim as much due work as the concurrency and the request budget take."""
        if self._stopping:
            return
        limit = self.claim_budget()
        if self.auth_error is not None:
            if time.monotonic() < self._next_auth_probe:
                return
            self._next_auth_probe = time.monotonic() + AUTH_RECHECK_SECONDS
            limit = min(limit, 1)
        if limit > 0:
            await self._claim(now=utcnow(), limit=limit)

    async def sweep_once(self) -> None:
        """Poll every prediction due when the sweep starts, each at most once."""
        start = utcnow()
        while not self._stopping:
            claimed = 0
            budget = self.claim_budget()
            if budget > 0:
                claimed = await self._claim(now=start, limit=budget, include_unpolled=True)
            if not claimed and not self._in_flight:
                return
            if self._in_flight:
                await asyncio.wait(self._in_flight.values(), return_when=asyncio.FIRST_COMPLETED)

    async def drain(self) -> None:
        """Let polls in flight finish and be written. Polls whose answer has not
        arrived within FETCH_GRACE_SECONDS are given up (a slow or stalled upstream
        must not hold the shutdown): they wrote nothing, and their claims are released."""
        if not self._in_flight:
            return
        await asyncio.wait(self._in_flight.values(), timeout=FETCH_GRACE_SECONDS)
        waiting = [task for pid, task in self._in_flight.items() if pid in self._fetching]
        for task in waiting:
            task.cancel()
        if waiting:
            log.info("%d polls still waiting for the upstream were given up", len(waiting))
        if not self._in_flight:
            return
        remaining = DRAIN_SECONDS - FETCH_GRACE_SECONDS
        _, pending = await asyncio.wait(self._in_flight.values(), timeout=remaining)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("%d polls did not finish in time; their claims are released", len(pending))
            await asyncio.wait(pending)

    def claim_budget(self) -> int:
        """Claim about a second of work (the request budget), within bounds: claimed
        rows wait in memory, and ones that wait long are polled late."""
        concurrency = self.settings.concurrency
        target = max(2 * concurrency, int(self.settings.max_rps * CLAIM_LOOKAHEAD))
        return min(target, CLAIM_CAP_PER_SLOT * concurrency) - len(self._in_flight)

    # -- claiming ------------------------------------------------------------

    async def _claim(self, *, now: datetime, limit: int, include_unpolled: bool = False) -> int:
        lease_until = now + timedelta(seconds=self.settings.lease_seconds)
        try:
            states = await self.db.read(
                self.queue.claim_due,
                now=now,
                limit=limit,
                owner=self.owner,
                lease_until=max(lease_until, utcnow() + timedelta(seconds=1)),
                include_unpolled=include_unpolled,
            )
        except StoreError as exc:
            self.db.note_trouble(exc)
            return 0
        self.db.note_ok()
        if self._stopping:
            return 0  # stopped while claiming: the claims are released on the way out
        probe = self.auth_error is not None
        for state in states:
            if state.id in self._in_flight:
                # Claimed again while its poll runs: either that poll is written and
                # its task has not ended yet (a busy loop), or its lease ran out. Never
                # poll twice at once; decide when it ends (see _follow_up).
                self._follow_ups.add(state.id)
                continue
            self._start(self._poll(state, probe=probe), state.id)
        return len(states)

    def _start(self, work: Coroutine[Any, Any, None], prediction_id: str) -> None:
        task = asyncio.create_task(work, name=f"poll {prediction_id}")
        self._in_flight[prediction_id] = task
        task.add_done_callback(functools.partial(self._finished, prediction_id))

    def _finished(self, prediction_id: str, _task: asyncio.Task[None]) -> None:
        self._in_flight.pop(prediction_id, None)
        if prediction_id in self._follow_ups and not self._stopping:
            self._follow_ups.discard(prediction_id)
            self._start(self._follow_up(prediction_id), prediction_id)

    async def _follow_up(self, prediction_id: str) -> None:
        """Poll a prediction claimed while its previous poll ran, from its state now.

        If that poll's write ended the claim, the claim read before it is void and
        the schedule the write set stands; otherwise the claim is still ours.
        """
        try:
            state = await self.db.read(self.queue.claimed_state, prediction_id, self.owner)
        except StoreError as exc:
            self.db.note_trouble(exc)
            return
        if state is not None:
            await self._poll(state)

    # -- polling -------------------------------------------------------------

    async def _poll(self, state: PredictionState, *, probe: bool = False) -> None:
        try:
            async with self._slots:
                await self._limiter.acquire()
                if self._stopping or (self.auth_error is not None and not probe):
                    await self._put_back(state)
                    return
                outcome = await self._fetch(state.id)
            await self._carry_out(state, outcome)
        except StaleObservation as exc:
            log.warning("%s", exc)
        except StoreError as exc:
            self.db.note_trouble(exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error polling %s; it will be retried", state.id)

    async def _fetch(self, prediction_id: str) -> Answer | UpstreamError:
        self.stats.requests += 1
        self._fetching.add(prediction_id)
        try:
            return await self.upstream.get_prediction(prediction_id)
        except UpstreamError as exc:
            return exc
        finally:
            self._fetching.discard(prediction_id)

    async def _put_back(self, state: PredictionState) -> None:
        next_poll = NextPoll(at=utcnow(), interval=state.poll_interval)
        await self.db.write(self.queue.reschedule, state.id, next_poll=next_poll, owner=self.owner)

    async def _carry_out(self, state: PredictionState, outcome: Answer | UpstreamError) -> None:
        now = utcnow()
        if isinstance(outcome, Answer):
            run_times = self.run_times if self._adaptive else None
            planned = plan_answer(state, outcome.body, now, self.policy, run_times)
            if isinstance(planned, AnswerWrite):
                await self._write_answer(state, planned)
            else:
                await self._write_failure(state, planned)
            return
        self._note_failure(state, outcome)
        await self._write_failure(state, plan_failure(state, outcome, now, self.policy))

    async def _write_answer(self, state: PredictionState, planned: AnswerWrite) -> None:
        update = planned.update
        self._auth_recovered()
        try:
            queued = await self.writer.apply(update, planned.next_poll)
        except UnstorableObservation as exc:
            failure = plan_failure(state, UpstreamBadAnswer(str(exc)), utcnow(), self.policy)
            await self._write_failure(state, failure)
            return
        model = update.fields.get("model")
        if planned.run_time is not None and model:
            self.run_times.add(model, planned.run_time)
        if queued:
            self._on_deliveries()
        self.stats.answers += 1
        if update.changed:
            self.stats.changes += 1
        if update.transition is not None:
            t = update.transition
            log.info("%s: %s -> %s", state.id, t.from_status or "(new)", t.to_status)
        if update.terminal and state.tracking == Tracking.ACTIVE:
            self.stats.finished += 1

    async def _write_failure(self, state: PredictionState, write: FailureWrite) -> None:
        if isinstance(write, Reschedule):
            await self.db.write(
                self.queue.reschedule,
                state.id,
                next_poll=write.next_poll,
                owner=self.owner,
                detail=write.detail,
                attempted_at=write.attempted_at,
            )
        elif isinstance(write, RecordNotFound):
            await self._write_not_found(state, write)
        else:
            await self._write_poll_error(state, write)

    async def _write_not_found(self, state: PredictionState, write: RecordNotFound) -> None:
        self.stats.errors += 1
        lost = await self.db.write(
            self.queue.record_not_found,
            state.id,
            now=write.now,
            detail=write.detail,
            next_poll=write.next_poll,
            lost_after=self.settings.lost_after,
            lost_window=timedelta(seconds=self.settings.lost_window),
            owner=self.owner,
        )
        if lost:
            log.warning(
                "%s: upstream answered 404 %d times over %g s or more; marked lost",
                state.id,
                state.not_found_count + 1,
                self.settings.lost_window,
            )

    async def _write_poll_error(self, state: PredictionState, write: RecordError) -> None:
        self.stats.errors += 1
        if state.consecutive_errors % 10 == 0:
            wait = (write.next_poll.at - write.now).total_seconds() if write.next_poll.at else 0
            log.warning("%s: poll failed (%s); retrying in %.1f s", state.id, write.detail, wait)
        await self.db.write(
            self.queue.record_poll_error,
            state.id,
            now=write.now,
            detail=write.detail,
            next_poll=write.next_poll,
            owner=self.owner,
            raw=write.raw,
        )

    # -- what an error means for every poll --------------------------------

    def _note_failure(self, state: PredictionState, error: UpstreamError) -> None:
        if isinstance(error, UpstreamAuthError):
            self._on_auth_error(error)
        elif isinstance(error, UpstreamRateLimited):
            self._on_rate_limited(error)

    def _on_auth_error(self, exc: UpstreamAuthError) -> None:
        if self.auth_error is None:
            log.error(
                "UPSTREAM REJECTED THE API KEY (%s): polling is paused for all predictions;"
                " checking again every %g s. Set TRACKER_API_KEY to a valid key.",
                exc.detail,
                AUTH_RECHECK_SECONDS,
            )
            self._next_auth_probe = time.monotonic() + AUTH_RECHECK_SECONDS
        self.auth_error = exc.detail
        if self.stop_on_auth_error:
            self.stop()

    def _auth_recovered(self) -> None:
        if self.auth_error is not None:
            log.warning("upstream accepts the API key again: polling resumed")
            self.auth_error = None

    def _on_rate_limited(self, exc: UpstreamRateLimited) -> None:
        self.stats.rate_limited += 1
        if self._limiter.remaining_pause() < 0.5:
            log.warning(
                "upstream asks to slow down (%s): no requests for %.1f s",
                exc.detail[:60],
                exc.retry_after,
            )
        self._limiter.pause_until(time.monotonic() + exc.retry_after)
