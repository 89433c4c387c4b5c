"""Registering predictions (``tracker add``, the Python API's ``add``, `tracker serve`'s
POST): new IDs inserted in batches, known ones resumed and given the new labels,
callbacks and deadline; and forgetting them (mixed into ``Store``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, insert, select, update

from tracker.domain import CallbackSpec, Tracking
from tracker.events import canonical_events
from tracker.store.base import StoreBase, batches
from tracker.store.cancels import deadline_from, set_deadlines
from tracker.store.enqueue import queue_completed_for_finished
from tracker.store.tables import callbacks, predictions

#: rows per INSERT statement when registering many IDs at once
INSERT_BATCH = 5_000


@dataclass(frozen=True, slots=True)
class AddResult:
    added: int
    already_known: int
    callbacks_added: int


class AddOps(StoreBase):
    """Registering and forgetting predictions (mixed into ``Store``)."""

    def add_predictions(
        self,
        ids: Sequence[str],
        *,
        now: datetime,
        first_poll_at: datetime,
        labels: dict[str, str] | None = None,
        callbacks_to_add: Sequence[CallbackSpec] = (),
        deadline: float | None = None,
        deadline_for_known: bool = False,
    ) -> AddResult:
        """Register IDs; known IDs keep their row and gain the new labels and callbacks.
        New IDs get ``deadline`` (seconds from now: created_at is not known yet); known
        ones get it too (None: no deadline) with ``deadline_for_known``."""
        unique_ids = list(dict.fromkeys(ids))
        labels = labels or {}
        with self._transaction() as conn:
            known = _count_known(conn, unique_ids)
            new = {
                "tracking": Tracking.ACTIVE.value,
                "labels": labels,
                "registered_at": now,
                "next_poll_at": first_poll_at,
                "deadline_seconds": deadline,
                "deadline_at": None if deadline is None else deadline_from(now, deadline),
            }
            for batch in batches(unique_ids, INSERT_BATCH):  # rows built per batch
                conn.execute(self._insert_ignore(predictions), [{"id": i, **new} for i in batch])
            added = len(unique_ids) - known
            if known:
                _resume_forgotten(conn, unique_ids, first_poll_at)
                if labels:
                    _merge_labels(conn, unique_ids, labels)
                if deadline_for_known:
                    set_deadlines(conn, unique_ids, deadline)
            callbacks_added = self._add_callbacks(conn, unique_ids, callbacks_to_add, now)
        return AddResult(
            added=added, already_known=len(unique_ids) - added, callbacks_added=callbacks_added
        )

    def _add_callbacks(
        self, conn: Connection, ids: list[str], specs: Sequence[CallbackSpec], now: datetime
    ) -> int:
        """Insert callbacks; an existing (kind, target) gains the new events. Callbacks
        that now want `completed` on a prediction that already ended get it queued."""
        added = 0
        touched: list[int] = []
        for spec in specs:
            for batch in batches(ids, INSERT_BATCH):
                existing = {
                    row.prediction_id: row
                    for row in conn.execute(
                        select(callbacks.c.id, callbacks.c.prediction_id, callbacks.c.events).where(
                            callbacks.c.prediction_id.in_(batch),
                            callbacks.c.kind == spec.kind,
                            callbacks.c.target == spec.target,
                        )
                    )
                }
                new_rows = [
                    {
                        "prediction_id": pid,
                        "kind": spec.kind,
                        "target": spec.target,
                        "events": ",".join(spec.events),
                        "created_at": now,
                    }
                    for pid in batch
                    if pid not in existing
                ]
                if new_rows:
                    touched += conn.execute(
                        insert(callbacks).returning(callbacks.c.id), new_rows
                    ).scalars()
                    added += len(new_rows)
                for row in existing.values():
                    merged = merge_events(row.events, spec.events)
                    if merged != row.events:
                        conn.execute(
                            update(callbacks).where(callbacks.c.id == row.id).values(events=merged)
                        )
                        touched.append(row.id)
        for chunk in batches(touched, INSERT_BATCH):
            queue_completed_for_finished(conn, chunk, now)
        return added

    def forget(self, ids: Sequence[str]) -> list[str]:
        """Stop tracking; returns the IDs that were known. History stays."""
        with self._transaction() as conn:
            known = list(
                conn.execute(select(predictions.c.id).where(predictions.c.id.in_(ids))).scalars()
            )
            conn.execute(
                update(predictions)
                .where(predictions.c.id.in_(ids), predictions.c.tracking == Tracking.ACTIVE.value)
                .values(tracking=Tracking.FORGOTTEN.value, next_poll_at=None, claimed_by=None)
            )
        return known


def _count_known(conn: Connection, ids: list[str]) -> int:
    """How many of ``ids`` are registered: by primary key, whatever the table's size."""
    return sum(
        conn.execute(
            select(func.count()).select_from(predictions).where(predictions.c.id.in_(batch))
        ).scalar_one()
        for batch in batches(ids, INSERT_BATCH)
    )


def _resume_forgotten(conn: Connection, ids: list[str], first_poll_at: datetime) -> None:
    """Adding a forgotten ID again tracks it again."""
    for batch in batches(ids, INSERT_BATCH):
        conn.execute(
            update(predictions)
            .where(
                predictions.c.id.in_(batch),
                predictions.c.tracking == Tracking.FORGOTTEN.value,
            )
            .values(tracking=Tracking.ACTIVE.value, next_poll_at=first_poll_at)
        )


def _merge_labels(conn: Connection, ids: list[str], labels: dict[str, str]) -> None:
    for batch in batches(ids, INSERT_BATCH):
        stmt = select(predictions.c.id, predictions.c.labels).where(predictions.c.id.in_(batch))
        for pid, current in conn.execute(stmt):
            merged = {**(current or {}), **labels}
            if merged != current:
                conn.execute(
                    update(predictions).where(predictions.c.id == pid).values(labels=merged)
                )


def merge_events(current: str, new: Iterable[str]) -> str:
    """The union of two event lists, in canonical order."""
    return ",".join(canonical_events([*current.split(","), *new]))
