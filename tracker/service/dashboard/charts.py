"""The dashboard's charts, drawn on the server as SVG: the geometry is worked out
here, ``templates/_chart.html`` writes it out. Every bar has a ``<title>`` (what a
pointer or a screen reader gets) and the charts carry text labels and a table of
their numbers, so that none of it depends on telling colours apart. Colours come
from CSS classes (``c-succeeded``…), never from the data.

- ``hourly``: predictions finished per UTC hour over the last 24 hours, stacked by
  final status.
- ``run_times``: run time p50 and p95 per model (a bar to p95 with p50 marked in it).
- ``phase_segments``: one prediction's states as a bar, each as long as it lasted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tracker.domain import Status
from tracker.text import human
from tracker.text.display import escape_line
from tracker.text.timeline import Phase, duration

#: the final statuses the hourly chart stacks, bottom first
STACKED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELED, Status.ABORTED)
HOURS = 24
#: characters of a model name shown beside its bars (the <title> has all of it)
MODEL_CHARS = 48


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    css: str  #: a class of the stylesheet
    title: str


@dataclass(frozen=True, slots=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "middle"  #: start, middle or end
    css: str = "label"


@dataclass(frozen=True, slots=True)
class Rule:
    """A horizontal or vertical grid line."""

    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    width: int
    height: int
    rects: list[Rect] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  #: (css class, words)
    head: list[str] = field(default_factory=list)  #: the table of its numbers
    rows: list[list[str]] = field(default_factory=list)
    empty: str | None = None  #: said instead when there is nothing to draw


@dataclass(frozen=True, slots=True)
class Segment:
    """One state of a prediction's bar, in percent of its width."""

    x: float
    width: float
    css: str
    title: str


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value``."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= value * (1 - 1e-9))


# -- completions per hour ---------------------------------------------------------------

_H_LEFT, _H_TOP, _H_PLOT_W, _H_PLOT_H, _H_BOTTOM = 40.0, 18.0, 456.0, 150.0, 24.0


def hour_start(now: datetime) -> datetime:
    """The first hour the chart shows: 23 hours before the current one."""
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)


