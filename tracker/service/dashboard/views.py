"""What one prediction's page shows, worked out from its ``PredictionDetail`` with the
words and rules of ``tracker show`` (``tracker.cli.timeline``, the logs' tail): the
timeline, the logs with the newest progress bar as their last line, the archived
files and which of them a page may show as an image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tracker.domain import Artifact, ArtifactState, PredictionDetail, Tracking
from tracker.poll.progress import newest_progress
from tracker.service.dashboard.charts import Segment, phase_segments
from tracker.text import timeline
from tracker.text.display import escape_line, escape_text

#: log lines a page shows (the whole text is a link away)
LOG_LINES = 200
#: content types shown inline as images; every other file is a download
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})


@dataclass(frozen=True, slots=True)
class TimelineRow:
    observed_at: datetime
    from_status: str | None
    to_status: str
    upstream_at: datetime | None
    in_state: str


@dataclass(frozen=True, slots=True)
class ProgressLine:
    """The newest progress bar of the logs: steps done of total, the rate as text."""

    done: int
    total: int
    rate: str

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total)


@dataclass(frozen=True, slots=True)
class LogView:
    lines: list[str]  #: the shown lines, control characters escaped
    hidden: int  #: earlier lines not shown
    total: int  #: lines in all
    chars: int
    chunks: int
    progress: ProgressLine | None


@dataclass(frozen=True, slots=True)
class Timeline:
    rows: list[TimelineRow]
    words: str
    segments: list[Segment]


def active(detail: PredictionDetail) -> bool:
    """Whether the page still changes by itself (the prediction is being polled)."""
    return detail.prediction.tracking == Tracking.ACTIVE.value


def timeline_of(detail: PredictionDetail, now: datetime) -> Timeline:
    """The transitions with the time spent in each state, in words and as a bar."""
    p = detail.prediction
    found = timeline.phases(p, detail.transitions, now=now)
    of_transitions = found[len(found) - len(detail.transitions) :]
    rows = [
        TimelineRow(
            t.observed_at, t.from_status, t.to_status, t.upstream_at, timeline.in_state(phase)
        )
        for t, phase in zip(detail.transitions, of_transitions, strict=True)
    ]
    words = escape_line(timeline.in_words(found, tracking=p.tracking))
    return Timeline(rows, words, phase_segments(found))


def logs_of(detail: PredictionDetail, shown: int = LOG_LINES) -> LogView:
    """The last ``shown`` lines of the logs as a terminal would show them (a line
    redrawn with carriage returns shows its last drawing), every other control
    character escaped; the newest progress bar apart, as the last line."""
    logs = detail.prediction.logs
    lines = [_as_drawn(line) for line in logs.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    total = len(lines)
    progress = _progress(logs)
    if progress is not None and lines and newest_progress(lines[-1]) is not None:
        lines.pop()  # drawn as the progress bar instead
    kept = lines[-shown:] if shown else []
    return LogView(
        lines=[escape_text(line) for line in kept],
        hidden=len(lines) - len(kept),
        total=total,
        chars=len(logs),
        chunks=len(detail.logs),
        progress=progress,
    )


def _as_drawn(line: str) -> str:
    """What a terminal shows of a line redrawn with ``\\r``: its last drawing."""
    if "\r" not in line:
        return line
    drawings = [part for part in line.split("\r") if part]
    return drawings[-1] if drawings else ""


def _progress(logs: str) -> ProgressLine | None:
    found = newest_progress(logs)
    if found is None:
        return None
    rate = "" if found.rate is None else _rate_text(found.rate)
    return ProgressLine(found.done, found.total, rate)


def _rate_text(rate: float) -> str:
    if rate >= 1:
        return f"{rate:.2f} it/s"
    return f"{1 / rate:.2f} s/it"


def full_logs(detail: PredictionDetail) -> str:
    """The whole logs as ``tracker show --logs all`` prints them."""
    return escape_text(detail.prediction.logs)


def images(artifacts: Sequence[Artifact]) -> list[Artifact]:
    """The stored files a page shows as images (the others are downloads)."""
    return [a for a in artifacts if stored(a) and is_image(a.content_type)]


def stored(artifact: Artifact) -> bool:
    return artifact.state == ArtifactState.STORED.value


def is_image(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() in IMAGE_TYPES
