"""The poll loop's operations: claim due predictions, write what their polls found.

Each is one transaction. ``apply_observations`` writes a whole batch of answers
with a few statements (group commit); a batch that fails is retried row by row,
so one unstorable answer becomes an error on its own prediction only
(``tracker.store.observations`` writes the batch).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    RowMapping,
    and_,
    case,
    func,
    or_,
    select,
    update,
)

from tracker.domain import (
    CallbackSpec,
    NextPoll,
    ObservationUpdate,
    PredictionState,
    Tracking,
)
from tracker.exceptions import StoreUnavailable
from tracker.store.artifact_queue import ArchiveHandoff
from tracker.store.base import StoreBase
from tracker.store.enqueue import Handoff
from tracker.store.observations import Applied, apply_batch, row_error
from tracker.store.tables import predictions

log = logging.getLogger(__name__)

# Applied: named here as before its move to tracker.store.observations
__all__ = ["STATE_COLUMNS", "Applied", "PollOps", "state_of"]

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
                return apply_batch(
                    conn, items, default_callbacks, handoff, archive, archive_handoff
                )
        except StoreUnavailable:
            raise
        except Exception as exc:
            if len(items) == 1:
                return Applied([row_error(items[0][0].prediction_id, exc)])
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
        if raw is not None:  # a body that is no prediction: kept whole
            values["raw"] = raw
            values["raw_logs_moved"] = False
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
