"""Webhook pushes: the simulator POSTs the prediction object to its ``webhook``.

As Replicate does for a prediction created with ``webhook`` (and optionally
``webhook_events_filter``, default all four events):

- ``start`` when the prediction starts processing (an aborted one never does);
- ``logs`` when new log lines appear, at most one per 0.5 s (divided by ``speed``; the
  newest text is sent when the window opens, so changes are coalesced, never lost);
- ``output`` when the output appears, which in the simulator is at success, just
  before ``completed``;
- ``completed`` once, at the terminal status.

Every POST carries the prediction object as the API shows it at that moment, signed
per Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)
with ``SimConfig.webhook_secret``. Each push gets a fresh ``webhook-id`` (``msg_...``);
its retries (after a connection error, a timeout, 429 or 5xx; ``push_retries`` times,
0.5 s then doubling, divided by ``speed``) keep it, with the timestamp of the attempt.
Redirects are not followed. The pushes of one prediction are sent one after another,
in order; those of different predictions concurrently, at most ``push_concurrency`` at
once, each POST bounded by ``push_timeout_seconds``. Sending runs in tasks of its own,
so a slow or hanging receiver never delays an API answer.

Faults, decided per push by a generator seeded from ``seed`` and the prediction ID
(the k-th push of an ID always gets the same fate): ``push_drop`` of them are never
sent, ``push_repeat`` are sent twice with the same ``webhook-id``, and ``push_late``
(any but ``completed``) are held back, with the body they had when due, until the
prediction's ``completed`` push has been sent (or its end, without one), at most
``push_late_seconds``: stale pushes arriving after the terminal one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
from standardwebhooks.webhooks import Webhook
from yarl import URL

from tracker.simulator.lifecycle import SimulatedPrediction
from tracker.simulator.scenarios import TERMINAL_STATUSES, SimConfig, id_rng
from tracker.simulator.targets import WEBHOOK_EVENTS, LoopbackResolver, is_loopback_host

Fate = Literal["sent", "repeated", "late", "dropped"]

#: ``logs`` pushes are at most one per this many simulated seconds
PUSH_THROTTLE_SECONDS = 0.5
#: the first retry waits this long (simulated seconds), each later one twice as long
RETRY_BASE_SECONDS = 0.5
_USER_AGENT = "tracker-simulator"
#: the shortest sleep of a push loop, against busy-waiting on rounding errors
_MIN_WAIT = 0.001

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PushAttempt:
    """One POST of a push."""

    #: when the POST began, epoch seconds
    at: float
    #: the receiver's status code; ``None`` when it did not answer
    status_code: int | None
    #: why there is no answer (timeout, connection error)
    error: str | None = None

    @property
    def retryable(self) -> bool:
        """True when a retry may succeed: no answer, 429 or 5xx."""
        code = self.status_code
        return code is None or code == 429 or code >= 500

    def to_json(self) -> dict[str, Any]:
        """The JSON form served by ``GET /_sim/pushes``."""
        return {"at": self.at, "status_code": self.status_code, "error": self.error}


@dataclass(slots=True)
class PushRecord:
    """One push of a prediction: the event, its ``webhook-id``, its fate and its POSTs."""

    prediction_id: str
    event: str
    webhook_id: str
    fate: Fate
    #: the prediction's status in the pushed body
    status: str
    #: when the event happened, epoch seconds
    due_at: float
    attempts: list[PushAttempt] = field(default_factory=list)

    @property
    def delivered(self) -> int:
        """How many POSTs the receiver accepted with a 2xx."""
        return sum(1 for a in self.attempts if a.status_code and 200 <= a.status_code < 300)

    def to_json(self) -> dict[str, Any]:
        """The JSON form served by ``GET /_sim/pushes``."""
        return {
            "prediction_id": self.prediction_id,
            "event": self.event,
            "webhook_id": self.webhook_id,
            "fate": self.fate,
            "status": self.status,
            "due_at": self.due_at,
            "attempts": [attempt.to_json() for attempt in self.attempts],
        }


@dataclass(eq=False)
class _Watch:
    """A prediction with a webhook, and the tasks pushing it."""

    prediction: SimulatedPrediction
    url: str
    events: frozenset[str]
    rng: random.Random
    #: set once the prediction has ended and its final pushes are done
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    #: set when the prediction changed out of its plan's course (cancelled)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class Pusher:
    """Sends the pushes of every prediction with a webhook; lives on the server's loop."""

    def __init__(self, config: SimConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self._clock = clock
        secret = config.webhook_secret
        self._signer = Webhook(secret) if secret else None
        self._watches: dict[str, _Watch] = {}
        self._records: list[PushRecord] = []
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None
        self._base_url = ""

    @property
    def can_sign(self) -> bool:
        """True when a webhook secret is configured (pushes need one)."""
        return self._signer is not None

    async def start(self, base_url: str) -> None:
        """Open the HTTP client and push every prediction watched so far."""
        self._base_url = base_url
        self._slots = asyncio.Semaphore(self.config.push_concurrency)
        connector = aiohttp.TCPConnector(limit=0, resolver=LoopbackResolver(), use_dns_cache=False)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.config.push_timeout_seconds),
            headers={"User-Agent": _USER_AGENT},
            trust_env=False,
        )
        for watch in self._watches.values():
            self._spawn(watch, self._drive(watch))

    async def stop(self) -> None:
        """Cancel every push in progress, forget the watched predictions, close the client."""
        watches = list(self._watches.values())
        self._watches.clear()
        tasks = [task for watch in watches for task in watch.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def watch(self, prediction: SimulatedPrediction) -> None:
        """Push ``prediction`` to its plan's webhook (replacing earlier pushes of its ID)."""
        self.forget(prediction.id)
        plan = prediction.plan
        if plan.webhook is None:
            return
        if self._signer is None:
            raise ValueError("pushes need a webhook secret (SimConfig.webhook_secret)")
        events = plan.webhook_events_filter
        watch = _Watch(
            prediction,
            plan.webhook,
            frozenset(WEBHOOK_EVENTS if events is None else events),
            id_rng(self.config.seed, prediction.id, "push"),
        )
        self._watches[prediction.id] = watch
        if self._session is not None:
            self._spawn(watch, self._drive(watch))

    def poke(self, prediction_id: str) -> None:
        """``prediction_id`` changed out of its plan's course (cancelled): push now."""
        watch = self._watches.get(prediction_id)
        if watch is not None:
            watch.changed.set()

    def forget(self, prediction_id: str) -> None:
        """Stop pushing ``prediction_id`` (its late pushes too)."""
        watch = self._watches.pop(prediction_id, None)
        if watch is not None:
            for task in watch.tasks:
                task.cancel()

    def records(self, prediction_id: str | None = None) -> list[PushRecord]:
        """Copies of the pushes so far, in the order they were due; only ``prediction_id``'s."""
        return [
            replace(record, attempts=list(record.attempts))
            for record in self._records
            if prediction_id is None or record.prediction_id == prediction_id
        ]

    # -- the life of a watched prediction --------------------------------------------------

    async def _drive(self, watch: _Watch) -> None:
        """Push ``watch``'s prediction as it advances, until its end."""
        prediction, events = watch.prediction, watch.events
        throttle = PUSH_THROTTLE_SECONDS / self.config.speed
        started = False
        logs_sent = 0  # log lines in the last push that carried logs
        next_logs = 0.0  # earliest moment of the next logs push
        while True:
            now = self._clock()
            status = prediction.status_at(now)
            if status in TERMINAL_STATUSES:
                if "output" in events and status == "succeeded" and prediction.has_output:
                    await self._push(watch, "output", now)
                if "completed" in events:
                    await self._push(watch, "completed", now)
                watch.ended.set()
                return
            wake = prediction.next_change(now)
            if status == "processing":
                lines = prediction.state_key(now, self._base_url)[1]
                if not started:
                    started = True
                    if "start" in events:
                        await self._push(watch, "start", now)
                        logs_sent = lines
                if "logs" in events and lines != logs_sent:
                    if now >= next_logs:
                        await self._push(watch, "logs", now)
                        logs_sent, next_logs = lines, now + throttle
                    else:
                        wake = next_logs if wake is None else min(wake, next_logs)
            await _until(watch.changed, None if wake is None else wake - self._clock())

    async def _push(self, watch: _Watch, event: str, now: float) -> None:
        """One push of the prediction as it is at ``now``, with the fate drawn for it."""
        prediction = watch.prediction
        body = prediction.body(now, self._base_url)
        record = PushRecord(
            prediction.id,
            event,
            f"msg_{secrets.token_hex(13)}",
            self._fate(watch, event),
            prediction.status_at(now),
            now,
        )
        self._records.append(record)
        if record.fate == "dropped":
            return
        if record.fate == "late":
            self._spawn(watch, self._send_late(watch, record, body))
            return
        await self._deliver(watch.url, record, body)
        if record.fate == "repeated":
            await self._deliver(watch.url, record, body)

    def _fate(self, watch: _Watch, event: str) -> Fate:
        """What happens to the next push of ``watch`` (one draw of its generator)."""
        config = self.config
        draw = watch.rng.random()
        if draw < config.push_drop:
            return "dropped"
        draw -= config.push_drop
        if draw < config.push_repeat:
            return "repeated"
        draw -= config.push_repeat
        if draw < config.push_late and event != "completed":
            return "late"
        return "sent"

    async def _send_late(self, watch: _Watch, record: PushRecord, body: bytes) -> None:
        """Deliver a held-back push once the prediction has ended (or waited long enough)."""
        limit = self.config.push_late_seconds / self.config.speed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watch.ended.wait(), limit)
        await self._deliver(watch.url, record, body)

    # -- HTTP ------------------------------------------------------------------------------

    async def _deliver(self, url: str, record: PushRecord, body: bytes) -> None:
        """POST a push, retrying a bounded number of times with the same ``webhook-id``."""
        for attempt in range(self.config.push_retries + 1):
            if attempt:
                await asyncio.sleep(RETRY_BASE_SECONDS * 2 ** (attempt - 1) / self.config.speed)
            result = await self._post(url, record.webhook_id, body)
            record.attempts.append(result)
            if not result.retryable:
                return

    async def _post(self, url: str, webhook_id: str, body: bytes) -> PushAttempt:
        """One signed POST, waiting for a free slot first."""
        if self._signer is None or self._session is None or self._slots is None:
            raise RuntimeError("the pusher is not running")
        async with self._slots:
            at = self._clock()
            if not is_loopback_host(URL(url).host):
                return PushAttempt(at, None, "refused: not a loopback host")
            signature = self._signer.sign(webhook_id, datetime.fromtimestamp(at, UTC), body)
            headers = {
                "Content-Type": "application/json",
                "webhook-id": webhook_id,
                "webhook-timestamp": str(math.floor(at)),
                "webhook-signature": signature,
            }
            try:
                async with self._session.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    return PushAttempt(at, response.status)
            except TimeoutError:
                return PushAttempt(at, None, "timeout")
            except (aiohttp.ClientError, OSError) as exc:
                return PushAttempt(at, None, f"{type(exc).__name__}: {exc}")

    def _spawn(self, watch: _Watch, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` as a task of ``watch``."""
        task = asyncio.get_running_loop().create_task(coroutine)
        watch.tasks.add(task)
        task.add_done_callback(lambda done: _finished(watch, done))


async def _until(changed: asyncio.Event, seconds: float | None) -> None:
    """Sleep ``seconds`` (None: until a change), or until ``changed`` is set."""
    timeout = None if seconds is None else max(seconds, _MIN_WAIT)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(changed.wait(), timeout)
    changed.clear()


def _finished(watch: _Watch, task: asyncio.Task[None]) -> None:
    """Forget a finished task; log it if it failed (a bug: sending never raises)."""
    watch.tasks.discard(task)
    if not task.cancelled() and (error := task.exception()) is not None:
        _log.error("a webhook push of %s failed", watch.prediction.id, exc_info=error)
