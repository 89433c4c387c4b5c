"""How long a prediction spent in each state: its phases from the stored times, and
in words ("queued 4.2 s, ran 68 s, then succeeded"), for `tracker show` and the
dashboard alike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tracker.domain import Prediction, Status, Tracking, Transition, is_terminal

#: how each state is named in words
WORDS = {Status.STARTING.value: "queued", Status.PROCESSING.value: "ran"}
NOW_WORDS = {Status.STARTING.value: "queued", Status.PROCESSING.value: "running"}
#: where each status starts in the prediction's own upstream times
ROW_TIMES = (
    (Status.STARTING.value, "created_at"),
    (Status.PROCESSING.value, "started_at"),
)


@dataclass(frozen=True, slots=True)
class Phase:
    """One state and how long the prediction was in it (None: terminal, it stays)."""

    status: str
    began: datetime
    seconds: float | None
    current: bool = False  #: the state it is in now (or was last seen in)


def phases(
    prediction: Prediction, transitions: Sequence[Transition], *, now: datetime
) -> list[Phase]:
    """The states in order, each from the upstream time it began (``upstream_at``)
    where known, else when the tracker saw it (``observed_at``). States the tracker
    never saw (a prediction first seen finished) come from the row's upstream
    ``created_at`` and ``started_at`` when they are earlier than what it saw."""
    starts = [(t.to_status, t.upstream_at or t.observed_at) for t in transitions]
    if not starts:
        return []
    seen = {status for status, _ in starts}
    for status, column in reversed(ROW_TIMES):
        began = getattr(prediction, column)
        if status not in seen and began is not None and began < starts[0][1]:
            starts.insert(0, (status, began))
    last_status = starts[-1][0]
    if is_terminal(last_status):
        end = None
    elif prediction.tracking == Tracking.ACTIVE.value:
        end = now
    else:  # lost or forgotten: as last seen
        end = prediction.last_polled_at or now
    result = []
    for index, (status, began) in enumerate(starts):
        following = starts[index + 1][1] if index + 1 < len(starts) else end
        seconds = None if following is None else max((following - began).total_seconds(), 0.0)
        result.append(Phase(status, began, seconds, current=index == len(starts) - 1))
    return result


def in_words(found: Sequence[Phase], *, tracking: str) -> str:
    """``queued 4.2 s, ran 68 s, then succeeded (72 s in all)``; while it runs,
    ``queued 4.2 s, running for 12 s so far``."""
    if not found:
        return ""
    parts = []
    for phase in found:
        if phase.seconds is None:
            continue
        if phase.current:
            so_far = "so far" if tracking == Tracking.ACTIVE.value else "when last seen"
            parts.append(f"{word(phase)} for {duration(phase.seconds)} {so_far}")
        else:
            parts.append(f"{word(phase)} {duration(phase.seconds)}")
    last = found[-1]
    if last.seconds is None:  # terminal
        total = (last.began - found[0].began).total_seconds()
        ending = f"then {last.status}" if parts else last.status
        parts.append(f"{ending} ({duration(max(total, 0.0))} in all)" if parts else ending)
    return ", ".join(parts)


def word(phase: Phase) -> str:
    """``queued``, ``ran`` (``running`` while it does), or the status itself."""
    words = NOW_WORDS if phase.current else WORDS
    return words.get(phase.status, phase.status)


def in_state(phase: Phase) -> str:
    """How long it was in this state (``12 s so far`` for the current one); "" for a
    terminal state, which lasts."""
    if phase.seconds is None:
        return ""
    return duration(phase.seconds) + (" so far" if phase.current else "")


def duration(seconds: float) -> str:
    """``0.35 s``, ``4.2 s``, ``68 s``, ``12 min 5 s``, ``3 h 20 min``, ``2 d 4 h``."""
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 100:
        return f"{seconds:.0f} s"
    whole = round(seconds)
    for big, big_unit, small, small_unit in (
        (86400, "d", 3600, "h"),
        (3600, "h", 60, "min"),
        (60, "min", 1, "s"),
    ):
        if whole >= big:
            high, rest = divmod(whole, big)
            low = rest // small
            return f"{high} {big_unit} {low} {small_unit}" if low else f"{high} {big_unit}"
    return f"{whole} s"  # pragma: no cover (whole >= 100 always matches above)
