"""Queueing deliveries in the transaction of the observation that causes them.

``enqueue_deliveries`` turns the events of a batch of observations into pending
deliveries (one per callback that wants the event), each holding the exact
payload every attempt will send; ``Handoff`` lets a running daemon claim the new
ones at once instead of waiting for its next claim.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, insert, select

from tracker.domain import (
    TERMINAL_STATUSES,
    CallbackSpec,
    DeliveryJob,
    DeliveryState,
)
from tracker.events import Event
from tracker.store.answers import restored_answer
from tracker.store.base import insert_ignore
from tracker.store.tables import callbacks, deliveries, predictions
from tracker.timeparse import utcnow


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
            *_ANSWER_COLUMNS,
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
            payload_text(_answer(row)),
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


def prediction_object(conn: Connection, prediction_id: str) -> dict[str, Any] | None:
    """The prediction object as stored: the upstream's last answer, or one rebuilt
    from the columns when that was pruned (None: no such prediction)."""
    row = (
        conn.execute(select(*_ANSWER_COLUMNS).where(predictions.c.id == prediction_id))
        .mappings()
        .first()
    )
    if row is None:
        return None
    answer = _answer(row)
    return dict(answer) if isinstance(answer, dict) else _prediction_object(row)


#: what the prediction object is made from: the last answer, else the columns
_ANSWER_COLUMNS = (
    predictions.c.raw,
    predictions.c.raw_logs_moved,
    *(predictions.c[name] for name in _OBJECT_FIELDS),
)


def _answer(row: Any) -> Any:
    """The last answer as received, or the object rebuilt from the columns when it
    was pruned."""
    if row["raw"] is None:
        return _prediction_object(row)
    return restored_answer(row["raw"], row["raw_logs_moved"], row["logs"])


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
