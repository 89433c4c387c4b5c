"""The store: the only code that talks SQL. One transaction per named operation."""

from __future__ import annotations

import logging
import os

from sqlalchemy import (
    func,
    inspect,
    select,
)

from tracker.domain import (
    Callback,
    CallbackSpec,
    LogChunk,
    PredictionDetail,
    Tracking,
    Transition,
)
from tracker.exceptions import (
    DatabaseMissing,
    SchemaMissing,
    SchemaTooNew,
)
from tracker.store import revisions
from tracker.store.adding import INSERT_BATCH, AddOps, AddResult, merge_events
from tracker.store.archive_reports import ArchiveReportOps
from tracker.store.artifacts import ArtifactOps, artifacts_of
from tracker.store.base import SCHEMA_HINT
from tracker.store.cancel_reports import CancelReportOps
from tracker.store.cancels import CancelOps
from tracker.store.daemons import DaemonOps
from tracker.store.deliveries import DeliveryOps
from tracker.store.delivery_reports import DeliveryReportOps
from tracker.store.engine import sqlite_file
from tracker.store.listing import PREDICTION_COLUMNS, ListingOps, prediction_record
from tracker.store.polling import PollOps
from tracker.store.pushes import PushOps
from tracker.store.retention import RetentionOps
from tracker.store.tables import callbacks, prediction_logs, predictions, status_transitions

log = logging.getLogger(__name__)

#: alembic revision this code expects; tests check it is the migrations' head
SCHEMA_HEAD = "0015"

# named here as before the registering moved to tracker.store.adding (CallbackSpec is
# tracker.domain's, what add_predictions takes)
__all__ = ["INSERT_BATCH", "SCHEMA_HEAD", "AddResult", "CallbackSpec", "Store", "merge_events"]


class Store(
    AddOps,
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
