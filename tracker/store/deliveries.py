"""The delivery outbox: queueing callbacks with the observation that causes them,
claiming due deliveries, recording every attempt."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, RowMapping, and_, func, insert, select, update

from tracker.domain import (
    TERMINAL_STATUSES,
    CallbackSpec,
    Delivery,
    DeliveryAttempt,
    DeliveryJob,
    DeliveryState,
    SendResult,
)
from tracker.events import Event
from tracker.store.base import StoreBase, insert_ignore
from tracker.store.tables import callbacks, deliveries, delivery_attempts, predictions
from tracker.timeparse import utcnow

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


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def payload_text(body: Any) -> str:
    """The prediction object as the bytes every attempt of a delivery sends."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


class EventBatch(NamedTuple):
    """Callback events one observation causes, and the prediction object they carry."""

    prediction_id: str
    events: Sequence[str]
    body: Any
    now: datetime


@dataclass(frozen=True, slots=True)
class Handoff:
    """Deliveries the writing daemon will send itself, claimed as they are queued,
    so no claim query stands between an observation's commit and its callback.

    The limits are the outbox's free room when the write started: per receiver
    (``room``, else ``default_room``) and in all (``total``); the rest stay pending
    for the usual claim.
    """

    owner: str
    lease: timedelta  #: from the moment the deliveries are written
    kinds: frozenset[str]
    total: int
    default_room: int
    room: Mapping[str, int] = field(default_factory=dict)

    def chooser(self) -> Chooser:
        """Called when the deliveries are written (the lease starts then): a function
        giving, row by row, the claim for a delivery (kind, target) it takes."""
        claim = {"claimed_by": self.owner, "next_attempt_at": utcnow() + self.lease}
        taken: Counter[str] = Counter()

        def take(kind: str, target: str) -> dict[str, Any] | None:
            if kind not in self.kinds or taken.total() >= self.total:
                return None
            if taken[target] >= self.room.get(target, self.default_room):
                return None
            taken[target] += 1
            return claim

        return take


#: gives the claim values for a delivery (kind, target) handed off, or None
Chooser = Callable[[str, str], "dict[str, Any] | None"]


def _keep_pending(_kind: str, _target: str) -> dict[str, Any] | None:
    return None


@dataclass
class Queued:
    """What ``enqueue_deliveries`` did: deliveries left pending per prediction (the
    outbox claims them), and the ones handed to the writing daemon."""

    pending: Counter[str] = field(default_factory=Counter)
    handed_off: list[DeliveryJob] = field(default_factory=list)


def enqueue_deliveries(
    conn: Connection,
    batch: Sequence[EventBatch],
    default_callbacks: Sequence[CallbackSpec] = (),
    handoff: Handoff | None = None,
) -> Queued:
    """Queue one delivery per (callback, event) that wants it, in the caller's
    transaction, with one query for the callbacks of the whole batch."""
    wanted = [item for item in batch if item.events]
    queued = Queued()
    if not wanted:
        return queued
    if default_callbacks:
        ensure_callbacks(
            conn, [(item.prediction_id, item.now) for item in wanted], default_callbacks
        )
    hooks = _hooks(conn, sorted({item.prediction_id for item in wanted}))
    take = handoff.chooser() if handoff is not None else _keep_pending
    rows: list[dict[str, Any]] = []
    jobs: dict[str, DeliveryJob] = {}  # by message_id, for rows handed off
    for item in wanted:
        payload = payload_text(item.body)
        for event in item.events:
            for callback_id, events, kind, target in hooks.get(item.prediction_id, ()):
                if event not in events:
                    continue
                row = _delivery_row(callback_id, item.prediction_id, event, payload, item.now)
                rows.append(row)
                claim = take(kind, target)
                if claim is not None:
                    row.update(claim)
                    jobs[row["message_id"]] = _job(row, kind, target)
                else:
                    queued.pending[item.prediction_id] += 1
    if not rows:
        return queued
    if not jobs:
        conn.execute(insert(deliveries), rows)
        return queued
    stmt = insert(deliveries).returning(deliveries.c.id, deliveries.c.message_id)
    for delivery_id, message_id in conn.execute(stmt, rows):
        if message_id in jobs:
            queued.handed_off.append(replace(jobs[message_id], id=delivery_id))
    return queued


