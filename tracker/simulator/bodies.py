"""The bodies of the simulator's API requests: reading them, and what a create sets."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tracker.simulator.scenarios import DEFAULT_MODEL
from tracker.simulator.targets import check_events_filter, check_webhook_url


async def read_json(request: web.Request) -> object:
    """The request body parsed as JSON; ``ValueError`` when it is not JSON."""
    try:
        return json.loads(await request.read())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the body is not JSON: {exc}") from exc


def create_fields(payload: object, path_model: str | None = None) -> dict[str, Any]:
    """The plan fields a create request sets; ``ValueError`` when it is malformed.

    ``path_model`` is the model named by the path (``/v1/models/{owner}/{name}/...``).
    """
    if not isinstance(payload, dict):
        raise ValueError("the body must be a JSON object")
    if not isinstance(payload.get("input"), dict):
        raise ValueError("- input: input is required and must be an object")
    version, model = payload.get("version"), path_model or payload.get("model")
    if not isinstance(version, str) and not isinstance(model, str):
        raise ValueError("- version or model is required")
    fields = {
        "input": payload["input"],
        "model": model if isinstance(model, str) else DEFAULT_MODEL,
        "version": version if isinstance(version, str) else "hidden",
    }
    if payload.get("webhook") is not None:
        fields["webhook"] = check_webhook_url(payload["webhook"])
        events = payload.get("webhook_events_filter")
        if events is not None:
            fields["webhook_events_filter"] = check_events_filter(events)
    return fields
