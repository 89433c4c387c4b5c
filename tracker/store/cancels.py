"""Cancelling: recording cancel requests and their outcome, claiming the predictions
whose deadline passed, and keeping ``deadline_at`` right.

A deadline is acted on once: ``claim_deadlines`` sets ``cancel_requested_at`` with
a conditional UPDATE (on PostgreSQL over rows locked with SKIP LOCKED), so of two
daemons, or a daemon and its restart, only one ever gets a prediction; the
``deadline`` event is queued in that same transaction. A request whose daemon died
before the answer (still ``sending`` minutes later) is claimed and sent again,
without a second event (``reclaim_deadline_cancels``): cancelling twice is harmless
upstream, a runaway prediction that keeps running is not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select, update

from tracker.domain import (
    CallbackSpec,
    CancelReason,
    CancelState,
    CancelTarget,
    Tracking,
    is_terminal,
)
from tracker.events import Event
from tracker.store.base import StoreBase, batches
from tracker.store.enqueue import EventBatch, enqueue_deliveries, prediction_object
from tracker.store.tables import predictions

#: rows per statement when deadlines are set on known predictions
DEADLINE_BATCH = 1_000

c = predictions.c


@dataclass(frozen=True, slots=True)
class CancelRecorded:
    """What ``request_cancel`` found: the prediction's stored status, and the request
    to send (None when it is not registered or has ended: nothing is recorded)."""

    registered: bool
    status: str | None = None
    target: CancelTarget | None = None


@dataclass(frozen=True, slots=True)
class DeadlineClaim:
    """Predictions whose deadline passed, now claimed for cancelling by the caller."""

    targets: list[CancelTarget]
    deliveries: int  #: ``deadline`` deliveries queued (pending)


class CancelOps(StoreBase):
    """Cancel requests and deadlines (mixed into ``Store``)."""

    def request_cancel(self, prediction_id: str, *, now: datetime) -> CancelRecorded:
        """Record a user's cancel request (``cancel_requested_at``, reason ``user``,
        outcome ``sending``) unless the prediction is unknown or has ended."""
        with self._transaction() as conn:
            row = conn.execute(
                select(c.status, c.urls)
                .where(c.id == prediction_id)
                .with_for_update(key_share=True)
            ).first()
            if row is None:
                return CancelRecorded(registered=False)
            if is_terminal(row.status):
                return CancelRecorded(registered=True, status=row.status)
            conn.execute(
                update(predictions)
                .where(c.id == prediction_id)
                .values(_recorded(now, CancelReason.USER))
            )
        target = CancelTarget(prediction_id, row.urls, now, CancelReason.USER.value)
        return CancelRecorded(registered=True, status=row.status, target=target)

    def claim_deadlines(
        self, *, now: datetime, limit: int, default_callbacks: Sequence[CallbackSpec] = ()
    ) -> DeadlineClaim:
        """Claim up to ``limit`` active predictions whose ``deadline_at`` has passed and
        for which no cancel was asked yet, and queue their ``deadline`` event."""
        due = (
            select(c.id)
            .where(
                c.tracking == Tracking.ACTIVE.value,
                c.cancel_requested_at.is_(None),
                c.deadline_at <= now,
            )
            .order_by(c.deadline_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claim = (
            update(predictions)
            .where(c.id.in_(due.scalar_subquery()), c.cancel_requested_at.is_(None))
            .values(_recorded(now, CancelReason.DEADLINE))
            .returning(c.id, c.urls, c.deadline_at)
        )
        with self._transaction() as conn:
            rows = sorted(conn.execute(claim).all(), key=lambda row: row.id)
            events = [_deadline_event(conn, row.id, row.deadline_at, now) for row in rows]
            queued = enqueue_deliveries(conn, events, default_callbacks)
        targets = [CancelTarget(row.id, row.urls, now, CancelReason.DEADLINE.value) for row in rows]
        return DeadlineClaim(targets, sum(queued.pending.values()))

    def reclaim_deadline_cancels(
        self, *, now: datetime, unanswered_since: datetime, limit: int
    ) -> list[CancelTarget]:
        """Claim again the deadline cancels still ``sending`` since before
        ``unanswered_since`` (their daemon was killed before the upstream answered), of
        predictions still active: ``cancel_requested_at`` moves to ``now`` (so a late
        outcome of the old request changes nothing) and the ``deadline`` event, queued
        with the first claim, is not queued again."""
        stale = (
            select(c.id)
            .where(
                c.tracking == Tracking.ACTIVE.value,
                c.cancel_reason == CancelReason.DEADLINE.value,
                c.cancel_outcome == CancelState.SENDING.value,
                c.cancel_requested_at < unanswered_since,
            )
            .order_by(c.cancel_requested_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claim = (
            update(predictions)
            .where(
                c.id.in_(stale.scalar_subquery()),
                c.cancel_outcome == CancelState.SENDING.value,
                c.cancel_requested_at < unanswered_since,
            )
            .values(cancel_requested_at=now)
            .returning(c.id, c.urls)
        )
        with self._transaction() as conn:
            rows = sorted(conn.execute(claim).all(), key=lambda row: row.id)
        return [CancelTarget(row.id, row.urls, now, CancelReason.DEADLINE.value) for row in rows]

    def record_cancel_outcome(
        self, target: CancelTarget, *, state: CancelState, detail: str, poll_at: datetime | None
    ) -> None:
        """What became of the request ``target`` stands for (a later request's outcome
        is never overwritten); with ``poll_at``, an active prediction no daemon is
        polling right now is polled no later than then, to see the new status."""
        with self._transaction() as conn:
            conn.execute(
                update(predictions)
                .where(
                    c.id == target.prediction_id,
                    c.cancel_requested_at == target.requested_at,
                )
                .values(cancel_outcome=state.value, cancel_detail=detail)
            )
            if poll_at is not None:
                conn.execute(
                    update(predictions)
                    .where(
                        c.id == target.prediction_id,
                        c.tracking == Tracking.ACTIVE.value,
                        c.claimed_by.is_(None),
                        or_(c.next_poll_at.is_(None), c.next_poll_at > poll_at),
                    )
                    .values(next_poll_at=poll_at)
                )

    def next_deadline(self) -> datetime | None:
        """The earliest deadline not acted on yet, of an active prediction."""
        query = select(c.deadline_at).where(
            c.tracking == Tracking.ACTIVE.value,
            c.cancel_requested_at.is_(None),
            c.deadline_at.is_not(None),
        )
        with self._reading() as conn:
            return conn.execute(query.order_by(c.deadline_at).limit(1)).scalar()


def _recorded(now: datetime, reason: CancelReason) -> dict[str, Any]:
    return {
        "cancel_requested_at": now,
        "cancel_reason": reason.value,
        "cancel_outcome": CancelState.SENDING.value,
        "cancel_detail": None,
    }


def _deadline_event(
    conn: Connection, prediction_id: str, deadline_at: datetime, now: datetime
) -> EventBatch:
    """The ``deadline`` event: the prediction object as stored, with the deadline and
    when the cancel was asked for."""
    body = {
        **(prediction_object(conn, prediction_id) or {"id": prediction_id}),
        "deadline_at": _iso(deadline_at),
        "cancel_requested_at": _iso(now),
    }
    return EventBatch(prediction_id, (Event.DEADLINE.value,), body, now)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# -- keeping deadline_at right ------------------------------------------------------


def deadline_from(start: datetime, seconds: float) -> datetime:
    return start + timedelta(seconds=seconds)


def set_deadlines(conn: Connection, ids: Sequence[str], seconds: float | None) -> None:
    """Give known predictions this deadline (None: none), counted from their upstream
    ``created_at`` when known, else from ``registered_at``. The rows are locked first,
    so a poll storing ``created_at`` meanwhile counts the deadline again (see
    ``recount_deadlines``)."""
    for batch in batches(list(ids), DEADLINE_BATCH):
        rows = conn.execute(
            select(c.id, c.created_at, c.registered_at)
            .where(c.id.in_(batch))
            .order_by(c.id)
            .with_for_update(key_share=True)
        ).all()
        values = [
            {
                "g_id": row.id,
                "v_at": None
                if seconds is None
                else deadline_from(row.created_at or row.registered_at, seconds),
                "v_seconds": seconds,
            }
            for row in rows
        ]
        if values:
            conn.execute(_SET_DEADLINE, values)


def recount_deadlines(conn: Connection, created: Mapping[str, datetime]) -> None:
    """Count the deadlines of these predictions from their upstream ``created_at``,
    just stored for the first time (in the transaction that stores it). A deadline
    whose cancel was already asked for keeps the time it was acted on (an upstream
    that creates a prediction when it first hears of it reports a later one)."""
    rows = conn.execute(
        select(c.id, c.deadline_seconds).where(
            c.id.in_(list(created)),
            c.deadline_seconds.is_not(None),
            c.cancel_requested_at.is_(None),
        )
    ).all()
    values = [
        {
            "g_id": row.id,
            "v_at": deadline_from(created[row.id], row.deadline_seconds),
            "v_seconds": row.deadline_seconds,
        }
        for row in rows
    ]
    if values:
        conn.execute(_SET_DEADLINE, values)


_SET_DEADLINE = (
    update(predictions)
    .where(c.id == bindparam("g_id"))
    .values(
        deadline_at=bindparam("v_at", type_=c.deadline_at.type),
        deadline_seconds=bindparam("v_seconds", type_=c.deadline_seconds.type),
    )
)


__all__ = [
    "CancelOps",
    "CancelRecorded",
    "DeadlineClaim",
    "deadline_from",
    "recount_deadlines",
    "set_deadlines",
]
