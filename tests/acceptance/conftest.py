"""Acceptance tests run the real `tracker` command against the simulator: the daemon as
a process of its own (forked: tests/clirun.py), short commands through the same entry
point in the test process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.clirun import ForkedTracker, fork_tracker, run_tracker, runs_in_process
from tracker.simulator import SimConfig, SimulatorThread

#: what the tests use as the upstream API key; it must never show up anywhere
SECRET_KEY = "sk-test-DO-NOT-LEAK-8d1f3a"


@dataclass
class Tracker:
    """Runs `python -m tracker ...` with a database and the simulator as upstream."""

    database_url: str
    api_base: str
    extra_env: dict[str, str] = field(default_factory=dict)
    #: False runs every command as `python -m tracker` in a new interpreter
    in_process: bool = True

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
        for name in ("ANYAPI_API_KEY", "REPLICATE_API_TOKEN"):
            env.pop(name, None)
        env.update(
            TRACKER_DATABASE_URL=self.database_url,
            TRACKER_API_BASE=self.api_base,
            TRACKER_API_KEY=SECRET_KEY,
            TRACKER_POLL_MIN="0.2",
            TRACKER_POLL_MAX="1",
            # The tests' webhook receivers listen on 127.0.0.1 (the default is external).
            TRACKER_WEBHOOK_ALLOWED_HOSTS="loopback",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tracker", *args]

    def run(
        self, *args: str, input: str | None = None, timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """`tracker ARGS`: short commands in this process, the daemon and anything
        else in a process forked for it (tests/clirun.py); every command in a new
        interpreter if not ``in_process``."""
        if self.in_process and runs_in_process(args):
            return run_tracker(args, self.env(**env), input)
        if self.in_process:
            return fork_tracker(args, self.env(**env), input, timeout)
        return subprocess.run(
            self.command(*args),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(**env),
        )

    def ok(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        result = self.run(*args, **kwargs)  # type: ignore[arg-type]
        assert result.returncode == 0, f"{args}: rc={result.returncode}\n{result.stderr}"
        return result

    def popen(self, *args: str, interpreter: bool = False, **env: str) -> subprocess.Popen[str]:
        """`tracker ARGS` running, its stdout and stderr on pipes: in a process forked
        for it (tests/clirun.py), or with ``interpreter`` (or not ``in_process``) in
        a new `python -m tracker`, for what a fork cannot show (its memory, the start
        of the whole program)."""
        if self.in_process and not interpreter:
            return ForkedTracker(
                args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env(**env)
            )
        return subprocess.Popen(
            self.command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(**env),
        )


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    config = SimConfig(queue_seconds=0.3, run_median_seconds=1.0, log_interval_seconds=0.2)
    with SimulatorThread(config) as simulator:
        yield simulator


@pytest.fixture
def tracker(db_url: str, sim: SimulatorThread) -> Tracker:
    return Tracker(database_url=db_url, api_base=sim.base_url)