def hourly(found: Iterable[tuple[datetime, str, int]], now: datetime) -> Chart:
    """``(hour, status, predictions)`` rows as 24 stacked bars, the current hour last."""
    first = hour_start(now)
    counts: list[dict[str, int]] = [{} for _ in range(HOURS)]
    for hour, status, n in found:
        index = int((hour - first).total_seconds() // 3600)
        if 0 <= index < HOURS:
            counts[index][status] = counts[index].get(status, 0) + n
    top = max((sum(c.values()) for c in counts), default=0)
    chart = Chart(
        title="Predictions finished per hour, last 24 hours (UTC), by final status",
        width=int(_H_LEFT + _H_PLOT_W + 8),
        height=int(_H_TOP + _H_PLOT_H + _H_BOTTOM),
        legend=[(f"c-{s.value}", s.value) for s in STACKED],
        head=["hour (UTC)", *(s.value for s in STACKED), "in all"],
    )
    if top == 0:
        return _with_empty(chart, "No prediction finished in the last 24 hours.")
    scale = nice_ceiling(top)
    _count_axis(chart, scale)
    step = _H_PLOT_W / HOURS
    for index, by_status in enumerate(counts):
        hour = first + timedelta(hours=index)
        _hour_bar(chart, index, hour, by_status, scale, step)
        if index % 3 == 0:
            x, y = _H_LEFT + (index + 0.5) * step, _H_TOP + _H_PLOT_H + 16
            css = "label" if index % 6 == 0 else "label minor"  # minor: hidden when narrow
            chart.labels.append(Label(x, y, f"{hour:%H}:00", css=css))
    return chart


def _hour_bar(
    chart: Chart,
    index: int,
    hour: datetime,
    by_status: Mapping[str, int],
    scale: float,
    step: float,
) -> None:
    span = f"{hour:%H}:00 to {(hour + timedelta(hours=1)):%H}:00 UTC"
    x, width = _H_LEFT + index * step + 1.5, step - 3
    bottom = _H_TOP + _H_PLOT_H
    for status in STACKED:
        n = by_status.get(status.value, 0)
        if n:
            height = n / scale * _H_PLOT_H
            bottom -= height
            title = f"{span}: {n:,} {status.value}"
            chart.rects.append(Rect(x, bottom, width, height, f"c-{status.value}", title))
    total = sum(by_status.values())
    if total:
        label = Label(x + width / 2, bottom - 4, f"{total:,}", css="label small minor")
        chart.labels.append(label)
    row = [f"{hour:%Y-%m-%d %H}:00", *(f"{by_status.get(s.value, 0):,}" for s in STACKED)]
    chart.rows.append([*row, f"{total:,}"])


def _count_axis(chart: Chart, scale: float) -> None:
    """Grid lines and labels at 0, half and all of ``scale`` (whole numbers only)."""
    for fraction in (0.0, 0.5, 1.0):
        value = scale * fraction
        if value != int(value):
            continue  # counts are whole numbers
        y = _H_TOP + _H_PLOT_H - fraction * _H_PLOT_H
        chart.rules.append(Rule(_H_LEFT, y, _H_LEFT + _H_PLOT_W, y))
        chart.labels.append(Label(_H_LEFT - 6, y + 4, f"{int(value):,}", anchor="end"))


def _with_empty(chart: Chart, words: str) -> Chart:
    return Chart(
        chart.title, chart.width, chart.height, legend=chart.legend, head=chart.head, empty=words
    )


# -- run times per model ----------------------------------------------------------------

_R_LEFT, _R_WIDTH, _R_ROW, _R_TOP = 8.0, 330.0, 42.0, 8.0


def run_times(found: Sequence[Mapping[str, Any]]) -> Chart:
    """Rows of ``model``, ``predictions``, ``p50``, ``p95`` (seconds) as bars."""
    measured = [r for r in found if r.get("p95") is not None]
    chart = Chart(
        title="Run time per model (started to completed), predictions that succeeded"
        " in the last 24 hours",
        width=int(_R_LEFT + _R_WIDTH + 150),
        height=int(_R_TOP + max(1, len(measured)) * _R_ROW + 24),
        legend=[("c-p50", "p50 (median)"), ("c-p95", "p95")],
        head=["model", "predictions", "p50", "p95"],
    )
    if not measured:
        return _with_empty(chart, "No prediction succeeded in the last 24 hours.")
    scale = nice_ceiling(max(float(r["p95"]) for r in measured))
    for index, row in enumerate(measured):
        _model_bars(chart, index, row, scale)
    bottom = _R_TOP + len(measured) * _R_ROW
    for fraction in (0.0, 0.5, 1.0):
        x = _R_LEFT + fraction * _R_WIDTH
        chart.rules.append(Rule(x, _R_TOP, x, bottom))
        chart.labels.append(Label(x, bottom + 16, human.seconds(scale * fraction)))
    return chart


def _model_bars(chart: Chart, index: int, row: Mapping[str, Any], scale: float) -> None:
    name = escape_line(str(row["model"])) if row["model"] is not None else "(no model)"
    short = name if len(name) <= MODEL_CHARS else name[: MODEL_CHARS - 1] + "…"
    p50, p95, n = float(row["p50"]), float(row["p95"]), int(row["predictions"])
    words = f"p50 {human.seconds(p50)} · p95 {human.seconds(p95)}"
    title = f"{name}: {words} over {n:,} predictions"
    top = _R_TOP + index * _R_ROW
    chart.labels.append(Label(_R_LEFT, top + 13, short, anchor="start"))
    bar_y = top + 19
    chart.rects.append(Rect(_R_LEFT, bar_y, p95 / scale * _R_WIDTH, 16, "c-p95", title))
    chart.rects.append(Rect(_R_LEFT, bar_y + 4, p50 / scale * _R_WIDTH, 8, "c-p50", title))
    label_x = _R_LEFT + p95 / scale * _R_WIDTH + 6
    chart.labels.append(Label(label_x, bar_y + 12, words, anchor="start", css="label small"))
    chart.rows.append([name, f"{n:,}", human.seconds(p50), human.seconds(p95)])


# -- one prediction's states ------------------------------------------------------------


def phase_segments(found: Sequence[Phase]) -> list[Segment]:
    """The states that lasted, each as wide as its share of the whole time."""
    timed = [p for p in found if p.seconds]
    total = sum(p.seconds or 0.0 for p in timed)
    if total <= 0:
        return []
    segments, x = [], 0.0
    for phase in timed:
        width = (phase.seconds or 0.0) / total * 100
        status = escape_line(phase.status)
        css = f"c-{phase.status}" if phase.status in _KNOWN else "c-other"
        title = f"{status}: {duration(phase.seconds or 0.0)}"
        segments.append(Segment(round(x, 3), round(width, 3), css, title))
        x += width
    return segments


_KNOWN = frozenset(s.value for s in Status)
