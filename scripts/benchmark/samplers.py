"""Threads that sample a run while it goes on: the simulator's answer time, and the
schedule lag (and each prediction's next poll) from the database."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import httpx

from tracker.timeparse import utcnow

from .databases import Reader
from .harness import SimulatorProcess
from .stats import dist


class SimProbe(threading.Thread):
    """How fast the simulator answers (GET /_sim/health) while a run goes on."""

    def __init__(self, sim: SimulatorProcess, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.sim = sim
        self.every = every
        self.samples: list[float] = []
        self._halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._halt.wait(self.every):
                began = time.monotonic()
                with contextlib.suppress(httpx.HTTPError):
                    client.get(f"{self.sim.root}/_sim/health")
                    self.samples.append(time.monotonic() - began)

    def finish(self) -> dict[str, Any]:
        self._halt.set()
        self.join(10)
        return dist(self.samples)


class LagSampler(threading.Thread):
    """Samples the schedule lag (now minus the most overdue next_poll_at) periodically;
    with ``schedules``, also each active prediction's next poll as the daemon set it."""

    def __init__(self, url: str, every: float = 0.5, *, schedules: bool = False) -> None:
        super().__init__(daemon=True)
        self.reader = Reader(url)
        self.every = every
        self.samples: list[float] = []
        self.track = schedules
        #: prediction -> {last answer (epoch): next poll (epoch)}
        self.schedules: dict[str, dict[float, float]] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.every):
            now = utcnow()
            try:
                overdue = self.reader.overdue(now)
                rows = self.reader.schedules() if self.track else []
            except Exception:
                continue
            self.samples.append(0.0 if overdue is None else (now - overdue).total_seconds())
            for pid, base, due in rows:
                self.schedules.setdefault(pid, {})[base] = due

    def finish(self) -> dict[str, Any]:
        self._halt.set()
        self.join(10)
        self.reader.close()
        return dist(self.samples)
