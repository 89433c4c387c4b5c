"""The ``scale`` section: many registered predictions (mostly finished, written in bulk
by ``fill``) and many active ones; the daemon's peak RSS, schedule lag, database bytes per
finished prediction, and the hot path's query plans (``explain``)."""

from __future__ import annotations

import itertools
import random
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import bindparam, select

from tracker.store.store import Store
from tracker.store.tables import predictions
from tracker.store.types import UTCDateTime
from tracker.timeparse import utcnow

from .databases import Databases, database_size, table_bytes
from .explain import explain_hot_path
from .fill import fill_finished
from .harness import DaemonProcess, SimulatorProcess, loadavg, log, tracker, tracker_env
from .profile import FAST, Profile
from .samplers import LagSampler
from .stats import dist


def run_scale(
    engine: str, profile: Profile, dbs: Databases, workdir: Path, seed: int, sim: SimulatorProcess
) -> dict[str, Any]:
    finished = profile.scale_registered - profile.scale_active
    log(f"scale {engine}: writing {finished} finished predictions")
    load_start = loadavg()
    url = dbs.new(engine, f"scale-{engine}")
    empty = dbs.empty_bytes[engine]
    fill = fill_finished(url, finished, profile, seed)
    size_finished = database_size(url)
    tables = table_bytes(url)
    result: dict[str, Any] = {"engine": engine, "fill": fill}
    ids = [f"forever-scale-{engine[:2]}-{i:05d}" for i in range(profile.scale_active)]
    began = time.monotonic()
    if profile is FAST:  # a process less; the full run registers them with the command
        store = Store.from_url(url, pool_size=1)
        store.add_predictions(ids, now=utcnow(), first_poll_at=utcnow())
        store.close()
    else:
        tracker("add", "--file", "-", env=tracker_env(url, sim.base), input="\n".join(ids))
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
        db_bytes_end=database_size(url),
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


def _measured(sampler: LagSampler, sim: SimulatorProcess, before: int) -> bool:
    """Whether the run has a schedule lag sample and a prediction polled twice."""
    if not sampler.samples:
        return False
    polled = [rec["prediction_id"] for rec in sim.requests()[before:]]
    return len(set(polled)) < len(polled)


def _scale_daemon(
    url: str,
    sim: SimulatorProcess,
    log_path: Path,
    profile: Profile,
    scheduler: str,
    flags: list[str],
) -> dict[str, Any]:
    seconds = profile.scale_seconds if scheduler == "adaptive" else profile.scale_backoff_seconds
    daemon = DaemonProcess(url, sim.base, log_path, "--scheduler", scheduler, *flags)
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
        # Longer (up to a minute) only until there is a figure of each kind: a loaded
        # machine can leave a short run (--fast) without a lag sample or a second poll.
        while time.time() - t0 < seconds + 60 and not _measured(sampler, sim, before):
            time.sleep(0.5)
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
