"""Retention: removing the bulky history of predictions that finished long ago.

A prediction is *finished* when it is no longer polled (``tracking`` is
``done``, ``lost`` or ``forgotten``); it finished at its upstream
``completed_at``, or at ``last_polled_at`` when upstream never reported one.
Active predictions are never touched. Deleting predictions (``delete_predictions``)
deletes their ``artifacts`` rows too (the foreign key cascades); the archived
files themselves are the caller's to delete, from the stored URLs it is handed
(``tracker.archive.pruning``), and only when asked for.

The work goes in batches: each transaction takes up to ``batch_size`` finished
predictions older than the cutoff (in the order they finished, walking the
partial indexes ``ix_predictions_finished_*`` from where the previous batch
stopped), prunes them and commits, so no lock is held for long and a daemon
polling at the same time only ever waits for one short batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import astuple, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Select,
    delete,
    exists,
    func,
    literal_column,
    select,
    tuple_,
    update,
)

from tracker.domain import ArtifactState, DeliveryState, Tracking
from tracker.exceptions import InvalidInput
from tracker.store.base import StoreBase
from tracker.store.pushes import REPLAY_WINDOW, delete_old_receipts
from tracker.store.tables import (
    artifacts,
    callbacks,
    deliveries,
    delivery_attempts,
    prediction_logs,
    predictions,
    status_transitions,
)
from tracker.timeparse import utcnow

#: predictions per transaction unless the caller says otherwise
DEFAULT_BATCH_SIZE = 1_000

FINISHED_TRACKING = (Tracking.DONE.value, Tracking.LOST.value, Tracking.FORGOTTEN.value)
#: deliveries whose attempts may go: nothing will be sent for them any more
SETTLED_DELIVERIES = (DeliveryState.DELIVERED.value, DeliveryState.DEAD.value)
#: an artifact with a file in the archive
_STORED = artifacts.c.state == ArtifactState.STORED.value

# The predicate of the partial indexes, as a literal rather than a bound value so
# that both planners (and PostgreSQL's generic plans) see it implies the index
# predicate. Rows of any other state than FINISHED_TRACKING are skipped in Python:
# an IN list here would make PostgreSQL expect a handful of rows where it has not
# analysed the table yet, and sort the whole range instead of walking the index.
_NOT_ACTIVE = predictions.c.tracking != literal_column(f"'{Tracking.ACTIVE.value}'")

#: (the column a prediction finished at, what else selects the rows ordered by it)
_SEGMENTS: tuple[tuple[Column[Any], tuple[ColumnElement[bool], ...]], ...] = (
    (predictions.c.completed_at, (predictions.c.completed_at.is_not(None),)),  # ..._completed
    (predictions.c.last_polled_at, (predictions.c.completed_at.is_(None),)),  # ..._polled
)


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What a prune removed (or, in a dry run, would remove)."""

    examined: int = 0  #: finished predictions older than the cutoff
    affected: int = 0  #: of those, predictions that lost something (or were deleted)
    log_rows_deleted: int = 0  #: prediction_logs rows, including those of deleted predictions
    raw_bodies_cleared: int = 0  #: predictions.raw set to NULL (on predictions that stay)
    attempts_deleted: int = 0  #: delivery_attempts rows, including those of deleted predictions
    predictions_deleted: int = 0  #: with --all
    kept_pending: int = 0  #: with --all: not deleted because a delivery is still pending
    transitions_deleted: int = 0  #: status_transitions rows of deleted predictions
    callbacks_deleted: int = 0  #: callbacks of deleted predictions
    deliveries_deleted: int = 0  #: deliveries of deleted predictions
    #: stored files in the archive of deleted predictions (their artifacts rows go with
    #: them; the files themselves only with ``archived_files``, see ``prune``)
    archived_files: int = 0

    def __add__(self, other: PruneResult) -> PruneResult:
        return PruneResult(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def counts(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary(self) -> str:
        """One line for the log."""
        removed = ", ".join(
            f"{count} {name.replace('_', ' ')}"
            for name, count in self.counts().items()
            if count and name not in ("examined", "affected")
        )
        return (
            f"{self.affected} of {self.examined} finished predictions affected"
            f"{': ' + removed if removed else ''}"
        )


class RetentionOps(StoreBase):
    """Pruning old history (mixed into ``Store``)."""

    def prune(
        self,
        *,
        cutoff: datetime,
        keep_logs: bool = False,
        delete_predictions: bool = False,
        dry_run: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        archived_files: list[str] | None = None,
    ) -> PruneResult:
        """Prune predictions that finished before ``cutoff``, one transaction per batch.

        By default: delete their ``prediction_logs`` rows (``predictions.logs``
        keeps the whole text) unless ``keep_logs``, set ``raw`` to NULL, and
        delete the attempts of their deliveries that are delivered or dead.
        ``delete_predictions`` deletes the predictions themselves (the foreign
        keys cascade to transitions, logs, callbacks, deliveries and attempts),
        except those with a pending delivery, which are pruned as by default.
        ``dry_run`` counts what would go and changes nothing. ``archived_files``
        (a list) gets the ``stored_url`` of each stored file of the predictions
        deleted, in the transaction that deletes them, before their rows go: the
        caller deletes the files (``tracker.archive.pruning``).
        """
        total = PruneResult()
        for batch in self.prune_batches(
            cutoff=cutoff,
            keep_logs=keep_logs,
            delete_predictions=delete_predictions,
            dry_run=dry_run,
            batch_size=batch_size,
            archived_files=archived_files,
        ):
            total += batch
        return total

    def prune_batches(
        self,
        *,
        cutoff: datetime,
        keep_logs: bool = False,
        delete_predictions: bool = False,
        dry_run: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        archived_files: list[str] | None = None,
    ) -> Iterator[PruneResult]:
        """``prune`` one batch at a time: each ``next()`` runs and commits one
        transaction and returns its counts, so a caller can do other work (or
        stop) between batches: delete the files each batch added to
        ``archived_files``, for one."""
        if cutoff.tzinfo is None:
            raise InvalidInput(f"naive cutoff {cutoff!r}: a UTC time is required")
        if batch_size < 1:
            raise InvalidInput(f"batch size must be at least 1, not {batch_size}")
        if keep_logs and delete_predictions:
            raise InvalidInput("keeping logs makes no sense when deleting the predictions")
        options = _Options(
            cutoff, keep_logs, delete_predictions, dry_run, batch_size, archived_files
        )
        return self._batches(options)

    def _batches(self, options: _Options) -> Iterator[PruneResult]:
        for key, conditions in _SEGMENTS:
            after: tuple[datetime, str] | None = None
            while True:
                with self._transaction() as conn:
                    if self.dialect == "postgresql":
                        # Each statement handles one batch; JIT-compiling it, which
                        # estimates for a table not analysed yet can trigger, costs
                        # more than running it.
                        conn.exec_driver_sql("SET LOCAL jit = off")
                    result, after, fetched = _prune_batch(conn, key, conditions, after, options)
                if result.examined:
                    yield result
                if fetched < options.batch_size:
                    break


@dataclass(frozen=True, slots=True)
class _Options:
    cutoff: datetime
    keep_logs: bool
    delete_predictions: bool
    dry_run: bool
    batch_size: int
    #: where the stored URLs of the files of deleted predictions go (None: nowhere)
    files: list[str] | None = None


def _count(table: Any, *conditions: ColumnElement[bool]) -> Any:
    """How many rows of ``table`` belong to the prediction of the outer row."""
    return select(func.count()).select_from(table).where(*conditions).scalar_subquery()


def _stored_urls(conn: Connection, prediction_ids: Sequence[str]) -> list[str]:
    """Where the stored files of these predictions are (read before their rows go)."""
    if not prediction_ids:
        return []
    query = (
        select(artifacts.c.stored_url)
        .where(artifacts.c.prediction_id.in_(prediction_ids), _STORED)
        .order_by(artifacts.c.prediction_id, artifacts.c.position)
    )
    return [url for url in conn.execute(query).scalars() if url]


def _selection(
    key: Column[Any],
    conditions: Sequence[ColumnElement[bool]],
    after: tuple[datetime, str] | None,
    options: _Options,
) -> Select[Any]:
    """The next batch of finished predictions, with everything that would go counted.

    The counts come with the rows (one index lookup each), so a dry run and a
    real run report the same numbers, and the real run deletes exactly these.
    """
    p = predictions.c
    mine = deliveries.c.prediction_id == p.id
    columns: list[Any] = [
        p.id,
        p.tracking,
        key.label("finished_at"),
        exists().where(mine, deliveries.c.state == DeliveryState.PENDING.value).label("pending"),
        p.raw.is_not(None).label("has_raw"),
        _count(prediction_logs, prediction_logs.c.prediction_id == p.id).label("logs"),
        _count(
            delivery_attempts.join(deliveries), mine, deliveries.c.state.in_(SETTLED_DELIVERIES)
        ).label("settled_attempts"),
    ]
    if options.delete_predictions:
        columns += [
            _count(delivery_attempts.join(deliveries), mine).label("attempts"),
            _count(status_transitions, status_transitions.c.prediction_id == p.id).label(
                "transitions"
            ),
            _count(callbacks, callbacks.c.prediction_id == p.id).label("callbacks"),
            _count(deliveries, mine).label("deliveries"),
            _count(artifacts, artifacts.c.prediction_id == p.id, _STORED).label("files"),
        ]
    stmt = (
        select(*columns)
        .where(_NOT_ACTIVE, key < options.cutoff, *conditions)
        .order_by(key, p.id)
        .limit(options.batch_size)
    )
    if after is not None:
        stmt = stmt.where(tuple_(key, p.id) > tuple_(*after))
    if not options.dry_run:
        # PostgreSQL: nobody changes these rows until the batch commits (SQLite's
        # BEGIN IMMEDIATE already keeps other writers out). Clearing raw needs no
        # key lock, so inserts that reference these rows need not wait for it.
        stmt = stmt.with_for_update(of=predictions, key_share=not options.delete_predictions)
    return stmt


def _prune_batch(
    conn: Connection,
    key: Column[Any],
    conditions: Sequence[ColumnElement[bool]],
    after: tuple[datetime, str] | None,
    options: _Options,
) -> tuple[PruneResult, tuple[datetime, str] | None, int]:
    """Take the next batch of finished predictions after ``after`` and prune them.

    Returns the counts, where the next batch starts, and how many rows were read.
    """
    fetched = conn.execute(_selection(key, conditions, after, options)).all()
    if not fetched:
        return PruneResult(), after, 0
    rows = [r for r in fetched if r.tracking in FINISHED_TRACKING]
    doomed = [r for r in rows if options.delete_predictions and not r.pending]
    kept = [r for r in rows if not (options.delete_predictions and not r.pending)]
    logs = [r.id for r in kept if r.logs and not options.keep_logs]
    raw = [r.id for r in kept if r.has_raw]
    attempts = [r.id for r in kept if r.settled_attempts]
    if not options.dry_run:
        if options.files is not None:
            options.files.extend(_stored_urls(conn, [r.id for r in doomed if r.files]))
        if doomed:
            conn.execute(delete(predictions).where(predictions.c.id.in_([r.id for r in doomed])))
        if logs:
            conn.execute(delete(prediction_logs).where(prediction_logs.c.prediction_id.in_(logs)))
        if raw:
            conn.execute(update(predictions).where(predictions.c.id.in_(raw)).values(raw=None))
        # The webhook-ids of their pushes: kept while a replay could still pass the
        # signature's timestamp check (deleted predictions take theirs along).
        receipts_before = min(options.cutoff, utcnow() - REPLAY_WINDOW)
        delete_old_receipts(conn, [r.id for r in kept], receipts_before)
        if attempts:
            settled = select(deliveries.c.id).where(
                deliveries.c.prediction_id.in_(attempts),
                deliveries.c.state.in_(SETTLED_DELIVERIES),
            )
            conn.execute(
                delete(delivery_attempts).where(delivery_attempts.c.delivery_id.in_(settled))
            )
    result = PruneResult(
        examined=len(rows),
        affected=len(doomed) + len({*logs, *raw, *attempts}),
        log_rows_deleted=sum(r.logs for r in doomed)
        + sum(r.logs for r in kept if not options.keep_logs),
        raw_bodies_cleared=len(raw),
        attempts_deleted=sum(r.attempts for r in doomed) + sum(r.settled_attempts for r in kept),
        predictions_deleted=len(doomed),
        kept_pending=len(kept) if options.delete_predictions else 0,
        transitions_deleted=sum(r.transitions for r in doomed),
        callbacks_deleted=sum(r.callbacks for r in doomed),
        deliveries_deleted=sum(r.deliveries for r in doomed),
        archived_files=sum(r.files for r in doomed),
    )
    last = fetched[-1]
    return result, (last.finished_at, last.id), len(fetched)
