"""The Python API for asyncio code (``from tracker import AsyncTracker``; also in
tracker.api): :class:`tracker.syncapi.Tracker`'s methods as coroutines, each database
call run in a worker thread, and its iterators as async iterators."""

from __future__ import annotations

import asyncio
import builtins
import itertools
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from datetime import datetime
from functools import partial
from typing import Any, Self, TypeVar, Unpack

from tracker.arguments import Window
from tracker.config import Settings
from tracker.domain import CancelResult, Delivery, Prediction, PredictionDetail, validate_id
from tracker.poll.gate import UpstreamGate
from tracker.registering import Registration
from tracker.store.listing import STREAM_BATCH
from tracker.store.store import AddResult
from tracker.syncapi import ForgetResult, Tracker
from tracker.waiting import WAIT_INTERVAL, ended, give_up_at, pause

T = TypeVar("T")


class AsyncTracker:
    """:class:`Tracker` for asyncio code: the same methods as coroutines, each call
    run in a worker thread (``asyncio.to_thread``; an iterable argument is read
    there), and ``iter_columns`` and ``iter_deliveries`` as async iterators; ``cancel``
    sends its request from the running event loop. Use ``async with`` or ``await
    close()``."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        settings: Settings | None = None,
        gate: UpstreamGate | None = None,
    ):
        #: the Tracker it runs
        self.sync: Tracker = Tracker(database_url, settings=settings, gate=gate)

    @property
    def database_url(self) -> str:
        return self.sync.database_url

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def add(
        self,
        ids: str | Iterable[str],
        webhooks: str | Iterable[str] = (),
        emails: str | Iterable[str] = (),
        events: str | Iterable[str] | None = None,
        labels: Mapping[str, str] | None = None,
        deadline: str | float | None = None,
    ) -> AddResult:
        return await asyncio.to_thread(
            self.sync.add, ids, webhooks, emails, events, labels, deadline
        )

    async def add_batch(self, registrations: Iterable[Registration]) -> AddResult:
        return await asyncio.to_thread(self.sync.add_batch, list(registrations))

    async def get(self, prediction_id: str) -> Prediction:
        return await asyncio.to_thread(self.sync.get, prediction_id)

    async def detail(self, prediction_id: str) -> PredictionDetail:
        return await asyncio.to_thread(self.sync.detail, prediction_id)

    async def list(
        self,
        status: str | Iterable[str] | None = None,
        active: bool | None = None,
        model: str | None = None,
        limit: int | None = None,
        *,
        newest_first: bool = False,
        **window: Unpack[Window],
    ) -> builtins.list[Prediction]:
        call = partial(self.sync.list, newest_first=newest_first, **window)
        return await asyncio.to_thread(call, status, active, model, limit)

    async def list_columns(
        self,
        columns: Iterable[str],
        status: str | Iterable[str] | None = None,
        active: bool | None = None,
        model: str | None = None,
        limit: int | None = None,
        *,
        newest_first: bool = False,
        **window: Unpack[Window],
    ) -> builtins.list[dict[str, Any]]:
        call = partial(self.sync.list_columns, newest_first=newest_first, **window)
        return await asyncio.to_thread(call, columns, status, active, model, limit)

    async def iter_columns(
        self,
        columns: Iterable[str],
        status: str | Iterable[str] | None = None,
        active: bool | None = None,
        model: str | None = None,
        limit: int | None = None,
        *,
        newest_first: bool = False,
        **window: Unpack[Window],
    ) -> AsyncIterator[dict[str, Any]]:
        """As :meth:`Tracker.iter_columns`, an async iterator: rows are read in worker
        threads, STREAM_BATCH at a time."""
        call = partial(self.sync.iter_columns, newest_first=newest_first, **window)
        rows = await asyncio.to_thread(call, columns, status, active, model, limit)
        async for row in _in_batches(rows):
            yield row

    async def count(
        self,
        status: str | Iterable[str] | None = None,
        active: bool | None = None,
        model: str | None = None,
        **window: Unpack[Window],
    ) -> int:
        return await asyncio.to_thread(partial(self.sync.count, **window), status, active, model)

    async def forget(self, ids: str | Iterable[str]) -> ForgetResult:
        return await asyncio.to_thread(self.sync.forget, ids)

    async def cancel(self, prediction_id: str) -> CancelResult:
        """As :meth:`Tracker.cancel`: the request goes out from this event loop, the
        database is read and written in worker threads."""
        return await self.sync._cancel(prediction_id)

    async def wait(
        self, prediction_id: str, timeout: float | None = None, *, interval: float = WAIT_INTERVAL
    ) -> Prediction:
        """As :meth:`Tracker.wait`, sleeping with ``asyncio.sleep`` between reads."""
        validate_id(prediction_id)
        give_up = give_up_at(timeout, interval)
        while True:
            prediction = await self.get(prediction_id)
            if ended(prediction):
                return prediction
            await asyncio.sleep(pause(prediction, timeout, give_up, interval))

    async def list_deliveries(
        self,
        state: str | Iterable[str] | None = None,
        prediction_id: str | None = None,
        limit: int | None = None,
        *,
        newest_first: bool = False,
        **window: Unpack[Window],
    ) -> builtins.list[Delivery]:
        call = partial(self.sync.list_deliveries, newest_first=newest_first, **window)
        return await asyncio.to_thread(call, state, prediction_id, limit)

    async def iter_deliveries(
        self,
        state: str | Iterable[str] | None = None,
        prediction_id: str | None = None,
        limit: int | None = None,
        *,
        newest_first: bool = False,
        **window: Unpack[Window],
    ) -> AsyncIterator[Delivery]:
        """As :meth:`Tracker.iter_deliveries`, an async iterator."""
        call = partial(self.sync.iter_deliveries, newest_first=newest_first, **window)
        found = await asyncio.to_thread(call, state, prediction_id, limit)
        async for delivery in _in_batches(found):
            yield delivery

    async def count_deliveries(
        self,
        state: str | Iterable[str] | None = None,
        prediction_id: str | None = None,
        **window: Unpack[Window],
    ) -> int:
        call = partial(self.sync.count_deliveries, **window)
        return await asyncio.to_thread(call, state, prediction_id)

    async def retry_deliveries(
        self,
        ids: int | Iterable[int] = (),
        prediction_id: str | None = None,
        since: datetime | str | None = None,
    ) -> int:
        return await asyncio.to_thread(self.sync.retry_deliveries, ids, prediction_id, since)


async def _in_batches(items: Iterator[T]) -> AsyncIterator[T]:
    """A blocking iterator read in worker threads, STREAM_BATCH items at a time, and
    closed (its read transaction ended) however the async iteration ends."""
    try:
        while batch := await asyncio.to_thread(_take, items, STREAM_BATCH):
            for item in batch:
                yield item
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


def _take(items: Iterator[T], count: int) -> list[T]:
    return list(itertools.islice(items, count))
