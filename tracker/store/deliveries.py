"""The delivery outbox: claiming due deliveries, recording every attempt, listing and
re-queueing them (queueing them is ``tracker.store.enqueue``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    RowMapping,
    Select,
    and_,
    func,
    insert,
    select,
    update,
)

from tracker.domain import (
    Delivery,
    DeliveryAttempt,
    DeliveryJob,
    DeliveryState,
    SendResult,
)
from tracker.store.base import StoreBase
from tracker.store.label_filter import carrying
from tracker.store.listing import streaming
from tracker.store.tables import callbacks, deliveries, delivery_attempts


@dataclass(frozen=True, slots=True)
class DeliveryQuery:
    """Which deliveries a listing covers, and in which order. ``since`` and ``until``
    bound when a delivery was created (since inclusive, until exclusive, as
    ``retry_deliveries`` reads ``since``); ``labels`` are those of its prediction."""

    states: Sequence[str] = ()
    prediction_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    limit: int | None = None
    newest_first: bool = False

    def select(self, *, count: bool = False) -> Select[Any]:
        """The listing (or, with ``count``, the number of its rows, limit aside)."""
        d = deliveries.c
        source = deliveries.join(callbacks, callbacks.c.id == d.callback_id)
        conditions: list[ColumnElement[bool]] = []
        if self.states:
            conditions.append(d.state.in_(self.states))
        if self.prediction_id is not None:
            conditions.append(d.prediction_id == self.prediction_id)
        if self.since is not None:
            conditions.append(d.created_at >= self.since)
        if self.until is not None:
            conditions.append(d.created_at < self.until)
        conditions.extend(carrying(d.prediction_id, self.labels))
        if count:
            return select(func.count()).select_from(source).where(*conditions)
        stmt = select(*_DELIVERY_COLUMNS).select_from(source).where(*conditions)
        stmt = stmt.order_by(d.id.desc() if self.newest_first else d.id)
        return stmt if self.limit is None else stmt.limit(self.limit)


_DELIVERY_COLUMNS = (
    deliveries.c.id,
    deliveries.c.callback_id,
    deliveries.c.prediction_id,
    callbacks.c.kind,
    callbacks.c.target,
    deliveries.c.event,
    deliveries.c.state,
    deliveries.c.attempts,
    deliveries.c.next_attempt_at,
    deliveries.c.last_status_code,
    deliveries.c.last_error,
    deliveries.c.created_at,
    deliveries.c.delivered_at,
    deliveries.c.message_id,
)


#: A claim with a per-receiver cap looks at up to this many times ``limit`` due rows,
#: so a backlog for one receiver does not hide the others' deliveries.
_SCAN_FACTOR = 8


class DeliveryOps(StoreBase):
    """Outbox operations (mixed into ``Store``)."""

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
        """Take up to ``limit`` due pending deliveries, oldest due first (SKIP LOCKED on
        PostgreSQL); the lease moves ``next_attempt_at`` so nobody else takes them.

        Only callbacks of ``kinds``; none for ``skip_targets`` (receivers busy with
        as many requests as they may get), and at most ``per_target`` for any one
        receiver, so one receiver's backlog cannot fill a claim.
        """
        due = [
            deliveries.c.state == DeliveryState.PENDING.value,
            deliveries.c.next_attempt_at <= now,
            callbacks.c.kind.in_(kinds),
        ]
        if skip_targets:
            due.append(callbacks.c.target.not_in(skip_targets))
        # Lock a bounded window of due rows (SKIP LOCKED: rows another daemon is
        # claiming are passed over), cap each receiver's share in Python, and lease
        # what is kept; the other locked rows are released at commit. A window function
        # in SQL would have to run before the lock and be re-checked per row after it.
        scan = limit if per_target is None else limit * _SCAN_FACTOR
        locking = (
            select(deliveries.c.id, callbacks.c.target)
            .select_from(deliveries.join(callbacks, callbacks.c.id == deliveries.c.callback_id))
            .where(*due)
            .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
            .limit(scan)
            .with_for_update(skip_locked=True, of=deliveries)
        )
        with self._transaction() as conn:
            ids = _cap_per_target(conn.execute(locking).all(), limit, per_target)
            if not ids:
                return []
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(ids))
                .values(next_attempt_at=lease_until, claimed_by=owner)
            )
            rows = conn.execute(
                select(
                    deliveries.c.id,
                    deliveries.c.message_id,
                    deliveries.c.prediction_id,
                    callbacks.c.kind,
                    callbacks.c.target,
                    deliveries.c.event,
                    deliveries.c.payload,
                    deliveries.c.attempts,
                    deliveries.c.created_at,
                )
                .join(callbacks, callbacks.c.id == deliveries.c.callback_id)
                .where(deliveries.c.id.in_(ids))
                .order_by(deliveries.c.id)
            ).all()
        return [DeliveryJob(*row) for row in rows]

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
        """Write one attempt and the delivery's new state; False if the claim was lost.

        Safe to repeat (the daemon retries writes through a database outage): when
        this very attempt was already written, nothing is written again.
        """
        values: dict[str, Any] = {
            "attempts": deliveries.c.attempts + 1,
            "state": state.value,
            "next_attempt_at": next_attempt_at,
            "last_status_code": result.status_code,
            "last_error": result.error,
            "claimed_by": None,
        }
        if state is DeliveryState.DELIVERED:
            values["delivered_at"] = attempted_at
        with self._transaction() as conn:
            updated = conn.execute(
                update(deliveries)
                .where(deliveries.c.id == job.id, deliveries.c.claimed_by == owner)
                .values(values)
            ).rowcount
            if not updated and _attempt_recorded(conn, job.id, attempted_at):
                return True
            conn.execute(
                insert(delivery_attempts).values(
                    delivery_id=job.id,
                    attempted_at=attempted_at,
                    status_code=result.status_code,
                    error=result.error,
                    duration_ms=result.duration_ms,
                )
            )
        return updated == 1

    def release_deliveries(self, owner: str | None, *, now: datetime) -> int:
        """Make claimed pending deliveries due now (every claim when ``owner`` is None)."""
        claimed = (
            deliveries.c.claimed_by.is_not(None)
            if owner is None
            else deliveries.c.claimed_by == owner
        )
        with self._transaction() as conn:
            return conn.execute(
                update(deliveries)
                .where(claimed, deliveries.c.state == DeliveryState.PENDING.value)
                .values(claimed_by=None, next_attempt_at=now)
            ).rowcount

    def next_delivery_due(self, kinds: Sequence[str] = ("webhook", "email")) -> datetime | None:
        """When the earliest pending delivery of these kinds is due."""
        with self._reading() as conn:
            return conn.execute(
                select(deliveries.c.next_attempt_at)
                .join(callbacks, callbacks.c.id == deliveries.c.callback_id)
                .where(
                    deliveries.c.state == DeliveryState.PENDING.value,
                    callbacks.c.kind.in_(kinds),
                )
                .order_by(deliveries.c.next_attempt_at)
                .limit(1)
            ).scalar()

    def list_deliveries(
        self,
        *,
        states: Sequence[str] = (),
        prediction_id: str | None = None,
        limit: int | None = None,
        with_history: bool = False,
        query: DeliveryQuery | None = None,
    ) -> list[Delivery]:
        """Deliveries, oldest first unless ``query`` (every filter and the order, in
        place of the keyword filters) says otherwise; their attempts only when asked."""
        query = query or DeliveryQuery(states, prediction_id, limit=limit)
        with self._reading() as conn:
            rows = conn.execute(query.select()).mappings().all()
            history = self._history(conn, [r["id"] for r in rows]) if with_history else {}
        return [_delivery(r, history.get(r["id"], [])) for r in rows]

    def iter_deliveries(self, query: DeliveryQuery) -> Iterator[Delivery]:
        """``list_deliveries`` a row at a time, without attempts (as
        ``ListingOps.iter_columns`` streams predictions)."""
        with self._reading() as conn, streaming(conn).execute(query.select()) as result:
            for row in result.mappings():
                yield _delivery(row, [])

    def count_listed_deliveries(self, query: DeliveryQuery) -> int:
        """How many deliveries ``query`` covers, its limit aside."""
        with self._reading() as conn:
            return int(conn.execute(query.select(count=True)).scalar_one())

    @staticmethod
    def _history(conn: Connection, ids: list[int]) -> dict[int, list[DeliveryAttempt]]:
        history: dict[int, list[DeliveryAttempt]] = {}
        if not ids:
            return history
        for row in conn.execute(
            select(delivery_attempts)
            .where(delivery_attempts.c.delivery_id.in_(ids))
            .order_by(delivery_attempts.c.id)
        ):
            history.setdefault(row.delivery_id, []).append(
                DeliveryAttempt(row.attempted_at, row.status_code, row.error, row.duration_ms)
            )
        return history

    def retry_deliveries(
        self,
        *,
        now: datetime,
        ids: Sequence[int] = (),
        prediction_id: str | None = None,
        since: datetime | None = None,
    ) -> int:
        """Re-queue dead deliveries (the ones given, a prediction's, or all since a time).

        The attempt counter starts again, so a re-queued delivery gets the whole
        retry schedule; its earlier attempts stay in ``delivery_attempts``.
        """
        conditions = [deliveries.c.state == DeliveryState.DEAD.value]
        if ids:
            conditions.append(deliveries.c.id.in_(ids))
        if prediction_id is not None:
            conditions.append(deliveries.c.prediction_id == prediction_id)
        if since is not None:
            conditions.append(deliveries.c.created_at >= since)
        with self._transaction() as conn:
            return conn.execute(
                update(deliveries)
                .where(and_(*conditions))
                .values(
                    state=DeliveryState.PENDING.value,
                    attempts=0,
                    next_attempt_at=now,
                    claimed_by=None,
                )
            ).rowcount

    def count_deliveries(self) -> dict[str, int]:
        with self._reading() as conn:
            return {
                state: count
                for state, count in conn.execute(
                    select(deliveries.c.state, func.count()).group_by(deliveries.c.state)
                )
            }


def _cap_per_target(rows: Sequence[Any], limit: int, per_target: int | None) -> list[int]:
    """IDs of ``rows`` (id, target; in due order), at most ``per_target`` per target
    and ``limit`` in all."""
    taken: dict[str, int] = {}
    ids: list[int] = []
    for delivery_id, target in rows:
        if per_target is not None and taken.get(target, 0) >= per_target:
            continue
        taken[target] = taken.get(target, 0) + 1
        ids.append(delivery_id)
        if len(ids) == limit:
            break
    return ids


def _delivery(row: RowMapping, history: list[DeliveryAttempt]) -> Delivery:
    return Delivery(**{k: row[k] for k in row.keys()}, history=history)  # noqa: SIM118


def _attempt_recorded(conn: Connection, delivery_id: int, attempted_at: datetime) -> bool:
    """Whether this attempt is already written (a retried write that had committed)."""
    return (
        conn.execute(
            select(delivery_attempts.c.id).where(
                delivery_attempts.c.delivery_id == delivery_id,
                delivery_attempts.c.attempted_at == attempted_at,
            )
        ).first()
        is not None
    )
