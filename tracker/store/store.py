"""The store: the only code that talks SQL. One transaction per named operation."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    Select,
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
    Prediction,
    PredictionDetail,
    Tracking,
    Transition,
)
from tracker.events import canonical_events
from tracker.exceptions import (
    SchemaMissing,
    SchemaTooNew,
)
from tracker.store import revisions
from tracker.store.base import SCHEMA_HINT, batches
from tracker.store.daemons import DaemonOps
from tracker.store.deliveries import DeliveryOps
from tracker.store.enqueue import queue_completed_for_finished
from tracker.store.polling import PollOps
from tracker.store.reports import ReportOps
from tracker.store.retention import RetentionOps
from tracker.store.tables import callbacks, prediction_logs, predictions, status_transitions

log = logging.getLogger(__name__)

#: alembic revision this code expects; tests check it is the migrations' head
SCHEMA_HEAD = "0006"

#: rows per INSERT statement when registering many IDs at once
INSERT_BATCH = 5_000


@dataclass(frozen=True, slots=True)
class AddResult:
    added: int
    already_known: int
    callbacks_added: int


class Store(PollOps, DeliveryOps, DaemonOps, ReportOps, RetentionOps):
    """Named operations on the tracker's tables, each one transaction."""

    def schema_revision(self) -> str | None:
        """The alembic revision of the database, or None when it was never migrated."""
        with self._reading() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()

    @classmethod
    def open_checked(cls, url: str) -> Store:
        """A store on ``url`` whose schema is this tracker's (closed again if not)."""
        store = cls.from_url(url)
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
    ) -> AddResult:
        """Register IDs; known IDs keep their row and gain the new labels and callbacks."""
        unique_ids = list(dict.fromkeys(ids))
        labels = labels or {}
        with self._transaction() as conn:
            before = self._count(conn)
            new = {
                "tracking": Tracking.ACTIVE.value,
                "labels": labels,
                "registered_at": now,
                "next_poll_at": first_poll_at,
            }
            for batch in batches(unique_ids, INSERT_BATCH):  # rows built per batch
                conn.execute(self._insert_ignore(predictions), [{"id": i, **new} for i in batch])
            added = self._count(conn) - before
            if added < len(unique_ids):
                self._resume_forgotten(conn, unique_ids, first_poll_at)
                if labels:
                    self._merge_labels(conn, unique_ids, labels)
            callbacks_added = self._add_callbacks(conn, unique_ids, callbacks_to_add, now)
        return AddResult(
            added=added, already_known=len(unique_ids) - added, callbacks_added=callbacks_added
        )

    @staticmethod
    def _count(conn: Connection) -> int:
        return conn.execute(select(func.count()).select_from(predictions)).scalar_one()

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

    def list_predictions(
        self,
        *,
        statuses: Sequence[str] = (),
        active_only: bool = False,
        model: str | None = None,
        limit: int | None = None,
    ) -> list[Prediction]:
        """Whole predictions, logs included: for a few rows; listings use ``list_columns``."""
        stmt = _listing(select(*_PREDICTION_COLUMNS), statuses, active_only, model, limit)
        with self._reading() as conn:
            return [_prediction(row) for row in conn.execute(stmt).mappings()]

    def list_columns(
        self,
        columns: Sequence[str],
        *,
        statuses: Sequence[str] = (),
        active_only: bool = False,
        model: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """These columns of the predictions, oldest registration first: a listing
        reads only what it prints, never the logs or raw bodies (they can be huge)."""
        selected = select(*(predictions.c[name] for name in columns))
        stmt = _listing(selected, statuses, active_only, model, limit)
        with self._reading() as conn:
            return [dict(row) for row in conn.execute(stmt).mappings()]

    def get_detail(self, prediction_id: str) -> PredictionDetail | None:
        with self._reading() as conn:
            row = (
                conn.execute(select(*_PREDICTION_COLUMNS).where(predictions.c.id == prediction_id))
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
        sent = self.list_deliveries(prediction_id=prediction_id, with_history=True)
        return PredictionDetail(_prediction(row), transitions, logs, cbs, sent)

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


def _listing(
    stmt: Select[Any],
    statuses: Sequence[str],
    active_only: bool,
    model: str | None,
    limit: int | None,
) -> Select[Any]:
    """``stmt`` with a listing's filters and order."""
    stmt = stmt.order_by(predictions.c.registered_at, predictions.c.id)
    if statuses:
        stmt = stmt.where(predictions.c.status.in_(statuses))
    if active_only:
        stmt = stmt.where(predictions.c.tracking == Tracking.ACTIVE.value)
    if model:
        stmt = stmt.where(predictions.c.model == model)
    if limit is not None:
        stmt = stmt.limit(limit)
    return stmt


#: the columns a ``Prediction`` is made of (not ``raw``, the last body as received)
_PREDICTION_COLUMNS = tuple(predictions.c[f.name] for f in fields(Prediction))


def _prediction(row: RowMapping) -> Prediction:
    return Prediction(
        id=row["id"],
        status=row["status"],
        tracking=row["tracking"],
        model=row["model"],
        version=row["version"],
        input=row["input"],
        output=row["output"],
        error=row["error"],
        logs=row["logs"] or "",
        metrics=row["metrics"],
        predict_time=row["predict_time"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        data_removed=row["data_removed"],
        urls=row["urls"],
        labels=row["labels"] or {},
        registered_at=row["registered_at"],
        last_polled_at=row["last_polled_at"],
        next_poll_at=row["next_poll_at"],
        poll_count=row["poll_count"],
        error_count=row["error_count"],
        last_error=row["last_error"],
    )
