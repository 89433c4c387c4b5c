"""How far along a run is, read from the progress bars in its logs.

Most image and video models print a progress bar while they run: tqdm's
``45%|████▌     | 9/20 [00:02<00:02,  4.51it/s]`` (diffusers, most Cog models) or
a plain ``step 9/20 | 45% | 2.00 it/s``. From the newest such line the time the
run still needs follows, and the adaptive scheduler polls shortly before then
instead of all the way through the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: a counter ``done/total`` on a line that also shows a percentage or a rate
_COUNTER = re.compile(r"(?<![\d/])(\d{1,7})\s*/\s*(\d{1,7})(?![\d/])")
_PROGRESS_MARK = re.compile(r"\d\s*%|it/s|s/it")
_ITERATIONS_PER_SECOND = re.compile(r"(\d+(?:\.\d+)?)\s*it/s")
_SECONDS_PER_ITERATION = re.compile(r"(\d+(?:\.\d+)?)\s*s/it")
#: only the end of the logs is read: the newest bar is all that matters
_TAIL_CHARS = 2_000
#: a run must be at least this far along before its pace says anything
MIN_FRACTION = 0.05


@dataclass(frozen=True, slots=True)
class Progress:
    """The newest progress line: steps done of total, and the rate it shows (steps
    per second), if any."""

    done: int
    total: int
    rate: float | None = None


def newest_progress(logs: str) -> Progress | None:
    """The newest progress line of ``logs``, or None."""
    tail = logs[-_TAIL_CHARS:]
    # tqdm redraws its bar on one line with carriage returns.
    for line in reversed(re.split(r"[\r\n]+", tail)):
        if not _PROGRESS_MARK.search(line):
            continue
        for match in reversed(list(_COUNTER.finditer(line))):
            done, total = int(match.group(1)), int(match.group(2))
            if 0 < done <= total:
                return Progress(done, total, _rate(line))
    return None


def fraction_done(logs: str) -> float | None:
    """The fraction of the run done by its newest progress line, or None."""
    progress = newest_progress(logs)
    return None if progress is None else progress.done / progress.total


def remaining_seconds(logs: str, run_seconds: float) -> float | None:
    """Seconds the run still needs, or None when its logs show no progress yet.

    By the rate the bar shows when it shows one (it describes this bar alone, so a
    second stage with its own bar is not mistaken for a slow first one), else by
    the pace since the run started (``run_seconds``). A bar moves in whole steps,
    so the run may be up to a step further than it shows: the estimate assumes
    the next step is about to finish, which errs towards polling early (a poll
    too early costs one request, one too late costs detection time).
    """
    progress = newest_progress(logs)
    if progress is None or progress.done / progress.total < MIN_FRACTION:
        return None
    left = max(0, progress.total - progress.done - 1)
    if progress.rate:
        return left / progress.rate
    if run_seconds <= 0:
        return None
    return run_seconds * left / (progress.done + 1)


def _rate(line: str) -> float | None:
    """Steps per second from ``4.51it/s`` or ``3.30s/it``; None when absent or zero."""
    if match := _ITERATIONS_PER_SECOND.search(line):
        rate = float(match.group(1))
        return rate or None
    if match := _SECONDS_PER_ITERATION.search(line):
        seconds = float(match.group(1))
        return 1 / seconds if seconds else None
    return None
