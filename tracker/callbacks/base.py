"""What every sender receives and returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class DeliveryJob:
    """One claimed delivery, with everything needed to send it."""

    id: int
    message_id: str  #: stable across retries: the receiver's idempotency key
    prediction_id: str
    kind: str  #: "webhook" or "email"
    target: str  #: URL or address
    event: str
    payload: str  #: the prediction object as JSON text, exactly as every attempt sends it
    attempts: int  #: attempts made before this one
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one attempt."""

    ok: bool
    status_code: int | None = None  #: HTTP status, or SMTP reply code
    error: str | None = None  #: safe to store and log: never contains a secret
    retry_after: float | None = None  #: seconds the receiver asked us to wait
    permanent: bool = False  #: no retry can succeed (410 Gone, a refused address)
    duration_ms: int | None = None
