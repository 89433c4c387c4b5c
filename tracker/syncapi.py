"""``Tracker``: the tracker's operations on one database, for synchronous code (the
command line's commands, scripts). ``tracker.api`` names it with ``AsyncTracker``, which
builds on it; docs/python.md documents both.

Input is checked here, with the command line's rules and messages, so every entry
point refuses the same things with the same words (InvalidInput; an unknown ID is
PredictionNotFound). Records are the dataclasses of tracker.domain.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import os
import threading
import time
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Self, TypeVar, Unpack

from tracker import arguments as args
from tracker import eventloop
from tracker.arguments import Window
from tracker.config import SETTING, Settings
from tracker.domain import (
    CancelResult,
    Delivery,
    Prediction,
    PredictionDetail,
    validate_id,
)
from tracker.exceptions import (
    InvalidInput,
    PredictionNotFound,
    TrackerError,
)
from tracker.inputs import validate_ids
from tracker.poll.cancel import cancel_with_settings
from tracker.poll.gate import UpstreamGate
from tracker.registering import Registration, check_registration, check_registrations, register
from tracker.store.store import AddResult, Store
from tracker.timeparse import utcnow
from tracker.waiting import WAIT_INTERVAL, ended, give_up_at, pause

T = TypeVar("T")


#: what ``list_columns`` may read: the fields of a Prediction
PREDICTION_COLUMNS = tuple(f.name for f in fields(Prediction))


@dataclass(frozen=True, slots=True)
class ForgetResult:
    """What ``forget`` did: the IDs that are registered, and those that are not."""

    known: list[str]  #: registered, in the order given: no longer polled (history kept)
    unknown: list[str]  #: not registered: nothing done


class DatabaseHandle:
    """What a Tracker holds, safe to share between threads: the store, opened (and its
    schema checked) on first use and closed once; the settings, built from the
    environment when first needed unless given; the request budget cancel requests
    share (TRACKER_MAX_RPS), with its pause after a 429: the daemon's in `tracker serve`,
    else its own. Without ``database_url``: the settings', else as on the command line."""

    def __init__(
        self, database_url: str | None, settings: Settings | None, gate: UpstreamGate | None
    ) -> None:
        if database_url is None and settings is not None:
            database_url = settings.database_url
        if database_url is None:
            database_url = str(SETTING["database_url"].from_env(os.environ))
        self.database_url = database_url
        self._settings = settings
        self._gate = gate
        self._store: Store | None = None
        self._lock = threading.Lock()
        self._closed = False

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.build(database_url=self.database_url)
        return self._settings

    def store(self) -> Store:
        with self._lock:
            if self._closed:
                raise TrackerError("this Tracker is closed")
            if self._store is None:
                self._store = Store.open_checked(self.database_url)
            return self._store

    def gate(self) -> UpstreamGate:
        with self._lock:
            if self._gate is None:
                self._gate = UpstreamGate(self.settings().max_rps)
            return self._gate

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._store is not None:
                self._store.close()
                self._store = None


