"""The daemon's observer hook: what its parts tell whoever watches them (`tracker
serve`'s Prometheus metrics), as it happens.

The poller calls ``poll_done`` after each request to the upstream, the observation
writer ``transition`` for each status transition it wrote (polled or pushed), the
outbox ``callback_sent`` for each delivery a receiver accepted. The default,
``NO_OBSERVER``, does nothing. Calls come from the event loop and must return at
once: an observer counts, it never does I/O.
"""

from __future__ import annotations

from typing import Protocol

from tracker.exceptions import (
    UpstreamAuthError,
    UpstreamBadAnswer,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
)

#: the outcomes ``poll_done`` reports (the ``outcome`` label of tracker_polls_total)
POLL_OUTCOMES = ("answered", "not_found", "rate_limited", "auth_error", "bad_answer", "error")


class PollObserver(Protocol):
    def poll_done(self, outcome: str, seconds: float) -> None:
        """One request to the upstream ended (one of POLL_OUTCOMES) after ``seconds``."""

    def transition(self, to_status: str) -> None:
        """A prediction's status changed to ``to_status`` (written to the database)."""

    def callback_sent(self, kind: str, seconds: float) -> None:
        """A ``kind`` (webhook, email) delivery was accepted ``seconds`` after the
        event that caused it (its delivery row was written)."""


class NoObserver:
    """The observer when nobody watches."""

    def poll_done(self, outcome: str, seconds: float) -> None:
        pass

    def transition(self, to_status: str) -> None:
        pass

    def callback_sent(self, kind: str, seconds: float) -> None:
        pass


NO_OBSERVER: PollObserver = NoObserver()


def poll_outcome(result: object) -> str:
    """What a poll's result (an answer, or the UpstreamError it raised) counts as."""
    if not isinstance(result, UpstreamError):
        return "answered"
    for kind, name in (
        (UpstreamNotFound, "not_found"),
        (UpstreamRateLimited, "rate_limited"),
        (UpstreamAuthError, "auth_error"),
        (UpstreamBadAnswer, "bad_answer"),
    ):
        if isinstance(result, kind):
            return name
    return "error"
