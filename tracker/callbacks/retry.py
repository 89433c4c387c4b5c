"""When to try a failed delivery again, and when to give up."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tracker.domain import DeliveryState, SendResult
from tracker.exceptions import ConfigError

#: seconds before each retry (modelled on Svix): 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
#: each wait is multiplied by a factor in [1 - RETRY_JITTER, 1 + RETRY_JITTER] (two-sided)
RETRY_JITTER = 0.1
#: the longest delay a retry schedule may hold (seconds: 7 days)
MAX_DELAY = 7 * 86400.0
#: the longest delay a receiver's Retry-After can impose on a retry (seconds: 10 h, the
#: longest wait of the default schedule)
MAX_DELIVERY_RETRY_AFTER = 36000.0


def parse_schedule(text: str) -> tuple[float, ...]:
    """`5,300,1800` → (5.0, 300.0, 1800.0); an empty list means no retries."""
    try:
        delays = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(
            f"invalid retry schedule {text!r}: expected comma-separated seconds"
        ) from None
    if not all(0 <= d <= MAX_DELAY for d in delays):  # also false for NaN
        raise ConfigError(
            f"invalid retry schedule {text!r}: each delay must be between 0 and {MAX_DELAY:g} s"
        )
    return delays


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
