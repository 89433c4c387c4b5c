"""The daemon's log settings and lines: JSON fields from ``extra``, log levels from
--log-level/-v/-q, the interval summary, and the API key a daemon needs to start."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import click
import pytest

from tracker.cli.options import daemon_settings
from tracker.config import API_KEY_MISSING, SettingError, Settings, on_loopback, require_api_key
from tracker.logsetup import LOG_LEVELS, MASK, JsonFormatter, RedactSecrets, TextFormatter
from tracker.poll.stats import IntervalSummary, PollStats

SECRET = "r8_TopSecretKey1234567890"


def record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.makeLogRecord({"name": "tracker.t", "msg": msg, "levelname": "INFO"})
    rec.__dict__.update(extra)
    return rec


# -- JSON fields -----------------------------------------------------------------------------


def test_extra_values_are_fields_of_the_json_object() -> None:
    rec = record(
        "p1: starting -> processing",
        prediction_id="p1",
        from_status="starting",
        to_status="processing",
        duration_ms=12,
        retry_in_s=None,
    )
    entry = json.loads(JsonFormatter().format(rec))
    assert entry["prediction_id"] == "p1"
    assert (entry["from_status"], entry["to_status"]) == ("starting", "processing")
    assert entry["duration_ms"] == 12 and entry["retry_in_s"] is None
    assert entry["msg"] == "p1: starting -> processing"


def test_a_field_named_as_the_formatters_own_keys_does_not_replace_them() -> None:
    entry = json.loads(JsonFormatter().format(record("hello", msg2="x", level="bogus")))
    assert entry["level"] == "info" and entry["extra_level"] == "bogus"


def test_upstream_text_in_fields_is_escaped_and_text_lines_stay_one_line() -> None:
    status = "weird\x1b[2J\u009b\nstatus"
    rec = record("p1: (new) -> %s", to_status=status)
    rec.args = (status,)
    line = JsonFormatter().format(rec)
    assert "\x1b" not in line and "\u009b" not in line and "\n" not in line
    assert json.loads(line)["to_status"] == status  # the same data, escaped in transit
    text = TextFormatter().format(rec)
    assert "\n" not in text and "\\x1b[2J\\x9b\\x0astatus" in text


def test_secrets_in_fields_are_masked() -> None:
    rec = record("failing", error=f"HTTP 401: bad key {SECRET}", endpoint="https://h/…")
    RedactSecrets([SECRET]).filter(rec)
    entry = json.loads(JsonFormatter().format(rec))
    assert entry["error"] == f"HTTP 401: bad key {MASK}"
    assert SECRET not in json.dumps(entry)


def test_values_json_cannot_hold_become_text() -> None:
    entry = json.loads(JsonFormatter().format(record("x", when=object, ids=("a", 1))))
    assert entry["ids"] == ["a", 1] and isinstance(entry["when"], str)


# -- levels ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "level"),
    [
        ({}, "info"),
        ({"verbose": True}, "debug"),
        ({"quiet": True}, "warning"),
        ({"log_level": "error"}, "error"),
        ({"log_level": "error", "verbose": True}, "debug"),  # -v wins over --log-level
    ],
)
def test_v_and_q_are_short_for_log_levels(given: dict[str, object], level: str) -> None:
    options = {"verbose": False, "quiet": False, "log_level": None, "poll_min": None, **given}
    settings = daemon_settings(options)
    assert settings.log_level == level and level in LOG_LEVELS
    assert options == {}  # everything was the daemon's


def test_v_and_q_together_are_a_usage_error() -> None:
    with pytest.raises(click.UsageError, match="cannot be used together"):
        daemon_settings({"verbose": True, "quiet": True})


def test_the_command_keeps_its_own_options() -> None:
    options = {"verbose": False, "quiet": False, "once": True, "poll_min": 2.0}
    assert daemon_settings(options).poll_min == 2.0
    assert options == {"once": True}


# -- the API key ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8765/v1", True),
        ("http://127.9.9.9/v1", True),
        ("http://[::1]:9/v1", True),
        ("http://localhost:8765/v1", True),
        ("http://LOCALHOST./v1", True),
        ("https://www.anyapi.vip/replicate/v1", False),
        ("https://api.replicate.com/v1", False),
        ("http://10.0.0.5/v1", False),
        ("http://localhost.example.com/v1", False),
        ("http://[::ffff:127.0.0.1]/v1", False),
        ("http://127.0.0.1.nip.io/v1", False),
    ],
)
def test_which_upstreams_are_on_this_machine(url: str, local: bool) -> None:
    assert on_loopback(url) is local


def test_no_key_for_a_remote_upstream_is_refused_with_the_variables_to_set() -> None:
    assert API_KEY_MISSING == "set TRACKER_API_KEY (or ANYAPI_API_KEY, REPLICATE_API_TOKEN)"
    with pytest.raises(SettingError) as info:
        require_api_key(Settings(api_base="https://api.replicate.com/v1", api_key=None))
    assert str(info.value) == API_KEY_MISSING
    require_api_key(Settings(api_base="https://api.replicate.com/v1", api_key="r8_x"))
    require_api_key(Settings(api_base="http://127.0.0.1:8765/v1", api_key=None))


# -- the interval summary ------------------------------------------------------------------


@dataclass
class State:
    active_predictions: int = 7
    pending_deliveries: int = 3
    dead_deliveries: int = 2
    schedule_lag: float = 0.25


def test_the_summary_counts_only_its_interval() -> None:
    now = [100.0]
    stats = PollStats()
    outbox = {"delivered": 0, "failed_attempts": 0, "given_up": 0}
    summary = IntervalSummary(stats, lambda: outbox, clock=lambda: now[0])
    stats.requests, stats.answers, stats.changes, stats.errors = 600, 590, 100, 10
    outbox.update(delivered=5, failed_attempts=40, given_up=1)
    now[0] += 60
    text, fields = summary.take(State(), in_flight=4)
    assert text == (
        "last 60 s: 600 polls (10.0/s), 590 answers, 100 with changes, 0 finished, 10 errors,"
        " 0 rate-limited; callbacks: 5 delivered, 40 failed attempts, 1 given up; now: 7 active,"
        " 4 polls in flight, 3 deliveries pending, 2 dead, schedule lag 0.2 s"
    )
    assert fields["polls"] == 600 and fields["polls_per_s"] == 10.0
    assert (fields["active"], fields["deliveries_dead"], fields["schedule_lag_s"]) == (7, 2, 0.25)
    stats.requests += 30
    now[0] += 60
    text, fields = summary.take(None, in_flight=0)
    assert text.startswith("last 60 s: 30 polls (0.5/s), 0 answers,")  # not 630 in 120 s
    assert text.endswith("now: 0 polls in flight, database unavailable")
    assert fields["failed_attempts"] == 0 and "active" not in fields
