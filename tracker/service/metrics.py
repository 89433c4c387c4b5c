"""``GET /metrics``: Prometheus text exposition, from a registry of this app's own.

Two kinds of metric:

- read from the database when scraped (``DatabaseCollector``; one read serves every
  scrape for CACHE_SECONDS, so a scrape stays cheap however often it comes):
  ``tracker_predictions{tracking,status}`` and ``tracker_deliveries{state}``
  (rows now), ``tracker_schedule_lag_seconds`` (how late the most overdue poll
  is), ``tracker_live_daemons`` and ``tracker_database_up`` (0 when it could not
  be read: the other database metrics are then left out);
- counted by the daemon in this process (``Metrics`` is its observer, see
  ``tracker.observer``): ``tracker_polls_total{outcome}``,
  ``tracker_transitions_total{to_status}``, ``tracker_poll_duration_seconds`` and
  ``tracker_callback_latency_seconds{kind}`` (histograms). Without the daemon
  (``--no-daemon``) they are there, at zero.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from tracker.config import LIVE_WITHIN_SECONDS
from tracker.domain import ArtifactState, DeliveryState, Status
from tracker.exceptions import ConfigError, StoreError
from tracker.observer import POLL_OUTCOMES
from tracker.service.context import SERVICE, Service
from tracker.store.deliveries import DeliveryQuery
from tracker.store.reports import ReportFilter
from tracker.store.store import Store
from tracker.timeparse import utcnow

#: one database read serves the scrapes of this many seconds
CACHE_SECONDS = 5.0
#: how long a scrape waits for another scrape's database read before it answers
#: from the last result
LOCK_WAIT_SECONDS = 2.0
#: seconds of tracker_poll_duration_seconds' buckets
POLL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: seconds of tracker_callback_latency_seconds' buckets (retries take minutes, hours)
CALLBACK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0, 3600.0, 36000.0)
#: the status label of predictions not polled successfully yet (status NULL)
NO_STATUS = "none"


class Metrics:
    """The registry of one application, and the daemon's observer
    (``tracker.observer.PollObserver``) that counts into it."""

    def __init__(self, store: Store | None = None, *, cache_seconds: float = CACHE_SECONDS):
        self.registry = CollectorRegistry()
        self.polls = Counter(
            "tracker_polls",
            "Requests to the upstream, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.transitions = Counter(
            "tracker_transitions",
            "Status transitions written, by new status.",
            ["to_status"],
            registry=self.registry,
        )
        self.poll_duration = Histogram(
            "tracker_poll_duration_seconds",
            "Seconds each request to the upstream took.",
            buckets=POLL_BUCKETS,
            registry=self.registry,
        )
        self.callback_latency = Histogram(
            "tracker_callback_latency_seconds",
            "Seconds from an event (its delivery written) to a receiver accepting it.",
            ["kind"],
            buckets=CALLBACK_BUCKETS,
            registry=self.registry,
        )
        # Every known label value from the start, so that the series exist at zero.
        for outcome in POLL_OUTCOMES:
            self.polls.labels(outcome)
        for status in Status:
            self.transitions.labels(status.value)
        for kind in ("webhook", "email"):
            self.callback_latency.labels(kind)
        if store is not None:
            self.registry.register(DatabaseCollector(store, cache_seconds=cache_seconds))

    # -- PollObserver ------------------------------------------------------------------

    def poll_done(self, outcome: str, seconds: float) -> None:
        self.polls.labels(outcome).inc()
        self.poll_duration.observe(seconds)

    def transition(self, to_status: str) -> None:
        self.transitions.labels(to_status).inc()

    def callback_sent(self, kind: str, seconds: float) -> None:
        self.callback_latency.labels(kind).observe(max(0.0, seconds))

    # -- exposition --------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text format (reads the database when the cache is stale: call it in a
        worker thread)."""
        return generate_latest(self.registry)


@dataclass(frozen=True, slots=True)
class DatabaseState:
    """What the gauges show, read in one go."""

    predictions: dict[tuple[str, str], int]  #: (tracking, status) -> rows
    deliveries: dict[str, int]  #: state -> rows
    schedule_lag: float
    live_daemons: int
    #: state -> rows: output files of the archive (TRACKER_ARCHIVE_URL)
    artifacts: dict[str, int] = field(default_factory=dict)


