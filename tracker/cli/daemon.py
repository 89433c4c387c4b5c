"""`tracker daemon`: poll until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

import click

from tracker.callbacks.email import Mailer, parse_smtp_url, redacted
from tracker.callbacks.outbox import Sender
from tracker.callbacks.webhook import (
    DEFAULT_WEBHOOK_TIMEOUT,
    WebhookSender,
    make_webhook_client,
)
from tracker.cli.common import database_option, open_store
from tracker.cli.prune import Duration
from tracker.config import (
    DEFAULT_API_BASE,
    DEFAULT_CONCURRENCY,
    DEFAULT_LEASE,
    DEFAULT_LOST_AFTER,
    DEFAULT_LOST_WINDOW,
    DEFAULT_MAX_RPS,
    DEFAULT_POLL_MAX,
    DEFAULT_POLL_MIN,
    Settings,
)
from tracker.daemon import Daemon
from tracker.exceptions import ConfigError
from tracker.logsetup import configure_logging
from tracker.netpolicy import DEFAULT_ALLOWED_HOSTS, HostPolicy, parse_policy
from tracker.upstream import (
    DEFAULT_MAX_ANSWER_BYTES,
    DEFAULT_POLL_TIMEOUT,
    UpstreamClient,
    make_http_client,
)

log = logging.getLogger("tracker")

_positive = click.FloatRange(min=0, min_open=True)


class _HostPolicyType(click.ParamType):
    """A TRACKER_WEBHOOK_ALLOWED_HOSTS value (see tracker.netpolicy)."""

    name = "RULES"

    def convert(self, value: object, param: click.Parameter | None, ctx: object) -> HostPolicy:
        if isinstance(value, HostPolicy):
            return value
        try:
            return parse_policy(str(value), "TRACKER_WEBHOOK_ALLOWED_HOSTS")
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)  # type: ignore[arg-type]


@click.command("daemon")
@click.option("--once", is_flag=True, help="Poll everything due now once, then exit.")
@click.option("--exit-when-done", is_flag=True, help="Exit once no prediction is active.")
@click.option(
    "--poll-min",
    type=_positive,
    default=DEFAULT_POLL_MIN,
    show_default=True,
    envvar="TRACKER_POLL_MIN",
    show_envvar=True,
    help="Seconds before the first poll and between polls after a change.",
)
@click.option(
    "--poll-max",
    type=_positive,
    default=DEFAULT_POLL_MAX,
    show_default=True,
    envvar="TRACKER_POLL_MAX",
    show_envvar=True,
    help="Longest seconds between two polls of one prediction.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=1024),
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    envvar="TRACKER_CONCURRENCY",
    show_envvar=True,
    help="Requests in flight at once.",
)
@click.option(
    "--max-rps",
    type=_positive,
    default=DEFAULT_MAX_RPS,
    show_default=True,
    envvar="TRACKER_MAX_RPS",
    show_envvar=True,
    help="Upstream requests per second, all predictions together.",
)
@click.option(
    "--api-base",
    default=DEFAULT_API_BASE,
    show_default=True,
    envvar="TRACKER_API_BASE",
    show_envvar=True,
    help="Base URL of the prediction API.",
)
@click.option(
    "--lost-after",
    type=click.IntRange(min=1),
    default=DEFAULT_LOST_AFTER,
    show_default=True,
    envvar="TRACKER_LOST_AFTER",
    show_envvar=True,
    help="Consecutive 404 answers before a prediction is marked lost ...",
)
@click.option(
    "--lost-window",
    type=click.FloatRange(min=0),
    default=DEFAULT_LOST_WINDOW,
    show_default=True,
    envvar="TRACKER_LOST_WINDOW",
    show_envvar=True,
    help="... spread over at least this many seconds.",
)
@click.option(
    "--lease",
    "lease_seconds",
    type=_positive,
    default=DEFAULT_LEASE,
    show_default=True,
    envvar="TRACKER_LEASE",
    show_envvar=True,
    help="Seconds a claimed prediction stays with this daemon if it dies"
    " (renewed every 5 s, or every third of the lease if shorter).",
)
@click.option(
    "--webhook-timeout",
    type=_positive,
    default=DEFAULT_WEBHOOK_TIMEOUT,
    show_default=True,
    envvar="TRACKER_WEBHOOK_TIMEOUT",
    show_envvar=True,
    help="Seconds one webhook attempt may take in all (connect, send, answer).",
)
@click.option(
    "--webhook-allowed-hosts",
    type=_HostPolicyType(),
    default=DEFAULT_ALLOWED_HOSTS,
    show_default=True,
    envvar="TRACKER_WEBHOOK_ALLOWED_HOSTS",
    show_envvar=True,
    help="Where webhooks may go, judged on the address connected to: a comma list of"
    " external, private, loopback, *, CIDR blocks and host names (* globs).",
)
@click.option(
    "--max-answer-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_ANSWER_BYTES,
    show_default=True,
    envvar="TRACKER_MAX_ANSWER_BYTES",
    show_envvar=True,
    help="An upstream answer longer than this is not read further: an error on that poll.",
)
@click.option(
    "--poll-timeout",
    type=_positive,
    default=DEFAULT_POLL_TIMEOUT,
    show_default=True,
    envvar="TRACKER_POLL_TIMEOUT",
    show_envvar=True,
    help="Seconds one poll may take in all (connect, headers, whole answer).",
)
@click.option(
    "--prune-older-than",
    type=Duration(),
    envvar="TRACKER_PRUNE_OLDER_THAN",
    show_envvar=True,
    metavar="AGE",
    help="Every hour, prune predictions that finished longer ago than this (30d, 12h),"
    " as `tracker prune --older-than AGE` does. Default: never.",
)
@click.option(
    "--scheduler",
    type=click.Choice(["adaptive", "backoff"]),
    default="adaptive",
    show_default=True,
    envvar="TRACKER_SCHEDULER",
    show_envvar=True,
    help="adaptive: poll where each model's run times say completions are likely;"
    " backoff: poll-min after a change, growing to poll-max.",
)
@click.option(
    "--name",
    envvar="TRACKER_DAEMON_NAME",
    show_envvar=True,
    help="Name of this daemon (default host:pid).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    envvar="TRACKER_LOG_FORMAT",
    show_envvar=True,
    help="Readable lines or JSON objects on stderr.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug lines too.")
@database_option
def daemon_command(once: bool, exit_when_done: bool, verbose: bool, **options: object) -> None:
    """Poll due predictions until stopped (SIGINT/SIGTERM finish in-flight polls, exit 0).

    The API key comes from TRACKER_API_KEY, ANYAPI_API_KEY or REPLICATE_API_TOKEN
    (first one set); it is never logged or stored. Callbacks: TRACKER_WEBHOOK_SECRET
    signs webhooks, TRACKER_SMTP_URL and TRACKER_MAIL_FROM send mail,
    TRACKER_RETRY_SCHEDULE sets the retry delays, TRACKER_DEFAULT_WEBHOOK,
    TRACKER_DEFAULT_EMAIL and TRACKER_DEFAULT_EVENTS add callbacks to every prediction.
    """
    settings = Settings.build(**options)  # type: ignore[arg-type]
    if settings.poll_max < settings.poll_min:
        raise click.UsageError("--poll-max must not be smaller than --poll-min")
    configure_logging(
        fmt=settings.log_format,
        level=logging.DEBUG if verbose else logging.INFO,
        secrets=settings.secrets(),
    )
    if not settings.api_key:
        log.warning("no API key set (TRACKER_API_KEY, ANYAPI_API_KEY or REPLICATE_API_TOKEN)")
    code = asyncio.run(run_daemon(settings, once=once, exit_when_done=exit_when_done))
    sys.exit(code)


async def run_daemon(
    settings: Settings, *, once: bool = False, exit_when_done: bool = False
) -> int:
    if not settings.api_base.startswith(("http://", "https://")):
        raise ConfigError(f"invalid API base {settings.api_base!r}: expected an http(s) URL")
    store = open_store(settings.database_url)
    try:
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
            daemon = Daemon(store, upstream, settings, senders=senders)
            return await daemon.run(once=once, exit_when_done=exit_when_done)
    finally:
        store.close()


async def _senders(settings: Settings, stack: contextlib.AsyncExitStack) -> dict[str, Sender]:
    """A webhook sender always; a mailer when TRACKER_SMTP_URL is set."""
    hooks = await stack.enter_async_context(
        make_webhook_client(
            timeout=settings.webhook_timeout,
            max_connections=64,
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
