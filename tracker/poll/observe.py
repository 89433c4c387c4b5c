"""Turn one upstream answer into one update of what the tracker knows.

Nothing here knows whether the answer came from a poll, a pushed webhook or a
stream: ``parse_prediction`` checks the body, ``plan_observation`` compares it
with the previous state, and the store writes the result in one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tracker.archive.outputs import output_urls
from tracker.domain import (
    LogChunk,
    ObservationUpdate,
    PredictionState,
    Status,
    Tracking,
    Transition,
    is_terminal,
)
from tracker.events import Event
from tracker.exceptions import UpstreamBadAnswer
from tracker.timeparse import parse_timestamp

log = logging.getLogger(__name__)

#: longest upstream status string stored; anything longer is not a status
MAX_STATUS_LENGTH = 64
#: longest predict_time copied to its column (seconds, about 115 days)
MAX_PREDICT_TIME = 1e7
#: longest model or version copied to its column (UTF-8 bytes); a longer one stays
#: only in ``raw``: both columns are keys of indexes (on PostgreSQL a btree entry
#: holds at most about 2,700 bytes), and a real one is a few dozen characters
MAX_NAME_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Observation:
    """A prediction object as the upstream sent it, with its fields picked out.

    ``has(name)`` tells whether the upstream sent a field at all, so a missing
    field never overwrites what the tracker already stored.
    """

    body: dict[str, Any]

    def has(self, name: str) -> bool:
        return name in self.body

    def get(self, name: str) -> Any:
        return self.body.get(name)

    @property
    def status(self) -> str:
        return self.body["status"]


def parse_prediction(body: object, expected_id: str) -> Observation:
    """Accept ``body`` as a prediction object or raise ``UpstreamBadAnswer``."""
    if not isinstance(body, dict):
        raise UpstreamBadAnswer(
            f"answer is JSON {type(body).__name__}, not a prediction object", body=body
        )
    status = body.get("status")
    if not _usable_status(status):
        keys = ", ".join(sorted(map(str, body))[:8]) or "none"
        raise UpstreamBadAnswer(
            f"answer is not a prediction: no usable 'status' (keys: {keys})", body=body
        )
    answer_id = body.get("id")
    if answer_id is not None and answer_id != expected_id:
        raise UpstreamBadAnswer(
            f"answer is for prediction {str(answer_id)[:140]!r}, not {expected_id!r}", body=body
        )
    return Observation(body)


def _usable_status(status: object) -> bool:
    """A short printable word: control characters, or what the sanitizer put in
    place of NUL, make a value no status should ever be compared with."""
    return (
        isinstance(status, str)
        and 0 < len(status) <= MAX_STATUS_LENGTH
        and status.isprintable()
        and "\ufffd" not in status
    )


def stale_reason(state: PredictionState, observation: Observation, *, pushed: bool) -> str | None:
    """Why an answer is older than what is stored (None when it is not).

    A terminal status is final: an answer with another status after it is older
    than the stored state. Logs only grow: an answer whose logs are a shorter
    beginning of the stored ones is older too (logs that differ otherwise are a
    restart upstream, see ``_new_log_chunk``). A push may also be late where a poll
    is always current, so a pushed ``starting`` after the run was seen running, or
    a pushed output list that is a shorter beginning of the stored one, is older as
    well (a poll saying so is believed: the upstream restarted the run).
    """
    status, stored = observation.status, state.status
    if is_terminal(stored) and status != stored:
        return f"it says {status!r} after the terminal {stored!r}"
    logs, kept = observation.get("logs"), state.logs
    if isinstance(logs, str) and logs and len(logs) < len(kept) and kept.startswith(logs):
        return f"its logs ({len(logs)} characters) are older than the stored ({len(kept)})"
    if pushed and status == Status.STARTING and _running_or_later(stored):
        return f"it says 'starting' after {stored!r}"
    output = observation.get("output")
    if pushed and _shorter_list(output, state.output):
        return f"its output ({len(output)} items) is older than the stored ({len(state.output)})"
    return None


def _shorter_list(output: Any, kept: Any) -> bool:
    """Output that streams as a list only grows: a push whose list is a shorter
    beginning of the stored one was sent before it."""
    return (
        isinstance(output, list)
        and isinstance(kept, list)
        and len(output) < len(kept)
        and kept[: len(output)] == output
    )


def plan_observation(
    state: PredictionState, observation: Observation, observed_at: datetime
) -> ObservationUpdate:
    """Compare a fresh answer with the stored state; decide every write."""
    status = observation.status
    fields: dict[str, Any] = {"status": status, "raw": observation.body}
    fields.update(_descriptive_fields(observation))
    output_changed = _merge_output(state, observation, fields)
    log_chunk = _new_log_chunk(state, observation, observed_at, fields)

    transition = None
    if status != state.status:
        transition = Transition(
            from_status=state.status,
            to_status=status,
            observed_at=observed_at,
            upstream_at=_upstream_time_for(status, fields),
        )

    terminal = is_terminal(status)
    if terminal and state.tracking == Tracking.ACTIVE:
        fields["tracking"] = Tracking.DONE.value
    started_before = state.started_at is not None or _running_or_later(state.status)
    events = _events(state.status, started_before, status, output_changed, log_chunk is not None)

    return ObservationUpdate(
        prediction_id=state.id,
        observed_at=observed_at,
        expected_status=state.status,
        expected_log_seq=state.log_seq,
        fields=fields,
        transition=transition,
        log_chunk=log_chunk,
        changed=transition is not None or log_chunk is not None or output_changed,
        terminal=terminal,
        events=events,
        artifacts=_files_to_archive(state, status, output_changed, fields),
        first_created_at=state.created_at is None and "created_at" in fields,
    )


def _files_to_archive(
    state: PredictionState, status: str, output_changed: bool, fields: dict[str, Any]
) -> tuple[tuple[int, str], ...]:
    """The output's file URLs, when this answer is the first to show them succeeded
    (the store keeps one artifact per position, so seeing them again adds nothing)."""
    if status != Status.SUCCEEDED or (state.status == status and not output_changed):
        return ()
    return output_urls(fields.get("output", state.output))


def _events(
    previous: str | None, started_before: bool, status: str, output_changed: bool, new_logs: bool
) -> tuple[str, ...]:
    """Callback events, as Replicate's ``webhook_events_filter`` means them.

    ``start`` fires once, when the prediction is first seen running or past
    it (a prediction first seen already finished still gets its ``start``; one
    that goes back to ``starting`` and runs again does not get a second);
    ``completed`` fires once, on the first terminal status.
    """
    events = []
    if _running_or_later(status) and not started_before:
        events.append(Event.START.value)
    if output_changed:
        events.append(Event.OUTPUT.value)
    if new_logs:
        events.append(Event.LOGS.value)
    if is_terminal(status) and not is_terminal(previous):
        events.append(Event.COMPLETED.value)
    return tuple(events)


def _running_or_later(status: str | None) -> bool:
    return status == Status.PROCESSING or is_terminal(status)


def _descriptive_fields(observation: Observation) -> dict[str, Any]:
    """Fields copied as they come, when the answer has them."""
    fields: dict[str, Any] = {}
    for name in ("model", "version"):
        value = observation.get(name)
        if isinstance(value, str) and len(value.encode("utf-8", "surrogatepass")) <= MAX_NAME_BYTES:
            fields[name] = value
    for name in ("input", "urls", "error"):
        if observation.has(name):
            fields[name] = observation.get(name)
    for name in ("created_at", "started_at", "completed_at"):
        parsed = parse_timestamp(observation.get(name))
        if parsed is not None:
            fields[name] = parsed
    if not _running_or_later(observation.status):
        # Kept only once the run is seen running: a stored started_at then means the
        # start event has fired (the answer itself stays whole in `raw`).
        fields.pop("started_at", None)
    data_removed = observation.get("data_removed")
    if isinstance(data_removed, bool):
        fields["data_removed"] = data_removed
    metrics = observation.get("metrics")
    if isinstance(metrics, dict) and metrics:
        fields["metrics"] = metrics
        predict_time = _plausible_seconds(metrics.get("predict_time"))
        if predict_time is not None:
            fields["predict_time"] = predict_time
    return fields


def _plausible_seconds(value: object) -> float | None:
    """A run time the predict_time column can hold and sums stay finite over;
    anything else stays only in ``metrics``, as received."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return float(value) if 0 <= value <= MAX_PREDICT_TIME else None


