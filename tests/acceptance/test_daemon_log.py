"""The daemon's log as an operator reads it: the real daemon in a subprocess, the
simulator upstream, webhooks to a closed port or a real receiver on loopback.

Per-prediction lines are DEBUG; a failing endpoint is a handful of lines, not one
per attempt; the summary covers its own interval; --log-level, -v and -q; JSON
lines carry the prediction, statuses, endpoint and durations as fields."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.acceptance.conftest import SECRET_KEY, Tracker
from tests.acceptance.test_tracking import rows
from tests.rawservers import RawServer, closed_port
from tests.receiver import Receiver
from tracker.simulator import SimulatorThread

LEVEL = re.compile(r"^\S+Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
#: a webhook URL whose password and token must never reach the log
HOOK_PASSWORD, HOOK_TOKEN = "hook-pw-7731", "tok-5501"


def levels(stderr: str) -> list[str]:
    found = []
    for line in stderr.splitlines():
        match = LEVEL.match(line)
        assert match, f"not a log line: {line!r}"
        found.append(match.group(1))
    return found


def dead_hook(port: int) -> str:
    return f"http://ops:{HOOK_PASSWORD}@127.0.0.1:{port}/hooks/tracker?token={HOOK_TOKEN}"


def json_lines(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines()]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


FAST = {"TRACKER_RETRY_SCHEDULE": "0.2,0.2,0.2", "TRACKER_LOG_INTERVAL": "1"}


@pytest.fixture
def fast(sqlite_url: str, sim: SimulatorThread) -> Tracker:
    """On SQLite alone (what is logged does not depend on the engine), fast retries,
    a summary every second."""
    return Tracker(database_url=sqlite_url, api_base=sim.base_url, extra_env=dict(FAST))


# -- a dead webhook and many predictions ---------------------------------------------------


def test_a_dead_webhook_is_a_few_lines_not_one_per_attempt(
    fast: Tracker, sim: SimulatorThread, sqlite_url: str
) -> None:
    port = closed_port()
    ids = [f"ok-d{i}" for i in range(30)]
    fast.ok("add", *ids, "--webhook", dead_hook(port))
    result = fast.ok("daemon", "--exit-when-done", timeout=90)
    err = result.stderr
    found = levels(err)
    assert "DEBUG" not in found
    assert " -> " not in err  # transitions are DEBUG lines
    assert HOOK_PASSWORD not in err and HOOK_TOKEN not in err and SECRET_KEY not in err

    attempts = rows(sqlite_url, "select sum(attempts), count(*) from deliveries")[0]
    assert attempts == (4 * len(ids), len(ids))  # 1 attempt + 3 retries each, all dead
    errors = rows(sqlite_url, "select distinct last_error from deliveries")
    assert errors == [(f"connection refused to 127.0.0.1:{port}",)]

    endpoint = f"webhook http://127.0.0.1:{port}/…"
    about = [line for line in err.splitlines() if endpoint in line]
    first = [line for line in about if f"failing: connection refused to 127.0.0.1:{port} (" in line]
    assert len(first) == 1, err
    counted = [
        int(m.group(1))
        for line in about
        if (m := re.search(r"failing: (\d+) more failures in the last [\d.]+ s", line))
    ]
    # Every attempt is counted once: the first line and then the interval lines.
    assert 1 + sum(counted) == attempts[0], err
    assert len(about) == 1 + len(counted)
    summaries = [line for line in err.splitlines() if "tracker.poll.daemon: last " in line]
    assert len(counted) <= len(summaries) + 1  # at most one line per interval (and the last)
    assert "deliveries given up (tracker deliveries list --state dead)" in err
    print(f"{len(found)} lines for {len(ids)} predictions and {attempts[0]} failed attempts")
    assert len(found) <= 12 + 2 * len(summaries)


# -- the summary covers its interval -----------------------------------------------------


SUMMARY = re.compile(r"tracker\.poll\.daemon: last ([\d.]+) s: (\d+) polls \(([\d.]+)/s\)")


def summaries(stderr: str) -> list[tuple[float, int]]:
    return [(float(m.group(1)), int(m.group(2))) for m in SUMMARY.finditer(stderr)]


def all_done(url: str) -> bool:
    return rows(url, "select count(*) from predictions where tracking = 'active'") == [(0,)]


def test_the_summary_covers_the_interval_since_the_previous_one(
    tracker: Tracker, sim: SimulatorThread, db_url: str
) -> None:
    """On both engines: the summary ends with the database's state (Store.health)."""
    tracker.extra_env.update(FAST)
    ids = [f"ok-s{i}" for i in range(5)]
    tracker.ok("add", *ids)
    lines: list[str] = []
    with tracker.popen("daemon") as proc:  # leaving it closes the pipes
        assert proc.stderr is not None
        try:
            # Run until every prediction ended and two more summaries came: no polls in those.
            done_at: int | None = None
            deadline = time.monotonic() + 60
            for line in proc.stderr:
                lines.append(line)
                assert time.monotonic() < deadline, "".join(lines)
                if line.startswith("20") and SUMMARY.search(line):
                    count = len(summaries("".join(lines)))
                    if done_at is None and all_done(db_url):
                        done_at = count
                    if done_at is not None and count >= done_at + 2:
                        break
            proc.send_signal(signal.SIGTERM)
            lines.extend(proc.stderr)  # to the end (communicate would skip what is buffered)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    err = "".join(lines)
    assert proc.returncode == 0, err
    got = summaries(err)
    assert all(0.5 < seconds < 5 for seconds, _ in got), got
    assert got[-1][1] == 0, got  # nothing polled since: 0, not the run's average
    last = [line for line in err.splitlines() if SUMMARY.search(line)][-1]
    assert "now: 0 active, 0 polls in flight, 0 deliveries pending, 0 dead, schedule lag" in last
    # The intervals add up to the whole run (the stopped line's count).
    total = int(re.search(r"stopped: (\d+) requests", err).group(1))  # type: ignore[union-attr]
    assert sum(n for _, n in got) == total == sim.request_count()


