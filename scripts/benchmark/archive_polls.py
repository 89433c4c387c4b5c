"""Polls per daemon CPU-second with archiving on beside off.

The workload of the ``efficiency`` section (scripts/benchmark/efficiency.py) made to
finish: ``predictions`` ``ok-`` predictions (queue ~1 s, run times log-normal around
``run_median`` s, logs growing by a line every 0.5 s, so nearly every answer is a
change and a write), each succeeding with one small PNG (a few hundred bytes), polled
at a fixed interval (``--poll-min`` = ``--poll-max`` = ``interval``, ``--max-rps
10000 --concurrency 64`` as there) by a daemon with ``--exit-when-done``. They are
registered in waves, one a second over ``arrival_seconds``, so that the daemon keeps
up with the polls even on a busy machine: the number of polls is then set by the
workload (about run time / interval per prediction), the same with archiving on and
off, and the CPU is what differs. Once with TRACKER_ARCHIVE_URL set (a local
directory: every PNG downloaded, an artifacts row written, claimed and marked stored)
and once without, on a fresh simulator and database each time, so both runs see the
same predictions with the same plans.

Measured from the daemon's " started: " to its exit: polls are the simulator's API
requests, CPU the daemon's user + system time (/proc at the start, rusage at the
exit). The runs go in pairs: run N with archiving off at the same time as run N with
it on, each with its own simulator and database, pair after pair. On a shared virtual
machine the daemon's CPU for the same work moves by up to 16 % between runs minutes
apart, more than the 10 % being judged; what weighs on one run of a pair weighs on
the other alike, so the goal is judged on the median of the pairs' ratios (the best
and median runs of each mode are reported too). ``--alternate`` runs them one at a
time instead, off, on, off, on... The CPU is also split: per poll (off) and per
archived file (on, beyond its polls), and the kernel's share of each.
"""

from __future__ import annotations

import concurrent.futures
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .archive_daemon import ArchiveDaemon, archive_env, archive_window, read_artifacts
from .archive_files import register
from .databases import Databases
from .harness import SimulatorProcess, loadavg, log

MODES = ("off", "on")


@dataclass(frozen=True)
class Workload:
    predictions: int
    run_median: float  #: seconds
    interval: float  #: seconds between two polls of a prediction
    arrival_seconds: float  #: registrations spread over this long, a wave a second
    queue_seconds: float = 1.0  #: each waits this long in the simulator's queue

    def flags(self) -> list[str]:
        every = f"{self.interval:g}"
        fixed = ["--poll-min", every, "--poll-max", every]
        return [*fixed, "--max-rps", "10000", "--concurrency", "64"]

    def waves(self) -> list[list[str]]:
        """The IDs registered at 0, 1, 2... seconds (the same IDs in every run)."""
        count = max(1, round(self.arrival_seconds) + 1)
        ids = [f"ok-polls-{i}" for i in range(self.predictions)]
        return [ids[w::count] for w in range(count) if ids[w::count]]


def run_polls(
    engine: str,
    dbs: Databases,
    workdir: Path,
    logs: Path,
    work: Workload,
    runs: int,
    *,
    side_by_side: bool = False,
    paired: bool = True,
) -> dict[str, Any]:
    """``runs`` runs of each mode: with ``paired``, each run of one mode at the same
    time as the same run of the other, pair after pair (so that what else the machine
    does at that moment weighs on both alike); else alternating, one at a time (or,
    ``side_by_side``, every run at once: a smoke run). Both modes' figures, the ratio
    of their best and median runs, and each pair's ratio."""
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    order = [(number, mode) for number in range(1, runs + 1) for mode in MODES]

    def one(run: tuple[int, str]) -> dict[str, Any]:
        number, mode = run
        log(f"polls-{engine}: archiving {mode}, run {number} of {runs}")
        return run_once(engine, mode, number, dbs, workdir, logs, work)

    at_once = len(order) if side_by_side else len(MODES) if paired else 1
    done: list[dict[str, Any]] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=at_once) as pool:
        for start in range(0, len(order), at_once):
            done.extend(pool.map(one, order[start : start + at_once]))
    for (_, mode), result in zip(order, done, strict=True):
        results[mode].append(result)
    off, on = (summarise(results[mode]) for mode in MODES)
    pairs = [
        _ratio(b["polls_per_cpu_second"], a["polls_per_cpu_second"])
        for a, b in zip(results["off"], results["on"], strict=True)
    ]
    known = [r for r in pairs if r is not None]
    return {
        "method": "all at once" if side_by_side else "paired" if paired else "alternating",
        "pair_ratios": pairs,
        "ratio_pairs_median": round(statistics.median(known), 3) if known else None,
        "engine": engine,
        "predictions": work.predictions,
        "run_median_seconds": work.run_median,
        "interval_seconds": work.interval,
        "arrival_seconds": work.arrival_seconds,
        "off": off,
        "on": on,
        "ratio_best": _ratio(on["best"], off["best"]),
        "ratio_median": _ratio(on["median"], off["median"]),
        "cost": split_cost(results),
        "runs": results,
    }


