"""What the archive's commands read and ask for: the state of each prediction's files
(`tracker archive`), files to hurry, and the archive per model and day (`tracker
report archive`). `tracker archive ID...` claims through ``claim_artifacts`` with
``prediction_ids`` (``tracker.store.artifacts``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, func, select, update

from tracker.domain import ArtifactState
from tracker.store.base import StoreBase, batches
from tracker.store.reports import ReportFilter, Row, utc_day
from tracker.store.rollup import HOUR, Scope, day_text
from tracker.store.tables import artifact_rollup, artifacts, predictions

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
        """Per UTC day a file was found and per model: predictions, files, their
        states, bytes stored. From ``artifact_rollup`` for the whole registration hours
        the filter covers, from the rows for the partial hours at its edges; a label
        filter reads the rows of the predictions that carry the label."""
        if flt.labels:
            return self.report_archive_from_rows(flt)
        scope = Scope(since=flt.since, until=flt.until, model=flt.model)
        found: list[Row] = []
        with self._reading() as conn:
            hours = scope.whole_hours(artifact_rollup.c)
            if hours is not None:
                found += _rollup_rows(conn, hours)
            for edge in scope.edges(HOUR):
                found += _archive_rows(conn, self.dialect, [edge, *scope.model_condition()])
        return _sorted(_merged(found))

    def report_archive_from_rows(self, flt: ReportFilter) -> list[Row]:
        """``report_archive`` counted from the files of every prediction ``flt`` covers."""
        with self._reading() as conn:
            return _sorted(_merged(_archive_rows(conn, self.dialect, flt.conditions(predictions))))


_ROLLUP_COUNTS = ("predictions", "files", "stored", "failed", "pending", "stored_bytes")


def _archive_rows(conn: Connection, dialect: str, where: Sequence[Any]) -> list[Row]:
    """The report's rows counted from the files of the predictions ``where`` selects."""
    day = utc_day(dialect, artifacts.c.created_at).label("day")

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
        .where(*where)
        .group_by(day, predictions.c.model)
    )
    rows = [dict(r) for r in conn.execute(stmt).mappings()]
    for row in rows:
        row["model"] = row["model"] or None  # a model named '' counts as none, as in the rollup
        for name in _ROLLUP_COUNTS:
            row[name] = int(row[name] or 0)  # numeric on PostgreSQL, NULL never
    return rows


def _rollup_rows(conn: Connection, where: Sequence[Any]) -> list[Row]:
    """The report's rows from ``artifact_rollup``, of the keys ``where`` selects."""
    r = artifact_rollup.c
    sums = (func.sum(r[name]).label(name) for name in _ROLLUP_COUNTS)
    stmt = select(r.day, r.model, *sums).where(*where).group_by(r.day, r.model)
    return [
        {
            "day": day_text(row.day, is_day=True),
            "model": row.model or None,  # '' is the rollup's key for a missing model
            **{name: int(row[name]) for name in _ROLLUP_COUNTS},
        }
        for row in conn.execute(stmt).mappings()
    ]


def _merged(rows: Sequence[Row]) -> list[Row]:
    """Rows of the same day and model added up (the rollup's and the edges' count
    different predictions: each is registered in one hour)."""
    merged: dict[tuple[str, str | None], Row] = {}
    for row in rows:
        key = (row["day"], row["model"])
        if key in merged:
            for name in _ROLLUP_COUNTS:
                merged[key][name] += row[name]
        else:
            merged[key] = dict(row)
    return [row for row in merged.values() if row["files"]]


def _sorted(rows: list[Row]) -> list[Row]:
    """By day, then model (a missing model last), as the report prints them."""
    return sorted(rows, key=lambda row: (row["day"], row["model"] is None, row["model"] or ""))


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
