"""The real daemon against hostile servers on loopback: upstream answers that never
end or come one byte a second, webhook receivers that answer endlessly or dribble,
and webhook targets the network policy refuses. The daemon's peak memory (VmHWM)
is watched the whole time."""

from __future__ import annotations

import base64
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.acceptance.conftest import Tracker
from tests.acceptance.test_tracking import rows
from tests.hostile import HostileServer
from tests.receiver import Receiver

T = TypeVar("T")

#: the daemon's peak resident memory must stay under this (MB)
RSS_LIMIT_MB = 300
#: past this the watcher kills the daemon, so a regression cannot eat the machine (MB)
RSS_KILL_MB = 1500
VARIABLE = "TRACKER_WEBHOOK_ALLOWED_HOSTS"


class PeakMemory:
    """Follows a process's peak resident memory (VmHWM) until it ends."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.peak_mb = 0.0
        self.killed = False
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self._thread.join(10)

    def _watch(self) -> None:
        status = Path(f"/proc/{self.proc.pid}/status")
        while self.proc.poll() is None:
            try:
                text = status.read_text()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)
            if self.peak_mb > RSS_KILL_MB:
                self.killed = True
                self.proc.kill()
                return
            time.sleep(0.05)


def wait_until(predicate: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen[str]) -> tuple[float, str]:
    """SIGTERM; seconds until the process ended, and its stderr."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return time.monotonic() - started, err


def errors(url: str, prefix: str) -> list[tuple[str, int, str | None]]:
    return rows(
        url,
        "select id, error_count, last_error from predictions where id like :p order by id",
        p=f"{prefix}%",
    )


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


# -- upstream answers ------------------------------------------------------------------


def test_endless_answers_are_errors_and_cost_bounded_memory(
    db_url: str, hostile: HostileServer
) -> None:
    cli = Tracker(database_url=db_url, api_base=hostile.url("endless"))
    ids = [f"endless-{i}" for i in range(4)]
    cli.ok("add", *ids)
    proc = cli.popen("daemon", "--poll-min", "0.2", "--poll-max", "0.5", interpreter=True)
    with PeakMemory(proc) as memory:
        wait_until(
            lambda: all(n >= 3 for _, n, _ in errors(db_url, "endless-")),
            60,
            "three failed polls of each prediction",
        )
        _, err = stop(proc)
    print(f"daemon peak RSS under endless answers: {memory.peak_mb:.0f} MB")
    assert not memory.killed and memory.peak_mb < RSS_LIMIT_MB, memory.peak_mb
    assert proc.returncode == 0, err
    for _, _, last_error in errors(db_url, "endless-"):
        assert last_error == "answer longer than 16 MiB; not read further"
    assert hostile.closed_early("endless") >= 12
    assert "Traceback" not in err


def test_slowloris_polls_end_at_the_poll_timeout(db_url: str, hostile: HostileServer) -> None:
    cli = Tracker(database_url=db_url, api_base=hostile.url("slowloris"))
    cli.ok("add", "slow-1", "slow-2")
    started = time.monotonic()
    proc = cli.popen("daemon", TRACKER_POLL_TIMEOUT="2")
    with PeakMemory(proc):
        wait_until(
            lambda: all(n >= 1 for _, n, _ in errors(db_url, "slow-")), 30, "a timed-out poll"
        )
        elapsed = time.monotonic() - started
        _, err = stop(proc)
    assert proc.returncode == 0, err
    assert elapsed < 15
    for _, _, last_error in errors(db_url, "slow-"):
        assert last_error == "timeout after 2 s (answer incomplete)"


def test_sigterm_stops_the_daemon_with_slowloris_polls_in_flight(
    sqlite_url: str, hostile: HostileServer
) -> None:
    cli = Tracker(database_url=sqlite_url, api_base=hostile.url("slowloris"))
    ids = [f"held-{i}" for i in range(20)]
    cli.ok("add", *ids)
    proc = cli.popen("daemon")  # the default poll timeout: 30 s
    with PeakMemory(proc):
        wait_until(lambda: hostile.requests("slowloris") >= len(ids), 30, "polls in flight")
        elapsed, err = stop(proc)
    print(f"SIGTERM to exit with {len(ids)} slowloris polls in flight: {elapsed:.1f} s")
    assert proc.returncode == 0, err
    assert elapsed < 5, elapsed  # FETCH_GRACE_SECONDS (2 s) and the way out
    assert rows(sqlite_url, "select count(*) from predictions where claimed_by is not null") == [
        (0,)
    ]


# -- webhook receivers -----------------------------------------------------------------


