"""What to write after a poll or a push: pure decisions, beside ``observe.plan_observation``.

A poll ends in an answer or an ``UpstreamError``; a push (the upstream's own
webhook, ``tracker.poll.pushes``) is an answer too. ``plan_answer`` turns an
answer from either into the observation to write and the next poll, or finds it
older than what is stored; ``plan_failure`` turns an error into one of three
writes. Nothing here does I/O or keeps state; the poller and the push receiver
carry out what these functions decide.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from tracker.domain import NextPoll, ObservationUpdate, PredictionState, Status
from tracker.exceptions import (
    UpstreamAuthError,
    UpstreamBadAnswer,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamTransient,
)
from tracker.poll.observe import parse_prediction, plan_observation, stale_reason
from tracker.poll.progress import remaining_seconds
from tracker.poll.runtimes import RunTimes, RunWindow
from tracker.poll.schedule import PollPolicy


@dataclass(frozen=True, slots=True)
class Reschedule:
    """Put the prediction back without counting an error (rate limit, rejected key)."""

    next_poll: NextPoll
    detail: str
    attempted_at: datetime


@dataclass(frozen=True, slots=True)
class RecordError:
    """A failed poll: counted, noted in ``last_error``, retried with backoff."""

    now: datetime
    detail: str
    next_poll: NextPoll
    raw: Any = None  #: the JSON body, when the answer was JSON but not a prediction
    #: the upstream itself failed (no connection, a timeout, 5xx), not this prediction
    endpoint: bool = False


@dataclass(frozen=True, slots=True)
class RecordNotFound:
    """A 404: counted toward ``lost``."""

    now: datetime
    detail: str
    next_poll: NextPoll


FailureWrite = Reschedule | RecordError | RecordNotFound


@dataclass(frozen=True, slots=True)
class StaleAnswer:
    """An answer older than what is stored (a late push): nothing of it is written;
    a poll that brought it is put back with ``next_poll``."""

    reason: str
    next_poll: NextPoll


@dataclass(frozen=True, slots=True)
class AnswerWrite:
    """An accepted answer: the observation to write and when to poll next."""

    update: ObservationUpdate
    next_poll: NextPoll
    #: seconds from creation to completion, when this answer ended the run
    run_time: float | None = None
    #: seconds from the run's start to its completion, when the start is known too
    processing_time: float | None = None


def plan_failure(
    state: PredictionState, error: UpstreamError, now: datetime, policy: PollPolicy
) -> FailureWrite:
    """The write for a poll that brought no usable answer."""
    if isinstance(error, UpstreamAuthError):
        next_poll = NextPoll(at=now, interval=state.poll_interval)
        return Reschedule(next_poll, error.detail, now)
    if isinstance(error, UpstreamRateLimited):
        until = now + timedelta(seconds=error.retry_after)
        next_poll = policy.after_pause(until=until, previous_interval=state.poll_interval)
        return Reschedule(next_poll, error.detail, now)
    if isinstance(error, UpstreamNotFound):
        next_poll = policy.after_error(
            consecutive_errors=state.not_found_count, now=now, pushed=_pushed(state)
        )
        return RecordNotFound(now, error.detail, next_poll)
    return _poll_error(state, error, now, policy)


def _poll_error(
    state: PredictionState, error: UpstreamError, now: datetime, policy: PollPolicy
) -> RecordError:
    next_poll = policy.after_error(
        consecutive_errors=state.consecutive_errors, now=now, pushed=_pushed(state)
    )
    raw = error.body if isinstance(error, UpstreamBadAnswer) else None
    return RecordError(now, error.detail, next_poll, raw, isinstance(error, UpstreamTransient))


def plan_answer(
    state: PredictionState,
    body: object,
    now: datetime,
    policy: PollPolicy,
    run_times: RunTimes | None = None,
    *,
    push_id: str | None = None,
) -> AnswerWrite | RecordError | StaleAnswer:
    """The write for a 2xx answer, or for a push (``push_id``: its webhook-id): both go
    through here.

    ``run_times`` (the adaptive scheduler's learned run times) also turns on polling
    by progress bars. A prediction the upstream pushes is polled every poll-max
    only, as a safety net against lost pushes (``PollPolicy.safety_net``).
    """
    try:
        observation = parse_prediction(body, state.id)
    except UpstreamBadAnswer as exc:
        return _poll_error(state, exc, now, policy)
    pushed = push_id is not None
    stale = stale_reason(state, observation, pushed=pushed)
    if stale is not None:
        return StaleAnswer(stale, _next_poll(state, policy, now, changed=False, terminal=False))
    update = plan_observation(state, observation, now)
    if pushed:
        update = replace(update, push_id=push_id)
    model = update.fields.get("model")
    created = update.fields.get("created_at")
    started = update.fields.get("started_at", state.started_at)
    completed = update.fields.get("completed_at")
    run_time = processing_time = None
    if update.terminal and model and completed:
        if created:
            run_time = (completed - created).total_seconds()
        if started:
            processing_time = (completed - started).total_seconds()
    if pushed or _pushed(state):
        next_poll = policy.safety_net(now=now, terminal=update.terminal)
        return AnswerWrite(update, next_poll, run_time, processing_time)
    likely, since = _run_window(run_times, model, update, created, started)
    next_poll = policy.after_answer(
        previous_interval=state.poll_interval,
        changed=update.changed,
        terminal=update.terminal,
        now=now,
        elapsed=(now - since).total_seconds() if since is not None else None,
        likely=likely,
        remaining=_remaining(state, update, now) if run_times is not None else None,
    )
    return AnswerWrite(update, next_poll, run_time, processing_time)


def _run_window(
    run_times: RunTimes | None,
    model: str | None,
    update: ObservationUpdate,
    created: datetime | None,
    started: datetime | None,
) -> tuple[RunWindow | None, datetime | None]:
    """The model's run-time window and the moment it counts from: the run's start
    once it is processing and start-to-completion times are known (the time it
    queued says nothing of when it ends), else its creation."""
    if run_times is None:
        return None, created
    if update.fields["status"] == Status.PROCESSING and started is not None:
        window = run_times.processing_window(model)
        if window is not None:
            return window, started
    return run_times.likely_window(model), created


def _pushed(state: PredictionState) -> bool:
    """Whether the upstream pushes this prediction (it has pushed it at least once)."""
    return state.last_pushed_at is not None


def _next_poll(
    state: PredictionState, policy: PollPolicy, now: datetime, *, changed: bool, terminal: bool
) -> NextPoll:
    if _pushed(state):
        return policy.safety_net(now=now, terminal=terminal)
    return policy.after_answer(
        previous_interval=state.poll_interval, changed=changed, terminal=terminal, now=now
    )


def _remaining(state: PredictionState, update: ObservationUpdate, now: datetime) -> float | None:
    """Seconds a processing run still needs, by its progress bar and pace."""
    started = update.fields.get("started_at")
    if update.fields["status"] != Status.PROCESSING or started is None:
        return None
    logs = update.fields.get("logs", state.logs)
    return remaining_seconds(logs, (now - started).total_seconds())
