"""Writing one observation in tests, as the daemon's writer writes a batch of one."""

from __future__ import annotations

from collections.abc import Sequence

from tracker.domain import CallbackSpec, NextPoll, ObservationUpdate
from tracker.exceptions import StoreError
from tracker.store.interfaces import PollQueue


def apply_one(
    store: PollQueue,
    update: ObservationUpdate,
    next_poll: NextPoll,
    *,
    owner: str | None = None,
    default_callbacks: Sequence[CallbackSpec] = (),
    archive: bool = False,
) -> int:
    """Write one observation; returns the deliveries it queued, raises its error."""
    (result,) = store.apply_observations(
        [(update, next_poll, owner)], default_callbacks=default_callbacks, archive=archive
    ).results
    if isinstance(result, StoreError):
        raise result
    return result
