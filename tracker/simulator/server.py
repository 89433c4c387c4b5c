"""The simulator's HTTP server (aiohttp).

The handlers stay lean: a request costs a few dictionary lookups and, most of the time,
the cached JSON of the prediction's current state (see
:class:`~tracker.simulator.lifecycle.SimulatedPrediction`). Access logging is off.
Webhook pushes are sent by :class:`~tracker.simulator.push.Pusher`, in tasks of their own.
The refusals, error bodies and fault answers are in :mod:`tracker.simulator.answers`, the
``/_sim/`` control routes in :mod:`tracker.simulator.control`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from tracker.simulator.answers import (
    NOT_FOUND,
    Gate,
    TokenBucket,
    detail,
    fault_response,
    json_response,
)
from tracker.simulator.bodies import create_fields, read_json
from tracker.simulator.control import ControlApi
from tracker.simulator.files import FileRequest, FileServer
from tracker.simulator.lifecycle import SimulatedPrediction
from tracker.simulator.push import Pusher, PushRecord
from tracker.simulator.scenarios import (
    ID_PATTERN,
    PredictionPlan,
    SimConfig,
    plan_for_id,
    scenario_of_model,
)

_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
#: seconds the server waits for in-flight answers (e.g. delayed ones) when stopping
_SHUTDOWN_TIMEOUT = 0.5
_NO_SECRET = "this simulator has no webhook secret: start it with --webhook-secret whsec_..."

# TokenBucket: named here as before its move to tracker.simulator.answers
__all__ = ["RequestRecord", "Simulator", "TokenBucket"]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One API request the simulator answered."""

    #: arrival time, epoch seconds
    at: float
    #: the prediction asked for (or created); ``None`` for a refused create
    prediction_id: str | None
    status_code: int
    #: ``get``, ``create`` or ``cancel``
    action: str = "get"

    def to_json(self) -> dict[str, Any]:
        """The JSON form served by ``GET /_sim/requests``."""
        return {
            "at": self.at,
            "prediction_id": self.prediction_id,
            "status_code": self.status_code,
            "action": self.action,
        }


def _url_host(host: str) -> str:
    """``host`` as written in a URL (IPv6 addresses in brackets)."""
    return f"[{host}]" if ":" in host else host


