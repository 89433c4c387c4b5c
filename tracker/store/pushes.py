"""The upstream's own webhooks (pushes): who they are for, and which were received.

A push is applied as a poll's answer is (``PollOps.apply_observations``); what is
particular to pushes lives here: reading the prediction a push is for together
with whether its ``webhook-id`` was received already, registering a prediction
first heard of by a push, and keeping each ``webhook-id`` received in
``upstream_pushes``, so that a push delivered again is applied once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, delete, select

from tracker.domain import CallbackSpec, PredictionState, Tracking
from tracker.store.base import StoreBase
from tracker.store.cancels import deadline_from
from tracker.store.enqueue import ensure_callbacks
from tracker.store.polling import STATE_COLUMNS, state_of
from tracker.store.tables import predictions, upstream_pushes

#: a push's signature is accepted this long after its timestamp (Standard Webhooks'
#: tolerance is 5 minutes); its webhook-id is kept at least this long to catch replays
REPLAY_WINDOW = timedelta(minutes=10)


class PushOutcome:
    """What became of a push (``upstream_pushes.outcome``)."""

    APPLIED = "applied"  #: it changed what the tracker knows
    UNCHANGED = "unchanged"  #: accepted, with nothing new in it
    STALE = "stale"  #: older than what is stored: not applied (``detail`` says why)
    IGNORED = "ignored"  #: for a forgotten prediction: not applied


@dataclass(frozen=True, slots=True)
class PushLookup:
    """The prediction a push is for, and whether its ``webhook-id`` came before."""

    state: PredictionState | None  #: None: not registered
    seen: str | None  #: the outcome of the earlier delivery of this webhook-id, if any


@dataclass(frozen=True, slots=True)
class PushReceipt:
    """One ``upstream_pushes`` row."""

    webhook_id: str
    prediction_id: str
    received_at: datetime
    status: str  #: the status the push said
    outcome: str  #: see PushOutcome
    detail: str | None = None


class PushOps(StoreBase):
    """Reading and writing for pushes (mixed into ``Store``)."""

    def push_lookup(self, prediction_id: str, webhook_id: str) -> PushLookup:
        """One statement for a known prediction (the hot path), two for a new one."""
        params = {"pid": prediction_id, "wid": webhook_id}
        with self._reading() as conn:
            row = conn.execute(_LOOKUP, params).mappings().first()
            if row is not None:
                return PushLookup(state_of(row), row["seen"])
            return PushLookup(None, conn.execute(_SEEN, params).scalar())

    def register_pushed(
        self,
        prediction_id: str,
        *,
        now: datetime,
        first_poll_at: datetime,
        callbacks_to_add: Sequence[CallbackSpec] = (),
        deadline: float | None = None,
    ) -> PredictionState:
        """Register a prediction first heard of by a push, with ``callbacks_to_add``
        (the default callbacks) and ``deadline`` (TRACKER_DEFAULT_DEADLINE, seconds),
        as ``tracker add`` would; a known one is left as it is. Returns its state."""
        with self._transaction() as conn:
            conn.execute(
                self._insert_ignore(predictions),
                {
                    "id": prediction_id,
                    "tracking": Tracking.ACTIVE.value,
                    "labels": {},
                    "registered_at": now,
                    "next_poll_at": first_poll_at,
                    "deadline_seconds": deadline,
                    "deadline_at": None if deadline is None else deadline_from(now, deadline),
                },
            )
            if callbacks_to_add:
                ensure_callbacks(conn, [(prediction_id, now)], callbacks_to_add)
            state = _read_state(conn, prediction_id)
        assert state is not None  # inserted, or there already
        return state

    def record_push(self, receipt: PushReceipt) -> bool:
        """Keep a received ``webhook-id``; False when it was kept already."""
        with self._transaction() as conn:
            inserted = conn.execute(
                self._insert_ignore(upstream_pushes).returning(upstream_pushes.c.webhook_id),
                {
                    "webhook_id": receipt.webhook_id,
                    "prediction_id": receipt.prediction_id,
                    "received_at": receipt.received_at,
                    "status": receipt.status,
                    "outcome": receipt.outcome,
                    "detail": receipt.detail,
                },
            ).scalar()
            return inserted is not None

    def push_receipts(self, prediction_id: str | None = None) -> list[PushReceipt]:
        """The pushes received (of one prediction), in the order they came."""
        p = upstream_pushes.c
        stmt = select(
            p.webhook_id, p.prediction_id, p.received_at, p.status, p.outcome, p.detail
        ).order_by(p.received_at, p.webhook_id)
        if prediction_id is not None:
            stmt = stmt.where(p.prediction_id == prediction_id)
        with self._reading() as conn:
            return [PushReceipt(*row) for row in conn.execute(stmt)]


#: whether a webhook-id was received, and what became of it
_SEEN = select(upstream_pushes.c.outcome).where(upstream_pushes.c.webhook_id == bindparam("wid"))
#: a prediction's state with the outcome of a webhook-id (built once: a push is hot)
_LOOKUP = select(*STATE_COLUMNS, _SEEN.scalar_subquery().label("seen")).where(
    predictions.c.id == bindparam("pid")
)


def _read_state(conn: Connection, prediction_id: str) -> PredictionState | None:
    row = (
        conn.execute(select(*STATE_COLUMNS).where(predictions.c.id == prediction_id))
        .mappings()
        .first()
    )
    return None if row is None else state_of(row)


def delete_old_receipts(conn: Connection, prediction_ids: Sequence[str], before: datetime) -> int:
    """Delete the receipts of these predictions received before ``before`` (pruning)."""
    if not prediction_ids:
        return 0
    result = conn.execute(
        delete(upstream_pushes).where(
            upstream_pushes.c.prediction_id.in_(prediction_ids),
            upstream_pushes.c.received_at < before,
        )
    )
    return result.rowcount
