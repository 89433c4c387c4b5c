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


def _learned(min_samples: int = 3) -> RunTimes:
    """A model whose runs take 100-120 s from creation but 10-14 s from their start."""
    times = RunTimes(min_samples=min_samples)
    for total, processing in ((100.0, 10.0), (110.0, 12.0), (120.0, 14.0)):
        times.add("m/x", total, processing=processing)
    return times


def _processing(started_seconds_ago: float) -> dict[str, object]:
    return {
        "id": "p1",
        "status": "processing",
        "model": "m/x",
        "logs": "chunk 1 rendered\n",
        "created_at": (NOW - timedelta(seconds=95)).isoformat(),
        "started_at": (NOW - timedelta(seconds=started_seconds_ago)).isoformat(),
    }


def _wait(write: object) -> float:
    assert isinstance(write, AnswerWrite) and write.next_poll.at is not None
    return (write.next_poll.at - NOW).total_seconds()


def test_a_processing_run_is_timed_from_its_start_once_processing_times_are_known() -> None:
    """95 s after creation is inside the creation window's reach (it opens at 101 s),
    but the run started 2 s ago and runs take 10 s at least: wait until then."""
    write = plan_answer(state(status="starting"), _processing(2.0), NOW, POLICY, _learned())
    assert _wait(write) == pytest.approx(10.2 - 2.0)


def test_without_processing_times_the_run_is_timed_from_its_creation() -> None:
    times = RunTimes(min_samples=3)
    times.load({"m/x": [100.0, 110.0, 120.0]})
    write = plan_answer(state(status="starting"), _processing(2.0), NOW, POLICY, times)
    assert _wait(write) == pytest.approx(101.0 - 95.0)


def test_a_queued_run_is_timed_from_its_creation() -> None:
    body = {
        "id": "p1",
        "status": "starting",
        "model": "m/x",
        "created_at": (NOW - timedelta(seconds=95)).isoformat(),
    }
    write = plan_answer(state(status="starting"), body, NOW, POLICY, _learned())
    assert _wait(write) == pytest.approx(101.0 - 95.0)


def test_a_finished_run_reports_its_time_from_creation_and_from_its_start() -> None:
    body = {
        "id": "p1",
        "status": "succeeded",
        "model": "m/x",
        "created_at": "2026-01-02T03:00:00Z",
        "started_at": "2026-01-02T03:00:40Z",
        "completed_at": "2026-01-02T03:02:30Z",
    }
    write = plan_answer(state(status="processing"), body, NOW, POLICY, RunTimes())
    assert isinstance(write, AnswerWrite)
    assert (write.run_time, write.processing_time) == (150.0, 110.0)
