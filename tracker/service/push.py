"""``POST /webhooks/upstream``: the upstream's own webhooks (pushes).

Replicate (and the simulator) POST the prediction object to the ``webhook`` given
when the prediction was created, signed per Standard Webhooks with the account's
signing secret (TRACKER_UPSTREAM_WEBHOOK_SECRET here). Each push is

1. verified with the ``standardwebhooks`` library: the signature over
   ``{webhook-id}.{webhook-timestamp}.{body}``, and a timestamp within 5 minutes
   of now; a bad or missing signature or header is ``401`` and nothing is written;
2. checked as a poll's answer is (``decode_json``: the same cleaning, masking and
   nesting limit; ``parse_prediction``: a usable ``status``), its ``id`` as
   ``tracker add`` checks IDs: anything else is ``400`` and nothing is written;
3. applied by ``tracker.poll.pushes.PushApplier``: through the daemon's own writer
   when the daemon runs in this process, else through a writer of its own. A
   ``webhook-id`` received before is answered ``200`` with ``"duplicate"``.

Without the secret the route answers ``404``. The answer is ``200`` with what
became of the push (``{"id", "outcome", ...}``) once it is stored; a database
that fails is ``503``, so that the upstream delivers the push again.
"""

from __future__ import annotations

import binascii
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tracker.config import SettingError
from tracker.domain import validate_id
from tracker.exceptions import InvalidInput, StoreError, UpstreamBadAnswer
from tracker.poll.observe import parse_prediction
from tracker.poll.pushes import NotAPrediction, OwnPushes, PushApplier, Pushed
from tracker.service.context import Service
from tracker.service.errors import ApiError, read_body
from tracker.text.sanitize import MAX_JSON_DEPTH, TooDeep, decode_json

log = logging.getLogger(__name__)

PUSH_PATH = "/webhooks/upstream"
#: the Standard Webhooks headers a push must carry
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
#: longest webhook-id accepted (characters): upstream_pushes.webhook_id holds 200
MAX_WEBHOOK_ID = 200
#: how far a push's webhook-timestamp may be from now (the standardwebhooks library's)
TIMESTAMP_TOLERANCE = timedelta(minutes=5)


class PushReceiver:
    """Verifies pushes and hands them to an applier (the daemon's, or its own)."""

    def __init__(self, service: Service, secret: str) -> None:
        try:
            self._verifier = Webhook(secret)
        except (binascii.Error, ValueError, RuntimeError) as exc:
            raise SettingError(
                "TRACKER_UPSTREAM_WEBHOOK_SECRET: not a Standard Webhooks secret"
                " (whsec_ and base64)"
            ) from exc
        self._secrets = tuple(service.settings.secrets())
        daemon = service.daemon
        self._applier: PushApplier | None = daemon.pushes if daemon is not None else None
        self._own: OwnPushes | None = None
        self._service = service

    async def start(self, _app: web.Application) -> None:
        """Without a daemon in the process: a writer of its own."""
        if self._applier is None:
            service = self._service
            self._own = OwnPushes(service.store, service.settings, observer=service.metrics)
            self._applier = self._own.applier

    async def stop(self, _app: web.Application) -> None:
        if self._own is not None:
            await self._own.close()
            self._own = None

    def verify(self, body: bytes, headers: Mapping[str, str]) -> str:
        """The push's webhook-id, once its signature and timestamp are good (else 401)."""
        given = {name: headers[name] for name in HEADERS if name in headers}
        missing = [name for name in HEADERS if not given.get(name)]
        if missing:
            raise ApiError(401, f"not a signed push: missing {', '.join(missing)}")
        try:
            self._verifier.verify(body, given, json_parse=False)
        except WebhookVerificationError as exc:
            raise ApiError(401, _refusal(str(exc))) from None
        webhook_id = given["webhook-id"]
        if len(webhook_id) > MAX_WEBHOOK_ID or not (
            webhook_id.isascii() and webhook_id.isprintable() and " " not in webhook_id
        ):
            raise ApiError(400, f"webhook-id must be 1-{MAX_WEBHOOK_ID} printable ASCII characters")
        return webhook_id

    def prediction(self, body: bytes) -> tuple[str, dict[str, Any]]:
        """The pushed prediction object and its ID, checked as a poll's answer is."""
        try:
            document = decode_json(body, self._secrets)
        except TooDeep:
            raise ApiError(400, f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
        except ValueError:
            raise ApiError(400, "the body is not JSON (UTF-8)") from None
        if not isinstance(document, dict):
            raise ApiError(400, "the body is not a prediction object")
        prediction_id = document.get("id")
        if not isinstance(prediction_id, str):
            raise ApiError(400, "the body is not a prediction: it has no 'id' string")
        try:
            validate_id(prediction_id)
            parse_prediction(document, prediction_id)
        except (InvalidInput, UpstreamBadAnswer) as exc:
            raise ApiError(400, str(exc).replace("answer is", "the body is")) from None
        return prediction_id, document

    async def apply(self, webhook_id: str, prediction_id: str, body: dict[str, Any]) -> Pushed:
        if self._applier is None:
            raise ApiError(503, "the push receiver is not running")
        try:
            return await self._applier.apply(webhook_id, prediction_id, body)
        except NotAPrediction as exc:
            raise ApiError(400, f"the body cannot be stored: {exc}") from None
        except StoreError as exc:
            log.error("push %s for %s not stored: %s", webhook_id, prediction_id, exc)
            # The driver's words (host, port, user) are for the log, not for whoever
            # can reach this unauthenticated route.
            raise ApiError(503, "the push could not be stored: database unavailable") from None


#: where the handler finds the receiver (None: no secret, no endpoint)
RECEIVER = web.AppKey("push_receiver", PushReceiver)


def add_routes(app: web.Application, service: Service) -> None:
    """``POST /webhooks/upstream`` (404 while TRACKER_UPSTREAM_WEBHOOK_SECRET is unset)."""
    secret = service.settings.upstream_webhook_secret
    if secret:
        receiver = PushReceiver(service, secret)
        app[RECEIVER] = receiver
        app.on_startup.append(receiver.start)
        app.on_cleanup.append(receiver.stop)
    app.router.add_post(PUSH_PATH, receive)


async def receive(request: web.Request) -> web.Response:
    """One push: verify, check, apply; 200 with what became of it."""
    receiver = request.app.get(RECEIVER)
    if receiver is None:
        raise ApiError(404, "no push endpoint here: TRACKER_UPSTREAM_WEBHOOK_SECRET is not set")
    body = await read_body(request)
    webhook_id = receiver.verify(body, request.headers)
    prediction_id, document = receiver.prediction(body)
    pushed = await receiver.apply(webhook_id, prediction_id, document)
    log.debug(
        "push %s for %s: %s",
        webhook_id,
        prediction_id,
        pushed.outcome,
        extra={"prediction_id": prediction_id, "webhook_id": webhook_id},
    )
    return web.json_response({"id": prediction_id, **pushed.to_json()})


def _refusal(reason: str) -> str:
    """The library's reason, in this service's words."""
    lowered = reason.lower()
    if "too old" in lowered or "too new" in lowered:
        return "push refused: its webhook-timestamp is more than 5 minutes from now"
    if "invalid" in lowered:
        return "push refused: its webhook-timestamp is not a number of seconds"
    return "push refused: bad signature"
