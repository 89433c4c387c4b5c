"""Failures of one endpoint logged as a group (tracker.net.failurelog): the first at
once, a count per interval, a line on recovery, and no more than that."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tracker.logsetup import extra_fields
from tracker.net.failurelog import FORGET_AFTER_INTERVALS, FailureLog

HOOK = "https://user:pw@hooks.example.com/secret-path?token=abc"
SHOWN = "https://hooks.example.com/…"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    handler = Collect()
    logger = logging.getLogger("tests.failurelog")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.records
    logger.removeHandler(handler)


@pytest.fixture
def flog(clock: Clock) -> FailureLog:
    return FailureLog(logging.getLogger("tests.failurelog"), interval=60, clock=clock)


def fail(
    flog: FailureLog, error: str = "connection refused to hooks.example.com:443", **kw: object
) -> None:
    flog.failed("webhook", HOOK, error, display=SHOWN, **kw)  # type: ignore[arg-type]


def lines(records: list[logging.LogRecord]) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in records]


def test_the_first_failure_at_once_then_one_line_an_interval_with_the_count(
    flog: FailureLog, clock: Clock, records: list[logging.LogRecord]
) -> None:
    fail(flog, about="completed of p1: retrying in 5 s", prediction_id="p1")
    for i in range(37):
        clock.now += 1
        fail(flog, error="connection refused" if i < 36 else "HTTP 502")
    assert lines(records) == [
        (
            "WARNING",
            f"webhook {SHOWN} failing: connection refused to hooks.example.com:443"
            " (completed of p1: retrying in 5 s)",
        )
    ]
    assert extra_fields(records[0]) == {
        "kind": "webhook",
        "endpoint": SHOWN,
        "error": "connection refused to hooks.example.com:443",
        "failures": 1,
        "given_up": 0,
        "prediction_id": "p1",
    }
    clock.now += 23
    flog.flush()
    assert lines(records)[1:] == [
        ("WARNING", f"webhook {SHOWN} failing: 37 more failures in the last 60 s (last: HTTP 502)")
    ]
    assert extra_fields(records[1])["failures"] == 37
    flog.flush()  # nothing new: no line
    assert len(records) == 2
    assert all("pw" not in r.getMessage() and "token" not in r.getMessage() for r in records)


def test_recovery_is_one_line_with_the_whole_episode(
    flog: FailureLog, clock: Clock, records: list[logging.LogRecord]
) -> None:
    fail(flog)
    clock.now += 30
    fail(flog)
    clock.now += 45
    flog.succeeded("webhook", HOOK)
    flog.succeeded("webhook", HOOK)  # already over: nothing more
    assert lines(records)[-1] == ("INFO", f"webhook {SHOWN} recovered after 2 failures over 75 s")
    assert len(records) == 2
    assert flog.failing == []


def test_given_up_deliveries_are_counted_and_make_the_line_an_error(
    flog: FailureLog, clock: Clock, records: list[logging.LogRecord]
) -> None:
    fail(flog, given_up=True, about="completed of p1: gave up after 4 attempts")
    assert records[0].levelname == "ERROR"
    fail(flog)
    fail(flog, given_up=True)
    fail(flog, given_up=True)
    clock.now += 60
    flog.flush()
    level, text = lines(records)[-1]
    assert level == "ERROR"
    assert text.endswith(
        "3 more failures in the last 60 s (last: connection refused to hooks.example.com:443);"
        " 2 deliveries given up (tracker deliveries list --state dead)"
    )


def test_a_flapping_endpoint_costs_at_most_two_lines_an_interval(
    flog: FailureLog, clock: Clock, records: list[logging.LogRecord]
) -> None:
    for _ in range(5):  # fail, work, fail, work ... all within one interval
        fail(flog)
        clock.now += 1
        flog.succeeded("webhook", HOOK)
        clock.now += 1
    assert [level for level, _ in lines(records)] == ["WARNING", "INFO"]
    fail(flog)
    clock.now += 50
    flog.flush()
    assert lines(records)[-1] == (
        "WARNING",
        f"webhook {SHOWN} failing again: 1 failure in the last 50 s"
        " (last: connection refused to hooks.example.com:443)",
    )
    clock.now += 61  # long after the last recovery: a new episode is told at once
    flog.succeeded("webhook", HOOK)
    clock.now += 61
    fail(flog, error="HTTP 500")
    assert lines(records)[-1] == ("WARNING", f"webhook {SHOWN} failing: HTTP 500")


def test_endpoints_are_kept_apart(flog: FailureLog, records: list[logging.LogRecord]) -> None:
    fail(flog)
    flog.failed(
        "webhook", "https://other.example.com/h", "HTTP 500", display="https://other.example.com/…"
    )
    flog.failed(
        "upstream",
        "https://api.example.com/v1",
        "timeout after 30 s",
        display="https://api.example.com/v1",
    )
    assert len(records) == 3
    assert sorted(flog.failing) == [
        "upstream https://api.example.com/v1",
        "webhook https://hooks.example.com/…",
        "webhook https://other.example.com/…",
    ]


def test_an_episode_without_recovery_ends_after_a_quiet_interval(
    flog: FailureLog, clock: Clock, records: list[logging.LogRecord]
) -> None:
    flog.failed(
        "upstream", "bad", "answer is not JSON", display="api (bad answers)", recovers=False
    )
    clock.now += 60
    flog.flush()
    assert flog.failing == []
    flog.failed(
        "upstream", "bad", "answer is not JSON", display="api (bad answers)", recovers=False
    )
    assert len(records) == 2 and records[1].getMessage().endswith("failing: answer is not JSON")
    fail(flog)
    for _ in range(FORGET_AFTER_INTERVALS):
        assert flog.failing
        clock.now += 60
        flog.flush()
    assert flog.failing == []
