"""The daemon: claim due predictions, poll them, apply the answers, schedule the next poll.

APScheduler (an in-process timer, never a shared job store) fires a short
tick; each tick claims as much due work as the concurrency and the request
budget can take, and each claimed prediction becomes one asyncio task.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from tracker import __version__
from tracker.callbacks.outbox import Outbox, Sender
from tracker.callbacks.retry import RetryPolicy
from tracker.config import Settings
from tracker.dbrunner import DatabaseRunner
from tracker.domain import NextPoll, ObservationUpdate, PredictionState, Status, Tracking
from tracker.exceptions import (
    StaleObservation,
    StoreError,
    StoreGone,
    UnstorableObservation,
    UpstreamAuthError,
    UpstreamBadAnswer,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
)
from tracker.observe import parse_prediction, plan_observation
from tracker.progress import remaining_seconds
from tracker.ratelimit import RateLimiter
from tracker.runtimes import RunTimes
from tracker.schedule import PollPolicy
from tracker.singleton import DaemonLock, SqliteFileGuard, sqlite_path
from tracker.store.retention import PruneResult
from tracker.store.store import Store
from tracker.timeparse import utcnow
from tracker.upstream import Answer, UpstreamClient
from tracker.writer import ObservationWriter

log = logging.getLogger(__name__)

T = TypeVar("T")

#: how often the due-work tick runs (seconds)
TICK_SECONDS = 0.1
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
#: how often the outbox looks for due deliveries besides being woken (seconds)
OUTBOX_SECONDS = 0.25
#: --exit-when-done still waits for delivery retries due within this many seconds
EXIT_RETRY_HORIZON_SECONDS = 60.0
#: how often the daemon says it is alive and extends its leases (seconds)
HEARTBEAT_SECONDS = 5.0
#: a daemon whose last heartbeat is older than this is silent (seconds)
LIVE_WITHIN_SECONDS = 30.0
#: how often a summary line is logged (seconds)
REPORT_SECONDS = 60.0
#: with --prune-older-than, how often old history is pruned (seconds) ...
PRUNE_SECONDS = 3600.0
#: ... the first time this long after the start (seconds)
PRUNE_FIRST_DELAY = 60.0


def pid_alive(pid: int) -> bool:
    """Whether a process with this ID, other than this one, runs on this host (a
    restarted container can get its predecessor's PID)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


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


class Daemon:
    def __init__(
        self,
        store: Store,
        upstream: UpstreamClient,
        settings: Settings,
        *,
        policy: PollPolicy | None = None,
        senders: Mapping[str, Sender] | None = None,
    ) -> None:
        self.store = store
        self.upstream = upstream
        self.settings = settings
        self.owner = settings.name or f"{socket.gethostname()}:{os.getpid()}"
        self.policy = policy or PollPolicy(settings.poll_min, settings.poll_max)
        self.stats = PollStats()
        # SQLite has one writer at a time; more threads would only queue on its lock.
        workers = 1 if store.dialect == "sqlite" else 4
        self.db = DatabaseRunner(workers=workers, stopping=lambda: self._stopping.is_set())
        self._file_guard = SqliteFileGuard.for_store(store)
        if self._file_guard is not None:
            self.db.add_check(self._check_database_file)
        #: why the daemon had to stop, when it could not go on (the exit code is then 1)
        self.fatal: str | None = None
        self._limiter = RateLimiter(settings.max_rps)
        self._slots = asyncio.Semaphore(settings.concurrency)
        self.run_times = RunTimes()
        self._adaptive = settings.scheduler == "adaptive"
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._jobs: set[asyncio.Future[None]] = set()
        self._follow_ups: set[str] = set()
        self._fetching: set[str] = set()  #: predictions whose request is in flight
        self._stopping = asyncio.Event()
        self._auth_error: str | None = None
        self._next_auth_probe = 0.0
        self._once = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.outbox = Outbox(
            store,
            senders or {},
            owner=self.owner,
            db=self.db,
            policy=RetryPolicy(settings.retry_schedule),
            lease_seconds=settings.lease_seconds,
        )
        self._writer = ObservationWriter(
            store.apply_observations,
            self.db.write,
            owner=self.owner,
            default_callbacks=settings.default_callbacks,
            handoff=self.outbox.handoff,
            on_handoff=self.outbox.accept,
        )

    # -- life --------------------------------------------------------------

    async def run(self, *, once: bool = False, exit_when_done: bool = False) -> int:
        """Poll until stopped; returns the process exit code."""
        self._once = once
        lock = self._sqlite_lock()
        if lock is not None:
            lock.acquire()
        loop = self._loop = asyncio.get_running_loop()
        if self._file_guard is not None:
            self._file_guard.remember()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop)
        registered = False
        try:
            await self.db.read(
                self.store.register_daemon,
                name=self.owner,
                host=socket.gethostname(),
                pid=os.getpid(),
                version=__version__,
                now=utcnow(),
                live_within=timedelta(seconds=LIVE_WITHIN_SECONDS),
                pid_alive=pid_alive,
                quiet_for=timedelta(seconds=2 * HEARTBEAT_SECONDS),
            )
            registered = True
            if self._adaptive:
                self.run_times.load(await self.db.read(self.store.recent_run_times))
            # Claims left by a killed predecessor: on SQLite every one (this is the
            # only daemon on the file), elsewhere those made under this daemon's name.
            previous = None if lock is not None else self.owner
            await self.db.read(self.store.release_claims, previous, now=utcnow())
            await self.db.read(self.store.release_deliveries, previous, now=utcnow())
            log.info(
                "daemon %s started: %s, poll %g-%g s, concurrency %d, max %g requests/s",
                self.owner,
                self.settings.api_base,
                self.settings.poll_min,
                self.settings.poll_max,
                self.settings.concurrency,
                self.settings.max_rps,
            )
            if once:
                await self._sweep_once()
                await self._drain()
                await self.outbox.send_due_once()
            else:
                await self._run_scheduled(exit_when_done)
                await self._drain()
            # Writes still running may hand deliveries to the outbox: let them land first.
            await self._writer.wait_idle(DRAIN_SECONDS)
            await self.outbox.stop(timeout=DRAIN_SECONDS)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            # Each on its own: a failed release must not also leave the daemon "live".
            with contextlib.suppress(StoreError):
                await self.db.read(self.store.release_claims, self.owner, now=utcnow())
            if registered:
                with contextlib.suppress(StoreError):
                    await self.db.read(
                        self.store.mark_stopped, self.owner, now=utcnow(), polls=self.stats.requests
                    )
            self.db.shutdown()
            if lock is not None:
                lock.release()
            log.info(
                "daemon %s stopped: %s; %d callbacks delivered, %d given up",
                self.owner,
                self.stats.summary(),
                self.outbox.sent,
                self.outbox.failed,
            )
        if self.fatal is not None:
            log.error("daemon stopped: %s", self.fatal)
            return 1
        if once and self._auth_error:
            log.error("upstream rejected the API key: %s", self._auth_error)
            return 1
        return 0

    @property
    def heartbeat_seconds(self) -> float:
        """How often leases are renewed: every 5 s, or thrice per lease when it is
        shorter, so a live daemon's polls in flight never lose their claim."""
        return min(HEARTBEAT_SECONDS, self.settings.lease_seconds / 3)

    def stop(self) -> None:
        if not self._stopping.is_set():
            log.info("stopping: finishing polls in flight")
            self._stopping.set()

    async def _run_scheduled(self, exit_when_done: bool) -> None:
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        common: dict[str, Any] = {"max_instances": 1, "coalesce": True, "misfire_grace_time": 5}
        every = self._every
        scheduler.add_job(every(self._tick), "interval", seconds=TICK_SECONDS, **common)
        scheduler.add_job(every(self._report), "interval", seconds=REPORT_SECONDS, **common)
        scheduler.add_job(every(self._outbox_tick), "interval", seconds=OUTBOX_SECONDS, **common)
        scheduler.add_job(
            every(self._heartbeat), "interval", seconds=self.heartbeat_seconds, **common
        )
        if self.settings.prune_older_than is not None:
            first = utcnow() + timedelta(seconds=PRUNE_FIRST_DELAY)
            scheduler.add_job(
                every(self._prune), "interval", seconds=PRUNE_SECONDS, next_run_time=first, **common
            )
        if exit_when_done:
            scheduler.add_job(every(self._stop_when_done), "interval", seconds=1.0, **common)
        scheduler.start()
        try:
            await self._stopping.wait()
        finally:
            scheduler.shutdown(wait=False)
            await self._finish_jobs()

    def _every(self, job: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], Any]:
        """``job`` as a scheduled job that shutdown lets finish instead of cancelling.

        APScheduler cancels the jobs still running when it shuts down; a claim
        cancelled while it waits for the database would still commit in its thread,
        unseen, and the cancellation would be logged as a crash. The job runs in its
        own task, which `_finish_jobs` waits for.
        """

        @functools.wraps(job)
        async def run() -> None:
            task = asyncio.ensure_future(job())
            self._jobs.add(task)
            task.add_done_callback(self._jobs.discard)
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not self._stopping.is_set():
                    raise

        return run

    async def _finish_jobs(self) -> None:
        if not self._jobs:
            return
        done, _ = await asyncio.wait(set(self._jobs))
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("a scheduled job failed at shutdown", exc_info=task.exception())

    async def _sweep_once(self) -> None:
        """Poll every prediction due when the sweep starts, each at most once."""
        start = utcnow()
        while not self._stopping.is_set():
            claimed = 0
            budget = self._claim_budget()
            if budget > 0:
                claimed = await self._claim(now=start, limit=budget, include_unpolled=True)
            if not claimed and not self._in_flight:
                return
            if self._in_flight:
                await asyncio.wait(self._in_flight.values(), return_when=asyncio.FIRST_COMPLETED)

    async def _drain(self) -> None:
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

    # -- scheduled jobs ----------------------------------------------------

    async def _tick(self) -> None:
        if self._stopping.is_set():
            return
        limit = self._claim_budget()
        if self._auth_error is not None:
            if time.monotonic() < self._next_auth_probe:
                return
            self._next_auth_probe = time.monotonic() + AUTH_RECHECK_SECONDS
            limit = min(limit, 1)
        if limit > 0:
            await self._claim(now=utcnow(), limit=limit)

    async def _heartbeat(self) -> None:
        now = utcnow()
        try:
            await self.db.read(
                self.store.heartbeat,
                self.owner,
                now=now,
                polls=self.stats.requests,
                lease_until=now + timedelta(seconds=self.settings.lease_seconds),
                in_flight=list(self._in_flight),
            )
        except StoreError as exc:
            self.db.note_trouble(exc)

    def _sqlite_lock(self) -> DaemonLock | None:
        path = sqlite_path(self.store)
        return None if path is None else DaemonLock(path)

    async def _outbox_tick(self) -> None:
        self.outbox.wake()

    async def _report(self) -> None:
        log.info("%s; %d in flight", self.stats.summary(), len(self._in_flight))

    async def _prune(self) -> None:
        """Prune old history one batch (one short transaction) at a time, so polls
        and deliveries keep getting the database in between."""
        if self.settings.prune_older_than is None:
            return
        cutoff = utcnow() - timedelta(seconds=self.settings.prune_older_than)
        total = PruneResult()
        try:
            batches = self.store.prune_batches(cutoff=cutoff)
            while not self._stopping.is_set():
                batch = await self.db.read(next, batches, None)
                if batch is None:
                    break
                total += batch
        except StoreError as exc:
            log.error("pruning stopped: %s", exc)
        except Exception:
            log.exception("pruning stopped by an unexpected error")
        log.info(
            "pruned predictions finished before %s: %s",
            cutoff.isoformat(timespec="seconds"),
            total.summary(),
        )

    async def _stop_when_done(self) -> None:
        if self._in_flight or self.outbox.busy:
            return
        try:
            active = await self.db.read(self.store.count_active)
            kinds = tuple(self.outbox.senders)
            due = await self.db.read(self.store.next_delivery_due, kinds) if kinds else None
        except StoreError:
            return
        soon = utcnow() + timedelta(seconds=EXIT_RETRY_HORIZON_SECONDS)
        if active == 0 and (due is None or due > soon):
            log.info("no active predictions left")
            self.stop()

    # -- claiming and polling ---------------------------------------------

    def _claim_budget(self) -> int:
        """Claim about a second of work (the request budget), within bounds: claimed
        rows wait in memory, and ones that wait long are polled late."""
        concurrency = self.settings.concurrency
        target = max(2 * concurrency, int(self.settings.max_rps * CLAIM_LOOKAHEAD))
        return min(target, CLAIM_CAP_PER_SLOT * concurrency) - len(self._in_flight)

    async def _claim(self, *, now: Any, limit: int, include_unpolled: bool = False) -> int:
        lease_until = now + timedelta(seconds=self.settings.lease_seconds)
        try:
            states = await self.db.read(
                self.store.claim_due,
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
        if self._stopping.is_set():
            return 0  # stopped while claiming: the claims are released on the way out
        probe = self._auth_error is not None
        for state in states:
            if state.id in self._in_flight:
                # Claimed again while its poll runs: either that poll is written and
                # its task has not ended yet (a busy loop), or its lease ran out. Never
                # poll twice at once; decide when it ends (see _follow_up).
                self._follow_ups.add(state.id)
                continue
            self._start_poll(self._poll(state, probe=probe), state.id)
        return len(states)

    def _start_poll(self, work: Coroutine[Any, Any, None], prediction_id: str) -> None:
        task = asyncio.create_task(work, name=f"poll {prediction_id}")
        self._in_flight[prediction_id] = task
        task.add_done_callback(functools.partial(self._finished, prediction_id))

    def _finished(self, prediction_id: str, _task: asyncio.Task[None]) -> None:
        self._in_flight.pop(prediction_id, None)
        if prediction_id in self._follow_ups and not self._stopping.is_set():
            self._follow_ups.discard(prediction_id)
            self._start_poll(self._follow_up(prediction_id), prediction_id)

    async def _follow_up(self, prediction_id: str) -> None:
        """Poll a prediction claimed while its previous poll ran, from its state now.

        If that poll's write ended the claim, the claim read before it is void and
        the schedule the write set stands; otherwise the claim is still ours.
        """
        try:
            state = await self.db.read(self.store.claimed_state, prediction_id, self.owner)
        except StoreError as exc:
            self.db.note_trouble(exc)
            return
        if state is not None:
            await self._poll(state)

    async def _poll(self, state: PredictionState, *, probe: bool = False) -> None:
        try:
            async with self._slots:
                await self._limiter.acquire()
                if self._stopping.is_set() or (self._auth_error is not None and not probe):
                    await self._put_back(state)
                    return
                self.stats.requests += 1
                self._fetching.add(state.id)
                try:
                    outcome: Answer | UpstreamError = await self.upstream.get_prediction(state.id)
                except UpstreamError as exc:
                    outcome = exc
                finally:
                    self._fetching.discard(state.id)
            await self._handle(state, outcome)
        except StaleObservation as exc:
            log.warning("%s", exc)
        except StoreError as exc:
            self.db.note_trouble(exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error polling %s; it will be retried", state.id)

    async def _put_back(self, state: PredictionState) -> None:
        next_poll = NextPoll(at=utcnow(), interval=state.poll_interval)
        await self.db.write(self.store.reschedule, state.id, next_poll=next_poll, owner=self.owner)

    async def _handle(self, state: PredictionState, outcome: Answer | UpstreamError) -> None:
        if isinstance(outcome, Answer):
            await self._apply(state, outcome)
        elif isinstance(outcome, UpstreamAuthError):
            await self._on_auth_error(state, outcome)
        elif isinstance(outcome, UpstreamRateLimited):
            await self._on_rate_limited(state, outcome)
        elif isinstance(outcome, UpstreamNotFound):
            await self._on_not_found(state, outcome)
        else:
            await self._on_poll_error(state, outcome)

    async def _apply(self, state: PredictionState, answer: Answer) -> None:
        now = utcnow()
        try:
            observation = parse_prediction(answer.body, state.id)
        except UpstreamBadAnswer as exc:
            await self._on_poll_error(state, exc, raw=answer.body)
            return
        self._auth_recovered()
        update = plan_observation(state, observation, now)
        model = update.fields.get("model")
        created = update.fields.get("created_at")
        elapsed = (now - created).total_seconds() if created is not None else None
        if update.terminal and model and created and update.fields.get("completed_at"):
            self.run_times.add(model, (update.fields["completed_at"] - created).total_seconds())
        next_poll = self.policy.after_answer(
            previous_interval=state.poll_interval,
            changed=update.changed,
            terminal=update.terminal,
            now=now,
            elapsed=elapsed,
            likely=self.run_times.likely_window(model) if self._adaptive else None,
            remaining=self._remaining(state, update, now) if self._adaptive else None,
        )
        try:
            queued = await self._writer.apply(update, next_poll)
        except UnstorableObservation as exc:
            await self._on_poll_error(state, UpstreamBadAnswer(str(exc)))
            return
        if queued:
            self.outbox.wake()
        self.stats.answers += 1
        if update.changed:
            self.stats.changes += 1
        if update.transition is not None:
            t = update.transition
            log.info("%s: %s -> %s", state.id, t.from_status or "(new)", t.to_status)
        if update.terminal and state.tracking == Tracking.ACTIVE:
            self.stats.finished += 1

    @staticmethod
    def _remaining(
        state: PredictionState, update: ObservationUpdate, now: datetime
    ) -> float | None:
        """Seconds a processing run still needs, by its progress bar and pace."""
        started = update.fields.get("started_at")
        if update.fields["status"] != Status.PROCESSING or started is None:
            return None
        logs = update.fields.get("logs", state.logs)
        return remaining_seconds(logs, (now - started).total_seconds())

    async def _on_auth_error(self, state: PredictionState, exc: UpstreamAuthError) -> None:
        if self._auth_error is None:
            log.error(
                "UPSTREAM REJECTED THE API KEY (%s): polling is paused for all predictions;"
                " checking again every %g s. Set TRACKER_API_KEY to a valid key.",
                exc.detail,
                AUTH_RECHECK_SECONDS,
            )
            self._next_auth_probe = time.monotonic() + AUTH_RECHECK_SECONDS
        self._auth_error = exc.detail
        if self._once:
            self.stop()
        next_poll = NextPoll(at=utcnow(), interval=state.poll_interval)
        await self.db.write(
            self.store.reschedule,
            state.id,
            next_poll=next_poll,
            owner=self.owner,
            detail=exc.detail,
            attempted_at=utcnow(),
        )

    def _auth_recovered(self) -> None:
        if self._auth_error is not None:
            log.warning("upstream accepts the API key again: polling resumed")
            self._auth_error = None

    async def _on_rate_limited(self, state: PredictionState, exc: UpstreamRateLimited) -> None:
        self.stats.rate_limited += 1
        if self._limiter.remaining_pause() < 0.5:
            log.warning(
                "upstream asks to slow down (%s): no requests for %.1f s",
                exc.detail[:60],
                exc.retry_after,
            )
        self._limiter.pause_until(time.monotonic() + exc.retry_after)
        until = utcnow() + timedelta(seconds=exc.retry_after)
        next_poll = self.policy.after_pause(until=until, previous_interval=state.poll_interval)
        await self.db.write(
            self.store.reschedule,
            state.id,
            next_poll=next_poll,
            owner=self.owner,
            detail=exc.detail,
            attempted_at=utcnow(),
        )

    async def _on_not_found(self, state: PredictionState, exc: UpstreamNotFound) -> None:
        self.stats.errors += 1
        now = utcnow()
        next_poll = self.policy.after_error(consecutive_errors=state.not_found_count, now=now)
        lost = await self.db.write(
            self.store.record_not_found,
            state.id,
            now=now,
            detail=exc.detail,
            next_poll=next_poll,
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

    async def _on_poll_error(
        self, state: PredictionState, exc: UpstreamError, *, raw: Any = None
    ) -> None:
        self.stats.errors += 1
        now = utcnow()
        next_poll = self.policy.after_error(consecutive_errors=state.consecutive_errors, now=now)
        if state.consecutive_errors % 10 == 0:
            log.warning(
                "%s: poll failed (%s); retrying in %.1f s",
                state.id,
                exc.detail,
                (next_poll.at - now).total_seconds() if next_poll.at else 0,
            )
        await self.db.write(
            self.store.record_poll_error,
            state.id,
            now=now,
            detail=exc.detail,
            next_poll=next_poll,
            owner=self.owner,
            raw=raw,
        )

    # -- the database file ---------------------------------------------------

    def _check_database_file(self) -> None:
        """Refuse every database call once the SQLite file was deleted or replaced
        (writes would go to a file nobody can open again), and stop the daemon."""
        assert self._file_guard is not None
        problem = self._file_guard.problem()
        if problem is None:
            return
        if self.fatal is None:
            self.fatal = problem
            log.error("%s: stopping", problem)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self.stop)
        raise StoreGone(problem)
