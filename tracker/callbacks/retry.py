"""When to try a failed delivery again, and when to give up."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tracker.config import DEFAULT_RETRY_SCHEDULE
from tracker.domain import DeliveryState, SendResult
from tracker.settingtypes import MAX_DELAY, parse_schedule

# the schedule's default and parser live below the settings table (tracker.config reads
# TRACKER_RETRY_SCHEDULE with them); named here too, next to the policy that follows them
__all__ = [
    "DEFAULT_RETRY_SCHEDULE",
    "MAX_DELAY",
    "MAX_DELIVERY_RETRY_AFTER",
    "RETRY_JITTER",
    "RetryPolicy",
    "parse_schedule",
]

#: each wait is multiplied by a factor in [1 - RETRY_JITTER, 1 + RETRY_JITTER] (two-sided)
RETRY_JITTER = 0.1
#: the longest delay a receiver's Retry-After can impose on a retry (seconds: 10 h, the
#: longest wait of the default schedule)
MAX_DELIVERY_RETRY_AFTER = 36000.0


@dataclass(frozen=True)
class RetryPolicy:
    schedule: Sequence[float] = DEFAULT_RETRY_SCHEDULE
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def after(
        self, result: SendResult, *, attempts_before: int, now: datetime
    ) -> tuple[DeliveryState, datetime | None]:
        """The delivery's state after an attempt, and when to try again if pending."""
        if result.ok:
            return DeliveryState.DELIVERED, None
        if result.permanent or attempts_before >= len(self.schedule):
            return DeliveryState.DEAD, None
        factor = self.rng.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)
        delay = self.schedule[attempts_before] * factor
        if result.retry_after is not None:
            delay = max(delay, min(result.retry_after, MAX_DELIVERY_RETRY_AFTER))
        return DeliveryState.PENDING, now + timedelta(seconds=delay)
