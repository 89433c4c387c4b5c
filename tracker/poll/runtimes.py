"""What the daemon has learned about each model's run times."""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from typing import NamedTuple

#: run times remembered per model (the most recent ones)
WINDOW = 500
#: no prediction is made for a model with fewer samples than this
MIN_SAMPLES = 20
#: the quantiles bounding the window where completions are likely
LOW_QUANTILE, HIGH_QUANTILE = 0.05, 0.95


class RunWindow(NamedTuple):
    """Where a model's runs end, in seconds from their start: the likely window
    (``opens``, ``closes``: its 5th and 95th percentile) and the longest run seen."""

    opens: float
    closes: float
    longest: float = math.inf


def quantile(sorted_values: list[float], q: float) -> float:
    """percentile_cont: linear interpolation between the two nearest ranks."""
    position = q * (len(sorted_values) - 1)
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


class _Samples:
    """The recent durations of one kind, per model, and the window they give."""

    def __init__(self, window: int, min_samples: int) -> None:
        self._values: defaultdict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self._windows: dict[str, RunWindow | None] = {}
        self._min_samples = min_samples

    def add(self, model: str, seconds: float) -> None:
        if seconds >= 0:
            self._values[model].append(seconds)
            self._windows.pop(model, None)

    def window(self, model: str | None) -> RunWindow | None:
        if model is None or model not in self._values:
            return None
        if model not in self._windows:
            values = sorted(self._values[model])
            self._windows[model] = (
                RunWindow(
                    quantile(values, LOW_QUANTILE), quantile(values, HIGH_QUANTILE), values[-1]
                )
                if len(values) >= self._min_samples
                else None
            )
        return self._windows[model]


class RunTimes:
    """Per model, from recent predictions: seconds from creation to completion (what
    the database gives at start-up), and from ``started_at`` to completion (learned
    as predictions end), which leaves out the time queued."""

    def __init__(self, *, window: int = WINDOW, min_samples: int = MIN_SAMPLES) -> None:
        self._total = _Samples(window, min_samples)
        self._processing = _Samples(window, min_samples)

    def load(self, samples: Mapping[str, Iterable[float]]) -> None:
        """Creation-to-completion seconds per model, oldest first."""
        for model, values in samples.items():
            for value in values:
                self.add(model, value)

    def add(self, model: str, seconds: float, *, processing: float | None = None) -> None:
        """One finished run: ``seconds`` from creation, ``processing`` from its start."""
        self._total.add(model, seconds)
        if processing is not None:
            self._processing.add(model, processing)

    def likely_window(self, model: str | None) -> RunWindow | None:
        """The window of creation-to-completion times, or None while unknown."""
        return self._total.window(model)

    def processing_window(self, model: str | None) -> RunWindow | None:
        """The window of start-to-completion times, or None while unknown."""
        return self._processing.window(model)
