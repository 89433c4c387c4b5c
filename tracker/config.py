"""Settings: command-line flags and TRACKER_* variables in one typed object."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

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

#: variables that may hold the upstream API key, first one set wins
API_KEY_VARIABLES = ("TRACKER_API_KEY", "ANYAPI_API_KEY", "REPLICATE_API_TOKEN")


def api_key_from_env(env: dict[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    for name in API_KEY_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
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

    @classmethod
    def build(cls, **values: Any) -> Settings:
        """Settings from explicit values (flags), the environment filling the rest."""
        given = {k: v for k, v in values.items() if v is not None}
        given.setdefault("api_key", api_key_from_env())
        return cls(**given)

    def secrets(self) -> list[str]:
        """Values that must never be written anywhere."""
        return [s for s in (self.api_key,) if s]
