"""The value types of the settings table (``tracker.config``).

Each reads the text of a flag or a TRACKER_* variable and raises ``ValueError``
saying why it cannot; ``metavar`` and ``describe()`` are what ``--help`` shows.
The same object parses a flag and its variable, so both say the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tracker.exceptions import ConfigError
from tracker.timeparse import parse_duration

#: characters of a bad value repeated in an error message
SHOWN_CHARS = 40
#: the longest delay a retry schedule may hold (seconds: 7 days)
MAX_DELAY = 7 * 86400.0


class ValueType(Protocol):
    @property
    def metavar(self) -> str: ...

    def __call__(self, text: str) -> Any: ...

    def describe(self) -> str:
        """The allowed range for --help ("x>0"), or ""."""
        ...


def _shown(text: str) -> str:
    return repr(text[:SHOWN_CHARS])


@dataclass(frozen=True)
class Text:
    """Any text; ``strip`` drops surrounding white space (keys pasted with a newline)."""

    strip: bool = False
    metavar: str = "TEXT"

    def __call__(self, text: str) -> str:
        return text.strip() if self.strip else text

    def describe(self) -> str:
        return ""


@dataclass(frozen=True)
class HttpUrl:
    """An http:// or https:// URL."""

    metavar: str = "TEXT"

    def __call__(self, text: str) -> str:
        if not text.startswith(("http://", "https://")):
            raise ValueError(f"{_shown(text)} is not an http(s) URL")
        return text

    def describe(self) -> str:
        return ""


@dataclass(frozen=True)
class Number:
    """A finite int or float between ``low`` and ``high`` (None: unbounded)."""

    kind: type[int] | type[float] = float
    low: float | None = None
    low_open: bool = False
    high: float | None = None

    @property
    def metavar(self) -> str:
        return "INTEGER RANGE" if self.kind is int else "FLOAT RANGE"

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text.strip())
        except ValueError:
            what = "a whole number" if self.kind is int else "a number"
            raise ValueError(f"{_shown(text)} is not {what}") from None
        if not math.isfinite(value):
            raise ValueError(f"{_shown(text)} is not a finite number")
        if not self._inside(value):
            raise ValueError(f"{value} is not in the range {self.describe()}")
        return value

    def _inside(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        """As click writes ranges: x>0, x>=1, 1<=x<=1024."""
        low = "" if self.low is None else f"{self.low}{'<' if self.low_open else '<='}"
        high = "" if self.high is None else f"<={self.high}"
        if low and not high:
            return f"x{'>' if self.low_open else '>='}{self.low}"
        return f"{low}x{high}" if (low or high) else ""


@dataclass(frozen=True)
class Choice:
    """One of a few words."""

    choices: tuple[str, ...]

    @property
    def metavar(self) -> str:
        return f"[{'|'.join(self.choices)}]"

    def __call__(self, text: str) -> str:
        if text not in self.choices:
            raise ValueError(f"{_shown(text)} is not one of {', '.join(map(repr, self.choices))}")
        return text

    def describe(self) -> str:
        return ""


@dataclass(frozen=True)
class Duration:
    """A positive duration such as ``30d``, ``12h`` or ``90m``, as seconds, at most
    ``high`` seconds when given."""

    metavar: str = "AGE"
    high: float | None = None
    examples: str = "30d, 12h or 90m"

    def __call__(self, text: str) -> float:
        seconds = parse_duration(text)
        if seconds is None or seconds <= 0:
            raise ValueError(f"{_shown(text)} is not a duration such as {self.examples}")
        if self.high is not None and seconds > self.high:
            raise ValueError(f"{_shown(text)} is longer than {self.high:.0f} s")
        return seconds

    def describe(self) -> str:
        return ""


@dataclass(frozen=True)
class Parsed:
    """Text read by a function of the project that raises ConfigError (host rules,
    retry schedules): its message is kept as it is."""

    parse: Callable[[str], Any]
    metavar: str = "TEXT"

    def __call__(self, text: str) -> Any:
        try:
            return self.parse(text)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    def describe(self) -> str:
        return ""


def parse_schedule(text: str) -> tuple[float, ...]:
    """`5,300,1800` → (5.0, 300.0, 1800.0); an empty list means no retries."""
    try:
        delays = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(
            f"invalid retry schedule {text!r}: expected comma-separated seconds"
        ) from None
    if not all(0 <= d <= MAX_DELAY for d in delays):  # also false for NaN
        raise ConfigError(
            f"invalid retry schedule {text!r}: each delay must be between 0 and {MAX_DELAY:g} s"
        )
    return delays
