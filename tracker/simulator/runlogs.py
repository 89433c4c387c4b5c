"""The log lines of a simulated run (no I/O): the ``LogScript`` (its lines and when each
appears), the realistic lines generated when a plan lists none, and the trailer
written at the end."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from tracker.simulator.scenarios import PredictionPlan, SimConfig

#: state key meaning "every log line plus the outcome's trailer"
ALL_LINES = -1


class LogScript:
    """The log lines of a run and when each becomes visible.

    Line ``k`` appears ``k * step`` seconds after processing starts. ``endless`` makes
    lines past the listed ones from their index, forever. ``trailer`` lines appear only
    once the prediction has ended. The cumulative text is cached, so growing it costs
    only the new lines.
    """

    def __init__(
        self,
        lines: Sequence[str],
        step: float,
        *,
        trailer: Sequence[str] = (),
        endless: Callable[[int], str] | None = None,
    ) -> None:
        self._lines = list(lines)
        self._step = step
        self._trailer = "".join(f"{line}\n" for line in trailer)
        self._endless = endless
        self._count = 0
        self._text = ""

    def count_at(self, elapsed: float) -> int:
        """How many lines are visible ``elapsed`` seconds into processing."""
        if elapsed < 0:
            return 0
        if self._step <= 0:
            return len(self._lines)
        visible = math.floor(elapsed / self._step) + 1
        return visible if self._endless else min(visible, len(self._lines))

    def next_line_after(self, elapsed: float) -> float | None:
        """When (seconds into processing) the next line appears; ``None``: no more lines."""
        if self._step <= 0:
            return None
        count = self.count_at(elapsed)
        if not self._endless and count >= len(self._lines):
            return None
        return count * self._step

    def text(self, count: int) -> str:
        """The first ``count`` lines (``-1``: all of them plus the trailer), newline-ended."""
        if count == ALL_LINES:
            return self.text(len(self._lines)) + self._trailer
        if count < self._count:
            self._count, self._text = 0, ""
        if count > self._count:
            new = (self._line(k) for k in range(self._count, count))
            self._text += "".join(f"{line}\n" for line in new)
            self._count = count
        return self._text

    def _line(self, index: int) -> str:
        """Line ``index``, listed or made by ``endless``."""
        if index < len(self._lines):
            return self._lines[index]
        assert self._endless is not None
        return self._endless(index)


def run_logs(
    plan: PredictionPlan, config: SimConfig, rng: random.Random, trailer: list[str]
) -> LogScript:
    """The plan's log lines, or realistic generated ones (ending with ``trailer``), with
    their timing."""
    speed = config.speed
    if plan.outcome == "aborted":
        return LogScript([], 0.0)
    if plan.log_lines is not None:
        count = len(plan.log_lines)
        step = plan.run_seconds / speed / count if count else 0.0
        return LogScript(plan.log_lines, step)
    seed_line = f"Using seed: {rng.randrange(1, 65536)}"
    step = config.log_interval_seconds / speed
    if plan.outcome is None:
        return LogScript([seed_line], step, endless=_endless_progress_line)
    count = max(1, math.ceil(plan.run_seconds / config.log_interval_seconds))
    steps = count - 1
    # a run that fails or is canceled stops about 60 % of the way through
    total = steps if plan.outcome == "succeeded" else math.ceil(steps * 1.6)
    lines = [seed_line, *_progress_lines(steps, total, config.log_interval_seconds)]
    return LogScript(lines, step, trailer=trailer)


def trailer_lines(outcome: str | None, took: float, images: int, error: str) -> list[str]:
    """Lines written when the run ends, by outcome: a run of ``took`` seconds that made
    ``images`` images, or failed with ``error``."""
    if outcome == "succeeded":
        count = images
        if not count:
            return [f"prediction took {took:.2f} seconds"]
        return [
            f"Total safe images: {count} out of {count}",
            f"generate image took {took:.2f} seconds",
        ]
    if outcome == "failed":
        return [
            "Traceback (most recent call last):",
            '  File "/src/predict.py", line 142, in predict',
            f"RuntimeError: {error}",
        ]
    return []


def _progress_lines(steps: int, total: int, interval: float) -> list[str]:
    """The first ``steps`` of ``total`` lines like ``step 3/20 |  15% | 2.00 it/s``."""
    rate = 1.0 / interval
    return [
        f"step {k}/{total} | {100 * k // total:3d}% | {rate:.2f} it/s" for k in range(1, steps + 1)
    ]


def _endless_progress_line(index: int) -> str:
    """Line ``index`` of a run that never ends."""
    return f"step {index} | still working"
