"""The overview's numbers: read in one go in a worker thread, and cached.

Its counts and charts come from the reports' rollup (tracker/store/rollup.py): a read
costs the rollup's rows of the hours shown and the active predictions, not a pass over
every prediction. A read serves every page for FRESH_SECONDS; after that the next page
still gets it at once (up to STALE_SECONDS old) while one new read runs in the
background, so the overview and its live refresh never wait for a read once the first
is done; the list, which only needs the counts for its "about N", never waits at all
(``peek``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from tracker.domain import ArtifactState, Status, Tracking
from tracker.health import Verdict, judge
from tracker.service.dashboard.charts import hour_start
from tracker.store.dashboard import NO_STATUS, DashboardQueries, PredictionFilter
from tracker.store.reports import ReportFilter
from tracker.store.store import Store
from tracker.timeparse import utcnow

log = logging.getLogger(__name__)

#: seconds a read serves the pages as it is
FRESH_SECONDS = 5.0
#: seconds a read may still serve a page while a new one runs (older: the page waits)
STALE_SECONDS = 120.0
#: the window of the charts
CHART_HOURS = 24
#: models in the run time chart, and suggested in the list's model filter
CHART_MODELS = 8
SUGGESTED_MODELS = 50
#: dead deliveries listed on the overview
DEAD_LISTED = 10

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class OverviewState:
    read_at: datetime
    verdict: Verdict
    #: (status or None, tracking) -> predictions
    counts: dict[tuple[str | None, str], int]
    artifacts: dict[str, int]
    hourly: list[tuple[datetime, str, int]]
    run_times: list[dict[str, Any]]
    dead: list[dict[str, Any]]
    models: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def about(self, flt: PredictionFilter) -> int | None:
        """How many predictions a filter of status and tracking matched at the read;
        None for the other filters (they are not counted)."""
        if not flt.only_counted:
            return None
        status = None if flt.status == NO_STATUS else flt.status
        return sum(
            n
            for (s, t), n in self.counts.items()
            if (not flt.status or s == status) and (not flt.tracking or t == flt.tracking)
        )

    def by_status(self) -> list[tuple[str | None, dict[str, int], int]]:
        """``(status, {tracking: predictions}, in all)``: known statuses first."""
        order = [s.value for s in Status]
        statuses = {s for s, _ in self.counts}
        ranked = sorted(statuses, key=lambda s: (s is None, s not in order, _rank(order, s), s))
        return [
            (
                status,
                {t: n for (s, t), n in self.counts.items() if s == status},
                sum(n for (s, _), n in self.counts.items() if s == status),
            )
            for status in ranked
        ]

    def by_tracking(self) -> dict[str, int]:
        totals = {t.value: 0 for t in Tracking}
        for (_, tracking), n in self.counts.items():
            totals[tracking] = totals.get(tracking, 0) + n
        return totals


def _rank(order: list[str], status: str | None) -> int:
    return order.index(status) if status in order else len(order)


def read_overview(store: Store, queries: DashboardQueries) -> OverviewState:
    """Everything the overview shows, read now (blocking: run it in a thread)."""
    now = utcnow()
    verdict = judge(store, now=now)
    counts = {
        (row["status"], row["tracking"]): int(row["predictions"])
        for row in store.report_status(ReportFilter())
    }
    # both charts: the 24 UTC hours up to the current one (the rollup counts by hour)
    first_hour = hour_start(now)
    health = verdict.health
    pending = health.pending_artifacts if health else 0
    failed = health.failed_artifacts if health else 0
    files = store.count_artifacts()
    return OverviewState(
        read_at=now,
        verdict=verdict,
        counts=counts,
        artifacts={
            ArtifactState.STORED.value: max(0, files - pending - failed),
            ArtifactState.PENDING.value: pending,
            ArtifactState.FAILED.value: failed,
        },
        hourly=queries.completions_by_hour(since=first_hour),
        run_times=queries.run_times(since=first_hour, models=CHART_MODELS),
        dead=queries.dead_deliveries(limit=DEAD_LISTED),
        models=queries.model_names(limit=SUGGESTED_MODELS),
    )


class Cached(Generic[T]):
    """A value read by a blocking function, kept FRESH_SECONDS and refreshed in the
    background while it is younger than STALE_SECONDS."""

    def __init__(
        self,
        read: Callable[[], T],
        *,
        fresh: float = FRESH_SECONDS,
        stale: float = STALE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read, self._fresh, self._stale, self._clock = read, fresh, stale, clock
        self._value: tuple[float, T] | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def get(self) -> T:
        if self._value is not None:
            read_at, value = self._value
            age = self._clock() - read_at
            if age < self._fresh:
                return value
            if age < self._stale:
                self.refresh_soon()
                return value
        return await self._refresh()

    def peek(self) -> T | None:
        """The value if one was read (even stale), never waiting: a read starts in the
        background when it is missing or not fresh."""
        if self._value is None or self._clock() - self._value[0] >= self._fresh:
            self.refresh_soon()
        return None if self._value is None else self._value[1]

    def refresh_soon(self) -> None:
        """Start a read in the background unless one is running."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._refresh_quietly(), name="dashboard-overview")

    async def _refresh_quietly(self) -> None:
        try:
            await self._refresh()
        except Exception as exc:  # the page that next waits for a read says it
            log.warning("dashboard: the overview could not be read: %s", exc)

    async def _refresh(self) -> T:
        async with self._lock:
            if self._value is not None and self._clock() - self._value[0] < self._fresh:
                return self._value[1]  # another read finished while this one waited
            value = await asyncio.to_thread(self._read)
            self._value = (self._clock(), value)
            return value

    async def close(self) -> None:
        """Wait for a read in the background (a thread cannot be interrupted)."""
        if self._task is not None:
            await self._task
