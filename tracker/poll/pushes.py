"""Pushes: the upstream's own webhooks, applied exactly as a poll's answer is.

The HTTP side (``tracker.service.push``) verifies a push and checks that its body
is a prediction object; ``PushApplier.apply`` does the rest, through the poll's
own path: ``plan_answer`` (the same planning function, ``pushed=True``) and the
same ``ObservationWriter`` (the daemon's, when it runs in the same process). So
a push makes the same transitions, log rows, metrics and callbacks a poll would.

What is particular to pushes:

- a ``webhook-id`` received before is answered as a duplicate and not applied
  again (``upstream_pushes`` keeps every one);
- a push older than what is stored (after a terminal status, or with logs that
  are a shorter beginning of the stored ones) is recorded as ``stale`` and not
  applied: pushes come out of order;
- an ID the tracker does not know is registered first, with the default callbacks;
- a pushed prediction is then polled every poll-max only, as a safety net
  (``PollPolicy.safety_net``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from tracker.config import Settings
from tracker.domain import CallbackSpec, PredictionState, Tracking
from tracker.exceptions import StaleObservation, StoreGone, UnstorableObservation
from tracker.observer import NO_OBSERVER, PollObserver
from tracker.poll.outcomes import AnswerWrite, StaleAnswer, plan_answer
from tracker.poll.schedule import PollPolicy
from tracker.poll.singleton import SqliteFileGuard
from tracker.poll.writer import ObservationWriter
from tracker.store.pushes import PushLookup, PushOutcome, PushReceipt
from tracker.store.runner import DatabaseRunner, Runner
from tracker.store.store import Store
from tracker.timeparse import utcnow

log = logging.getLogger(__name__)

#: times a push is planned again when its prediction changed while it was written
STALE_RETRIES = 3


class PushStore(Protocol):
    """What pushes need of the store (``Store`` has it all)."""

    def push_lookup(self, prediction_id: str, webhook_id: str) -> PushLookup: ...

    def register_pushed(
        self,
        prediction_id: str,
        *,
        now: Any,
        first_poll_at: Any,
        callbacks_to_add: Any = (),
        deadline: float | None = None,
    ) -> PredictionState: ...

    def record_push(self, receipt: PushReceipt) -> bool: ...


#: what a push whose webhook-id was received before is answered
DUPLICATE = "duplicate"


class NotAPrediction(ValueError):
    """The body of a push is not a prediction object the tracker can store."""


@dataclass(frozen=True, slots=True)
class Pushed:
    """What became of one push."""

    outcome: str  #: a PushOutcome, or "duplicate" for a webhook-id received before
    detail: str | None = None  #: why it is stale or ignored
    registered: bool = False  #: the push registered its prediction
    #: for a duplicate: what became of the first delivery
    first: str | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"outcome": self.outcome}
        if self.detail:
            document["detail"] = self.detail
        if self.registered:
            document["registered"] = True
        if self.first:
            document["first"] = self.first
        return document


class PushApplier:
    """Applies verified pushes through the poll path (see the module's docstring)."""

    def __init__(
        self,
        store: PushStore,
        db: Runner,
        writer: ObservationWriter,
        policy: PollPolicy,
        *,
        default_callbacks: tuple[CallbackSpec, ...] = (),
        default_deadline: float | None = None,
        on_deliveries: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.db = db
        self.writer = writer
        self.policy = policy
        self.default_callbacks = default_callbacks
        #: TRACKER_DEFAULT_DEADLINE (seconds), for the predictions a push registers
        self.default_deadline = default_deadline
        self._on_deliveries = on_deliveries

    async def apply(self, webhook_id: str, prediction_id: str, body: dict[str, Any]) -> Pushed:
        """Apply one push whose signature was verified and whose body was checked
        (``prediction_id`` is its valid ``id``). StoreError when the database fails
        (the upstream retries); NotAPrediction when the database refuses the body."""
        received_at = utcnow()
        lookup = await self.db.read(self.store.push_lookup, prediction_id, webhook_id)
        if lookup.seen is not None:
            return Pushed(DUPLICATE, first=lookup.seen)
        state, registered = lookup.state, False
        if state is None:
            state = await self.db.write(
                self.store.register_pushed,
                prediction_id,
                now=received_at,
                first_poll_at=received_at + timedelta(seconds=self.policy.poll_max),
                callbacks_to_add=self.default_callbacks,
                deadline=self.default_deadline,
            )
            registered = True
        outcome, detail = await self._apply(state, webhook_id, body, received_at)
        if outcome in (PushOutcome.STALE, PushOutcome.IGNORED):  # nothing else written
            status = str(body["status"])
            receipt = PushReceipt(webhook_id, prediction_id, received_at, status, outcome, detail)
            await self.db.write(self.store.record_push, receipt)
        if outcome == PushOutcome.STALE:  # per prediction, and in upstream_pushes: DEBUG
            log.debug(
                "%s: stale push %s not applied: %s",
                prediction_id,
                webhook_id,
                detail,
                extra={"prediction_id": prediction_id, "webhook_id": webhook_id},
            )
        if outcome == DUPLICATE:
            return Pushed(DUPLICATE, first=detail)
        return Pushed(outcome, detail, registered)

    async def _apply(
        self, state: PredictionState, webhook_id: str, body: dict[str, Any], received_at: datetime
    ) -> tuple[str, str | None]:
        """Plan and write (the webhook-id is kept in the same transaction, with
        ``received_at``, when it arrived), planning again from the row as it is now when
        it changed meanwhile (a poll, or another push, was written first)."""
        for _ in range(STALE_RETRIES):
            if state.tracking == Tracking.FORGOTTEN:
                return PushOutcome.IGNORED, "the prediction is forgotten"
            planned = plan_answer(state, body, utcnow(), self.policy, push_id=webhook_id)
            if isinstance(planned, StaleAnswer):
                return PushOutcome.STALE, planned.reason
            if not isinstance(planned, AnswerWrite):
                raise NotAPrediction(planned.detail)
            update = replace(planned.update, push_received_at=received_at)
            try:
                queued = await self.writer.apply(update, planned.next_poll, claimed=False)
            except StaleObservation:
                lookup = await self.db.read(self.store.push_lookup, state.id, webhook_id)
                if lookup.seen is not None:  # the same push, delivered twice at once
                    return DUPLICATE, lookup.seen
                if lookup.state is None:  # deleted meanwhile (tracker prune --all)
                    return PushOutcome.IGNORED, "the prediction was deleted"
                state = lookup.state
                continue
            except UnstorableObservation as exc:
                raise NotAPrediction(str(exc)) from exc
            if queued:
                self._on_deliveries()
            changed = planned.update.changed
            return (PushOutcome.APPLIED if changed else PushOutcome.UNCHANGED), None
        return PushOutcome.STALE, "the prediction kept changing while the push was written"


class OwnPushes:
    """Pushes without a daemon in the process (``tracker serve --no-daemon``): a
    database runner and an observation writer of their own on ``store``. Deliveries
    are left pending for a daemon to send."""

    def __init__(
        self, store: Store, settings: Settings, *, observer: PollObserver = NO_OBSERVER
    ) -> None:
        self.store = store
        self.db = DatabaseRunner(workers=1 if store.dialect == "sqlite" else 2)
        guard = SqliteFileGuard.for_store(store)
        if guard is not None:  # as the daemon's runner: never write to a deleted file
            guard.remember()
            self.db.add_check(functools.partial(_refuse_a_lost_file, guard))
        owner = f"{settings.name or socket.gethostname()}:{os.getpid()}:pushes"
        writer = ObservationWriter(
            self.store.apply_observations,
            self.db.write,
            owner=owner,
            default_callbacks=settings.default_callbacks,
            observer=observer,
            archive=settings.archive_url is not None,
        )
        self.applier = PushApplier(
            self.store,
            self.db,
            writer,
            PollPolicy(settings.poll_min, settings.poll_max),
            default_callbacks=settings.default_callbacks,
        )

    async def close(self) -> None:
        """Let writes in flight finish, then stop the runner (the store stays open)."""
        await self.applier.writer.wait_idle(timeout=5.0)
        await asyncio.to_thread(self.db.shutdown)


def _refuse_a_lost_file(guard: SqliteFileGuard) -> None:
    """Refuse a database call once the SQLite file was deleted or replaced: the push
    is answered 503 and the upstream retries, instead of an acknowledged write to a
    file nobody can open again."""
    problem = guard.problem()
    if problem is not None:
        raise StoreGone(problem)