# -- levels: --log-level, -v, -q ------------------------------------------------------------


def test_verbose_shows_every_transition_and_attempt(
    fast: Tracker, sim: SimulatorThread, sqlite_url: str
) -> None:
    port = closed_port()
    fast.ok("add", "ok-v1", "--webhook", dead_hook(port))
    err = fast.ok("daemon", "--exit-when-done", "-v", timeout=60).stderr
    assert "DEBUG" in levels(err)
    chain = rows(sqlite_url, "select from_status, to_status from status_transitions")
    for before, after in chain:
        assert f"ok-v1: {before or '(new)'} -> {after}" in err
    assert err.count("could not deliver completed of ok-v1 to http://127.0.0.1:") == 4
    assert HOOK_PASSWORD not in err and HOOK_TOKEN not in err


@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        (["-q"], {"WARNING", "ERROR"}),
        (["--log-level", "warning"], {"WARNING", "ERROR"}),
        (["--log-level", "error"], {"ERROR"}),
    ],
)
def test_quieter_levels_keep_only_problems(
    fast: Tracker, sim: SimulatorThread, args: list[str], allowed: set[str]
) -> None:
    port = closed_port()
    fast.ok("add", "ok-q1", "ok-q2", "--webhook", dead_hook(port))
    err = fast.ok("daemon", "--exit-when-done", *args, timeout=60).stderr
    found = set(levels(err))
    assert found <= allowed, err
    assert "ERROR" in found  # the given-up deliveries are said at every level
    assert "started" not in err and "last 1 s" not in err


def test_the_log_level_comes_from_its_variable_and_v_and_q_do_not_mix(
    fast: Tracker, sim: SimulatorThread
) -> None:
    fast.ok("add", "ok-e1")
    err = fast.ok("daemon", "--once", TRACKER_LOG_LEVEL="debug").stderr
    assert "ok-e1: (new) -> " in err
    both = fast.run("daemon", "--once", "-v", "-q")
    assert both.returncode == 2
    assert both.stderr == "Error: -v/--verbose and -q/--quiet cannot be used together\n"
    bad = fast.run("daemon", "--once", TRACKER_LOG_LEVEL="loud")
    assert bad.returncode == 2 and bad.stderr.startswith("Error: ")
    assert "TRACKER_LOG_LEVEL" in bad.stderr


# -- JSON: the facts are fields ------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def test_json_lines_carry_prediction_status_endpoint_and_duration_as_fields(
    fast: Tracker, sim: SimulatorThread, receiver: Receiver
) -> None:
    # Refused twice (500), then accepted: a failure line, then a recovery line.
    hook = receiver.url("fail2/json").replace("http://", f"http://ops:{HOOK_PASSWORD}@")
    fast.ok("add", "ok-j1", "--webhook", f"{hook}?token={HOOK_TOKEN}")
    err = fast.ok("daemon", "--exit-when-done", "-v", "--log-format", "json", timeout=60).stderr
    assert HOOK_PASSWORD not in err and HOOK_TOKEN not in err
    records = json_lines(err)
    shown = receiver.base_url + "/…"

    moves = [r for r in records if r.get("to_status")]
    assert moves and all(r["prediction_id"] == "ok-j1" for r in moves)
    assert moves[0]["from_status"] is None and moves[-1]["to_status"] == "succeeded"
    assert moves[0]["msg"].startswith("ok-j1: (new) -> ")

    attempts = [r for r in records if r["msg"].startswith(("delivered ", "could not deliver "))]
    assert [r["status_code"] for r in attempts] == [500, 500, 200]
    assert all(r["endpoint"] == shown and isinstance(r["duration_ms"], int) for r in attempts)
    assert all(r["prediction_id"] == "ok-j1" and r["event"] == "completed" for r in attempts)
    assert attempts[0]["error"] == "HTTP 500" and attempts[0]["level"] == "debug"

    [failing] = [r for r in records if r["msg"].startswith(f"webhook {shown} failing: HTTP")]
    assert failing["level"] == "warning" and failing["endpoint"] == shown
    assert (failing["kind"], failing["error"], failing["prediction_id"]) == (
        "webhook",
        "HTTP 500",
        "ok-j1",
    )
    [recovered] = [r for r in records if "recovered after" in r["msg"]]
    assert recovered["failures"] == 2 and recovered["duration_s"] > 0

    summary = next(r for r in records if "polls" in r and "schedule_lag_s" in r)
    for name in ("interval_s", "polls_per_s", "active", "deliveries_pending", "deliveries_dead"):
        assert isinstance(summary[name], int | float), name


