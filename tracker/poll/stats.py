"""Counters of one daemon's polls and deliveries, for its log lines and heartbeats.

``PollStats`` counts since the start (the heartbeat's poll count, the line the
daemon says when it stops). ``IntervalSummary`` makes the periodic summary line
from the counts since the previous one, so its rates say how the daemon does
now, not on average since it started; it ends with the state of the database
(active predictions, deliveries pending and dead, the schedule lag).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

#: the counters of PollStats, in the order the summary names them
POLL_COUNTERS = ("requests", "answers", "changes", "finished", "errors", "rate_limited")


@dataclass
class PollStats:
    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    answers: int = 0
    changes: int = 0
    finished: int = 0
    errors: int = 0
    rate_limited: int = 0
    #: what the latest failed poll said (``last_error`` of its prediction)
    last_error: str | None = None

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in POLL_COUNTERS}

    def summary(self) -> str:
        """The whole run so far."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (
            f"{self.requests} requests in {elapsed:.1f} s ({self.requests / elapsed:.1f}/s):"
            f" {self.answers} answers, {self.changes} with changes, {self.finished} finished,"
            f" {self.errors} errors, {self.rate_limited} rate-limited"
        )

    def failed_polls(self) -> int:
        """Polls sent that brought no accepted answer."""
        return self.requests - self.answers


class Snapshot(Protocol):
    """The state of the database the summary ends with (``Store.health`` gives it)."""

    @property
    def active_predictions(self) -> int: ...

    @property
    def pending_deliveries(self) -> int: ...

    @property
    def dead_deliveries(self) -> int: ...

    @property
    def schedule_lag(self) -> float: ...


class IntervalSummary:
    """The periodic summary line: what happened since the previous one."""

    def __init__(
        self,
        stats: PollStats,
        deliveries: Callable[[], Mapping[str, int]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``deliveries`` gives the outbox's counters since the start: ``delivered``,
        ``failed_attempts``, ``given_up`` (and the archiver's ``archived`` and
        ``archive_failed`` when there is one)."""
        self._stats = stats
        self._deliveries = deliveries
        self._clock = clock
        self._since = clock()
        self._previous = self._totals()

    def _totals(self) -> dict[str, int]:
        return {**self._stats.counts(), **self._deliveries()}

    def take(self, snapshot: Snapshot | None, in_flight: int) -> tuple[str, dict[str, Any]]:
        """The line and its fields (``extra``) for the interval ending now; the next
        interval starts now. ``snapshot`` is None when the database could not say."""
        now = self._clock()
        elapsed, self._since = max(now - self._since, 1e-9), now
        totals = self._totals()
        d = {name: totals[name] - self._previous.get(name, 0) for name in totals}
        self._previous = totals
        rate = d["requests"] / elapsed
        text = (
            f"last {elapsed:.0f} s: {d['requests']} polls ({rate:.1f}/s), {d['answers']} answers,"
            f" {d['changes']} with changes, {d['finished']} finished, {d['errors']} errors,"
            f" {d['rate_limited']} rate-limited; callbacks: {d['delivered']} delivered,"
            f" {d['failed_attempts']} failed attempts, {d['given_up']} given up"
        )
        if "archived" in d:  # the archiver's counters, when TRACKER_ARCHIVE_URL is set
            text += f"; archive: {d['archived']} files stored, {d['archive_failed']} given up"
        fields: dict[str, Any] = {
            "interval_s": round(elapsed, 3),
            "polls": d["requests"],
            "polls_per_s": round(rate, 2),
            **{name: d[name] for name in POLL_COUNTERS[1:]},
            "delivered": d["delivered"],
            "failed_attempts": d["failed_attempts"],
            "given_up": d["given_up"],
            "in_flight": in_flight,
        }
        if "archived" in d:
            fields.update(archived=d["archived"], archive_failed=d["archive_failed"])
        if snapshot is None:
            return f"{text}; now: {in_flight} polls in flight, database unavailable", fields
        text += (
            f"; now: {snapshot.active_predictions} active, {in_flight} polls in flight,"
            f" {snapshot.pending_deliveries} deliveries pending, {snapshot.dead_deliveries}"
            f" dead, schedule lag {snapshot.schedule_lag:.1f} s"
        )
        fields.update(
            active=snapshot.active_predictions,
            deliveries_pending=snapshot.pending_deliveries,
            deliveries_dead=snapshot.dead_deliveries,
            schedule_lag_s=round(snapshot.schedule_lag, 3),
        )
        return text, fields
