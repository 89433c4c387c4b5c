"""Waiting for a prediction to end (``Tracker.wait``, ``AsyncTracker.wait``): when to
give up, when it is over, how long to sleep before reading it again."""

from __future__ import annotations

import time

from tracker.domain import Prediction, Tracking, is_terminal
from tracker.exceptions import InvalidInput, NotTracked, WaitTimeout

#: how often ``wait`` reads the prediction again
WAIT_INTERVAL = 0.5  # seconds


def give_up_at(timeout: float | None, interval: float) -> float | None:
    """The monotonic time ``wait`` gives up at; InvalidInput for a bad timeout or interval."""
    for name, value in (("timeout", timeout), ("interval", interval)):
        if value is None and name == "timeout":
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e9:
            raise InvalidInput(f"{name} must be a number of seconds (got {value!r:.40})")
    if not interval > 0:
        raise InvalidInput("interval must be above 0 seconds")
    return None if timeout is None else time.monotonic() + timeout


def ended(prediction: Prediction) -> bool:
    """Whether ``wait`` is over: True at a terminal status, NotTracked when it never will be."""
    if is_terminal(prediction.status):
        return True
    if prediction.tracking in (Tracking.LOST, Tracking.FORGOTTEN):
        hint = " (`add` tracks it again)" if prediction.tracking == Tracking.FORGOTTEN else ""
        raise NotTracked(
            f"prediction {prediction.id!r} is {prediction.tracking}: it is no longer polled"
            f" and will not reach a terminal status{hint}"
        )
    return False


def pause(
    prediction: Prediction, timeout: float | None, give_up: float | None, interval: float
) -> float:
    """Seconds to sleep before reading again; WaitTimeout when the time is up."""
    if give_up is None:
        return interval
    left = give_up - time.monotonic()
    if left <= 0:
        status = prediction.status or "not seen yet"
        raise WaitTimeout(
            f"prediction {prediction.id!r} did not end within {timeout:g} s (status: {status!r})"
        )
    return min(interval, left)
