"""Values as a person reads them in a terminal: ``3.2 s``, ``70 %``, ``12 s ago``,
``100,000``, ``1.5 MB``, a sparkline. Scripts get the exact values (piped, JSON, CSV)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

#: the eight heights of a sparkline, lowest first
BLOCKS = "▁▂▃▄▅▆▇█"


def seconds(value: float | None) -> str:
    """A duration: ``0.25 s``, ``3.2 s``, ``68 s``, ``4.5 min``, ``12 min``, ``3.1 h``, ``2 d``."""
    if value is None:
        return ""
    size = abs(value)
    if size == 0:
        return "0 s"
    if size < 1:
        return f"{value:.2f} s"
    if size < 10:
        return f"{value:.1f} s"
    if size < 120:
        return f"{value:.0f} s"
    if size < 600:
        return f"{value / 60:.1f} min"
    if size < 7200:
        return f"{value / 60:.0f} min"
    if size < 172_800:
        return f"{value / 3600:.1f} h"
    return f"{value / 86_400:.0f} d"


def span(value: float) -> str:
    """A whole number of the largest fitting unit, for relative times: ``12 s``,
    ``5 min``, ``3 h``, ``4 d``."""
    value = abs(value)
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value // 60:.0f} min"
    if value < 172_800:
        return f"{value // 3600:.0f} h"
    return f"{value // 86_400:.0f} d"


def ago(moment: datetime | None, now: datetime) -> str:
    """A moment relative to ``now``: ``12 s ago``, ``in 3 s``, ``now``."""
    if moment is None:
        return ""
    delta = (now - moment).total_seconds()
    if abs(delta) < 1:
        return "now"
    return f"{span(delta)} ago" if delta > 0 else f"in {span(delta)}"


def percent(ratio: float | None) -> str:
    """A ratio as a percentage: ``70 %``; one decimal near the ends (``99.5 %``)."""
    if ratio is None:
        return ""
    value = ratio * 100
    if 0 < value < 1 or 99 < value < 100:
        return f"{value:.1f} %"
    return f"{value:.0f} %"


def count(value: int | None) -> str:
    """A whole number with thousands separators: ``100,000``."""
    return "" if value is None else f"{value:,}"


def size(value: int | None) -> str:
    """A size in bytes, in decimal units: ``512 bytes``, ``12.5 kB``, ``1.5 MB``, ``2.1 GB``."""
    if value is None:
        return ""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value} byte{'' if value == 1 else 's'}"


def number(value: float | None) -> str:
    """A measurement, three significant places after the point at most: ``2.5``."""
    if value is None:
        return ""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.3f}".rstrip("0").rstrip(".")


def sparkline(counts: Sequence[int]) -> str:
    """One block per bucket, as high as its share of the fullest bucket; an empty
    bucket is a space, so a gap in the distribution shows."""
    top = max(counts, default=0)
    if top <= 0:
        return ""
    return "".join(
        " " if n <= 0 else BLOCKS[min(len(BLOCKS) - 1, (n * len(BLOCKS) - 1) // top)]
        for n in counts
    )
