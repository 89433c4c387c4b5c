"""The one exception tree of the project.

Library errors (httpx, SQLAlchemy, the database drivers) are mapped to these at
the edge where they happen, with ``raise ... from exc``; the rest of the code
only catches ``TrackerError`` and its children.
"""

from __future__ import annotations


class TrackerError(Exception):
    """Base of every error the tracker raises on purpose."""


class ConfigError(TrackerError):
    """A setting is missing or malformed."""


class InvalidInput(TrackerError):
    """Input from the user (an ID, a label, a URL) is not acceptable."""


class PredictionNotFound(TrackerError):
    """No prediction with this ID is registered."""


class NotTracked(TrackerError):
    """The prediction is no longer polled (lost or forgotten): it will not end by itself."""


class WaitTimeout(TrackerError, TimeoutError):
    """``wait`` gave up: the prediction did not reach a terminal status in time."""


class StoreError(TrackerError):
    """The database failed or is not in the expected shape."""


class SchemaMissing(StoreError):
    """The database has not been migrated: run ``tracker db upgrade``."""


class DatabaseMissing(SchemaMissing):
    """The SQLite file does not exist: nothing was created; ``tracker db upgrade`` creates it."""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer tracker: upgrade the tracker, not the database."""


class StaleObservation(StoreError):
    """The row changed since it was read (another writer, or the same answer twice)."""


class UnstorableObservation(StoreError):
    """The database refused one observation (the rest of its batch is written)."""


class StoreGone(StoreError):
    """The SQLite database file was deleted or replaced under the running daemon."""


class StoreUnavailable(StoreError):
    """The database connection failed; the operation may be retried."""


class UpstreamError(TrackerError):
    """Polling the upstream API failed. ``detail`` is safe to store and log."""

    def __init__(self, detail: str, *, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status_code = status_code


class UpstreamAuthError(UpstreamError):
    """401/403: the API key is missing, wrong or lacks permission."""


class UpstreamNotFound(UpstreamError):
    """404: the upstream does not know this prediction (yet, or any more)."""


class UpstreamRateLimited(UpstreamError):
    """429 or 503 with Retry-After: nothing may be sent with this key before ``retry_at``."""

    def __init__(self, detail: str, *, status_code: int, retry_after: float) -> None:
        super().__init__(detail, status_code=status_code)
        self.retry_after = retry_after


class UpstreamTransient(UpstreamError):
    """5xx, a timeout or a refused connection: back off and try again."""


class UpstreamBadAnswer(UpstreamError):
    """A 2xx answer whose body is not JSON or not a prediction object."""

    def __init__(self, detail: str, *, body: object | None = None) -> None:
        super().__init__(detail, status_code=200)
        #: the parsed JSON body when there was one, kept for ``raw``
        self.body = body
