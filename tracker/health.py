"""Is the tracker healthy? The one judgement that `tracker status` prints and `tracker
serve`'s ``/healthz`` answers: unhealthy when predictions are active and no daemon is
live, or when the most overdue poll is later than ``max_lag``; unknown when the
database cannot be read."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from tracker.config import LIVE_WITHIN_SECONDS
from tracker.exceptions import ConfigError, StoreError
from tracker.records import to_jsonable
from tracker.store.daemons import Health

#: schedule lag beyond which the tracker is unhealthy (seconds)
DEFAULT_MAX_LAG = 60.0


class HealthSource(Protocol):
    """``Store.health``."""

    def health(self, *, now: datetime, live_within: timedelta) -> Health: ...


def diagnose(health: Health, max_lag: float) -> list[str]:
    """What is wrong, one sentence per problem; empty when healthy."""
    problems = []
    if not health.live_daemons and health.active_predictions:
        problems.append(f"no live daemon, {health.active_predictions} predictions waiting")
    if health.schedule_lag > max_lag:
        problems.append(f"schedule lag {health.schedule_lag:.0f} s exceeds {max_lag:g} s")
    return problems


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judgement: ``healthy`` is True, False, or None when the database could not
    be read (``error`` says why; ``health`` is then None)."""

    healthy: bool | None
    problems: list[str]
    health: Health | None = None
    error: str | None = None

    def report(self) -> dict[str, Any]:
        """As JSON (`tracker status --format json`): ``healthy``, ``reachable``,
        ``error``, the fields of Health, ``schedule_lag`` and ``problems``."""
        report: dict[str, Any] = {
            "healthy": self.healthy,
            "reachable": self.health is not None,
            "error": self.error,
        }
        if self.health is not None:
            report.update(to_jsonable(asdict(self.health)))
            report["schedule_lag"] = self.health.schedule_lag
        report["problems"] = self.problems
        return report


def judge(
    source: HealthSource,
    *,
    now: datetime,
    max_lag: float = DEFAULT_MAX_LAG,
    live_within: float = LIVE_WITHIN_SECONDS,
) -> Verdict:
    """Read the database's state and judge it; a database that cannot be read (a
    StoreError or ConfigError) is an unknown verdict, not an exception."""
    try:
        health = source.health(now=now, live_within=timedelta(seconds=live_within))
    except (StoreError, ConfigError) as exc:
        return unknown(str(exc))
    problems = diagnose(health, max_lag)
    return Verdict(healthy=not problems, problems=problems, health=health)


def unknown(error: str) -> Verdict:
    """The database could not be read: health unknown."""
    return Verdict(healthy=None, problems=[error], error=error)
