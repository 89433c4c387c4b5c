"""What the poller writes after each kind of poll: pure decisions, no I/O."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.test_observe import NOW, state
from tracker.exceptions import (
    UpstreamAuthError,
    UpstreamBadAnswer,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamTransient,
)
from tracker.poll.outcomes import (
    AnswerWrite,
    RecordError,
    RecordNotFound,
    Reschedule,
    plan_answer,
    plan_failure,
)
from tracker.poll.runtimes import RunTimes
from tracker.poll.schedule import PollPolicy

POLICY = PollPolicy(1.0, 30.0)


def test_a_rejected_key_puts_the_prediction_back_without_an_error() -> None:
    write = plan_failure(state(poll_interval=4.0), UpstreamAuthError("HTTP 401"), NOW, POLICY)
    assert isinstance(write, Reschedule)
    assert (write.next_poll.at, write.next_poll.interval) == (NOW, 4.0)
    assert (write.detail, write.attempted_at) == ("HTTP 401", NOW)


def test_a_rate_limit_waits_at_least_the_retry_after() -> None:
    error = UpstreamRateLimited("HTTP 429", status_code=429, retry_after=12.0)
    write = plan_failure(state(), error, NOW, POLICY)
    assert isinstance(write, Reschedule)
    assert write.next_poll.at is not None and write.next_poll.at >= NOW + timedelta(seconds=12)


def test_a_404_counts_toward_lost_with_its_own_backoff() -> None:
    write = plan_failure(state(not_found_count=3), UpstreamNotFound("HTTP 404"), NOW, POLICY)
    assert isinstance(write, RecordNotFound)
    assert write.next_poll.at is not None and write.next_poll.at > NOW


@pytest.mark.parametrize(
    "error",
    [UpstreamTransient("HTTP 502"), UpstreamError("HTTP 418"), UpstreamBadAnswer("not JSON")],
)
def test_other_failures_are_poll_errors_with_backoff(error: UpstreamError) -> None:
    write = plan_failure(state(consecutive_errors=2), error, NOW, POLICY)
    assert isinstance(write, RecordError)
    assert write.detail == error.detail and write.raw is None
    assert write.next_poll.at is not None and write.next_poll.at > NOW


def test_an_answer_that_is_no_prediction_keeps_its_body_as_raw() -> None:
    write = plan_answer(state(), {"created": 1, "data": []}, NOW, POLICY)
    assert isinstance(write, RecordError)
    assert write.raw == {"created": 1, "data": []}
    assert "no usable 'status'" in write.detail


def test_a_finished_answer_stops_polling_and_reports_the_run_time() -> None:
    body = {
        "id": "p1",
        "status": "succeeded",
        "model": "m/x",
        "created_at": "2026-01-02T03:00:00Z",
        "completed_at": "2026-01-02T03:02:30Z",
    }
    write = plan_answer(state(status="processing"), body, NOW, POLICY, RunTimes())
    assert isinstance(write, AnswerWrite)
    assert write.update.terminal and write.run_time == 150.0
    assert write.next_poll.at is None


def test_an_unchanged_answer_backs_off() -> None:
    prev = state(status="processing", poll_interval=2.0)
    write = plan_answer(prev, {"id": "p1", "status": "processing"}, NOW, POLICY)
    assert isinstance(write, AnswerWrite)
    assert not write.update.changed and write.run_time is None
    assert write.next_poll.interval is not None and write.next_poll.interval > 2.0
