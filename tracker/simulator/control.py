"""The simulator's control API under ``/_sim/``: define a prediction's plan, read the
requests and pushes answered so far, health. Each handler calls the simulator's
Python control (``Simulator.define``, ``requests``, ``pushes``, ``health``)."""

from __future__ import annotations

import json
from typing import Any, Protocol

from aiohttp import web

from tracker.simulator.answers import detail, json_response
from tracker.simulator.bodies import read_json
from tracker.simulator.scenarios import PredictionPlan


class Controlled(Protocol):
    """What the control API needs of the simulator."""

    def define(self, id: str, plan: PredictionPlan) -> None: ...

    def requests(self, id: str | None = None) -> list[Any]: ...

    def pushes(self, id: str | None = None) -> list[Any]: ...

    def health(self) -> dict[str, Any]: ...


class ControlApi:
    """The ``/_sim/`` routes of one simulator."""

    def __init__(self, simulator: Controlled) -> None:
        self._sim = simulator

    def routes(self) -> list[web.RouteDef]:
        return [
            web.put("/_sim/predictions/{prediction_id}", self._handle_define),
            web.get("/_sim/requests", self._handle_requests),
            web.get("/_sim/pushes", self._handle_pushes),
            web.get("/_sim/health", self._handle_health),
        ]

    async def _handle_define(self, request: web.Request) -> web.Response:
        """``PUT /_sim/predictions/{id}`` with a plan in JSON."""
        prediction_id = request.match_info["prediction_id"]
        try:
            plan = PredictionPlan.from_json(await read_json(request))
            self._sim.define(prediction_id, plan)
        except (TypeError, ValueError) as exc:
            return detail(400, str(exc))
        body = {"id": prediction_id, "plan": plan.to_json()}
        return json_response(200, json.dumps(body).encode())

    async def _handle_requests(self, request: web.Request) -> web.Response:
        """``GET /_sim/requests[?id=ID]``: the requests answered so far."""
        records = self._sim.requests(request.query.get("id"))
        body = {"count": len(records), "requests": [record.to_json() for record in records]}
        return json_response(200, json.dumps(body).encode())

    async def _handle_pushes(self, request: web.Request) -> web.Response:
        """``GET /_sim/pushes[?id=ID]``: the webhook pushes so far."""
        records = self._sim.pushes(request.query.get("id"))
        body = {"count": len(records), "pushes": [record.to_json() for record in records]}
        return json_response(200, json.dumps(body).encode())

    async def _handle_health(self, request: web.Request) -> web.Response:
        """``GET /_sim/health``."""
        return json_response(200, json.dumps(self._sim.health()).encode())
