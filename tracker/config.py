"""Settings: command-line flags and TRACKER_* variables in one typed object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from tracker.callbacks.retry import DEFAULT_RETRY_SCHEDULE, parse_schedule
from tracker.callbacks.webhook import DEFAULT_WEBHOOK_TIMEOUT
from tracker.domain import CallbackSpec
from tracker.events import parse_events
from tracker.exceptions import ConfigError
from tracker.inputs import validate_email, validate_webhook_url
from tracker.netpolicy import HostPolicy, parse_policy
from tracker.upstream import DEFAULT_MAX_ANSWER_BYTES, DEFAULT_POLL_TIMEOUT

#: where predictions are polled unless TRACKER_API_BASE says otherwise
DEFAULT_API_BASE = "https://www.anyapi.vip/replicate/v1"
DEFAULT_DATABASE_URL = "sqlite:///tracker.db"
DEFAULT_POLL_MIN = 1.0  # seconds
DEFAULT_POLL_MAX = 30.0  # seconds
DEFAULT_CONCURRENCY = 32  # requests in flight
DEFAULT_MAX_RPS = 40.0  # requests per second, all predictions together
DEFAULT_LOST_AFTER = 5  # consecutive 404 answers ...
DEFAULT_LOST_WINDOW = 60.0  # ... spread over at least this many seconds
DEFAULT_LEASE = 60.0  # seconds a claimed prediction stays with its daemon
DEFAULT_MAIL_FROM = "tracker@localhost"

#: where webhooks may be sent (see tracker.netpolicy)
WEBHOOK_HOSTS_VARIABLE = "TRACKER_WEBHOOK_ALLOWED_HOSTS"

#: variables that may hold the upstream API key, first one set wins
API_KEY_VARIABLES = ("TRACKER_API_KEY", "ANYAPI_API_KEY", "REPLICATE_API_TOKEN")


def api_key_from_env(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    for name in API_KEY_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default=DEFAULT_DATABASE_URL, repr=False)
    api_base: str = DEFAULT_API_BASE
    api_key: str | None = field(default=None, repr=False)
    poll_min: float = DEFAULT_POLL_MIN
    poll_max: float = DEFAULT_POLL_MAX
    concurrency: int = DEFAULT_CONCURRENCY
    max_rps: float = DEFAULT_MAX_RPS
    lost_after: int = DEFAULT_LOST_AFTER
    lost_window: float = DEFAULT_LOST_WINDOW
    lease_seconds: float = DEFAULT_LEASE
    log_format: str = "text"
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
    default_callbacks: tuple[CallbackSpec, ...] = field(default=(), repr=False)
    webhook_allowed_hosts: HostPolicy = field(
        default_factory=lambda: parse_policy(None, WEBHOOK_HOSTS_VARIABLE)
    )
    # Retention: prune predictions finished longer ago than this (seconds); None: never
    prune_older_than: float | None = None

    @classmethod
    def build(cls, env: Mapping[str, str] | None = None, **values: Any) -> Settings:
        """Settings from explicit values (flags), the environment filling the rest."""
        env = os.environ if env is None else env
        given = {k: v for k, v in values.items() if v is not None}
        given.setdefault("api_key", api_key_from_env(env))
        given.setdefault("webhook_secret", env.get("TRACKER_WEBHOOK_SECRET") or None)
        given.setdefault("smtp_url", env.get("TRACKER_SMTP_URL") or None)
        given.setdefault("mail_from", env.get("TRACKER_MAIL_FROM") or DEFAULT_MAIL_FROM)
        if "retry_schedule" not in given and env.get("TRACKER_RETRY_SCHEDULE"):
            given["retry_schedule"] = parse_schedule(env["TRACKER_RETRY_SCHEDULE"])
        for name, variable, kind in _NUMBERS:
            if name not in given and env.get(variable, "").strip():
                given[name] = positive_number(env[variable], variable, kind)
        given.setdefault("webhook_allowed_hosts", webhook_policy_from_env(env))
        given.setdefault(
            "default_callbacks", default_callbacks_from_env(env, given["webhook_allowed_hosts"])
        )
        return cls(**given)

    def secrets(self) -> list[str]:
        """Values that must never be written anywhere."""
        values = [
            self.api_key,
            self.webhook_secret,
            url_password(self.smtp_url),
            url_password(self.database_url),
        ]
        return [s for s in values if s]


#: numeric settings read from the environment: field, variable, type
_NUMBERS: tuple[tuple[str, str, type[int] | type[float]], ...] = (
    ("max_answer_bytes", "TRACKER_MAX_ANSWER_BYTES", int),
    ("poll_timeout", "TRACKER_POLL_TIMEOUT", float),
)


def positive_number(text: str, name: str, kind: type[int] | type[float]) -> int | float:
    """A finite number above 0, or a ConfigError naming the variable."""
    try:
        value = kind(text.strip())
    except ValueError:
        value = 0
    if not 0 < value < float("inf"):
        what = "whole number" if kind is int else "number"
        raise ConfigError(f"{name} must be a positive {what} (got {text[:40]!r})")
    return value


def webhook_policy_from_env(env: Mapping[str, str] | None = None) -> HostPolicy:
    """TRACKER_WEBHOOK_ALLOWED_HOSTS (default ``external``); ConfigError when malformed."""
    env = os.environ if env is None else env
    return parse_policy(env.get(WEBHOOK_HOSTS_VARIABLE), WEBHOOK_HOSTS_VARIABLE)


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