def read_state(store: Store) -> DatabaseState:
    """The database's state, through the store's own reads (those of `tracker status`
    and `tracker report status`)."""
    now = utcnow()
    health = store.health(now=now, live_within=timedelta(seconds=LIVE_WITHIN_SECONDS))
    counted = {
        (row["tracking"], row["status"] or NO_STATUS): int(row["predictions"])
        for row in store.report_status(ReportFilter())
    }
    total = store.count_listed_deliveries(DeliveryQuery())
    pending, dead = health.pending_deliveries, health.dead_deliveries
    deliveries = {
        DeliveryState.PENDING.value: pending,
        DeliveryState.DEAD.value: dead,
        DeliveryState.DELIVERED.value: max(0, total - pending - dead),
    }
    pending_files, failed_files = health.pending_artifacts, health.failed_artifacts
    files = store.count_artifacts()
    artifacts = {
        ArtifactState.PENDING.value: pending_files,
        ArtifactState.FAILED.value: failed_files,
        ArtifactState.STORED.value: max(0, files - pending_files - failed_files),
    }
    return DatabaseState(
        counted, deliveries, health.schedule_lag, len(health.live_daemons), artifacts
    )


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time, cached for ``cache_seconds``."""

    def __init__(
        self,
        store: Store,
        *,
        cache_seconds: float = CACHE_SECONDS,
        read: Callable[[Store], DatabaseState] = read_state,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._cache_seconds = cache_seconds
        self._read = read
        self._clock = clock
        self._lock = threading.Lock()  # one read at a time; the others use its result
        self._cached: tuple[float, DatabaseState | None] | None = None

    def describe(self) -> Iterator[Metric]:
        return iter(())  # what collect() yields depends on the database

    def _state(self) -> DatabaseState | None:
        # A read that hangs (a database that stopped answering) holds the lock: the
        # scrapes behind it wait LOCK_WAIT_SECONDS, then answer from the last result
        # (or database_up 0) instead of piling up threads on it.
        if not self._lock.acquire(timeout=LOCK_WAIT_SECONDS):
            return None if self._cached is None else self._cached[1]
        try:
            return self._read_or_cached()
        finally:
            self._lock.release()

    def _read_or_cached(self) -> DatabaseState | None:
        now = self._clock()
        if self._cached is not None and now - self._cached[0] < self._cache_seconds:
            return self._cached[1]
        try:
            state: DatabaseState | None = self._read(self._store)
        except (StoreError, ConfigError):
            state = None
        self._cached = (self._clock(), state)
        return state

    def collect(self) -> Iterator[Metric]:
        state = self._state()
        up = GaugeMetricFamily(
            "tracker_database_up", "1 when the database could be read for these metrics."
        )
        up.add_metric([], 0 if state is None else 1)
        yield up
        if state is None:
            return
        predictions = GaugeMetricFamily(
            "tracker_predictions",
            "Predictions in the database, by tracking state and last upstream status.",
            labels=["tracking", "status"],
        )
        for (tracking, status), count in sorted(state.predictions.items()):
            predictions.add_metric([tracking, status], count)
        yield predictions
        deliveries = GaugeMetricFamily(
            "tracker_deliveries", "Callback deliveries in the database, by state.", labels=["state"]
        )
        for name, count in sorted(state.deliveries.items()):
            deliveries.add_metric([name], count)
        yield deliveries
        artifacts = GaugeMetricFamily(
            "tracker_artifacts",
            "Output files of the archive (TRACKER_ARCHIVE_URL), by state.",
            labels=["state"],
        )
        for name, count in sorted(state.artifacts.items()):
            artifacts.add_metric([name], count)
        yield artifacts
        yield GaugeMetricFamily(
            "tracker_schedule_lag_seconds",
            "Seconds the most overdue poll is late (0 when none is).",
            value=state.schedule_lag,
        )
        yield GaugeMetricFamily(
            "tracker_live_daemons",
            "Daemons that sent a heartbeat recently.",
            value=state.live_daemons,
        )


def add_routes(app: web.Application, service: Service) -> None:
    app.router.add_get("/metrics", metrics_endpoint)


async def metrics_endpoint(request: web.Request) -> web.Response:
    metrics = request.app[SERVICE].metrics
    body = await asyncio.to_thread(metrics.exposition)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
