"""The store: the only code that talks SQL. One transaction per named operation."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Connection,
    func,
    insert,
    inspect,
    select,
    update,
)

from tracker.domain import (
    Callback,
    CallbackSpec,
    LogChunk,
    PredictionDetail,
    Tracking,
    Transition,
)
from tracker.events import canonical_events
from tracker.exceptions import (
    DatabaseMissing,
    SchemaMissing,
    SchemaTooNew,
)
from tracker.store import revisions
from tracker.store.archive_reports import ArchiveReportOps
from tracker.store.artifacts import ArtifactOps, artifacts_of
from tracker.store.base import SCHEMA_HINT, batches
from tracker.store.cancel_reports import CancelReportOps
from tracker.store.cancels import CancelOps, deadline_from, set_deadlines
from tracker.store.daemons import DaemonOps
from tracker.store.deliveries import DeliveryOps
from tracker.store.delivery_reports import DeliveryReportOps
from tracker.store.engine import sqlite_file
from tracker.store.enqueue import queue_completed_for_finished
from tracker.store.listing import PREDICTION_COLUMNS, ListingOps, prediction_record
from tracker.store.polling import PollOps
from tracker.store.pushes import PushOps
from tracker.store.retention import RetentionOps
from tracker.store.tables import callbacks, prediction_logs, predictions, status_transitions

log = logging.getLogger(__name__)

#: alembic revision this code expects; tests check it is the migrations' head
SCHEMA_HEAD = "0012"

#: rows per INSERT statement when registering many IDs at once
INSERT_BATCH = 5_000


@dataclass(frozen=True, slots=True)
class AddResult:
    added: int
    already_known: int
    callbacks_added: int


class Store(
    PollOps,
    PushOps,
    DeliveryOps,
    ArtifactOps,
    DaemonOps,
    ListingOps,
    CancelReportOps,
    DeliveryReportOps,
    ArchiveReportOps,
    RetentionOps,
    CancelOps,
):
    """Named operations on the tracker's tables, each one transaction."""

    def schema_revision(self) -> str | None:
        """The alembic revision of the database, or None when it was never migrated."""
        with self._reading() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()

    @classmethod
    def open_existing(cls, url: str) -> Store:
        """A store on a database that exists: a SQLite file that is not there is
        DatabaseMissing, and is not created (SQLite would create it empty). Only
        ``tracker db upgrade`` (``from_url`` and a migration) creates one."""
        path = sqlite_file(url)
        if path is not None and not os.path.exists(path):
            raise DatabaseMissing(f"no database at {path} (run tracker db upgrade to create it)")
        return cls.from_url(url)

    @classmethod
    def open_checked(cls, url: str) -> Store:
        """A store on ``url`` whose schema is this tracker's (closed again if not);
        a SQLite file that does not exist is DatabaseMissing (``open_existing``)."""
        store = cls.open_existing(url)
        try:
            store.check_schema()
        except BaseException:
            store.close()
            raise
        return store

    def check_schema(self) -> None:
        revision = self.schema_revision()
        if revision is None:
            raise SchemaMissing(SCHEMA_HINT)
        if revision != SCHEMA_HEAD and not revisions.is_known(revision):
            raise SchemaTooNew(revisions.too_new_message(revision, SCHEMA_HEAD))
        if revision != SCHEMA_HEAD:
            raise SchemaMissing(
                f"the database schema is at revision {revision}, this tracker needs"
                f" {SCHEMA_HEAD}: run `tracker db upgrade`"
            )

    # -- registering -------------------------------------------------------

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
            known = self._count_known(conn, unique_ids)
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
                self._resume_forgotten(conn, unique_ids, first_poll_at)
                if labels:
                    self._merge_labels(conn, unique_ids, labels)
                if deadline_for_known:
                    set_deadlines(conn, unique_ids, deadline)
            callbacks_added = self._add_callbacks(conn, unique_ids, callbacks_to_add, now)
        return AddResult(
            added=added, already_known=len(unique_ids) - added, callbacks_added=callbacks_added
        )

    @staticmethod
    def _count_known(conn: Connection, ids: list[str]) -> int:
        """How many of ``ids`` are registered: by primary key, whatever the table's size."""
        return sum(
            conn.execute(
                select(func.count()).select_from(predictions).where(predictions.c.id.in_(batch))
            ).scalar_one()
            for batch in batches(ids, INSERT_BATCH)
        )

    @staticmethod
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

    @staticmethod
    def _merge_labels(conn: Connection, ids: list[str], labels: dict[str, str]) -> None:
        for batch in batches(ids, INSERT_BATCH):
            stmt = select(predictions.c.id, predictions.c.labels).where(predictions.c.id.in_(batch))
            for pid, current in conn.execute(stmt):
                merged = {**(current or {}), **labels}
                if merged != current:
                    conn.execute(
                        update(predictions).where(predictions.c.id == pid).values(labels=merged)
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

    # -- reading -----------------------------------------------------------

    def get_detail(self, prediction_id: str) -> PredictionDetail | None:
        with self._reading() as conn:
            row = (
                conn.execute(select(*PREDICTION_COLUMNS).where(predictions.c.id == prediction_id))
                .mappings()
                .first()
            )
            if row is None:
                return None
            transitions = [
                Transition(r.from_status, r.to_status, r.observed_at, r.upstream_at)
                for r in conn.execute(
                    select(status_transitions)
                    .where(status_transitions.c.prediction_id == prediction_id)
                    .order_by(status_transitions.c.id)
                )
            ]
            logs = [
                LogChunk(r.seq, r.observed_at, r.text, r.restarted)
                for r in conn.execute(
                    select(prediction_logs)
                    .where(prediction_logs.c.prediction_id == prediction_id)
                    .order_by(prediction_logs.c.seq)
                )
            ]
            cbs = [
                Callback(r.id, r.kind, r.target, r.events)
                for r in conn.execute(
                    select(callbacks)
                    .where(callbacks.c.prediction_id == prediction_id)
                    .order_by(callbacks.c.id)
                )
            ]
            files = artifacts_of(conn, [prediction_id])
        sent = self.list_deliveries(prediction_id=prediction_id, with_history=True)
        return PredictionDetail(prediction_record(row), transitions, logs, cbs, sent, files)

    def count_active(self) -> int:
        with self._reading() as conn:
            return conn.execute(
                select(func.count())
                .select_from(predictions)
                .where(predictions.c.tracking == Tracking.ACTIVE.value)
            ).scalar_one()

    def recent_run_times(self, *, limit: int = 20_000) -> dict[str, list[float]]:
        """Seconds from creation to completion of the latest finished predictions,
        per model, oldest first (so a bounded window fed in order keeps the newest);
        succeeded and failed ones only: cancellations say nothing of the model."""
        c = predictions.c
        stmt = (
            select(c.model, c.created_at, c.completed_at)
            .where(
                c.status.in_(["succeeded", "failed"]),
                c.model.is_not(None),
                c.created_at.is_not(None),
                c.completed_at.is_not(None),
            )
            .order_by(c.completed_at.desc())
            .limit(limit)
        )
        samples: dict[str, list[float]] = {}
        with self._reading() as conn:
            for model, created, completed in conn.execute(stmt):
                samples.setdefault(model, []).append((completed - created).total_seconds())
        for values in samples.values():
            values.reverse()
        return samples


def merge_events(current: str, new: Iterable[str]) -> str:
    """The union of two event lists, in canonical order."""
    return ",".join(canonical_events([*current.split(","), *new]))
