"""What the archive's commands read and ask for: the state of each prediction's files
(`tracker archive`), files to hurry, and the archive per model and day (`tracker
report archive`). `tracker archive ID...` claims through ``claim_artifacts`` with
``prediction_ids`` (``tracker.store.artifacts``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select, update

from tracker.domain import ArtifactState
from tracker.store.base import StoreBase, batches
from tracker.store.reports import ReportFilter, Row, utc_day
from tracker.store.tables import artifacts, predictions

#: IDs per IN list (both engines take far more; this keeps statements small)
ID_BATCH = 500

_STORED = ArtifactState.STORED.value
_FAILED = ArtifactState.FAILED.value
_PENDING = ArtifactState.PENDING.value


@dataclass(frozen=True, slots=True)
class ArchiveState:
    """Where one prediction's output files stand."""

    prediction_id: str
    files: int = 0
    stored: int = 0
    failed: int = 0
    pending: int = 0
    stored_bytes: int = 0
    #: the first file not stored that had a failed attempt: (position, last_error)
    problem: tuple[int, str] | None = None
    #: a pending file is claimed right now (a daemon, or another `tracker archive`)
    busy: bool = False


class ArchiveReportOps(StoreBase):
    """The archive's reads for commands and reports (mixed into ``Store``)."""

    def prediction_statuses(self, ids: Sequence[str]) -> dict[str, str | None]:
        """``{id: status}`` of the registered ones among ``ids``."""
        found: dict[str, str | None] = {}
        with self._reading() as conn:
            for chunk in batches(list(dict.fromkeys(ids)), ID_BATCH):
                query = select(predictions.c.id, predictions.c.status).where(
                    predictions.c.id.in_(chunk)
                )
                found.update((row.id, row.status) for row in conn.execute(query))
        return found

    def archive_states(self, ids: Sequence[str]) -> dict[str, ArchiveState]:
        """The state of the files of each of ``ids`` that has any."""
        columns = (
            artifacts.c.prediction_id,
            artifacts.c.position,
            artifacts.c.state,
            artifacts.c.bytes,
            artifacts.c.last_error,
            artifacts.c.claimed_by,
        )
        rows: list[Any] = []
        with self._reading() as conn:
            for chunk in batches(list(dict.fromkeys(ids)), ID_BATCH):
                query = (
                    select(*columns)
                    .where(artifacts.c.prediction_id.in_(chunk))
                    .order_by(artifacts.c.prediction_id, artifacts.c.position)
                )
                rows.extend(conn.execute(query))
        states: dict[str, ArchiveState] = {}
        for row in rows:
            states[row.prediction_id] = _counted(
                states.get(row.prediction_id) or ArchiveState(row.prediction_id), row
            )
        return states

    def unfinished_archive_ids(self) -> list[str]:
        """The predictions with a file not stored (pending or failed), by ID."""
        query = (
            select(artifacts.c.prediction_id)
            .where(artifacts.c.state != _STORED)
            .distinct()
            .order_by(artifacts.c.prediction_id)
        )
        with self._reading() as conn:
            return list(conn.execute(query).scalars())

    def hurry_artifacts(self, ids: Sequence[str], *, now: datetime) -> int:
        """Make the pending files of ``ids`` that wait for a retry due ``now`` (those
        claimed by someone are left alone); returns how many."""
        changed = 0
        with self._transaction() as conn:
            for chunk in batches(list(dict.fromkeys(ids)), ID_BATCH):
                changed += conn.execute(
                    update(artifacts)
                    .where(
                        artifacts.c.prediction_id.in_(chunk),
                        artifacts.c.state == _PENDING,
                        artifacts.c.claimed_by.is_(None),
                        artifacts.c.next_attempt_at > now,
                    )
                    .values(next_attempt_at=now)
                ).rowcount
        return changed

    def report_archive(self, flt: ReportFilter) -> list[Row]:
        """Per UTC day a file was found and per model: files, their states, bytes stored."""
        day = utc_day(self.dialect, artifacts.c.created_at).label("day")

        def count_state(state: str) -> Any:
            return func.sum(case((artifacts.c.state == state, 1), else_=0))

        stored_bytes = func.sum(case((artifacts.c.state == _STORED, artifacts.c.bytes), else_=0))
        stmt = (
            select(
                day,
                predictions.c.model,
                func.count(func.distinct(artifacts.c.prediction_id)).label("predictions"),
                func.count().label("files"),
                count_state(_STORED).label("stored"),
                count_state(_FAILED).label("failed"),
                count_state(_PENDING).label("pending"),
                stored_bytes.label("stored_bytes"),
            )
            .select_from(artifacts.join(predictions, predictions.c.id == artifacts.c.prediction_id))
            .where(*flt.conditions(predictions))
            .group_by(day, predictions.c.model)
            .order_by(day, predictions.c.model.nulls_last())
        )
        with self._reading() as conn:
            rows = [dict(r) for r in conn.execute(stmt).mappings()]
        for row in rows:
            for name in ("stored", "failed", "pending", "stored_bytes"):
                row[name] = int(row[name] or 0)  # numeric on PostgreSQL, NULL never
        return rows


def _counted(state: ArchiveState, row: Any) -> ArchiveState:
    """``state`` with one more file (rows come by position)."""
    stored, failed = row.state == _STORED, row.state == _FAILED
    pending = row.state == _PENDING
    problem = state.problem
    if problem is None and not stored and row.last_error:
        problem = (row.position, row.last_error)
    return ArchiveState(
        state.prediction_id,
        files=state.files + 1,
        stored=state.stored + stored,
        failed=state.failed + failed,
        pending=state.pending + pending,
        stored_bytes=state.stored_bytes + ((row.bytes or 0) if stored else 0),
        problem=problem,
        busy=state.busy or (pending and row.claimed_by is not None),
    )


__all__ = ["ID_BATCH", "ArchiveReportOps", "ArchiveState"]
