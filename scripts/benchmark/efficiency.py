"""The ``efficiency`` section: never-ending predictions whose every answer is a change and a
write, polled as fast as the daemon can; polls per daemon CPU-second once it is warm."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tracker.store.store import Store
from tracker.timeparse import utcnow

from .bare import measure
from .databases import Databases, pg_backends
from .harness import DaemonProcess, SimulatorProcess, cpu_of, loadavg
from .profile import Profile


def run_efficiency(
    engine: str, profile: Profile, dbs: Databases, workdir: Path, sim: SimulatorProcess
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
        daemon = DaemonProcess(url, sim.base, workdir / f"efficiency-daemon-{engine}.log", *flags)
        daemon.wait_ready()
        time.sleep(profile.efficiency_warmup)
        pg_pids = pg_backends(url) if engine == "postgresql" else []
        r0, c0, s0, t0 = sim.request_count(), daemon.cpu_seconds(), sim.cpu_seconds(), time.time()
        p0 = cpu_of(pg_pids)
        time.sleep(profile.efficiency_seconds)
        r1, c1, s1, t1 = sim.request_count(), daemon.cpu_seconds(), sim.cpu_seconds(), time.time()
        p1 = cpu_of(pg_pids)
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


def beside_bare_loops(rows: list[dict[str, Any]], profile: Profile, sim: SimulatorProcess) -> None:
    """Measure the bare GET loops once against the simulator the daemons polled (they
    touch no database) and give each engine's row its ratio to them."""
    bare = measure(
        sim.base,
        profile.efficiency_predictions,
        profile.efficiency_warmup,
        profile.efficiency_seconds,
        together=profile.efficiency_seconds < 5,  # --fast: the figures, not their precision
    )
    for row in rows:
        rate = row["polls_per_cpu_second"]
        row["bare"] = bare
        row["daemon_vs_bare"] = {
            client: round(rate / b["requests_per_cpu_second"], 3)
            if rate and b["requests_per_cpu_second"]
            else None
            for client, b in bare.items()
        }