@pytest.fixture
def hooks(tracker: Tracker) -> Tracker:
    tracker.extra_env.update(TRACKER_RETRY_SCHEDULE="0.2", TRACKER_WEBHOOK_TIMEOUT="2")
    return tracker


def deliveries(url: str, prefix: str) -> list[tuple[str, int, str | None]]:
    return rows(
        url,
        "select state, attempts, last_error from deliveries where prediction_id like :p"
        " order by prediction_id",
        p=f"{prefix}%",
    )


def test_receivers_answering_endlessly_cost_bounded_memory(
    hooks: Tracker, db_url: str, hostile: HostileServer
) -> None:
    ids = [f"quick-endless-{i}" for i in range(8)]
    for pid in ids:
        hooks.ok("add", pid, "--webhook", hostile.url("endless", pid))
    proc = hooks.popen("daemon", "--exit-when-done", interpreter=True)
    with PeakMemory(proc) as memory:
        _, err = proc.communicate(timeout=60)
    print(f"daemon peak RSS under endless receiver answers: {memory.peak_mb:.0f} MB")
    assert not memory.killed and memory.peak_mb < RSS_LIMIT_MB, memory.peak_mb
    assert proc.returncode == 0, err
    assert deliveries(db_url, "quick-endless-") == [("delivered", 1, None)] * len(ids)


def test_a_dribbling_receiver_fails_at_the_webhook_timeout(
    hooks: Tracker, db_url: str, hostile: HostileServer
) -> None:
    hooks.ok("add", "quick-dribble", "--webhook", hostile.url("dribble", "hook"))
    started = time.monotonic()
    hooks.ok("daemon", "--exit-when-done", timeout=60)
    assert time.monotonic() - started < 20
    assert deliveries(db_url, "quick-dribble") == [("dead", 2, "timeout after 2 s")]
    attempts = rows(db_url, "select error, status_code from delivery_attempts")
    assert attempts == [("timeout after 2 s", None)] * 2


# -- the network policy and credentials ------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def test_literal_addresses_the_policy_refuses_are_refused_at_add(
    tracker: Tracker, receiver: Receiver
) -> None:
    refused = [
        (receiver.url("ok/a"), "external", "127.0.0.1 (loopback)"),
        ("http://169.254.169.254/latest/meta-data/", "*", "169.254.169.254 (link-local)"),
        ("http://[fd00:ec2::254]/latest", "external,loopback", "fd00:ec2::254 (private)"),
    ]
    for url, rules, named in refused:
        result = tracker.run("add", "quick-x", "--webhook", url, **{VARIABLE: rules})
        assert result.returncode == 2, result.stderr
        assert result.stderr == (
            f"Error: webhook URL refused: {named} is not allowed by {VARIABLE}={rules}\n"
        )
    assert "quick-x" not in tracker.ok("list", "--format", "csv").stdout
    tracker.ok("add", "quick-x", "--webhook", receiver.url("ok/a"), **{VARIABLE: "loopback"})
    bad = tracker.run("add", "quick-y", "--webhook", receiver.url("ok/a"), **{VARIABLE: "the lan"})
    assert bad.returncode != 0 and bad.stderr.startswith(f"Error: {VARIABLE}: 'the lan' is not")


def test_a_name_resolving_to_a_refused_address_is_a_failed_attempt(
    hooks: Tracker, db_url: str, receiver: Receiver
) -> None:
    by_name = receiver.url("ok/a").replace("127.0.0.1", "localhost")
    hooks.ok("add", "quick-name", "--webhook", by_name, **{VARIABLE: "external"})
    result = hooks.ok("daemon", "--exit-when-done", timeout=60, **{VARIABLE: "external"})
    assert receiver.received() == []
    [(state, attempts, last_error)] = deliveries(db_url, "quick-name")
    assert (state, attempts) == ("dead", 2)
    assert last_error is not None and last_error.startswith("refused: localhost is ")
    assert f"not allowed by {VARIABLE}=external" in last_error
    assert "Traceback" not in result.stderr


def test_webhooks_with_credentials_are_sent_with_basic_auth(
    hooks: Tracker, db_url: str, receiver: Receiver
) -> None:
    password = "s3cret-pa%3Ass"
    target = receiver.url("ok/auth").replace("http://", f"http://hook:{password}@")
    hooks.ok("add", "quick-auth", "--webhook", target)
    result = hooks.ok("daemon", "--exit-when-done", timeout=60)
    [got] = receiver.received("ok/auth")
    assert (
        got.headers["authorization"] == "Basic " + base64.b64encode(b"hook:s3cret-pa:ss").decode()
    )
    assert deliveries(db_url, "quick-auth") == [("delivered", 1, None)]
    assert "Traceback" not in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
