"""Archived outputs: queueing artifacts with the answer that revealed them, claiming
due downloads, recording what became of each, and listing them.

An artifact is position N of prediction P's output (unique together), so however
often an output is seen, by however many daemons, it is one row and one file.
``claimed_by`` with ``next_attempt_at`` is the claim and its lease, as for
deliveries: a daemon killed mid-download leaves a claim that expires, and the
download starts again from the beginning under the same key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, func, select, update

from tracker.domain import Artifact, ArtifactJob, ArtifactState, CallbackSpec
from tracker.events import Event
from tracker.store.base import StoreBase, insert_ignore
from tracker.store.enqueue import EventBatch, enqueue_deliveries, prediction_object
from tracker.store.tables import artifacts, callbacks, predictions

#: output files found per prediction: ``(prediction_id, ((position, url), ...), seen_at)``
FoundFiles = tuple[str, Sequence[tuple[int, str]], datetime]

_JOB_COLUMNS = (
    artifacts.c.id,
    artifacts.c.prediction_id,
    artifacts.c.position,
    artifacts.c.source_url,
    artifacts.c.attempts,
    artifacts.c.created_at,
    predictions.c.data_removed,
)


def queue_artifacts(conn: Connection, found: Iterable[FoundFiles]) -> int:
    """Add a pending artifact for each file not known yet (in the caller's transaction);
    returns how many were new."""
    rows = [
        {
            "prediction_id": prediction_id,
            "position": position,
            "source_url": url,
            "state": ArtifactState.PENDING.value,
            "created_at": seen_at,
            "next_attempt_at": seen_at,
        }
        for prediction_id, files, seen_at in found
        for position, url in files
    ]
    if not rows:
        return 0
    added = insert_ignore(conn.dialect.name, artifacts).returning(artifacts.c.id)
    return len(conn.execute(added, rows).all())


class ArtifactOps(StoreBase):
    """The archive's operations (mixed into ``Store``)."""

    def add_artifacts(self, found: Sequence[FoundFiles]) -> int:
        """Queue the files of outputs found outside an answer (`tracker archive`)."""
        with self._transaction() as conn:
            return queue_artifacts(conn, found)

    def succeeded_outputs(
        self, ids: Sequence[str] | None, *, after: str = "", limit: int = 1000
    ) -> list[tuple[str, Any]]:
        """``(id, output)`` of succeeded predictions whose output was not removed: the
        ``ids`` given, or every one, a page of ``limit`` at a time after ID ``after``."""
        query = (
            select(predictions.c.id, predictions.c.output)
            .where(
                predictions.c.status == "succeeded",
                predictions.c.output.is_not(None),
                predictions.c.id > after,
            )
            .order_by(predictions.c.id)
            .limit(limit)
        )
        if ids is not None:
            query = query.where(predictions.c.id.in_(ids))
        with self._reading() as conn:
            return [(row.id, row.output) for row in conn.execute(query)]

    def claim_artifacts(
        self,
        *,
        now: datetime,
        limit: int,
        owner: str,
        lease_until: datetime,
        prediction_ids: Sequence[str] | None = None,
    ) -> list[ArtifactJob]:
        """Take up to ``limit`` due pending artifacts (only of ``prediction_ids`` when
        given), oldest due first (SKIP LOCKED on PostgreSQL); the lease moves
        ``next_attempt_at`` so nobody else takes them."""
        due = [
            artifacts.c.state == ArtifactState.PENDING.value,
            artifacts.c.next_attempt_at <= now,
        ]
        if prediction_ids is not None:
            due.append(artifacts.c.prediction_id.in_(list(prediction_ids)))
        locking = (
            select(artifacts.c.id)
            .where(*due)
            .order_by(artifacts.c.next_attempt_at, artifacts.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._transaction() as conn:
            ids = list(conn.execute(locking).scalars())
            if not ids:
                return []
            conn.execute(
                update(artifacts)
                .where(artifacts.c.id.in_(ids))
                .values(next_attempt_at=lease_until, claimed_by=owner)
            )
            rows = conn.execute(
                select(*_JOB_COLUMNS)
                .join(predictions, predictions.c.id == artifacts.c.prediction_id)
                .where(artifacts.c.id.in_(ids))
                .order_by(artifacts.c.id)
            ).all()
        return [ArtifactJob(*row[:-1], data_removed=bool(row[-1])) for row in rows]

    def extend_artifact_leases(
        self, owner: str, ids: Sequence[int], *, lease_until: datetime
    ) -> None:
        """Keep the claims of downloads still running (a large file outlasts a lease)."""
        if not ids:
            return
        with self._transaction() as conn:
            conn.execute(
                update(artifacts)
                .where(
                    artifacts.c.id.in_(sorted(ids)),
                    artifacts.c.claimed_by == owner,
                    artifacts.c.state == ArtifactState.PENDING.value,
                )
                .values(next_attempt_at=lease_until)
            )

    def artifact_stored(
        self,
        job: ArtifactJob,
        *,
        owner: str,
        now: datetime,
        stored_url: str,
        size: int,
        sha256: str,
        content_type: str | None,
        default_callbacks: Sequence[CallbackSpec] = (),
    ) -> tuple[bool, int]:
        """Record a file in the archive. Returns (whether the claim was still held,
        deliveries queued): when it was the prediction's last file to be stored, the
        ``archived`` event is queued in the same transaction, exactly once."""
        with self._transaction() as conn:
            wanted = _wants_archived(conn, job.prediction_id, default_callbacks)
            if wanted:
                # One prediction's files finish one at a time, so exactly one of them
                # sees all stored (a row lock on PostgreSQL; SQLite has one writer).
                conn.execute(
                    select(predictions.c.id)
                    .where(predictions.c.id == job.prediction_id)
                    .with_for_update()
                )
            updated = conn.execute(
                update(artifacts)
                .where(artifacts.c.id == job.id, artifacts.c.claimed_by == owner)
                .values(
                    state=ArtifactState.STORED.value,
                    stored_url=stored_url,
                    bytes=size,
                    sha256=sha256,
                    content_type=content_type,
                    stored_at=now,
                    attempts=artifacts.c.attempts + 1,
                    last_error=None,
                    next_attempt_at=None,
                    claimed_by=None,
                )
            ).rowcount
            if not updated:
                return False, 0
            if not wanted:
                return True, 0
            return True, _queue_archived(conn, job.prediction_id, now, default_callbacks)

    def artifact_not_stored(
        self,
        job: ArtifactJob,
        *,
        owner: str,
        error: str,
        next_attempt_at: datetime | None,
    ) -> bool:
        """Record a failed attempt: due again at ``next_attempt_at``, or ``failed`` for
        good when it is None. False if the claim was lost."""
        state = ArtifactState.PENDING if next_attempt_at is not None else ArtifactState.FAILED
        with self._transaction() as conn:
            return (
                conn.execute(
                    update(artifacts)
                    .where(artifacts.c.id == job.id, artifacts.c.claimed_by == owner)
                    .values(
                        state=state.value,
                        attempts=artifacts.c.attempts + 1,
                        last_error=error,
                        next_attempt_at=next_attempt_at,
                        claimed_by=None,
                    )
                ).rowcount
                == 1
            )

    def release_artifacts(self, owner: str | None, *, now: datetime) -> int:
        """Make claimed pending artifacts due now (every claim when ``owner`` is None)."""
        claimed = (
            artifacts.c.claimed_by.is_not(None)
            if owner is None
            else artifacts.c.claimed_by == owner
        )
        with self._transaction() as conn:
            return conn.execute(
                update(artifacts)
                .where(claimed, artifacts.c.state == ArtifactState.PENDING.value)
                .values(claimed_by=None, next_attempt_at=now)
            ).rowcount

    def next_artifact_due(self) -> datetime | None:
        """When the earliest pending artifact is due (None: nothing pending)."""
        with self._reading() as conn:
            return conn.execute(
                select(func.min(artifacts.c.next_attempt_at)).where(
                    artifacts.c.state == ArtifactState.PENDING.value
                )
            ).scalar()

    def retry_artifacts(self, ids: Sequence[str] | None, *, now: datetime) -> int:
        """Queue ``failed`` artifacts again (of these predictions, or all of them)."""
        query = update(artifacts).where(artifacts.c.state == ArtifactState.FAILED.value)
        if ids is not None:
            query = query.where(artifacts.c.prediction_id.in_(ids))
        with self._transaction() as conn:
            return conn.execute(
                query.values(state=ArtifactState.PENDING.value, next_attempt_at=now)
            ).rowcount

    def count_artifacts(self) -> int:
        """Every artifact, whatever its state."""
        with self._reading() as conn:
            return conn.execute(select(func.count()).select_from(artifacts)).scalar_one()

    def list_artifacts(self, prediction_ids: Sequence[str]) -> list[Artifact]:
        """The artifacts of these predictions, by prediction and position."""
        with self._reading() as conn:
            return artifacts_of(conn, prediction_ids)


def artifacts_of(conn: Connection, prediction_ids: Sequence[str]) -> list[Artifact]:
    rows = conn.execute(
        select(*(artifacts.c[name] for name in Artifact.__slots__))
        .where(artifacts.c.prediction_id.in_(prediction_ids))
        .order_by(artifacts.c.prediction_id, artifacts.c.position)
    ).mappings()
    return [_artifact(row) for row in rows]


def _artifact(row: RowMapping) -> Artifact:
    return Artifact(**{name: row[name] for name in Artifact.__slots__})


def archived_body(obj: dict[str, Any], stored: Sequence[Artifact]) -> dict[str, Any]:
    """The ``archived`` event's body: the prediction object and where its files went."""
    return {
        **obj,
        "artifacts": [
            {
                "source_url": a.source_url,
                "stored_url": a.stored_url,
                "sha256": a.sha256,
                "bytes": a.bytes,
                "content_type": a.content_type,
            }
            for a in stored
        ],
    }


def _wants_archived(
    conn: Connection, prediction_id: str, default_callbacks: Sequence[CallbackSpec]
) -> bool:
    """Whether a callback of the prediction (or a default one, attached when needed)
    asks for ``archived``: the event is opt-in, and building its body reads the whole
    prediction, so a file nobody waits for is recorded without it."""
    archived = Event.ARCHIVED.value
    if any(archived in spec.events for spec in default_callbacks):
        return True
    events = conn.execute(
        select(callbacks.c.events).where(callbacks.c.prediction_id == prediction_id)
    ).scalars()
    return any(archived in text.split(",") for text in events)


def _queue_archived(
    conn: Connection, prediction_id: str, now: datetime, default_callbacks: Sequence[CallbackSpec]
) -> int:
    """Queue ``archived`` when every artifact of the prediction is stored."""
    unfinished = conn.execute(
        select(func.count())
        .select_from(artifacts)
        .where(
            artifacts.c.prediction_id == prediction_id,
            artifacts.c.state != ArtifactState.STORED.value,
        )
    ).scalar_one()
    if unfinished:
        return 0
    files = artifacts_of(conn, [prediction_id])
    obj = prediction_object(conn, prediction_id)
    if obj is None:
        return 0
    batch = EventBatch(prediction_id, (Event.ARCHIVED.value,), archived_body(obj, files), now)
    queued = enqueue_deliveries(conn, [batch], default_callbacks)
    return sum(queued.pending.values())


__all__ = [
    "ArtifactOps",
    "FoundFiles",
    "archived_body",
    "artifacts_of",
    "queue_artifacts",
]
