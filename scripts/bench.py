"""The main benchmark: efficiency, detection and callback latency, scale, and a baseline.

Starts the upstream simulator (and a webhook receiver) in their own processes and runs
`tracker daemon` against them on SQLite and on PostgreSQL. Sections (``--sections``):

efficiency  N never-ending predictions whose logs grow all the time (every answer is a
            change and a write), polled as fast as the daemon can: upstream requests per
            daemon CPU-second, from /proc, once the daemon is warm.
ample       A realistic workload (three models, log-normal run times around 8, 20 and
            60 s, an exponential queue time), each prediction's plan defined explicitly
            with ``PUT /_sim/predictions/{id}`` and seeded, arriving over a minute. Every
            client gets its own copy of the same workload at the same moments: the
            daemon with ``--scheduler adaptive`` and with ``--scheduler backoff`` on
            each engine, and the baseline, the fixed-interval loop of the official
            client's ``wait()`` (one GET every 0.5 s until terminal) with the same
            request budget as a shared token bucket, over the tracker's HTTP client
            so that only the polling strategy differs (``--baseline-http httpx``:
            plain httpx, as replicate-python). The budget covers every poll.
            Measures requests per prediction, detection latency (upstream
            ``completed_at`` to the tracker's terminal ``observed_at``; for the baseline
            to the moment it saw the terminal answer) and callback latency (terminal
            ``observed_at`` to a webhook's arrival at a local receiver).
tight       The same, with about five times more predictions running at once and a
            budget (``--max-rps``) that cannot poll each of them every second. The
            adaptive daemons start with the run times they learned in ``ample`` (seeded
            with SQL when that section did not run).
            In both, a run logs a progress bar line every half second (``step k/n |
            pct% | rate it/s``), which the adaptive scheduler reads; ``--logs plain``
            logs lines that say nothing of progress, leaving it only the run times.
scale       100,000 registered predictions (90 % finished, written in bulk with SQL,
            each shaped like what the daemon writes for a 20 s image prediction with a
            webhook) and 10,000 active never-ending ones (``tracker add``) at
            ``--poll-min 1`` with no binding budget: daemon peak RSS, schedule lag
            (how overdue the most overdue poll is, sampled every 0.5 s from the due
            index, and each poll's delay against its schedule from the simulator's
            log), database bytes per finished prediction, and the EXPLAIN plans of the
            hot-path queries on that database.

Prints one table (baseline beside the tracker, targets met or not) and writes JSON.

    scripts/bench [--fast] [--engines sqlite,postgresql] [--sections ...] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    cast,
    event,
    insert,
    literal,
    null,
    select,
    true,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_callbacks as cb

from tracker.callbacks.base import DeliveryJob, SendResult
from tracker.domain import CallbackSpec, DeliveryState, NextPoll
from tracker.observe import parse_prediction, plan_observation
from tracker.ratelimit import RateLimiter
from tracker.runtimes import MIN_SAMPLES, RunTimes
from tracker.simulator import PredictionPlan, SimConfig, SimulatedPrediction
from tracker.simulator.scenarios import DEFAULT_MODEL
from tracker.store import migrate
from tracker.store.store import Store
from tracker.store.tables import (
    callbacks,
    deliveries,
    delivery_attempts,
    prediction_logs,
    predictions,
    status_transitions,
)
from tracker.store.types import UTCDateTime
from tracker.timeparse import utcnow
from tracker.upstream import make_http_client

ROOT = Path(__file__).resolve().parent.parent
TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
CLK_TCK = os.sysconf("SC_CLK_TCK")
SECTIONS = ("efficiency", "ample", "tight", "scale")
#: the official client's default poll interval (replicate-python's REPLICATE_POLL_INTERVAL)
BASELINE_INTERVAL = 0.5
#: added to the poll interval by the detection-latency target (seconds)
DETECTION_SLACK = 0.25
CALLBACK_TARGET_MS = 250.0
POLLS_PER_CPU_TARGET = 1000.0
LAG_TARGET = 1.0
RSS_TARGET_MB = 150.0
BUDGET_RATIO_TARGET = 2.0


# -- settings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    name: str
    median: float  #: seconds, median of the log-normal run time


FULL_MODELS = (
    ModelSpec("bench/image-fast", 8.0),
    ModelSpec("bench/image-sdxl", 20.0),
    ModelSpec("bench/video-short", 60.0),
)
FAST_MODELS = (
    ModelSpec("bench/image-fast", 0.6),
    ModelSpec("bench/image-sdxl", 1.0),
    ModelSpec("bench/video-short", 1.6),
)


@dataclass(frozen=True)
class Profile:
    """Every size and duration of a run; ``--fast`` picks the small one."""

    models: tuple[ModelSpec, ...]
    sigma: float
    queue_mean: float
    poll_min: float
    poll_max: float
    arrival_seconds: float
    ample_running: float  #: predictions running at once (Little's law: rate x mean time)
    ample_rps: float
    tight_running: float
    tight_rps: float
    efficiency_predictions: int
    efficiency_warmup: float
    efficiency_seconds: float
    scale_registered: int
    scale_active: int
    scale_chunks: int  #: log pieces per finished prediction (one per poll that saw new lines)
    scale_history_median: float  #: run time (s) of the scale database's finished predictions
    scale_max_rps: float
    scale_seconds: float
    scale_backoff_seconds: float
    drain_slack: float  #: seconds to wait for stragglers after the last planned completion


FULL = Profile(
    models=FULL_MODELS,
    sigma=0.5,
    queue_mean=1.0,
    poll_min=1.0,
    poll_max=30.0,
    arrival_seconds=60.0,
    ample_running=60,
    ample_rps=200,
    tight_running=300,
    tight_rps=40,
    efficiency_predictions=2000,
    efficiency_warmup=4.0,
    efficiency_seconds=12.0,
    scale_registered=100_000,
    scale_active=10_000,
    scale_chunks=20,
    scale_history_median=600.0,
    scale_max_rps=5000,
    scale_seconds=50.0,
    scale_backoff_seconds=25.0,
    drain_slack=90.0,
)
FAST = Profile(
    models=FAST_MODELS,
    sigma=0.3,
    queue_mean=0.2,
    poll_min=0.25,
    poll_max=1.0,
    arrival_seconds=1.0,
    ample_running=12,
    ample_rps=200,
    tight_running=24,
    tight_rps=10,
    efficiency_predictions=200,
    efficiency_warmup=0.5,
    efficiency_seconds=1.5,
    scale_registered=1_000,
    scale_active=100,
    scale_chunks=20,
    scale_history_median=600.0,
    scale_max_rps=5000,
    scale_seconds=2.0,
    scale_backoff_seconds=0.0,
    drain_slack=15.0,
)


# -- small helpers -----------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def dist(values: Sequence[float]) -> dict[str, float | int | None]:
    """Count, mean and nearest-rank percentiles (bench_callbacks.percentile) of seconds."""

    def r(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "count": len(values),
        "mean": r(sum(values) / len(values)) if values else None,
        "p50": r(cb.percentile(list(values), 50)),
        "p95": r(cb.percentile(list(values), 95)),
        "p99": r(cb.percentile(list(values), 99)),
        "max": r(max(values)) if values else None,
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc."""
    data = Path(f"/proc/{pid}/stat").read_text()
    fields = data[data.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def tracker_env(url: str, base: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    for name in ("ANYAPI_API_KEY", "REPLICATE_API_TOKEN"):
        env.pop(name, None)
    env.update(TRACKER_DATABASE_URL=url, TRACKER_API_BASE=base, TRACKER_API_KEY="bench")
    env["TRACKER_WEBHOOK_ALLOWED_HOSTS"] = "loopback"  # the receiver listens on 127.0.0.1
    return env


def sqlite_text(moment: datetime) -> str:
    """A UTC time as the tracker stores it in SQLite."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
        "loadavg_start": loadavg(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    return info


# -- processes ---------------------------------------------------------------------------


class Simulator:
    """`tracker simulate` in its own process."""

    def __init__(self) -> None:
        cmd = [sys.executable, "-m", "tracker", "simulate", "--port", str(cb.free_port())]
        self.proc, self.base = cb.start_listening(cmd, "simulator")
        self.root = self.base.removesuffix("/v1")

    def request_count(self) -> int:
        return httpx.get(f"{self.root}/_sim/health", timeout=30).json()["requests"]

    def requests(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.root}/_sim/requests", timeout=120).json()["requests"]

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        cb.stop(self.proc)


class Daemon:
    """`tracker daemon` in its own process; CPU from /proc while it runs, rusage at exit."""

    def __init__(self, url: str, base: str, log_path: Path, *flags: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracker", "daemon", *flags],
            env=tracker_env(url, base),
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        self.result: dict[str, Any] | None = None
        self._signalled = False
        self._peak: float | None = None

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " started: " in self.log_path.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the daemon did not start ({self.log_path}):\n{tail}")

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def terminate(self) -> None:
        # os.kill, not Popen.send_signal: that polls first, reaping an exited daemon
        # before os.wait4 can read its resource usage.
        if self.result is None and not self._signalled:
            self._signalled = True
            self._peak = proc_rss_mb(self.proc.pid)  # while it is still certainly alive
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """SIGTERM (SIGKILL after ``timeout``); exit code, CPU seconds and peak RSS."""
        if self.result is not None:
            return self.result
        self.terminate()
        peak = self._peak
        deadline = time.monotonic() + timeout
        killed = False
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                break
            reading = proc_rss_mb(self.proc.pid)
            if reading is not None:
                peak = max(peak or 0.0, reading)
            if not killed and time.monotonic() > deadline:
                self.proc.kill()
                killed = True
            time.sleep(0.02)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self._log.close()
        self.result = {
            "exit_code": self.proc.returncode,
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            # VmHWM of the daemon's own address space. ru_maxrss is not that: a child
            # started with vfork inherits, at exec, the parent's high-water mark, so it
            # reports this benchmark's own peak whenever that is the larger.
            "peak_rss_mb": peak,
            "ru_maxrss_mb": round(usage.ru_maxrss / 1024, 1),
            "log": str(self.log_path),
            "log_counts": cb.log_counts(self.log_path),
        }
        return self.result


# -- databases ---------------------------------------------------------------------------


def pg_url(dbname: str) -> str:
    return cb.PG_ADMIN.rpartition("/")[0] + f"/{dbname}"


def pg_admin(sql: str) -> None:
    with psycopg.connect(cb.PG_ADMIN, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql)


class Databases:
    """Throwaway databases cloned from one migrated template per engine."""

    def __init__(self, workdir: Path, keep: bool) -> None:
        self.workdir = workdir
        self.keep = keep
        self._templates: dict[str, str] = {}
        self._pg: list[str] = []
        self._lock = threading.Lock()
        self.empty_bytes: dict[str, int] = {}

    def template(self, engine: str) -> str:
        with self._lock:
            if engine not in self._templates:
                if engine == "sqlite":
                    path = self.workdir / "template.db"
                    url = f"sqlite:///{path}"
                    name = str(path)
                else:
                    name = f"tracker_bench_tpl_{uuid.uuid4().hex[:8]}"
                    pg_admin(f'CREATE DATABASE "{name}"')
                    self._pg.append(name)
                    url = pg_url(name)
                store = Store.from_url(url)
                try:
                    migrate.upgrade(store)
                finally:
                    store.close()
                self._templates[engine] = name
                self.empty_bytes[engine] = self.size(url)
            return self._templates[engine]

    def new(self, engine: str, label: str) -> str:
        template = self.template(engine)
        if engine == "sqlite":
            path = self.workdir / f"{label}.db"
            shutil.copyfile(template, path)
            return f"sqlite:///{path}"
        name = f"tracker_bench_{label.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
        pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        with self._lock:
            self._pg.append(name)
        return pg_url(name)

    @staticmethod
    def size(url: str) -> int:
        """Bytes on disk: the SQLite file (and its WAL), or pg_database_size."""
        if url.startswith("sqlite"):
            path = Path(url.removeprefix("sqlite:///"))
            wal = Path(f"{path}-wal")
            return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        dbname = url.rpartition("/")[2]
        with psycopg.connect(cb.PG_ADMIN, autocommit=True) as conn:
            row = conn.execute("SELECT pg_database_size(%s)", [dbname]).fetchone()
            assert row is not None
            return int(row[0])

    def drop_all(self) -> None:
        if self.keep:
            return
        for name in reversed(self._pg):
            with contextlib.suppress(psycopg.Error):
                pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._pg.clear()


class Reader:
    """Plain read-only queries beside a running daemon, without the tracker's engine
    (which starts every SQLite transaction with BEGIN IMMEDIATE, i.e. takes the write
    lock): a reader must not slow the daemon it measures."""

    def __init__(self, url: str) -> None:
        self.sqlite = url.startswith("sqlite")
        if self.sqlite:
            path = url.removeprefix("sqlite:///")
            self._conn: Any = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=30
            )
        else:
            self._conn = psycopg.connect(url, autocommit=True)
        self._lock = threading.Lock()

    def scalar(self, sql: str, *params: Any) -> Any:
        if self.sqlite:
            sql = sql.replace("%s", "?")
            params = tuple(sqlite_text(p) if isinstance(p, datetime) else p for p in params)
        with self._lock:
            row = self._conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def overdue(self, now: datetime) -> datetime | None:
        """The most overdue poll, the way `tracker status` finds it (the due index)."""
        value = self.scalar(
            "SELECT next_poll_at FROM predictions WHERE tracking = 'active'"
            " AND next_poll_at <= %s ORDER BY next_poll_at LIMIT 1",
            now,
        )
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        return value

    def schedules(self) -> list[tuple[str, float, float]]:
        """(id, last answer or registration, next poll) of active rows nobody has claimed:
        what the scheduler decided after each answer, as epoch seconds."""
        sql = (
            "SELECT id, coalesce(last_polled_at, registered_at), next_poll_at FROM predictions"
            " WHERE tracking = 'active' AND claimed_by IS NULL AND next_poll_at IS NOT NULL"
        )
        with self._lock:
            rows = self._conn.execute(sql).fetchall()
        return [(pid, _epoch(base), _epoch(due)) for pid, base, due in rows]

    def active_and_pending(self) -> tuple[int, int]:
        active = self.scalar("SELECT count(*) FROM predictions WHERE tracking = 'active'")
        pending = self.scalar("SELECT count(*) FROM deliveries WHERE state = 'pending'")
        return int(active), int(pending)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()


def _epoch(value: Any) -> float:
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()
    return value.timestamp()


class SimProbe(threading.Thread):
    """How fast the simulator answers (GET /_sim/health) while a run goes on."""

    def __init__(self, sim: Simulator, every: float = 0.25) -> None:
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


# -- the workload ------------------------------------------------------------------------


def mean_duration(profile: Profile) -> float:
    mean_run = sum(m.median for m in profile.models) / len(profile.models)
    return profile.queue_mean + mean_run * math.exp(profile.sigma**2 / 2)


def make_workload(profile: Profile, running: float, seed: int) -> list[dict[str, Any]]:
    """Arrivals spread uniformly over the window (a Poisson process given its count), a
    model each, an exponential queue time and a log-normal run time: seeded."""
    rng = random.Random(seed)
    count = max(6, round(running * profile.arrival_seconds / mean_duration(profile)))
    offsets = sorted(rng.uniform(0, profile.arrival_seconds) for _ in range(count))
    items = []
    for index, offset in enumerate(offsets):
        model = profile.models[index % len(profile.models)]
        items.append(
            {
                "index": index,
                "offset": round(offset, 3),
                "model": model.name,
                "queue_seconds": round(rng.expovariate(1 / profile.queue_mean), 3),
                "run_seconds": round(rng.lognormvariate(math.log(model.median), profile.sigma), 3),
            }
        )
    return items


#: ``--logs plain``: runs log a line every half second but show no progress bar
PROGRESS_BARS = True


def plan_json(item: dict[str, Any]) -> dict[str, Any]:
    plan = {
        "outcome": "succeeded",
        "queue_seconds": item["queue_seconds"],
        "run_seconds": item["run_seconds"],
        "model": item["model"],
    }
    if not PROGRESS_BARS:
        lines = max(1, math.ceil(item["run_seconds"] / 0.5))
        plan["log_lines"] = [f"chunk {k} rendered" for k in range(1, lines + 1)]
    return plan


def peak_running(items: Sequence[dict[str, Any]]) -> int:
    edges = []
    for it in items:
        edges.append((it["offset"], 1))
        edges.append((it["offset"] + it["queue_seconds"] + it["run_seconds"], -1))
    running = peak = 0
    for _, step in sorted(edges):
        running += step
        peak = max(peak, running)
    return peak


def workload_summary(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    by_model: dict[str, list[float]] = {}
    for it in items:
        by_model.setdefault(it["model"], []).append(it["queue_seconds"] + it["run_seconds"])
    return {
        "predictions": len(items),
        "peak_running": peak_running(items),
        "seconds_to_complete_by_model": {m: dist(v) for m, v in sorted(by_model.items())},
    }


# -- the baseline: the official client's wait() loop, one task per prediction ------------


def serve_baseline(spec_path: str) -> None:
    """Subprocess body: create each prediction at its moment, then GET it every 0.5 s
    (sleep first, as replicate-python's wait() does) until it is terminal, all GETs
    drawing from one shared rate limit. Writes what it saw to the spec's `out`."""
    spec = json.loads(Path(spec_path).read_text())
    print("baseline ready", flush=True)
    t0 = float(sys.stdin.readline())
    asyncio.run(_baseline(spec, t0))


async def _baseline(spec: dict[str, Any], t0: float, who: int = resource.RUSAGE_SELF) -> None:
    limiter = RateLimiter(spec["max_rps"])
    interval = spec["interval"]
    results: dict[str, dict[str, Any]] = {}
    gets: list[float] = []
    errors: list[float] = []
    lags: list[float] = []
    if spec.get("http") == "httpx":  # replicate-python's own transport
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        http = httpx.AsyncClient(timeout=30, limits=limits)
    else:  # the tracker's: httpx's API over aiohttp's connection pool
        http = make_http_client(max_connections=64)
    async with http as client:

        async def follow(item: dict[str, Any]) -> None:
            pid = item["id"]
            await asyncio.sleep(max(0.0, t0 + item["offset"] - time.time()))
            await client.put(f"{spec['root']}/_sim/predictions/{pid}", json=item["plan"])
            requests = 0
            while True:
                await asyncio.sleep(interval)
                await limiter.acquire()
                requests += 1
                began = time.monotonic()
                try:
                    response = await client.get(f"{spec['base']}/predictions/{pid}")
                    body = response.json()
                except (httpx.HTTPError, ValueError):
                    errors.append(time.monotonic() - began)
                    continue
                gets.append(time.monotonic() - began)
                if body.get("status") in TERMINAL:
                    seen = time.time()
                    break
            completed = datetime.fromisoformat(body["completed_at"]).timestamp()
            results[pid] = {"seen_at": seen, "completed_at": completed, "requests": requests}

        async def loop_lag() -> None:
            while True:
                began = time.monotonic()
                await asyncio.sleep(0.1)
                lags.append(time.monotonic() - began - 0.1)

        probe = asyncio.create_task(loop_lag())
        await asyncio.gather(*(follow(item) for item in spec["items"]))
        probe.cancel()
    usage = resource.getrusage(who)
    Path(spec["out"]).write_text(
        json.dumps(
            {
                "results": results,
                "get_seconds": dist(gets),
                "errors": len(errors),
                "event_loop_lag_seconds": dist(lags),
                "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
                # VmHWM: ru_maxrss would include the parent's peak (see Daemon.stop)
                "peak_rss_mb": proc_rss_mb(os.getpid()) if who == resource.RUSAGE_SELF else None,
            }
        )
    )


class Baseline:
    """The baseline in its own process; with ``inline`` (--fast, one process less to
    start) in a thread of this one, its CPU time taken from that thread alone."""

    def __init__(self, spec: dict[str, Any], workdir: Path, run: str, *, inline: bool) -> None:
        self.spec_path = workdir / f"{run}-baseline-spec.json"
        self.out = workdir / f"{run}-baseline-out.json"
        self.spec = {**spec, "out": str(self.out)}
        self.proc: subprocess.Popen[str] | None = None
        self.thread: threading.Thread | None = None
        if inline:
            return
        self.spec_path.write_text(json.dumps(self.spec))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-baseline"]
        self.proc = subprocess.Popen(
            [*cmd, str(self.spec_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "ready" not in line:
            cb.stop(self.proc)
            raise RuntimeError(f"the baseline did not start (said {line!r})")

    def go(self, t0: float) -> None:
        if self.proc is None:
            self.thread = threading.Thread(
                target=lambda: asyncio.run(_baseline(self.spec, t0, resource.RUSAGE_THREAD)),
                daemon=True,
            )
            self.thread.start()
            return
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{t0}\n")
        self.proc.stdin.flush()

    def finished(self) -> bool:
        if self.proc is None:
            return self.thread is not None and not self.thread.is_alive()
        return self.proc.poll() is not None

    def result(self) -> dict[str, Any]:
        if self.proc is not None:
            cb.stop(self.proc)
        elif self.thread is not None:
            self.thread.join(5)
        if not self.out.exists():
            return {"results": {}, "cpu_seconds": None, "peak_rss_mb": None}
        return json.loads(self.out.read_text())


# -- one workload run: every client on its own copy of the same workload ----------------


@dataclass
class Variant:
    key: str  #: e.g. "sqlite-adaptive"
    engine: str
    scheduler: str
    url: str
    prefix: str = ""
    hook: str = ""
    store: Store | None = None
    executor: ThreadPoolExecutor | None = None
    daemon: Daemon | None = None
    sampler: LagSampler | None = None
    reader: Reader | None = None
    registered: list[float] = field(default_factory=list)


def short(key: str) -> str:
    engine, _, scheduler = key.partition("-")
    return ("sq" if engine == "sqlite" else "pg") + scheduler[:1]


def run_workload(
    run: str,
    items: list[dict[str, Any]],
    variants: list[Variant],
    *,
    profile: Profile,
    max_rps: float,
    sim: Simulator,
    receiver: str,
    workdir: Path,
    baseline_http: str = "tracker",
) -> dict[str, Any]:
    log(
        f"{run}: {len(items)} predictions x {len(variants) + 1} clients,"
        f" peak {peak_running(items)} running, --max-rps {max_rps:g}"
    )
    load_start = loadavg()
    flags = ["--poll-min", str(profile.poll_min), "--poll-max", str(profile.poll_max)]
    flags += ["--max-rps", str(max_rps)]
    for v in variants:
        v.prefix = f"{run}-{short(v.key)}-"
        v.hook = f"{receiver}/hook/{run}-{v.key}"
        v.store = Store.from_url(v.url, pool_size=2)
        v.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"register-{v.key}")
        log_path = workdir / f"{run}-daemon-{v.key}.log"
        v.daemon = Daemon(v.url, sim.base, log_path, "--scheduler", v.scheduler, *flags)
    base_prefix = f"{run}-base-"
    baseline = Baseline(
        {
            "root": sim.root,
            "base": sim.base,
            "max_rps": max_rps,
            "interval": BASELINE_INTERVAL,
            "http": baseline_http,
            "items": [
                {
                    "id": f"{base_prefix}{it['index']:05d}",
                    "offset": it["offset"],
                    "plan": plan_json(it),
                }
                for it in items
            ],
        },
        workdir,
        run,
        inline=profile is FAST,
    )
    try:
        for v in variants:
            assert v.daemon is not None
            v.daemon.wait_ready()
        log(f"{run}: daemons ready")
        t0 = time.time() + 0.5
        baseline.go(t0)
        probe = SimProbe(sim)
        probe.start()
        sim_cpu = sim.cpu_seconds()
        for v in variants:
            v.sampler = LagSampler(v.url, 0.2, schedules=True)
            v.sampler.start()
            v.reader = Reader(v.url)
        asyncio.run(_arrive(items, variants, t0, sim, profile.poll_min))
        last = max(it["offset"] + it["queue_seconds"] + it["run_seconds"] for it in items)
        deadline = t0 + last + profile.drain_slack
        unfinished = _wait_done(variants, baseline, deadline)
        elapsed = time.time() - t0
        sim_cpu = sim.cpu_seconds() - sim_cpu
        sim_latency = probe.finish()
        log(f"{run}: every prediction ended after {elapsed:.1f} s")
    finally:
        for v in variants:  # all at once: each takes a moment to drain and release claims
            if v.daemon is not None:
                v.daemon.terminate()
        for v in variants:
            if v.daemon is not None:
                v.daemon.stop()
        base_result = baseline.result()
    log(f"{run}: daemons stopped")
    lags = {v.key: v.sampler.finish() if v.sampler else dist([]) for v in variants}
    for v in variants:
        if v.reader:
            v.reader.close()
        if v.executor:
            v.executor.shutdown()
        if v.store:
            v.store.close()

    counts: Counter[str] = Counter()
    polled: dict[str, list[float]] = {}
    for record in sim.requests():
        pid = record["prediction_id"] or ""
        counts[pid[: pid.rfind("-") + 1]] += 1
        polled.setdefault(pid, []).append(record["at"])
    hooks = {
        v.key: httpx.get(f"{receiver}/records", params={"tag": f"{run}-{v.key}"}, timeout=60).json()
        for v in variants
    }

    clients = []
    for v in variants:
        assert v.daemon is not None and v.daemon.result is not None and v.sampler is not None
        db = cb.read_database(v.url)
        terminal = {pid: t for pid, t in db["terminal"].items() if pid.startswith(v.prefix)}
        completed = {
            pid: t["completed_at"] for pid, t in terminal.items() if t["completed_at"] is not None
        }
        detect = {pid: terminal[pid]["observed_at"] - c for pid, c in completed.items()}
        # The poll interval in effect when each prediction ended: what the daemon
        # scheduled after its last answer before the completion.
        intervals: dict[str, float] = {}
        late: list[float] = []
        for pid, c in completed.items():
            decided = v.sampler.schedules.get(pid, {})
            before = [base for base in decided if base < c]
            if not before:
                continue
            base = max(before)
            intervals[pid] = decided[base] - base
            detecting = next((at for at in polled.get(pid, []) if at >= c), None)
            if detecting is not None:
                late.append(detecting - decided[base])
        excess = [detect[pid] - intervals[pid] for pid in intervals]
        arrivals: dict[str, float] = {}
        for rec in hooks[v.key]:
            if rec["event"] == "completed" and rec["prediction_id"] in terminal:
                arrivals.setdefault(rec["prediction_id"], rec["arrival"])
        callback_ms = [(at - terminal[pid]["observed_at"]) * 1000 for pid, at in arrivals.items()]
        requests = counts[v.prefix]
        windows = _learned_windows(v.url) if v.scheduler == "adaptive" else {}
        cpu = v.daemon.result["cpu_seconds"]
        clients.append(
            {
                "client": "tracker",
                "scheduler": v.scheduler,
                "engine": v.engine,
                "predictions": len(items),
                "finished": len(detect),
                "requests": requests,
                "requests_per_prediction": round(requests / len(items), 2),
                "detection_seconds": dist(list(detect.values())),
                "interval_at_completion_seconds": dist(list(intervals.values())),
                "detection_minus_interval_seconds": dist(excess),
                "detecting_poll_late_seconds": dist(late),
                "poll_gaps": _poll_gaps(polled, v.prefix, completed),
                "learned_windows": {m: [round(x, 2) for x in w] for m, w in windows.items() if w},
                "callback_ms": dist_ms(callback_ms),
                "callbacks_delivered": len(arrivals),
                "callback_path_ms": _delivery_timing(v.url, v.prefix),
                "delivery_states": db["delivery_states"],
                "schedule_lag_seconds": lags[v.key],
                "daemon": v.daemon.result,
                "polls_per_cpu_second": round(requests / cpu, 1) if cpu else None,
            }
        )
    seen = base_result["results"]
    base_detect = {pid: r["seen_at"] - r["completed_at"] for pid, r in seen.items()}
    base_requests = counts[base_prefix]
    base_cpu = base_result["cpu_seconds"]
    clients.append(
        {
            "client": "baseline",
            "scheduler": f"fixed {BASELINE_INTERVAL:g} s",
            "http_client": baseline_http,
            "engine": None,
            "predictions": len(items),
            "finished": len(seen),
            "requests": base_requests,
            "requests_per_prediction": round(base_requests / len(items), 2),
            "detection_seconds": dist(list(base_detect.values())),
            "detection_minus_interval_seconds": dist(
                [x - BASELINE_INTERVAL for x in base_detect.values()]
            ),
            "poll_gaps": _poll_gaps(
                polled, base_prefix, {pid: r["completed_at"] for pid, r in seen.items()}
            ),
            "get_seconds": base_result.get("get_seconds"),
            "get_errors": base_result.get("errors"),
            "event_loop_lag_seconds": base_result.get("event_loop_lag_seconds"),
            "cpu_seconds": base_cpu,
            "peak_rss_mb": base_result["peak_rss_mb"],
            "polls_per_cpu_second": round(base_requests / base_cpu, 1) if base_cpu else None,
        }
    )
    result = {
        "max_rps": max_rps,
        "poll_min": profile.poll_min,
        "poll_max": profile.poll_max,
        "baseline_interval": BASELINE_INTERVAL,
        "workload": workload_summary(items),
        "seconds": round(elapsed, 1),
        "unfinished": unfinished,
        "simulator_latency_seconds": sim_latency,
        "simulator_cpu_share": round(sim_cpu / elapsed, 2),
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "clients": clients,
    }
    result["ratios"] = _ratios(clients)
    log(f"{run}: measured")
    return result


async def _arrive(
    items: list[dict[str, Any]], variants: list[Variant], t0: float, sim: Simulator, poll_min: float
) -> None:
    """At each arrival: define the plan upstream (the prediction is created), then
    register it with each tracker, as a user would right after creating it."""
    loop = asyncio.get_running_loop()
    pending: list[asyncio.Future[None]] = []
    groups: list[list[dict[str, Any]]] = []
    for it in items:
        if groups and it["offset"] - groups[-1][0]["offset"] < 0.05:
            groups[-1].append(it)
        else:
            groups.append([it])
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for group in groups:
            delay = t0 + group[0]["offset"] - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            puts = [
                client.put(
                    f"{sim.root}/_sim/predictions/{v.prefix}{it['index']:05d}", json=plan_json(it)
                )
                for v in variants
                for it in group
            ]
            for response in await asyncio.gather(*puts):
                response.raise_for_status()
            for v in variants:
                ids = [f"{v.prefix}{it['index']:05d}" for it in group]
                pending.append(loop.run_in_executor(v.executor, _register, v, ids, poll_min))
        await asyncio.gather(*pending)


def dist_ms(values_ms: Sequence[float]) -> dict[str, float | int | None]:
    return {
        k: (v if k == "count" or v is None else round(v * 1000, 1))
        for k, v in dist([x / 1000 for x in values_ms]).items()
    }


def _poll_gaps(
    polled: dict[str, list[float]], prefix: str, completed: dict[str, float]
) -> dict[str, Any]:
    """From the simulator's log: the time between two polls of one prediction, and at
    each completion the gap between the poll before it and the poll that saw it."""
    gaps: list[float] = []
    around: list[float] = []
    for pid, times in polled.items():
        if not pid.startswith(prefix):
            continue
        gaps.extend(b - a for a, b in itertools.pairwise(times))
        c = completed.get(pid)
        if c is None:
            continue
        after = next((i for i, at in enumerate(times) if at >= c), None)
        if after:
            around.append(times[after] - times[after - 1])
    return {"between_polls_seconds": dist(gaps), "around_completion_seconds": dist(around)}


def _delivery_timing(url: str, prefix: str) -> dict[str, Any]:
    """Where a webhook's time goes: queued (the observation's commit) to the send
    starting, and the send itself (delivery_attempts.duration_ms)."""
    from tracker.store.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    deliveries.c.created_at,
                    delivery_attempts.c.attempted_at,
                    delivery_attempts.c.duration_ms,
                )
                .join(delivery_attempts, delivery_attempts.c.delivery_id == deliveries.c.id)
                .where(deliveries.c.prediction_id.like(f"{prefix}%"))
            ).all()
    finally:
        engine.dispose()
    waits = [((a - c).total_seconds() * 1000 - (d or 0)) for c, a, d in rows if a is not None]
    return {
        "queued_to_send_ms": dist_ms(waits),
        "send_ms": dist_ms([float(d) for _, _, d in rows if d is not None]),
        "attempts": len(rows),
    }


def _register(v: Variant, ids: list[str], poll_min: float) -> None:
    assert v.store is not None
    now = utcnow()
    v.store.add_predictions(
        ids,
        now=now,
        first_poll_at=now + timedelta(seconds=poll_min),
        callbacks_to_add=[CallbackSpec("webhook", v.hook, ("completed",))],
    )
    v.registered.append((utcnow() - now).total_seconds())


def _wait_done(variants: list[Variant], baseline: Baseline, deadline: float) -> dict[str, Any]:
    """Wait until every tracker has no active prediction and no pending delivery, and
    the baseline has seen every prediction end; what is left at the deadline."""
    state: dict[str, Any] = {}
    while True:
        state = {}
        for v in variants:
            assert v.reader is not None
            active, pending = v.reader.active_and_pending()
            if active or pending:
                state[v.key] = {"active": active, "pending_deliveries": pending}
        if not baseline.finished():
            state["baseline"] = "running"
        if not state or time.time() > deadline:
            if state:
                log(f"not finished by the deadline: {state}")
            return state
        time.sleep(0.5)


def _learned_windows(url: str) -> dict[str, tuple[float, float] | None]:
    """Each model's likely window as the adaptive daemon knows it from the database."""
    store = Store.from_url(url, pool_size=1)
    try:
        samples = store.recent_run_times()
    finally:
        store.close()
    known = RunTimes()
    known.load(samples)
    return {model: known.likely_window(model) for model in samples}


def _ratios(clients: list[dict[str, Any]]) -> dict[str, Any]:
    """Per engine: how many times more requests and how much later detection the
    others have than the adaptive tracker (> 1: the adaptive tracker is better)."""
    base = next(c for c in clients if c["client"] == "baseline")
    out: dict[str, Any] = {}
    for engine in sorted({c["engine"] for c in clients if c["engine"]}):
        mine = {c["scheduler"]: c for c in clients if c["engine"] == engine}
        adaptive = mine.get("adaptive")
        if adaptive is None:
            continue
        for name, other in (("baseline", base), ("backoff", mine.get("backoff"))):
            if other is not None:
                out[f"{engine}: {name} / adaptive"] = _ratio_entry(other, adaptive)
        backoff = mine.get("backoff")
        if backoff is not None:
            out[f"{engine}: baseline / backoff"] = _ratio_entry(base, backoff)
    return out


def _ratio_entry(other: dict[str, Any], client: dict[str, Any]) -> dict[str, Any]:
    """``other``'s requests per prediction and detection quantiles over ``client``'s."""
    entry = {
        "requests_per_prediction": ratio(
            other["requests_per_prediction"], client["requests_per_prediction"]
        )
    }
    for q in ("p50", "p95", "p99"):
        entry[f"detection_{q}"] = ratio(
            other["detection_seconds"][q], client["detection_seconds"][q]
        )
    return entry


def seed_history(url: str, profile: Profile, seed: int) -> int:
    """Give each model MIN_SAMPLES finished predictions (SQL) if the database has fewer."""
    store = Store.from_url(url, pool_size=1)
    rng = random.Random(seed)
    try:
        have = {m: len(v) for m, v in store.recent_run_times().items()}
        rows = []
        now = utcnow()
        for model in profile.models:
            for k in range(max(0, MIN_SAMPLES - have.get(model.name, 0))):
                seconds = rng.expovariate(1 / profile.queue_mean) + rng.lognormvariate(
                    math.log(model.median), profile.sigma
                )
                created = now - timedelta(seconds=3600 - k)
                rows.append(
                    {
                        "id": f"history-{model.name.replace('/', '-')}-{k}",
                        "status": "succeeded",
                        "tracking": "done",
                        "model": model.name,
                        "labels": {},
                        "registered_at": created,
                        "created_at": created,
                        "completed_at": created + timedelta(seconds=seconds),
                    }
                )
        if rows:
            with store.engine.begin() as conn:
                conn.execute(insert(predictions), rows)
        return len(rows)
    finally:
        store.close()


# -- efficiency --------------------------------------------------------------------------


def run_efficiency(
    engine: str, profile: Profile, dbs: Databases, workdir: Path, sim: Simulator
) -> dict[str, Any]:
    """Like scripts/bench_poll.py, measured once the daemon is warm (from /proc)."""
    daemon = None
    load_start = loadavg()
    try:
        url = dbs.new(engine, f"efficiency-{engine}")
        store = Store.from_url(url, pool_size=1)
        ids = [f"forever-eff-{i}" for i in range(profile.efficiency_predictions)]
        now = utcnow()
        store.add_predictions(ids, now=now, first_poll_at=now)
        store.close()
        flags = ["--poll-min", "0.5", "--poll-max", "0.5", "--max-rps", "10000"]
        flags += ["--concurrency", "64"]
        before = sim.request_count()
        daemon = Daemon(url, sim.base, workdir / f"efficiency-daemon-{engine}.log", *flags)
        daemon.wait_ready()
        time.sleep(profile.efficiency_warmup)
        pg_pids = _pg_backends(url) if engine == "postgresql" else []
        r0, c0, s0, t0 = sim.request_count(), daemon.cpu_seconds(), sim.cpu_seconds(), time.time()
        p0 = _cpu_of(pg_pids)
        time.sleep(profile.efficiency_seconds)
        r1, c1, s1, t1 = sim.request_count(), daemon.cpu_seconds(), sim.cpu_seconds(), time.time()
        p1 = _cpu_of(pg_pids)
        whole = daemon.stop()
        total = sim.request_count() - before
    finally:
        if daemon is not None:
            daemon.stop()
    polls, cpu, seconds = r1 - r0, c1 - c0, t1 - t0
    return {
        "engine": engine,
        "predictions": profile.efficiency_predictions,
        "seconds_measured": round(seconds, 1),
        "polls": polls,
        "polls_per_second": round(polls / seconds, 1),
        "daemon_cpu_seconds": round(cpu, 2),
        "polls_per_cpu_second": round(polls / cpu, 1) if cpu else None,
        "daemon_cpu_share": round(cpu / seconds, 2),
        "simulator_cpu_share": round((s1 - s0) / seconds, 2),
        "postgres_backend_cpu_seconds": round(p1 - p0, 2) if pg_pids else None,
        "whole_run": {
            "polls": total,
            "cpu_seconds": whole["cpu_seconds"],
            "polls_per_cpu_second": round(total / whole["cpu_seconds"], 1)
            if whole["cpu_seconds"]
            else None,
        },
        "peak_rss_mb": whole["peak_rss_mb"],
        "daemon": whole,
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
    }


def _pg_backends(url: str) -> list[int]:
    dbname = url.rpartition("/")[2]
    with psycopg.connect(cb.PG_ADMIN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = 'tracker'",
            [dbname],
        ).fetchall()
    return [int(r[0]) for r in rows]


def _cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            total += proc_cpu_seconds(pid)
    return total


# -- scale -------------------------------------------------------------------------------


def finished_template(chunks: int) -> dict[str, Any]:
    """What the daemon stores for one 20 s image prediction polled every second: the
    final answer (raw), its logs and the pieces of log text it saw appear."""
    plan = PredictionPlan(outcome="succeeded", queue_seconds=1.0, run_seconds=20.0)
    sim = SimulatedPrediction("done-000000", plan, SimConfig(), created_at=0.0)
    body = sim.snapshot(1000.0, "https://api.replicate.com/v1")
    lines = body["logs"].splitlines(keepends=True)
    per = max(1, math.ceil(len(lines) / chunks))
    pieces = ["".join(lines[i : i + per]) for i in range(0, len(lines), per)]
    return {"body": body, "chunks": pieces}


def fill_finished(url: str, count: int, profile: Profile, seed: int) -> dict[str, Any]:
    """Bulk-write ``count`` finished predictions with their transitions, log pieces and a
    delivered webhook each, server-side (INSERT ... SELECT) from per-row times."""
    rng = random.Random(seed)
    tpl = finished_template(profile.scale_chunks)
    body = tpl["body"]
    meta = MetaData()
    fill = Table(
        "bench_fill",
        meta,
        Column("k", Integer, primary_key=True),
        Column("id", String(128)),
        Column("created", UTCDateTime),
        Column("started", UTCDateTime),
        Column("completed", UTCDateTime),
        Column("first_seen", UTCDateTime),
        Column("started_seen", UTCDateTime),
        Column("done_seen", UTCDateTime),
        Column("predict_time", Float),
        prefixes=["TEMPORARY"],
    )
    pieces = Table(
        "bench_pieces",
        meta,
        Column("seq", Integer, primary_key=True),
        Column("text", Text),
        prefixes=["TEMPORARY"],
    )
    now = utcnow()
    rows = []
    for k in range(count):
        created = now - timedelta(days=1) + timedelta(seconds=k * 80_000 / max(1, count))
        queue = rng.expovariate(1.0)
        run = rng.lognormvariate(math.log(profile.scale_history_median), 0.5)
        started = created + timedelta(seconds=queue)
        completed = started + timedelta(seconds=run)
        rows.append(
            {
                "k": k,
                "id": f"done-{k:06d}",
                "created": created,
                "started": started,
                "completed": completed,
                "first_seen": created + timedelta(seconds=1),
                "started_seen": started + timedelta(seconds=0.5),
                "done_seen": completed + timedelta(seconds=0.5),
                "predict_time": round(run, 6),
            }
        )

    def const(value: Any, column: Any) -> Any:
        return cast(literal(value, type_=column.type), column.type)

    p = predictions.c
    f = fill.c
    store = Store.from_url(url, pool_size=1)
    started_at = time.monotonic()
    try:
        with store.engine.begin() as conn:
            meta.create_all(conn)
            for start in range(0, len(rows), 5000):
                conn.execute(insert(fill), rows[start : start + 5000])
            conn.execute(
                insert(pieces),
                [{"seq": i + 1, "text": t} for i, t in enumerate(tpl["chunks"])],
            )
            columns = {
                "id": f.id,
                "status": const("succeeded", p.status),
                "tracking": const("done", p.tracking),
                "model": const(DEFAULT_MODEL, p.model),
                "version": const(body["version"], p.version),
                "input": const(body["input"], p.input),
                "output": const(body["output"], p.output),
                "logs": const(body["logs"], p.logs),
                "metrics": const(body["metrics"], p.metrics),
                "predict_time": f.predict_time,
                "created_at": f.created,
                "started_at": f.started,
                "completed_at": f.completed,
                "data_removed": const(False, p.data_removed),
                "urls": const(body["urls"], p.urls),
                "labels": const({}, p.labels),
                "registered_at": f.created,
                "last_polled_at": f.done_seen,
                "poll_count": const(len(tpl["chunks"]) + 3, p.poll_count),
                "raw": const(body, p.raw),
                "log_seq": const(len(tpl["chunks"]), p.log_seq),
            }
            conn.execute(insert(predictions).from_select(list(columns), select(*columns.values())))
            t = status_transitions.c
            for from_status, to_status, seen, upstream in (
                (None, "starting", f.first_seen, f.created),
                ("starting", "processing", f.started_seen, f.started),
                ("processing", "succeeded", f.done_seen, f.completed),
            ):
                conn.execute(
                    insert(status_transitions).from_select(
                        ["prediction_id", "from_status", "to_status", "observed_at", "upstream_at"],
                        select(
                            f.id,
                            null() if from_status is None else const(from_status, t.from_status),
                            const(to_status, t.to_status),
                            seen,
                            upstream,
                        ),
                    )
                )
            conn.execute(
                insert(prediction_logs).from_select(
                    ["prediction_id", "seq", "observed_at", "text", "restarted"],
                    select(
                        f.id,
                        pieces.c.seq,
                        f.started_seen,
                        pieces.c.text,
                        const(False, prediction_logs.c.restarted),
                    )
                    .select_from(fill.join(pieces, true()))
                    .order_by(f.k, pieces.c.seq),
                )
            )
            conn.execute(
                insert(callbacks).from_select(
                    ["prediction_id", "kind", "target", "events", "created_at"],
                    select(
                        f.id,
                        const("webhook", callbacks.c.kind),
                        const("https://hooks.example.com/replicate", callbacks.c.target),
                        const("completed", callbacks.c.events),
                        f.created,
                    ).order_by(f.k),
                )
            )
            payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
            d = deliveries.c
            conn.execute(
                insert(deliveries).from_select(
                    [
                        "callback_id",
                        "prediction_id",
                        "event",
                        "state",
                        "attempts",
                        "last_status_code",
                        "created_at",
                        "delivered_at",
                        "payload",
                        "message_id",
                    ],
                    select(
                        callbacks.c.id,
                        callbacks.c.prediction_id,
                        const("completed", d.event),
                        const("delivered", d.state),
                        const(1, d.attempts),
                        const(200, d.last_status_code),
                        f.done_seen,
                        f.done_seen,
                        const(payload, d.payload),
                        const("msg_", d.message_id) + f.id,
                    )
                    .select_from(callbacks.join(fill, fill.c.id == callbacks.c.prediction_id))
                    .order_by(callbacks.c.id),
                )
            )
            conn.execute(
                insert(delivery_attempts).from_select(
                    ["delivery_id", "attempted_at", "status_code", "duration_ms"],
                    select(
                        d.id,
                        d.delivered_at,
                        const(200, delivery_attempts.c.status_code),
                        const(12, delivery_attempts.c.duration_ms),
                    ).order_by(d.id),
                )
            )
            meta.drop_all(conn)
    finally:
        store.close()
    return {
        "finished_written": count,
        "seconds": round(time.monotonic() - started_at, 1),
        "log_pieces_per_prediction": len(tpl["chunks"]),
        "logs_bytes_per_prediction": len(body["logs"].encode()),
        "raw_bytes_per_prediction": len(payload.encode()),
    }


def table_bytes(url: str) -> dict[str, int]:
    """Bytes per table, its indexes included (dbstat / pg_total_relation_size)."""
    names = [
        "predictions",
        "status_transitions",
        "prediction_logs",
        "callbacks",
        "deliveries",
        "delivery_attempts",
    ]
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            index_of = dict(
                conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'")
            )
            sizes: Counter[str] = Counter()
            for name, size in conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
                sizes[index_of.get(name, name)] += size
        finally:
            conn.close()
        return {n: int(sizes[n]) for n in names}
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            n: int(conn.execute("SELECT pg_total_relation_size(%s)", [n]).fetchone()[0])  # type: ignore[index]
            for n in names
        }


def run_scale(
    engine: str, profile: Profile, dbs: Databases, workdir: Path, seed: int, sim: Simulator
) -> dict[str, Any]:
    finished = profile.scale_registered - profile.scale_active
    log(f"scale {engine}: writing {finished} finished predictions")
    load_start = loadavg()
    url = dbs.new(engine, f"scale-{engine}")
    empty = dbs.empty_bytes[engine]
    fill = fill_finished(url, finished, profile, seed)
    size_finished = Databases.size(url)
    tables = table_bytes(url)
    result: dict[str, Any] = {"engine": engine, "fill": fill}
    ids = [f"forever-scale-{engine[:2]}-{i:05d}" for i in range(profile.scale_active)]
    began = time.monotonic()
    if profile is FAST:  # a process less; the full run registers them with the command
        store = Store.from_url(url, pool_size=1)
        store.add_predictions(ids, now=utcnow(), first_poll_at=utcnow())
        store.close()
    else:
        cb.tracker("add", "--file", "-", env=tracker_env(url, sim.base), input="\n".join(ids))
    result["tracker_add_seconds"] = round(time.monotonic() - began, 2)
    # Arrivals spread over one poll-max, not all due in the same instant: hold them
    # back until the daemon is up, then give each a first poll in the coming window.
    _set_next_poll(url, hold=True)
    if engine == "postgresql":
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")
    flags = ["--poll-min", str(profile.poll_min), "--poll-max", str(profile.poll_max)]
    flags += ["--max-rps", str(profile.scale_max_rps)]
    result["adaptive"] = _scale_daemon(
        url, sim, workdir / f"scale-daemon-{engine}-adaptive.log", profile, "adaptive", flags
    )
    if profile.scale_backoff_seconds > 0:
        _set_next_poll(url, hold=True)
        result["backoff"] = _scale_daemon(
            url, sim, workdir / f"scale-daemon-{engine}-backoff.log", profile, "backoff", flags
        )
    result["explain"] = explain_hot_path(url)
    result.update(
        registered=profile.scale_registered,
        active=profile.scale_active,
        finished=finished,
        db_bytes_empty=empty,
        db_bytes_with_finished=size_finished,
        db_bytes_per_finished=round((size_finished - empty) / finished),
        table_bytes_per_finished={n: round(b / finished) for n, b in tables.items()},
        db_bytes_end=Databases.size(url),
        loadavg_start=load_start,
        loadavg_end=loadavg(),
    )
    return result


def _set_next_poll(url: str, *, hold: bool) -> None:
    """Make every active prediction due in an hour (``hold``) or now."""
    store = Store.from_url(url, pool_size=1)
    try:
        with store.engine.begin() as conn:
            conn.execute(
                predictions.update()
                .where(predictions.c.tracking == "active")
                .values(next_poll_at=utcnow() + timedelta(hours=1) if hold else utcnow())
            )
    finally:
        store.close()


def _spread_first_polls(url: str, window: float, seed: int) -> None:
    """Make active predictions due over the next ``window`` seconds, uniformly."""
    rng = random.Random(seed)
    store = Store.from_url(url, pool_size=1)
    try:
        with store.engine.begin() as conn:
            ids = list(
                conn.execute(
                    select(predictions.c.id).where(predictions.c.tracking == "active")
                ).scalars()
            )
            now = utcnow()
            rows = [
                {"pid": pid, "at": now + timedelta(seconds=0.2 + rng.uniform(0, window))}
                for pid in ids
            ]
            conn.execute(
                predictions.update()
                .where(predictions.c.id == bindparam("pid"))
                .values(next_poll_at=bindparam("at", type_=UTCDateTime)),
                rows,
            )
    finally:
        store.close()


def _scale_daemon(
    url: str, sim: Simulator, log_path: Path, profile: Profile, scheduler: str, flags: list[str]
) -> dict[str, Any]:
    seconds = profile.scale_seconds if scheduler == "adaptive" else profile.scale_backoff_seconds
    daemon = Daemon(url, sim.base, log_path, "--scheduler", scheduler, *flags)
    try:
        daemon.wait_ready()
        if scheduler == "adaptive":
            _spread_first_polls(url, profile.poll_max, seed=1)
        else:
            _set_next_poll(url, hold=False)  # everything due now
        before = len(sim.requests())
        sampler = LagSampler(url)
        sampler.start()
        t0 = time.time()
        cpu0 = daemon.cpu_seconds()
        while time.time() - t0 < seconds:
            time.sleep(min(0.5, seconds))
        cpu1 = daemon.cpu_seconds()
        elapsed = time.time() - t0
        lag = sampler.finish()
    finally:
        stats = daemon.stop()
    records = sim.requests()[before:]
    times: dict[str, list[float]] = {}
    for rec in records:
        times.setdefault(rec["prediction_id"], []).append(rec["at"])
    # Pre-window predictions are polled exactly poll-max after each answer (no jitter),
    # so every gap beyond poll-max is how late that poll ran.
    late = [b - a - profile.poll_max for ts in times.values() for a, b in itertools.pairwise(ts)]
    polls = len(records)
    return {
        "scheduler": scheduler,
        "seconds": round(elapsed, 1),
        "polls": polls,
        "polls_per_second": round(polls / elapsed, 1),
        "predictions_polled": len(times),
        "polls_per_cpu_second": round(polls / (cpu1 - cpu0), 1) if cpu1 > cpu0 else None,
        "schedule_lag_seconds": lag,
        "poll_delay_seconds": dist(late) if scheduler == "adaptive" else None,
        "peak_rss_mb": stats["peak_rss_mb"],
        "ru_maxrss_mb": stats["ru_maxrss_mb"],
        "daemon": stats,
    }


# -- EXPLAIN -----------------------------------------------------------------------------


def explain_hot_path(url: str) -> dict[str, Any]:
    """Run the daemon's hot-path store operations once on this database, capture the
    SQL they send, and EXPLAIN each statement with the same parameters."""
    store = Store.from_url(url, pool_size=1)
    captured: list[tuple[str, str, Any]] = []
    current = [""]

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        head = statement.lstrip().split(None, 1)[0].upper()
        if current[0] and head in ("SELECT", "UPDATE", "INSERT", "DELETE", "WITH"):
            captured.append((current[0], statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    now = utcnow()
    lease = now + timedelta(seconds=60)

    def op(name: str, fn: Callable[[], Any]) -> Any:
        current[0] = name
        try:
            return fn()
        finally:
            current[0] = ""

    try:
        states = op(
            "claim due predictions (Store.claim_due)",
            lambda: store.claim_due(now=now, limit=256, owner="explain", lease_until=lease),
        )
        if states:
            state = states[0]
            plan = PredictionPlan(outcome="succeeded", queue_seconds=0.1, run_seconds=1.0)
            sim = SimulatedPrediction(state.id, plan, SimConfig(), created_at=time.time() - 5)
            body = sim.snapshot(time.time(), "http://127.0.0.1/v1")
            # The answer that ends it: the stored logs, extended (a terminal transition,
            # a log piece and the deliveries lookup, as in the daemon's common write).
            body["logs"] = state.logs + "prediction took 20.00 seconds\n"
            update_ = plan_observation(state, parse_prediction(body, state.id), utcnow())
            op(
                "write an observation by primary key (Store.apply_observations)",
                lambda: store.apply_observations(
                    [(update_, NextPoll(at=None, interval=None), "explain")]
                ),
            )
        op(
            "heartbeat and lease extension (Store.heartbeat)",
            lambda: store.heartbeat(
                "explain",
                now=now,
                polls=0,
                lease_until=lease,
                in_flight=[s.id for s in states[1:33]],
            ),
        )
        op(
            "claim due deliveries (Store.claim_deliveries)",
            lambda: store.claim_deliveries(
                now=now,
                limit=64,
                owner="explain",
                lease_until=lease,
                kinds=("webhook",),
                skip_targets=["https://busy.example.com/hook"],
                per_target=8,
            ),
        )
        with store.engine.connect() as conn:
            row = conn.execute(
                select(
                    deliveries.c.id,
                    deliveries.c.message_id,
                    deliveries.c.prediction_id,
                    deliveries.c.event,
                    deliveries.c.created_at,
                ).limit(1)
            ).first()
        if row is not None:
            job = DeliveryJob(
                row.id,
                row.message_id,
                row.prediction_id,
                "webhook",
                "x",
                row.event,
                "{}",
                0,
                row.created_at,
            )
            op(
                "record a delivery attempt (Store.record_attempt)",
                lambda: store.record_attempt(
                    job,
                    SendResult(ok=True, status_code=200, duration_ms=5),
                    attempted_at=now,
                    state=DeliveryState.DELIVERED,
                    next_attempt_at=None,
                    owner="explain",
                ),
            )
        op(
            "health: tracker status (Store.health)",
            lambda: store.health(now=now, live_within=timedelta(seconds=30)),
        )
        op("exit-when-done: active count (Store.count_active)", store.count_active)
        op(
            "exit-when-done: next delivery (Store.next_delivery_due)",
            lambda: store.next_delivery_due(("webhook",)),
        )
        op("next due poll (Store.next_due_at)", store.next_due_at)
        op("daemon start: run-time history (Store.recent_run_times)", store.recent_run_times)
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)

    sqlite = url.startswith("sqlite")
    plans = []
    seen: set[str] = set()
    with store.engine.connect() as conn:
        for name, statement, parameters in captured:
            if statement in seen:
                continue
            seen.add(statement)
            params = parameters[0] if isinstance(parameters, list) and parameters else parameters
            prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            rows = conn.exec_driver_sql(prefix + statement, params).all()
            lines = _sqlite_tree(rows) if sqlite else [r[0] for r in rows]
            best_ms = None
            if statement.lstrip().upper().startswith("SELECT"):  # reads: how long they take
                for _ in range(3):
                    began = time.perf_counter()
                    conn.exec_driver_sql(statement, params).all()
                    took = (time.perf_counter() - began) * 1000
                    best_ms = took if best_ms is None else min(best_ms, took)
            plans.append(
                {
                    "operation": name,
                    "sql": " ".join(statement.split()),
                    "plan": lines,
                    "full_scans": _full_scans(lines, sqlite),
                    "select_ms_best_of_3": None if best_ms is None else round(best_ms, 2),
                }
            )
        conn.rollback()
    store.close()
    return {"engine": "sqlite" if sqlite else "postgresql", "statements": plans}


def _sqlite_tree(rows: Sequence[Any]) -> list[str]:
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return lines


def _full_scans(lines: list[str], sqlite: bool) -> list[str]:
    """Plan lines that read a whole big table (predictions, its children, deliveries)."""
    big = ("predictions", "status_transitions", "prediction_logs", "deliveries", "callbacks")
    found = []
    for line in lines:
        text = line.strip()
        if sqlite:
            hit = text.startswith("SCAN ") and text.split()[1] in big and "USING" not in text
        else:
            hit = "Seq Scan on" in text and text.split("Seq Scan on ")[1].split()[0] in big
        if hit:
            found.append(text)
    return found


# -- the report --------------------------------------------------------------------------


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(
        f"\ntracker benchmark ({'fast' if report['settings']['fast'] else 'full'}):"
        f" {m['nproc']} CPUs, {m.get('memory_gb', '?')} GB, Python {m['python']},"
        f" SQLite {m['sqlite']}, PostgreSQL {m.get('postgresql', '-')};"
        f" load average {m['loadavg_start']} at start, {m.get('loadavg_end')} at end;"
        f" {report['seconds']:.0f} s"
    )
    for run in ("ample", "tight"):
        w = report.get(run)
        if not w:
            continue
        work = w["workload"]
        print(
            f"\n{run}: {work['predictions']} predictions per client, peak {work['peak_running']}"
            f" running at once, --max-rps {w['max_rps']:g} for every client,"
            f" --poll-min {w['poll_min']:g}, runs log"
            f" {'plain lines' if report['settings'].get('logs') == 'plain' else 'progress bars'};"
            f" load {w['loadavg_start']} -> {w['loadavg_end']}"
        )
        print(
            f"{'client':<22}{'engine':<11}{'req/pred':>9}{'det p50':>9}{'p95':>7}{'p99':>7}"
            f"{'max':>7}{'-intvl p99':>11}{'hook p50':>10}{'p99 ms':>8}{'lag p99':>9}"
            f"{'polls/CPU-s':>12}"
        )
        for c in w["clients"]:
            name = (
                f"tracker {c['scheduler']}"
                if c["client"] == "tracker"
                else f"baseline {c['scheduler']}"
            )
            d = c["detection_seconds"]
            hook = c.get("callback_ms") or {}
            lag = (c.get("schedule_lag_seconds") or {}).get("p99")
            print(
                f"{name:<22}{c['engine'] or '-':<11}{fmt(c['requests_per_prediction'], 1):>9}"
                f"{fmt(d['p50']):>9}{fmt(d['p95']):>7}{fmt(d['p99']):>7}{fmt(d['max']):>7}"
                f"{fmt(c['detection_minus_interval_seconds']['p99']):>11}"
                f"{fmt(hook.get('p50'), 0):>10}{fmt(hook.get('p99'), 0):>8}{fmt(lag):>9}"
                f"{fmt(c['polls_per_cpu_second'], 0):>12}"
            )
        for name, r in w["ratios"].items():
            print(
                f"  {name}: requests/prediction x{fmt(r['requests_per_prediction'])},"
                f" detection p50 x{fmt(r['detection_p50'])}, p95 x{fmt(r['detection_p95'])},"
                f" p99 x{fmt(r['detection_p99'])}"
            )
        for c in w["clients"]:
            if c["client"] == "tracker":
                path = c["callback_path_ms"]
                late = c["detecting_poll_late_seconds"]
                print(
                    f"  tracker {c['scheduler']} {c['engine']}: interval at completion"
                    f" p50 {fmt(c['interval_at_completion_seconds']['p50'])} s,"
                    f" detecting poll late p50 {fmt(late['p50'])} s p99 {fmt(late['p99'])} s;"
                    f" webhook queued->send p50 {fmt(path['queued_to_send_ms']['p50'], 0)} ms"
                    f" p99 {fmt(path['queued_to_send_ms']['p99'], 0)} ms,"
                    f" send p99 {fmt(path['send_ms']['p99'], 0)} ms"
                )
            else:
                gets = c.get("get_seconds") or {}
                lag = c.get("event_loop_lag_seconds") or {}
                print(
                    f"  baseline: GET p50 {fmt(gets.get('p50'), 3)} s p99 {fmt(gets.get('p99'), 3)}"
                    f" s, event-loop lag p99 {fmt(lag.get('p99'), 3)} s, {c.get('get_errors')}"
                    " errors"
                )
        sl = w["simulator_latency_seconds"]
        print(
            f"  simulator: health probe p50 {fmt(sl['p50'], 3)} s p99 {fmt(sl['p99'], 3)} s,"
            f" {fmt(w['simulator_cpu_share'])} CPU"
        )
        if w["unfinished"]:
            print(f"  NOT FINISHED at the deadline: {w['unfinished']}")
    if report.get("efficiency"):
        print("\nefficiency: never-ending predictions, every answer a change and a write")
        print(
            f"{'engine':<11}{'polls/s':>9}{'polls/CPU-s':>13}{'daemon CPU':>12}{'sim CPU':>9}"
            f"{'pg CPU-s':>10}{'whole run polls/CPU-s':>23}{'RSS MB':>8}"
        )
        for e in report["efficiency"]:
            print(
                f"{e['engine']:<11}{fmt(e['polls_per_second'], 0):>9}"
                f"{fmt(e['polls_per_cpu_second'], 0):>13}{fmt(e['daemon_cpu_share']):>12}"
                f"{fmt(e['simulator_cpu_share']):>9}{fmt(e['postgres_backend_cpu_seconds']):>10}"
                f"{fmt(e['whole_run']['polls_per_cpu_second'], 0):>23}{fmt(e['peak_rss_mb'], 1):>8}"
            )
    if report.get("scale"):
        print("\nscale: registered / active; adaptive daemon at --poll-min 1, no binding budget")
        print(
            f"{'engine':<11}{'registered':>11}{'active':>8}{'polls/s':>9}{'lag p99':>9}"
            f"{'delay p99':>10}{'RSS MB':>8}{'B/finished':>11}{'backoff polls/s':>16}"
            f"{'lag p99':>9}"
        )
        for s in report["scale"]:
            a = s["adaptive"]
            b = s.get("backoff") or {}
            print(
                f"{s['engine']:<11}{s['registered']:>11}{s['active']:>8}"
                f"{fmt(a['polls_per_second'], 0):>9}{fmt(a['schedule_lag_seconds']['p99']):>9}"
                f"{fmt((a['poll_delay_seconds'] or {}).get('p99')):>10}"
                f"{fmt(a['peak_rss_mb'], 1):>8}{s['db_bytes_per_finished']:>11}"
                f"{fmt(b.get('polls_per_second'), 0):>16}"
                f"{fmt((b.get('schedule_lag_seconds') or {}).get('p99')):>9}"
            )
        for s in report["scale"]:
            scans = [
                f"{st['operation']}: {st['full_scans']}"
                for st in s["explain"]["statements"]
                if st["full_scans"]
            ]
            print(
                f"  {s['engine']} EXPLAIN: {len(s['explain']['statements'])} statements,"
                f" full scans: {scans or 'none'}"
            )
    print("\ntargets")
    for t in report["targets"]:
        state = {True: "met", False: "NOT MET", None: "n/a"}[t["met"]]
        print(f"  [{state:^7}] {t['target']}: {t['value']}")


def evaluate_targets(report: dict[str, Any], profile: Profile) -> list[dict[str, Any]]:
    targets = []

    def add(name: str, value: Any, met: bool | None, **extra: Any) -> None:
        targets.append({"target": name, "value": value, "met": met, **extra})

    for e in report.get("efficiency") or []:
        v = e["polls_per_cpu_second"]
        add(
            f"{e['engine']}: >= {POLLS_PER_CPU_TARGET:g} polls per daemon CPU-second"
            " (with the database writes)",
            v,
            None if v is None else v >= POLLS_PER_CPU_TARGET,
        )
    for s in report.get("scale") or []:
        a = s["adaptive"]
        lag = a["schedule_lag_seconds"]["p99"]
        delay = (a["poll_delay_seconds"] or {}).get("p99")
        worst = max(x for x in (lag, delay) if x is not None) if lag is not None else None
        add(
            f"{s['engine']}: {s['active']} active at --poll-min {profile.poll_min:g},"
            f" schedule lag p99 < {LAG_TARGET:g} s (sampled lag / per-poll delay)",
            f"{fmt(lag, 3)} s / {fmt(delay, 3)} s",
            None if worst is None else worst < LAG_TARGET,
        )
        add(
            f"{s['engine']}: peak RSS < {RSS_TARGET_MB:g} MB with {s['registered']} registered",
            f"{a['peak_rss_mb']} MB",
            a["peak_rss_mb"] < RSS_TARGET_MB,
        )
    ample = report.get("ample")
    if ample:
        for c in ample["clients"]:
            if c["client"] != "tracker":
                continue
            d = c["detection_minus_interval_seconds"]
            add(
                f"{c['engine']} {c['scheduler']}: detection p99 <= the poll interval in effect"
                f" + {DETECTION_SLACK * 1000:g} ms (p99 of detection minus that interval)",
                f"{fmt(d['p99'], 3)} s (detection p99 {fmt(c['detection_seconds']['p99'], 3)} s,"
                f" interval p99 {fmt(c['interval_at_completion_seconds']['p99'], 3)} s)",
                None if d["p99"] is None else d["p99"] <= DETECTION_SLACK,
            )
        for c in ample["clients"]:
            if c["client"] != "tracker":
                continue
            v = c["callback_ms"]["p99"]
            add(
                f"{c['engine']} {c['scheduler']}: callback p99 < {CALLBACK_TARGET_MS:g} ms",
                f"{fmt(v, 1)} ms",
                None if v is None else v < CALLBACK_TARGET_MS,
            )
    tight = report.get("tight")
    if tight:
        for name, r in tight["ratios"].items():
            if not name.endswith("/ adaptive"):
                continue
            v = r["detection_p95"]
            add(
                f"{name.replace(' / adaptive', '')} vs adaptive at --max-rps"
                f" {tight['max_rps']:g}: detection p95 >= {BUDGET_RATIO_TARGET:g}x lower",
                f"x{fmt(v)}",
                None if v is None else v >= BUDGET_RATIO_TARGET,
            )
    return targets


# -- main --------------------------------------------------------------------------------


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # run the finally blocks: stop processes, drop databases


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join((__doc__ or "").splitlines()[2:]),
    )
    parser.add_argument("--fast", action="store_true", help="a few seconds per section")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}"
    )
    parser.add_argument("--json", type=Path, default=ROOT / "bench-results" / "bench.json")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep databases and logs")
    parser.add_argument(
        "--baseline-http",
        choices=("tracker", "httpx"),
        default="tracker",
        help="the baseline's HTTP client: the tracker's (httpx over aiohttp's pool, the"
        " default: only the polling strategy differs) or plain httpx, as replicate-python",
    )
    parser.add_argument(
        "--logs",
        choices=("progress", "plain"),
        default="progress",
        help="what a simulated run logs every half second: a progress bar (`step k/n |"
        " pct% | rate it/s`, the default) or plain lines that say nothing of progress",
    )
    parser.add_argument("--serve-baseline", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    for engine in args.engines:
        if engine not in ("sqlite", "postgresql"):
            parser.error(f"unknown engine {engine!r}")
    for section in args.sections:
        if section not in SECTIONS:
            parser.error(f"unknown section {section!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_baseline:
        serve_baseline(args.serve_baseline)
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    global PROGRESS_BARS
    PROGRESS_BARS = args.logs == "progress"
    profile = FAST if args.fast else FULL
    started = time.monotonic()
    report: dict[str, Any] = {
        "settings": {
            "fast": args.fast,
            "engines": args.engines,
            "sections": args.sections,
            "seed": args.seed,
            "baseline_http": args.baseline_http,
            "logs": args.logs,
            "profile": {
                k: ([vars(m) for m in v] if k == "models" else v) for k, v in vars(profile).items()
            },
            "command": " ".join(["scripts/bench", *(argv or sys.argv[1:])]),
        },
        "source": cb.source_state(),
        "machine": machine(),
    }
    if "postgresql" in args.engines:
        with psycopg.connect(cb.PG_ADMIN, autocommit=True) as conn:
            report["machine"]["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    workdir = args.json.parent / f"bench-work-{uuid.uuid4().hex[:6]}"
    workdir.mkdir()
    dbs = Databases(workdir, args.keep)
    try:
        parallel = args.fast
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(dbs.template, args.engines))

        timings: dict[str, float] = {}
        report["section_seconds"] = timings

        def timed(name: str, fn: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                log(name)
                mark = time.monotonic()
                try:
                    fn()
                finally:
                    timings[name] = round(time.monotonic() - mark, 1)

            return run

        def efficiency() -> None:
            sim = Simulator()
            try:
                report["efficiency"] = [
                    run_efficiency(engine, profile, dbs, workdir, sim) for engine in args.engines
                ]
            finally:
                sim.stop()

        def workload() -> None:
            variants = [
                Variant(f"{engine}-{scheduler}", engine, scheduler, "")
                for engine in args.engines
                for scheduler in ("adaptive", "backoff")
            ]
            for v in variants:
                v.url = dbs.new(v.engine, v.key)
            receiver_proc, receiver = cb.start_receiver()
            sim = Simulator()
            try:
                if "ample" in args.sections:
                    items = make_workload(profile, profile.ample_running, args.seed)
                    report["ample"] = run_workload(
                        "ample",
                        items,
                        variants,
                        profile=profile,
                        max_rps=profile.ample_rps,
                        sim=sim,
                        receiver=receiver,
                        workdir=workdir,
                        baseline_http=args.baseline_http,
                    )
                if "tight" in args.sections:
                    seeded = {
                        v.key: seed_history(v.url, profile, args.seed)
                        for v in variants
                        if v.scheduler == "adaptive"
                    }
                    items = make_workload(profile, profile.tight_running, args.seed + 1)
                    report["tight"] = run_workload(
                        "tight",
                        items,
                        variants,
                        profile=profile,
                        max_rps=profile.tight_rps,
                        sim=sim,
                        receiver=receiver,
                        workdir=workdir,
                        baseline_http=args.baseline_http,
                    )
                    report["tight"]["history_seeded_with_sql"] = seeded
            finally:
                sim.stop()
                cb.stop(receiver_proc)
            report["workload_db_bytes"] = [workload_db_bytes(v, dbs) for v in variants]

        def scale() -> None:
            sim = Simulator()
            try:
                report["scale"] = [
                    run_scale(engine, profile, dbs, workdir, args.seed, sim)
                    for engine in args.engines
                ]
            finally:
                sim.stop()

        jobs = []
        if "efficiency" in args.sections:
            jobs.append(timed("efficiency", efficiency))
        if "ample" in args.sections or "tight" in args.sections:
            runs = "+".join(name for name in ("ample", "tight") if name in args.sections)
            jobs.append(timed(runs, workload))
        if "scale" in args.sections:
            jobs.append(timed("scale", scale))
        if parallel:
            # --fast checks that every part works, not how fast: run them side by side.
            with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
                for future in [pool.submit(job) for job in jobs]:
                    future.result()
        else:
            for job in jobs:
                job()
    finally:
        dbs.drop_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report["machine"]["loadavg_end"] = loadavg()
    report["seconds"] = round(time.monotonic() - started, 1)
    report["targets"] = evaluate_targets(report, profile)
    args.json.write_text(json.dumps(report, indent=2, default=str))
    print_report(report)
    print(f"\nwritten to {args.json}")
    return 0


def workload_db_bytes(v: Variant, dbs: Databases) -> dict[str, Any]:
    """Database bytes per finished prediction as the daemon wrote them (with a webhook
    delivery each), beyond the empty migrated database."""
    reader = Reader(v.url)
    try:
        done = int(reader.scalar("SELECT count(*) FROM predictions WHERE tracking = 'done'"))
    finally:
        reader.close()
    size = Databases.size(v.url)
    extra = size - dbs.empty_bytes[v.engine]
    return {
        "variant": v.key,
        "finished": done,
        "db_bytes": size,
        "bytes_per_finished": round(extra / done) if done else None,
        "table_bytes_per_finished": {n: round(b / done) for n, b in table_bytes(v.url).items()}
        if done
        else None,
    }


if __name__ == "__main__":
    sys.exit(main())
