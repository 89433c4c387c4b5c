"""Counters of one daemon's polls, for its log lines and heartbeats."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class PollStats:
    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    answers: int = 0
    changes: int = 0
    finished: int = 0
    errors: int = 0
    rate_limited: int = 0

    def summary(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (
            f"{self.requests} requests in {elapsed:.1f} s ({self.requests / elapsed:.1f}/s):"
            f" {self.answers} answers, {self.changes} with changes, {self.finished} finished,"
            f" {self.errors} errors, {self.rate_limited} rate-limited"
        )
