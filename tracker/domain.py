"""Plain records and enums shared by every layer. No I/O here."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tracker.exceptions import InvalidInput

#: what an upstream task ID may look like; anything else never reaches a URL or the database
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


class Status(enum.StrEnum):
    """Upstream statuses the tracker knows. Unknown ones are stored as plain strings."""

    STARTING = "starting"  #: queued or booting
    PROCESSING = "processing"  #: running the model
    SUCCEEDED = "succeeded"  #: terminal: finished with output
    FAILED = "failed"  #: terminal: finished with an error
    CANCELED = "canceled"  #: terminal: canceled by the user
    ABORTED = "aborted"  #: terminal: ended before it started


TERMINAL_STATUSES = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELED, Status.ABORTED})


def is_terminal(status: str | None) -> bool:
    return status in TERMINAL_STATUSES


class Tracking(enum.StrEnum):
    """What the tracker is doing about a prediction."""

    ACTIVE = "active"  #: being polled
    DONE = "done"  #: reached a terminal status
    LOST = "lost"  #: the upstream kept answering 404
    FORGOTTEN = "forgotten"  #: a user stopped tracking it; history kept


def validate_id(prediction_id: str) -> str:
    if not ID_PATTERN.fullmatch(prediction_id):
        shown = prediction_id if prediction_id else "(empty)"
        if len(shown) > 40:
            shown = f"{shown[:40]}…({len(prediction_id)} characters)"
        raise InvalidInput(
            f"invalid prediction ID {shown!r}: expected 1-128 letters, digits, '_' or '-',"
            " starting with a letter or digit"
        )
    return prediction_id


@dataclass(frozen=True, slots=True)
class PredictionState:
    """What the tracker last knew of a prediction: the input to applying an observation."""

    id: str
    status: str | None
    tracking: str
    logs: str
    output: Any
    poll_count: int
    error_count: int
    consecutive_errors: int
    poll_interval: float | None
    not_found_count: int
    not_found_since: datetime | None
    registered_at: datetime
    log_seq: int  #: seq of the last prediction_logs row (0 when none)
    #: when upstream said the run started; set once it has been seen running
    started_at: datetime | None = None
    #: when the upstream last pushed it (its own webhook); polled at poll-max since
    last_pushed_at: datetime | None = None
    #: upstream ``created_at`` as stored (None: not seen yet)
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Prediction:
    """A whole predictions row, for display."""

    id: str
    status: str | None
    tracking: str
    model: str | None
    version: str | None
    input: Any
    output: Any
    error: Any
    logs: str
    metrics: Any
    predict_time: float | None
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    data_removed: bool | None
    urls: Any
    labels: dict[str, str]
    registered_at: datetime
    last_polled_at: datetime | None
    next_poll_at: datetime | None
    poll_count: int
    error_count: int
    last_error: str | None
    #: when the tracker cancels it if it has not ended (``--deadline``); None: no deadline
    deadline_at: datetime | None = None
    #: when a cancel was last asked for (``tracker cancel``, or the deadline)
    cancel_requested_at: datetime | None = None
    #: who asked for it: ``user`` or ``deadline`` (CancelReason)
    cancel_reason: str | None = None
    #: what became of that request: ``sending``, ``requested`` or ``failed`` (CancelState)
    cancel_outcome: str | None = None
    #: the upstream's answer to it, in words
    cancel_detail: str | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    from_status: str | None
    to_status: str
    observed_at: datetime
    upstream_at: datetime | None


@dataclass(frozen=True, slots=True)
class LogChunk:
    seq: int
    observed_at: datetime
    text: str
    restarted: bool


@dataclass(frozen=True, slots=True)
class Callback:
    id: int
    kind: str
    target: str
    events: str


class DeliveryState(enum.StrEnum):
    PENDING = "pending"  #: waiting for its next attempt
    DELIVERED = "delivered"  #: a receiver accepted it
    DEAD = "dead"  #: gave up: a permanent refusal, or every retry failed


@dataclass(frozen=True, slots=True)
class CallbackSpec:
    """A callback to attach to predictions: where to send which events."""

    kind: str  #: "webhook" or "email"
    target: str
    events: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int | None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    callback_id: int
    prediction_id: str
    kind: str
    target: str
    event: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    message_id: str
    history: list[DeliveryAttempt] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PredictionDetail:
    prediction: Prediction
    transitions: list[Transition] = field(default_factory=list)
    logs: list[LogChunk] = field(default_factory=list)
    callbacks: list[Callback] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)


class ArtifactState(enum.StrEnum):
    PENDING = "pending"  #: waiting to be downloaded (or for its next attempt)
    STORED = "stored"  #: in the archive, whole
    FAILED = "failed"  #: gave up: too large, refused, or gone before it could be fetched


@dataclass(frozen=True, slots=True)
class Artifact:
    """One output file of a prediction and what became of it (table ``artifacts``)."""

    id: int
    prediction_id: str
    position: int
    source_url: str
    stored_url: str | None
    state: str
    bytes: int | None
    sha256: str | None
    content_type: str | None
    attempts: int
    last_error: str | None
    created_at: datetime
    stored_at: datetime | None


@dataclass(frozen=True, slots=True)
class ArtifactJob:
    """One claimed artifact, with what its download needs."""

    id: int
    prediction_id: str
    position: int
    source_url: str
    attempts: int  #: attempts made before this one
    created_at: datetime
    #: the upstream said it removed the output: a failed download cannot work later
    data_removed: bool = False


class CancelReason(enum.StrEnum):
    """Why a cancel was asked for (column ``cancel_reason``)."""

    USER = "user"  #: `tracker cancel`, the service's cancel endpoint, ``Tracker.cancel``
    DEADLINE = "deadline"  #: the daemon, once the prediction's ``deadline_at`` passed


class CancelState(enum.StrEnum):
    """What became of the last cancel request (column ``cancel_outcome``)."""

    SENDING = "sending"  #: claimed, the request not answered yet (or its sender died)
    REQUESTED = "requested"  #: the upstream accepted it; the next poll shows the status
    FAILED = "failed"  #: the upstream refused it or could not be reached


class CancelOutcome(enum.StrEnum):
    """What one ``cancel`` call did (``CancelResult.outcome``)."""

    REQUESTED = "requested"  #: the upstream accepted the request
    TERMINAL = "terminal"  #: it had already ended: nothing was sent
    NOT_REGISTERED = "not_registered"  #: no such prediction is registered: nothing was sent
    FAILED = "failed"  #: the upstream refused the request or could not be reached


@dataclass(frozen=True, slots=True)
class CancelResult:
    """What ``Tracker.cancel`` (and `tracker cancel`, and the service) did for one ID."""

    prediction_id: str
    outcome: str  #: a CancelOutcome value
    message: str  #: one line for people, as `tracker cancel` prints it
    #: when the request was recorded (``cancel_requested_at``); None when none was sent
    requested_at: datetime | None = None
    #: the status the upstream's answer showed, when it was a prediction object
    upstream_status: str | None = None
    #: the stored status when nothing was sent because it had ended
    status: str | None = None

    @property
    def ok(self) -> bool:
        """True unless the ID is unknown or the request failed (an ended prediction
        needs no cancel: that is not a failure)."""
        return self.outcome in (CancelOutcome.REQUESTED, CancelOutcome.TERMINAL)


@dataclass(frozen=True, slots=True)
class CancelTarget:
    """A prediction to send a cancel request for: what the request needs."""

    prediction_id: str
    urls: Any  #: the stored ``urls`` (its ``cancel`` is used on the API's own origin)
    requested_at: datetime  #: the ``cancel_requested_at`` this request was recorded with
    reason: str  #: a CancelReason value


@dataclass(frozen=True, slots=True)
class ObservationUpdate:
    """Everything one upstream answer changes, computed before any write.

    ``fields`` maps ``predictions`` columns to their new values. The store
    applies the whole update in one transaction, and only if the row still
    matches ``expected_status`` and ``expected_log_seq`` (so a stale or repeated
    answer can never add a second transition or log row).
    """

    prediction_id: str
    observed_at: datetime
    expected_status: str | None
    expected_log_seq: int
    fields: dict[str, Any]
    transition: Transition | None
    log_chunk: LogChunk | None
    changed: bool
    terminal: bool
    #: callback events this answer causes, in canonical order (see tracker.events)
    events: tuple[str, ...] = ()
    #: the ``webhook-id`` of the push that brought this answer (None: a poll's answer);
    #: kept in ``upstream_pushes`` in the same transaction
    push_id: str | None = None
    #: when that push arrived (``upstream_pushes.received_at``): before it was planned
    #: and written, which on a busy machine can be seconds later (None: ``observed_at``)
    push_received_at: datetime | None = None
    #: ``(position, url)`` of the output files this answer reveals, to archive when
    #: TRACKER_ARCHIVE_URL is set (``tracker.archive.outputs``)
    artifacts: tuple[tuple[int, str], ...] = ()
    #: this answer is the first to tell ``created_at``: a deadline counts from it now
    first_created_at: bool = False

    @property
    def pushed(self) -> bool:
        """The upstream pushed this answer (its webhook) rather than answering a poll."""
        return self.push_id is not None


@dataclass(frozen=True, slots=True)
class NextPoll:
    """When to poll a prediction again (``at`` is None when it needs no more polls)."""

    at: datetime | None
    interval: float | None


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
