"""What the daemon has learned about each model's run times."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping

#: run times remembered per model (the most recent ones)
WINDOW = 500
#: no prediction is made for a model with fewer samples than this
MIN_SAMPLES = 20
#: the quantiles bounding the window where completions are likely
LOW_QUANTILE, HIGH_QUANTILE = 0.05, 0.95


def quantile(sorted_values: list[float], q: float) -> float:
    """percentile_cont: linear interpolation between the two nearest ranks."""
    position = q * (len(sorted_values) - 1)
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


class RunTimes:
    """Seconds from creation to completion, per model, from recent predictions."""

    def __init__(self, *, window: int = WINDOW, min_samples: int = MIN_SAMPLES) -> None:
        self._samples: defaultdict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self._bounds: dict[str, tuple[float, float] | None] = {}
        self._min_samples = min_samples

    def load(self, samples: Mapping[str, Iterable[float]]) -> None:
        for model, values in samples.items():
            for value in values:
                self.add(model, value)

    def add(self, model: str, seconds: float) -> None:
        if seconds >= 0:
            self._samples[model].append(seconds)
            self._bounds.pop(model, None)

    def likely_window(self, model: str | None) -> tuple[float, float] | None:
        """(5th, 95th percentile) of the model's run times, or None when unknown."""
        if model is None or model not in self._samples:
            return None
        if model not in self._bounds:
            values = sorted(self._samples[model])
            self._bounds[model] = (
                (quantile(values, LOW_QUANTILE), quantile(values, HIGH_QUANTILE))
                if len(values) >= self._min_samples
                else None
            )
        return self._bounds[model]
