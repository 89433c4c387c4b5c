"""Queueing artifacts with the answer that revealed them, in the writer's transaction
(``tracker.store.observations``): a pending row per output file not known yet, the first
few inserted already claimed for the writing daemon's archiver (``ArchiveHandoff``)."""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from tracker.domain import ArtifactJob, ArtifactState
from tracker.store.base import insert_ignore
from tracker.store.tables import artifacts
from tracker.timeparse import utcnow

#: output files found per prediction: ``(prediction_id, ((position, url), ...), seen_at)``
FoundFiles = tuple[str, Sequence[tuple[int, str]], datetime]


@dataclass(frozen=True)
class ArchiveHandoff:
    """New artifacts the writing daemon's archiver downloads itself: the first
    ``limit`` files of a write are inserted already claimed (``owner``, leased for
    ``lease`` from the write), so no claim query stands between finding a file and
    fetching it. The claim is the same as ``claim_artifacts`` makes: another daemon
    skips them, and a killed daemon's lease runs out."""

    owner: str
    lease: timedelta
    limit: int


@dataclass
class QueuedArtifacts:
    """What ``queue_artifacts`` added: how many rows, and those handed off (claimed)."""

    added: int = 0
    handed_off: list[ArtifactJob] = field(default_factory=list)

    @property
    def left(self) -> int:
        """New artifacts left for a claim (not handed off)."""
        return self.added - len(self.handed_off)


@functools.cache
def _adding(dialect: str) -> Any:
    """The insert of new artifacts, built once per engine (it runs with every write
    that finds files)."""
    return insert_ignore(dialect, artifacts).returning(
        artifacts.c.id, artifacts.c.prediction_id, artifacts.c.position, artifacts.c.claimed_by
    )


def queue_artifacts(
    conn: Connection,
    found: Iterable[FoundFiles],
    handoff: ArchiveHandoff | None = None,
    removed: Collection[str] = (),
) -> QueuedArtifacts:
    """Add a pending artifact for each file not known yet (in the caller's transaction).
    With ``handoff``, the first ``handoff.limit`` files go in claimed for its owner and
    come back as jobs (``removed``: predictions whose output the upstream removed)."""
    files: dict[tuple[str, int], tuple[str, datetime]] = {}
    for prediction_id, positions, seen_at in found:
        for position, url in positions:  # the first sighting is the one kept
            files.setdefault((prediction_id, position), (url, seen_at))
    rows: list[dict[str, Any]] = [
        {
            "prediction_id": prediction_id,
            "position": position,
            "source_url": url,
            "state": ArtifactState.PENDING.value,
            "created_at": seen_at,
            "next_attempt_at": seen_at,
            "claimed_by": None,
        }
        for (prediction_id, position), (url, seen_at) in files.items()
    ]
    if not rows:
        return QueuedArtifacts()
    if handoff is not None and handoff.limit > 0:
        lease_until = utcnow() + handoff.lease
        for row in rows[: handoff.limit]:
            row.update(claimed_by=handoff.owner, next_attempt_at=lease_until)
    new = conn.execute(_adding(conn.dialect.name), rows).all()
    result = QueuedArtifacts(added=len(new))
    for id_, prediction_id, position, claimed_by in sorted(new):
        if claimed_by is not None:
            url, seen_at = files[(prediction_id, position)]
            removed_ = prediction_id in removed
            job = ArtifactJob(id_, prediction_id, position, url, 0, seen_at, removed_)
            result.handed_off.append(job)
    return result
