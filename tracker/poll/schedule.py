"""When to poll a prediction next."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tracker.domain import NextPoll
from tracker.poll.runtimes import RunWindow

#: how much the interval grows after each answer that changed nothing
GROWTH = 1.5
#: the longest wait after repeated poll errors (seconds)
ERROR_BACKOFF_CAP = 300.0
#: poll jitter: each wait is multiplied by a factor in [1 - POLL_JITTER, 1] (one-sided)
POLL_JITTER = 0.1
#: with a progress bar, wait this share of the time the run still needs: a run that
#: speeds up is caught by the next poll, which measures its pace again
PROGRESS_LEAD = 0.75
#: past the longest run a model has had, wait this share of the overrun: a run twice
#: as long as any before is seen at most a quarter later (and poll-max at the most)
OVERRUN_SHARE = 0.25


@dataclass(frozen=True)
class PollPolicy:
    """Poll soon after a change, back off while nothing happens.

    ``poll_min`` is both the delay before the first poll and the shortest
    interval; the interval grows by ``GROWTH`` per unchanged answer up to
    ``poll_max``. Jitter spreads predictions registered together so they do
    not stay in lockstep.
    """

    poll_min: float = 1.0
    poll_max: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def after_answer(
        self,
        *,
        previous_interval: float | None,
        changed: bool,
        terminal: bool,
        now: datetime,
        elapsed: float | None = None,
        likely: RunWindow | None = None,
        remaining: float | None = None,
    ) -> NextPoll:
        """The next poll after an answer.

        With ``remaining`` (the seconds the run still needs, from its progress
        bar), the next poll comes a little before the run should end; each poll
        measures again, so the polls close in on the end.

        Otherwise, with ``likely`` (the model's run-time window) and ``elapsed``
        (seconds into the run, counted from the same moment as the window: the
        run's start, or its creation while the start is unknown), polls go where
        completions happen: one poll when the window opens (its 5th percentile),
        every ``poll_min`` inside it (to its 95th percentile), the usual backoff
        after it, and past the longest run seen at least ``OVERRUN_SHARE`` of the
        overrun (up to poll-max) even while the answers change: a run that hangs is
        still seen to end, without a request every second for it.
        """
        if terminal:
            return NextPoll(at=None, interval=None)
        if remaining is not None:
            wait = min(self.poll_max, max(self.poll_min, remaining * PROGRESS_LEAD))
            return NextPoll(at=now + timedelta(seconds=wait), interval=self.poll_min)
        if likely is not None and elapsed is not None:
            if elapsed < likely.opens:
                wait = min(self.poll_max, max(self.poll_min, likely.opens - elapsed))
                return NextPoll(at=now + timedelta(seconds=wait), interval=self.poll_min)
            if elapsed <= likely.closes:
                return self._at(now, self.poll_min)
        if changed or previous_interval is None:
            interval = self.poll_min
        else:
            interval = min(self.poll_max, max(self.poll_min, previous_interval * GROWTH))
        if likely is not None and elapsed is not None and elapsed > likely.longest:
            overrun = OVERRUN_SHARE * (elapsed - likely.longest)
            interval = max(interval, min(self.poll_max, overrun))
        return self._at(now, interval)

    def after_error(
        self, *, consecutive_errors: int, now: datetime, pushed: bool = False
    ) -> NextPoll:
        """Exponential backoff with jitter, per prediction; never sooner than poll-max
        for a prediction the upstream pushes (see ``safety_net``)."""
        base = min(ERROR_BACKOFF_CAP, self.poll_min * 2 ** min(consecutive_errors, 20))
        delay = max(self.poll_min, base * self.rng.uniform(0.5, 1.0))
        if pushed:
            delay = max(delay, self.poll_max)
        return NextPoll(at=now + timedelta(seconds=delay), interval=None)

    def safety_net(self, *, now: datetime, terminal: bool) -> NextPoll:
        """The next poll of a prediction the upstream pushes (it has pushed it before):
        the pushes say when it changes, so it is polled only every ``poll_max``, in
        case a push is lost. No jitter: the pushes already spread them."""
        if terminal:
            return NextPoll(at=None, interval=None)
        return NextPoll(at=now + timedelta(seconds=self.poll_max), interval=self.poll_max)

    def after_pause(self, *, until: datetime, previous_interval: float | None) -> NextPoll:
        """Wait out a pause (Retry-After) without changing the prediction's own rhythm."""
        spread = self.rng.uniform(0.0, min(1.0, self.poll_min))
        return NextPoll(at=until + timedelta(seconds=spread), interval=previous_interval)

    def _at(self, now: datetime, interval: float) -> NextPoll:
        wait = max(self.poll_min, interval * self.rng.uniform(1.0 - POLL_JITTER, 1.0))
        return NextPoll(at=now + timedelta(seconds=wait), interval=interval)
