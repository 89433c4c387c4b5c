"""The poller: claim due predictions, poll each once, carry out what the answer asks.

Each claimed prediction becomes one asyncio task: wait for a concurrency slot
and the request budget, GET the prediction, then write what
``tracker.poll.outcomes`` decided (``tracker.poll.carry``). A rejected key pauses
every poll; a rate limit pauses every request for the key.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, Protocol

from tracker.config import Settings
from tracker.domain import NextPoll, PredictionState
from tracker.exceptions import (
    StaleObservation,
    StoreError,
    UpstreamError,
)
from tracker.net.failurelog import FailureLog
from tracker.observer import NO_OBSERVER, PollObserver, poll_outcome
from tracker.poll.carry import CarryOut
from tracker.poll.failures import FailureWriter
from tracker.poll.gate import UpstreamGate
from tracker.poll.runtimes import RunTimes
from tracker.poll.schedule import PollPolicy
from tracker.poll.stats import PollStats
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
#: on shutdown, how long in-flight polls may take to finish (seconds) ...
DRAIN_SECONDS = 8.0
#: ... of which this long waiting for the upstream's answer (seconds)
FETCH_GRACE_SECONDS = 2.0


class Upstream(Protocol):
    async def get_prediction(self, prediction_id: str) -> Answer: ...


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
        observer: PollObserver = NO_OBSERVER,
    ) -> None:
        self.queue = queue
        self.upstream = upstream
        self.db = db
        self.writer = writer
        self.settings = settings
        self.owner = owner
        self.policy = policy
        self.stats = PollStats()
        self.observer = observer  #: told of each request's outcome and duration
        self.run_times = RunTimes()
        #: in --once mode, a rejected key ends the sweep
        self.stop_on_auth_error = False
        self.gate = UpstreamGate(settings.max_rps, on_auth_error=self._auth_failed)
        #: the upstream's failures, logged as a group (the daemon flushes it)
        self.failure_log = FailureLog(log, interval=settings.log_interval)
        self.failures = FailureWriter(
            queue, db, settings, owner=owner, stats=self.stats, failure_log=self.failure_log
        )
        self._adaptive = settings.scheduler == "adaptive"
        #: writes what each answer asks, counts it, learns run times (when adaptive)
        self._carry_out = CarryOut(
            queue,
            db,
            writer,
            self.failures,
            owner=owner,
            api_base=settings.api_base,
            policy=policy,
            gate=self.gate,
            stats=self.stats,
            run_times=self.run_times,
            adaptive=self._adaptive,
            failure_log=self.failure_log,
            on_deliveries=on_deliveries,
        )
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._follow_ups: set[str] = set()
        self._fetching: set[str] = set()  #: predictions whose request is in flight
        self._stopping = False

    @property
    def in_flight(self) -> list[str]:
        return list(self._in_flight)

    def stop(self) -> None:
        self._stopping = True

    @property
    def auth_error(self) -> str | None:
        return self.gate.auth_error

    def _auth_failed(self) -> None:
        if self.stop_on_auth_error:
            self.stop()

    async def load_run_times(self) -> None:
        if self._adaptive:
            self.run_times.load(await self.db.read(self.queue.recent_run_times))

    # -- driving -----------------------------------------------------------

    async def tick(self) -> None:
        """Claim as much due work as the concurrency and the request budget take."""
        if self._stopping:
            return
        limit = self.gate.claim_limit(self.claim_budget())
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
        probe = self.gate.auth_error is not None
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
                await self.gate.acquire()
                if self._stopping or self.gate.paused(probe=probe):
                    await self._put_back(state)
                    return
                outcome = await self._fetch(state.id)
            await self._carry_out(state, outcome)
        except StaleObservation as exc:
            # A push that overtook this poll is expected; anything else (a claim
            # lost to another daemon) is worth a warning.
            level = logging.DEBUG if state.last_pushed_at else logging.WARNING
            log.log(level, "%s", exc, extra={"prediction_id": state.id})
            await self._hand_back(state.id)
        except StoreError as exc:
            self.db.note_trouble(exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error polling %s; it will be retried", state.id)

    async def _hand_back(self, prediction_id: str) -> None:
        """End the claim of a poll whose answer was dropped because a push was written
        meanwhile, and poll again a poll-max from now (the safety net's pace).

        A push leaves the claim alone, and the schedule it set does not last: a
        heartbeat renews the lease of a poll in flight over it. Without this, the
        prediction waited for the lease (60 s) however its end was lost. Nothing
        changes when the claim is no longer this daemon's."""
        now = utcnow()
        try:
            await self.db.write(
                self.queue.reschedule,
                prediction_id,
                next_poll=self.policy.safety_net(now=now, terminal=False),
                owner=self.owner,
                attempted_at=now,
            )
        except StoreError as exc:
            self.db.note_trouble(exc)

    async def _fetch(self, prediction_id: str) -> Answer | UpstreamError:
        self.stats.requests += 1
        self._fetching.add(prediction_id)
        started = time.monotonic()
        result: Answer | UpstreamError
        try:
            result = await self.upstream.get_prediction(prediction_id)
        except UpstreamError as exc:
            result = exc
        finally:
            self._fetching.discard(prediction_id)
        self.observer.poll_done(poll_outcome(result), time.monotonic() - started)
        return result

    async def _put_back(self, state: PredictionState) -> None:
        next_poll = NextPoll(at=utcnow(), interval=state.poll_interval)
        await self.db.write(self.queue.reschedule, state.id, next_poll=next_poll, owner=self.owner)
