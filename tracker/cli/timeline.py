"""`tracker show`'s timeline in a terminal: the states of a prediction as one bar
drawn to scale (the phases and their words are tracker.text.timeline's)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from tracker.domain import Status
from tracker.text.display import escape_line
from tracker.text.timeline import Phase, word

#: how each state is drawn in the bar (fill character, colour)
FILL = {Status.STARTING.value: ("░", "yellow"), Status.PROCESSING.value: ("█", "blue")}
OTHER_FILL = ("▒", "magenta")


def bar(found: Sequence[Phase], width: int) -> Text | None:
    """The states as one line ``width`` characters long, each as long as it lasted,
    named inside when the name fits (else its first letter); None when nothing lasted."""
    timed = [p for p in found if p.seconds]
    total = sum(p.seconds or 0.0 for p in timed)
    if not timed or total <= 0 or width < len(timed):
        return None
    cells = _shares([p.seconds or 0.0 for p in timed], width)
    line = Text()
    for phase, cells_of in zip(timed, cells, strict=True):
        fill, colour = FILL.get(phase.status, OTHER_FILL)
        name = escape_line(word(phase))  # an unknown status is upstream text
        if cells_of >= len(name) + 2:
            line.append(name, style=f"bold {colour}")
            line.append(" " + fill * (cells_of - len(name) - 1), style=colour)
        else:
            line.append(name[0], style=f"bold {colour}")
            line.append(fill * (cells_of - 1), style=colour)
    return line


def _shares(seconds: Sequence[float], width: int) -> list[int]:
    """``width`` cells shared out in proportion, every state getting at least one
    (largest remainders first, so that the cells add up to ``width`` exactly)."""
    total = sum(seconds)
    spare = width - len(seconds)
    exact = [s / total * spare for s in seconds]
    cells = [1 + int(e) for e in exact]
    by_remainder = sorted(range(len(seconds)), key=lambda i: exact[i] - int(exact[i]), reverse=True)
    for index in by_remainder[: width - sum(cells)]:
        cells[index] += 1
    return cells
