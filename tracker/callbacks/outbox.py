"""The outbox sender: claim due deliveries, send them, record every attempt.

Deliveries are written in the same transaction as the observation that causes
them (see ``tracker.store.deliveries``), so a crash can delay a callback but
never lose it. This loop only moves them from ``pending`` to ``delivered`` or
``dead``: it claims (or is handed) deliveries and sends them within the limits of
each receiver; ``Attempts`` (``tracker.callbacks.attempts``) records, counts and
logs each attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol

from tracker.callbacks.attempts import Attempts, display_target
from tracker.callbacks.retry import RetryPolicy
from tracker.config import DEFAULT_LOG_INTERVAL
from tracker.domain import DeliveryJob, SendResult
from tracker.exceptions import StoreError
from tracker.net.failurelog import FailureLog
from tracker.observer import NO_OBSERVER, PollObserver
from tracker.store.enqueue import Handoff
from tracker.store.interfaces import DeliveryQueue
from tracker.store.runner import Runner
from tracker.timeparse import utcnow

log = logging.getLogger(__name__)

# display_target: named here as before its move to tracker.callbacks.attempts
__all__ = [
    "DEFAULT_DELIVERY_CONCURRENCY",
    "DEFAULT_PER_TARGET",
    "Outbox",
    "Sender",
    "display_target",
]

#: deliveries in flight at once, all receivers together
DEFAULT_DELIVERY_CONCURRENCY = 32
#: deliveries in flight at once to one receiver (URL or address)
DEFAULT_PER_TARGET = 4


class Sender(Protocol):
    async def send(self, job: DeliveryJob) -> SendResult: ...


class Outbox:
    """Claims due deliveries (or takes those a write claimed for it) and sends them,
    at most ``concurrency`` at once and ``per_target`` to one receiver; ``attempts``
    records each."""

    def __init__(
        self,
        store: DeliveryQueue,
        senders: Mapping[str, Sender],
        *,
        owner: str,
        db: Runner,
        policy: RetryPolicy,
        lease_seconds: float,
        concurrency: int = DEFAULT_DELIVERY_CONCURRENCY,
        per_target: int = DEFAULT_PER_TARGET,
        failure_log: FailureLog | None = None,
        observer: PollObserver = NO_OBSERVER,
    ) -> None:
        self.store = store
        self.senders = dict(senders)
        self.owner = owner
        self._db = db
        self._lease = timedelta(seconds=lease_seconds)
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._targets: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(per_target)
        )
        # Deliveries in hand per receiver: its slots plus as many waiting, so a claim
        # brings a batch, while a hung receiver holds no more than it can finish
        # within a lease.
        self._claim_cap = 2 * per_target
        self._users: Counter[str] = Counter()  # deliveries holding or awaiting a target slot
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wanted = False
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False
        #: records, counts and logs each attempt
        self.attempts = Attempts(
            store,
            owner=owner,
            db=db,
            policy=policy,
            # failures of each receiver, logged as a group (tracker.net.failurelog)
            failure_log=failure_log or FailureLog(log, interval=DEFAULT_LOG_INTERVAL),
            observer=observer,
        )

    @property
    def policy(self) -> RetryPolicy:
        return self.attempts.policy

    @property
    def failure_log(self) -> FailureLog:
        return self.attempts.failure_log

    @property
    def sent(self) -> int:
        """Deliveries delivered since the start."""
        return self.attempts.sent

    @property
    def failed(self) -> int:
        """Deliveries given up (dead) since the start."""
        return self.attempts.failed

    @property
    def failed_attempts(self) -> int:
        """Attempts that failed since the start, given up or not."""
        return self.attempts.failed_attempts

    def counters(self) -> dict[str, int]:
        """Counts since the start, for the daemon's summary line."""
        return {
            "delivered": self.sent,
            "failed_attempts": self.failed_attempts,
            "given_up": self.failed,
        }

    @property
    def busy(self) -> bool:
        """Deliveries are being sent (a claim in progress is not counted: ``stop`` waits
        for it, and what it claims is sent before the outbox stops)."""
        return bool(self._in_flight)

    # -- driving -----------------------------------------------------------

    def wake(self) -> None:
        """Look for due deliveries soon (coalesces: one claim loop at a time)."""
        if self._stopping or not self.senders:
            return
        self._wanted = True
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._claim_while_wanted(), name="outbox")

    def handoff(self) -> Handoff | None:
        """How many new deliveries this outbox can take straight from a write (see
        ``Handoff``): the same limits a claim has."""
        if self._stopping or not self.senders:
            return None
        total = 2 * self._concurrency - len(self._in_flight)
        if total <= 0:
            return None
        return Handoff(
            owner=self.owner,
            lease=self._lease,
            kinds=frozenset(self.senders),
            total=total,
            default_room=self._claim_cap,
            room={target: self._claim_cap - users for target, users in self._users.items()},
        )

    def accept(self, jobs: list[DeliveryJob]) -> None:
        """Send deliveries claimed for this outbox outside ``_claim`` (handed off by a
        write). The daemon lets its writer finish before the outbox stops; should
        some still arrive later, they are left claimed: the lease hands them on."""
        if self._stopping:
            log.warning("%d deliveries handed over while stopping: left to their lease", len(jobs))
            return
        for job in jobs:
            self._start(job)

    async def _claim_while_wanted(self) -> None:
        while self._wanted and not self._stopping:
            self._wanted = False
            await self._claim(utcnow())

    async def send_due_once(self) -> None:
        """Attempt every delivery due now once, and wait for the results (`--once`)."""
        if not self.senders:
            return
        start = utcnow()
        while not self._stopping:
            claimed = await self._claim(start, skip_busy=False)
            if not claimed and not self._in_flight:
                return
            if self._in_flight:
                await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)

    async def stop(self, timeout: float) -> None:
        """Let deliveries in flight finish (up to ``timeout``), then release the rest."""
        self._stopping = True
        if self._runner is not None:
            await asyncio.wait([self._runner], timeout=timeout)
        if self._in_flight:
            _, pending = await asyncio.wait(self._in_flight, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        try:
            await self._db.write(self.store.release_deliveries, self.owner, now=utcnow())
        except StoreError as exc:
            log.error("could not release delivery claims: %s", exc)

    # -- claiming and sending ---------------------------------------------

    async def _claim(self, now: datetime, *, skip_busy: bool = True) -> int:
        budget = 2 * self._concurrency - len(self._in_flight)
        if budget <= 0:
            return 0
        busy = self._busy_targets() if skip_busy else []
        try:
            jobs: list[DeliveryJob] = await self._db.read(
                self.store.claim_deliveries,
                now=now,
                limit=budget,
                owner=self.owner,
                lease_until=utcnow() + self._lease,
                kinds=tuple(self.senders),
                skip_targets=busy,
                per_target=self._claim_cap,
            )
        except StoreError as exc:
            log.error("could not claim deliveries: %s", exc)
            return 0
        for job in jobs:
            self._start(job)
        return len(jobs)

    def _start(self, job: DeliveryJob) -> None:
        # Counted at once, not when the task first runs: the next claim or hand-off,
        # decided before then, must see this receiver's share already taken.
        self._users[job.target] += 1
        task = asyncio.create_task(self._deliver(job), name=f"deliver {job.id}")
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    def _busy_targets(self) -> list[str]:
        """Receivers with as many deliveries in hand as a claim may give them."""
        return [target for target, users in self._users.items() if users >= self._claim_cap]

    async def _deliver(self, job: DeliveryJob) -> None:
        """Send one delivery when its receiver has a free slot, and record the attempt.

        Claims give a receiver at most twice its slots, so the few that wait here
        keep their place in line.
        """
        slots = self._targets[job.target]
        try:
            async with slots, self._slots:
                result = await self._send(job)
        finally:
            was_busy = self._users[job.target] >= self._claim_cap
            self._users[job.target] -= 1
            if not self._users[job.target]:
                del self._users[job.target]
                del self._targets[job.target]
        await self.attempts.record(job, result)
        if was_busy:
            self.wake()  # claims skipped this receiver: now it can take more

    async def _send(self, job: DeliveryJob) -> SendResult:
        try:
            return await self.senders[job.kind].send(job)
        except Exception as exc:  # a sender bug must not kill the loop or lose the delivery
            log.exception("sending delivery %d failed unexpectedly", job.id)
            return SendResult(ok=False, error=f"internal error: {type(exc).__name__}")
