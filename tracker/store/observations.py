"""Writing a batch of observations in one transaction (``PollOps.apply_observations``,
group commit): each prediction's new state, its transition, the upstream's receipt,
its new log lines, the deliveries and artifacts it causes; and the error of an
observation written alone when the batch failed."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    insert,
    select,
    update,
)

from tracker.domain import (
    CallbackSpec,
    DeliveryJob,
    NextPoll,
    ObservationUpdate,
)
from tracker.exceptions import StaleObservation, StoreError, UnstorableObservation
from tracker.store.answers import stored_answer
from tracker.store.artifact_queue import ArchiveHandoff, QueuedArtifacts, queue_artifacts
from tracker.store.base import insert_ignore
from tracker.store.cancels import recount_deadlines
from tracker.store.enqueue import EventBatch, Handoff, enqueue_deliveries
from tracker.store.tables import prediction_logs, predictions, status_transitions, upstream_pushes
from tracker.text.sanitize import clean_text

#: the poll loop's logger: a refused answer is logged under its name
log = logging.getLogger("tracker.store.polling")


@dataclass
class Applied:
    """What ``apply_observations`` did: per observation, the deliveries it left
    pending or the error that kept it out; the deliveries handed off; the artifacts
    added (those handed off to the archiver among them)."""

    results: list[int | StoreError]
    handed_off: list[DeliveryJob] = field(default_factory=list)
    artifacts: QueuedArtifacts = field(default_factory=QueuedArtifacts)


def row_error(prediction_id: str, exc: Exception) -> StoreError:
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


def apply_batch(
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
    if "raw" in update_.fields:
        params["v_raw"] = stored_answer(update_.fields["raw"], update_.fields.get("raw_logs_moved"))
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
        "received_at": update_.push_received_at or update_.observed_at,
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
