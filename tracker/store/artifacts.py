"""Archived outputs: claiming due downloads, recording what became of each, and listing
them. Artifacts are queued with the answer that revealed them
(``tracker.store.artifact_queue``, named here too).

An artifact is position N of prediction P's output (unique together), so however
often an output is seen, by however many daemons, it is one row and one file.
``claimed_by`` with ``next_attempt_at`` is the claim and its lease, as for
deliveries: a daemon killed mid-download leaves a claim that expires, and the
download starts again from the beginning under the same key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, func, select, update

from tracker.domain import Artifact, ArtifactJob, ArtifactState, CallbackSpec
from tracker.events import Event
from tracker.store.artifact_queue import (
    ArchiveHandoff,
    FoundFiles,
    QueuedArtifacts,
    queue_artifacts,
)
from tracker.store.base import StoreBase
from tracker.store.enqueue import EventBatch, enqueue_deliveries, prediction_object
from tracker.store.tables import artifacts, callbacks, predictions

_JOB_COLUMNS = (
    artifacts.c.id,
    artifacts.c.prediction_id,
    artifacts.c.position,
    artifacts.c.source_url,
    artifacts.c.attempts,
    artifacts.c.created_at,
    predictions.c.data_removed,
)


@dataclass(frozen=True)
class StoredFile:
    """A download that ended with the file in the archive, to be recorded."""

    job: ArtifactJob
    stored_url: str
    bytes: int
    sha256: str
    content_type: str | None
    #: when the file was in place in the archive (None: when it is recorded)
    stored_at: datetime | None = None


class ArtifactOps(StoreBase):
    """The archive's operations (mixed into ``Store``)."""

    def add_artifacts(self, found: Sequence[FoundFiles]) -> int:
        """Queue the files of outputs found outside an answer (`tracker archive`)."""
        with self._transaction() as conn:
            return queue_artifacts(conn, found).added

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
        """Record one file in the archive (``artifacts_stored`` for one)."""
        done = StoredFile(job, stored_url, size, sha256, content_type)
        kept, queued = self.artifacts_stored(
            [done], owner=owner, now=now, default_callbacks=default_callbacks
        )
        return kept[0], queued

    def artifacts_stored(
        self,
        done: Sequence[StoredFile],
        *,
        owner: str,
        now: datetime,
        default_callbacks: Sequence[CallbackSpec] = (),
    ) -> tuple[list[bool], int]:
        """Record files in the archive, all in one transaction (group commit). Returns
        whether each claim was still held (a file whose claim was lost is not
        recorded), and the deliveries queued: when a prediction's last file is stored,
        its ``archived`` event is queued in the same transaction, exactly once."""
        if not done:
            return [], 0
        ids = sorted({d.job.id for d in done})
        prediction_ids = sorted({d.job.prediction_id for d in done})
        with self._transaction() as conn:
            wanted = _wanting_archived(conn, prediction_ids, default_callbacks)
            if wanted:
                # A prediction's files are recorded under its row lock, so exactly one
                # transaction sees them all stored (PostgreSQL; SQLite has one writer).
                conn.execute(
                    select(predictions.c.id)
                    .where(predictions.c.id.in_(sorted(wanted)))
                    .order_by(predictions.c.id)
                    .with_for_update()
                )
            # The rows still claimed by this owner, locked (in ID order) until the end.
            held = set(
                conn.execute(
                    select(artifacts.c.id)
                    .where(artifacts.c.id.in_(ids), artifacts.c.claimed_by == owner)
                    .order_by(artifacts.c.id)
                    .with_for_update()
                ).scalars()
            )
            params = [
                {
                    "a_id": d.job.id,
                    "a_url": d.stored_url,
                    "a_bytes": d.bytes,
                    "a_sha256": d.sha256,
                    "a_type": d.content_type,
                    "a_at": d.stored_at or now,
                    "owner": owner,
                }
                for d in sorted(done, key=lambda d: d.job.id)
                if d.job.id in held
            ]
            if params:
                conn.execute(_RECORD_STORED, params)
            finished = sorted({d.job.prediction_id for d in done if d.job.id in held} & wanted)
            queued = sum(_queue_archived(conn, p, now, default_callbacks) for p in finished)
        return [d.job.id in held for d in done], queued

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


#: marks one artifact stored, if its claim is still this owner's (executemany)
_RECORD_STORED = (
    update(artifacts)
    .where(artifacts.c.id == bindparam("a_id"), artifacts.c.claimed_by == bindparam("owner"))
    .values(
        state=ArtifactState.STORED.value,
        stored_url=bindparam("a_url"),
        bytes=bindparam("a_bytes"),
        sha256=bindparam("a_sha256"),
        content_type=bindparam("a_type"),
        stored_at=bindparam("a_at"),
        attempts=artifacts.c.attempts + 1,
        last_error=None,
        next_attempt_at=None,
        claimed_by=None,
    )
)


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


def _wanting_archived(
    conn: Connection, prediction_ids: Sequence[str], default_callbacks: Sequence[CallbackSpec]
) -> set[str]:
    """The predictions with a callback (or a default one, attached when needed) that
    asks for ``archived``: the event is opt-in, and building its body reads the whole
    prediction, so a file nobody waits for is recorded without it."""
    archived = Event.ARCHIVED.value
    if any(archived in spec.events for spec in default_callbacks):
        return set(prediction_ids)
    rows = conn.execute(
        select(callbacks.c.prediction_id, callbacks.c.events).where(
            callbacks.c.prediction_id.in_(prediction_ids)
        )
    )
    return {pid for pid, events in rows if archived in events.split(",")}


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
    "ArchiveHandoff",
    "ArtifactOps",
    "FoundFiles",
    "QueuedArtifacts",
    "StoredFile",
    "archived_body",
    "artifacts_of",
    "queue_artifacts",
]
