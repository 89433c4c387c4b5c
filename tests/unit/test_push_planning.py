"""Planning a pushed answer: the poll's own ``plan_answer`` with a ``push_id``, what
makes an answer older than the stored state, and the safety-net schedule."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

import pytest

from tests.unit.test_observe import NOW, state
from tracker.domain import NextPoll
from tracker.poll.outcomes import AnswerWrite, RecordError, StaleAnswer, plan_answer
from tracker.poll.schedule import PollPolicy

POLICY = PollPolicy(poll_min=1.0, poll_max=30.0, rng=random.Random(1))


def body(status: str, logs: str = "", **fields: object) -> dict[str, object]:
    return {"id": "p1", "status": status, "logs": logs, **fields}


def test_a_push_is_planned_as_a_poll_answer_and_marked_pushed() -> None:
    before = state(status="starting")
    polled = plan_answer(before, body("processing", "a\n"), NOW, POLICY)
    pushed = plan_answer(before, body("processing", "a\n"), NOW, POLICY, push_id="msg_1")
    assert isinstance(polled, AnswerWrite) and isinstance(pushed, AnswerWrite)
    assert replace(pushed.update, push_id=None) == polled.update
    assert pushed.update.pushed and not polled.update.pushed
    assert pushed.update.events == ("start", "logs")


def test_a_pushed_prediction_is_polled_every_poll_max_and_not_after_its_end() -> None:
    running = plan_answer(state(status="starting"), body("processing"), NOW, POLICY, push_id="m")
    assert isinstance(running, AnswerWrite)
    assert running.next_poll == NextPoll(NOW + timedelta(seconds=30), 30.0)
    # a poll of a prediction pushed before: the same safety net, though it changed
    pushed_before = state(status="starting", last_pushed_at=NOW - timedelta(seconds=5))
    polled = plan_answer(pushed_before, body("processing", "x\n"), NOW, POLICY)
    assert isinstance(polled, AnswerWrite) and polled.update.changed
    assert polled.next_poll == NextPoll(NOW + timedelta(seconds=30), 30.0)
    ended = plan_answer(state(status="processing"), body("succeeded"), NOW, POLICY, push_id="m")
    assert isinstance(ended, AnswerWrite) and ended.next_poll == NextPoll(None, None)
    # never pushed: the usual schedule (poll-min after a change)
    usual = plan_answer(state(status="starting"), body("processing", "x\n"), NOW, POLICY)
    assert isinstance(usual, AnswerWrite) and usual.next_poll.interval == 1.0


def test_poll_errors_of_a_pushed_prediction_wait_at_least_poll_max() -> None:
    assert POLICY.after_error(consecutive_errors=0, now=NOW, pushed=True).at == NOW + timedelta(
        seconds=30
    )
    at = POLICY.after_error(consecutive_errors=0, now=NOW).at
    assert at is not None and at < NOW + timedelta(seconds=30)


@pytest.mark.parametrize(
    ("stored", "logs", "pushed_status", "says"),
    [
        ("succeeded", "a\nb\n", "processing", "after the terminal 'succeeded'"),
        ("succeeded", "a\nb\n", "canceled", "after the terminal 'succeeded'"),
        ("failed", "", "starting", "after the terminal 'failed'"),
        ("processing", "a\nb\n", "processing", "logs (2 characters) are older"),
        ("processing", "a\n", "starting", "'starting' after 'processing'"),
    ],
)
def test_a_push_older_than_the_stored_state_is_stale(
    stored: str, logs: str, pushed_status: str, says: str
) -> None:
    pushed_logs = "a\n" if pushed_status == "processing" else ""
    before = state(status=stored, logs=logs, log_seq=1 if logs else 0)
    planned = plan_answer(before, body(pushed_status, pushed_logs), NOW, POLICY, push_id="msg_1")
    assert isinstance(planned, StaleAnswer)
    assert says in planned.reason


def test_what_is_not_stale() -> None:
    running = state(status="processing", logs="a\n", log_seq=1)
    for later in (
        body("processing", "a\nb\n"),  # logs that grow
        body("processing", "a\n"),  # the same again
        body("processing", ""),  # no logs: never erases them
        body("processing", "other\n"),  # logs that differ: a restart upstream, stored whole
        body("succeeded", "a\n"),  # the end
    ):
        assert isinstance(plan_answer(running, later, NOW, POLICY, push_id="msg_1"), AnswerWrite)
    # a poll saying 'starting' after a run is believed (the upstream restarted it)
    assert isinstance(plan_answer(running, body("starting"), NOW, POLICY), AnswerWrite)
    done = state(status="succeeded", tracking="done", logs="a\n", log_seq=1)
    same_end = plan_answer(done, body("succeeded", "a\n", metrics={"predict_time": 2}), NOW, POLICY)
    assert isinstance(same_end, AnswerWrite) and same_end.update.transition is None


def test_a_stale_poll_answer_is_put_back_on_the_schedule() -> None:
    ahead = state(status="processing", logs="a\nb\n", log_seq=2, poll_interval=4.0)
    planned = plan_answer(ahead, body("processing", "a\n"), NOW, POLICY)
    assert isinstance(planned, StaleAnswer)
    assert planned.next_poll.interval == 6.0  # as an answer that changed nothing


def test_a_pushed_body_that_is_not_a_prediction_is_an_error() -> None:
    planned = plan_answer(state(), {"id": "p1", "data": []}, NOW, POLICY, push_id="msg_1")
    assert isinstance(planned, RecordError)


def test_a_push_whose_output_list_is_a_shorter_beginning_of_the_stored_one_is_stale() -> None:
    streaming = state(status="processing", logs="a\n", log_seq=1, output=["x", "y"])
    late = body("processing", "a\n", output=["x"])
    planned = plan_answer(streaming, late, NOW, POLICY, push_id="msg_1")
    assert isinstance(planned, StaleAnswer)
    assert "output (1 items) is older than the stored (2)" in planned.reason
    # an output that grows, or a different one, is applied; a poll is always believed
    for output in (["x", "y", "z"], ["other"], "x"):
        newer = body("processing", "a\n", output=output)
        assert isinstance(plan_answer(streaming, newer, NOW, POLICY, push_id="m2"), AnswerWrite)
    assert isinstance(plan_answer(streaming, late, NOW, POLICY), AnswerWrite)
