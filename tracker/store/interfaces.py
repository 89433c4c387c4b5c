"""What the layers above the store depend on: narrow interfaces, not the Store.

The daemon's poller needs a ``PollQueue``, the outbox a ``DeliveryQueue``, the
daemon's own life a ``DaemonRegistry``; the CLI (and the service) read through
a ``Reader``. ``tracker.store.store.Store`` implements them all on SQLite and
PostgreSQL; a test can hand any of these layers a small fake instead.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from tracker.domain import (
    ArtifactJob,
    CallbackSpec,
    Delivery,
    DeliveryJob,
    DeliveryState,
    NextPoll,
    ObservationUpdate,
    Prediction,
    PredictionDetail,
    PredictionState,
    SendResult,
)

if TYPE_CHECKING:
    from tracker.store.artifact_queue import ArchiveHandoff
    from tracker.store.artifacts import StoredFile
    from tracker.store.enqueue import Handoff
    from tracker.store.observations import Applied
    from tracker.store.retention import PruneResult


class PollQueue(Protocol):
    """Due predictions in, what their polls found out."""

    def claim_due(
        self,
        *,
        now: datetime,
        limit: int,
        owner: str,
        lease_until: datetime,
        include_unpolled: bool = False,
    ) -> list[PredictionState]: ...

    def claimed_state(self, prediction_id: str, owner: str) -> PredictionState | None: ...

    def release_claims(self, owner: str | None, *, now: datetime) -> int: ...

    def apply_observations(
        self,
        items: Sequence[tuple[ObservationUpdate, NextPoll, str | None]],
        *,
        default_callbacks: Sequence[CallbackSpec] = (),
        handoff: Handoff | None = None,
        archive: bool = False,
        archive_handoff: ArchiveHandoff | None = None,
    ) -> Applied: ...

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
    ) -> None: ...

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
    ) -> bool: ...

    def reschedule(
        self,
        prediction_id: str,
        *,
        next_poll: NextPoll,
        owner: str | None,
        detail: str | None = None,
        attempted_at: datetime | None = None,
    ) -> None: ...

    def recent_run_times(self, *, limit: int = 20_000) -> dict[str, list[float]]: ...


class DeliveryQueue(Protocol):
    """Due callback deliveries in, the result of every attempt out."""

    def claim_deliveries(
        self,
        *,
        now: datetime,
        limit: int,
        owner: str,
        lease_until: datetime,
        kinds: Sequence[str] = ("webhook", "email"),
        skip_targets: Sequence[str] = (),
        per_target: int | None = None,
    ) -> list[DeliveryJob]: ...

    def record_attempt(
        self,
        job: DeliveryJob,
        result: SendResult,
        *,
        attempted_at: datetime,
        state: DeliveryState,
        next_attempt_at: datetime | None,
        owner: str,
    ) -> bool: ...

    def release_deliveries(self, owner: str | None, *, now: datetime) -> int: ...


class ArtifactQueue(Protocol):
    """Due artifacts in, what became of each download out (``tracker.store.artifacts``)."""

    def claim_artifacts(
        self, *, now: datetime, limit: int, owner: str, lease_until: datetime
    ) -> list[ArtifactJob]: ...

    def extend_artifact_leases(
        self, owner: str, ids: Sequence[int], *, lease_until: datetime
    ) -> None: ...

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
    ) -> tuple[bool, int]: ...

    def artifacts_stored(
        self,
        done: Sequence[StoredFile],
        *,
        owner: str,
        now: datetime,
        default_callbacks: Sequence[CallbackSpec] = (),
    ) -> tuple[list[bool], int]: ...

    def artifact_not_stored(
        self, job: ArtifactJob, *, owner: str, error: str, next_attempt_at: datetime | None
    ) -> bool: ...

    def release_artifacts(self, owner: str | None, *, now: datetime) -> int: ...

    def next_artifact_due(self) -> datetime | None: ...


class DaemonRegistry(Protocol):
    """A daemon's own life: who runs, heartbeats, when there is nothing left to do."""

    def register_daemon(
        self,
        *,
        name: str,
        host: str,
        pid: int,
        version: str,
        now: datetime,
        live_within: timedelta,
        pid_alive: Callable[[int], bool] = ...,
        quiet_for: timedelta | None = None,
    ) -> None: ...

    def heartbeat(
        self,
        name: str,
        *,
        now: datetime,
        polls: int,
        lease_until: datetime,
        in_flight: Collection[str] = (),
    ) -> None: ...

    def mark_stopped(self, name: str, *, now: datetime, polls: int) -> None: ...

    def count_active(self) -> int: ...

    def next_delivery_due(self, kinds: Sequence[str] = ("webhook", "email")) -> datetime | None: ...

    def prune_batches(
        self,
        *,
        cutoff: datetime,
        keep_logs: bool = False,
        delete_predictions: bool = False,
        dry_run: bool = False,
        batch_size: int = ...,
    ) -> Iterator[PruneResult]: ...


class DaemonStore(PollQueue, DeliveryQueue, ArtifactQueue, DaemonRegistry, Protocol):
    """Everything one daemon process uses."""


class Reader(Protocol):
    """What the CLI and the service read: predictions and their deliveries."""

    def list_predictions(
        self,
        *,
        statuses: Sequence[str] = (),
        active_only: bool = False,
        model: str | None = None,
        limit: int | None = None,
    ) -> list[Prediction]: ...

    def list_columns(
        self,
        columns: Sequence[str],
        *,
        statuses: Sequence[str] = (),
        active_only: bool = False,
        model: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]: ...

    def get_detail(self, prediction_id: str) -> PredictionDetail | None: ...

    def list_deliveries(
        self,
        *,
        states: Sequence[str] = (),
        prediction_id: str | None = None,
        limit: int | None = None,
        with_history: bool = False,
    ) -> list[Delivery]: ...