def run_once(
    engine: str, mode: str, number: int, dbs: Databases, workdir: Path, logs: Path, work: Workload
) -> dict[str, Any]:
    tag = f"polls-{engine}-{mode}-{number}"
    waves = work.waves()
    url = dbs.new(engine, tag)
    register(url, waves[0])
    archive = str(workdir / tag) if mode == "on" else None
    load_start = loadavg()
    sim = SimulatorProcess(
        "--run-median", f"{work.run_median:g}", "--queue-seconds", f"{work.queue_seconds:g}"
    )
    feeder = daemon = None
    try:
        daemon = ArchiveDaemon(
            url, sim.base, logs / f"{tag}.log", archive_env(archive), work.flags(), sample_every=0.2
        )
        daemon.wait_ready()
        polls_before, sim_cpu = sim.request_count(), sim.cpu_seconds()
        feeder = _Feeder(url, waves[1:])
        run = daemon.run_to_exit(timeout=600 + work.arrival_seconds + 10 * work.run_median)
        polls = sim.request_count() - polls_before
        sim_cpu = sim.cpu_seconds() - sim_cpu
        files = _file_requests(sim)
    finally:
        if feeder is not None:
            feeder.stop()
        if daemon is not None:
            daemon.kill()  # only if still running (this benchmark was interrupted)
        sim.stop()
    cpu, seconds = run["cpu_seconds_after_ready"], run["seconds_ready_to_exit"]
    return {
        "mode": mode,
        "run": number,
        "polls": polls,
        "polls_per_prediction": round(polls / work.predictions, 2),
        "seconds": seconds,
        "daemon_cpu_seconds": cpu,
        "daemon_system_seconds": run["system_seconds_after_ready"],
        "polls_per_cpu_second": round(polls / cpu, 1) if cpu > 0 else None,
        "daemon_cpu_share": round(cpu / seconds, 2),
        "simulator_cpu_share": round(sim_cpu / seconds, 2),
        "file_requests": files,
        "registered_late": feeder.late if feeder is not None else None,
        "artifacts": archive_window(read_artifacts(url)),
        "daemon": run,
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
    }


class _Feeder:
    """Registers a wave of IDs a second in a thread, as the daemon runs."""

    def __init__(self, url: str, waves: list[list[str]]) -> None:
        self._url = url
        self._waves = waves
        self._stopping = threading.Event()
        self.late = 0.0  #: the most a wave was registered after its second
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        for number, ids in enumerate(self._waves, start=1):
            if self._stopping.wait(max(0.0, start + number - time.monotonic())):
                return
            self.late = max(self.late, time.monotonic() - start - number)
            register(self._url, ids)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()


def _file_requests(sim: SimulatorProcess) -> int:
    """Output files the simulator served (downloads of the archive)."""
    answer = httpx.get(f"{sim.root}/_sim/files", timeout=60)
    answer.raise_for_status()
    return int(answer.json()["count"])


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The best and the median polls per daemon CPU-second of a mode's runs."""
    values = [r["polls_per_cpu_second"] for r in runs if r["polls_per_cpu_second"]]
    return {
        "values": values,
        "best": max(values) if values else None,
        "median": round(statistics.median(values), 1) if values else None,
    }


def split_cost(results: dict[str, list[dict[str, Any]]]) -> dict[str, float | None]:
    """Daemon CPU per poll (the off runs together) and per archived file: what the on
    runs took beyond their polls at that price, over the files they stored; the same
    for the kernel's share (system time: sockets, file creation, fsync)."""
    off, on = results["off"], results["on"]
    off_polls = sum(r["polls"] for r in off)
    files = sum(r["artifacts"]["stored"] for r in on)
    cost: dict[str, float | None] = {}
    for name, key in (("", "daemon_cpu_seconds"), ("system_", "daemon_system_seconds")):
        if not off_polls or any(r.get(key) is None for r in off + on):
            cost[f"{name}ms_per_poll"] = cost[f"{name}ms_per_file"] = None
            continue
        per_poll = sum(r[key] for r in off) / off_polls
        extra = sum(r[key] - r["polls"] * per_poll for r in on)
        cost[f"{name}ms_per_poll"] = round(per_poll * 1000, 3)
        cost[f"{name}ms_per_file"] = round(extra / files * 1000, 2) if files else None
    return cost


def _ratio(on: float | None, off: float | None) -> float | None:
    return round(on / off, 3) if on and off else None