def _job(row: dict[str, Any], kind: str, target: str) -> DeliveryJob:
    """A delivery about to be inserted, as its sender will get it (id filled in later)."""
    return DeliveryJob(
        id=0,
        message_id=row["message_id"],
        prediction_id=row["prediction_id"],
        kind=kind,
        target=target,
        event=row["event"],
        payload=row["payload"],
        attempts=0,
        created_at=row["created_at"],
    )


def _hooks(
    conn: Connection, prediction_ids: list[str]
) -> dict[str, list[tuple[int, list[str], str, str]]]:
    """(callback id, events, kind, target) of each prediction's callbacks."""
    hooks: dict[str, list[tuple[int, list[str], str, str]]] = {}
    c = callbacks.c
    query = select(c.id, c.prediction_id, c.events, c.kind, c.target).where(
        c.prediction_id.in_(prediction_ids)
    )
    for callback_id, prediction_id, events, kind, target in conn.execute(query):
        hooks.setdefault(prediction_id, []).append((callback_id, events.split(","), kind, target))
    return hooks


def ensure_callbacks(
    conn: Connection,
    predictions_at: Sequence[tuple[str, datetime]],
    specs: Sequence[CallbackSpec],
) -> None:
    """Attach the global default callbacks to predictions the first time they need them."""
    conn.execute(
        insert_ignore(conn.dialect.name, callbacks),
        [
            {
                "prediction_id": prediction_id,
                "kind": spec.kind,
                "target": spec.target,
                "events": ",".join(spec.events),
                "created_at": now,
            }
            for prediction_id, now in predictions_at
            for spec in specs
        ],
    )


def queue_completed_for_finished(
    conn: Connection, callback_ids: Sequence[int], now: datetime
) -> int:
    """A callback added to a prediction that already ended fires `completed` once."""
    if not callback_ids:
        return 0
    already = select(deliveries.c.id).where(
        deliveries.c.callback_id == callbacks.c.id,
        deliveries.c.event == Event.COMPLETED.value,
    )
    rows = conn.execute(
        select(
            callbacks.c.id.label("callback_id"),
            callbacks.c.events,
            predictions.c.raw,
            *(predictions.c[name] for name in _OBJECT_FIELDS),
        )
        .join(predictions, predictions.c.id == callbacks.c.prediction_id)
        .where(
            callbacks.c.id.in_(callback_ids),
            predictions.c.status.in_([s.value for s in TERMINAL_STATUSES]),
            ~already.exists(),
        )
    ).mappings()
    queued = [
        _delivery_row(
            row["callback_id"],
            row["id"],
            Event.COMPLETED.value,
            payload_text(row["raw"] if row["raw"] is not None else _prediction_object(row)),
            now,
        )
        for row in rows
        if Event.COMPLETED.value in row["events"].split(",")
    ]
    if queued:
        conn.execute(insert(deliveries), queued)
    return len(queued)


#: the prediction object rebuilt from its columns when `raw` was pruned
_OBJECT_FIELDS = (
    "id",
    "status",
    "model",
    "version",
    "input",
    "output",
    "error",
    "logs",
    "metrics",
    "urls",
    "created_at",
    "started_at",
    "completed_at",
    "data_removed",
)


def _prediction_object(row: Any) -> dict[str, Any]:
    obj = {name: row[name] for name in _OBJECT_FIELDS}
    for name in ("created_at", "started_at", "completed_at"):
        if obj[name] is not None:
            obj[name] = obj[name].isoformat().replace("+00:00", "Z")
    return obj


def _delivery_row(
    callback_id: int, prediction_id: str, event: str, payload: str, now: datetime
) -> dict[str, Any]:
    return {
        "callback_id": callback_id,
        "prediction_id": prediction_id,
        "event": event,
        "state": DeliveryState.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "payload": payload,
        "message_id": new_message_id(),
        "claimed_by": None,  # every row of one INSERT needs the same keys
    }


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
    ) -> list[Delivery]:
        stmt = (
            select(*_DELIVERY_COLUMNS)
            .join(callbacks, callbacks.c.id == deliveries.c.callback_id)
            .order_by(deliveries.c.id)
        )
        if states:
            stmt = stmt.where(deliveries.c.state.in_(states))
        if prediction_id is not None:
            stmt = stmt.where(deliveries.c.prediction_id == prediction_id)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._reading() as conn:
            rows = conn.execute(stmt).mappings().all()
            history = self._history(conn, [r["id"] for r in rows]) if with_history else {}
        return [_delivery(r, history.get(r["id"], [])) for r in rows]

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
