"""Outbox: claiming due deliveries, sending them with limits, recording every attempt."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tracker.callbacks.outbox import Outbox, display_target
from tracker.callbacks.retry import RETRY_JITTER, RetryPolicy
from tracker.domain import DeliveryJob, DeliveryState, SendResult
from tracker.timeparse import utcnow

OWNER = "test-owner"
A = "https://a.example.test/hook"
B = "https://b.example.test/hook"


# -- fakes -------------------------------------------------------------------------


@dataclass
class Row:
    job: DeliveryJob
    state: DeliveryState = DeliveryState.PENDING
    next_attempt_at: datetime | None = None
    claimed_by: str | None = None
    attempts: int = 0


@dataclass
class Attempt:
    job_id: int
    result: SendResult
    state: DeliveryState
    next_attempt_at: datetime | None
    attempted_at: datetime


@dataclass
class FakeStore:
    """The four methods Outbox calls, over an in-memory table (the real ones' semantics)."""

    rows: dict[int, Row] = field(default_factory=dict)
    claims: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    per_target_seen: list[int | None] = field(default_factory=list)
    releases: list[str | None] = field(default_factory=list)

    def add(
        self,
        job_id: int,
        target: str = A,
        *,
        kind: str = "webhook",
        attempts: int = 0,
        due: datetime | None = None,
    ) -> DeliveryJob:
        job = DeliveryJob(
            id=job_id,
            message_id=f"msg_{job_id}",
            prediction_id=f"pred{job_id}",
            kind=kind,
            target=target,
            event="completed",
            payload=json.dumps({"id": f"pred{job_id}"}),
            attempts=attempts,
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
        due = due or utcnow() - timedelta(seconds=1)
        self.rows[job_id] = Row(job, next_attempt_at=due, attempts=attempts)
        return job

    def claim_deliveries(
        self,
        *,
        now: datetime,
        limit: int,
        owner: str,
        lease_until: datetime,
        kinds: Sequence[str] = ("webhook", "email"),
        skip_targets: Sequence[str] = (),
        per_target: int | None = None,
    ) -> list[DeliveryJob]:
        self.claims.append(
            {"now": now, "limit": limit, "kinds": tuple(kinds), "skip": list(skip_targets)}
        )
        due = sorted(
            (
                r
                for r in self.rows.values()
                if r.state is DeliveryState.PENDING
                and r.next_attempt_at is not None
                and r.next_attempt_at <= now
                and r.job.kind in kinds
                and r.job.target not in skip_targets
            ),
            key=lambda r: (r.next_attempt_at, r.job.id),
        )
        if per_target is not None:
            taken: dict[str, int] = {}
            capped = []
            for r in due:
                taken[r.job.target] = taken.get(r.job.target, 0) + 1
                if taken[r.job.target] <= per_target:
                    capped.append(r)
            due = capped
        due = due[:limit]
        self.per_target_seen.append(per_target)
        for r in due:
            r.claimed_by = owner
            r.next_attempt_at = lease_until
        return [replace(r.job, attempts=r.attempts) for r in due]

    def record_attempt(
        self,
        job: DeliveryJob,
        result: SendResult,
        *,
        attempted_at: datetime,
        state: DeliveryState,
        next_attempt_at: datetime | None,
        owner: str,
    ) -> bool:
        self.attempts.append(Attempt(job.id, result, state, next_attempt_at, attempted_at))
        row = self.rows[job.id]
        if row.claimed_by != owner:
            return False
        row.attempts += 1
        row.state = state
        row.next_attempt_at = next_attempt_at
        row.claimed_by = None
        return True

    def release_deliveries(self, owner: str | None, *, now: datetime) -> int:
        self.releases.append(owner)
        n = 0
        for row in self.rows.values():
            claimed = row.claimed_by is not None if owner is None else row.claimed_by == owner
            if claimed and row.state is DeliveryState.PENDING:
                row.claimed_by = None
                row.next_attempt_at = now
                n += 1
        return n

    def attempts_for(self, job_id: int) -> list[Attempt]:
        return [a for a in self.attempts if a.job_id == job_id]


async def run_inline(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


class InlineDb:
    """The database runner's interface, calling the fake store directly."""

    read = write = staticmethod(run_inline)


class ScriptedSender:
    """Answers each job with a scripted result (by job id), ok otherwise."""

    def __init__(self, script: dict[int, SendResult | Exception] | None = None) -> None:
        self.script = script or {}
        self.sent: list[DeliveryJob] = []

    async def send(self, job: DeliveryJob) -> SendResult:
        self.sent.append(job)
        await asyncio.sleep(0)
        outcome = self.script.get(job.id, SendResult(ok=True, status_code=200, duration_ms=1))
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


class HangingSender:
    """Hangs on jobs for ``hang_targets`` until ``release`` is set; counts concurrency."""

    def __init__(self, hang_targets: set[str]) -> None:
        self.hang_targets = hang_targets
        self.release = asyncio.Event()
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self.started: list[int] = []
        self.finished: list[int] = []
        self.cancelled: list[int] = []

    async def send(self, job: DeliveryJob) -> SendResult:
        self.started.append(job.id)
        self.in_flight[job.target] += 1
        self.max_in_flight[job.target] = max(
            self.max_in_flight[job.target], self.in_flight[job.target]
        )
        try:
            if job.target in self.hang_targets:
                await self.release.wait()
            else:
                await asyncio.sleep(0)
            self.finished.append(job.id)
            return SendResult(ok=True, status_code=200, duration_ms=0)
        except asyncio.CancelledError:
            self.cancelled.append(job.id)
            raise
        finally:
            self.in_flight[job.target] -= 1


def make_outbox(
    store: FakeStore,
    senders: dict[str, Any],
    *,
    schedule: tuple[float, ...] = (60.0, 600.0),
    per_target: int = 4,
    concurrency: int = 32,
) -> Outbox:
    return Outbox(
        store,
        senders,
        owner=OWNER,
        db=InlineDb(),
        policy=RetryPolicy(schedule, rng=random.Random(3)),
        lease_seconds=60.0,
        concurrency=concurrency,
        per_target=per_target,
    )


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Let the event loop run until ``condition`` holds (fails after ``timeout``)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


# -- send_due_once ---------------------------------------------------------------------


async def test_send_due_once_sends_every_due_job_once() -> None:
    store = FakeStore()
    for i in range(1, 6):
        store.add(i, target=f"https://r{i}.example.test/hook")
    sender = ScriptedSender()
    outbox = make_outbox(store, {"webhook": sender})
    await asyncio.wait_for(outbox.send_due_once(), 2)
    assert sorted(j.id for j in sender.sent) == [1, 2, 3, 4, 5]
    assert {r.state for r in store.rows.values()} == {DeliveryState.DELIVERED}
    assert all(r.claimed_by is None for r in store.rows.values())
    assert outbox.sent == 5
    assert outbox.failed == 0
    assert not outbox.busy


async def test_send_due_once_leaves_jobs_that_are_not_due() -> None:
    store = FakeStore()
    store.add(1)
    store.add(2, due=utcnow() + timedelta(hours=1))
    sender = ScriptedSender()
    outbox = make_outbox(store, {"webhook": sender})
    await asyncio.wait_for(outbox.send_due_once(), 2)
    assert [j.id for j in sender.sent] == [1]
    assert store.rows[2].state is DeliveryState.PENDING
    assert store.attempts_for(2) == []


async def test_send_due_once_records_states_from_the_retry_policy() -> None:
    store = FakeStore()
    store.add(1, target="https://ok.example.test/")
    store.add(2, target="https://flaky.example.test/")  # first failure: retried
    store.add(3, target="https://flaky2.example.test/", attempts=2)  # schedule used up
    store.add(4, target="https://gone.example.test/")  # permanent
    sender = ScriptedSender(
        {
            2: SendResult(ok=False, status_code=500, error="HTTP 500"),
            3: SendResult(ok=False, status_code=500, error="HTTP 500"),
            4: SendResult(ok=False, status_code=410, error="HTTP 410", permanent=True),
        }
    )
    outbox = make_outbox(store, {"webhook": sender}, schedule=(60.0, 600.0))
    before = utcnow()
    await asyncio.wait_for(outbox.send_due_once(), 2)
    after = utcnow()

    assert sorted(j.id for j in sender.sent) == [1, 2, 3, 4]  # each exactly once
    [a1], [a2], [a3], [a4] = (store.attempts_for(i) for i in (1, 2, 3, 4))
    assert (a1.state, a1.next_attempt_at) == (DeliveryState.DELIVERED, None)
    assert a2.state is DeliveryState.PENDING
    assert a2.next_attempt_at is not None
    low = before + timedelta(seconds=60 * (1 - RETRY_JITTER))
    high = after + timedelta(seconds=60 * (1 + RETRY_JITTER))
    assert low <= a2.next_attempt_at <= high
    assert (a3.state, a3.next_attempt_at) == (DeliveryState.DEAD, None)
    assert (a4.state, a4.next_attempt_at) == (DeliveryState.DEAD, None)
    assert a2.result.error == "HTTP 500"
    assert store.rows[2].state is DeliveryState.PENDING
    assert store.rows[2].attempts == 1
    assert outbox.sent == 1
    assert outbox.failed == 2


async def test_the_job_passed_to_the_sender_carries_its_attempt_count() -> None:
    store = FakeStore()
    store.add(1, attempts=1)
    sender = ScriptedSender({1: SendResult(ok=False, status_code=500, error="HTTP 500")})
    outbox = make_outbox(store, {"webhook": sender}, schedule=(60.0, 600.0, 6000.0))
    await asyncio.wait_for(outbox.send_due_once(), 2)
    assert sender.sent[0].attempts == 1
    [attempt] = store.attempts_for(1)
    assert attempt.state is DeliveryState.PENDING
    delay = (attempt.next_attempt_at - attempt.attempted_at).total_seconds()
    # schedule[1], not schedule[0]
    assert 600 * (1 - RETRY_JITTER) <= delay <= 600 * (1 + RETRY_JITTER)


async def test_a_raising_sender_is_recorded_as_a_failed_attempt() -> None:
    store = FakeStore()
    store.add(1)
    store.add(2, target=B)
    sender = ScriptedSender({1: RuntimeError("sender bug with https://user:pw@x/")})
    outbox = make_outbox(store, {"webhook": sender})
    await asyncio.wait_for(outbox.send_due_once(), 2)  # does not raise
    [attempt] = store.attempts_for(1)
    assert not attempt.result.ok
    assert attempt.result.error == "internal error: RuntimeError"
    assert attempt.state is DeliveryState.PENDING  # retried, not lost
    assert store.rows[1].claimed_by is None
    [other] = store.attempts_for(2)
    assert other.state is DeliveryState.DELIVERED


async def test_jobs_go_to_the_sender_of_their_kind_and_only_those_kinds_are_claimed() -> None:
    store = FakeStore()
    store.add(1, kind="webhook")
    store.add(2, kind="email", target="ops@example.test")
    webhooks = ScriptedSender()
    outbox = make_outbox(store, {"webhook": webhooks})
    await asyncio.wait_for(outbox.send_due_once(), 2)
    assert [j.id for j in webhooks.sent] == [1]
    assert all(c["kinds"] == ("webhook",) for c in store.claims)
    assert store.rows[2].state is DeliveryState.PENDING
    assert store.attempts_for(2) == []


async def test_send_due_once_without_senders_does_nothing() -> None:
    store = FakeStore()
    store.add(1)
    outbox = make_outbox(store, {})
    await asyncio.wait_for(outbox.send_due_once(), 2)
    assert store.claims == []
    assert store.attempts == []


# -- per-target limits -----------------------------------------------------------------


async def test_per_target_limit_and_other_targets_keep_going() -> None:
    store = FakeStore()
    for i in range(1, 5):
        store.add(i, target=A)
    store.add(10, target=B)
    sender = HangingSender(hang_targets={A})
    outbox = make_outbox(store, {"webhook": sender}, per_target=2)
    outbox.wake()  # the daemon's continuous mode
    try:
        await until(lambda: bool(store.attempts_for(10)))
        # B was delivered while A hangs, and A never had more than 2 sends in flight.
        assert store.attempts_for(10)[0].state is DeliveryState.DELIVERED
        assert sender.in_flight[A] == 2
        assert sender.max_in_flight[A] == 2

        # A later claim skips the busy receiver.
        def claimed_skipping_a() -> bool:
            outbox.wake()
            return any(A in c["skip"] for c in store.claims)

        await until(claimed_skipping_a)
        assert all(B not in c["skip"] for c in store.claims)
        assert outbox.busy
    finally:
        sender.release.set()
        await outbox.stop(timeout=2)
    assert sender.max_in_flight[A] == 2
    assert not outbox.busy


async def test_first_claim_skips_nothing() -> None:
    store = FakeStore()
    store.add(1)
    outbox = make_outbox(store, {"webhook": ScriptedSender()})
    await asyncio.wait_for(outbox.send_due_once(), 2)
    assert store.claims[0]["skip"] == []


async def test_send_due_once_attempts_more_jobs_than_per_target_for_one_receiver() -> None:
    store = FakeStore()
    for i in range(1, 6):
        store.add(i, target=A)
    sender = ScriptedSender()
    outbox = make_outbox(store, {"webhook": sender}, per_target=2)
    await asyncio.wait_for(outbox.send_due_once(), 3)
    assert sorted(j.id for j in sender.sent) == [1, 2, 3, 4, 5]


async def test_claims_take_a_bounded_batch_of_one_receiver_and_keep_order() -> None:
    """A receiver's backlog is claimed a few at a time; nothing is handed back or reordered."""
    store = FakeStore()
    for i in range(1, 8):
        store.add(i, target=A)
    sender = ScriptedSender()
    outbox = make_outbox(store, {"webhook": sender}, per_target=2)
    outbox.wake()
    await until(lambda: len(sender.sent) == 7)
    await outbox.stop(timeout=2)
    assert set(store.per_target_seen) == {4}  # twice the slots per receiver
    assert [j.id for j in sender.sent] == [1, 2, 3, 4, 5, 6, 7]
    assert all(row.state is DeliveryState.DELIVERED for row in store.rows.values())


async def test_concurrency_limits_sends_across_targets() -> None:
    store = FakeStore()
    targets = [f"https://r{i}.example.test/" for i in range(6)]
    for i, target in enumerate(targets):
        store.add(i + 1, target=target)
    sender = HangingSender(hang_targets=set(targets))
    outbox = make_outbox(store, {"webhook": sender}, concurrency=2)
    task = asyncio.create_task(outbox.send_due_once())
    try:
        await until(lambda: len(sender.started) == 2)
        await asyncio.sleep(0.02)
        assert len(sender.started) == 2  # the others wait for a slot
    finally:
        sender.release.set()
        await asyncio.wait_for(task, 2)
    assert sorted(sender.finished) == [1, 2, 3, 4, 5, 6]


# -- wake and stop -----------------------------------------------------------------------


async def test_wake_sends_due_deliveries_in_the_background() -> None:
    store = FakeStore()
    store.add(1)
    outbox = make_outbox(store, {"webhook": ScriptedSender()})
    outbox.wake()
    await until(lambda: bool(store.attempts_for(1)))
    assert store.rows[1].state is DeliveryState.DELIVERED
    await outbox.stop(1)


async def test_wake_does_nothing_without_senders() -> None:
    store = FakeStore()
    store.add(1)
    outbox = make_outbox(store, {})
    outbox.wake()
    for _ in range(5):
        await asyncio.sleep(0)
    assert store.claims == []
    assert not outbox.busy


async def test_wake_does_nothing_after_stop() -> None:
    store = FakeStore()
    outbox = make_outbox(store, {"webhook": ScriptedSender()})
    await outbox.stop(0.1)
    store.add(1)
    outbox.wake()
    for _ in range(5):
        await asyncio.sleep(0)
    assert store.claims == []


async def test_stop_cancels_hung_sends_after_the_timeout_and_releases() -> None:
    store = FakeStore()
    store.add(1, target=A)
    store.add(2, target=B)
    sender = HangingSender(hang_targets={A})
    outbox = make_outbox(store, {"webhook": sender})
    outbox.wake()
    await until(lambda: 1 in sender.started and bool(store.attempts_for(2)))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(outbox.stop(0.05), 2)
    elapsed = loop.time() - started
    assert 0.04 <= elapsed < 1.0
    assert sender.cancelled == [1]
    assert store.attempts_for(1) == []  # no attempt recorded for a cancelled send
    assert store.releases == [OWNER]
    assert store.rows[1].claimed_by is None  # released: due again for the next daemon
    assert store.rows[1].state is DeliveryState.PENDING
    assert store.rows[2].state is DeliveryState.DELIVERED
    assert not outbox.busy


async def test_stop_waits_for_sends_that_finish_in_time() -> None:
    store = FakeStore()
    store.add(1)
    sender = HangingSender(hang_targets={A})
    outbox = make_outbox(store, {"webhook": sender})
    outbox.wake()
    await until(lambda: 1 in sender.started)
    asyncio.get_running_loop().call_later(0.02, sender.release.set)
    await asyncio.wait_for(outbox.stop(1.0), 2)
    assert sender.cancelled == []
    assert store.rows[1].state is DeliveryState.DELIVERED
    assert store.releases == [OWNER]


async def test_stop_with_nothing_in_flight_just_releases() -> None:
    store = FakeStore()
    outbox = make_outbox(store, {"webhook": ScriptedSender()})
    await asyncio.wait_for(outbox.stop(5.0), 1)
    assert store.releases == [OWNER]


# -- display_target ----------------------------------------------------------------------


def job_to(target: str, kind: str = "webhook") -> DeliveryJob:
    return DeliveryJob(
        id=1,
        message_id="m",
        prediction_id="p",
        kind=kind,
        target=target,
        event="completed",
        payload="{}",
        attempts=0,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        (
            "https://user:pw@hooks.example.com/services/T0/B0/xyz?token=1",
            "https://hooks.example.com/…",
        ),
        ("https://hooks.example.com/services/T0/B0/xyz", "https://hooks.example.com/…"),
        ("https://hooks.example.com/?token=abc", "https://hooks.example.com/…"),
        ("https://hooks.example.com", "https://hooks.example.com"),
        ("https://hooks.example.com/", "https://hooks.example.com"),
        ("http://localhost:8080/hook", "http://localhost:8080/…"),
        ("https://token@hooks.example.com:8443", "https://hooks.example.com:8443"),
    ],
)
def test_display_target_hides_paths_queries_and_credentials(target: str, shown: str) -> None:
    assert display_target(job_to(target)) == shown


def test_display_target_never_contains_the_secret_parts() -> None:
    shown = display_target(job_to("https://alice:s3cr3t@h.example.com/T0/B0/XyZtoken?sig=QwE"))
    for secret in ("alice", "s3cr3t", "XyZtoken", "sig", "QwE", "T0", "B0"):
        assert secret not in shown


def test_display_target_shows_emails_as_they_are() -> None:
    assert display_target(job_to("ops+alerts@example.com", kind="email")) == (
        "ops+alerts@example.com"
    )


def test_display_target_keeps_ipv6_brackets() -> None:
    assert display_target(job_to("http://[::1]:8080/hook")) == "http://[::1]:8080/…"


# -- the counters ---------------------------------------------------------------------------


async def test_a_lost_claim_is_not_counted_as_delivered() -> None:
    store = FakeStore()
    store.add(1)

    class StealingSender(ScriptedSender):
        async def send(self, job: DeliveryJob) -> SendResult:
            store.rows[job.id].claimed_by = "someone-else"  # our lease expired meanwhile
            return await super().send(job)

    outbox = make_outbox(store, {"webhook": StealingSender()})
    await asyncio.wait_for(outbox.send_due_once(), 2)
    assert len(store.attempts_for(1)) == 1
    assert outbox.sent == 0
    assert outbox.failed == 0


async def test_deliveries_handed_over_count_against_the_next_hand_off_at_once() -> None:
    """Room is taken when the jobs are accepted, not when their tasks first run: a
    hand-off decided right after (the writer's next batch) must see it."""
    store = FakeStore()
    outbox = make_outbox(store, {"webhook": HangingSender({"http://a/"})}, per_target=2)
    first = outbox.handoff()
    assert first is not None and first.room == {} and first.default_room == 4
    outbox.accept([replace(job_to("http://a/"), id=n) for n in range(3)])
    second = outbox.handoff()  # no await in between: the tasks have not run yet
    assert second is not None
    assert second.room == {"http://a/": 1}
    assert second.total == 2 * 32 - 3
    await outbox.stop(timeout=0.1)


async def test_deliveries_handed_over_while_stopping_are_left_to_their_lease() -> None:
    store = FakeStore()
    sender = ScriptedSender()
    outbox = make_outbox(store, {"webhook": sender})
    await outbox.stop(timeout=0.1)
    assert outbox.handoff() is None
    outbox.accept([job_to("http://a/")])
    assert not outbox.busy
