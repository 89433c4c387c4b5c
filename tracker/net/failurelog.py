"""Failures of one endpoint, logged as a group instead of one line per attempt.

A webhook receiver that is down fails every delivery to it, and an upstream that
is down fails every poll: one line each would bury everything else. Per endpoint
(a webhook URL, a mail address, the upstream API) the log gets:

- the first failure, at once, with its error and what it was about;
- then at most one line per interval while it keeps failing, with a count
  ("37 more failures in the last 60 s (last: connection refused to …)") and, for
  callbacks, how many deliveries were given up;
- a line when it works again ("recovered after 38 failures over 75 s").

An endpoint that recovered and fails again within one interval is not announced
again at once: its failures go into the next interval line, so one that flaps
costs at most two lines an interval. Every attempt is still logged on its own at
DEBUG by its caller, with the prediction ID.

Endpoints are named as ``display`` gives them (masked: no password, path or query
values); the key that tells them apart is never logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: an endpoint whose failures stopped without a success is forgotten after this many
#: quiet intervals (its episode then ends without a "recovered" line)
FORGET_AFTER_INTERVALS = 10


@dataclass
class _Episode:
    kind: str  #: "webhook", "email", "upstream"
    display: str  #: the endpoint, masked
    started: float
    recovers: bool  #: a success of this endpoint ends the episode with a line
    announced: bool = False  #: a line about this episode was logged
    failures: int = 0  #: in the whole episode
    unreported: int = 0  #: since the last line
    given_up: int = 0  #: deliveries given up since the last line
    last_error: str = ""
    quiet_intervals: int = 0

    @property
    def name(self) -> str:
        return f"{self.kind} {self.display}"


class FailureLog:
    """Groups the failures of each endpoint (see the module docstring)."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._interval = interval
        self._clock = clock
        self._episodes: dict[tuple[str, str], _Episode] = {}
        #: endpoints that recovered lately: a new failure is not announced before this
        self._quiet_until: dict[tuple[str, str], float] = {}
        self._flushed = clock()

    @property
    def failing(self) -> list[str]:
        """The endpoints failing now, as logged."""
        return [e.name for e in self._episodes.values()]

    def failed(
        self,
        kind: str,
        key: str,
        error: str,
        *,
        display: str,
        about: str = "",
        given_up: bool = False,
        recovers: bool = True,
        **fields: Any,
    ) -> None:
        """One failed attempt of endpoint ``key`` (shown as ``display``); ``about``
        says what the attempt was for (in the first line only); ``fields`` go into
        that line's record (``extra``)."""
        now = self._clock()
        episode = self._episodes.get((kind, key))
        if episode is None:
            episode = _Episode(kind, display, now, recovers)
            self._episodes[kind, key] = episode
            if now >= self._quiet_until.get((kind, key), 0.0):
                episode.failures, episode.last_error, episode.announced = 1, error, True
                self._first(episode, error, about, given_up, fields)
                return
        episode.failures += 1
        episode.unreported += 1
        episode.given_up += given_up
        episode.last_error = error
        episode.quiet_intervals = 0

    def succeeded(self, kind: str, key: str) -> None:
        """A successful attempt: ends the endpoint's episode, if it has one."""
        if not self._episodes:
            return
        episode = self._episodes.pop((kind, key), None)
        if episode is None:
            return
        now = self._clock()
        self._quiet_until[kind, key] = now + self._interval
        if not episode.announced:
            return  # its failures were never logged as a group: nothing to close
        self._log.info(
            "%s recovered after %d %s over %s",
            episode.name,
            episode.failures,
            "failure" if episode.failures == 1 else "failures",
            _seconds(now - episode.started),
            extra={
                "kind": episode.kind,
                "endpoint": episode.display,
                "failures": episode.failures,
                "duration_s": round(now - episode.started, 3),
            },
        )

    def flush(self) -> None:
        """The interval lines: one per endpoint that failed since the last flush."""
        now = self._clock()
        elapsed, self._flushed = now - self._flushed, now
        for key, episode in list(self._episodes.items()):
            if episode.unreported:
                self._interval_line(episode, min(elapsed, now - episode.started))
                episode.unreported = episode.given_up = 0
                episode.announced = True
            else:
                episode.quiet_intervals += 1
                limit = FORGET_AFTER_INTERVALS if episode.recovers else 1
                if episode.quiet_intervals >= limit:
                    del self._episodes[key]
        self._quiet_until = {k: t for k, t in self._quiet_until.items() if t > now}

    # -- the lines -------------------------------------------------------------------

    def _first(
        self, episode: _Episode, error: str, about: str, given_up: bool, fields: dict[str, Any]
    ) -> None:
        level = logging.ERROR if given_up else logging.WARNING
        self._log.log(
            level,
            "%s failing: %s%s",
            episode.name,
            error,
            f" ({about})" if about else "",
            extra={
                "kind": episode.kind,
                "endpoint": episode.display,
                "error": error,
                "failures": 1,
                "given_up": int(given_up),
                **fields,
            },
        )

    def _interval_line(self, episode: _Episode, elapsed: float) -> None:
        count = episode.unreported
        more = "more " if episode.announced else ""
        noun = "failure" if count == 1 else "failures"
        again = "" if episode.announced else " again"
        given_up = ""
        if episode.given_up:
            what = "delivery" if episode.given_up == 1 else "deliveries"
            given_up = f"; {episode.given_up} {what} given up"
            given_up += " (tracker deliveries list --state dead)"
        self._log.log(
            logging.ERROR if episode.given_up else logging.WARNING,
            "%s failing%s: %d %s%s in the last %s (last: %s)%s",
            episode.name,
            again,
            count,
            more,
            noun,
            _seconds(elapsed),
            episode.last_error,
            given_up,
            extra={
                "kind": episode.kind,
                "endpoint": episode.display,
                "error": episode.last_error,
                "failures": count,
                "given_up": episode.given_up,
                "interval_s": round(elapsed, 3),
            },
        )


def _seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
