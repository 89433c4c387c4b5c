"""How far along a run is, read from the progress bars in its logs.

Most image and video models print a progress bar while they run: tqdm's
``45%|████▌     | 9/20 [00:02<00:02,  4.51it/s]`` (diffusers, most Cog models) or
a plain ``step 9/20 | 45% | 2.00 it/s``. From the newest such line and the time
the run has taken so far, the time it still needs follows, and the adaptive
scheduler polls shortly before then instead of all the way through the run.
"""

from __future__ import annotations

import re

#: a counter ``done/total`` on a line that also shows a percentage or a rate
_COUNTER = re.compile(r"(?<![\d/])(\d{1,7})\s*/\s*(\d{1,7})(?![\d/])")
_PROGRESS_MARK = re.compile(r"\d\s*%|it/s|s/it")
#: only the end of the logs is read: the newest bar is all that matters
_TAIL_CHARS = 2_000
#: a run must be at least this far along before its pace says anything
MIN_FRACTION = 0.05


def steps_done(logs: str) -> tuple[int, int] | None:
    """(done, total) from the newest progress line, or None."""
    tail = logs[-_TAIL_CHARS:]
    # tqdm redraws its bar on one line with carriage returns.
    for line in reversed(re.split(r"[\r\n]+", tail)):
        if not _PROGRESS_MARK.search(line):
            continue
        for match in reversed(list(_COUNTER.finditer(line))):
            done, total = int(match.group(1)), int(match.group(2))
            if 0 < done <= total:
                return done, total
    return None


def fraction_done(logs: str) -> float | None:
    """The fraction of the run done by its newest progress line, or None."""
    steps = steps_done(logs)
    return None if steps is None else steps[0] / steps[1]


def remaining_seconds(logs: str, run_seconds: float) -> float | None:
    """Seconds the run still needs at the pace it has kept so far, or None when the
    logs show no progress yet (or ``run_seconds`` makes no sense).

    A bar moves in whole steps, so the run may be up to a step further than it
    shows; the estimate assumes the next step is about to finish, which errs
    towards polling early rather than late (a poll too early costs one request,
    one too late costs detection time).
    """
    steps = steps_done(logs)
    if run_seconds <= 0 or steps is None:
        return None
    done, total = steps
    if done / total < MIN_FRACTION:
        return None
    if done == total:
        return 0.0
    ahead = (done + 1) / total
    return run_seconds * (1 - ahead) / ahead
