"""The application layer that the command line, the service and Python code call
(``cli | service -> api -> store``); documented in docs/python.md.

``Tracker`` (tracker.syncapi) for synchronous code and ``AsyncTracker``
(tracker.asyncapi, which runs a Tracker), with the records their methods take and
return. Input is checked there, with the command line's rules and messages, so every
entry point refuses the same things with the same words.
"""

from tracker.arguments import Window
from tracker.asyncapi import AsyncTracker
from tracker.domain import CancelResult
from tracker.registering import Registration
from tracker.store.store import AddResult
from tracker.syncapi import ForgetResult, Tracker

__all__ = [
    "AddResult",
    "AsyncTracker",
    "CancelResult",
    "ForgetResult",
    "Registration",
    "Tracker",
    "Window",
]
