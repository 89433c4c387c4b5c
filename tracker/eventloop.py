"""The event loop the tracker's commands run on: uvloop's where it is installed (a
dependency everywhere but Windows), else asyncio's own.

uvloop runs the same code with less CPU around each socket and each hand-over
from a worker thread: on the archive benchmark it cut the daemon's CPU per archived
file by about a third and per poll by about 5 % (docs/performance.md, "Archive").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop``, or None (asyncio's default) without uvloop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows, or an install without it
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the tracker's event loop."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
