"""Applying one upstream answer to a prediction's state: every path, no database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from tracker.domain import PredictionState
from tracker.exceptions import UpstreamBadAnswer
from tracker.poll.observe import parse_prediction, plan_observation

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def state(**changes: object) -> PredictionState:
    base = PredictionState(
        id="p1",
        status=None,
        tracking="active",
        logs="",
        output=None,
        poll_count=0,
        error_count=0,
        consecutive_errors=0,
        poll_interval=None,
        not_found_count=0,
        not_found_since=None,
        registered_at=NOW,
        log_seq=0,
    )
    return replace(base, **changes)


def answer(**fields: object) -> dict[str, object]:
    body: dict[str, object] = {"id": "p1", "status": "starting", "logs": ""}
    body.update(fields)
    return body


def plan(prev: PredictionState, body: dict[str, object]):  # type: ignore[no-untyped-def]
    return plan_observation(prev, parse_prediction(body, prev.id), NOW)


def test_first_answer_records_first_transition_from_null() -> None:
    update = plan(state(), answer(created_at="2026-01-02T03:04:00.123456789Z"))
    assert update.transition is not None
    assert update.transition.from_status is None
    assert update.transition.to_status == "starting"
    assert update.transition.upstream_at == datetime(2026, 1, 2, 3, 4, 0, 123456, tzinfo=UTC)
    assert update.changed and not update.terminal
    assert "tracking" not in update.fields


def test_same_status_and_logs_is_no_change() -> None:
    prev = state(status="processing", logs="a\n", log_seq=1)
    update = plan(prev, answer(status="processing", logs="a\n"))
    assert update.transition is None
    assert update.log_chunk is None
    assert not update.changed


def test_processing_transition_uses_started_at() -> None:
    update = plan(
        state(status="starting"),
        answer(status="processing", started_at="2026-01-02T03:04:01Z", logs="x"),
    )
    assert update.transition is not None
    assert update.transition.upstream_at == datetime(2026, 1, 2, 3, 4, 1, tzinfo=UTC)


@pytest.mark.parametrize("status", ["succeeded", "failed", "canceled", "aborted"])
def test_terminal_statuses_finish_tracking(status: str) -> None:
    update = plan(
        state(status="processing"),
        answer(status=status, completed_at="2026-01-02T03:04:09+00:00"),
    )
    assert update.terminal
    assert update.fields["tracking"] == "done"
    assert update.transition is not None
    assert update.transition.upstream_at == datetime(2026, 1, 2, 3, 4, 9, tzinfo=UTC)


def test_terminal_answer_for_forgotten_prediction_keeps_it_forgotten() -> None:
    update = plan(state(status="processing", tracking="forgotten"), answer(status="succeeded"))
    assert update.terminal
    assert "tracking" not in update.fields


def test_unknown_status_is_stored_and_not_terminal() -> None:
    update = plan(state(status="starting"), answer(status="queued_elsewhere"))
    assert update.fields["status"] == "queued_elsewhere"
    assert update.transition is not None and update.transition.to_status == "queued_elsewhere"
    assert update.transition.upstream_at is None
    assert not update.terminal
    assert "tracking" not in update.fields


def test_logs_store_only_the_new_part() -> None:
    prev = state(status="processing", logs="line 1\n", log_seq=1)
    update = plan(prev, answer(status="processing", logs="line 1\nline 2\n"))
    assert update.log_chunk is not None
    assert update.log_chunk.text == "line 2\n"
    assert update.log_chunk.seq == 2
    assert not update.log_chunk.restarted
    assert update.fields["logs"] == "line 1\nline 2\n"
    assert update.fields["log_seq"] == 2
    assert update.changed


def test_logs_that_do_not_extend_are_stored_whole_and_marked() -> None:
    prev = state(status="processing", logs="old text\n", log_seq=3)
    update = plan(prev, answer(status="processing", logs="new text\n"))
    assert update.log_chunk is not None
    assert update.log_chunk.text == "new text\n"
    assert update.log_chunk.restarted
    assert update.log_chunk.seq == 4


@pytest.mark.parametrize("logs", [None, "", 42])
def test_missing_empty_or_odd_logs_never_erase_stored_logs(logs: object) -> None:
    prev = state(status="succeeded", logs="kept\n", log_seq=1)
    body = answer(status="succeeded", logs=logs)
    update = plan(prev, body)
    assert update.log_chunk is None
    assert "logs" not in update.fields


def test_non_ascii_log_diffing_is_by_character() -> None:
    prev = state(status="processing", logs="héllo 🌍\n", log_seq=1)
    update = plan(prev, answer(status="processing", logs="héllo 🌍\n日本語 ✓\n"))
    assert update.log_chunk is not None
    assert update.log_chunk.text == "日本語 ✓\n"


def test_metrics_and_predict_time() -> None:
    update = plan(
        state(status="processing"),
        answer(status="succeeded", metrics={"predict_time": 3.59, "image_count": 1, "extra": "x"}),
    )
    assert update.fields["metrics"] == {"predict_time": 3.59, "image_count": 1, "extra": "x"}
    assert update.fields["predict_time"] == 3.59


@pytest.mark.parametrize("metrics", [{}, {"predict_time": "3.5"}, {"predict_time": True}, "x"])
def test_odd_metrics_do_not_set_predict_time(metrics: object) -> None:
    update = plan(state(status="processing"), answer(status="succeeded", metrics=metrics))
    assert "predict_time" not in update.fields


def test_output_is_stored_and_never_replaced_by_null_after_removal() -> None:
    first = plan(state(status="processing"), answer(status="succeeded", output=["u1", "u2"]))
    assert first.fields["output"] == ["u1", "u2"]
    assert first.changed
    later = plan(
        state(status="succeeded", output=["u1", "u2"]),
        answer(status="succeeded", output=None, data_removed=True),
    )
    assert "output" not in later.fields
    assert later.fields["data_removed"] is True
    assert not later.changed


def test_unknown_fields_are_kept_in_raw_and_missing_fields_are_fine() -> None:
    body = {"id": "p1", "status": "processing", "gpu": "a100", "nested": {"x": [1, 2]}}
    update = plan(state(status="starting"), body)
    assert update.fields["raw"] == body
    for name in ("model", "input", "output", "metrics", "created_at", "logs"):
        assert name not in update.fields


def test_error_field_is_stored_as_given() -> None:
    update = plan(state(status="processing"), answer(status="failed", error={"code": "OOM"}))
    assert update.fields["error"] == {"code": "OOM"}


def test_bad_timestamps_are_ignored_not_fatal() -> None:
    update = plan(state(), answer(created_at="yesterday", started_at=12))
    assert "created_at" not in update.fields and "started_at" not in update.fields
    assert update.transition is not None and update.transition.upstream_at is None


def test_update_remembers_the_state_it_was_planned_from() -> None:
    prev = state(status="processing", logs="a", log_seq=5)
    update = plan(prev, answer(status="processing", logs="ab"))
    assert update.expected_status == "processing"
    assert update.expected_log_seq == 5


@pytest.mark.parametrize(
    "body",
    [
        {"created": 1589478378, "data": [{"url": "https://..."}]},  # the seed's second example
        [],
        "text",
        None,
        {"status": ""},
        {"status": 3},
        {"status": "x" * 65},
    ],
)
def test_bodies_that_are_not_predictions_are_rejected(body: object) -> None:
    with pytest.raises(UpstreamBadAnswer) as info:
        parse_prediction(body, "p1")
    assert info.value.body == body


def test_answer_for_another_id_is_rejected() -> None:
    with pytest.raises(UpstreamBadAnswer, match="not 'p1'"):
        parse_prediction({"id": "other", "status": "starting"}, "p1")


@pytest.mark.parametrize(
    ("previous", "body", "events"),
    [
        (state(), answer(status="starting"), ()),
        (state(status="starting"), answer(status="processing", logs="a"), ("start", "logs")),
        (
            state(status="processing", logs="a", log_seq=1),
            answer(status="processing", logs="a"),
            (),
        ),
        (
            state(status="processing", logs="a", log_seq=1),
            answer(status="succeeded", logs="ab", output="u"),
            ("output", "logs", "completed"),
        ),
        # first seen already finished: start and completed together
        (state(), answer(status="succeeded", output=["u"]), ("start", "output", "completed")),
        (state(status="starting"), answer(status="aborted"), ("start", "completed")),
        # unknown statuses are not "running"
        (state(status="starting"), answer(status="queued_elsewhere"), ()),
        (state(status="queued_elsewhere"), answer(status="processing"), ("start",)),
        # a terminal answer seen again fires nothing
        (state(status="succeeded", output="u"), answer(status="succeeded", output="u"), ()),
        # back to starting after it ran (upstream retried it): no second start
        (state(status="starting", started_at=NOW), answer(status="processing"), ()),
        # a started_at shown while still starting does not count as having run
        (
            state(),
            answer(status="starting", started_at="2026-01-02T03:04:00Z"),
            (),
        ),
    ],
)
def test_callback_events(previous: PredictionState, body: dict, events: tuple) -> None:
    assert plan(previous, body).events == events


def test_started_at_is_kept_only_once_the_run_is_seen_running() -> None:
    early = plan(state(), answer(status="starting", started_at="2026-01-02T03:04:00Z"))
    assert "started_at" not in early.fields
    assert early.fields["raw"]["started_at"] == "2026-01-02T03:04:00Z"
    running = plan(
        state(status="starting"), answer(status="processing", started_at="2026-01-02T03:04:00Z")
    )
    assert running.fields["started_at"] == datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    assert running.events == ("start",)
