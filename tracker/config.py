"""Settings: one table of every setting (field, variable, type, default, help), and the
typed object every entry point builds from it the same way.

``Settings.build(env=None, **values)`` is that way: each value comes from ``values``
(flags, or the Python API's arguments; None means not given), else from its
TRACKER_* variable, else from the table's default. The click options of
``tracker daemon`` are generated from the same table (``tracker.cli.options``),
so a flag and its variable are read by the same code and say the same things.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any
from urllib.parse import unquote, urlsplit

from tracker.domain import CallbackSpec
from tracker.events import parse_events
from tracker.exceptions import ConfigError, InvalidInput
from tracker.inputs import DEADLINE, validate_email, validate_webhook_url
from tracker.net.policy import DEFAULT_ALLOWED_HOSTS, HostPolicy, parse_policy
from tracker.settingtypes import (
    Choice,
    Duration,
    HttpUrl,
    Number,
    Parsed,
    Text,
    ValueType,
    parse_schedule,
)

#: where predictions are polled unless TRACKER_API_BASE says otherwise
DEFAULT_API_BASE = "https://www.anyapi.vip/replicate/v1"
DEFAULT_DATABASE_URL = "sqlite:///tracker.db"
DEFAULT_POLL_MIN = 1.0  # seconds
DEFAULT_POLL_MAX = 30.0  # seconds
DEFAULT_POLL_CONCURRENCY = 32  # polls in flight
DEFAULT_MAX_RPS = 40.0  # requests per second, all predictions together
DEFAULT_LOST_AFTER = 5  # consecutive 404 answers ...
DEFAULT_LOST_WINDOW = 60.0  # ... spread over at least this many seconds
DEFAULT_LEASE = 60.0  # seconds a claimed prediction stays with its daemon
DEFAULT_MAIL_FROM = "tracker@localhost"
#: a daemon is live if it sent a heartbeat within this many seconds (`tracker status`,
#: and a second daemon of the same name refuses to start)
LIVE_WITHIN_SECONDS = 30.0
#: seconds a receiver has to answer, all of the attempt included (TRACKER_WEBHOOK_TIMEOUT)
DEFAULT_WEBHOOK_TIMEOUT = 15.0
#: longest answer body read (TRACKER_MAX_ANSWER_BYTES); a longer one is an error
DEFAULT_MAX_ANSWER_BYTES = 16 * 2**20  # 16 MiB
#: seconds one poll may take in all: connect, headers, whole body (TRACKER_POLL_TIMEOUT)
DEFAULT_POLL_TIMEOUT = 30.0

#: seconds between the daemon's summary lines (TRACKER_LOG_INTERVAL)
DEFAULT_LOG_INTERVAL = 60.0
#: what --log-level / TRACKER_LOG_LEVEL take (as tracker.logsetup.LOG_LEVELS)
LOG_LEVEL_NAMES = ("debug", "info", "warning", "error")

#: where webhooks may be sent (see tracker.net.policy)
WEBHOOK_HOSTS_VARIABLE = "TRACKER_WEBHOOK_ALLOWED_HOSTS"
#: where output files may be downloaded from for the archive
ARCHIVE_HOSTS_VARIABLE = "TRACKER_ARCHIVE_ALLOWED_HOSTS"
#: largest output file archived (TRACKER_ARCHIVE_MAX_BYTES)
DEFAULT_ARCHIVE_MAX_BYTES = 2 * 2**30  # 2 GiB
#: seconds before each retry of a failed delivery (modelled on Svix): 5 s, 5 min, 30 min,
#: 2 h, 5 h, 10 h, 10 h (TRACKER_RETRY_SCHEDULE; then it is dead)
DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
#: seconds before each retry of a failed download; the last repeats
DEFAULT_ARCHIVE_RETRY_SCHEDULE = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0)


class SettingError(ConfigError, InvalidInput):
    """A flag or TRACKER_* variable holds a value that cannot be used (a usage error)."""


@dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    name: str  #: the field of Settings
    variable: str  #: the TRACKER_* variable
    type: ValueType  #: reads the text of the flag or the variable
    default: Any  #: when neither is given; a str is read by ``type`` as the variable is
    help: str
    flag: str | None = None  #: the option of `tracker daemon`; None: a variable only
    fallbacks: tuple[str, ...] = ()  #: variables read in turn when ``variable`` is unset

    def from_env(self, env: Mapping[str, str]) -> Any:
        """The value of the first variable set (blank counts as unset), else the default."""
        for variable in (self.variable, *self.fallbacks):
            text = env.get(variable, "")
            if text.strip():
                return self.read(text, variable)
        return self.read(self.default) if isinstance(self.default, str) else self.default

    def read(self, text: str, source: str | None = None) -> Any:
        """``text`` as a value; SettingError naming ``source`` (the variable) if unusable."""
        source = source or self.variable
        try:
            return self.type(text)
        except ValueError as exc:
            message = str(exc)
            raise SettingError(
                message if message.startswith(source) else f"{source}: {message}"
            ) from None


_SECONDS_ABOVE_0 = Number(float, low=0, low_open=True)

#: every setting; `tracker daemon` has an option for each row with a flag, in this order
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database_url", "TRACKER_DATABASE_URL", Text(), DEFAULT_DATABASE_URL,
        "SQLAlchemy URL of the tracker database (SQLite or PostgreSQL).",
        flag="--database-url",
    ),
    Setting(
        "poll_min", "TRACKER_POLL_MIN", _SECONDS_ABOVE_0, DEFAULT_POLL_MIN,
        "Seconds before the first poll and between polls after a change.",
        flag="--poll-min",
    ),
    Setting(
        "poll_max", "TRACKER_POLL_MAX", _SECONDS_ABOVE_0, DEFAULT_POLL_MAX,
        "Longest seconds between two polls of one prediction.",
        flag="--poll-max",
    ),
    Setting(
        "concurrency", "TRACKER_CONCURRENCY", Number(int, low=1, high=1024),
        DEFAULT_POLL_CONCURRENCY, "Requests in flight at once.",
        flag="--concurrency",
    ),
    Setting(
        "max_rps", "TRACKER_MAX_RPS", _SECONDS_ABOVE_0, DEFAULT_MAX_RPS,
        "Upstream requests per second, all predictions together.",
        flag="--max-rps",
    ),
    Setting(
        "api_base", "TRACKER_API_BASE", HttpUrl(), DEFAULT_API_BASE,
        "Base URL of the prediction API.",
        flag="--api-base",
    ),
    Setting(
        "lost_after", "TRACKER_LOST_AFTER", Number(int, low=1), DEFAULT_LOST_AFTER,
        "Consecutive 404 answers before a prediction is marked lost ...",
        flag="--lost-after",
    ),
    Setting(
        "lost_window", "TRACKER_LOST_WINDOW", Number(float, low=0), DEFAULT_LOST_WINDOW,
        "... spread over at least this many seconds.",
        flag="--lost-window",
    ),
    Setting(
        "lease_seconds", "TRACKER_LEASE", _SECONDS_ABOVE_0, DEFAULT_LEASE,
        "Seconds a claimed prediction stays with this daemon if it dies"
        " (renewed every 5 s, or every third of the lease if shorter).",
        flag="--lease",
    ),
    Setting(
        "webhook_timeout", "TRACKER_WEBHOOK_TIMEOUT", _SECONDS_ABOVE_0, DEFAULT_WEBHOOK_TIMEOUT,
        "Seconds one webhook attempt may take in all (connect, send, answer).",
        flag="--webhook-timeout",
    ),
    Setting(
        "webhook_allowed_hosts", WEBHOOK_HOSTS_VARIABLE,
        Parsed(lambda text: parse_policy(text, WEBHOOK_HOSTS_VARIABLE), "RULES"),
        DEFAULT_ALLOWED_HOSTS,
        "Where webhooks may go, judged on the address connected to: a comma list of"
        " external, private, loopback, *, CIDR blocks and host names (* globs).",
        flag="--webhook-allowed-hosts",
    ),
    Setting(
        "archive_url", "TRACKER_ARCHIVE_URL", Text(strip=True), None,
        "Archive output files here: a directory, file:///DIR or s3://BUCKET/PREFIX"
        " (endpoint and keys from AWS_*). Default: no archive.",
        flag="--archive-url",
    ),
    Setting(
        "archive_max_bytes", "TRACKER_ARCHIVE_MAX_BYTES", Number(int, low=1),
        DEFAULT_ARCHIVE_MAX_BYTES,
        "Largest output file archived; a larger one is failed as it streams.",
        flag="--archive-max-bytes",
    ),
    Setting(
        "archive_allowed_hosts", ARCHIVE_HOSTS_VARIABLE,
        Parsed(lambda text: parse_policy(text, ARCHIVE_HOSTS_VARIABLE), "RULES"),
        DEFAULT_ALLOWED_HOSTS,
        "Where output files may be downloaded from, as --webhook-allowed-hosts.",
        flag="--archive-allowed-hosts",
    ),
    Setting(
        "archive_retry_schedule", "TRACKER_ARCHIVE_RETRY_SCHEDULE",
        Parsed(parse_schedule, "SECONDS,…"), DEFAULT_ARCHIVE_RETRY_SCHEDULE,
        "Seconds before each retry of a failed download, comma-separated; the last one"
        " repeats until the output is removed upstream or 3 h have passed.",
    ),
    Setting(
        "max_answer_bytes", "TRACKER_MAX_ANSWER_BYTES", Number(int, low=1),
        DEFAULT_MAX_ANSWER_BYTES,
        "An upstream answer longer than this is not read further: an error on that poll.",
        flag="--max-answer-bytes",
    ),
    Setting(
        "poll_timeout", "TRACKER_POLL_TIMEOUT", _SECONDS_ABOVE_0, DEFAULT_POLL_TIMEOUT,
        "Seconds one poll may take in all (connect, headers, whole answer).",
        flag="--poll-timeout",
    ),
    Setting(
        "prune_older_than", "TRACKER_PRUNE_OLDER_THAN", Duration(), None,
        "Every hour, prune predictions that finished longer ago than this (30d, 12h),"
        " as `tracker prune --older-than AGE` does. Default: never.",
        flag="--prune-older-than",
    ),
    Setting(
        "scheduler", "TRACKER_SCHEDULER", Choice(("adaptive", "backoff")), "adaptive",
        "adaptive: poll where each model's run times say completions are likely;"
        " backoff: poll-min after a change, growing to poll-max.",
        flag="--scheduler",
    ),
    Setting(
        "name", "TRACKER_DAEMON_NAME", Text(), None,
        "Name of this daemon (default host:pid).",
        flag="--name",
    ),
    Setting(
        "log_format", "TRACKER_LOG_FORMAT", Choice(("text", "json")), "text",
        "Readable lines or JSON objects on stderr.",
        flag="--log-format",
    ),
    Setting(
        "log_level", "TRACKER_LOG_LEVEL", Choice(LOG_LEVEL_NAMES), "info",
        "info: a summary every --log-interval, problems, an endpoint's failures grouped;"
        " debug: every transition, poll error and delivery attempt too (-v);"
        " warning: problems only (-q).",
        flag="--log-level",
    ),
    Setting(
        "log_interval", "TRACKER_LOG_INTERVAL", _SECONDS_ABOVE_0, DEFAULT_LOG_INTERVAL,
        "Seconds between summary lines, and between the lines about an endpoint"
        " that keeps failing.",
        flag="--log-interval",
    ),
    Setting(
        "api_key", "TRACKER_API_KEY", Text(strip=True), None,
        "Sent as `Authorization: Bearer …`; never stored, never logged.",
        fallbacks=("ANYAPI_API_KEY", "REPLICATE_API_TOKEN"),
    ),
    Setting(
        "webhook_secret", "TRACKER_WEBHOOK_SECRET", Text(), None,
        "whsec_… secret that signs outgoing webhooks (unsigned without it).",
    ),
    Setting(
        "smtp_url", "TRACKER_SMTP_URL", Text(), None,
        "smtp://user:pass@host:port (STARTTLS when offered) or smtps://… for email callbacks.",
    ),
    Setting(
        "mail_from", "TRACKER_MAIL_FROM", Text(), DEFAULT_MAIL_FROM,
        "Sender of notification mail.",
    ),
    Setting(
        "retry_schedule", "TRACKER_RETRY_SCHEDULE", Parsed(parse_schedule, "SECONDS,…"),
        DEFAULT_RETRY_SCHEDULE,
        "Seconds before each retry of a failed delivery, comma-separated; then it is dead.",
    ),
    Setting(
        "default_deadline", "TRACKER_DEFAULT_DEADLINE", DEADLINE, None,
        "Deadline of every prediction registered without --deadline (90s, 30m, 2h):"
        " still not ended this long after its creation upstream, the daemon cancels it."
        " Default: none.",
    ),
    Setting(
        "serve_token", "TRACKER_SERVE_TOKEN", Text(strip=True), None,
        "Bearer token that `tracker serve`'s /api/… routes require; without it the"
        " service listens on loopback only.",
    ),
    Setting(
        "upstream_webhook_secret", "TRACKER_UPSTREAM_WEBHOOK_SECRET", Text(strip=True), None,
        "whsec_… secret the upstream signs its own webhooks with; without it"
        " `tracker serve` has no push endpoint.",
    ),
)  # fmt: skip

#: the rows by field name
SETTING: dict[str, Setting] = {s.name: s for s in SETTINGS}

#: variables that may hold the upstream API key, first one set wins
API_KEY_VARIABLES = (SETTING["api_key"].variable, *SETTING["api_key"].fallbacks)


def api_key_from_env(env: Mapping[str, str] | None = None) -> str | None:
    key: str | None = SETTING["api_key"].from_env(os.environ if env is None else env)
    return key


#: why a daemon (or `tracker serve`) without an API key does not start
API_KEY_MISSING = f"set {API_KEY_VARIABLES[0]} (or {', '.join(API_KEY_VARIABLES[1:])})"


def on_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine: 127.0.0.0/8, ::1 or ``localhost``."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host.rstrip(".") == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def require_api_key(settings: Settings) -> None:
    """Refuse to poll without an API key (SettingError: exit 2), unless the upstream
    is on this machine (the simulator, a test server): any other upstream would
    answer every poll with 401."""
    if not settings.api_key and not on_loopback(settings.api_base):
        raise SettingError(API_KEY_MISSING)


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default=DEFAULT_DATABASE_URL, repr=False)
    api_base: str = DEFAULT_API_BASE
    api_key: str | None = field(default=None, repr=False)
    poll_min: float = DEFAULT_POLL_MIN
    poll_max: float = DEFAULT_POLL_MAX
    concurrency: int = DEFAULT_POLL_CONCURRENCY
    max_rps: float = DEFAULT_MAX_RPS
    lost_after: int = DEFAULT_LOST_AFTER
    lost_window: float = DEFAULT_LOST_WINDOW
    lease_seconds: float = DEFAULT_LEASE
    log_format: str = "text"
    log_level: str = "info"  #: one of LOG_LEVEL_NAMES
    log_interval: float = DEFAULT_LOG_INTERVAL  #: seconds between summary lines
    name: str | None = None
    scheduler: str = "adaptive"  #: "adaptive" (learns run times) or "backoff"
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES  #: longest upstream answer read
    poll_timeout: float = DEFAULT_POLL_TIMEOUT  #: seconds one poll may take in all
    # Callbacks
    webhook_secret: str | None = field(default=None, repr=False)
    smtp_url: str | None = field(default=None, repr=False)
    mail_from: str = DEFAULT_MAIL_FROM
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    webhook_timeout: float = DEFAULT_WEBHOOK_TIMEOUT
    #: from TRACKER_DEFAULT_WEBHOOK / _EMAIL / _EVENTS (see default_callbacks_from_env)
    default_callbacks: tuple[CallbackSpec, ...] = field(default=(), repr=False)
    webhook_allowed_hosts: HostPolicy = field(
        default_factory=lambda: parse_policy(None, WEBHOOK_HOSTS_VARIABLE)
    )
    # The archive of output files (None: off)
    archive_url: str | None = None
    archive_max_bytes: int = DEFAULT_ARCHIVE_MAX_BYTES
    archive_retry_schedule: tuple[float, ...] = DEFAULT_ARCHIVE_RETRY_SCHEDULE
    archive_allowed_hosts: HostPolicy = field(
        default_factory=lambda: parse_policy(None, ARCHIVE_HOSTS_VARIABLE)
    )
    # Retention: prune predictions finished longer ago than this (seconds); None: never
    prune_older_than: float | None = None
    #: the deadline of predictions registered without one (seconds); None: none
    default_deadline: float | None = None
    # tracker serve: the bearer token of /api/…, and the upstream's webhook signing secret
    serve_token: str | None = field(default=None, repr=False)
    upstream_webhook_secret: str | None = field(default=None, repr=False)

    @classmethod
    def build(cls, env: Mapping[str, str] | None = None, **values: Any) -> Settings:
        """Settings from explicit values (flags, arguments; None: not given), each
        missing one from its variable in ``env`` (default: os.environ), else the
        default. SettingError (a ConfigError and an InvalidInput) names a bad variable."""
        env = os.environ if env is None else env
        given = {k: v for k, v in values.items() if v is not None}
        for setting in SETTINGS:
            if setting.name not in given:
                given[setting.name] = setting.from_env(env)
        if "default_callbacks" not in given:
            allowed = given["webhook_allowed_hosts"]
            given["default_callbacks"] = default_callbacks_from_env(env, allowed)
        if given["poll_max"] < given["poll_min"]:
            raise SettingError(
                f"--poll-max/TRACKER_POLL_MAX ({given['poll_max']:g} s) must not be"
                f" smaller than --poll-min/TRACKER_POLL_MIN ({given['poll_min']:g} s)"
            )
        return cls(**given)

    def secrets(self) -> list[str]:
        """Values that must never be written anywhere."""
        values = [
            self.api_key,
            self.webhook_secret,
            self.serve_token,
            self.upstream_webhook_secret,
            url_password(self.smtp_url),
            url_password(self.database_url),
        ]
        return [s for s in values if s]


def webhook_policy_from_env(env: Mapping[str, str] | None = None) -> HostPolicy:
    """TRACKER_WEBHOOK_ALLOWED_HOSTS (default ``external``); SettingError when malformed."""
    policy: HostPolicy = SETTING["webhook_allowed_hosts"].from_env(
        os.environ if env is None else env
    )
    return policy


def default_callbacks_from_env(
    env: Mapping[str, str], allowed: HostPolicy | None = None
) -> tuple[CallbackSpec, ...]:
    """TRACKER_DEFAULT_WEBHOOK / _EMAIL (comma lists) with TRACKER_DEFAULT_EVENTS."""
    events = parse_events(env.get("TRACKER_DEFAULT_EVENTS") or "completed")
    specs = [
        CallbackSpec("webhook", validate_webhook_url(url.strip(), allowed), events)
        for url in (env.get("TRACKER_DEFAULT_WEBHOOK") or "").split(",")
        if url.strip()
    ]
    specs += [
        CallbackSpec("email", validate_email(addr.strip()), events)
        for addr in (env.get("TRACKER_DEFAULT_EMAIL") or "").split(",")
        if addr.strip()
    ]
    return tuple(specs)


def url_password(url: str | None) -> str | None:
    """The password in a URL (SMTP or database), percent-decoded."""
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None
