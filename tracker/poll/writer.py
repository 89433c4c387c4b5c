"""Group commit for observations: answers that arrive while a write is running
are written together in the next transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tracker.domain import ArtifactJob, CallbackSpec, DeliveryJob, NextPoll, ObservationUpdate
from tracker.exceptions import StoreError
from tracker.observer import NO_OBSERVER, PollObserver
from tracker.store.artifact_queue import ArchiveHandoff
from tracker.store.enqueue import Handoff
from tracker.store.observations import Applied

#: the most observations written in one transaction
MAX_BATCH = 200

Item = tuple[ObservationUpdate, NextPoll, str | None, "asyncio.Future[int]"]


class ObservationWriter:
    """Callers await ``apply`` as if each write were alone; under load one
    transaction carries many observations, which saves a commit (and on SQLite a
    lock hand-over) per poll."""

    def __init__(
        self,
        apply_many: Callable[..., Any],
        run: Callable[..., Awaitable[Any]],
        *,
        owner: str,
        default_callbacks: Sequence[CallbackSpec] = (),
        handoff: Callable[[], Handoff | None] = lambda: None,
        on_handoff: Callable[[list[DeliveryJob]], None] = lambda _jobs: None,
        observer: PollObserver = NO_OBSERVER,
        archive: bool = False,
        archive_handoff: Callable[[], ArchiveHandoff | None] = lambda: None,
        on_artifacts: Callable[[list[ArtifactJob], int], None] = lambda _jobs, _left: None,
    ) -> None:
        self._apply_many = apply_many
        self._run = run
        self._owner = owner
        self._defaults = tuple(default_callbacks)
        self._handoff = handoff
        self._on_handoff = on_handoff
        self._observer = observer  #: told of each transition written
        #: output files become artifacts (TRACKER_ARCHIVE_URL); ``on_artifacts`` is
        #: given those a write added and claimed for the archiver (``archive_handoff``),
        #: and how many it left for a claim
        self._archive = archive
        self._archive_handoff = archive_handoff
        self._on_artifacts = on_artifacts
        self._queue: list[Item] = []
        self._flusher: asyncio.Task[None] | None = None

    async def apply(
        self, update: ObservationUpdate, next_poll: NextPoll, *, claimed: bool = True
    ) -> int:
        """Write one observation; returns the deliveries it left pending (deliveries
        handed off go to ``on_handoff``), raises its error. A poll's answer is written
        only while this writer's owner still holds the prediction's claim; a push
        (``claimed=False``) holds none."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((update, next_poll, self._owner if claimed else None, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="observation writer")
        return await future

    async def wait_idle(self, timeout: float) -> None:
        """Wait (up to ``timeout``) until nothing is left to write."""
        if self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher], timeout=timeout)

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            # One lock order for every transaction: rows in ID order (see _apply_batch).
            batch.sort(key=lambda item: item[0].prediction_id)
            items = [(update, next_poll, owner) for update, next_poll, owner, _ in batch]
            try:
                applied: Applied = await self._run(
                    self._apply_many,
                    items,
                    default_callbacks=self._defaults,
                    handoff=self._handoff(),
                    archive=self._archive,
                    archive_handoff=self._archive_handoff() if self._archive else None,
                )
            except Exception as exc:  # handed to every waiting caller, never lost
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            if applied.handed_off:
                self._on_handoff(applied.handed_off)
            if applied.artifacts.added:
                self._on_artifacts(applied.artifacts.handed_off, applied.artifacts.left)
            for (update, *_, future), result in zip(batch, applied.results, strict=True):
                if update.transition is not None and not isinstance(result, StoreError):
                    self._observer.transition(update.transition.to_status)
                if future.done():
                    continue
                if isinstance(result, StoreError):
                    future.set_exception(result)
                else:
                    future.set_result(result)
