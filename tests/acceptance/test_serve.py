"""`tracker serve` as a real process: it refuses to listen beyond loopback without a
token, serves the API with the daemon running in it, and on SIGTERM finishes the
request and the poll in flight and exits 0; no secret ever reaches its output."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from typing import Any

import httpx
import pytest

from tests.acceptance.conftest import SECRET_KEY, Tracker
from tests.clirun import run_tracker
from tests.serving import TOKEN, rows
from tracker.simulator import PredictionPlan, SimulatorThread

#: seconds `tracker serve` has to start listening
START_TIMEOUT = 30.0


class Served:
    """A `tracker serve` process whose stderr is read line by line as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, words: str, timeout: float = START_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if words in line:
                return line
        raise AssertionError(f"no {words!r} in the output:\n{''.join(self.seen)}")

    def url(self) -> str:
        line = self.wait_for("listening on http://")
        return line.split("listening on ", 1)[1].split()[0]

    def close(self) -> None:
        """Kill the process if it still runs, and close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        """The exit code and all of stderr, once the process ended."""
        code = self.proc.wait(timeout)
        while (line := self.lines.get(timeout=5)) is not None:
            self.seen.append(line)
        return code, "".join(self.seen)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "tracker.example.test"])
def test_a_non_loopback_host_without_a_token_is_refused(tracker: Tracker, host: str) -> None:
    result = run_tracker(["serve", "--host", host, "--no-daemon"], tracker.env())
    assert result.returncode == 2
    assert result.stderr.startswith("Error: ")
    assert "TRACKER_SERVE_TOKEN" in result.stderr
    assert result.stderr.count("\n") == 1


def test_the_daemon_part_needs_an_api_key_for_a_remote_upstream(tracker: Tracker) -> None:
    env = tracker.env(TRACKER_API_BASE="https://api.replicate.test/v1", TRACKER_API_KEY="")
    result = run_tracker(["serve", "--port", "0"], env)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: set TRACKER_API_KEY")


def test_serve_tracks_and_sigterm_finishes_what_is_in_flight(
    tracker: Tracker, sim: SimulatorThread, db_url: str
) -> None:
    # Every answer about slowpoke-1 takes 1.5 s: SIGTERM lands while one is in flight.
    sim.define("slowpoke-1", PredictionPlan(outcome=None, delay_seconds=1.5))
    served = Served(
        tracker.popen("serve", "--port", "0", "--max-rps", "20", TRACKER_SERVE_TOKEN=TOKEN)
    )
    try:
        url = served.url()
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url, headers=auth, timeout=30) as http:
            tracked = [{"id": "ok-1"}, {"id": "fail-1"}, {"id": "slowpoke-1"}]
            assert http.post("/api/predictions", json=tracked).status_code == 201
            wrong = http.get("/api/predictions/ok-1", headers={"Authorization": "Bearer no"})
            assert wrong.status_code == 401
            done = _wait_until(lambda: _ended(http, "ok-1", "fail-1"), "ok-1 and fail-1 ended")
            assert done == {"ok-1": "succeeded", "fail-1": "failed"}
            _wait_until(lambda: sim.request_count("slowpoke-1") >= 2, "slowpoke-1 polled")
            # Then 30,000 more: the daemon has polls of them in flight from now on.
            bulk = [{"id": f"forever-{i:05d}"} for i in range(30_000)]
            assert http.post("/api/predictions", json=bulk).status_code == 201
            # A listing of 30,003 rows (about 15 MB) is in flight: its first bytes are here.
            with http.stream("GET", "/api/predictions", params={"limit": "0"}) as listing:
                assert listing.status_code == 200
                chunks = listing.iter_bytes()
                body = next(chunks)
                served.proc.send_signal(signal.SIGTERM)
                sent_at = time.monotonic()
                body += b"".join(chunks)
        code, stderr = served.finish()
        assert time.monotonic() - sent_at < 20
    finally:
        served.close()
    assert code == 0, stderr
    assert len(json.loads(body)["predictions"]) == 30_003
    # The polls in flight at SIGTERM were written: one stored poll per request sent.
    polls = rows(db_url, "select id, poll_count from predictions where poll_count > 0")
    assert sum(n for _, n in polls) == sim.request_count() > len(polls) > 3
    assert rows(db_url, "select count(*) from predictions where claimed_by is not null") == [(0,)]
    assert "service stopped" in stderr
    assert SECRET_KEY not in stderr and TOKEN not in stderr


def _ended(http: httpx.Client, *ids: str) -> dict[str, str] | None:
    statuses = {i: http.get(f"/api/predictions/{i}").json()["prediction"]["status"] for i in ids}
    return statuses if all(s in ("succeeded", "failed") for s in statuses.values()) else None


def _wait_until(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