# -- --once exits 1 when nothing could be polled ---------------------------------------------


def test_once_exits_1_when_every_poll_failed_and_says_why(db_url: str) -> None:
    port = closed_port()
    cli = Tracker(database_url=db_url, api_base=f"http://127.0.0.1:{port}/v1")
    cli.ok("add", "ok-o1", "ok-o2", "ok-o3")
    result = cli.run("daemon", "--once", timeout=60)
    assert result.returncode == 1, result.stderr
    refused = f"connection refused to 127.0.0.1:{port}"
    assert result.stderr.splitlines()[-1] == (
        f"Error: no poll succeeded: 3 of 3 failed (last: {refused})"
    )
    assert rows(db_url, "select distinct last_error from predictions") == [(refused,)]


def test_once_with_nothing_due_or_some_success_exits_0(fast: Tracker) -> None:
    assert fast.run("daemon", "--once").returncode == 0  # nothing registered: nothing due
    fast.ok("add", "ok-p1", "gone-p2", "flaky-p3")  # gone: 404, flaky: 500 at first
    result = fast.run("daemon", "--once")
    assert result.returncode == 0, result.stderr
    assert "Error:" not in result.stderr


def test_once_exits_1_when_the_upstream_only_answers_errors(db_url: str) -> None:
    with SimulatorThread() as sim:
        cli = Tracker(database_url=db_url, api_base=sim.base_url)
        cli.ok("add", "gone-x1", "gone-x2")  # 404 each: nothing was polled
        result = cli.run("daemon", "--once")
    assert result.returncode == 1
    assert re.search(
        r"^Error: no poll succeeded: 2 of 2 failed \(last: HTTP 404: .*\)$", result.stderr, re.M
    ), result.stderr


# -- no API key ---------------------------------------------------------------------------


def test_without_an_api_key_the_daemon_refuses_a_remote_upstream(db_url: str) -> None:
    # Nothing is sent: the check comes before any connection (a .invalid name never
    # resolves, and no lookup is even tried).
    cli = Tracker(database_url=db_url, api_base="https://api.example.invalid/v1")
    for args in (["daemon"], ["daemon", "--once"]):
        result = cli.run(*args, TRACKER_API_KEY="", timeout=30)
        assert result.returncode == 2
        assert result.stderr == (
            "Error: set TRACKER_API_KEY (or ANYAPI_API_KEY, REPLICATE_API_TOKEN)\n"
        )
    assert cli.run("daemon", "--once", TRACKER_API_KEY="", ANYAPI_API_KEY="").returncode == 2


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_without_an_api_key_a_loopback_upstream_is_polled(
    fast: Tracker, sim: SimulatorThread, host: str
) -> None:
    fast.api_base = sim.base_url.replace("127.0.0.1", host)
    fast.ok("add", "ok-n1")
    result = fast.run("daemon", "--once", TRACKER_API_KEY="")
    assert result.returncode == 0, result.stderr
    assert sim.request_count("ok-n1") == 1


# -- what a failed poll is called, end to end --------------------------------------------------


@pytest.mark.parametrize("case", ["refused", "tls", "timeout"])
def test_a_failed_poll_is_stored_and_told_as_what_happened(
    sqlite_url: str, sim: SimulatorThread, case: str
) -> None:
    with RawServer("silent") as silent:
        port = closed_port()
        base, expected = {
            "refused": (f"http://127.0.0.1:{port}/v1", f"connection refused to 127.0.0.1:{port}"),
            "tls": (
                sim.base_url.replace("http://", "https://"),
                f"TLS failure with {sim.base_url.split('/')[2]}: wrong version number",
            ),
            "timeout": (silent.url("v1"), "timeout after 1.5 s"),
        }[case]
        cli = Tracker(database_url=sqlite_url, api_base=base)
        cli.ok("add", "ok-t1")
        started = time.monotonic()
        result = cli.run("daemon", "--once", TRACKER_POLL_TIMEOUT="1.5", timeout=60)
        elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert rows(sqlite_url, "select last_error, error_count from predictions") == [(expected, 1)]
    assert f"upstream {base} failing: {expected} (polling ok-t1)" in result.stderr
    assert result.stderr.endswith(f"Error: no poll succeeded: 1 of 1 failed (last: {expected})\n")
    if case == "timeout":
        assert elapsed > 1.5
