"""The poll loop's operations: claim due predictions, write what their polls found.

Each is one transaction. ``apply_observations`` writes a whole batch of answers
with a few statements (group commit); a batch that fails is retried row by row,
so one unstorable answer becomes an error on its own prediction only.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    update,
)

from tracker.domain import (
    CallbackSpec,
    DeliveryJob,
    NextPoll,
    ObservationUpdate,
    PredictionState,
    Tracking,
)
from tracker.exceptions import StaleObservation, StoreError, StoreUnavailable, UnstorableObservation
from tracker.store.artifacts import ArchiveHandoff, QueuedArtifacts, queue_artifacts
from tracker.store.base import StoreBase, insert_ignore
from tracker.store.cancels import recount_deadlines
from tracker.store.enqueue import EventBatch, Handoff, enqueue_deliveries
from tracker.store.tables import prediction_logs, predictions, status_transitions, upstream_pushes
from tracker.text.sanitize import clean_text

log = logging.getLogger(__name__)

#: the columns of a PredictionState (``state_of`` builds one from them)
STATE_COLUMNS = (
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
    predictions.c.last_pushed_at,
    predictions.c.created_at,
)


class PollOps(StoreBase):
    """Claiming and writing for the poll loop (the daemon's ``PollQueue``)."""

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
            .returning(*STATE_COLUMNS)
        )
        with self._transaction() as conn:
            return [state_of(row) for row in conn.execute(stmt).mappings()]

    def claimed_state(self, prediction_id: str, owner: str) -> PredictionState | None:
        """The current state of a prediction this owner still holds, else None."""
        stmt = select(*STATE_COLUMNS).where(
            predictions.c.id == prediction_id,
            predictions.c.claimed_by == owner,
            predictions.c.tracking == Tracking.ACTIVE.value,
        )
        with self._reading() as conn:
            row = conn.execute(stmt).mappings().first()
        return None if row is None else state_of(row)

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

    def apply_observations(
        self,
        items: Sequence[tuple[ObservationUpdate, NextPoll, str | None]],
        *,
        default_callbacks: Sequence[CallbackSpec] = (),
        handoff: Handoff | None = None,
        archive: bool = False,
        archive_handoff: ArchiveHandoff | None = None,
    ) -> Applied:
        """Write many observations in one transaction (one commit for all of them).

        Each result is the number of deliveries queued and left pending, or the
        error that kept that observation out: ``StaleObservation`` when its row
        changed since it was read. Should one observation break the batch (or turn
        out stale), every observation is retried on its own, so one bad row never
        loses the others. Deliveries ``handoff`` allows are claimed for the writer.
        With ``archive``, the output files the updates reveal become artifacts, those
        ``archive_handoff`` allows claimed for the writer's archiver.
        """
        try:
            with self._transaction() as conn:
                return _apply_batch(
                    conn, items, default_callbacks, handoff, archive, archive_handoff
                )
        except StoreUnavailable:
            raise
        except Exception as exc:
            if len(items) == 1:
                return Applied([_as_row_error(items[0][0].prediction_id, exc)])
        applied = Applied([])
        for item in items:
            # No hand-off here: its limits hold for one call, not for one per item.
            alone = self.apply_observations(
                [item], default_callbacks=default_callbacks, archive=archive
            )
            applied.results.extend(alone.results)
            applied.handed_off.extend(alone.handed_off)
            applied.artifacts.added += alone.artifacts.added
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
    pending or the error that kept it out; the deliveries handed off; the artifacts
    added (those handed off to the archiver among them)."""

    results: list[int | StoreError]
    handed_off: list[DeliveryJob] = field(default_factory=list)
    artifacts: QueuedArtifacts = field(default_factory=QueuedArtifacts)


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
    archive: bool = False,
    archive_handoff: ArchiveHandoff | None = None,
) -> Applied:
    """Apply observations with a few statements per batch, not per observation:
    one UPDATE executemany per set of changed columns, then one INSERT each for
    transitions, log chunks, artifacts and deliveries."""
    groups: dict[tuple[tuple[str, ...], bool, bool], list[int]] = {}
    for index, (update_, _, owner) in enumerate(items):
        key = (tuple(sorted(update_.fields)), owner is not None, update_.pushed)
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
    created = {u.prediction_id: u.fields["created_at"] for u in updates if u.first_created_at}
    if created:  # a deadline counts from the upstream's created_at once it is known
        recount_deadlines(conn, created)
    receipts = [_receipt_row(u) for u in updates if u.push_id is not None]
    if receipts:  # the webhook-ids of pushes, kept with what they changed
        conn.execute(insert_ignore(conn.dialect.name, upstream_pushes), receipts)
    found = QueuedArtifacts()
    if archive:
        found = queue_artifacts(
            conn,
            [(u.prediction_id, u.artifacts, u.observed_at) for u in updates if u.artifacts],
            archive_handoff,
            removed={u.prediction_id for u in updates if u.fields.get("data_removed")},
        )
    queued = enqueue_deliveries(
        conn,
        [
            EventBatch(u.prediction_id, u.events, u.fields.get("raw"), u.observed_at)
            for u in updates
        ],
        default_callbacks,
        handoff,
    )
    return Applied(
        [queued.pending.get(u.prediction_id, 0) for u in updates], queued.handed_off, found
    )


def _update_params(
    update_: ObservationUpdate, next_poll: NextPoll, owner: str | None
) -> dict[str, Any]:
    params: dict[str, Any] = {f"v_{name}": value for name, value in update_.fields.items()}
    seen_at = "v_last_pushed_at" if update_.pushed else "v_last_polled_at"
    params[seen_at] = update_.observed_at
    params.update(
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


def _receipt_row(update_: ObservationUpdate) -> dict[str, Any]:
    return {
        "webhook_id": update_.push_id,
        "prediction_id": update_.prediction_id,
        "received_at": update_.observed_at,
        "status": update_.fields["status"],
        "outcome": "applied" if update_.changed else "unchanged",  # PushOutcome's words
        "detail": None,
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
def _observation_update(fields: tuple[str, ...], guard_owner: bool, pushed: bool) -> Any:
    """The UPDATE for one observation, built once per set of changed columns.

    Building and caching-keying a fresh statement per poll cost more CPU than
    running it; with bound parameters the compiled form is reused. A pushed
    answer is not a poll: it sets ``last_pushed_at``, not ``last_polled_at`` and
    ``poll_count``, and leaves a claim alone (a poll of it may be in flight).
    """
    c = predictions.c
    seen_at = "last_pushed_at" if pushed else "last_polled_at"
    values: dict[str, Any] = {
        name: bindparam(f"v_{name}", type_=c[name].type)
        for name in (*fields, seen_at, "next_poll_at", "poll_interval")
    }
    values.update(
        consecutive_errors=0,
        not_found_count=0,
        not_found_since=None,
        last_error=None,  # a good answer ends the error; error_count keeps the history
    )
    if not pushed:
        values.update(poll_count=c.poll_count + 1, claimed_by=None)
    guard = [
        c.id == bindparam("g_id"),
        c.status.is_not_distinct_from(bindparam("g_status", type_=c.status.type)),
        c.log_seq == bindparam("g_log_seq"),
    ]
    if guard_owner:
        guard.append(c.claimed_by == bindparam("g_owner"))
    return update(predictions).where(*guard).values(values)


def state_of(row: RowMapping) -> PredictionState:
    """A row of STATE_COLUMNS as a PredictionState."""
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
        last_pushed_at=row["last_pushed_at"],
        created_at=row["created_at"],
    )
