"""tracker: keeps watch over long-running predictions on a Replicate-compatible API.

``from tracker import Tracker`` (or ``AsyncTracker``) is the Python API
(docs/python.md); they are imported on first use, so importing a submodule
(the simulator, the exceptions) does not load the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracker.exceptions import TrackerError
from tracker.version import __version__

if TYPE_CHECKING:
    from tracker.api import AsyncTracker, Tracker

__all__ = ["AsyncTracker", "Tracker", "TrackerError", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Tracker", "AsyncTracker"):
        from tracker import api

        return getattr(api, name)
    raise AttributeError(f"module 'tracker' has no attribute {name!r}")
