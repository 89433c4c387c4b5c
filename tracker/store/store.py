"""The store: the only code that talks SQL. One transaction per named operation."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    Select,
    and_,
    bindparam,
    case,
    func,
    insert,
    inspect,
    or_,
    select,
    update,
)

from tracker.domain import (
    Callback,
    CallbackSpec,
    DeliveryJob,
    LogChunk,
    NextPoll,
    ObservationUpdate,
    Prediction,
    PredictionDetail,
    PredictionState,
    Tracking,
    Transition,
)
from tracker.events import canonical_events
from tracker.exceptions import (
    SchemaMissing,
    SchemaTooNew,
    StaleObservation,
    StoreError,
    StoreUnavailable,
    UnstorableObservation,
)
from tracker.sanitize import clean_text
from tracker.store import revisions
from tracker.store.base import SCHEMA_HINT, batches
from tracker.store.daemons import DaemonOps
from tracker.store.deliveries import (
    DeliveryOps,
    EventBatch,
    Handoff,
    enqueue_deliveries,
    queue_completed_for_finished,
)
from tracker.store.reports import ReportOps
from tracker.store.retention import RetentionOps
from tracker.store.tables import callbacks, prediction_logs, predictions, status_transitions

log = logging.getLogger(__name__)

#: alembic revision this code expects; tests check it is the migrations' head
SCHEMA_HEAD = "0006"

#: rows per INSERT statement when registering many IDs at once
INSERT_BATCH = 5_000

_STATE_COLUMNS = (
    predictions.c.id,
    predictions.c.status,
    predictions.c.tracking,
    predictions.c.logs,
    predictions.c.output,
    predictions.c.poll_count,
    predictions.c.error_count,
    predictions.c.consecutive_errors,
    predictions.c.poll_interval,
    predictions.c.not_found_count,
    predictions.c.not_found_since,
    predictions.c.registered_at,
    predictions.c.log_seq,
    predictions.c.started_at,
)


@dataclass(frozen=True, slots=True)
class AddResult:
    added: int
    already_known: int
    callbacks_added: int


class Store(DeliveryOps, DaemonOps, ReportOps, RetentionOps):
    """Named operations on the tracker's tables, each one transaction."""

    def schema_revision(self) -> str | None:
        """The alembic revision of the database, or None when it was never migrated."""
        with self._reading() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()

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

    def next_due_at(self) -> datetime | None:
        """The earliest next_poll_at of an active prediction (uses the due index)."""
        with self._reading() as conn:
            return conn.execute(
                select(predictions.c.next_poll_at)
                .where(
                    predictions.c.tracking == Tracking.ACTIVE.value,
                    predictions.c.next_poll_at.is_not(None),
                )
                .order_by(predictions.c.next_poll_at)
                .limit(1)
            ).scalar()

    # -- the poll loop -----------------------------------------------------

    def claim_due(
        self,
        *,
        now: datetime,
        limit: int,
        owner: str,
        lease_until: datetime,
        include_unpolled: bool = False,
    ) -> list[PredictionState]:
        """Take up to ``limit`` due active predictions for ``owner``, earliest first.

        The claim moves ``next_poll_at`` to ``lease_until``: a claimed row is not
        due again unless its owner dies and the lease runs out. On PostgreSQL the
        rows are locked with SKIP LOCKED, so concurrent claimers never collide.
        """
        due = predictions.c.next_poll_at <= now
        if include_unpolled:
            never_polled = and_(
                predictions.c.last_polled_at.is_(None), predictions.c.claimed_by.is_(None)
            )
            due = or_(due, never_polled)
        candidates = (
            select(predictions.c.id)
            .where(predictions.c.tracking == Tracking.ACTIVE.value, due)
            .order_by(predictions.c.next_poll_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        stmt = (
            update(predictions)
            .where(predictions.c.id.in_(candidates.scalar_subquery()))
            .values(next_poll_at=lease_until, claimed_by=owner)
            .returning(*_STATE_COLUMNS)
        )
        with self._transaction() as conn:
            return [_state(row) for row in conn.execute(stmt).mappings()]

    def claimed_state(self, prediction_id: str, owner: str) -> PredictionState | None:
        """The current state of a prediction this owner still holds, else None."""
        stmt = select(*_STATE_COLUMNS).where(
            predictions.c.id == prediction_id,
            predictions.c.claimed_by == owner,
            predictions.c.tracking == Tracking.ACTIVE.value,
        )
        with self._reading() as conn:
            row = conn.execute(stmt).mappings().first()
        return None if row is None else _state(row)

    def release_claims(self, owner: str | None, *, now: datetime) -> int:
        """Make claimed rows due now again (all claims when ``owner`` is None)."""
        condition = (
            predictions.c.claimed_by.is_not(None)
            if owner is None
            else predictions.c.claimed_by == owner
        )
        with self._transaction() as conn:
            result = conn.execute(
                update(predictions)
                .where(condition, predictions.c.tracking == Tracking.ACTIVE.value)
                .values(claimed_by=None, next_poll_at=now)
            )
            return result.rowcount

    def apply_observation(
        self,
        update_: ObservationUpdate,
        next_poll: NextPoll,
        *,
        owner: str | None = None,
        default_callbacks: Sequence[CallbackSpec] = (),
    ) -> int:
        """Write one observation: row, transition, log chunk and the deliveries it
        causes, all or nothing. Returns the number of deliveries queued.

        Raises ``StaleObservation`` (writing nothing) when the row no longer
        matches the state the update was planned from.
        """
        (result,) = self.apply_observations(
            [(update_, next_poll, owner)], default_callbacks=default_callbacks
        ).results
        if isinstance(result, StoreError):
            raise result
        return result

    def apply_observations(
        self,
        items: Sequence[tuple[ObservationUpdate, NextPoll, str | None]],
        *,
        default_callbacks: Sequence[CallbackSpec] = (),
        handoff: Handoff | None = None,
    ) -> Applied:
        """Write many observations in one transaction (one commit for all of them).

        Each result is the number of deliveries queued and left pending, or the
        error that kept that observation out: ``StaleObservation`` when its row
        changed since it was read. Should one observation break the batch (or turn
        out stale), every observation is retried on its own, so one bad row never
        loses the others. Deliveries ``handoff`` allows are claimed for the writer.
        """
        try:
            with self._transaction() as conn:
                return _apply_batch(conn, items, default_callbacks, handoff)
        except StoreUnavailable:
            raise
        except Exception as exc:
            if len(items) == 1:
                return Applied([_as_row_error(items[0][0].prediction_id, exc)])
        applied = Applied([])
        for item in items:
            # No hand-off here: its limits hold for one call, not for one per item.
            alone = self.apply_observations([item], default_callbacks=default_callbacks)
            applied.results.extend(alone.results)
            applied.handed_off.extend(alone.handed_off)
        return applied

    def record_poll_error(
        self,
        prediction_id: str,
        *,
        now: datetime,
        detail: str,
        next_poll: NextPoll,
        owner: str | None = None,
        raw: Any = None,
        counts_as_error: bool = True,
    ) -> None:
        """A poll that produced no usable answer: note it and schedule the retry."""
        values: dict[str, Any] = {
            "last_polled_at": now,
            "last_error": detail,
            "next_poll_at": next_poll.at,
            "poll_interval": next_poll.interval,
            "claimed_by": None,
        }
        if counts_as_error:
            values["error_count"] = predictions.c.error_count + 1
            values["consecutive_errors"] = predictions.c.consecutive_errors + 1
        if raw is not None:
            values["raw"] = raw
        self._update_claimed(prediction_id, owner, values)

    def record_not_found(
        self,
        prediction_id: str,
        *,
        now: datetime,
        detail: str,
        next_poll: NextPoll,
        lost_after: int,
        lost_window: timedelta,
        owner: str | None = None,
    ) -> bool:
        """A 404. After ``lost_after`` in a row spanning ``lost_window``, the
        prediction is ``lost`` and no longer polled. Returns True when it became lost."""
        since = func.coalesce(predictions.c.not_found_since, now)
        becomes_lost = and_(
            predictions.c.not_found_count + 1 >= lost_after,
            predictions.c.not_found_since.is_not(None),
            predictions.c.not_found_since <= now - lost_window,
        )
        values: dict[str, Any] = {
            "last_polled_at": now,
            "last_error": detail,
            "error_count": predictions.c.error_count + 1,
            "consecutive_errors": predictions.c.consecutive_errors + 1,
            "not_found_count": predictions.c.not_found_count + 1,
            "not_found_since": since,
            "tracking": case((becomes_lost, Tracking.LOST.value), else_=predictions.c.tracking),
            "next_poll_at": case((becomes_lost, None), else_=next_poll.at),
            "poll_interval": next_poll.interval,
            "claimed_by": None,
        }
        return self._update_claimed(prediction_id, owner, values) == Tracking.LOST.value

    def reschedule(
        self,
        prediction_id: str,
        *,
        next_poll: NextPoll,
        owner: str | None,
        detail: str | None = None,
        attempted_at: datetime | None = None,
    ) -> None:
        """Put a claimed prediction back without counting an error (rate limits, auth
        pauses, shutdown). ``attempted_at`` records that a request was made."""
        values: dict[str, Any] = {"next_poll_at": next_poll.at, "claimed_by": None}
        if detail is not None:
            values["last_error"] = detail
        if attempted_at is not None:
            values["last_polled_at"] = attempted_at
        self._update_claimed(prediction_id, owner, values)

    def _update_claimed(
        self, prediction_id: str, owner: str | None, values: dict[str, Any]
    ) -> str | None:
        """Update an active row this owner holds; returns its tracking state after."""
        guard = [
            predictions.c.id == prediction_id,
            predictions.c.tracking == Tracking.ACTIVE.value,
        ]
        if owner is not None:
            guard.append(predictions.c.claimed_by == owner)
        stmt = update(predictions).where(*guard).values(values).returning(predictions.c.tracking)
        with self._transaction() as conn:
            return conn.execute(stmt).scalar()


@dataclass
class Applied:
    """What ``apply_observations`` did: per observation, the deliveries it left
    pending or the error that kept it out; and the deliveries handed off."""

    results: list[int | StoreError]
    handed_off: list[DeliveryJob] = field(default_factory=list)


def _as_row_error(prediction_id: str, exc: Exception) -> StoreError:
    """The error of an observation written alone, naming its prediction."""
    if isinstance(exc, StaleObservation):
        return exc
    if isinstance(exc, _StaleInBatch):
        return StaleObservation(f"prediction {prediction_id} changed since it was read")
    reason = str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}"
    reason = clean_text(reason)
    log.error("prediction %s: the database refused its answer: %s", prediction_id, reason[:300])
    return UnstorableObservation(
        f"prediction {prediction_id}: the answer could not be stored ({reason[:200]})"
    )


class _StaleInBatch(Exception):
    """A row of a batch changed since it was read: which one only a rerun can tell."""


def _apply_batch(
    conn: Connection,
    items: Sequence[tuple[ObservationUpdate, NextPoll, str | None]],
    default_callbacks: Sequence[CallbackSpec],
    handoff: Handoff | None,
) -> Applied:
    """Apply observations with a few statements per batch, not per observation:
    one UPDATE executemany per set of changed columns, then one INSERT each for
    transitions, log chunks and deliveries."""
    groups: dict[tuple[tuple[str, ...], bool], list[int]] = {}
    for index, (update_, _, owner) in enumerate(items):
        key = (tuple(sorted(update_.fields)), owner is not None)
        groups.setdefault(key, []).append(index)
    if len(groups) > 1 and conn.dialect.name == "postgresql":
        # Updated group by group, the rows would be locked out of ID order; lock
        # them all in ID order first, as every other transaction does.
        ids = sorted({update_.prediction_id for update_, _, _ in items})
        conn.execute(
            select(predictions.c.id)
            .where(predictions.c.id.in_(ids))
            .order_by(predictions.c.id)
            .with_for_update(key_share=True)
        )
    for key, members in groups.items():
        params = [_update_params(*items[i]) for i in members]
        if conn.execute(_observation_update(*key), params).rowcount != len(members):
            if len(items) > 1:
                raise _StaleInBatch
            return Applied(
                [
                    StaleObservation(
                        f"prediction {items[0][0].prediction_id} changed since it was read;"
                        " answer dropped"
                    )
                ]
            )
    updates = [update_ for update_, _, _ in items]
    transitions = [_transition_row(u) for u in updates if u.transition is not None]
    if transitions:
        conn.execute(insert(status_transitions), transitions)
    chunks = [_log_row(u) for u in updates if u.log_chunk is not None]
    if chunks:
        conn.execute(insert(prediction_logs), chunks)
    queued = enqueue_deliveries(
        conn,
        [
            EventBatch(u.prediction_id, u.events, u.fields.get("raw"), u.observed_at)
            for u in updates
        ],
        default_callbacks,
        handoff,
    )
    return Applied([queued.pending.get(u.prediction_id, 0) for u in updates], queued.handed_off)


def _update_params(
    update_: ObservationUpdate, next_poll: NextPoll, owner: str | None
) -> dict[str, Any]:
    params: dict[str, Any] = {f"v_{name}": value for name, value in update_.fields.items()}
    params.update(
        v_last_polled_at=update_.observed_at,
        v_next_poll_at=None if update_.terminal else next_poll.at,
        v_poll_interval=next_poll.interval,
        g_id=update_.prediction_id,
        g_status=update_.expected_status,
        g_log_seq=update_.expected_log_seq,
        g_owner=owner,
    )
    return params


def _transition_row(update_: ObservationUpdate) -> dict[str, Any]:
    t = update_.transition
    assert t is not None
    return {
        "prediction_id": update_.prediction_id,
        "from_status": t.from_status,
        "to_status": t.to_status,
        "observed_at": t.observed_at,
        "upstream_at": t.upstream_at,
    }


def _log_row(update_: ObservationUpdate) -> dict[str, Any]:
    c = update_.log_chunk
    assert c is not None
    return {
        "prediction_id": update_.prediction_id,
        "seq": c.seq,
        "observed_at": c.observed_at,
        "text": c.text,
        "restarted": c.restarted,
    }


@functools.lru_cache(maxsize=256)
def _observation_update(fields: tuple[str, ...], guard_owner: bool) -> Any:
    """The UPDATE for one observation, built once per set of changed columns.

    Building and caching-keying a fresh statement per poll cost more CPU than
    running it; with bound parameters the compiled form is reused.
    """
    c = predictions.c
    values: dict[str, Any] = {
        name: bindparam(f"v_{name}", type_=c[name].type)
        for name in (*fields, "last_polled_at", "next_poll_at", "poll_interval")
    }
    values.update(
        poll_count=c.poll_count + 1,
        consecutive_errors=0,
        not_found_count=0,
        not_found_since=None,
        claimed_by=None,
        last_error=None,  # a good answer ends the error; error_count keeps the history
    )
    guard = [
        c.id == bindparam("g_id"),
        c.status.is_not_distinct_from(bindparam("g_status", type_=c.status.type)),
        c.log_seq == bindparam("g_log_seq"),
    ]
    if guard_owner:
        guard.append(c.claimed_by == bindparam("g_owner"))
    return update(predictions).where(*guard).values(values)


def merge_events(current: str, new: Iterable[str]) -> str:
    """The union of two event lists, in canonical order."""
    return ",".join(canonical_events([*current.split(","), *new]))


def _state(row: RowMapping) -> PredictionState:
    return PredictionState(
        id=row["id"],
        status=row["status"],
        tracking=row["tracking"],
        logs=row["logs"] or "",
        output=row["output"],
        poll_count=row["poll_count"],
        error_count=row["error_count"],
        consecutive_errors=row["consecutive_errors"],
        poll_interval=row["poll_interval"],
        not_found_count=row["not_found_count"],
        not_found_since=row["not_found_since"],
        registered_at=row["registered_at"],
        log_seq=row["log_seq"],
        started_at=row["started_at"],
    )


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
