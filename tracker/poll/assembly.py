"""A daemon with its real connections: the upstream client, the webhook sender and,
with TRACKER_SMTP_URL, the mailer. `tracker daemon` and `tracker serve` both run
the daemon they get from ``open_daemon``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from tracker.archive.fetch import open_fetch
from tracker.callbacks.email import Mailer, parse_smtp_url, redacted
from tracker.callbacks.outbox import Sender
from tracker.callbacks.webhook import WebhookSender, make_webhook_client
from tracker.config import Settings
from tracker.observer import NO_OBSERVER, PollObserver
from tracker.poll.building import build_daemon
from tracker.poll.daemon import Daemon
from tracker.poll.upstream import UpstreamClient, make_http_client
from tracker.store.store import Store

log = logging.getLogger("tracker")

#: webhook deliveries in flight at once, all receivers together
WEBHOOK_CONNECTIONS = 64


@contextlib.asynccontextmanager
async def open_daemon(
    store: Store, settings: Settings, *, observer: PollObserver = NO_OBSERVER
) -> AsyncIterator[Daemon]:
    """The daemon on ``store``, its HTTP clients (and mailer) open until the block ends."""
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            make_http_client(max_connections=settings.concurrency)
        )
        upstream = UpstreamClient(
            http,
            settings.api_base,
            settings.api_key,
            max_answer_bytes=settings.max_answer_bytes,
            timeout=settings.poll_timeout,
        )
        senders = await _senders(settings, stack)
        fetch = await open_fetch(settings, stack) if settings.archive_url else None
        yield build_daemon(
            store, upstream, settings, senders=senders, observer=observer, fetch=fetch
        )


async def _senders(settings: Settings, stack: contextlib.AsyncExitStack) -> dict[str, Sender]:
    """A webhook sender always; a mailer when TRACKER_SMTP_URL is set."""
    hooks = await stack.enter_async_context(
        make_webhook_client(
            timeout=settings.webhook_timeout,
            max_connections=WEBHOOK_CONNECTIONS,
            allowed=settings.webhook_allowed_hosts,
        )
    )
    webhooks = WebhookSender(
        hooks, secret=settings.webhook_secret, timeout=settings.webhook_timeout
    )
    senders: dict[str, Sender] = {"webhook": webhooks}
    if settings.smtp_url:
        mailer = Mailer(parse_smtp_url(settings.smtp_url), settings.mail_from)
        stack.push_async_callback(mailer.close)
        senders["email"] = mailer
        log.info("mail goes through %s", redacted(settings.smtp_url))
    else:
        log.info("TRACKER_SMTP_URL is not set: email callbacks wait until it is")
    return senders