class Simulator:
    """A Replicate-compatible prediction API served over HTTP, driven by plans.

    Serves ``GET /v1/predictions/{id}``, ``POST /v1/predictions`` (and
    ``/v1/models/{owner}/{name}/predictions``), ``POST /v1/predictions/{id}/cancel``
    (the prediction ends ``canceled``; an ended one is answered unchanged), the output
    files under ``/files/`` (see :mod:`tracker.simulator.files`) and the control API
    under ``/_sim/``.
    Not thread-safe: use it from its event loop, or through
    :class:`~tracker.simulator.thread.SimulatorThread`.
    """

    def __init__(
        self, config: SimConfig | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config if config is not None else SimConfig()
        self._clock = clock
        self._predictions: dict[str, SimulatedPrediction] = {}
        self._records: list[RequestRecord] = []
        self._counts: Counter[str | None] = Counter()
        self._rng = random.Random(self.config.seed)
        #: auth, the rate limit and random faults, before any prediction logic
        self._gate = Gate(self.config, self._rng)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._pusher = Pusher(self.config, clock)
        self._files = FileServer(self._predictions.get, clock)

    # -- lifecycle of the server -------------------------------------------------------

    def build_app(self) -> web.Application:
        """The aiohttp application with the API and control routes."""
        app = web.Application()
        app.add_routes(
            [
                web.get("/v1/predictions/{prediction_id}", self._handle_get),
                web.post("/v1/predictions", self._handle_create),
                web.post("/v1/predictions/{prediction_id}/cancel", self._handle_cancel),
                web.post("/v1/models/{owner}/{name}/predictions", self._handle_create),
                *ControlApi(self).routes(),
                *self._files.routes(),
            ]
        )
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: any free port) and return the API base URL."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        runner = web.AppRunner(
            self.build_app(), access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        self._base_url = f"http://{_url_host(host)}:{bound_port}/v1"
        await self._pusher.start(self._base_url)
        return self._base_url

    async def stop(self) -> None:
        """Stop listening and pushing, close every connection; the records are kept."""
        runner, self._runner = self._runner, None
        await self._pusher.stop()
        if runner is not None:
            await runner.cleanup()
        self._base_url = None

    @property
    def base_url(self) -> str:
        """The API base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        if self._base_url is None:
            raise RuntimeError("the simulator is not running")
        return self._base_url

    # -- control from Python -----------------------------------------------------------

    def define(self, id: str, plan: PredictionPlan) -> None:
        """Give prediction ``id`` this plan; its clock (and fault count) restarts now.

        A plan with a ``webhook`` is pushed there (which needs ``config.webhook_secret``).
        """
        if not ID_PATTERN.fullmatch(id):
            raise ValueError(f"not a valid prediction ID: {id!r}")
        if plan.webhook is not None and not self._pusher.can_sign:
            raise ValueError(_NO_SECRET)
        self._add(id, plan, self._clock())

    def requests(self, id: str | None = None) -> list[RequestRecord]:
        """The requests answered so far, oldest first; only those for ``id`` if given."""
        records = list(self._records)
        if id is None:
            return records
        return [record for record in records if record.prediction_id == id]

    def cancels(self, id: str | None = None) -> list[RequestRecord]:
        """The cancel requests answered so far (``id``'s only, if given)."""
        return [r for r in self.requests(id) if r.action == "cancel"]

    def request_count(self, id: str | None = None) -> int:
        """How many requests were answered (for ``id`` if given)."""
        return len(self._records) if id is None else self._counts[id]

    def file_requests(self, id: str | None = None) -> list[FileRequest]:
        """The output file requests answered so far (not API requests); ``id``'s only."""
        return self._files.requests(id)

    def file_request_count(self, id: str | None = None) -> int:
        """How many output file requests were answered (for ``id`` if given)."""
        return self._files.request_count(id)

    def pushes(self, id: str | None = None) -> list[PushRecord]:
        """The webhook pushes so far (copies), in the order they were due; ``id``'s only."""
        return self._pusher.records(id)

    def health(self) -> dict[str, Any]:
        """What ``GET /_sim/health`` answers: predictions known, requests answered."""
        return {
            "status": "ok",
            "predictions": len(self._predictions),
            "requests": len(self._records),
        }

    # -- the API -----------------------------------------------------------------------

    async def _handle_get(self, request: web.Request) -> web.Response:
        """``GET /v1/predictions/{id}``."""
        arrival = self._clock()
        prediction_id = request.match_info["prediction_id"]
        response = self._gate.refusal(request)
        if response is None:
            response = await self._answer(prediction_id, arrival)
        self._record(arrival, prediction_id, response.status)
        return response

    async def _handle_create(self, request: web.Request) -> web.Response:
        """``POST /v1/predictions`` with ``{"version" | "model": ..., "input": {...}}``.

        Also ``POST /v1/models/{owner}/{name}/predictions``, where the path names the model.
        """
        arrival = self._clock()
        response = self._gate.refusal(request)
        if response is not None:
            self._record(arrival, None, response.status, "create")
            return response
        info = request.match_info
        model = f"{info['owner']}/{info['name']}" if "owner" in info else None
        try:
            plan_fields = create_fields(await read_json(request), model)
            if "webhook" in plan_fields and not self._pusher.can_sign:
                raise ValueError(_NO_SECRET)
        except ValueError as exc:
            self._record(arrival, None, 422, "create")
            return detail(422, str(exc))
        prediction_id = self._new_id()
        scenario = scenario_of_model(plan_fields["model"])
        plan = replace(plan_for_id(prediction_id, self.config, scenario), **plan_fields)
        prediction = self._add(prediction_id, plan, arrival)
        self._record(arrival, prediction_id, 201, "create")
        return json_response(201, prediction.body(arrival, self.base_url))

    async def _handle_cancel(self, request: web.Request) -> web.Response:
        """``POST /v1/predictions/{id}/cancel``: the prediction as Replicate answers it,
        ``canceled`` unless it had already ended (then unchanged). Plan faults are not
        spent on it; auth, the rate limit and random faults apply as to every request."""
        arrival = self._clock()
        prediction_id = request.match_info["prediction_id"]
        response = self._gate.refusal(request) or self._cancel(prediction_id, arrival)
        self._record(arrival, prediction_id, response.status, "cancel")
        return response

    def _cancel(self, prediction_id: str, now: float) -> web.Response:
        if not ID_PATTERN.fullmatch(prediction_id):
            return json_response(404, NOT_FOUND)
        prediction = self._predictions.get(prediction_id)
        if prediction is None:
            prediction = self._add(prediction_id, plan_for_id(prediction_id, self.config), now)
        if prediction.plan.not_found:
            return json_response(404, NOT_FOUND)
        if prediction.cancel(now):
            self._pusher.poke(prediction_id)
        return json_response(200, prediction.body(now, self.base_url))

    async def _answer(self, prediction_id: str, arrival: float) -> web.Response:
        """The answer for a prediction: its plan's fault or its current state."""
        if not ID_PATTERN.fullmatch(prediction_id):
            return json_response(404, NOT_FOUND)
        prediction = self._predictions.get(prediction_id)
        if prediction is None:
            prediction = self._add(prediction_id, plan_for_id(prediction_id, self.config), arrival)
        if prediction.plan.not_found:
            return json_response(404, NOT_FOUND)
        fault = prediction.next_fault()
        delay = prediction.delay
        if fault is not None and fault.kind == "delay":
            delay += fault.seconds / self.config.speed
        if delay > 0:
            await asyncio.sleep(delay)
        now = self._clock()
        if fault is not None:
            faulty = fault_response(fault, now)
            if faulty is not None:
                return faulty
        return json_response(200, prediction.body(now, self.base_url))

    def _add(self, prediction_id: str, plan: PredictionPlan, now: float) -> SimulatedPrediction:
        """Create (or replace) a prediction whose life starts at ``now``."""
        prediction = SimulatedPrediction(prediction_id, plan, self.config, created_at=now)
        self._predictions[prediction_id] = prediction
        self._pusher.watch(prediction)
        return prediction

    def _record(
        self, arrival: float, prediction_id: str | None, status: int, action: str = "get"
    ) -> None:
        """Remember one answered request."""
        self._records.append(RequestRecord(arrival, prediction_id, status, action))
        self._counts[prediction_id] += 1

    def _new_id(self) -> str:
        """A fresh ID shaped like Replicate's (26 lowercase letters and digits)."""
        while True:
            candidate = "".join(self._rng.choices(_ID_ALPHABET, k=26))
            if candidate not in self._predictions:
                return candidate