def _merge_output(state: PredictionState, observation: Observation, fields: dict[str, Any]) -> bool:
    """Store a new output; never replace a stored one with null.

    Upstream removes outputs about an hour after completion and then answers
    ``output: null``; the stored copy is then the only one left.
    """
    output = observation.get("output")
    if output is None or output == state.output:
        return False
    fields["output"] = output
    return True


def _new_log_chunk(
    state: PredictionState,
    observation: Observation,
    observed_at: datetime,
    fields: dict[str, Any],
) -> LogChunk | None:
    """Only the log text that is new since the previous answer.

    Upstream logs are cumulative. When the fresh text does not extend the
    stored text (the upstream restarted or truncated it), the whole fresh text
    becomes the chunk, marked ``restarted``. An empty or missing text never
    erases what was stored. ``raw_logs_moved`` tells whether the answer's logs are
    the logs column's text after this write (nearly always): then ``raw`` keeps
    null in their place rather than a second copy.
    """
    logs = observation.get("logs")
    if not isinstance(logs, str) or logs == state.logs:
        fields["raw_logs_moved"] = isinstance(logs, str)
        return None
    fields["raw_logs_moved"] = bool(logs)  # an empty text leaves the stored one
    if not logs:
        return None
    fields["logs"] = logs
    seq = state.log_seq + 1
    fields["log_seq"] = seq
    if logs.startswith(state.logs):
        return LogChunk(
            seq=seq, observed_at=observed_at, text=logs[len(state.logs) :], restarted=False
        )
    log.warning(
        "prediction %s: upstream logs no longer extend the stored logs; storing them whole",
        state.id,
    )
    return LogChunk(seq=seq, observed_at=observed_at, text=logs, restarted=True)


def _upstream_time_for(status: str, fields: dict[str, Any]) -> datetime | None:
    if status == Status.STARTING:
        return fields.get("created_at")
    if status == Status.PROCESSING:
        return fields.get("started_at")
    if is_terminal(status):
        return fields.get("completed_at")
    return None