class Tracker:
    """The tracker's operations on one database. ``database_url`` defaults as on the
    command line; the database is opened (and its schema checked) on first use, and
    released by ``close()`` or a ``with`` block. ``settings`` (the service's, a test's)
    replace those built from the environment when first needed; ``gate`` (the daemon's
    poller's, in `tracker serve`) is the request budget cancel requests share."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        settings: Settings | None = None,
        gate: UpstreamGate | None = None,
    ):
        self._handle = DatabaseHandle(database_url, settings, gate)

    @property
    def database_url(self) -> str:
        return self._handle.database_url

    @property
    def settings(self) -> Settings:
        """Settings from the environment (built when first needed): the first poll's
        delay and where webhooks may go. ConfigError names a malformed variable."""
        return self._handle.settings()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open(self) -> Store:
        return self._handle.store()

    # -- predictions -----------------------------------------------------------------

    def add(
        self,
        ids: str | Iterable[str],
        webhooks: str | Iterable[str] = (),
        emails: str | Iterable[str] = (),
        events: str | Iterable[str] | None = None,
        labels: Mapping[str, str] | None = None,
        deadline: str | float | None = None,
    ) -> AddResult:
        """Register one ID or many. A known ID keeps its row and gains the new labels
        and callbacks (``events``, default ``completed``, apply to the callbacks given
        here). ``deadline`` (``"30m"``, ``"2h"``, seconds as a number; ``"none"``: no
        deadline) is how long after its creation upstream a prediction still running is
        cancelled by the daemon; it applies to known IDs too. Without it, new IDs get
        TRACKER_DEFAULT_DEADLINE, if set."""
        entry = Registration(ids, webhooks, emails, events, labels, deadline)
        checked = check_registration(entry, self.settings)
        return register(self._open(), [checked], self.settings)

    def add_batch(self, registrations: Iterable[Registration]) -> AddResult:
        """Several ``add`` calls in one, each ``Registration`` with its own callbacks and
        labels (what `tracker serve` does with a JSON list). Every entry is checked
        before anything is written: InvalidInput names the first bad one (``[3]: ...``,
        counted from 0); then entries with the same callbacks and labels are written
        together. The counts add up as those of the ``add`` calls would."""
        checked = check_registrations(list(registrations), self.settings)
        return register(self._open(), checked, self.settings)

    def get(self, prediction_id: str) -> Prediction:
        """The prediction's row; PredictionNotFound when it is not registered."""
        return self.detail(prediction_id).prediction

    def detail(self, prediction_id: str) -> PredictionDetail:
        """Everything known (what ``tracker show`` prints): the row, the timeline of
        transitions, the log chunks, the callbacks and their deliveries with every attempt."""
        validate_id(prediction_id)
        detail = self._open().get_detail(prediction_id)
        if detail is None:
            raise PredictionNotFound(f"no prediction {prediction_id!r} is registered")
        return detail

    def list(
        self,
        status: str | Iterable[str] | None = None,
        active: bool | None = None,
        model: str | None = None,
        limit: int | None = None,
        *,
        newest_first: bool = False,
        **window: Unpack[Window],
    ) -> builtins.list[Prediction]:
        """Whole predictions (logs included), oldest registration first (newest with
        ``newest_first``). ``status``: one or several upstream statuses; ``active=True``:
        only those still polled; ``since``, ``until``, ``labels``: see ``Window``."""
        query = args.prediction_query(status, active, model, limit, newest_first, **window)
        return self._open().list_predictions(query=query)

    def list_columns(
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
        """Only these columns of the predictions ``list`` would return, as dicts: a
        listing that never reads the logs (they can be large)."""
        query = args.prediction_query(status, active, model, limit, newest_first, **window)
        return self._open().list_columns(args.columns(columns, PREDICTION_COLUMNS), query=query)

    def iter_columns(
        self,
        columns: Iterable[str],
        status: str | Iterable[str] | None = None,
        active: bool | None = None,
        model: str | None = None,
        limit: int | None = None,
        *,
        newest_first: bool = False,
        **window: Unpack[Window],
    ) -> Iterator[dict[str, Any]]:
        """``list_columns`` a row at a time, as the database hands them over (``tracker
        list`` prints each as it comes). The arguments are checked at the call; the
        rows are read while iterating, in one read transaction that lasts until the
        iterator is exhausted or closed."""
        wanted = args.columns(columns, PREDICTION_COLUMNS)
        query = args.prediction_query(status, active, model, limit, newest_first, **window)
        return self._open().iter_columns(wanted, query)

    def count(
        self,
        status: str | Iterable[str] | None = None,
        active: bool | None = None,
        model: str | None = None,
        **window: Unpack[Window],
    ) -> int:
        """How many predictions ``list`` with these filters returns, without a limit."""
        query = args.prediction_query(status, active, model, None, False, **window)
        return self._open().count_predictions(query)

    def forget(self, ids: str | Iterable[str]) -> ForgetResult:
        """Stop polling these predictions; their history stays (``add`` tracks one again)."""
        wanted = validate_ids(args.strings(ids))
        if not wanted:
            raise InvalidInput("give at least one prediction ID")
        found = set(self._open().forget(wanted))
        given = list(dict.fromkeys(wanted))  # in the order given, once each
        return ForgetResult([i for i in given if i in found], [i for i in given if i not in found])

    def cancel(self, prediction_id: str) -> CancelResult:
        """Ask the upstream to cancel a prediction: ``POST`` its ``urls.cancel`` when that
        is on the API's own origin, else ``{base}/predictions/{id}/cancel``, with the
        API key (TRACKER_API_KEY). The request and its outcome are recorded
        (``cancel_requested_at``); the daemon sees the new status at its next poll,
        made due at once. An unknown or ended prediction is a result, not an error
        (``outcome`` ``not_registered`` or ``terminal``: nothing is sent), and so is a
        request the upstream refused (``failed``). InvalidInput for a bad ID."""
        return _run(self._cancel(prediction_id))

    async def _cancel(self, prediction_id: str) -> CancelResult:
        """``cancel`` as a coroutine (AsyncTracker's): the store read and written in
        worker threads, the request sent from this event loop."""
        validate_id(prediction_id)
        store = await asyncio.to_thread(self._open)
        return await cancel_with_settings(store, self.settings, self._handle.gate(), prediction_id)

    def wait(
        self, prediction_id: str, timeout: float | None = None, *, interval: float = WAIT_INTERVAL
    ) -> Prediction:
        """Read the prediction every ``interval`` seconds until its stored status is
        terminal, and return it. A daemon does the polling; this only watches the
        database. WaitTimeout after ``timeout`` seconds; NotTracked when it is lost
        or forgotten (it would never end)."""
        validate_id(prediction_id)
        give_up = give_up_at(timeout, interval)
        while True:
            prediction = self.get(prediction_id)
            if ended(prediction):
                return prediction
            time.sleep(pause(prediction, timeout, give_up, interval))

    # -- deliveries ----------------------------------------------------------------

    def list_deliveries(
        self,
        state: str | Iterable[str] | None = None,
        prediction_id: str | None = None,
        limit: int | None = None,
        *,
        newest_first: bool = False,
        **window: Unpack[Window],
    ) -> builtins.list[Delivery]:
        """Callback deliveries, oldest first (newest with ``newest_first``), without
        their attempts (``detail`` has them). ``since`` and ``until`` bound when a
        delivery was created; ``labels`` are its prediction's."""
        query = args.delivery_query(state, prediction_id, limit, newest_first, **window)
        return self._open().list_deliveries(query=query)

    def iter_deliveries(
        self,
        state: str | Iterable[str] | None = None,
        prediction_id: str | None = None,
        limit: int | None = None,
        *,
        newest_first: bool = False,
        **window: Unpack[Window],
    ) -> Iterator[Delivery]:
        """``list_deliveries`` a row at a time (as ``iter_columns``)."""
        query = args.delivery_query(state, prediction_id, limit, newest_first, **window)
        return self._open().iter_deliveries(query)

    def count_deliveries(
        self,
        state: str | Iterable[str] | None = None,
        prediction_id: str | None = None,
        **window: Unpack[Window],
    ) -> int:
        """How many deliveries ``list_deliveries`` with these filters returns, no limit."""
        query = args.delivery_query(state, prediction_id, None, False, **window)
        return self._open().count_listed_deliveries(query)

    def retry_deliveries(
        self,
        ids: int | Iterable[int] = (),
        prediction_id: str | None = None,
        since: datetime | str | None = None,
    ) -> int:
        """Re-queue dead deliveries: these IDs, a prediction's, or all created since a
        time (``datetime``, a date, an RFC 3339 time or ``7d``). Each keeps its
        webhook-id and payload and gets the whole retry schedule again."""
        wanted = args.delivery_ids(ids)
        if not (wanted or prediction_id or since):
            raise InvalidInput("give delivery IDs, --prediction ID or --since TIME")
        if prediction_id is not None:
            validate_id(prediction_id)
        return self._open().retry_deliveries(
            now=utcnow(), ids=wanted, prediction_id=prediction_id, since=args.moment(since)
        )


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from synchronous code: in a new event loop, or in a
    worker thread when this thread already runs one (a notebook, a callback)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return eventloop.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(eventloop.run, coroutine).result()
